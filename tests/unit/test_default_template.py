"""Properties of the committed default template `topos-head` (scripts/build_default_template.py builds it)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from topos_cli.geometry.mesh_ops import face_areas
from topos_cli.template import TEMPLATES_DIR, load_template

PAPER_REGIONS = ["brow", "eye", "nose", "mouth", "ear", "forehead", "cheekbone", "jaw", "chin"]
REQUIRED_REGIONS = PAPER_REGIONS + ["scalp", "neck", "back_of_head"]
# iBUG-68 mirror partner of each landmark (the subject's left <-> right)
IBUG_MIRROR = ([16 - i for i in range(17)] + [26 - i for i in range(10)] + [27, 28, 29, 30]
               + [35, 34, 33, 32, 31] + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
               + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65])


@pytest.fixture(scope="module")
def tpl():
    return load_template("topos-head")


def _signed_uv_areas(t) -> np.ndarray:
    a = t.uv[t.uv_faces[:, 1]] - t.uv[t.uv_faces[:, 0]]
    b = t.uv[t.uv_faces[:, 2]] - t.uv[t.uv_faces[:, 0]]
    return 0.5 * (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0])


def _boundary_edges(faces: np.ndarray) -> np.ndarray:
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), 1)
    uniq, cnt = np.unique(e, axis=0, return_counts=True)
    return uniq[cnt == 1]


def test_is_the_default_and_sized(tpl):
    assert load_template() is tpl
    assert tpl.name == "topos-head"
    assert 8000 <= tpl.num_verts <= 15000
    assert tpl.meta["units"] == "cm" and tpl.meta["axes"] == {"up": "+Y", "front": "+Z"}
    size = sum(p.stat().st_size for p in (TEMPLATES_DIR / "topos-head").iterdir())
    assert size < 15e6


def test_mesh_quality(tpl):
    s = tpl.summary()
    assert s["components"] == 1 and s["unused_verts"] == 0
    assert s["edge_manifold"] and s["nonmanifold_edges"] == 0
    assert s["degenerate_faces"] == 0
    assert s["min_angle_deg"] > 20.0
    assert len(tpl.boundary_loops) == 4
    # consistently oriented: every interior edge is used once in each direction; normals point outward
    d = np.concatenate([tpl.faces[:, [0, 1]], tpl.faces[:, [1, 2]], tpl.faces[:, [2, 0]]])
    assert len(np.unique(d, axis=0)) == len(d)
    nose = tpl.verts[:, 2].argmax()
    from topos_cli.geometry.mesh_ops import vertex_normals
    assert vertex_normals(tpl.verts, tpl.faces)[nose, 2] > 0.9


def test_denser_on_the_face_than_on_the_scalp(tpl):
    areas = face_areas(tpl.verts, tpl.faces)
    labels, names = tpl.vertex_labels()
    tri_label = labels[tpl.faces[:, 0]]
    mean_area = {n: areas[tri_label == i].mean() for i, n in enumerate(names)}
    assert mean_area["nose"] * 2 < mean_area["scalp"]
    assert mean_area["cheekbone"] * 2 < mean_area["back_of_head"]


def test_named_boundaries_are_the_four_holes(tpl):
    named = tpl.meta["boundaries"]
    assert set(named) == {"neck", "eye_left", "eye_right", "mouth"}
    loops = {frozenset(loop.tolist()) for loop in tpl.boundary_loops}
    assert {frozenset(v) for v in named.values()} == loops
    centre = {k: tpl.verts[v].mean(0) for k, v in named.items()}
    assert centre["neck"][1] < centre["mouth"][1] < centre["eye_left"][1]
    assert centre["eye_left"][0] > 0 > centre["eye_right"][0]
    assert abs(centre["mouth"][0]) < 1e-4


def test_uv_no_flips_no_overlaps_two_charts(tpl):
    assert tpl.uv is not None and tpl.uv_faces.shape == tpl.faces.shape
    assert tpl.uv.min() >= 0.0 and tpl.uv.max() <= 1.0
    assert (_signed_uv_areas(tpl) > 0).all()
    # overlap-free: positive triangles whose UV boundary does not self-intersect, and the UV area equals
    # the area of the union (checked on a raster: no pixel centre is covered twice)
    b = _boundary_edges(tpl.uv_faces)
    p, q = tpl.uv[b[:, 0]], tpl.uv[b[:, 1]]

    def orient(a, c, d):
        return np.sign((c[..., 0] - a[..., 0]) * (d[..., 1] - a[..., 1]) - (c[..., 1] - a[..., 1]) * (d[..., 0] - a[..., 0]))

    P, Q = p[:, None], q[:, None]
    cross = (orient(P, Q, p[None]) * orient(P, Q, q[None]) < 0) & (orient(p[None], q[None], P) * orient(p[None], q[None], Q) < 0)
    shared = (b[:, None, :, None] == b[None, :, None, :]).any((-1, -2))
    assert not (cross & ~shared).any()
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    f = tpl.uv_faces
    n = len(tpl.uv)
    adj = coo_matrix((np.ones(3 * len(f)), (f.ravel(), np.roll(f, 1, 1).ravel())), (n, n))
    n_charts, chart = connected_components(adj, directed=False)
    assert n_charts == 2
    # the face is one chart: every triangle of the core face regions has its uvs in the same chart
    core = np.zeros(tpl.num_verts, bool)
    for r in ["eye", "nose", "mouth", "brow", "cheekbone", "forehead"]:
        core[tpl.region(r)] = True
    on_face = core[tpl.faces].all(1)
    assert on_face.sum() > 2000
    assert len(np.unique(chart[f[on_face]])) == 1


def test_uv_union_covers_each_point_once(tpl):
    """Rasterise every UV triangle at 512^2 pixel centres; an overlap would count a pixel twice."""
    res = 512
    uv = tpl.uv * res
    tri = uv[tpl.uv_faces]
    lo = np.floor(tri.min(1)).astype(int)
    hi = np.ceil(tri.max(1)).astype(int)
    count = np.zeros((res, res), np.int32)
    for t, (x0, y0), (x1, y1) in zip(tri, lo, hi, strict=True):
        xs, ys = np.meshgrid(np.arange(x0, x1) + 0.5, np.arange(y0, y1) + 0.5)
        a, b, c = t
        d = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        w1 = ((xs - a[0]) * (c[1] - a[1]) - (ys - a[1]) * (c[0] - a[0])) / d
        w2 = ((b[0] - a[0]) * (ys - a[1]) - (b[1] - a[1]) * (xs - a[0])) / d
        inside = (w1 > 0) & (w2 > 0) & (w1 + w2 < 1)
        count[ys[inside].astype(int), xs[inside].astype(int)] += 1
    assert count.max() == 1
    assert count.sum() > 0.25 * res * res


def test_regions_partition_all_vertices(tpl):
    assert len(tpl.regions) >= 12
    assert set(REQUIRED_REGIONS) <= set(tpl.regions)
    allv = np.concatenate(list(tpl.regions.values()))
    assert len(allv) == tpl.num_verts
    assert np.array_equal(np.sort(allv), np.arange(tpl.num_verts))
    assert all(len(v) > 50 for v in tpl.regions.values())
    # rules are mirror-symmetric: a region maps onto itself under the symmetry map
    for name, idx in tpl.regions.items():
        assert set(tpl.symmetry[idx].tolist()) == set(idx.tolist()), name


def test_landmarks_and_symmetry(tpl):
    lm, sym = tpl.landmarks, tpl.symmetry
    assert tpl.meta["landmark_scheme"] == "ibug68"
    assert lm.shape == (68,) and len(np.unique(lm)) == 68
    assert np.array_equal(sym[sym], np.arange(tpl.num_verts))
    assert np.array_equal(sym[lm], lm[IBUG_MIRROR])
    mirrored = tpl.verts[sym] * [-1, 1, 1]
    assert np.abs(mirrored - tpl.verts).max() < 0.01  # cm; ICT itself is symmetric to 0.05 mm
    faces = {tuple(sorted(f)) for f in tpl.faces.tolist()}
    assert {tuple(sorted(f)) for f in sym[tpl.faces].tolist()} == faces
    # landmark anatomy in the template frame: nose tip in front, eyes above the mouth, chin lowest
    p = tpl.verts[lm]
    assert p[30, 2] == p[:, 2].max()
    assert p[36:48, 1].min() > p[48:68, 1].max()
    assert p[8, 1] == p[:, 1].min()


def test_bases(tpl):
    v = tpl.num_verts
    assert tpl.basis("identity").shape == (100, v, 3)
    assert tpl.basis("expression").shape == (53, v, 3)
    names = [str(n) for n in tpl.bases["expression_names"]]
    assert len(names) == 53 and "jawOpen" in names and "eyeBlink_L" in names
    jaw = tpl.basis("expression")[names.index("jawOpen")]
    chin = tpl.landmarks[8]
    assert jaw[chin, 1] < -0.5  # the jaw opens downwards by centimetres
    crown = tpl.verts[:, 1] > tpl.verts[:, 1].max() - 3.0
    assert np.abs(jaw[crown]).max() < 1e-3  # the top of the skull does not move
    ident = tpl.basis("identity")
    assert np.isfinite(ident).all() and 0.01 < np.abs(ident).mean() < 1.0
    aug = tpl.meta["augment"]
    assert aug["pick"] >= 1 and set(aug["regions"]) == set(PAPER_REGIONS)
    for region, spec in aug["regions"].items():
        basis = tpl.basis(spec["basis"])
        assert spec["lower"] < spec["upper"]
        k = tpl.meta["bases"][spec["basis"]]["count"]
        assert basis.shape == (k, v, 3) and k % 2 == 0
        assert np.allclose(basis[: k // 2], -basis[k // 2:], atol=1e-3)  # both signs
        # localised: vertices farther than 3 cm from the region do not move
        inside = tpl.verts[tpl.region(region)]
        from scipy.spatial import cKDTree
        far = cKDTree(inside).query(tpl.verts)[0] > 3.0
        assert np.abs(basis[:, far]).max() == 0.0
        assert np.linalg.norm(basis[:, tpl.region(region)], axis=-1).max() > 0.3


def test_provenance_and_notice(tpl):
    root = TEMPLATES_DIR / "topos-head"
    notice = (root / "NOTICE").read_text()
    assert "ICT" in notice and "MIT" in notice and "Permission is hereby granted" in notice
    src = tpl.meta["source"]
    assert src["script"] == "scripts/build_default_template.py" and len(src["ict_sha256"]) == 64
    fit = src["report"]["fit"]
    assert fit["identities"] == 100
    assert fit["ict_to_ours_mm"]["mean"] < 0.5 and fit["ours_to_ict_mm"]["mean"] < 0.05
    readme = (root / "README.md").read_text()
    assert "python scripts/build_default_template.py" in readme and "| `nose` |" in readme


def _ict_path() -> Path | None:
    env = os.environ.get("TOPOS_ICT_NPZ")
    path = Path(env) if env else Path(__file__).resolve().parents[3] / "shared/data/ict_face_model_light.npz"
    return path if path.is_file() else None


@pytest.mark.slow
def test_same_weights_same_person_as_ict(tpl):
    """Template + w @ identity lies on ICT's surface for the same w (float16 rounding only)."""
    path = _ict_path()
    if path is None:
        pytest.skip("ICT FaceKit archive not found (set TOPOS_ICT_NPZ or put it at ../shared/data)")
    import trimesh

    from topos_cli.template import triangulate_polys
    ict = np.load(path)
    polys = ict["faces"].astype(np.int64)
    skin = polys[np.all(polys <= 11247, axis=1)]
    tris, _ = triangulate_polys(skin)
    rng = np.random.default_rng(7)
    for _ in range(2):
        w = rng.standard_normal(100)
        ict_verts = ict["neutral"][:11248] + np.tensordot(w, ict["identity_modes"][:, :11248], 1)
        ours = tpl.verts + np.tensordot(w, tpl.basis("identity"), 1)
        # landmarks are ICT vertices exactly
        assert np.abs(ours[tpl.landmarks] - ict_verts[ict["landmarks68"]]).max() < 0.01
        mesh = trimesh.Trimesh(ict_verts, tris, process=False)
        sample = rng.choice(tpl.num_verts, 2000, replace=False)
        _, dist, _ = trimesh.proximity.closest_point(mesh, ours[sample])
        # cm; ICT's quads are not planar and the build splits some along the other diagonal (mirror-consistent)
        assert dist.mean() < 0.005 and dist.max() < 0.1


def test_expression_prior_and_parts_are_what_the_build_scripts_write(tpl):
    """template.json's expression prior is scripts/head_expressions.py's output for the template's names, and
    the parts block and parts.npz are there (scripts/head_parts.py; rebuilt from ICT in the slow test below)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("head_expressions",
                                                  Path(__file__).resolve().parents[2] / "scripts/head_expressions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    names = [str(s) for s in tpl.bases["expression_names"]]
    assert tpl.meta["expression_prior"] == module.expression_prior(names)
    assert tpl.parts is not None and tpl.parts.num_verts == tpl.meta["parts"]["num_verts"]


@pytest.mark.slow
def test_parts_rebuild_writes_the_same_bytes(tpl, tmp_path):
    """scripts/head_parts.py on a copy of the template folder reproduces parts.npz and template.json exactly."""
    import shutil
    import subprocess
    import sys

    path = _ict_path()
    if path is None:
        pytest.skip("ICT FaceKit npz not found (set TOPOS_ICT_NPZ or put it at ../shared/data/)")
    root = TEMPLATES_DIR / "topos-head"
    copy = tmp_path / "topos-head"
    shutil.copytree(root, copy)
    script = Path(__file__).resolve().parents[2] / "scripts/head_parts.py"
    subprocess.run([sys.executable, str(script), "--ict", str(path), "--template", str(copy)], check=True,
                   capture_output=True)
    for name in ("parts.npz", "template.json"):
        assert (copy / name).read_bytes() == (root / name).read_bytes(), name
