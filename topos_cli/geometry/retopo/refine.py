"""Laplacian-regularised displacement fit of a template-topology head onto a pre-aligned scan (the last stage)."""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.sparse import linalg as splinalg

from topos_cli.geometry.mesh_ops import uniform_laplacian, vertex_normals
from topos_cli.geometry.retopo.matches import border_mask, correspondences, reverse_matches
from topos_cli.geometry.similarity import PointCloud

REVERSE_WEIGHT = 0.5  # a scan->head match weighs half a head->scan one (there are about as many of each)
LANDMARK_WEIGHT = 5.0  # a landmark pulls as hard as five surface matches
# the system is symmetric positive definite: a symmetric-mode LU on a minimum-degree ordering of A + A^T, without
# pivoting, factors it in ~60 % of the time of the default (COLAMD, partial pivoting), to the same solution
SPLU_OPTIONS = {"permc_spec": "MMD_AT_PLUS_A", "diag_pivot_thresh": 0.0, "options": {"SymmetricMode": True}}


def stiffness_weights(num_verts: int, faces: np.ndarray, loops: list[np.ndarray], rings: int = 2,
                      boost: float = 8.0, regions: list[tuple[np.ndarray, float]] = ()) -> np.ndarray:
    """(V,) stiffness multipliers: `boost` on the given boundary loops and their `rings`-ring, each region's own
    boost on its vertices and their `rings`-ring (the largest boost wins where they meet), 1 elsewhere."""
    k = np.ones(num_verts)
    adj = (uniform_laplacian(num_verts, faces) != 0).astype(float)
    for ids, gain in ([(np.concatenate(loops), boost)] if loops else []) + list(regions):
        mask = np.zeros(num_verts)
        mask[np.asarray(ids, np.int64)] = 1.0
        for _ in range(rings):
            mask = np.minimum(1.0, adj @ mask)
        k = np.maximum(k, 1.0 + (gain - 1.0) * mask)
    return k


def refine(cloud: PointCloud, init_verts: np.ndarray, faces: np.ndarray, *, stiffness: np.ndarray | None = None,
           alphas: tuple[float, ...] = (5.0, 1.0, 0.2), iters_per_alpha: int = 2, gate: float = 1.0,
           landmarks: tuple[np.ndarray, np.ndarray] | None = None,
           vertex_weight: np.ndarray | None = None, anchor: float = 0.02, tangent_tol: float = 2.0) -> np.ndarray:
    """Laplacian-regularised displacement fit of a template-topology head onto a pre-aligned scan.

    Args:
        cloud: scan samples in the template frame (normals oriented outward).
        init_verts: (V, 3) prior head (bases fit or VAE decode), template frame.
        faces: (F, 3) template triangles.
        stiffness: (V,) per-vertex multiplier of the smoothness term.
        alphas: decreasing smoothness weights (relative to the data term), one stage each.
        iters_per_alpha: correspondence updates per stage.
        gate: correspondence distance gate in template units (cm).
        landmarks: optional (points (L, 3) template frame, vertex ids (L,)) as soft constraints.
        vertex_weight: (V,) optional data weight multiplier.
        anchor: weight pulling every vertex towards the prior (zero displacement); where the scan has no
            data it keeps the smoothness term from extrapolating the displacement away from the prior.
        tangent_tol: a vertex's match is dropped when its scan point lies more than this many spacings (the
            larger of the scan's sample spacing and the head's median edge) sideways of it: the vertex is
            beyond the edge of the scan's data.

    Returns:
        (V, 3) refined vertices.
    """
    num_v = len(init_verts)
    x0 = init_verts.astype(float)
    lap = uniform_laplacian(num_v, faces).astype(float)
    deg = np.asarray(lap.diagonal()).clip(min=1)
    lap = sparse.diags(1.0 / deg) @ lap  # normalised: (L d)_i = d_i - mean of neighbours
    kdiag = sparse.diags(np.ones(num_v) if stiffness is None else stiffness)
    bilap = (lap.T @ kdiag @ lap).tocsc()
    vw = np.ones(num_v) if vertex_weight is None else vertex_weight
    border = border_mask(num_v, faces)
    edge_spacing = float(np.median(np.linalg.norm(x0[faces[:, 0]] - x0[faces[:, 1]], axis=1)))
    max_tangent = tangent_tol * max(cloud.spacing(), edge_spacing)
    disp = np.zeros_like(x0)
    for alpha in alphas:
        for _ in range(iters_per_alpha):
            verts = x0 + disp
            nrm = vertex_normals(verts, faces)
            tgt, tnrm, w = correspondences(cloud, verts, nrm, gate, max_tangent=max_tangent)
            w = w * vw
            # foot of the vertex on the scan's tangent plane: a normal-only pull, no sliding
            foot = verts + ((tgt - verts) * tnrm).sum(1, keepdims=True) * tnrm
            acc_w, acc_t = w.copy(), foot * w[:, None]
            vid, rpts, rnrm = reverse_matches(cloud, verts, nrm, gate, max(1, len(cloud.points) // num_v),
                                               border=border)
            rfoot = verts[vid] + ((rpts - verts[vid]) * rnrm).sum(1, keepdims=True) * rnrm
            np.add.at(acc_w, vid, REVERSE_WEIGHT)
            np.add.at(acc_t, vid, REVERSE_WEIGHT * rfoot)
            if landmarks is not None:
                np.add.at(acc_w, landmarks[1], LANDMARK_WEIGHT)
                np.add.at(acc_t, landmarks[1], LANDMARK_WEIGHT * landmarks[0])
            # rhs = sum of weighted targets minus x0 * data weight; the anchor adds weight with target x0
            system = (sparse.diags(acc_w + anchor) + alpha * bilap).tocsc()
            rhs = acc_t - acc_w[:, None] * x0
            disp = splinalg.splu(system, **SPLU_OPTIONS).solve(rhs)
    return x0 + disp

