"""Correspondences between a template-topology head and scan samples, both in the template frame."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from topos_cli.geometry.mesh_ops import uniform_laplacian
from topos_cli.geometry.similarity import PointCloud

MATCH_NORMAL_COS = 0.5  # a match needs scan and head normals within 60 deg (else it is the other side of a fold)
GATE_SIGMAS = 2.0  # the match weight is a Gaussian of the distance that falls to exp(-2) at the gate


def outside_weights(points: np.ndarray, normals: np.ndarray, verts: np.ndarray, vid: np.ndarray,
                     mask: np.ndarray | None, tol: float) -> np.ndarray:
    """Per match weight: 1, or 1 / (1 + (excess / tol)^2) where a `mask` vertex has its scan point more than
    `tol` outside it along the scan normal (a layer of hair over the skin is always outside)."""
    weight = np.ones(len(points))
    if mask is None:
        return weight
    excess = ((points - verts) * normals).sum(1) - tol
    hit = mask[vid] & (excess > 0)
    weight[hit] = 1.0 / (1.0 + (excess[hit] / tol) ** 2)
    return weight


def correspondences(cloud: PointCloud, verts: np.ndarray, nrm: np.ndarray, gate: float,
                     normal_cos: float = MATCH_NORMAL_COS, max_tangent: float | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Template->scan matches: scan point, scan normal and weight per vertex (0 where rejected).

    max_tangent: reject a match whose scan point lies more than this far from the vertex along the scan's
    tangent plane. Beyond the edge of a partial scan, a vertex's nearest sample is on that edge, sideways
    of it: pulled onto the edge's tangent plane, such vertices would raise a lip along every scan border.
    """
    dist, idx = cloud.tree.query(verts, distance_upper_bound=gate)
    ok = np.isfinite(dist)
    idx = np.where(ok, idx, 0)
    snrm = cloud.normals[idx]
    ok &= (snrm * nrm).sum(1) > normal_cos
    if max_tangent is not None:
        off = cloud.points[idx] - verts
        ok &= np.linalg.norm(off - (off * snrm).sum(1, keepdims=True) * snrm, axis=1) < max_tangent
    weight = ok * np.exp(-0.5 * (np.where(ok, dist, 0) / gate * GATE_SIGMAS) ** 2)
    return cloud.points[idx], snrm, weight


def reverse_matches(cloud: PointCloud, verts: np.ndarray, nrm: np.ndarray, gate: float, step: int,
                     normal_cos: float = MATCH_NORMAL_COS, border: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scan->template matches (subsampled scan points): template vertex, scan point, scan normal.

    Matches landing on `border` vertices (the template's open boundaries) are dropped: there the scan goes
    on beyond the template (shoulders below the neck cut, eyeballs and mouth interior), and those points
    would drag the boundary outwards.
    """
    pts, pn = cloud.points[::step], cloud.normals[::step]
    dist, vid = cKDTree(verts).query(pts, distance_upper_bound=gate)
    ok = np.isfinite(dist)
    vid = np.where(ok, vid, 0)
    ok &= (pn * nrm[vid]).sum(1) > normal_cos
    if border is not None:
        ok &= ~border[vid]
    return vid[ok], pts[ok], pn[ok]


def border_mask(num_verts: int, faces: np.ndarray, rings: int = 1) -> np.ndarray:
    """(V,) bool: vertices on open boundaries and their `rings`-ring."""
    from topos_cli.template import boundary_loops

    loops = boundary_loops(faces)
    mask = np.zeros(num_verts, bool)
    if not loops:
        return mask
    mask[np.concatenate(loops)] = True
    adj = (uniform_laplacian(num_verts, faces) != 0).astype(float)
    for _ in range(rings):
        mask = (adj @ mask.astype(float)) > 0
    return mask

