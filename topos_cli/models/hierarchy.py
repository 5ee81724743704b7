"""Graph pooling hierarchy of a template mesh (numpy), built once per template and cached in memory.

Level 0 is the template's vertex graph. Level l+1 clusters the nodes of level l on a voxel grid whose
cell size is found by bisection so that the node count drops by `factor`; a voxel's members are further
split into the graph-connected pieces they form inside it, so that surfaces that touch in space but not
on the mesh (upper/lower lip, eyelids) never share a coarse node. A coarse node sits at the mean of its
members; two coarse nodes are adjacent when any of their members are. `parent[l]` maps level-l nodes to
level-(l+1) nodes: pooling averages over it and unpooling copies through it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse.csgraph import connected_components


@dataclass(frozen=True)
class GraphLevel:
    """One level: positions (n, 3) float32, edges (E, 2) int64 (i < j), parent (n,) int64 or None (coarsest)."""

    positions: np.ndarray
    edges: np.ndarray
    parent: np.ndarray | None


def _clusters(positions: np.ndarray, edges: np.ndarray, cell: float) -> np.ndarray:
    """(n,) cluster label: voxel of size `cell`, split into graph-connected pieces."""
    keys = np.floor((positions - positions.min(0)) / cell).astype(np.int64)
    _, voxel = np.unique(keys, axis=0, return_inverse=True)
    voxel = voxel.ravel()
    inside = edges[voxel[edges[:, 0]] == voxel[edges[:, 1]]]
    n = len(positions)
    graph = sparse.coo_matrix((np.ones(len(inside)), (inside[:, 0], inside[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    _, labels = np.unique(labels, return_inverse=True)  # deterministic, ordered by first-seen component id
    return labels.ravel().astype(np.int64)


def _coarsen(positions: np.ndarray, edges: np.ndarray, target: int) -> np.ndarray:
    """Cluster labels with about `target` clusters (bisection on the log cell size)."""
    extent = float(np.linalg.norm(positions.max(0) - positions.min(0))) + 1e-9
    lo, hi = np.log(extent * 1e-4), np.log(extent * 2.0)
    best = None
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        labels = _clusters(positions, edges, float(np.exp(mid)))
        count = labels.max() + 1
        if best is None or abs(count - target) < abs(best.max() + 1 - target):
            best = labels
        if abs(count - target) <= max(1, 0.03 * target):
            break
        lo, hi = (mid, hi) if count > target else (lo, mid)
    return best


def build_hierarchy(verts: np.ndarray, edges: np.ndarray, levels: int = 4, factor: float = 3.0,
                    min_nodes: int = 8) -> list[GraphLevel]:
    """Build `levels` pooling levels above the template graph.

    Args:
        verts: (V, 3) template vertices.
        edges: (E, 2) int64 template edges.
        levels: number of pooling steps (the result has levels + 1 entries).
        factor: node-count reduction per level.
        min_nodes: lower bound on a level's node count.

    Returns:
        levels + 1 `GraphLevel`s from fine (the template) to coarse.
    """
    key = (hashlib.sha256(np.ascontiguousarray(verts, np.float32).tobytes()
                          + np.ascontiguousarray(edges, np.int64).tobytes()).hexdigest(), levels, factor, min_nodes)
    if key in _CACHE:
        return _CACHE[key]
    pos, edg = np.asarray(verts, np.float64), np.asarray(edges, np.int64)
    out = []
    for _ in range(levels):
        labels = _coarsen(pos, edg, max(min_nodes, int(round(len(pos) / factor))))
        count = int(labels.max()) + 1
        out.append(GraphLevel(pos.astype(np.float32), edg, labels))
        coarse_pos = np.zeros((count, 3))
        np.add.at(coarse_pos, labels, pos)
        coarse_pos /= np.bincount(labels, minlength=count)[:, None]
        ce = np.sort(labels[edg], axis=1)
        ce = ce[ce[:, 0] != ce[:, 1]]
        edg = np.unique(ce, axis=0) if len(ce) else np.zeros((0, 2), np.int64)
        pos = coarse_pos
    out.append(GraphLevel(pos.astype(np.float32), edg, None))
    _CACHE[key] = out
    return out


_CACHE: dict[tuple, list[GraphLevel]] = {}
