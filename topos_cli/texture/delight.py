"""Remove the lighting from photo texels: order-2 spherical-harmonics shading fitted robustly.

Skin is treated as one albedo under smooth distant white light: a texel's luminance is `rho * E(n)`, with
`E` a 9-coefficient SH irradiance of the surface normal (one shading for all channels: per-channel fits
extrapolate differently on poorly sampled normals, e.g. eyelid creases, and tinted them pink). The fit runs on texels the caller marks as
skin, with iteratively reweighted least squares (Cauchy weights on the luminance residual), so hair, glasses,
eyes, brows, lips and background that a misfit silhouette lets in weigh little; texels whose final weight is
below `DROP_WEIGHT` are dropped and the fit is redone on the rest. Then `albedo = I / S` with
`S = E / mean(E)` on the fitted texels: the lighting's change across the face
goes, and the photo's average skin colour stays (its absolute level is unobservable under unknown light).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from topos_cli.render.lights import sh_basis

IRLS_PASSES = 3  # reweighting passes; the weights settled after 3 on synthetic faces (prototype)
CAUCHY_C = 2.385  # Cauchy constant (95 % efficiency), times the residuals' robust scale (1.4826 MAD)
DROP_WEIGHT = 0.3  # texels weighing less are not skin: without dropping them fitted-mesh errors rose 5x
SHADING_FLOOR = 0.2  # shading below this fraction of its median is a shadow the fit cannot explain: clamp
RIDGE = 1e-3  # relative Tikhonov weight on the SH coefficients (keeps bands the normals do not span tame)
LUMA = np.array([0.2126, 0.7152, 0.0722])  # Rec. 709 luminance of linear RGB


@dataclass
class Delit:
    """The lighting fitted to a photo's texels and the albedo it leaves.

    Attributes:
        albedo: (N, 3) linear albedo (photo colour divided by relative shading).
        shading: (N,) relative shading (1 = the mean over the fitted texels).
        coefficients: (9,) SH irradiance coefficients of the luminance (photo units).
        inliers: (N,) bool texels the final fit used.
    """

    albedo: np.ndarray
    shading: np.ndarray
    coefficients: np.ndarray
    inliers: np.ndarray


def _solve(basis: np.ndarray, values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted ridge least squares: (9, C) coefficients with basis (N, 9), values (N, C), weights (N,)."""
    bw = basis * weights[:, None]
    gram = bw.T @ basis
    gram += RIDGE * np.trace(gram) / len(gram) * np.eye(len(gram))
    return np.linalg.solve(gram, bw.T @ values)


def fit_sh(normal: np.ndarray, luma: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Robust SH irradiance fit of luminance. Returns coefficients (9,) and the final robust weights (N,)."""
    basis = sh_basis(np.asarray(normal, np.float64))
    luma = np.asarray(luma, np.float64)[:, None]
    w = np.asarray(weight, np.float64)
    coef = _solve(basis, luma, w)
    robust = np.ones(len(w))
    seen = w > 0
    for _ in range(IRLS_PASSES):
        pred = (basis @ coef)[:, 0]
        resid = (luma[:, 0] - pred) / max(float(np.median(pred[seen])), 1e-6)
        scale = 1.4826 * np.median(np.abs(resid[seen] - np.median(resid[seen]))) + 1e-6
        robust = 1.0 / (1.0 + (resid / (CAUCHY_C * scale)) ** 2)
        coef = _solve(basis, luma, w * robust)
    keep = robust >= DROP_WEIGHT
    coef = _solve(basis, luma, w * robust * keep)
    return coef[:, 0], robust * keep


def delight(colour: np.ndarray, normal: np.ndarray, weight: np.ndarray, fit: np.ndarray) -> Delit:
    """De-light photo texels.

    Args:
        colour: (N, 3) linear photo colour per texel. normal: (N, 3) unit normals (world).
        weight: (N,) sample confidence in [0, 1] (0 = unseen). fit: (N,) bool texels that may be skin.
    """
    colour = np.asarray(colour, np.float64)
    w = np.where(fit, weight, 0.0)
    if (w > 0).sum() < 9 * 4:  # too few skin texels to fit 9 coefficients: leave the photo as it is
        return Delit(colour, np.ones(len(w)), np.zeros(9), np.zeros(len(w), bool))
    coef, robust = fit_sh(normal, colour @ LUMA, w)
    irradiance = sh_basis(np.asarray(normal, np.float64)) @ coef  # (N,)
    used = robust > 0
    mean = max(float(np.average(irradiance[used], weights=(w * robust)[used])), 1e-6)
    shading = irradiance / mean
    shading = np.maximum(shading, SHADING_FLOOR * np.median(shading[used]))
    return Delit(colour / shading[:, None], shading, coef, used)


HIGHLIGHT_HEADROOM = 0.12  # albedo may exceed its neighbourhood's luminance by 12 % (freckle-free skin varies
# less than that at this scale); more is a specular highlight the diffuse SH model cannot explain
HIGHLIGHT_SIGMA_FRACTION = 1 / 48  # the neighbourhood: ~2 cm on a head, wider than a highlight on the nose


def suppress_highlights(albedo: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Remove white specular excess from a de-lit albedo image.

    A texel brighter than `1 + HIGHLIGHT_HEADROOM` times the weighted local mean luminance (computed twice, the
    second time without the bright texels) loses the excess as a white component (specular reflection of a
    white light adds the same amount to every channel).

    Args:
        albedo: (S, S, 3) linear albedo. weight: (S, S) confidence in [0, 1] (0 = no data).
    """
    from scipy import ndimage

    s = albedo.shape[0]
    sigma = max(s * HIGHLIGHT_SIGMA_FRACTION, 1.0)
    luma = albedo @ LUMA
    w = np.asarray(weight, np.float64)
    for _ in range(2):
        ref = ndimage.gaussian_filter(luma * w, sigma) / np.maximum(ndimage.gaussian_filter(w, sigma), 1e-6)
        w = np.where(luma > ref * (1 + HIGHLIGHT_HEADROOM), 0.0, np.asarray(weight, np.float64))
    excess = np.maximum(luma - ref * (1 + HIGHLIGHT_HEADROOM), 0.0) * (np.asarray(weight) > 0)
    return np.maximum(albedo - excess[..., None], 0.0)
