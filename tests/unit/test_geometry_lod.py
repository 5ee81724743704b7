"""LOD chain: coarser topologies tied to LOD0 by barycentrics, UVs kept, seams welded, deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from topos_cli.geometry.lod import build_lod_chain, closest_on_triangles
from topos_cli.geometry.mesh_ops import mesh_quality
from topos_cli.template import load_template


@pytest.fixture(scope="module")
def chain():
    tpl = load_template()
    return tpl, build_lod_chain(tpl.verts, tpl.faces, tpl.uv, tpl.uv_faces)


def test_closest_on_triangles_matches_brute_force():
    rng = np.random.default_rng(0)
    tris = rng.normal(size=(200, 3, 3))
    pts = rng.normal(size=(200, 3)) * 2
    closest, bary = closest_on_triangles(pts, tris)
    assert np.allclose(bary.sum(1), 1) and (bary > -1e-9).all()
    # brute force: the best of a dense barycentric grid is never closer than the exact answer
    g = np.linspace(0, 1, 41)
    u, v = np.meshgrid(g, g)
    keep = (u + v) <= 1
    grid = np.stack([1 - u[keep] - v[keep], u[keep], v[keep]], 1)  # (G, 3)
    samples = np.einsum("gk,nkc->ngc", grid, tris)
    brute = np.linalg.norm(samples - pts[:, None], axis=2).min(1)
    exact = np.linalg.norm(closest - pts, axis=1)
    assert (exact <= brute + 1e-9).all() and (brute - exact).max() < 0.1


def test_chain_sizes_topology_and_uvs(chain):
    tpl, levels = chain
    counts = [lvl.num_verts for lvl in levels]
    assert counts[0] == tpl.num_verts
    for got, want in zip(counts[1:], (5000, 2500, 1200), strict=True):
        assert abs(got - want) / want < 0.1, counts
    for lvl in levels[1:]:
        q = mesh_quality(lvl.sample(tpl.verts), lvl.faces)
        assert q["components"] == 1 and q["edge_manifold"] and q["degenerate_faces"] == 0
        corners = lvl.uv[lvl.uv_faces]
        a, b = corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]
        assert (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0] > 0).all()  # no folded UV triangle
        # the neck, eye and mouth holes stay four boundary loops (seams are welded, no cracks)
        from topos_cli.template import boundary_loops

        assert len(boundary_loops(lvl.faces)) == 4


def test_lod_equals_lod0_sampled_by_barycentrics(chain):
    tpl, levels = chain
    rng = np.random.default_rng(1)
    head = tpl.verts + np.tensordot(rng.standard_normal(20), tpl.bases["identity"][:20], 1)
    for lvl in levels[1:]:
        lod = lvl.sample(head)
        manual = np.einsum("nk,nkc->nc", lvl.bary, head[lvl.corners])
        assert np.allclose(lod, manual, atol=1e-5)
        assert np.allclose(lvl.bary.sum(1), 1) and (lvl.bary >= -1e-9).all()
        # every LOD vertex lies on LOD0's surface, in the triangle its corners name
        assert set(map(tuple, np.sort(lvl.corners, 1))) <= set(map(tuple, np.sort(tpl.faces, 1)))
        # UVs are LOD0's UVs at the same barycentrics: a vertex's uv copies interpolate the template's layout
        one_hot = lvl.bary.max(1) == 1
        assert one_hot.sum() > 0.05 * lvl.num_verts  # locked borders and seams are template vertices
    # bases carry down: the LOD of (head + expression) is the LOD head plus the LOD delta
    delta = tpl.bases["expression"][0]
    assert np.allclose(levels[2].sample(head + delta), levels[2].sample(head) + levels[2].sample(delta), atol=1e-4)


def test_chain_is_deterministic(chain):
    tpl, levels = chain
    again = build_lod_chain(tpl.verts, tpl.faces, tpl.uv, tpl.uv_faces, (5000,))  # LOD1 = the same first step
    assert np.array_equal(again[1].faces, levels[1].faces) and np.array_equal(again[1].bary, levels[1].bary)
