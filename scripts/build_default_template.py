"""Build the default template `topos-head` from the ICT FaceKit (MIT) with topos's own remeshing.

    python scripts/build_default_template.py --ict ../shared/data/ict_face_model_light.npz \
        --out topos_cli/assets/templates/topos-head

Pipeline (deterministic: a rebuild on one machine writes the same bytes; about two minutes on one CPU core,
most of it the fit-error measurement):
1. Skin = ICT polygons whose vertices are all in `face` + `head_and_neck`. It is one component,
   edge-manifold, with exactly four holes (neck, two eyes, mouth), and mirror-symmetric up to 0.05 mm with a
   vertex permutation `mirror` (x -> -x). The x >= 0 polygons are triangulated and mirrored, and only the
   half x >= 0 is remeshed; the other half is its mirror image, which makes the symmetry map exact.
2. Two charts on the half: "front" = ICT's `face` range minus the skin under the jaw (face, forehead to the
   hairline, ears) and "back" = scalp, under the chin and neck. Each half chart is a disk, flattened by
   LSCM (least-squares conformal maps, scipy sparse) with the glued midline held on u = 0 so the mirrored
   half continues it without a seam; the eye and half-mouth openings are bridged by virtual triangles while
   flattening so the inward-curling lips cannot overlap. UV seams: hairline, behind the ears, under the jaw
   (between the charts) and the front midline of the neck.
3. Boundary curves (holes, seam, midline) are resampled with a spacing field given in 3D (PARAMS: finer on
   the face and where the surface bends), with ICT's 68 landmark vertices kept as fixed points. Interior points come
   from adaptive farthest-point sampling, then density-weighted centroidal relaxation in the chart plane
   with Delaunay triangulation (scipy; every boundary segment is checked to be a Delaunay edge) in between,
   and finally edge flips that raise the smallest 3D angle. No dependency beyond numpy/scipy.
4. Every new vertex is a barycentric point of an ICT skin triangle, so positions and every basis are the
   same sparse linear interpolation W of ICT's arrays: `W @ (neutral + w @ modes) = verts + w @ (W @ modes)`.
5. Regions are a hard partition from landmark-based rules; region bases are identity modes localised with
   smooth masks, compressed per region by PCA and stored with both signs.
6. template.json carries the expression prior (scripts/head_expressions.py) and the eye and mouth parts
   (scripts/head_parts.py: parts.npz beside the skin, built from the written template.obj and bases.npz).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.spatial import cKDTree

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from head_expressions import expression_prior  # noqa: E402
from head_geometry import ear_clip, even_odd, flip_for_quality  # noqa: E402
from head_parts import save_npz, write_parts  # noqa: E402
from head_regions import REGION_RULES, make_regions, region_bases  # noqa: E402
from head_report import (  # noqa: E402
    fit_error,
    keep_foreign_sections,
    notice_text,
    pack_uv,
    readme_text,
    rounded_report,
    signed_areas,
    uv_report,
)

from topos_cli.geometry.mesh_ops import face_areas, mesh_quality  # noqa: E402
from topos_cli.io.obj import ObjData, format_obj  # noqa: E402
from topos_cli.template import boundary_loops, triangulate_polys  # noqa: E402

SKIN_LAST = 11247  # ICT geometry_ranges: face [0, 9408] + head_and_neck [9409, 11247]
FACE_LAST = 9408
NARROW_FACE_LAST = 6705
PARAMS = {
    "h_face_cm": 0.25,       # target edge length on the face (ICT narrow_face_area)
    "h_far_cm": 0.50,        # on scalp, back of head and neck
    "h_ramp_cm": 4.0,        # distance from the face over which the spacing grows
    "h_min_cm": 0.15,
    "curv_angle": 0.5,      # radians of normal turn per edge at most
    "grade": 0.25,           # max size change per cm
    "chin_cut_cm": 1.0,      # the face chart ends this far below the jaw landmark contour
    "fps_stop": 0.95,        # farthest-point sampling stops when every point is within fps_stop*h of a sample
    "relax_iters": 8,
    "seed": 0,
    "identities_for_fit": 100,
    "region_modes": 8,       # PCA directions per region basis (x2 signs)
    "region_sigma": 2.5,     # a region-basis coefficient of 1 = 2.5 standard deviations of that direction
    "region_falloff_cm": 2.5,
}
PAPER_REGIONS = ["brow", "eye", "nose", "mouth", "ear", "forehead", "cheekbone", "jaw", "chin"]


# ----------------------------------------------------------------------------- source mesh

def load_skin(path: Path) -> dict:
    """ICT skin: verts (N,3) f64, tris (F,3), mirror (N,) permutation, arrays needed later."""
    npz = np.load(path, allow_pickle=False)
    polys = npz["faces"].astype(np.int64)
    keep = np.all(polys <= SKIN_LAST, axis=1)  # the -1 padding passes too
    verts = npz["neutral"][: SKIN_LAST + 1].astype(np.float64)
    dist, mirror = cKDTree(verts).query(verts * [-1.0, 1.0, 1.0])
    if not np.array_equal(mirror[mirror], np.arange(len(verts))) or dist.max() > 0.01:
        raise SystemExit("ICT skin is not mirror-symmetric as expected; cannot build a symmetric template")
    # triangulate the x >= 0 polygons and mirror them, so quads split along mirror-image diagonals and a
    # mirrored barycentric point always lies on a real triangle of the source
    polys = polys[keep]
    px = np.where(polys >= 0, verts[np.maximum(polys, 0), 0], 0.0)
    right = (px >= -1e-9).all(1)
    mirrored = {frozenset(mirror[p[p >= 0]]) for p in polys[right]}
    if {frozenset(p[p >= 0]) for p in polys[~right]} != mirrored - {frozenset(p[p >= 0]) for p in polys[right]}:
        raise SystemExit("ICT skin polygons are not mirror-symmetric as expected")
    tris_right, _ = triangulate_polys(polys[right])
    tris_left = mirror[tris_right][:, ::-1]
    on_mid = np.abs(verts[:, 0]) < 1e-9
    tris_left = tris_left[~on_mid[tris_left].all(1)]
    tris = np.concatenate([tris_right, tris_left])
    return {"verts": verts, "tris": tris, "mirror": mirror, "mirror_err_cm": float(dist.max()),
            "landmarks": npz["landmarks68"].astype(np.int64), "licence": str(npz["licence"]),
            "npz": npz}


def lscm(verts: np.ndarray, tris: np.ndarray, u_zero: np.ndarray, pins: list[tuple[int, float]]) -> np.ndarray:
    """Least-squares conformal map (N,2) with u = 0 on `u_zero` vertices and v pinned at `pins`."""
    n = len(verts)
    p0, p1, p2 = verts[tris[:, 0]], verts[tris[:, 1]], verts[tris[:, 2]]
    l1 = np.linalg.norm(p1 - p0, axis=1)
    e1 = (p1 - p0) / l1[:, None]
    nrm = np.cross(p1 - p0, p2 - p0)
    dbl = np.linalg.norm(nrm, axis=1)
    e2 = np.cross(nrm / dbl[:, None], e1)
    z = np.stack([np.zeros(len(tris)), l1, ((p2 - p0) * e1).sum(1) + 1j * ((p2 - p0) * e2).sum(1)], 1)
    # residual sum_j (z_{j+2} - z_{j+1}) U_j is the anti-holomorphic part of the linear map
    w = np.stack([z[:, 2] - z[:, 1], z[:, 0] - z[:, 2], z[:, 1] - z[:, 0]], 1) / np.sqrt(dbl)[:, None]
    rows, cols = np.repeat(np.arange(len(tris)), 3), tris.ravel()
    mr = sp.csr_matrix((w.real.ravel(), (rows, cols)), (len(tris), n))
    mi = sp.csr_matrix((w.imag.ravel(), (rows, cols)), (len(tris), n))
    a = sp.vstack([sp.hstack([mr, -mi]), sp.hstack([mi, mr])]).tocsc()
    fixed, val = np.zeros(2 * n, bool), np.zeros(2 * n)
    fixed[:n] = u_zero
    for i, v in pins:
        fixed[n + i], val[n + i] = True, v
    unused = np.ones(n, bool)
    unused[tris.ravel()] = False
    fixed[:n] |= unused
    fixed[n:] |= unused
    free = ~fixed
    af = a[:, free]
    x = val.copy()
    x[free] = spla.spsolve((af.T @ af).tocsc(), -(af.T @ (a[:, fixed] @ val[fixed])))
    return np.stack([x[:n], x[n:]], 1)


# ----------------------------------------------------------------------------- charts

def build_charts(skin: dict) -> dict:
    """Half charts (x >= 0) 'front' and 'back': source triangles (real + hole fills), LSCM uv per vertex.

    The front chart's eye hole and half mouth are filled with virtual triangles before flattening: the
    lips and eyelids curl inwards, and without a membrane across the opening LSCM maps the upper and
    lower lip over each other. Virtual triangles shape the map but never carry a template vertex.
    """
    verts, tris = skin["verts"], skin["tris"]
    on_mid = np.abs(verts[:, 0]) < 1e-9
    half = (verts[tris][:, :, 0] >= -1e-9).all(1)
    front = _front_chart(verts, tris, skin["landmarks"])
    skin_border = {tuple(sorted(e)) for loop in boundary_loops(tris) for e in zip(loop, np.roll(loop, -1), strict=True)}
    charts = {}
    for name, sel in [("front", half & front), ("back", half & ~front)]:
        real = tris[sel]
        fill = _fill_holes(verts, real, skin_border, on_mid) if name == "front" else np.zeros((0, 3), np.int64)
        t = np.concatenate([real, fill])
        used = np.unique(real)
        glued = _glued_midline(verts, _midline_boundary(real, on_mid), name)
        lo, hi = glued[verts[glued, 1].argmin()], glued[verts[glued, 1].argmax()]
        u_zero = np.zeros(len(verts), bool)
        u_zero[glued] = True
        uv = lscm(verts, t, u_zero, [(lo, 0.0), (hi, verts[hi, 1] - verts[lo, 1])])
        if np.median(signed_areas(uv, real)) < 0:
            uv[:, 1] *= -1
        if np.median(uv[used, 0]) < 0:
            uv *= -1  # rotate by 180 degrees: keeps orientation, puts the half on u >= 0
        uv = _unfold(uv, t, u_zero)
        s = signed_areas(uv, t)
        scale = np.sqrt(face_areas(verts, t) / np.maximum(np.abs(s), 1e-12))
        virtual = np.r_[np.zeros(len(real), bool), np.ones(len(fill), bool)]
        charts[name] = {"tris": t, "real": real, "virtual": virtual, "uv": uv, "glued": glued,
                        "flipped_source": int((s <= 0).sum()), "scale": scale,
                        "tree": cKDTree(uv[t].mean(1))}
    return charts


def _front_chart(verts: np.ndarray, tris: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Face-chart triangles: ICT's face range minus the skin under the jaw (more than `chin_cut_cm` below the
    landmark jaw contour 8-12, flat beyond 12), which joins the neck in the back chart. Keeping the
    submental area out of the face chart keeps the conformal map from spending texels under the chin."""
    lm = verts[landmarks]
    jaw = lm[8:13] * [1, 1, 1] if lm[12, 0] > 0 else lm[4:9][::-1] * [-1, 1, 1]
    cen = verts[tris].mean(1)
    jaw_y = np.interp(np.abs(cen[:, 0]), jaw[:, 0], jaw[:, 1])
    in_face = (tris <= FACE_LAST).all(1)
    behind_jaw = (cen[:, 1] < -3.0) & (cen[:, 2] < 1.0)  # the strip of ICT's face range below the ear lobe
    front = in_face & (cen[:, 1] > jaw_y - PARAMS["chin_cut_cm"]) & ~behind_jaw
    front = _smooth_labels(tris, front, in_face)
    # keep the chart a disk: drop small islands on either side of the cut
    from scipy.sparse.csgraph import connected_components

    def components(sel):
        idx = np.flatnonzero(sel)
        e = np.concatenate([tris[idx][:, [0, 1]], tris[idx][:, [1, 2]], tris[idx][:, [2, 0]]])
        key = np.sort(e, 1)
        _, inv = np.unique(key, axis=0, return_inverse=True)
        owner = np.tile(idx, 3)
        order = np.argsort(inv.ravel(), kind="stable")
        pairs = owner[order].reshape(-1)  # triangles sharing an edge are adjacent in `order`
        inv_sorted = inv.ravel()[order]
        same = inv_sorted[1:] == inv_sorted[:-1]
        a, b = pairs[:-1][same], pairs[1:][same]
        n = len(tris)
        g = sp.coo_matrix((np.ones(len(a)), (a, b)), (n, n))
        lab = connected_components(g, directed=False)[1]
        return lab, idx

    for sel_side in (True, False):
        lab, idx = components(front if sel_side else ~front)
        big = np.bincount(lab[idx]).argmax()
        small = idx[lab[idx] != big]
        front[small] = not sel_side
    return front


def _smooth_labels(tris: np.ndarray, front: np.ndarray, allowed: np.ndarray, iters: int = 10) -> np.ndarray:
    """Majority filter on triangle labels (2 of 3 edge neighbours win) so the seam follows a smooth path."""
    e = np.sort(np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]]), 1)
    _, inv = np.unique(e, axis=0, return_inverse=True)
    inv = inv.ravel()
    owner = np.tile(np.arange(len(tris)), 3)
    order = np.argsort(inv, kind="stable")
    same = inv[order][1:] == inv[order][:-1]
    a, b = owner[order][:-1][same], owner[order][1:][same]
    for _ in range(iters):
        votes = np.zeros(len(tris))
        np.add.at(votes, a, front[b])
        np.add.at(votes, b, front[a])
        nb = np.bincount(np.r_[a, b], minlength=len(tris))
        new = np.where(votes >= 2, True, np.where(nb - votes >= 2, False, front)) & allowed
        if np.array_equal(new, front):
            break
        front = new
    return front


def _fill_holes(verts: np.ndarray, tris: np.ndarray, skin_border: set, on_mid: np.ndarray) -> np.ndarray:
    """Triangles closing the chart's hole openings (whole eye loop, half mouth closed along the midline)."""
    fills = []
    for loop in boundary_loops(tris):
        loop = [int(v) for v in loop]
        n = len(loop)
        hole = [tuple(sorted((loop[i], loop[(i + 1) % n]))) in skin_border for i in range(n)]
        if all(hole):
            polys = [loop]
        else:  # maximal runs of hole edges whose two ends are on the midline (the half mouth)
            polys = []
            starts = [i for i in range(n) if hole[i] and not hole[i - 1]]
            for a in starts:
                b = a
                while hole[b % n]:
                    b += 1
                run = [loop[i % n] for i in range(a, b + 1)]
                if on_mid[run[0]] and on_mid[run[-1]]:
                    polys.append(run)
        for poly in polys:
            p = verts[poly]
            c = p - p.mean(0)
            axes = np.linalg.svd(c, full_matrices=False)[2]
            f = np.asarray(poly)[ear_clip(c @ axes[:2].T)]
            # the fill must traverse the shared edge (poly[0], poly[1]) opposite to the chart triangle
            has = np.any((f == poly[0]) & (np.roll(f, -1, 1) == poly[1]))
            fills.append(f[:, ::-1] if has else f)
    return np.concatenate(fills) if fills else np.zeros((0, 3), np.int64)


def _unfold(uv: np.ndarray, tris: np.ndarray, u_zero: np.ndarray, iters: int = 200) -> np.ndarray:
    """Remove LSCM's few fold-overs (thin ICT triangles at lip and eye corners): move the vertices of
    flipped triangles to the mean of their neighbours until none is flipped."""
    n = len(uv)
    e = np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]])
    adj = sp.coo_matrix((np.ones(2 * len(e)), (np.r_[e[:, 0], e[:, 1]], np.r_[e[:, 1], e[:, 0]])), (n, n)).tocsr()
    adj.data[:] = 1.0
    deg = np.maximum(np.asarray(adj.sum(1)).ravel(), 1)
    uv = uv.copy()
    for _ in range(iters):
        bad = signed_areas(uv, tris) <= 0
        if not bad.any():
            break
        if _ == iters - 1:
            raise SystemExit(f"LSCM left {int(bad.sum())} folded triangles")
        grow = np.zeros(n, bool)
        grow[tris[bad].ravel()] = True
        grow |= (adj @ grow.astype(float)) > 0  # the 1-ring too, so the repair spreads smoothly
        mean = (adj @ uv) / deg[:, None]
        uv[grow, 1] = mean[grow, 1]
        uv[grow & ~u_zero, 0] = mean[grow & ~u_zero, 0]
    return uv


def _midline_boundary(t: np.ndarray, on_mid: np.ndarray) -> np.ndarray:
    e = np.sort(np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]]), 1)
    uniq, cnt = np.unique(e, axis=0, return_counts=True)
    b = uniq[cnt == 1]
    return b[on_mid[b[:, 0]] & on_mid[b[:, 1]]]


def _glued_midline(verts: np.ndarray, mid_edges: np.ndarray, chart: str) -> np.ndarray:
    """Midline vertices that are glued to the mirror half (all of them, except the back chart's
    front-of-neck piece, which stays a UV cut so the back chart is a disk)."""
    ids = np.unique(mid_edges)
    if chart == "front":
        return ids
    from scipy.sparse.csgraph import connected_components
    n = len(verts)
    g = sp.coo_matrix((np.ones(len(mid_edges)), (mid_edges[:, 0], mid_edges[:, 1])), (n, n))
    _, lab = connected_components(g, directed=False)
    top = ids[verts[ids, 1].argmax()]
    return ids[lab[ids] == lab[top]]


def locate(chart: dict, q: np.ndarray, k: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Source triangle (local index into chart['tris']) and barycentrics (Q,3) of chart points q (Q,2)."""
    uv, t = chart["uv"], chart["tris"]
    _, cand = chart["tree"].query(q, k=k)  # (Q, k)
    a, b, c = uv[t[cand, 0]], uv[t[cand, 1]], uv[t[cand, 2]]  # (Q, k, 2)
    v0, v1, v2 = b - a, c - a, q[:, None, :] - a
    den = v0[..., 0] * v1[..., 1] - v0[..., 1] * v1[..., 0]
    den = np.where(np.abs(den) < 1e-30, 1e-30, den)
    l1 = (v2[..., 0] * v1[..., 1] - v2[..., 1] * v1[..., 0]) / den
    l2 = (v0[..., 0] * v2[..., 1] - v0[..., 1] * v2[..., 0]) / den
    bary = np.stack([1 - l1 - l2, l1, l2], -1)  # (Q, k, 3)
    score = bary.min(-1) + np.where(den > 0, 0.0, -1.0) - 2.0 * chart["virtual"][cand]  # real, unflipped first
    best = score.argmax(1)
    rows = np.arange(len(q))
    bary = np.clip(bary[rows, best], 0.0, None)
    return cand[rows, best], bary / bary.sum(1, keepdims=True)


class Sizing:
    """Target edge length h(p) in cm: h_face on ICT's narrow face area growing smoothly to h_far, capped by
    curvature (a triangle spans at most `curv_angle` radians of normal turn: lips, nostrils, eyelids and
    ears get finer) and graded so that neighbouring sizes differ by at most `grade` per cm."""

    def __init__(self, verts: np.ndarray, tris: np.ndarray):
        from topos_cli.geometry.mesh_ops import vertex_normals

        d, _ = cKDTree(verts[: NARROW_FACE_LAST + 1]).query(verts)
        s = np.clip(d / PARAMS["h_ramp_cm"], 0.0, 1.0)
        h = PARAMS["h_face_cm"] + (PARAMS["h_far_cm"] - PARAMS["h_face_cm"]) * (s * s * (3 - 2 * s))
        nrm = vertex_normals(verts, tris)
        e = np.unique(np.sort(np.concatenate([tris[:, [0, 1]], tris[:, [1, 2]], tris[:, [2, 0]]]), 1), axis=0)
        length = np.linalg.norm(verts[e[:, 0]] - verts[e[:, 1]], axis=1)
        turn = np.arccos(np.clip((nrm[e[:, 0]] * nrm[e[:, 1]]).sum(1), -1, 1)) / length  # rad per cm
        kappa = np.zeros(len(verts))
        np.maximum.at(kappa, e[:, 0], turn)
        np.maximum.at(kappa, e[:, 1], turn)
        h = np.minimum(h, np.maximum(PARAMS["curv_angle"] / np.maximum(kappa, 1e-9), PARAMS["h_min_cm"]))
        for _ in range(200):  # gradation: h_i <= h_j + grade * |e_ij|
            lim = h[e[:, 1]] + PARAMS["grade"] * length
            new = h.copy()
            np.minimum.at(new, e[:, 0], lim)
            np.minimum.at(new, e[:, 1], h[e[:, 0]] + PARAMS["grade"] * length)
            if np.allclose(new, h):
                break
            h = new
        self.h_vert = h
        self.tree = cKDTree(verts)

    def __call__(self, pts: np.ndarray) -> np.ndarray:
        d, idx = self.tree.query(pts, k=3)
        w = 1.0 / np.maximum(d, 1e-6)
        return (self.h_vert[idx] * w).sum(1) / w.sum(1)


class Points:
    """Registry of new vertices on the half, each a barycentric point of ICT skin vertices."""

    def __init__(self):
        self.ids: list[np.ndarray] = []
        self.w: list[np.ndarray] = []
        self.of_source: dict[int, int] = {}
        self.segments: dict[tuple, list[int]] = {}

    def add(self, ids, w) -> int:
        self.ids.append(np.asarray(ids, np.int64))
        self.w.append(np.asarray(w, np.float64))
        return len(self.ids) - 1

    def source_vertex(self, v: int) -> int:
        if v not in self.of_source:
            self.of_source[v] = self.add([v, v, v], [1.0, 0.0, 0.0])
        return self.of_source[v]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.stack(self.ids), np.stack(self.w)


def resample_path(path: list[int], verts: np.ndarray, sizing: Sizing, pts: Points) -> list[int]:
    """Point ids along a source-vertex path (endpoints included) spaced by the sizing field.

    The same path walked either way gives the same points, so charts sharing a curve stitch exactly.
    """
    key = tuple(path) if (path[0], path[1]) <= (path[-1], path[-2]) else tuple(path[::-1])
    if key not in pts.segments:
        p = verts[list(key)]
        seg = np.linalg.norm(np.diff(p, axis=0), axis=1)
        h = sizing(p)
        cum = np.concatenate([[0.0], np.cumsum(seg * 0.5 * (1 / h[:-1] + 1 / h[1:]))])
        n = max(1, int(round(cum[-1])))
        ids = [pts.source_vertex(key[0])]
        for t in np.arange(1, n) * cum[-1] / n:
            k = min(int(np.searchsorted(cum, t, side="right")) - 1, len(seg) - 1)
            a = (t - cum[k]) / max(cum[k + 1] - cum[k], 1e-12)
            ids.append(pts.add([key[k], key[k + 1], key[k + 1]], [1 - a, a, 0.0]))
        ids.append(pts.source_vertex(key[-1]))
        pts.segments[key] = ids
    ids = pts.segments[key]
    return list(ids) if key == tuple(path) else list(ids[::-1])


def chart_loops(chart: dict, skin: dict, sizing: Sizing, pts: Points, keep: set[int]) -> list[list[int]]:
    """Resampled boundary loops of a half chart as closed lists of point ids (outer loop first)."""
    verts, tris = skin["verts"], skin["tris"]
    skin_border = {tuple(sorted(e)) for loop in boundary_loops(tris) for e in zip(loop, np.roll(loop, -1), strict=True)}
    on_mid = np.abs(verts[:, 0]) < 1e-9
    out = []
    for loop in boundary_loops(chart["real"]):
        loop = [int(v) for v in loop]
        nxt = loop[1:] + loop[:1]
        cls = ["hole" if tuple(sorted(e)) in skin_border else "mid" if on_mid[e[0]] and on_mid[e[1]] else "seam"
               for e in zip(loop, nxt, strict=True)]
        corners = [i for i in range(len(loop)) if cls[i] != cls[i - 1] or loop[i] in keep]
        if not corners:
            corners = [int(np.argmin(loop))]
        ids: list[int] = []
        for a, b in zip(corners, corners[1:] + [corners[0] + len(loop)], strict=True):
            path = [loop[i % len(loop)] for i in range(a, b + 1)]
            ids += resample_path(path, verts, sizing, pts)[:-1]
        out.append(ids)
    return out


def point_uv(chart: dict, pts: Points, pid: list[int]) -> np.ndarray:
    ids, w = pts.arrays()
    return (chart["uv"][ids[pid]] * w[pid][..., None]).sum(1)


def source_xyz(skin: dict, ids: np.ndarray, w: np.ndarray) -> np.ndarray:
    return (skin["verts"][ids] * w[..., None]).sum(-2)


def cdt(uv: np.ndarray, loops: list[list[int]], index: dict[int, int]) -> np.ndarray:
    """Delaunay triangles (F,3) of chart points inside the loops (even-odd rule), counter-clockwise.

    The boundary is sampled at least as densely as the interior, so every boundary segment is a Delaunay
    edge (checked: SystemExit otherwise) and each triangle lies wholly inside or outside the domain.
    """
    from scipy.spatial import Delaunay

    seg = np.asarray([(index[a], index[b]) for loop in loops for a, b in zip(loop, loop[1:] + loop[:1], strict=True)])
    t = Delaunay(uv).simplices.astype(np.int64)
    area = signed_areas(uv, t)
    t = np.where((area < 0)[:, None], t[:, ::-1], t)
    t = t[np.abs(area) > 1e-12 * np.abs(area).max()]
    t = t[even_odd(uv[t].mean(1), uv[seg[:, 0]], uv[seg[:, 1]])]
    edges = {tuple(e) for e in np.sort(np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]]), 1).tolist()}
    missing = sum(tuple(sorted(e)) not in edges for e in seg.tolist())
    if missing:
        raise SystemExit(f"{missing} boundary segments are not Delaunay edges; sample the boundary more densely")
    return t


def mesh_chart(name: str, chart: dict, skin: dict, sizing: Sizing, pts: Points, loops: list[list[int]],
               fixed_interior: list[int], rng: np.random.Generator) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Sample and triangulate one half chart. Returns (point ids, faces into them, uv (n,2))."""
    fixed = [p for loop in loops for p in loop] + fixed_interior
    fixed_xyz = source_xyz(skin, *[a[fixed] for a in pts.arrays()])
    # candidates: dense area samples with density ~ 1/h^2; farthest-point sampling scaled by h
    t = chart["tris"]
    verts = skin["verts"]
    real = chart["real"]
    h_tri = sizing(verts[real].mean(1))
    n_cand = int(12 * (face_areas(verts, real) / h_tri**2).sum())
    from topos_cli.geometry.mesh_ops import sample_surface

    cand_xyz, cand_tri, cand_bary = sample_surface(verts, real, n_cand, rng, face_weights=1.0 / h_tri**2)
    h = sizing(cand_xyz)
    d2 = cKDTree(fixed_xyz).query(cand_xyz)[0] ** 2 / h**2
    chosen = []
    stop2 = PARAMS["fps_stop"] ** 2
    while True:
        i = int(d2.argmax())
        if d2[i] < stop2:
            break
        chosen.append(i)
        d2 = np.minimum(d2, ((cand_xyz - cand_xyz[i]) ** 2).sum(1) / h**2)
    chosen = np.asarray(chosen, dtype=np.int64)
    uv_fixed = point_uv(chart, pts, fixed)
    uv_free = (chart["uv"][t[cand_tri[chosen]]] * cand_bary[chosen][..., None]).sum(1)
    index = {p: i for i, p in enumerate(fixed)}
    uv_all = np.concatenate([uv_fixed, uv_free])
    n_fixed = len(fixed)
    vert_scale = _vertex_scale(chart, len(verts))
    for _ in range(PARAMS["relax_iters"]):
        faces = cdt(uv_all, loops, index)
        cen = uv_all[faces].mean(1)
        tri, bary = locate(chart, cen)
        src = t[tri]
        xyz = (verts[src] * bary[..., None]).sum(1)
        h_uv = sizing(xyz) / (vert_scale[src] * bary).sum(1)
        wgt = np.abs(signed_areas(uv_all, faces)) / h_uv**2
        acc = np.zeros((len(uv_all), 2))
        tot = np.zeros(len(uv_all))
        for k in range(3):
            np.add.at(acc, faces[:, k], wgt[:, None] * cen)
            np.add.at(tot, faces[:, k], wgt)
        moved = acc[n_fixed:] / np.maximum(tot[n_fixed:, None], 1e-30)
        ok = tot[n_fixed:] > 0
        uv_all[n_fixed:][ok] = moved[ok]
    faces = cdt(uv_all, loops, index)
    used = np.zeros(len(uv_all), bool)
    used[faces.ravel()] = True
    if not used[:n_fixed].all():
        raise SystemExit(f"{name}: a boundary point lost its triangles")
    keep = np.flatnonzero(used)  # relaxed points that fell into a hole are dropped
    remap = np.full(len(uv_all), -1)
    remap[keep] = np.arange(len(keep))
    faces, uv_all = remap[faces], uv_all[keep]
    tri, bary = locate(chart, uv_all[n_fixed:])
    ids = list(fixed)
    for s, b in zip(t[tri], bary, strict=True):
        ids.append(pts.add(s, b))
    faces = flip_for_quality(faces, uv_all, source_xyz(skin, *[a[ids] for a in pts.arrays()]))
    return ids, faces, uv_all


def _vertex_scale(chart: dict, n: int) -> np.ndarray:
    """Per source vertex 3D/UV length ratio (area-weighted mean of its chart triangles)."""
    t, s = chart["tris"], chart["scale"]
    a = (np.abs(signed_areas(chart["uv"], t)) + 1e-12) * ~chart["virtual"]
    num, den = np.zeros(n), np.zeros(n)
    for k in range(3):
        np.add.at(num, t[:, k], a * s)
        np.add.at(den, t[:, k], a)
    return num / np.maximum(den, 1e-30)


# ----------------------------------------------------------------------------- assembly

def assemble(skin: dict, pts: Points, charts: dict, meshes: dict) -> dict:
    """Mirror the half meshes into the full template: verts, faces, per-chart uv, symmetry, weights."""
    ids, w = pts.arrays()
    on_mid = np.abs(skin["verts"][:, 0]) < 1e-9
    used = np.unique(np.concatenate([np.asarray(m[0]) for m in meshes.values()]))
    mid = np.all(on_mid[ids[used]] | (w[used] == 0), axis=1)
    n_half = len(used)
    order = np.concatenate([used[mid], used[~mid]])  # midline points first: they are their own mirror
    new_of_pt = np.full(len(ids), -1)
    new_of_pt[order] = np.arange(n_half)
    n_mid = int(mid.sum())
    mirror_of = np.concatenate([np.arange(n_mid), n_half + np.arange(n_half - n_mid)])
    src_ids = np.concatenate([ids[order], skin["mirror"][ids[order[n_mid:]]]])
    src_w = np.concatenate([w[order], w[order[n_mid:]]])
    n = len(src_ids)
    symmetry = np.concatenate([mirror_of, np.arange(n_mid, n_half)])
    faces, uv_faces, uv, chart_of_uv = [], [], [], []
    for ci, (_name, (pid, f, chart_uv)) in enumerate(meshes.items()):
        vid = new_of_pt[np.asarray(pid)]
        base = sum(len(x) for x in uv)
        mirrored_uv = chart_uv * [-1.0, 1.0]
        glued = np.abs(chart_uv[:, 0]) < 1e-9
        uv_idx_m = np.where(glued, base + np.arange(len(pid)), base + len(pid) + np.arange(len(pid)))
        uv += [chart_uv, mirrored_uv]
        chart_of_uv += [np.full(2 * len(pid), ci)]
        faces += [vid[f], symmetry[vid[f]][:, ::-1]]
        uv_faces += [base + f, uv_idx_m[f][:, ::-1]]
    uv = np.concatenate(uv)
    uv_faces = np.concatenate(uv_faces)
    keep_uv = np.unique(uv_faces)
    remap = np.full(len(uv), -1)
    remap[keep_uv] = np.arange(len(keep_uv))
    weights = sp.csr_matrix((src_w.ravel(), (np.repeat(np.arange(n), 3), src_ids.ravel())),
                            (n, len(skin["verts"])))
    weights.sum_duplicates()
    return {"weights": weights, "faces": np.concatenate(faces), "uv": uv[keep_uv],
            "uv_faces": remap[uv_faces], "chart_of_uv": np.concatenate(chart_of_uv)[keep_uv],
            "symmetry": symmetry, "n_mid": n_mid, "verts": weights @ skin["verts"], "vertex_of_point": new_of_pt}


# ----------------------------------------------------------------------------- regions


# ----------------------------------------------------------------------------- measurements


# ----------------------------------------------------------------------------- uv layout


# ----------------------------------------------------------------------------- driver

def build(ict_path: Path) -> dict:
    """Everything the template folder holds, as arrays and plain data."""
    t0 = time.time()
    skin = load_skin(ict_path)
    charts = build_charts(skin)
    sizing = Sizing(skin["verts"], skin["tris"])
    pts = Points()
    rng = np.random.default_rng(PARAMS["seed"])
    lm = skin["landmarks"]
    keep = {int(v) for v in lm if skin["verts"][v, 0] >= -1e-9}
    meshes = {}
    for name, chart in charts.items():
        loops = chart_loops(chart, skin, sizing, pts, keep)
        on_loop = {p for loop in loops for p in loop}
        in_chart = set(np.unique(chart["real"]).tolist())
        interior = [pts.source_vertex(v) for v in sorted(keep) if v in in_chart]
        interior = [p for p in interior if p not in on_loop]
        meshes[name] = mesh_chart(name, chart, skin, sizing, pts, loops, interior, rng)
        print(f"  chart {name}: {len(meshes[name][0])} half-chart vertices ({time.time() - t0:.1f}s)")
    tpl = assemble(skin, pts, charts, meshes)
    sym, v_of_p = tpl["symmetry"], tpl["vertex_of_point"]
    landmarks = np.array([v_of_p[pts.of_source[int(v)]] if int(v) in pts.of_source
                          else sym[v_of_p[pts.of_source[int(skin["mirror"][v])]]] for v in lm])
    weights = tpl["weights"]
    face_w = np.asarray(weights[:, : FACE_LAST + 1].sum(1)).ravel()
    regions = make_regions(tpl["verts"], tpl["faces"], tpl["verts"][landmarks], face_w)
    npz = skin["npz"]
    identity = np.stack([weights @ m for m in npz["identity_modes"][:, : SKIN_LAST + 1].astype(np.float64)])
    expression = np.stack([weights @ m for m in npz["expression_modes"][:, : SKIN_LAST + 1].astype(np.float64)])
    rbases, rnotes = region_bases(tpl["verts"], regions, identity, PAPER_REGIONS, PARAMS["region_modes"],
                                  PARAMS["region_sigma"], PARAMS["region_falloff_cm"])
    uv, layout = pack_uv(tpl["uv"], tpl["chart_of_uv"])
    print(f"  resampled bases and regions ({time.time() - t0:.1f}s)")
    bases = {"identity": identity.astype(np.float16), "expression": expression.astype(np.float16),
             "expression_names": np.asarray(npz["expression_names"]).astype(str),
             **{k: v.astype(np.float16) for k, v in rbases.items()}}
    ict_modes = npz["identity_modes"][:, : SKIN_LAST + 1]
    fit = fit_error(skin["verts"], skin["tris"], ict_modes, weights, tpl["faces"], bases["identity"],
                    PARAMS["identities_for_fit"], seed=1)
    print(f"  fit error over {fit['identities']} identities ({time.time() - t0:.1f}s)")
    return {"skin": skin, "tpl": tpl, "uv": uv, "layout": layout, "landmarks": landmarks, "regions": regions,
            "bases": bases, "region_notes": rnotes, "fit": fit, "seconds": time.time() - t0}


def name_loops(verts: np.ndarray, faces: np.ndarray) -> dict[str, list[int]]:
    """Boundary loops named neck / mouth / eye_left (+x, the subject's left) / eye_right."""
    loops = boundary_loops(faces)
    if len(loops) != 4:
        raise SystemExit(f"expected 4 boundary loops, got {len(loops)}")
    c = np.array([verts[loop].mean(0) for loop in loops])
    neck = int(c[:, 1].argmin())
    rest = [i for i in range(4) if i != neck]
    mouth = min(rest, key=lambda i: abs(c[i, 0]))
    eyes = sorted([i for i in rest if i != mouth], key=lambda i: c[i, 0])
    return {"neck": loops[neck].tolist(), "eye_left": loops[eyes[1]].tolist(),
            "eye_right": loops[eyes[0]].tolist(), "mouth": loops[mouth].tolist()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ict", type=Path, default=REPO.parent / "shared/data/ict_face_model_light.npz",
                    help="ICT FaceKit 'Face Model Light' archive (default: ../shared/data/ict_face_model_light.npz)")
    ap.add_argument("--out", type=Path, default=REPO / "topos_cli/assets/templates/topos-head",
                    help="template folder to write (default: the bundled topos-head)")
    args = ap.parse_args(argv)
    if not args.ict.is_file():
        print(f"error: ICT FaceKit archive not found at {args.ict}; pass --ict PATH", file=sys.stderr)
        return 2
    print(f"building topos-head from {args.ict}")
    res = build(args.ict)
    write_folder(args.out, args.ict, res)
    return 0


def write_folder(out: Path, ict_path: Path, res: dict) -> None:
    """Write template.obj, template.json, bases.npz, parts.npz, NOTICE and README.md (each atomically)."""
    tpl, skin = res["tpl"], res["skin"]
    verts = tpl["verts"].astype(np.float32)
    faces, uv_faces = tpl["faces"], tpl["uv_faces"]
    quality = mesh_quality(verts, faces)
    loops = name_loops(verts, faces)
    uvq = uv_report(res["uv"], uv_faces, verts.astype(np.float64), faces, res["regions"])
    sym = tpl["symmetry"]
    sym_err_mm = float(np.abs(verts[sym] * [-1, 1, 1] - verts).max() * 10)
    report = rounded_report({"num_verts": len(verts), "num_faces": len(faces), **quality,
                       "boundary_loops": {k: len(v) for k, v in loops.items()}, "uv": uvq, "uv_layout": res["layout"],
                       "symmetry_max_mismatch_mm": sym_err_mm, "fit": res["fit"]})
    print(json.dumps(report, indent=1))
    print(f"built in {res['seconds']:.0f} s")
    out.mkdir(parents=True, exist_ok=True)
    obj = ObjData(verts=verts.astype(np.float64), polys=faces, uv=res["uv"], uv_polys=uv_faces)
    _atomic_text(out / "template.obj", format_obj(obj, precision=7))
    sha = hashlib.sha256(ict_path.read_bytes()).hexdigest()
    meta = {
        "format": 1, "name": "topos-head", "mesh": "template.obj", "units": "cm",
        "axes": {"up": "+Y", "front": "+Z"},
        "regions": {k: v.tolist() for k, v in res["regions"].items()},
        "landmarks": {"scheme": "ibug68", "indices": res["landmarks"].tolist()},
        "symmetry": sym.tolist(),
        "boundaries": loops,
        "augment": {"pick": 3, "regions": {k: {"basis": f"region_{k}", "lower": 0.0, "upper": 1.0}
                                           for k in PAPER_REGIONS}},
        "expression_prior": expression_prior([str(s) for s in res["bases"]["expression_names"]]),
        "bases": {
            "identity": {"count": 100, "distribution": "normal",
                         "note": "ICT identity modes resampled: verts + w @ identity, w ~ N(0, I)"},
            "expression": {"count": 53, "range": [0, 1], "names": "expression_names (ARKit)"},
            **{f"region_{k}": {"count": n["count"],
                               "note": f"identity modes less their mean shift, x smooth '{k}' mask, top {n['count'] // 2} PCA directions "
                                       f"at {PARAMS['region_sigma']} sigma, + and - signs; explains "
                                       f"{n['explained']:.0%} of the masked variance; max {n['max_cm']:.2f} cm"}
               for k, n in res["region_notes"].items()},
        },
        "source": {"ict_facekit": ict_path.name, "ict_sha256": sha, "licence": "MIT (see NOTICE)",
                   "script": "scripts/build_default_template.py", "parameters": PARAMS,
                   "region_rules": REGION_RULES, "report": report},
    }
    _atomic_text(out / "template.json", json.dumps(meta, separators=(",", ":")) + "\n")
    save_npz(out / "bases.npz", res["bases"])
    meta["parts"] = write_parts(out, skin["npz"])  # eyes and mouth interior, from the files just written
    _atomic_text(out / "NOTICE", notice_text(skin["licence"]))
    _atomic_text(out / "README.md", keep_foreign_sections(readme_text(report, res, PARAMS, REGION_RULES, meta),
                                                            out / "README.md"))
    size = sum(p.stat().st_size for p in out.iterdir()) / 1e6
    print(f"wrote {out} ({size:.1f} MB)")


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


if __name__ == "__main__":
    raise SystemExit(main())
