"""Many similarity ICPs at once: the robust alignment's multi-start stages (numpy, one k-d tree query per
direction per iteration for all starts). Symmetric trimmed correspondences, Gauss-Newton point-to-plane plus
point-to-point steps, and a score averaged over several trims."""

from __future__ import annotations

import numpy as np

from topos_cli.geometry.similarity import PointCloud, rodrigues_batch, skew

HESSIAN_DAMPING = 1e-9  # x trace(H) on the Gauss-Newton diagonal: keeps a rank-deficient step (a plane) solvable
MAX_LOG_SCALE_STEP = 0.5  # one Gauss-Newton step changes the scale by at most e^0.5 (linearisation is local)


def _gn_solve_batch(x: np.ndarray, diff: np.ndarray, normals: np.ndarray, w: np.ndarray, point_weight: float):
    """Batched `_gauss_newton_step`: centred points x (B, K, 3), weights w (B, K) -> (sigma, omega, tau) (B, 7)."""
    jac = np.concatenate(
        [(normals * x).sum(-1, keepdims=True), np.cross(x, normals), normals], -1
    )  # (B, K, 7)
    res = (normals * diff).sum(-1)  # (B, K)
    hess = np.einsum("bki,bk,bkj->bij", jac, w, jac)
    grad = np.einsum("bki,bk->bi", jac, res * w)
    if point_weight > 0:  # |a' - b|^2 term: J = [x, -[x]_x, I] per point, summed in closed form
        wx = x * w[:, :, None]
        xx = np.einsum("bki,bkj->bij", wx, x)
        sq = np.einsum("bki,bki->b", wx, x)
        xsum = wx.sum(1)
        hp = np.zeros_like(hess)
        hp[:, 0, 0] = sq
        hp[:, 0, 4:] = hp[:, 4:, 0] = xsum
        hp[:, 1:4, 1:4] = sq[:, None, None] * np.eye(3) - xx
        hp[:, 4:, 4:] = w.sum(1)[:, None, None] * np.eye(3)
        hp[:, 1:4, 4:] = skew(xsum)  # sum w (-[x]_x)^T = sum w [x]_x
        hp[:, 4:, 1:4] = hp[:, 1:4, 4:].transpose(0, 2, 1)
        wd = diff * w[:, :, None]
        gp = np.concatenate([np.einsum("bki,bki->b", x, wd)[:, None], np.cross(x, wd).sum(1), wd.sum(1)], 1)
        hess = hess + point_weight * hp
        grad = grad + point_weight * gp
    hess = hess + HESSIAN_DAMPING * np.trace(hess, axis1=1, axis2=2)[:, None, None] * np.eye(7)
    return -np.linalg.solve(hess, grad[:, :, None])[:, :, 0]


def _residual2(diff: np.ndarray, normals: np.ndarray, point_weight: float) -> np.ndarray:
    """Squared ICP residual per pair: point-to-plane^2 + point_weight * point-to-point^2."""
    return (diff * normals).sum(-1) ** 2 + point_weight * (diff**2).sum(-1)


def _multi_trim_score(r2_f: np.ndarray, r2_b: np.ndarray, trims) -> np.ndarray:
    """(B,) symmetric residual averaged over several kept fractions.

    A single trim tau lets a wrong pose hide a partial shell's distinctive part (a nose) among the dropped
    pairs; averaging over taus up to 0.9 exposes it, while the low taus keep partial overlaps comparable.
    """
    cums_f = np.cumsum(np.sort(r2_f, axis=1), axis=1)
    cums_b = np.cumsum(np.sort(r2_b, axis=1), axis=1)
    out = np.zeros(len(r2_f))
    for tau in trims:
        k_f = min(max(3, int(np.ceil(tau * r2_f.shape[1]))), r2_f.shape[1])
        k_b = min(max(3, int(np.ceil(tau * r2_b.shape[1]))), r2_b.shape[1])
        out += np.sqrt(0.5 * cums_f[:, k_f - 1] / k_f + 0.5 * cums_b[:, k_b - 1] / k_b)
    return out / len(trims)


def _trim_rows(r2: np.ndarray, trim: float) -> np.ndarray:
    """(B, N) -> (B, k) column indices of the k = ceil(trim N) smallest entries of each row."""
    k = max(3, int(np.ceil(trim * r2.shape[1])))
    if k >= r2.shape[1]:
        return np.broadcast_to(np.arange(r2.shape[1]), r2.shape).copy()
    return np.argpartition(r2, k - 1, axis=1)[:, :k]


def symmetric_icp_batch(
    src: PointCloud,
    dst: PointCloud,
    s: np.ndarray,
    rot: np.ndarray,
    t: np.ndarray,
    *,
    iters: int,
    trim: float,
    point_weight: float,
    scale_range: tuple[float, float],
    score_trims=(0.5, 0.7, 0.9),
):
    """Run B independent symmetric trimmed ICPs at once (one k-d tree query per direction per iteration).

    Args:
        src, dst: sample clouds.
        s (B,), rot (B, 3, 3), t (B, 3): start transforms.
        iters: iterations (fixed count; converged starts stay put).
        trim: kept fraction per direction.
        point_weight: point-to-point weight beside point-to-plane.
        scale_range: scale guard.
        score_trims: kept fractions the returned score averages over (see `_multi_trim_score`).

    Returns:
        s, rot, t after the iterations and (B,) scores measured at the returned transforms: the symmetric
        trimmed RMS of the objective (point-to-plane + point_weight * point-to-point), averaged over trims.
    """
    s, rot, t = s.copy(), rot.copy(), t.copy()
    rms = None
    for it in range(iters + 1):
        b = len(s)
        cur = s[:, None, None] * np.einsum("bij,nj->bni", rot, src.points) + t[:, None]  # (B, N, 3)
        j_f = dst.tree.query(cur.reshape(-1, 3))[1].reshape(b, -1)
        back = np.einsum("bmi,bij->bmj", dst.points[None] - t[:, None], rot) / s[:, None, None]  # (B, M, 3)
        j_b = src.tree.query(back.reshape(-1, 3))[1].reshape(b, -1)
        rows = np.arange(b)[:, None]
        tgt_f, nrm_f = dst.points[j_f], dst.normals[j_f]  # (B, N, 3) forward pairs: source -> target
        src_b = cur[rows, j_b]  # (B, M, 3) backward pairs: target -> source
        nrm_b = np.einsum("bkj,bij->bki", src.normals[j_b], rot)
        r2_f = _residual2(cur - tgt_f, nrm_f, point_weight)  # (B, N)
        r2_b = _residual2(src_b - dst.points, nrm_b, point_weight)  # (B, M)
        if it == iters:
            rms = _multi_trim_score(r2_f, r2_b, score_trims)
            break
        k_f, k_b = _trim_rows(r2_f, trim), _trim_rows(r2_b, trim)
        a = np.concatenate([cur[rows, k_f], src_b[rows, k_b]], 1)  # (B, K, 3)
        tgt = np.concatenate([tgt_f[rows, k_f], np.broadcast_to(dst.points, src_b.shape)[rows, k_b]], 1)
        nrm = np.concatenate([nrm_f[rows, k_f], nrm_b[rows, k_b]], 1)
        w = np.concatenate(
            [np.full(k_f.shape, 0.5 / k_f.shape[1]), np.full(k_b.shape, 0.5 / k_b.shape[1])], 1
        )
        c = np.einsum("bk,bki->bi", w, a) / w.sum(1, keepdims=True)
        theta = _gn_solve_batch(a - c[:, None], a - tgt, nrm, w, point_weight)
        ds = np.exp(np.clip(theta[:, 0], -MAX_LOG_SCALE_STEP, MAX_LOG_SCALE_STEP))
        d_rot = rodrigues_batch(theta[:, 1:4])
        dt = c + theta[:, 4:] - ds[:, None] * np.einsum("bij,bj->bi", d_rot, c)
        s_new = np.clip(ds * s, *scale_range)
        rot = d_rot @ rot
        t = ds[:, None] * np.einsum("bij,bj->bi", d_rot, t) + dt
        t = t + (ds * s - s_new)[:, None] * np.einsum(
            "bij,j->bi", rot, src.points.mean(0)
        )  # guard keeps centroid
        s = s_new
    return s, rot, t, rms
