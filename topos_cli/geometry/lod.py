"""Levels of detail of a template: coarser topologies tied to the template by barycentric coordinates.

`build_lod_chain(verts, faces, uv, uv_faces, targets)` makes each level from the template (LOD0) itself:

1. the *feature polylines* (open boundaries such as the eye, mouth and neck holes, and the UV seams) are
   thinned k times for LOD k: every other vertex of a polyline is collapsed into its polyline neighbour on
   every side of a seam at once, so the sides stay welded and no crack opens;
2. quadric edge collapse (fast-simplification) runs on the mesh cut open at UV seams with its border
   locked, so no triangle crosses a seam;
3. each LOD vertex is snapped to the closest point of LOD0 among the triangles around the template
   vertices that collapsed into it (so it stays on its own side of a seam): a LOD0 triangle and barycentric
   coordinates, from which its UV is interpolated. Locked border vertices are template vertices (one-hot).

Anything per vertex on LOD0 (a head, shape bases, skin weights) carries down by the same barycentric sum
(`LodLevel.sample`), so LOD k of any head is that head sampled at the LOD's barycentrics. Deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_TARGETS = (5000, 2500, 1200)  # vertices of LOD1..3 (LOD0 is the template, ~10k on topos-head)
MAX_POLYLINE_TURN_DEG = 35.0  # a polyline vertex turning more than this is a corner and is kept
MIN_NORMAL_DOT = 0.3  # a boundary collapse that tilts any remaining triangle past ~73 degrees is undone
QUADRIC_AGGRESSION = 7.0  # fast-simplification's default schedule; lower is slower, not better here
ONE_HOT_TOL = 1e-6  # barycentrics this close to a corner mark a locked (unmoved) template vertex


@dataclass(frozen=True)
class LodLevel:
    """One level of detail.

    Attributes:
        corners: (n, 3) int64 template vertices of the LOD0 triangle each LOD vertex lies on.
        bary: (n, 3) float64 barycentric coordinates in that triangle (rows sum to 1).
        faces: (f, 3) int64 triangles over LOD vertices.
        uv: (t, 2) float32 texture coordinates (in the template's UV layout).
        uv_faces: (f, 3) int64 per-corner indices into `uv`.
    """

    corners: np.ndarray
    bary: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    uv_faces: np.ndarray

    @property
    def num_verts(self) -> int:
        return int(len(self.corners))

    def sample(self, per_vertex: np.ndarray) -> np.ndarray:
        """Carry LOD0 per-vertex data down: (..., V, C) -> (..., n, C) (positions, basis deltas, weights)."""
        data = np.asarray(per_vertex)
        out = sum(data[..., self.corners[:, k], :] * self.bary[:, k, None] for k in range(3))
        return out.astype(data.dtype if data.dtype.kind == "f" else np.float64)


def build_lod_chain(verts: np.ndarray, faces: np.ndarray, uv: np.ndarray, uv_faces: np.ndarray,
                    targets: tuple[int, ...] = DEFAULT_TARGETS) -> list[LodLevel]:
    """LOD0 (the input itself) followed by one level per target vertex count.

    Args:
        verts: (V, 3) template rest positions. faces: (F, 3) int64.
        uv: (T, 2) texture coordinates. uv_faces: (F, 3) int64 uv corners.
        targets: decreasing vertex counts of LOD1, LOD2, ...

    Returns:
        levels: [LOD0, LOD1, ...]; a target below what the locked borders allow gives the smallest mesh reached.
    """
    verts, uv = np.asarray(verts, np.float64), np.asarray(uv, np.float32)
    faces, uv_faces = np.asarray(faces, np.int64), np.asarray(uv_faces, np.int64)
    ident = np.arange(len(verts))
    levels = [LodLevel(np.stack([ident] * 3, 1), np.tile([1.0, 0.0, 0.0], (len(verts), 1)), faces, uv, uv_faces)]
    thin_f, thin_uv = faces, uv_faces
    for target in targets:
        thin_f, thin_uv = _thin_feature_lines(verts, thin_f, thin_uv)
        levels.append(_decimate(verts, faces, uv, uv_faces, thin_f, thin_uv, target))
    return levels


def _split(faces: np.ndarray, uv_faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(S, 2) unique (vertex, uv) pairs and (F, 3) faces over them: the mesh cut open at UV seams."""
    pairs, inverse = np.unique(np.stack([faces.ravel(), uv_faces.ravel()], 1), axis=0, return_inverse=True)
    return pairs, inverse.reshape(-1, 3)


def _decimate(verts, faces, uv, uv_faces, thin_f, thin_uv, target_verts: int) -> LodLevel:
    """Quadric collapses of the thinned, seam-split mesh (border locked), snapped back onto LOD0."""
    import fast_simplification

    pairs, split = _split(faces, uv_faces)  # LOD0 cut open: the snapping surface
    stride = int(uv_faces.max()) + 1
    thin_split = np.searchsorted(pairs[:, 0] * stride + pairs[:, 1], thin_f * stride + thin_uv)  # pairs are sorted
    used = np.unique(thin_split)
    points = np.ascontiguousarray(verts[pairs[:, 0]], np.float32)
    target_faces = int(round(len(thin_f) * target_verts / len(np.unique(thin_f))))
    if target_faces >= len(thin_f) - 1:  # a mesh already at or under the target only has its lines thinned
        collapses = np.zeros((0, 2), np.int64)
    else:
        _, _, collapses = fast_simplification.simplify(points, thin_split.astype(np.int32), target_count=target_faces,
                                                       agg=QUADRIC_AGGRESSION, preserve_border=True,
                                                       return_collapses=True)
    new_pts, new_faces, mapping = fast_simplification.replay_simplification(points, thin_split.astype(np.int32),
                                                                             collapses)
    tri, bary = _snap(np.asarray(new_pts, np.float64), np.asarray(mapping, np.int64), used, verts, pairs, split)
    split_uv = np.einsum("nk,nkc->nc", bary, uv[uv_faces[tri]].astype(np.float64)).astype(np.float32)
    corners = faces[tri]
    one_hot = bary.max(1) > 1 - ONE_HOT_TOL  # locked vertices: weld their seam copies by template vertex
    key = np.where(one_hot, corners[np.arange(len(tri)), bary.argmax(1)], len(verts) + np.arange(len(tri)))
    welded, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    bary = np.where(one_hot[:, None], np.eye(3)[bary.argmax(1)], bary)
    new_faces = np.asarray(new_faces, np.int64).reshape(-1, 3)
    return LodLevel(corners[first], bary[first], inverse.reshape(-1)[new_faces], split_uv, new_faces)


def _snap(points, mapping, used, verts, pairs, split) -> tuple[np.ndarray, np.ndarray]:
    """Closest LOD0 triangle and barycentrics of each output point, among the triangles around its cluster."""
    incident = [[] for _ in range(len(pairs))]
    for f, row in enumerate(split.tolist()):
        for v in row:
            incident[v].append(f)
    owner, cand = [], []
    order = np.argsort(mapping[used], kind="stable")
    groups = np.split(used[order], np.flatnonzero(np.diff(mapping[used][order])) + 1)
    for group in groups:
        j = int(mapping[group[0]])
        tris = sorted({f for v in group.tolist() for f in incident[v]})
        owner += [j] * len(tris)
        cand += tris
    owner, cand = np.asarray(owner), np.asarray(cand)
    tri_pts = verts[pairs[split[cand], 0]]  # (C, 3, 3)
    closest, bary = closest_on_triangles(points[owner], tri_pts)
    dist = np.linalg.norm(closest - points[owner], axis=1)
    best = np.lexsort((dist, owner))
    best = best[np.r_[True, owner[best][1:] != owner[best][:-1]]]
    out_tri = np.zeros(len(points), np.int64)
    out_bary = np.zeros((len(points), 3))
    out_tri[owner[best]], out_bary[owner[best]] = cand[best], bary[best]
    return out_tri, out_bary


def closest_on_triangles(points: np.ndarray, tris: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closest point of each point on its triangle (Ericson, Real-Time Collision Detection 5.1.5).

    Args:
        points: (N, 3). tris: (N, 3, 3) triangle corners.

    Returns:
        closest: (N, 3) points. bary: (N, 3) barycentric coordinates of them.
    """
    a, b, c = tris[:, 0], tris[:, 1], tris[:, 2]
    ab, ac, ap = b - a, c - a, points - a
    d1, d2 = _dot(ab, ap), _dot(ac, ap)
    bp, cp = points - b, points - c
    d3, d4, d5, d6 = _dot(ab, bp), _dot(ac, bp), _dot(ab, cp), _dot(ac, cp)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    denom = np.maximum(va + vb + vc, 1e-30)
    bary = np.stack([va, vb, vc], 1) / denom[:, None]  # interior case
    cases = [  # (condition, barycentric) in Ericson's order; later matches do not override earlier ones
        ((d1 <= 0) & (d2 <= 0), _bc(1, 0, 0, len(a))),
        ((d3 >= 0) & (d4 <= d3), _bc(0, 1, 0, len(a))),
        ((vc <= 0) & (d1 >= 0) & (d3 <= 0), _edge(d1 / _safe(d1 - d3), 0, 1)),
        ((d6 >= 0) & (d5 <= d6), _bc(0, 0, 1, len(a))),
        ((vb <= 0) & (d2 >= 0) & (d6 <= 0), _edge(d2 / _safe(d2 - d6), 0, 2)),
        ((va <= 0) & (d4 - d3 >= 0) & (d5 - d6 >= 0), _edge((d4 - d3) / _safe((d4 - d3) + (d5 - d6)), 1, 2)),
    ]
    done = np.zeros(len(a), bool)
    for cond, value in cases:
        take = cond & ~done
        bary[take] = value[take]
        done |= take
    closest = np.einsum("nk,nkc->nc", bary, tris)
    return closest, bary


def _dot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, y)


def _safe(x: np.ndarray) -> np.ndarray:
    return np.where(np.abs(x) < 1e-30, 1e-30, x)


def _bc(u: float, v: float, w: float, n: int) -> np.ndarray:
    return np.tile([u, v, w], (n, 1)).astype(np.float64)


def _edge(t: np.ndarray, i: int, j: int) -> np.ndarray:
    """Barycentrics of the point a fraction t from corner i to corner j."""
    out = np.zeros((len(t), 3))
    out[:, i], out[:, j] = 1 - t, t
    return out


def _feature_edges(faces: np.ndarray, uv_faces: np.ndarray) -> np.ndarray:
    """(E, 2) sorted vertex pairs of boundary edges and UV-seam edges."""
    e_v = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    e_uv = np.concatenate([uv_faces[:, [0, 1]], uv_faces[:, [1, 2]], uv_faces[:, [2, 0]]])
    key = np.sort(e_v, 1)
    order = np.lexsort(key.T[::-1])
    key, e_v, e_uv = key[order], e_v[order], e_uv[order]
    uniq, start, counts = np.unique(key, axis=0, return_index=True, return_counts=True)
    boundary = counts == 1
    # an interior edge is a seam when its two triangles give its ends different uv indices
    a, b = start[~boundary], start[~boundary] + 1
    same_dir = e_v[a, 0] == e_v[b, 0]
    uv_b = np.where(same_dir[:, None], e_uv[b], e_uv[b][:, ::-1])
    seam = (uv_b != e_uv[a]).any(1)
    return np.concatenate([uniq[boundary], uniq[~boundary][seam]])


def _thin_feature_lines(verts: np.ndarray, faces: np.ndarray, uv_faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Collapse every other interior vertex of each feature polyline into a polyline neighbour."""
    edges = _feature_edges(faces, uv_faces)
    nbrs: dict[int, list[int]] = {}
    for a, b in edges.tolist():
        nbrs.setdefault(a, []).append(b)
        nbrs.setdefault(b, []).append(a)
    faces, uv_faces = faces.copy(), uv_faces.copy()
    alive = np.ones(len(faces), bool)
    locked: set[int] = set()
    for s in sorted(nbrs):
        if s in locked or len(nbrs[s]) != 2 or _turn_deg(verts, s, nbrs[s]) > MAX_POLYLINE_TURN_DEG:
            continue
        n = min(nbrs[s])  # deterministic choice of the neighbour that survives
        if _collapse(verts, faces, uv_faces, alive, s, n):
            locked.update(nbrs[s])  # neighbours stay: the line keeps every other vertex
            for m in nbrs[s]:
                nbrs[m] = [n if x == s else x for x in nbrs[m] if x != m]
            nbrs[n] = [x for x in nbrs[n] + nbrs[s] if x not in (n, s)]
            nbrs[n] = list(dict.fromkeys(nbrs[n]))
    return faces[alive], uv_faces[alive]


def _turn_deg(verts: np.ndarray, s: int, pair: list[int]) -> float:
    d1, d2 = verts[s] - verts[pair[0]], verts[pair[1]] - verts[s]
    cos = float(d1 @ d2) / max(float(np.linalg.norm(d1) * np.linalg.norm(d2)), 1e-20)
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def _collapse(verts, faces, uv_faces, alive, s: int, n: int) -> bool:
    """Move vertex s onto n in every live triangle (uv corners follow their own side); undo on a flip."""
    from topos_cli.geometry.mesh_ops import face_normals  # scipy-heavy import, only needed when building

    touch = np.flatnonzero(alive & (faces == s).any(1))
    uv_of_n = {}  # uv index of s on each side -> uv index of n on that side (from the triangles with both)
    for f in touch:
        row = faces[f].tolist()
        if n in row:
            uv_of_n[int(uv_faces[f, row.index(s)])] = int(uv_faces[f, row.index(n)])
    before = face_normals(verts, faces[touch])
    new_f, new_uv = faces[touch].copy(), uv_faces[touch].copy()
    at_s = new_f == s
    if any(int(u) not in uv_of_n for u in new_uv[at_s]):
        return False  # a side of s that does not reach n along the line: not a simple polyline vertex
    new_uv[at_s] = [uv_of_n[int(u)] for u in new_uv[at_s]]
    new_f[at_s] = n
    dead = (new_f == n).sum(1) > 1
    after = face_normals(verts, new_f)
    if (np.einsum("ij,ij->i", before[~dead], after[~dead]) < MIN_NORMAL_DOT).any():
        return False
    faces[touch], uv_faces[touch] = new_f, new_uv
    alive[touch[dead]] = False
    return True
