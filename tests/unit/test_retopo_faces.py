"""`topos retopo` on face shells (issue 19): the face found on a shell, a non-face shell refused, coverage."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from topos_cli.template import load_template

MM = 10.0  # the test scans are in millimetres


def _renderable():
    pytest.importorskip("mediapipe")
    from topos_cli.render.raster_gl import gl_available

    if not gl_available():
        pytest.skip("no OpenGL context for the renderer")


@pytest.fixture(scope="module")
def head():
    return load_template("topos-head")


def _face_mask(tpl, seed: int, bottom: float = -6.5, front: float = 0.5):
    """A face shell of a random identity of the template (in front of the ears, above mid-chin), posed in mm:
    (scan verts, scan faces, truth verts posed, pose)."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(len(tpl.bases["identity"]))
    verts = tpl.verts.astype(float) + np.tensordot(w, tpl.bases["identity"], 1)
    cent = verts[tpl.faces].mean(1)
    faces = tpl.faces[(cent[:, 2] > front) & (cent[:, 1] > bottom)]
    used, inv = np.unique(faces, return_inverse=True)
    rot = Rotation.random(random_state=seed).as_matrix()
    shift = rng.normal(0, 100.0, 3)

    def pose(x):
        return MM * x @ rot.T + shift

    return pose(verts[used]), inv.reshape(-1, 3), pose(verts), pose


def test_find_face_lifts_landmarks_onto_a_posed_face_shell(head):
    _renderable()
    from topos_cli.pipelines.retopo_faces import find_face

    sv, sf, truth, _ = _face_mask(head, 3)
    cues = find_face(sv, sf, head.verts.astype(float), head.sidecar("face_landmarks_mediapipe.json"))
    assert cues is not None and len(cues.vertex_ids) > 100
    err = np.linalg.norm(cues.points - truth[cues.vertex_ids], axis=1) / MM  # cm
    assert np.median(err) < 0.8  # lifted onto the right part of the face, in the right order
    assert cues.residual < 0.02 and cues.detections >= 1


def test_a_shell_that_is_no_face_is_refused_with_a_reason_and_coverage(head):
    _renderable()
    from topos_cli.pipelines.retopo import RetopoOptions, RetopoPipeline

    sphere = __import__("trimesh").creation.icosphere(subdivisions=3)
    keep = sphere.vertices[sphere.faces].mean(1)[:, 2] > 0.2  # a smooth cap: no face, no head
    used, inv = np.unique(sphere.faces[keep], return_inverse=True)
    verts = sphere.vertices[used] * 90.0 @ Rotation.random(random_state=1).as_matrix().T
    pipe = RetopoPipeline(head)
    res = pipe(verts, inv.reshape(-1, 3), options=RetopoOptions(points=4000, iters=3, vae=False, refine=False))
    report = res.report
    assert report["ok"] is False
    assert any("no face found in any view" in w and "--landmarks" in w for w in report["warnings"]), report["warnings"]
    assert report["face"]["found"] is False
    assert set(report["coverage"]) == set(head.regions)
    assert all(0.0 <= v <= 1.0 for v in report["coverage"].values())
    assert report["coverage"]["back_of_head"] < 0.5  # a cap cannot hold the whole head


@pytest.mark.slow
def test_a_face_mask_in_a_random_pose_is_fitted_and_its_coverage_says_face_only(head):
    _renderable()
    from topos_cli.pipelines.retopo import RetopoPipeline

    sv, sf, truth, _ = _face_mask(head, 11)
    pipe = RetopoPipeline.from_pretrained(None, "topos-head")
    res = pipe(sv, sf, seed=0)
    report = res.report
    diag = np.linalg.norm(truth.max(0) - truth.min(0))
    err = np.linalg.norm(res.verts - truth, axis=1) / diag * 100
    face = np.concatenate([head.regions[r] for r in ("eye", "nose", "mouth", "cheekbone")])
    assert report["ok"] is True, report["warnings"]
    assert err[face].mean() < 0.5  # % of the diagonal
    assert report["coverage"]["nose"] > 0.8 and report["coverage"]["back_of_head"] < 0.2
    assert err.max() < 10.0  # no tail: the unsupported head stays near the truth


def test_carved_hair_over_the_forehead_is_capped_at_hair_offset(head):
    """Carved locks 0.8 cm thick over the forehead and temples of the template's own face shell (inside the
    refinement's 2 % gate, so it follows them; the prior is the skin under them, no bases fit): unbounded, the skin
    there moves out over 1 % of the diagonal; bounded, no vertex of the hair regions moves out of the prior by more
    than `hair_offset`, the report counts the vertices the bound moved, the rest is as unbounded."""
    from topos_cli.geometry.mesh_ops import vertex_normals
    from topos_cli.pipelines.retopo import RetopoOptions, RetopoPipeline

    verts = head.verts.astype(float)
    cent = verts[head.faces].mean(1)
    faces = head.faces[(cent[:, 2] > 0.5) & (cent[:, 1] > -6.5)]
    hair = np.clip(verts[:, 1] - 7.0, 0, 1) + np.clip(np.abs(verts[:, 0]) - 5.5, 0, 1) * np.clip(verts[:, 1] - 2, 0, 1)
    scan = verts + vertex_normals(verts, head.faces) * (0.8 * np.clip(hair, 0, 1))[:, None]
    pipe = RetopoPipeline(head)
    opts = {"up": (0.0, 1.0, 0.0), "front": (0.0, 0.0, 1.0), "points": 8000, "bases": False, "frame": "template"}
    out = {}
    for name, offset in (("bounded", 1.0), ("free", None)):
        res = pipe(scan * MM, faces, options=RetopoOptions(hair_offset=offset, **opts), seed=0)
        prior = res.verts_prior.astype(float)  # frame "template"
        outward = ((res.verts_template - prior) * vertex_normals(prior, head.faces)).sum(1) / pipe.diag * 100
        out[name] = (res, outward)
    mask = pipe.hair_mask
    assert out["free"][1][mask].max() > 1.2  # the locks pull the free refinement out
    assert out["bounded"][1][mask].max() <= 1.0 + 1e-4  # % of the diagonal
    assert out["bounded"][0].report["hair_capped"] >= 10 and out["free"][0].report["hair_capped"] == 0
    assert np.allclose(out["bounded"][0].verts_template[~mask], out["free"][0].verts_template[~mask])
