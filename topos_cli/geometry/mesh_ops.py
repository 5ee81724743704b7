"""Mesh operations on arrays: normals, areas, angles, sampling, connectivity checks (numpy)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # scipy is imported where it is used: ~0.5 s of every command's start otherwise
    from scipy import sparse


def face_normals(verts: np.ndarray, faces: np.ndarray, normalize: bool = True) -> np.ndarray:
    """Per-face normals (F, 3); unnormalised ones have length 2 * area."""
    # the cross product spelt out: the same numbers as np.cross, 2-3x faster on million-face scans
    a = verts[faces[:, 1]] - verts[faces[:, 0]]
    b = verts[faces[:, 2]] - verts[faces[:, 0]]
    n = np.empty_like(a)
    n[:, 0] = a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1]
    n[:, 1] = a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2]
    n[:, 2] = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
    if normalize:
        n = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-20)
    return n


def face_areas(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F,) triangle areas."""
    return 0.5 * np.linalg.norm(face_normals(verts, faces, normalize=False), axis=1)


def vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) area-weighted vertex normals (unit length; zero for isolated vertices)."""
    fn = face_normals(verts, faces, normalize=False)
    vn = np.zeros((len(verts), 3), dtype=np.float64)
    for k in range(3):
        np.add.at(vn, faces[:, k], fn)
    return (vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-20)).astype(verts.dtype)


def vertex_normals_torch(verts, faces):
    """(V, 3) area-weighted unit vertex normals of a torch (V, 3) tensor, differentiable (faces: (F, 3) long)."""
    import torch

    tri = verts[faces]  # (F, 3, 3)
    fn = torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=-1)
    vn = torch.zeros_like(verts).index_add(0, faces.reshape(-1), fn.repeat_interleave(3, 0))
    return vn / vn.norm(dim=-1, keepdim=True).clamp(min=1e-12)


def face_angles(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F, 3) interior angles in radians at each corner."""
    tri = verts[faces].astype(np.float64)
    angles = np.empty((len(faces), 3))
    for k in range(3):
        a = tri[:, (k + 1) % 3] - tri[:, k]
        b = tri[:, (k + 2) % 3] - tri[:, k]
        cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-30)
        angles[:, k] = np.arccos(np.clip(cos, -1.0, 1.0))
    return angles


def unique_edges(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique undirected edges (E, 2) and the number of faces using each (E,)."""
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    edges, counts = np.unique(e, axis=0, return_counts=True)
    return edges, counts


def adjacency(num_verts: int, faces: np.ndarray) -> sparse.csr_matrix:
    """(V, V) symmetric 0/1 vertex adjacency."""
    from scipy import sparse

    edges, _ = unique_edges(faces)
    ones = np.ones(len(edges))
    a = sparse.coo_matrix((ones, (edges[:, 0], edges[:, 1])), shape=(num_verts, num_verts))
    return (a + a.T).tocsr()


def uniform_laplacian(num_verts: int, faces: np.ndarray) -> sparse.csr_matrix:
    """(V, V) uniform graph Laplacian L = D - A."""
    from scipy import sparse

    a = adjacency(num_verts, faces)
    return (sparse.diags(np.asarray(a.sum(1)).ravel()) - a).tocsr()


def connected_components(num_verts: int, faces: np.ndarray) -> np.ndarray:
    """(V,) component label per vertex (isolated vertices get their own label)."""
    from scipy.sparse.csgraph import connected_components as cc

    return cc(adjacency(num_verts, faces), directed=False)[1]


def mesh_quality(verts: np.ndarray, faces: np.ndarray) -> dict:
    """Counts a template must satisfy: components, manifoldness, degenerate triangles, min angle."""
    verts = np.asarray(verts, dtype=np.float64)
    _, counts = unique_edges(faces)
    angles = np.degrees(face_angles(verts, faces))
    areas = face_areas(verts, faces)
    labels = connected_components(len(verts), faces)
    used = np.zeros(len(verts), dtype=bool)
    used[faces.ravel()] = True
    return {
        "components": int(len(np.unique(labels[used]))),
        "unused_verts": int((~used).sum()),
        "edge_manifold": bool(counts.max(initial=0) <= 2),
        "nonmanifold_edges": int((counts > 2).sum()),
        "boundary_edges": int((counts == 1).sum()),
        "degenerate_faces": int((areas <= 1e-12 * max(areas.max(initial=0), 1e-30)).sum()),
        "min_angle_deg": float(angles.min(initial=180.0)),
        "max_angle_deg": float(angles.max(initial=0.0)),
    }


def sample_surface(verts: np.ndarray, faces: np.ndarray, count: int, rng: np.random.Generator,
                   face_weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Area-weighted uniform samples on a triangle mesh.

    Args:
        verts: (V, 3) float positions.
        faces: (F, 3) int triangles.
        count: number of samples.
        rng: numpy Generator (the only source of randomness).
        face_weights: optional (F,) extra non-negative weights multiplied with the areas.

    Returns:
        points (count, 3), face_index (count,), barycentric (count, 3).
    """
    areas = face_areas(verts, faces)
    if face_weights is not None:
        areas = areas * face_weights
    total = areas.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError("mesh has zero surface area")
    cdf = np.cumsum(areas)
    face_idx = np.minimum(np.searchsorted(cdf, rng.random(count) * cdf[-1], side="right"), len(faces) - 1)
    r1, r2 = rng.random(count), rng.random(count)
    s1 = np.sqrt(r1)
    bary = np.stack([1.0 - s1, s1 * (1.0 - r2), s1 * r2], axis=1)
    tri = verts[faces[face_idx]]
    points = (tri * bary[:, :, None]).sum(1)
    return points, face_idx, bary


def farthest_point_sampling(points: np.ndarray, count: int, start: int = 0) -> np.ndarray:
    """Indices (count,) of a greedy farthest-point subset, deterministic from `start`."""
    count = min(count, len(points))
    chosen = np.empty(count, dtype=np.int64)
    dist = np.full(len(points), np.inf)
    idx = start
    for i in range(count):
        chosen[i] = idx
        dist = np.minimum(dist, ((points - points[idx]) ** 2).sum(1))
        idx = int(dist.argmax())
    return chosen


def uv_quality(uv: np.ndarray, uv_faces: np.ndarray) -> dict:
    """UV layout checks: flipped (negative signed area) and zero-area triangles, chart count, bounds.

    Orientation is judged against the majority sign, so a layout mirrored as a whole is not "flipped".
    """
    tri = np.asarray(uv, dtype=np.float64)[uv_faces]
    signed = 0.5 * ((tri[:, 1, 0] - tri[:, 0, 0]) * (tri[:, 2, 1] - tri[:, 0, 1])
                    - (tri[:, 2, 0] - tri[:, 0, 0]) * (tri[:, 1, 1] - tri[:, 0, 1]))
    sign = 1.0 if (signed > 0).sum() >= (signed < 0).sum() else -1.0
    labels = connected_components(len(uv), uv_faces)
    return {
        "uv_flipped": int((signed * sign < 0).sum()),
        "uv_zero_area": int((signed == 0).sum()),
        "uv_charts": int(len(np.unique(labels[np.unique(uv_faces)]))),
        "uv_in_unit_square": bool(tri.min() >= 0.0 and tri.max() <= 1.0),
    }
