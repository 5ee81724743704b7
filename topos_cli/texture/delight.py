"""Remove the lighting from photo texels: order-2 spherical-harmonics shading fitted robustly.

Skin is treated as one albedo under smooth distant light: a texel's luminance is `rho * E(n)`, with
`E` a smooth function of the surface normal (order-2 SH plus cubic terms, `shading_basis`) (one shading for all channels: independent per-channel
fits extrapolate differently on poorly sampled normals, e.g. eyelid creases, and tinted them pink). The light's
colour may still change with the normal (a warm key on one side, a cool sky on the other): `light_tint` fits each
channel's share of the de-lit luminance over the normal (ridge-pulled to a constant, clamped to TINT_RANGE). The fit runs on texels the caller marks as
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

FIT_SAMPLES = 40_000  # texels the shading fit uses at most (19 coefficients; at 1024² ~300k texels are seen)
IRLS_PASSES = 3  # reweighting passes; the weights settled after 3 on synthetic faces (prototype)
CAUCHY_C = 2.385  # Cauchy constant (95 % efficiency), times the residuals' robust scale (1.4826 MAD)
DROP_WEIGHT = 0.3  # texels weighing less are not skin: without dropping them fitted-mesh errors rose 5x
SHADING_FLOOR = 0.2  # shading below this fraction of its median is a shadow the fit cannot explain: clamp
RIDGE = 1e-3  # relative Tikhonov weight on the SH coefficients (keeps bands the normals do not span tame)
LUMA = np.array([0.2126, 0.7152, 0.0722])  # Rec. 709 luminance of linear RGB
SHADING_ORDER = 3  # the shading's polynomial degree in the normal: order-2 SH (9 terms) + the 10 cubic monomials.
# A directional key's clamped cosine and GGX's Fresnel-weighted diffuse are not band-limited to order 2: on 6
# held-out synthetic heads photo/mirrored/completed MAE 0.0114/0.0153/0.0158 (order 2) -> 0.0109/0.0142/0.0146
# (order 3) -> 0.0111/0.0141/0.0143 (order 4); with the true shading as oracle, order 2 leaves 0.0079, order 4 0.0057
TINT_ORDER = 2  # SH order of the light-colour fit (9 terms): on 6 held-out synthetic heads photo-texel MAE 0.0126
# (no tint) -> 0.0116 (order 1) -> 0.0114 (order 2); an oracle with the true shading puts per-channel order 2 at
# 0.0079 vs 0.0095 for one luminance shading (benchmarks/generate_tex.py heads: warm key, cool sky)
TINT_RIDGE = 1e-2  # relative ridge on the non-constant terms (1e-1 and 1e-3 measured the same)
TINT_RANGE = (0.8, 1.25)  # a channel's light colour stays within -20 %/+25 % of the mean: no pink creases


@dataclass
class Delit:
    """The lighting fitted to a photo's texels and the albedo it leaves.

    Attributes:
        albedo: (N, 3) linear albedo (photo colour divided by relative shading).
        shading: (N,) relative shading (1 = the mean over the fitted texels).
        coefficients: (K,) `shading_basis` coefficients of the luminance (photo units; the first 9 are SH).
        inliers: (N,) bool texels the final fit used.
    """

    albedo: np.ndarray
    shading: np.ndarray
    coefficients: np.ndarray
    inliers: np.ndarray


def shading_basis(normal: np.ndarray) -> np.ndarray:
    """(N, K) the lighting fit's basis: order-2 SH, plus the monomials of degree 3..SHADING_ORDER of the normal."""
    basis = sh_basis(normal)
    if SHADING_ORDER <= 2:
        return basis
    x, y, z = normal[:, 0], normal[:, 1], normal[:, 2]
    extra = [x ** a * y ** b * z ** (d - a - b) for d in range(3, SHADING_ORDER + 1)
             for a in range(d + 1) for b in range(d + 1 - a)]
    return np.concatenate([basis, np.stack(extra, 1)], 1)


def _solve(basis: np.ndarray, values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted ridge least squares: (K, C) coefficients with basis (N, K), values (N, C), weights (N,)."""
    bw = basis * weights[:, None]
    gram = np.einsum("nk,nj->kj", bw, basis)  # einsum, not BLAS: OpenBLAS threads stall on a busy machine
    gram += RIDGE * np.trace(gram) / len(gram) * np.eye(len(gram))
    return np.linalg.solve(gram, np.einsum("nk,nc->kc", bw, values))


def fit_sh(normal: np.ndarray, luma: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Robust shading fit of luminance. Returns coefficients (K,), robust weights (N,) of every texel (0 for
    texels the final fit rejects; texels with zero `weight` get the weight their residual would have) and the
    fitted shading (N,) of every texel."""
    basis_all = shading_basis(np.asarray(normal, np.float64))
    luma_all = np.asarray(luma, np.float64)
    idx = np.flatnonzero(np.asarray(weight) > 0)
    idx = idx[:: len(idx) // FIT_SAMPLES + 1]  # a regular subsample fits the same few numbers, much faster
    basis, values, w = basis_all[idx], luma_all[idx, None], np.asarray(weight, np.float64)[idx]
    coef = _solve(basis, values, w)
    robust = np.ones(len(w))
    for _ in range(IRLS_PASSES):
        robust, scale = _cauchy(_apply(basis, coef[:, 0]), values[:, 0], None)
        coef = _solve(basis, values, w * robust)
    coef = _solve(basis, values, w * robust * (robust >= DROP_WEIGHT))
    pred = _apply(basis_all, coef[:, 0])
    robust_all, _ = _cauchy(pred, luma_all, scale, float(np.median(_apply(basis, coef[:, 0]))))
    return coef[:, 0], robust_all * (robust_all >= DROP_WEIGHT), pred


def _luma(rgb: np.ndarray) -> np.ndarray:
    return np.einsum("...c,c->...", rgb, LUMA)


def _apply(basis: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """(N,) or (N, C) basis times coefficients (einsum: see `_solve`)."""
    return np.einsum("nk,k...->n...", basis, coef)


def _cauchy(pred: np.ndarray, values: np.ndarray, scale: float | None, level: float | None = None):
    """Cauchy weights of relative residuals (level: the median prediction) and the robust scale used."""
    level = float(np.median(pred)) if level is None else level
    resid = (values - pred) / max(level, 1e-6)
    if scale is None:
        scale = 1.4826 * float(np.median(np.abs(resid - np.median(resid)))) + 1e-6
    return 1.0 / (1.0 + (resid / (CAUCHY_C * scale)) ** 2), scale


def delight(colour: np.ndarray, normal: np.ndarray, weight: np.ndarray, fit: np.ndarray) -> Delit:
    """De-light photo texels.

    Args:
        colour: (N, 3) linear photo colour per texel. normal: (N, 3) unit normals (world).
        weight: (N,) sample confidence in [0, 1] (0 = unseen). fit: (N,) bool texels that may be skin.
    """
    colour = np.asarray(colour, np.float64)
    w = np.where(fit, weight, 0.0)
    terms = shading_basis(np.zeros((1, 3))).shape[1]
    if (w > 0).sum() < terms * 4:  # too few skin texels to fit the coefficients: leave the photo as it is
        return Delit(colour, np.ones(len(w)), np.zeros(terms), np.zeros(len(w), bool))
    coef, robust, irradiance = fit_sh(normal, _luma(colour), w)
    used = robust > 0
    mean = max(float(np.average(irradiance[used], weights=(w * robust)[used])), 1e-6)
    shading = irradiance / mean
    shading = np.maximum(shading, SHADING_FLOOR * np.median(shading[used]))
    albedo = colour / shading[:, None]
    albedo = albedo / light_tint(albedo, normal, w * robust)
    return Delit(albedo, shading, coef, used)


def light_tint(albedo: np.ndarray, normal: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """(N, 3) relative light colour per texel: a low-order fit of each channel's share of the luminance-de-lit
    albedo over the normal (a warm key and a cool sky tint the two sides of a face differently; one luminance
    shading cannot remove that), ridge-pulled to a constant and normalized to mean 1 on the fitted texels."""
    basis_all = _tint_basis(np.asarray(normal, np.float64))
    luma_all = np.maximum(_luma(albedo), 1e-6)
    share_all = albedo / luma_all[:, None]  # (N, 3) chromaticity relative to luminance
    idx = np.flatnonzero(weight > 0)
    idx = idx[:: len(idx) // FIT_SAMPLES + 1]
    basis, share, w = basis_all[idx], share_all[idx], weight[idx]
    bw = basis * w[:, None]
    gram = np.einsum("nk,nj->kj", bw, basis)
    reg = TINT_RIDGE * np.trace(gram) / len(gram) * np.eye(len(gram))
    reg[0, 0] = 0.0  # the constant is free
    coef = np.linalg.solve(gram + reg, np.einsum("nk,nc->kc", bw, share))  # (K, 3)
    tint = _apply(basis_all, coef)  # (N, 3)
    tint = tint / np.maximum(np.average(tint[idx], axis=0, weights=w), 1e-6)
    return np.clip(tint, *TINT_RANGE)


def _tint_basis(normal: np.ndarray) -> np.ndarray:
    basis = sh_basis(normal)
    return basis[:, : (TINT_ORDER + 1) ** 2]


HIGHLIGHT_SIGMA_FRACTION = 1 / 32  # the neighbourhood whose luminance a highlight is compared with (~3 cm)
HIGHLIGHT_MARGIN = 1.0  # a texel may lose specular only down to its neighbourhood's luminance
HIGHLIGHT_OUTLIER = 1.05  # texels brighter than this times the neighbourhood are left out of it (second pass)
LOCAL_MEAN_SIZE = 256  # the neighbourhood mean is smooth: computed at 256² (the same at 1024², 16x cheaper)
SKIN_CHROMA_MIN_SEEN = 0.5  # the reference skin chromaticity comes from texels seen at least this well


def suppress_highlights(albedo: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Remove white specular reflection from a de-lit albedo image (dichromatic model).

    Specular reflection of a white light adds the same amount `s` to every channel, while skin's diffuse
    colour keeps one chromaticity. With the reference skin chromaticity (median of well-seen texels, as
    blue/red and green/red ratios) each texel splits into `rho + s`: `s = (B - b R) / (1 - b)`. Only texels
    brighter than their neighbourhood (highlights left out of it) lose it, never below that neighbourhood,
    so lips, brows and shadows (other chromaticities, darker) keep their colour.

    Args:
        albedo: (S, S, 3) linear albedo. weight: (S, S) confidence in [0, 1] (0 = no data).
    """
    w = np.asarray(weight, np.float64)
    good = w >= SKIN_CHROMA_MIN_SEEN
    if good.sum() < 100:
        return albedo
    ref_rgb = np.median(albedo[good], axis=0)
    b = ref_rgb[2] / max(ref_rgb[0], 1e-6)
    s_chroma = (albedo[..., 2] - b * albedo[..., 0]) / max(1 - b, 1e-3)
    luma = _luma(albedo)
    ref = _local_mean(luma, w)
    w2 = np.where(luma > HIGHLIGHT_OUTLIER * ref, 0.0, w)  # the neighbourhood without the highlight itself
    ref = _local_mean(luma, w2, fallback=ref)
    cap = np.maximum(luma - HIGHLIGHT_MARGIN * ref, 0.0)
    spec = np.minimum(np.clip(s_chroma, 0.0, None), cap) * (w > 0)
    return np.maximum(albedo - spec[..., None], 0.0)


def _local_mean(values: np.ndarray, weight: np.ndarray, fallback: np.ndarray | None = None) -> np.ndarray:
    """Weighted Gaussian mean over HIGHLIGHT_SIGMA_FRACTION of the side, computed at LOCAL_MEAN_SIZE² (smooth)."""
    import cv2
    from scipy import ndimage

    s = values.shape[0]
    small = min(s, LOCAL_MEAN_SIZE)
    area = cv2.INTER_AREA
    vw = cv2.resize((values * weight).astype(np.float32), (small, small), interpolation=area)
    w = cv2.resize(weight.astype(np.float32), (small, small), interpolation=area)
    sigma = max(small * HIGHLIGHT_SIGMA_FRACTION, 0.5)
    vw, w = ndimage.gaussian_filter(vw, sigma), ndimage.gaussian_filter(w, sigma)
    mean = cv2.resize(vw / np.maximum(w, 1e-6), (s, s), interpolation=cv2.INTER_LINEAR)
    have = cv2.resize(w, (s, s), interpolation=cv2.INTER_LINEAR) > 1e-3
    return np.where(have, mean, fallback if fallback is not None else 0.0)
