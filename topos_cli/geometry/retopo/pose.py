"""Batched template->scan pose scoring and trimmed similarity ICP (many poses per k-d tree query).

A pose is a scan -> template `Similarity`; the ICP runs on its inverse (template points into the scan).
"""

from __future__ import annotations

import numpy as np

from topos_cli.geometry.retopo.types import FACE_TRIM, FACE_WEIGHT, Candidate, HairLayer, without_hair
from topos_cli.geometry.similarity import PointCloud, Similarity

PARALLEL_QUERY = 150_000  # coordinates in a k-d tree query above which all cores help (below: thread start-up costs)
MIN_NORMAL_AGREEMENT = 0.3  # an ICP match needs |cos| between scan and template normals above this (after sign vote)
MIN_MATCHES = 10  # a pose with fewer normal-compatible matches uses all of them (else its step is undefined)
NORMAL_PENALTY = 0.5  # a score adds this x the median distance x (1 - |normal agreement|) per point


def _workers(query: np.ndarray) -> int:
    """KD-tree query threads: all cores for the search's batched queries, one for small ones (thread start-up
    costs more than it saves there)."""
    return -1 if query.size > PARALLEL_QUERY else 1


def icp_similarity(cloud: PointCloud, tmpl_pts: np.ndarray, tmpl_nrm: np.ndarray, sim: Similarity,
                    iters: int, trim: float, fix_rotation: bool = False,
                    hair: HairLayer | None = None) -> Candidate:
    """`icp_batch` from one start: the refined scan->template similarity and its score."""
    sims, scores = icp_batch(cloud, tmpl_pts, tmpl_nrm, [sim], iters, trim, fix_rotation, hair)
    return Candidate(sims[0], float(scores[0]))


def pose_scores(cloud: PointCloud, tmpl_pts: np.ndarray, tmpl_nrm: np.ndarray, sims: list[Similarity],
                 trim: float, hair: HairLayer | None = None) -> np.ndarray:
    """(H,) score of each scan->template pose, in one KD-tree query for all of them: the mean of the closest
    `trim` fraction of template->scan distances (template units; at `hair` points, to the skin pushed out by
    the hair), each plus half the median distance times (1 - |normal agreement|)."""
    scales = np.array([s.scale for s in sims])
    rots = np.stack([s.rotation for s in sims])  # (H, 3, 3)
    trans = np.stack([s.translation for s in sims])
    query = np.einsum("hpj,hji->hpi", tmpl_pts[None] - trans[:, None], rots) / scales[:, None, None]  # scan frame
    dist, idx = cloud.tree.query(query.reshape(-1, 3), workers=_workers(query))
    if hair is None:
        dist = dist.reshape(len(sims), -1) * scales[:, None]  # template units
    else:
        diff = np.einsum("hpj,hij->hpi", cloud.points[idx].reshape(query.shape) - query, rots) * scales[:, None, None]
        dist = np.linalg.norm(without_hair(diff, tmpl_nrm[None], hair), axis=2)
    compat = np.abs(np.einsum("hpj,hij,pi->hp", cloud.normals[idx].reshape(*query.shape), rots, tmpl_nrm))
    cost = dist + NORMAL_PENALTY * np.median(dist, axis=1, keepdims=True) * (1.0 - compat)
    if hair is None:
        return np.sort(cost, axis=1)[:, : int(trim * len(tmpl_pts))].mean(1)
    # the face and the hair regions count alike, and the face (no hair there: every head scan shows it) is
    # trimmed less: with the allowance for hair, a smaller head on a torso fits the hair regions as well as the
    # right one does, but not its whole face
    groups = [(cost[:, hair.mask > 0], trim), (cost[:, hair.mask == 0], max(trim, FACE_TRIM))]
    means = [np.sort(g, axis=1)[:, : max(1, int(t * g.shape[1]))].mean(1) for g, t in groups if g.shape[1]]
    return means[0] if len(means) == 1 else (means[0] + FACE_WEIGHT * means[1]) / (1 + FACE_WEIGHT)


def _row_quantiles(values: np.ndarray, counts: np.ndarray, q: float) -> np.ndarray:
    """Per row, the q-quantile (numpy's default linear method) of its first `counts` smallest values (the others
    are +inf fillers)."""
    ordered = np.sort(values, axis=1)
    pos = q * (counts - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, counts - 1)
    rows = np.arange(len(values))
    a, b, t = ordered[rows, lo], ordered[rows, hi], pos - lo
    return np.where(t >= 0.5, b - (b - a) * (1 - t), a + (b - a) * t)  # numpy's lerp


def icp_batch(cloud: PointCloud, tmpl_pts: np.ndarray, tmpl_nrm: np.ndarray, sims: list[Similarity], iters: int,
               trim: float, fix_rotation: bool = False,
               hair: HairLayer | None = None) -> tuple[list[Similarity], np.ndarray]:
    """Trimmed, normal-compatible template->scan similarity ICP from many starts at once (one KD-tree query per
    iteration for all of them): the refined scan->template similarities and their `pose_scores`.

    Each iteration matches every template point to its nearest scan point, keeps the normal-compatible matches
    (the scan's normals may be flipped as a whole: the majority sign decides), trims them to the closest `trim`
    fraction and solves Umeyama on the rest (only scale and shift when `fix_rotation`). `hair` enters the scores
    only: a hair allowance in the matches would let every head shrink inside its scan."""
    num, count = len(sims), len(tmpl_pts)
    scales = np.array([1.0 / s.scale for s in sims])  # the ICP runs on the inverse (template -> scan)
    rots = np.stack([s.rotation.T for s in sims])
    trans = np.stack([-(s.rotation.T @ s.translation) / s.scale for s in sims])
    for _ in range(iters):
        query = scales[:, None, None] * (tmpl_pts @ rots.transpose(0, 2, 1)) + trans[:, None]
        dist, idx = cloud.tree.query(query.reshape(-1, 3), workers=_workers(query))
        dist, idx = dist.reshape(num, count), idx.reshape(num, count)
        compat = ((cloud.normals[idx] @ rots.transpose(0, 2, 1)) * tmpl_nrm).sum(2)  # (n @ R_inv^T) . tn
        compat = compat * np.where(np.median(compat, axis=1, keepdims=True) >= 0, 1.0, -1.0)
        keep = compat > MIN_NORMAL_AGREEMENT
        keep[keep.sum(1) < MIN_MATCHES] = True
        cut = _row_quantiles(np.where(keep, dist, np.inf), keep.sum(1), trim)[:, None]
        w = (keep & (dist <= cut)).astype(float)
        wsum = w.sum(1, keepdims=True)
        dst = cloud.points[idx]  # (H, P, 3)
        mu_s, mu_d = (w @ tmpl_pts) / wsum, (w[:, None] @ dst)[:, 0] / wsum
        xs, xd = tmpl_pts[None] - mu_s[:, None], dst - mu_d[:, None]
        var_s = (w * (xs ** 2).sum(2)).sum(1) / wsum[:, 0]
        if fix_rotation:
            scales = np.einsum("hp,hpi,hpi->h", w, np.einsum("hpj,hij->hpi", xs, rots), xd) / wsum[:, 0] / var_s
        else:
            cov = (xd * w[..., None]).transpose(0, 2, 1) @ xs / wsum[:, :, None]
            u, sig, vt = np.linalg.svd(cov)
            d = np.ones((num, 3))
            d[np.linalg.det(u) * np.linalg.det(vt) < 0, 2] = -1.0
            rots = (u * d[:, None]) @ vt
            scales = (sig * d).sum(1) / var_s
        trans = mu_d - scales[:, None] * np.einsum("hij,hj->hi", rots, mu_s)
    out = [Similarity(float(s), r, t).inverse() for s, r, t in zip(scales, rots, trans, strict=True)]
    return out, pose_scores(cloud, tmpl_pts, tmpl_nrm, out, trim, hair)

