"""geometry/align: Umeyama, the paper's protocol and the robust default, on known transforms."""

from __future__ import annotations

import numpy as np
import pytest

from topos_cli.geometry.align import (
    AlignResult,
    Similarity,
    align_robust,
    align_topos,
    axis_rotations,
    bbox_diagonal,
    rotation_error_deg,
    rotation_from_euler,
    umeyama,
)


def toy_head(subdivisions: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """An asymmetric head-like surface: squashed icosphere with a nose, a chin and one ear (no symmetry)."""
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=subdivisions, radius=1.0)
    unit = np.asarray(sphere.vertices)
    bumps = (
        0.5 * np.exp(-((unit - [0, 0.05, 1]) ** 2).sum(1) / 0.05)  # nose (+Z is the front)
        + 0.25 * np.exp(-((unit - [0, -0.7, 0.7]) ** 2).sum(1) / 0.08)  # chin
        + 0.3 * np.exp(-((unit - [1, 0.1, 0]) ** 2).sum(1) / 0.05)  # one ear only: breaks the mirror symmetry
    )
    verts = unit * (1.0 + bumps)[:, None] * np.array([8.0, 11.0, 9.5])
    verts[:, 2] *= np.where(verts[:, 2] < 0, 0.8, 1.0)  # a flatter back: no 180-degree symmetry
    return verts, np.asarray(sphere.faces, dtype=np.int64)


def front_shell(verts: np.ndarray, faces: np.ndarray, z_min: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """The faces whose corners all have z > z_min (a frontal 'face only' shell), re-indexed."""
    keep = (verts[faces][:, :, 2] > z_min).all(1)
    sub = faces[keep]
    used = np.unique(sub)
    remap = -np.ones(len(verts), dtype=np.int64)
    remap[used] = np.arange(len(used))
    return verts[used], remap[sub]


def check_recovered(result: AlignResult, src: np.ndarray, dst_of_src: np.ndarray, diag: float, tol: float):
    """Every transformed source vertex lands within tol * diag of where the true transform puts it."""
    err = np.linalg.norm(result.apply(src) - dst_of_src, axis=1).max() / diag
    assert err < tol, f"max vertex error {err:.2e} of the diagonal"


def test_umeyama_recovers_a_similarity_exactly():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(50, 3))
    rot = rotation_from_euler(123.0, -30.0, 10.0)
    dst = 2.5 * src @ rot.T + np.array([1.0, -2.0, 3.0])
    sim = umeyama(src, dst)
    assert sim.scale == pytest.approx(2.5, rel=1e-12)
    assert np.allclose(sim.rotation, rot, atol=1e-12)
    assert np.allclose(sim.translation, [1.0, -2.0, 3.0], atol=1e-12)
    assert umeyama(src, dst, with_scale=False).scale == 1.0


def test_umeyama_weights_and_reflection():
    rng = np.random.default_rng(1)
    src = rng.normal(size=(40, 3))
    dst = src * np.array([-1.0, 1.0, 1.0])  # a mirror image: the best proper rotation still has det +1
    assert np.linalg.det(umeyama(src, dst).rotation) == pytest.approx(1.0)
    # zero weight on corrupted pairs: the clean pairs alone decide
    good = 3.0 * src
    bad = good.copy()
    bad[:10] += 100.0
    w = np.r_[np.zeros(10), np.ones(30)]
    sim = umeyama(src, bad, weights=w)
    assert sim.scale == pytest.approx(3.0) and np.allclose(sim.rotation, np.eye(3), atol=1e-10)
    assert np.allclose(sim.translation, 0, atol=1e-9)


def test_rotation_helpers():
    frames = axis_rotations()
    assert frames.shape == (24, 3, 3)
    assert np.allclose(np.linalg.det(frames), 1.0)
    assert len({tuple(np.round(m).astype(int).ravel()) for m in frames}) == 24
    assert rotation_error_deg(rotation_from_euler(30.0), np.eye(3)) == pytest.approx(30.0)
    sim = Similarity(2.0, rotation_from_euler(90.0), np.array([1.0, 2.0, 3.0]))
    pts = np.array([[1.0, 0.0, 0.0], [0.5, -2.0, 3.0]])
    assert np.allclose((sim.matrix @ np.c_[pts, np.ones(2)].T).T[:, :3], sim.apply(pts))
    assert np.allclose(sim.inverse().apply(sim.apply(pts)), pts)
    assert np.allclose(sim.compose(sim.inverse()).matrix, np.eye(4))
    assert sim.apply(pts.astype(np.float32)).dtype == np.float32


@pytest.mark.parametrize(
    ("yaw", "pitch", "scale"),
    [
        (180.0, 0.0, 0.3),
        pytest.param(135.0, 15.0, 3.0, marks=pytest.mark.slow),
        pytest.param(180.0, 10.0, 0.6, marks=pytest.mark.slow),
        pytest.param(20.0, 0.0, 1.25, marks=pytest.mark.slow),
    ],
)
def test_robust_recovers_random_similarities(yaw, pitch, scale):
    verts, faces = toy_head()
    rot = rotation_from_euler(yaw, pitch, 5.0)
    shift = np.array([40.0, -7.0, 3.0])
    src = scale * verts @ rot.T + shift  # the prediction lives in another frame and unit
    result = align_robust(src, faces, verts, faces, rng=np.random.default_rng(0))
    assert rotation_error_deg(result.rotation, rot.T) < 0.05
    assert result.scale * scale == pytest.approx(1.0, abs=2e-4)
    check_recovered(result, src, verts, bbox_diagonal(verts), 1e-4)
    assert np.allclose(result.matrix[:3, :3], result.scale * result.rotation)


def test_robust_other_up_axis_and_units():
    verts, faces = toy_head()
    z_up = rotation_from_euler(0.0, -90.0, 0.0) @ rotation_from_euler(70.0)  # Z-up, metres
    src = 0.01 * verts @ z_up.T
    grid = {
        "yaws": (0.0, 90.0, 180.0, 270.0),
        "tilts": (0.0,),
        "final_points": 4000,
    }  # the axis frames decide
    result = align_robust(src, faces, verts, faces, rng=np.random.default_rng(0), **grid)
    assert result.seed["rotation"].startswith("axes")
    assert rotation_error_deg(result.rotation, z_up.T) < 0.05
    assert result.scale == pytest.approx(100.0, rel=2e-4)


def test_robust_frontal_shell_onto_full_head():
    verts, faces = toy_head()
    shell_v, shell_f = front_shell(verts, faces)
    rot = rotation_from_euler(160.0, 10.0, 0.0)
    src = 1.7 * shell_v @ rot.T + 5.0
    result = align_robust(src, shell_f, verts, faces, rng=np.random.default_rng(0))
    assert rotation_error_deg(result.rotation, rot.T) < 0.5
    assert result.scale * 1.7 == pytest.approx(1.0, abs=5e-3)
    assert result.info["overlap_dst"] < 0.7  # most of the full head has no partner on the shell


@pytest.mark.slow
def test_robust_full_head_onto_frontal_shell():
    verts, faces = toy_head()
    shell_v, shell_f = front_shell(verts, faces)
    rot = rotation_from_euler(160.0, 10.0, 0.0)
    src = 0.8 * verts @ rot.T - 3.0
    result = align_robust(src, faces, shell_v, shell_f, rng=np.random.default_rng(0))
    assert rotation_error_deg(result.rotation, rot.T) < 0.5
    assert result.scale * 0.8 == pytest.approx(1.0, abs=5e-3)
    assert result.info["overlap_src"] < 0.7


def test_robust_is_deterministic_for_a_seed():
    verts, faces = toy_head(3)
    src = verts @ rotation_from_euler(200.0).T
    fast = {"yaws": (0.0, 180.0), "tilts": (0.0,), "axis_frames": False, "final_points": 1000}
    a = align_robust(src, faces, verts, faces, rng=np.random.default_rng(7), **fast)
    b = align_robust(src, faces, verts, faces, rng=np.random.default_rng(7), **fast)
    assert np.array_equal(a.matrix, b.matrix) and a.residual == b.residual


def test_topos_protocol_verbatim_recovers_a_near_start():
    verts, faces = toy_head(3)
    rot = rotation_from_euler(95.0)
    src = 1.1 * verts @ rot.T + 2.0
    result = align_topos(src, verts, yaws=(0.0, 270.0), scales=(1.0,), final_iters=100)
    assert result.protocol == "topos"
    assert rotation_error_deg(result.rotation, rot.T) < 0.5
    assert result.scale * 1.1 == pytest.approx(1.0, abs=0.01)
    assert result.seed["yaw_deg"] == 270.0  # the start nearest the inverse of a 95-degree yaw


def test_apply_normals_rotates_and_renormalises():
    rot = rotation_from_euler(90.0)
    result = AlignResult(3.0, rot, np.zeros(3), 0.0, 0.0, 0, "robust")
    normals = np.array([[0.0, 0.0, 1.0]], dtype=np.float32)
    out = result.apply_normals(normals)
    assert out.dtype == np.float32
    assert np.allclose(out, [[1.0, 0.0, 0.0]], atol=1e-6)
    d = result.to_dict()
    assert d["scale"] == 3.0 and np.asarray(d["matrix"]).shape == (4, 4)


def test_batched_gauss_newton_matches_the_per_point_reference():
    from topos_cli.geometry.align import _gauss_newton_step, rodrigues
    from topos_cli.geometry.icp_batch import _gn_solve_batch

    rng = np.random.default_rng(3)
    a = rng.normal(size=(60, 3))
    b = a + 0.05 * rng.normal(size=(60, 3))
    normals = rng.normal(size=(60, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    w = rng.random(60)
    step = _gauss_newton_step(a, b, normals, w, 0.2)  # explicit per-point Jacobians
    ds, d_rot, dt = step.scale, step.rotation, step.translation
    c = w @ a / w.sum()
    theta = _gn_solve_batch((a - c)[None], (a - b)[None], normals[None], w[None], 0.2)[0]  # closed form
    assert np.exp(theta[0]) == pytest.approx(ds, rel=1e-9)
    assert np.allclose(rodrigues(theta[1:4]), d_rot, atol=1e-10)
    assert np.allclose(c + theta[4:] - ds * d_rot @ c, dt, atol=1e-10)


def test_robust_point_cloud_onto_mesh():
    verts, faces = toy_head(3)
    rot = rotation_from_euler(100.0, 0.0, 0.0)
    cloud = 2.0 * verts @ rot.T  # vertices only, no faces: normals come from local PCA
    fast = {"tilts": (0.0,), "axis_frames": False, "final_points": 3000}
    result = align_robust(cloud, None, verts, faces, rng=np.random.default_rng(0), **fast)
    assert rotation_error_deg(result.rotation, rot.T) < 0.5
    assert result.scale * 2.0 == pytest.approx(1.0, abs=5e-3)



def partial_overlap_case(kind: str):
    """(source verts, faces, target verts, faces, source vertex ids that must land on their twins) on the default
    template's head: the head onto a bust (shoulders and chest under the neck, the target is mostly not head), a
    face shell onto the whole head, the head onto the same head under 2 cm of hair (the face bare)."""
    import trimesh

    from topos_cli.template import load_template

    tpl = load_template(None)
    verts, faces = tpl.verts.astype(np.float64), tpl.faces
    lo, hi = verts.min(0), verts.max(0)
    face = np.concatenate([tpl.regions[k] for k in ("nose", "mouth", "eye", "chin", "cheek")])
    if kind == "head-vs-bust":
        torso = trimesh.creation.icosphere(subdivisions=3)
        torso_v = np.asarray(torso.vertices) * [20.0, 12.0, 10.0] + [0.0, lo[1] - 11.0, -2.0]
        torso_f = np.asarray(torso.faces)[(torso_v[torso.faces][:, :, 1] > lo[1] - 18.0).all(1)]
        return verts, faces, np.r_[verts, torso_v], np.r_[faces, torso_f + len(verts)], face
    if kind == "face-shell-vs-head":
        shell_v, shell_f = front_shell(verts, faces, z_min=float(np.percentile(verts[:, 2], 55)))
        return shell_v, shell_f, verts, faces, np.arange(len(shell_v))
    normals = trimesh.Trimesh(verts, faces, process=False).vertex_normals
    hairline = hi[1] - 5.0 - 10.0 * (hi[2] - verts[:, 2]) / (hi[2] - lo[2])
    cap = np.clip((verts[:, 1] - hairline) / 2.0, 0.0, 1.0)
    return verts, faces, verts + normals * (2.0 * cap)[:, None], faces, face


def _shell_flip(pose: int):
    return pytest.param("face-shell-vs-head", pose, marks=[pytest.mark.slow, pytest.mark.xfail(
        reason="a face shell onto a whole head still lands on the back of the head from this pose", strict=False)])


@pytest.mark.parametrize(("kind", "pose", "max_err"), [
    ("head-vs-bust", 0, 0.05),
    pytest.param("head-vs-bust", 1, 0.05, marks=pytest.mark.slow),
    pytest.param("head-vs-bust", 2, 0.05, marks=pytest.mark.slow),
    pytest.param(*_shell_flip(0).values, 0.05, marks=_shell_flip(0).marks),
    pytest.param(*_shell_flip(1).values, 0.05, marks=_shell_flip(1).marks),
    pytest.param("face-shell-vs-head", 2, 0.05, marks=pytest.mark.slow),
    # hair moves the best fit (the aligner cannot tell hair from skin): right basin, the face within 2 cm
    pytest.param("head-vs-hairy-head", 0, 2.0, marks=pytest.mark.slow),
    pytest.param("head-vs-hairy-head", 1, 2.0, marks=pytest.mark.slow),
])
def test_robust_partial_overlap_random_poses(kind, pose, max_err):
    """The random-pose sweep on partial overlaps (issue 14): the shared part lands on its twin (median, cm)."""
    from scipy.spatial.transform import Rotation

    src_v, src_f, dst_v, dst_f, shared = partial_overlap_case(kind)
    rng = np.random.default_rng(100 + pose)
    rot = Rotation.random(random_state=100 + pose).as_matrix()
    src = float(rng.uniform(0.5, 2.0)) * src_v @ rot.T + rng.uniform(-20.0, 20.0, 3)
    result = align_robust(src, src_f, dst_v, dst_f, rng=np.random.default_rng(0))
    err = float(np.median(np.linalg.norm(result.apply(src[shared]) - src_v[shared], axis=1)))
    assert err < max_err, (kind, result.seed, err)
    assert rotation_error_deg(result.rotation, rot.T) < 5.0
