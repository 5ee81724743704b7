"""geometry/metrics and geometry/clip: known answers (identical sets, concentric spheres, hand-cut triangles)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import cKDTree

from topos_cli.geometry.clip import clip_halfspace, clip_to_box, inflated_box
from topos_cli.geometry.mesh_ops import face_areas, face_normals, sample_surface
from topos_cli.geometry.metrics import (
    CONVENTION,
    point_metrics,
    sample_points_normals,
    surface_metrics,
    vertex_errors,
)


def sphere(radius: float, subdivisions: int = 4):
    import trimesh

    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return np.asarray(mesh.vertices), np.asarray(mesh.faces, dtype=np.int64)


def grid(n: int = 10):
    """A unit square [0,1]^2 at z=0 as 2 n^2 triangles, normals +Z."""
    xs = np.linspace(0.0, 1.0, n + 1)
    gx, gy = np.meshgrid(xs, xs, indexing="ij")
    verts = np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)], 1)
    idx = np.arange((n + 1) ** 2).reshape(n + 1, n + 1)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    return verts, faces


def test_identical_samples_give_zero_chamfer_unit_nc_and_f():
    verts, faces = sphere(1.0, 3)
    pts, nrm = sample_points_normals(verts, faces, 2000, np.random.default_rng(0))
    out = point_metrics(pts, nrm, pts, nrm, scale=2.0, thresholds=(0.01, 0.001))
    assert out["chamfer_l1"] == 0.0 and out["accuracy"] == 0.0 and out["completeness"] == 0.0
    assert out["normal_consistency"] == pytest.approx(1.0)
    assert [f["f"] for f in out["fscore"]] == [1.0, 1.0]


def test_concentric_spheres_known_offsets():
    inner_v, inner_f = sphere(1.0)
    outer_v, outer_f = sphere(1.5)
    out = surface_metrics(
        inner_v,
        inner_f,
        outer_v,
        outer_f,
        n=20000,
        rng=np.random.default_rng(0),
        thresholds=(0.2,),
        clip=False,
    )
    diag = np.linalg.norm(outer_v.max(0) - outer_v.min(0))
    assert out["diagonal"] == pytest.approx(diag)
    gap = 0.5 / diag  # every point is (just over) 0.5 from the other sphere
    assert out["accuracy"] == pytest.approx(gap, rel=0.01)
    assert out["completeness"] == pytest.approx(gap, rel=0.01)
    assert out["chamfer_l1"] == pytest.approx(2 * gap, rel=0.01)
    assert out["normal_consistency"] > 0.995
    assert out["fscore"]["threshold"] == 0.01 and out["fscore"]["f"] == 0.0  # 0.01 * diag < gap
    assert out["fscores"][1]["f"] == 1.0  # 0.2 * diag > gap
    assert out["clip_area_kept"] == 1.0


def test_surface_metrics_same_mesh_is_at_the_sampling_floor_and_seeded():
    verts, faces = sphere(1.0, 3)
    a = surface_metrics(verts, faces, verts, faces, n=3000, rng=np.random.default_rng(5))
    b = surface_metrics(verts, faces, verts, faces, n=3000, rng=np.random.default_rng(5))
    assert a == b
    assert 0 < a["chamfer_l1"] < 0.03
    assert a["normal_consistency"] > 0.99


def test_against_a_brute_force_reference():
    rng = np.random.default_rng(1)
    pred = rng.normal(size=(300, 3))
    gt = rng.normal(size=(250, 3)) + 0.1
    pn = rng.normal(size=(300, 3))
    gn = rng.normal(size=(250, 3))
    pn /= np.linalg.norm(pn, axis=1, keepdims=True)
    gn /= np.linalg.norm(gn, axis=1, keepdims=True)
    dist = np.linalg.norm(pred[:, None] - gt[None], axis=2)
    d_pg, d_gp = dist.min(1) / 3.0, dist.min(0) / 3.0
    nc = 0.5 * (
        np.abs((pn * gn[dist.argmin(1)]).sum(1)).mean() + np.abs((gn * pn[dist.argmin(0)]).sum(1)).mean()
    )
    p, r = (d_pg <= 0.05).mean(), (d_gp <= 0.05).mean()
    out = point_metrics(pred, pn, gt, gn, scale=3.0, thresholds=(0.05,))
    assert out["chamfer_l1"] == pytest.approx(d_pg.mean() + d_gp.mean(), rel=1e-12)
    assert out["normal_consistency"] == pytest.approx(nc, rel=1e-12)
    assert out["fscore"][0]["precision"] == p and out["fscore"][0]["recall"] == r
    assert out["fscore"][0]["f"] == pytest.approx(2 * p * r / (p + r))


def test_sampling_matches_mesh_ops_and_uses_face_normals():
    verts, faces = sphere(2.0, 2)
    pts, nrm = sample_points_normals(verts, faces, 500, np.random.default_rng(3))
    ref, fidx, _ = sample_surface(verts, faces, 500, np.random.default_rng(3))
    assert np.array_equal(pts, ref)
    assert np.allclose(nrm, face_normals(verts, faces)[fidx])


def test_clip_halfspace_cuts_one_triangle_exactly():
    verts = np.array([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    faces = np.array([[0, 1, 2]])
    # keep x <= 1: a quad (0,0)-(1,0)-(1,1)-(0,2) of area 1.5, as two triangles, same orientation
    v, f = clip_halfspace(verts, faces, np.array([1.0, 0.0, 0.0]), 1.0)
    assert len(f) == 2 and face_areas(v, f).sum() == pytest.approx(1.5)
    assert (face_normals(v, f)[:, 2] > 0).all()
    # keep x >= 1: the corner triangle of area 0.5
    v, f = clip_halfspace(verts, faces, np.array([-1.0, 0.0, 0.0]), -1.0)
    assert len(f) == 1 and face_areas(v, f).sum() == pytest.approx(0.5)
    assert (face_normals(v, f)[:, 2] > 0).all()


def test_clip_to_box_slices_instead_of_dropping():
    verts, faces = grid(7)  # cells of 1/7: the cut at x=0.5 crosses triangles
    v, f, kept = clip_to_box(verts, faces, np.array([-1, -1, -1.0]), np.array([0.5, 0.75, 1.0]))
    assert kept == pytest.approx(0.375)
    assert face_areas(v, f).sum() == pytest.approx(0.375)
    assert v[:, 0].max() == pytest.approx(0.5) and v[:, 1].max() == pytest.approx(0.75)
    # shared cut vertices: no duplicates along the cut
    assert len(np.unique(np.round(v, 12), axis=0)) == len(v)
    # inside the box: untouched
    same_v, same_f, kept = clip_to_box(verts, faces, np.full(3, -1.0), np.full(3, 2.0))
    assert kept == 1.0 and np.array_equal(same_f, faces)


def test_clipping_in_surface_metrics_penalises_nothing_outside_and_reports_area():
    gt_v, gt_f = grid(4)
    # a prediction twice as wide: the half outside the gt box (+5%) is cut away, and reported
    pred_v = gt_v * np.array([2.0, 1.0, 1.0])
    out = surface_metrics(pred_v, gt_f, gt_v, gt_f, n=4000, rng=np.random.default_rng(0))
    lo, hi = inflated_box(gt_v, 0.05)
    assert hi[0] == pytest.approx(1.025) and lo[0] == pytest.approx(-0.025)
    assert out["clip_area_kept"] == pytest.approx(1.025 / 2.0)
    assert out["accuracy"] < 0.01  # what is left lies on the gt plane
    unclipped = surface_metrics(pred_v, gt_f, gt_v, gt_f, n=4000, rng=np.random.default_rng(0), clip=False)
    assert unclipped["accuracy"] > 0.1


def test_vertex_errors_known_values():
    gt = np.zeros((4, 3))
    pred = np.array([[0.0, 0, 0], [3, 4, 0], [0, 0, 1], [0, 0, 2]])
    out = vertex_errors(pred, gt, scale=2.0, regions={"a": np.array([0, 1]), "b": np.array([2, 3])})
    assert out["mean"] == pytest.approx((0 + 5 + 1 + 2) / 4 / 2)
    assert out["max"] == pytest.approx(2.5)
    assert out["rmse"] == pytest.approx(np.sqrt((0 + 25 + 1 + 4) / 4) / 2)
    assert out["per_region"]["a"] == {"mean": 1.25, "max": 2.5}
    assert out["per_region"]["b"] == {"mean": 0.75, "max": 1.0}


def test_convention_is_documented():
    assert "sum" in CONVENTION["chamfer_l1"] and "<=" in CONVENTION["fscore"]


def test_fscore_counts_ties_as_inside():
    gt = np.array([[0.0, 0, 0], [10, 0, 0], [0, 10, 0]])
    pred = gt + np.array([0.1, 0, 0])
    out = point_metrics(pred, None, gt, None, scale=1.0, thresholds=(0.1, 0.0999))
    assert out["fscore"][0]["f"] == 1.0 and out["fscore"][1]["f"] == 0.0
    assert cKDTree(gt).query(pred)[0].max() == pytest.approx(0.1)
