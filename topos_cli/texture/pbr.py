"""PBR maps for a de-lit albedo: roughness and specular from region priors modulated by the albedo, and a
tangent-space normal map from the fine detail of the de-lit luminance (as MARCUS-Avatar does).

Encodings follow `render/textures.TextureSample`: roughness is perceptual roughness, specular is an F0 scale
(1 = skin's 0.028), stored as value / 2 in 8 bits, so `Material(roughness=1, specular=2)` renders the maps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

BASE_ROUGHNESS = 0.5  # perceptual roughness of average facial skin (measured skin BRDFs: 0.45-0.6)
TZONE_ROUGHNESS = -0.12  # forehead and nose are oilier: sharper highlights
LIPS_ROUGHNESS = -0.1  # lips are moist
BROWS_ROUGHNESS = 0.25  # hair scatters: brows and beard shadow are matte
BEARD_ROUGHNESS = 0.1
TZONE_SPECULAR, LIPS_SPECULAR, BROWS_SPECULAR, BEARD_SPECULAR = 0.4, 0.3, -0.6, -0.3  # F0 scale offsets
ALBEDO_MODULATION = 0.25  # darker-than-median texels (stubble, brows, pores) get up to 25 % rougher, less specular
DETAIL_SIGMA_FRACTION = 1 / 256  # high-pass: detail finer than 1/256 of the texture side (pores, fine wrinkles)
DETAIL_STRENGTH = 1.0  # height-field gain: 1 % luminance contrast tilts the normal by ~0.5 deg at 1024². Most of
# the de-lit luminance's fine detail is albedo, not relief: on the relit-render protocol (benchmarks/generate_tex.py,
# 3 held-out heads) gain 6 -> 0.5 raised SSIM 0.9635 -> 0.979 and PSNR 35.8 -> 37.9 dB, and a flipped sign
# scored the same as the right one (no relief signal to keep); 1.0 keeps a trace of pores on real photos
DETAIL_CLIP = 0.15  # relative luminance detail beyond this is a feature edge (brow, lip line), not relief


@dataclass
class PbrMaps:
    """roughness (S, S) perceptual roughness; specular (S, S) F0 scale; normal (S, S, 3) unit tangent-space
    normals (x along +u, y along +v, z out of the surface)."""

    roughness: np.ndarray
    specular: np.ndarray
    normal: np.ndarray


def pbr_maps(albedo: np.ndarray, masks: dict[str, np.ndarray], detail_weight: np.ndarray,
             default_normal: np.ndarray | None = None) -> PbrMaps:
    """Roughness, specular and normal maps for a linear albedo (S, S, 3).

    Args:
        albedo: (S, S, 3) linear albedo.
        masks: soft (S, S) region masks with keys tzone, lips, brows, beard (`render/textures.feature_masks`).
        detail_weight: (S, S) in [0, 1]: where the albedo's fine detail is real (photo texels); elsewhere the
            normal map comes from `default_normal`.
        default_normal: (S, S, 3) unit tangent-space normals for unseen texels (flat when None).
    """
    luma = albedo @ np.array([0.2126, 0.7152, 0.0722])
    median = float(np.median(luma[luma > 0])) if (luma > 0).any() else 1.0
    dark = np.clip(1.0 - luma / max(median, 1e-6), 0.0, 1.0)
    zero = np.zeros_like(luma)
    m = {k: masks.get(k, zero) for k in ("tzone", "lips", "brows", "beard")}
    rough = (BASE_ROUGHNESS + TZONE_ROUGHNESS * m["tzone"] + LIPS_ROUGHNESS * m["lips"]
             + BROWS_ROUGHNESS * m["brows"] + BEARD_ROUGHNESS * m["beard"]) * (1 + ALBEDO_MODULATION * dark)
    spec = (1.0 + TZONE_SPECULAR * m["tzone"] + LIPS_SPECULAR * m["lips"] + BROWS_SPECULAR * m["brows"]
            + BEARD_SPECULAR * m["beard"]) * (1 - ALBEDO_MODULATION * dark)
    normal = detail_normals(luma, detail_weight, default_normal)
    return PbrMaps(np.clip(rough, 0.05, 1.0), np.clip(spec, 0.0, 2.0), normal)


def detail_normals(luma: np.ndarray, weight: np.ndarray, default_normal: np.ndarray | None = None) -> np.ndarray:
    """Tangent-space normals (S, S, 3) from a high-pass of log-luminance (darker = lower: pores, creases)."""
    from topos_cli.render.textures import _normal_map

    s = luma.shape[0]
    log = np.log(np.maximum(luma, 1e-4))
    sigma = max(s * DETAIL_SIGMA_FRACTION, 0.5)
    height = np.clip(log - ndimage.gaussian_filter(log, sigma), -DETAIL_CLIP, DETAIL_CLIP) * np.clip(weight, 0, 1)
    photo = _normal_map(height, DETAIL_STRENGTH * s / 1024)
    if default_normal is None:
        return photo
    w = np.clip(weight, 0, 1)[..., None]
    mixed = w * photo + (1 - w) * default_normal
    return mixed / np.maximum(np.linalg.norm(mixed, axis=-1, keepdims=True), 1e-8)
