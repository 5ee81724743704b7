"""Exact clipping of triangle meshes by planes (numpy): triangles are sliced, not dropped."""

from __future__ import annotations

import numpy as np

from topos_cli.geometry.mesh_ops import face_areas


def clip_halfspace(
    verts: np.ndarray, faces: np.ndarray, normal: np.ndarray, offset: float
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the part of a triangle mesh inside the half-space ``normal . x <= offset``.

    Triangles crossing the plane are cut along it: one corner inside gives one triangle, two corners inside
    give a quad split into two triangles; orientation is kept. New vertices are shared between the two
    triangles of a cut edge (appended after the input vertices; unused input vertices are kept).

    Args:
        verts: (V, 3) float positions.
        faces: (F, 3) int triangles.
        normal: (3,) plane normal (need not be unit length).
        offset: plane offset, in the units of ``normal . x``.

    Returns:
        verts (V + E, 3) with the E new cut vertices appended, faces (F', 3) int64.
    """
    verts = np.asarray(verts, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    dist = verts @ np.asarray(normal, dtype=np.float64) - offset
    inside = dist <= 0
    count = inside[faces].sum(1)
    keep = faces[count == 3]
    one, two = faces[count == 1], faces[count == 2]
    # roll each cut triangle so that its odd corner (the lone inside / lone outside one) comes first
    one = _roll_first(one, inside[one])
    two = _roll_first(two, ~inside[two])
    edges = np.concatenate([one[:, [0, 1]], one[:, [0, 2]], two[:, [0, 1]], two[:, [0, 2]]])
    lo, hi = np.minimum(edges[:, 0], edges[:, 1]), np.maximum(edges[:, 0], edges[:, 1])
    keys, inv = np.unique(lo * len(verts) + hi, return_inverse=True)
    a, b = keys // len(verts), keys % len(verts)
    frac = dist[a] / (dist[a] - dist[b])
    new_verts = verts[a] + frac[:, None] * (verts[b] - verts[a])
    cut = len(verts) + inv
    n1, n2 = len(one), len(two)
    e01_one, e02_one = cut[:n1], cut[n1 : 2 * n1]
    e01_two, e02_two = cut[2 * n1 : 2 * n1 + n2], cut[2 * n1 + n2 :]
    tri_one = np.stack([one[:, 0], e01_one, e02_one], 1)
    # corner 0 is outside: the inside quad is (v1, v2, e20, e01)
    tri_two = np.concatenate(
        [np.stack([two[:, 1], two[:, 2], e02_two], 1), np.stack([two[:, 1], e02_two, e01_two], 1)]
    )
    out_faces = np.concatenate([keep, tri_one, tri_two]).astype(np.int64)
    return np.concatenate([verts, new_verts]), out_faces


def _roll_first(faces: np.ndarray, odd: np.ndarray) -> np.ndarray:
    """Cyclically roll each row of (F, 3) ``faces`` so that the column where ``odd`` is True comes first."""
    if len(faces) == 0:
        return faces
    first = np.argmax(odd, axis=1)
    cols = (first[:, None] + np.arange(3)[None]) % 3
    return np.take_along_axis(faces, cols, 1)


def remove_unused(verts: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop vertices no face uses; faces are re-indexed (vertex order otherwise kept)."""
    used = np.zeros(len(verts), dtype=bool)
    used[faces.ravel()] = True
    remap = np.cumsum(used) - 1
    return verts[used], remap[faces]


def clip_box_parts(
    verts: np.ndarray, faces: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pieces of a box clip, for callers that reuse per-face data of the untouched triangles.

    Args:
        verts: (V, 3) float positions.
        faces: (F, 3) int triangles.
        lo, hi: (3,) box corners.

    Returns:
        core (F,) bool: triangles with all corners inside the box (kept as they are);
        cut_verts (V + E, 3) float64: the input vertices followed by E new vertices on the box planes;
        cut_faces (K, 3) int64: the inside pieces of the other triangles, indexing ``cut_verts``.
    """
    verts = np.asarray(verts)
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    inside_v = ((verts >= lo) & (verts <= hi)).all(1)
    core = inside_v[faces].all(1)
    rest = faces[~core]
    if len(rest) == 0:
        return core, verts.astype(np.float64), rest
    used = np.unique(rest)  # slice a compact sub-mesh of the crossing/outside triangles only
    sub_v, sub_f = verts[used].astype(np.float64), np.searchsorted(used, rest)
    for axis in range(3):
        normal = np.zeros(3)
        normal[axis] = 1.0
        sub_v, sub_f = clip_halfspace(sub_v, sub_f, normal, float(hi[axis]))
        sub_v, sub_f = clip_halfspace(sub_v, sub_f, -normal, -float(lo[axis]))
    # back to the full vertex array: old sub-vertices map to their originals, new ones are appended
    remap = np.concatenate([used, len(verts) + np.arange(len(sub_v) - len(used))])
    return core, np.concatenate([verts.astype(np.float64), sub_v[len(used):]]), remap[sub_f]


def clip_to_box(
    verts: np.ndarray, faces: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Clip a triangle mesh to the axis-aligned box [lo, hi] by exact plane slicing (six half-spaces).

    Triangles with all corners inside are kept as they are; only the others are sliced, plane by plane.

    Args:
        verts: (V, 3) float positions.
        faces: (F, 3) int triangles.
        lo, hi: (3,) box corners.

    Returns:
        verts (V', 3) float64 (unused vertices removed), faces (F', 3) int64 (untouched triangles first, in
        their input order, then the sliced pieces), and the fraction of the input surface area that was kept
        (0.0 for a zero-area input). A mesh whose used vertices all lie inside the box is returned unchanged
        with fraction 1.0.
    """
    faces = np.asarray(faces, dtype=np.int64).reshape(-1, 3)
    core, cut_v, cut_f = clip_box_parts(verts, faces, lo, hi)
    if core.all():
        return cut_v, faces, 1.0
    area_in = face_areas(verts, faces).sum()
    area_cut = face_areas(verts, faces[~core]).sum() - (face_areas(cut_v, cut_f).sum() if len(cut_f) else 0.0)
    out_v, out_f = remove_unused(cut_v, np.concatenate([faces[core], cut_f]))
    return out_v, out_f, float(1.0 - area_cut / area_in) if area_in > 0 else 0.0


def inflated_box(points: np.ndarray, margin: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned bounding box of (N, 3) points scaled by ``1 + margin`` about its centre.

    ``margin=0.05`` makes the box 5% longer along every axis (2.5% of its extent added on each side).
    """
    pts = np.asarray(points, dtype=np.float64)
    lo, hi = pts.min(0), pts.max(0)
    pad = 0.5 * margin * (hi - lo)
    return lo - pad, hi + pad
