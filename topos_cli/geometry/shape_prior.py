"""Gaussian shape priors as scaled principal directions: ``delta = sum_k c_k B_k`` with ``c ~ N(0, 1)``.

Two sources, the same output shape (K, V, 3):
- `population_basis`: the spread of the heads `topos augment` draws (identity modes ~ N(0, 1), and per region
  `pick` of its blendshapes with uniform weights, normalised when they sum past one), as the coefficients'
  covariance pushed through the template's bases. The prior of a head nothing is known about.
- `covariance_basis`: any covariance of coefficients in an orthonormal basis of vertex offsets, e.g. what a
  generator still gets wrong on held-out renders (its residual covariance; `models/cond_mean.py`), so a later
  fit moves the head only where the generator is unsure, and by as much as it typically errs.
"""

from __future__ import annotations

import numpy as np

POPULATION_DRAWS = 4000  # coefficient draws for the covariance (244 coefficients: ~16 draws per dimension)
RELATIVE_TOL = 1e-3  # directions with a standard deviation below this fraction of the largest are dropped


def population_coefficients(template, draws: int = POPULATION_DRAWS, seed: int = 0) -> tuple[np.ndarray, list]:
    """((draws, C) coefficient draws like `topos augment --identity-sigma 1`, [(basis name, count), ...])."""
    from topos_cli.geometry.augment import region_table

    rng = np.random.default_rng(seed)
    names = [("identity", template.basis("identity").shape[0])]
    blocks = [rng.standard_normal((draws, names[0][1]))]
    if template.meta.get("augment"):
        pick, table = region_table(template)
        for spec in table.values():
            count = template.basis(spec["basis"]).shape[0]
            chosen = np.argsort(rng.random((draws, count)), axis=1)[:, :min(pick, count)]
            weights = rng.uniform(float(spec.get("lower", 0.0)), float(spec.get("upper", 1.0)), chosen.shape)
            weights /= np.maximum(weights.sum(1, keepdims=True), 1.0)  # normalised only past one, as augment does
            block = np.zeros((draws, count))
            np.put_along_axis(block, chosen, weights, axis=1)
            names.append((spec["basis"], count))
            blocks.append(block)
    return np.concatenate(blocks, 1), names


def population_basis(template, draws: int = POPULATION_DRAWS, seed: int = 0) -> np.ndarray:
    """(K, V, 3) float32 principal directions of augment's identity + region heads, scaled by their std."""
    coeffs, names = population_coefficients(template, draws, seed)
    bases = np.concatenate([template.basis(n).reshape(c, -1) for n, c in names]).astype(np.float64)
    centred = coeffs - coeffs.mean(0)
    cov = centred.T @ centred / len(centred)
    evals, evecs = np.linalg.eigh(cov)
    scaled = (evecs * np.sqrt(np.maximum(evals, 0.0))).T @ bases  # rows span the offsets' covariance
    return _principal_rows(scaled).reshape(-1, template.num_verts, 3).astype(np.float32)


def _principal_rows(rows: np.ndarray) -> np.ndarray:
    """The principal directions of a row set, each scaled by its singular value (an SVD through the small Gram
    matrix: C x C instead of C x V*3)."""
    gram = rows @ rows.T
    evals, evecs = np.linalg.eigh(gram)
    order = np.argsort(evals)[::-1]
    evals, evecs = np.maximum(evals[order], 0.0), evecs[:, order]
    keep = evals > RELATIVE_TOL ** 2 * max(evals[0], 1e-30)
    return evecs[:, keep].T @ rows  # u_k^T R = s_k v_k^T


def covariance_basis(cov: np.ndarray, rows: np.ndarray, num_verts: int) -> np.ndarray:
    """(K, V, 3) float32 scaled principal directions of offsets ``a @ rows`` with ``cov(a) = cov``.

    Args:
        cov: (C, C) covariance of the coefficients. rows: (C, V*3) their offsets (orthonormal or not: the result
            is re-orthogonalised in vertex space, so truncating it keeps the most variance).
    """
    evals, evecs = np.linalg.eigh(np.asarray(cov, np.float64))
    order = np.argsort(evals)[::-1]
    evals, evecs = np.maximum(evals[order], 0.0), evecs[:, order]
    keep = evals > RELATIVE_TOL ** 2 * max(evals[0], 1e-30)
    dirs = (np.sqrt(evals[keep])[:, None] * evecs[:, keep].T) @ np.asarray(rows, np.float64)
    return _principal_rows(dirs).reshape(-1, num_verts, 3).astype(np.float32)  # orthogonal, largest first
