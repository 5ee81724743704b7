"""Fit of the template's linear shape bases (identity + expression) and a similarity to a pre-aligned scan, and
the point-to-plane Gauss-Newton similarity refinement that shares its solver."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from topos_cli.geometry.mesh_ops import vertex_normals
from topos_cli.geometry.retopo.matches import (
    MATCH_NORMAL_COS,
    border_mask,
    correspondences,
    outside_weights,
    reverse_matches,
)
from topos_cli.geometry.similarity import PointCloud, Similarity, bbox_diagonal, rodrigues, skew

# prior std of the similarity correction that the bases fit accumulates on top of the pre-alignment (scale,
# radians, cm): without it, a head the bases cannot explain (hair) lets the scale drift until nothing matches
# prior std of the similarity correction that the bases fit accumulates on top of the pre-alignment (scale,
# radians, cm): without it, a head the bases cannot explain (hair) lets the scale drift until nothing matches
SIM_PRIOR_STD = (0.05, 0.1, 2.0)
SIM_PRIOR_WEIGHT = 1e-3  # the correction prior's weight per unit of data weight (as the coefficient prior's)
PRIOR_SCALE = 1e-3  # coefficient prior per unit of data weight at prior_weight 1 (a unit-std mode costs 1e-3)
SIM_RIDGE = 1e-6  # ridge on the similarity unknowns: keeps the step defined when matches leave one unconstrained
SOLVE_FLOOR = 1e-9  # the diagonal floor: no matches at all -> no step (instead of a singular system)
GATE_SHRINK = 0.67  # the bases fit's correspondence gate shrinks to 1/3 of its start by the last iteration
REVERSE_WEIGHT = 0.5  # a scan->head match weighs half a head->scan one
POINT_TO_POINT = 0.1  # point-to-point weight beside point-to-plane: holds the tangential slide of the similarity
LANDMARK_WEIGHT = 10.0  # a landmark weighs ten average matches
FACE_GATE = 0.05  # the similarity refinement's gate on hair-free vertices, fraction of the head's diagonal
MEDIAN_GATE = 3.0  # elsewhere the gate is this x the median match distance (drops the far tail)
MIN_MATCHES = 10  # fewer gated matches than this: the refinement stops (its step would be undefined)


def fit_bases(cloud: PointCloud, base_verts: np.ndarray, faces: np.ndarray, bases: np.ndarray,
              prior_std: np.ndarray, *, iters: int = 12, gate: float = 3.0, prior_weight: float = 1.0,
              vertex_weight: np.ndarray | None = None, landmarks: tuple[np.ndarray, np.ndarray] | None = None,
              update_similarity: bool = True, max_points: int = 4000,
              prior_anneal: float = 10.0,
              init_coeffs: np.ndarray | None = None,
              max_scale_change: float = 1.25, outside_mask: np.ndarray | None = None,
              outside_tol: float = 0.5) -> tuple[np.ndarray, np.ndarray, Similarity]:
    """Least-squares fit of linear shape bases (and a similarity) to a pre-aligned scan.

    Args:
        cloud: scan samples already in the template frame.
        base_verts: (V, 3) starting shape (template rest shape or a VAE decode).
        faces: (F, 3) template triangles.
        bases: (K, V, 3) vertex deltas; shape = base_verts + sum_k c_k bases[k].
        prior_std: (K,) prior standard deviation of each coefficient (ridge prior).
        iters: alternations (correspondences, coefficients, similarity).
        gate: correspondence distance gate in template units (cm), shrinks to gate/3.
        prior_weight: multiplier of the coefficient prior.
        vertex_weight: (V,) optional per-vertex data weight (e.g. 0 on vertices that should not drive the fit).
        landmarks: optional (points (L, 3) in the template frame, vertex ids (L,)).
        update_similarity: re-estimate a similarity correction each iteration.
        max_points: template vertices / scan points used per direction.
        prior_anneal: the prior starts `prior_anneal` times stronger and relaxes geometrically to
            `prior_weight` by the last iteration (coarse-to-fine: early, unreliable matches cannot pull the
            coefficients far).
        init_coeffs: (K,) starting coefficients (e.g. a VAE decode projected on the bases): they shape the
            first correspondences only; the prior stays centred at zero.
        max_scale_change: bound on the scale correction relative to the pre-alignment. The correction also
            has a Gaussian prior (`SIM_PRIOR_STD`), so that the coefficient prior cannot push it to drift.
        outside_mask, outside_tol: hair regions and tolerance (see `refine_similarity`).

    Returns:
        (verts (V, 3), coefficients (K,), similarity correction applied to the cloud's frame).
    """
    num_k, num_v = bases.shape[0], base_verts.shape[0]
    sim_precision = SIM_PRIOR_WEIGHT / np.array([SIM_PRIOR_STD[0]] + [SIM_PRIOR_STD[1]] * 3 + [SIM_PRIOR_STD[2]] * 3) ** 2
    basis_vk = np.ascontiguousarray(bases.transpose(1, 2, 0), dtype=float)  # (V, 3, K)
    coeffs = np.zeros(num_k)
    corr = Similarity()
    vw = np.ones(num_v) if vertex_weight is None else vertex_weight
    subset = np.linspace(0, num_v - 1, min(num_v, max_points)).astype(np.int64)
    verts = base_verts.astype(float)
    if init_coeffs is not None:
        verts = verts + np.einsum("vck,k->vc", basis_vk, init_coeffs)
    border = border_mask(num_v, faces)
    for it in range(iters):
        cur = cloud.transformed(corr)
        rows = _match_rows(cur, verts, faces, subset, gate * (1.0 - GATE_SHRINK * it / max(iters - 1, 1)), vw,
                           max(1, len(cur.points) // max_points), border)
        rows_w = rows.weights * outside_weights(rows.points, rows.normals, verts[rows.vid], rows.vid, outside_mask,
                                                outside_tol)
        coeffs, step_sim = solve_bases_step(basis_vk, base_verts, rows.vid, rows.points, rows.normals, rows_w,
                                            prior_std, prior_weight * prior_anneal ** (1.0 - it / max(iters - 1, 1)),
                                            update_similarity and it < iters - 1,
                                            None if landmarks is None else (corr.apply(landmarks[0]), landmarks[1]),
                                            sim_prior=(_similarity_params(corr), sim_precision))
        verts = base_verts + np.einsum("vck,k->vc", basis_vk, coeffs)
        corr = step_sim.compose(corr)
        corr = replace(corr, scale=float(np.clip(corr.scale, 1.0 / max_scale_change, max_scale_change)))
    return verts, coeffs, corr


@dataclass(frozen=True)
class MatchRows:
    """The matches of one bases-fit iteration, both directions stacked: template vertex ids (M,), scan points
    (M, 3), scan normals (M, 3) and weights (M,)."""

    vid: np.ndarray
    points: np.ndarray
    normals: np.ndarray
    weights: np.ndarray


def _match_rows(cloud: PointCloud, verts: np.ndarray, faces: np.ndarray, subset: np.ndarray, gate: float,
                vertex_weight: np.ndarray, step: int, border: np.ndarray) -> MatchRows:
    """Head->scan matches of the `subset` vertices and scan->head matches of every `step`-th scan point."""
    nrm = vertex_normals(verts, faces)
    tgt, tnrm, w = correspondences(cloud, verts[subset], nrm[subset], gate)
    w = w * vertex_weight[subset]
    vid, rpts, rnrm = reverse_matches(cloud, verts, nrm, gate, step, border=border)
    ok = w > 0
    return MatchRows(np.concatenate([subset[ok], vid]), np.concatenate([tgt[ok], rpts]),
                     np.concatenate([tnrm[ok], rnrm]),
                     np.concatenate([w[ok], REVERSE_WEIGHT * vertex_weight[vid]]))


def _similarity_params(sim: Similarity) -> np.ndarray:
    """(7,) scale - 1, rotation vector, translation: the accumulated correction as the solver's unknowns."""
    from scipy.spatial.transform import Rotation

    return np.concatenate([[sim.scale - 1.0], Rotation.from_matrix(sim.rotation).as_rotvec(), sim.translation])


def solve_bases_step(basis_vk, base_verts, rows_v, rows_p, rows_n, rows_w, prior_std, prior_weight,
                      with_sim: bool, landmarks, sim_prior=None) -> tuple[np.ndarray, Similarity]:
    """One Gauss-Newton step over coefficients and (linearised) similarity of the scan points.

    Residual per match: x0_v + B_v c - (1 + ds) p - w x p - t, point-to-plane (n^T) plus POINT_TO_POINT x
    point-to-point.
    """
    num_k = basis_vk.shape[2]
    b_rows = basis_vk[rows_v]  # (M, 3, K)
    resid = rows_p - base_verts[rows_v]  # (M, 3)
    jac_sim = np.concatenate([-rows_p[:, :, None], skew(rows_p), -np.repeat(np.eye(3)[None], len(rows_p), 0)],
                             2)  # (M, 3, 7): d(-p')/d(ds, w, t)
    if not with_sim:
        jac_sim = jac_sim[:, :, :0]
    jac = np.concatenate([b_rows, jac_sim], 2)  # (M, 3, K+7)
    a_pl = np.einsum("mc,mck->mk", rows_n, jac)  # (M, K+7)
    r_pl = (resid * rows_n).sum(1)
    ata = (a_pl * rows_w[:, None]).T @ a_pl
    atb = a_pl.T @ (rows_w * r_pl)
    jac_flat = jac.reshape(-1, jac.shape[2])
    w3 = np.repeat(POINT_TO_POINT * rows_w, 3)
    ata += (jac_flat * w3[:, None]).T @ jac_flat
    atb += jac_flat.T @ (w3 * resid.reshape(-1))
    if landmarks is not None:
        lm_p, lm_v = landmarks
        lj = np.concatenate([basis_vk[lm_v], np.concatenate(
            [-lm_p[:, :, None], skew(lm_p), -np.repeat(np.eye(3)[None], len(lm_p), 0)], 2)[:, :, :jac.shape[2] - num_k]],
            2).reshape(-1, jac.shape[2])
        lw = LANDMARK_WEIGHT * rows_w.sum() / max(len(rows_w), 1)
        ata += lw * lj.T @ lj
        atb += lw * lj.T @ (lm_p - base_verts[lm_v]).reshape(-1)
    reg = np.zeros(jac.shape[2])
    reg[:num_k] = prior_weight * rows_w.sum() * PRIOR_SCALE / prior_std ** 2
    reg[num_k:] = SIM_RIDGE * rows_w.sum()
    if sim_prior is not None and jac.shape[2] > num_k:  # pull the accumulated correction back towards 0
        current, precision = sim_prior
        reg[num_k:] += precision * rows_w.sum()
        atb[num_k:] -= precision * rows_w.sum() * current
    sol = np.linalg.solve(ata + np.diag(reg + SOLVE_FLOOR), atb)  # the floor: no matches at all -> no step
    coeffs = sol[:num_k]
    if not with_sim:
        return coeffs, Similarity()
    ds, omega, trans = sol[num_k], sol[num_k + 1:num_k + 4], sol[num_k + 4:]
    return coeffs, Similarity(1.0 + float(ds), rodrigues(omega), trans)


def project_on_bases(verts: np.ndarray, base_verts: np.ndarray, bases: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """(K,) least-squares coefficients c with base_verts + sum_k c_k bases[k] ~ verts (slightly ridged)."""
    mat = bases.reshape(len(bases), -1).astype(float)  # (K, 3V)
    gram = mat @ mat.T
    rhs = mat @ (verts - base_verts).reshape(-1)
    return np.linalg.solve(gram + ridge * np.trace(gram) / len(gram) * np.eye(len(gram)), rhs)


def _gated_query(cloud: PointCloud, query: np.ndarray, bound: float) -> tuple[np.ndarray, np.ndarray]:
    """Nearest scan points of `query`, searched only up to `bound` (k-d trees crawl for far queries: on a face shell
    most of the template lies far from the scan); the gates below never keep a match beyond `bound` when the
    median distance is under a third of it (3x median and the face gate 0.05 diag <= bound = 0.1 diag), and then
    the result equals the unbounded one; otherwise the search is repeated unbounded."""
    dist, idx = cloud.tree.query(query, distance_upper_bound=bound)
    median = np.median(dist)
    if np.isfinite(median) and MEDIAN_GATE * median <= bound:
        far = ~np.isfinite(dist)
        return np.where(far, np.inf, dist), np.where(far, 0, idx)
    return cloud.tree.query(query)


def refine_similarity(cloud: PointCloud, verts: np.ndarray, faces: np.ndarray, sim: Similarity,
                      iters: int = 10, max_points: int = 3000, outside_mask: np.ndarray | None = None,
                      outside_tol: float = 0.5) -> Similarity:
    """Point-to-plane Gauss-Newton refinement of a scan->template similarity (converges where ICP crawls).

    outside_mask: (V,) template vertices where the scan may lie far outside the skin (hair): there, matches
    more than `outside_tol` (template units) outside the template count less, so hair does not inflate the scale.
    """
    nrm = vertex_normals(verts, faces)
    sub = np.linspace(0, len(verts) - 1, min(max_points, len(verts))).astype(np.int64)
    no_bases = np.zeros((len(verts), 3, 0))
    wide_gate = FACE_GATE * bbox_diagonal(verts)
    for _ in range(iters):
        # the template into the scan's frame, not the scan into the template's (no new KD-tree per step)
        dist, idx = _gated_query(cloud, sim.inverse().apply(verts[sub]), 2.0 * wide_gate / sim.scale)
        dist = dist * sim.scale  # template units
        near_nrm = cloud.normals[idx] @ sim.rotation.T
        gate = np.full(len(sub), MEDIAN_GATE * np.median(dist) + 1e-9)
        if outside_mask is not None:  # hair-free parts (the face) may be far off when hair set the scale
            gate[~outside_mask[sub]] = max(gate[0], wide_gate)
        ok = (dist < gate) & ((near_nrm * nrm[sub]).sum(1) > MATCH_NORMAL_COS)
        if ok.sum() < MIN_MATCHES:
            break
        pts, pn, vid = sim.apply(cloud.points[idx[ok]]), near_nrm[ok], sub[ok]
        weight = outside_weights(pts, pn, verts[vid], vid, outside_mask, outside_tol)
        _, step = solve_bases_step(no_bases, verts, vid, pts, pn, weight, np.ones(0), 0.0, True, None)
        sim = step.compose(sim)
    return sim

