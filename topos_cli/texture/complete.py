"""Complete a partial UV texture: symmetry fill, then a skin prior blended seam-free by pull-push.

1. Mirror: a texel the photo saw poorly takes its mirror texel's value in proportion to how much better the
   mirror was seen (weights blend, so the photo/mirror border has no step).
2. Prior: the rest follows a prior texture (the template's default skin: lips, brows, eyelids, the inside
   of the mouth and the eye rims keep their own colours there) times a smooth colour ratio pulled and pushed
   in from the observed texels (`render/textures.fill_padding`), so the completed skin continues the photo's
   tone without a seam, and texels far from any observation fall back to the prior's layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from topos_cli.render.textures import fill_padding

RATIO_BLUR_FRACTION = 1 / 128  # the photo/prior colour ratio is smoothed over 1/128 of the texture side
PAD_RING = 4  # texels around the charts copied from the nearest chart texel (bilinear + 2 mip levels read them)
RATIO_SIZE = 256  # ... at this resolution (a low-frequency field: 1024² costs 20x more for the same result)
RATIO_MIN_SEEN = 0.5  # only well-seen texels set the completion's colour: grazing ones carry Fresnel sheen
RATIO_RANGE = (0.25, 4.0)  # the ratio is clamped: a dark hair texel must not paint a whole cheek black


@dataclass
class Completion:
    """A completed texture and where its texels came from.

    Attributes:
        albedo: (S, S, 3) linear albedo on the covered texels (zero elsewhere until padded).
        photo, mirror, prior: (S, S) float fractions of each texel's value from each source (sum 1 on charts).
    """

    albedo: np.ndarray
    photo: np.ndarray
    mirror: np.ndarray
    prior: np.ndarray


def mirror_fill(values: np.ndarray, weight: np.ndarray, mirror: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                                       np.ndarray]:
    """Blend each texel with its mirror texel by confidence.

    Args:
        values: (S*S, C) texel values (flat). weight: (S*S,) confidence in [0, 1]. mirror: (S*S,) mirror texel
            index per texel (-1: none).

    Returns:
        values (S*S, C), own share (S*S,), mirror share (S*S,) of the total weight (S*S,) ... as
        (blended values, own weight, mirror weight) with mirror weight = (1 - own) * mirror's weight.
    """
    has = mirror >= 0
    w_m = np.where(has, weight[np.maximum(mirror, 0)], 0.0) * (1.0 - weight)
    v_m = values[np.maximum(mirror, 0)]
    total = weight + w_m
    out = (values * weight[:, None] + v_m * w_m[:, None]) / np.maximum(total, 1e-12)[:, None]
    return out, weight, w_m


def complete(albedo: np.ndarray, weight: np.ndarray, covered: np.ndarray, mirror_index: np.ndarray,
             prior: np.ndarray) -> Completion:
    """Mirror-fill and prior-complete a partial albedo.

    Args:
        albedo: (S, S, 3) linear albedo where seen (anything elsewhere). weight: (S, S) confidence in [0, 1].
        covered: (S, S) bool texels on the UV charts. mirror_index: (S*S,) flat mirror texel per texel (-1).
        prior: (S, S, 3) linear prior albedo (the template's default skin).
    """
    s = covered.shape[0]
    flat, w = albedo.reshape(-1, 3), np.where(covered, weight, 0.0).reshape(-1)
    mixed, w_own, w_mir = mirror_fill(flat, w, mirror_index)
    mixed = mixed.reshape(s, s, 3)
    seen = np.where(covered, np.clip(w_own + w_mir, 0.0, 1.0).reshape(s, s), 0.0)
    ratio = smooth_ratio(mixed, prior, seen, covered)
    filled = prior * ratio
    share = seen[..., None]
    out = np.where(covered[..., None], share * mixed + (1 - share) * filled, 0.0)
    photo = np.where(covered, w_own.reshape(s, s), 0.0)
    mirror = np.where(covered, w_mir.reshape(s, s), 0.0)
    return Completion(out, photo, mirror, np.where(covered, 1.0 - np.clip(photo + mirror, 0, 1), 0.0))


def smooth_ratio(values: np.ndarray, prior: np.ndarray, seen: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """(S, S, 3) smooth observed/prior colour ratio, extended over the charts by pull-push.

    Computed at RATIO_SIZE² (the ratio is low-frequency by construction): confidence-weighted area averages
    of the ratio, a normalized Gaussian blur, pull-push into the unseen texels, bilinear back to S².
    """
    import cv2

    s = covered.shape[0]
    small = min(s, RATIO_SIZE)
    observed = seen >= RATIO_MIN_SEEN
    w = np.where(observed, seen, 0.0).astype(np.float32)
    ratio = np.where(observed[..., None], values / np.maximum(prior, 1e-4), 0.0).astype(np.float32)
    area = cv2.INTER_AREA
    num = cv2.resize(ratio * w[..., None], (small, small), interpolation=area)
    den = cv2.resize(w, (small, small), interpolation=area)
    sigma = max(small * RATIO_BLUR_FRACTION, 0.5)
    num = np.stack([ndimage.gaussian_filter(num[..., c], sigma) for c in range(3)], -1)
    den = ndimage.gaussian_filter(den, sigma)
    have = den > RATIO_MIN_SEEN * 0.01
    est = np.where(have[..., None], num / np.maximum(den, 1e-6)[..., None], 0.0)
    chart = cv2.resize(covered.astype(np.float32), (small, small), interpolation=area) > 0
    est = fill_padding(np.clip(est, *RATIO_RANGE), have & chart)
    return np.clip(cv2.resize(est.astype(np.float32), (s, s), interpolation=cv2.INTER_LINEAR), *RATIO_RANGE)


def pad_charts(image: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """Fill the texels outside the UV charts (what bilinear and mip filtering read at chart borders).

    Pull-push (`render/textures.fill_padding`) at RATIO_SIZE² of the coverage-weighted image, upsampled, then the
    PAD_RING texels nearest the charts take their nearest chart texel so borders continue exactly; the charts
    themselves are unchanged. The same look as a full-resolution pull-push at 1/10 of its cost at 1024².
    """
    import cv2

    s = covered.shape[0]
    small = min(s, RATIO_SIZE)
    img = np.asarray(image, np.float32)
    cov = covered.astype(np.float32)
    area = cv2.INTER_AREA
    num = cv2.resize(img * (cov[..., None] if img.ndim == 3 else cov), (small, small), interpolation=area)
    den = cv2.resize(cov, (small, small), interpolation=area)
    have = den > 1e-3
    low = np.where(have[..., None] if img.ndim == 3 else have,
                   num / np.maximum(den, 1e-6)[..., None] if img.ndim == 3 else num / np.maximum(den, 1e-6), 0.0)
    up = cv2.resize(fill_padding(low, have).astype(np.float32), (s, s), interpolation=cv2.INTER_LINEAR)
    dist, (ri, ci) = ndimage.distance_transform_edt(~covered, return_indices=True)
    ring = (dist > 0) & (dist <= PAD_RING)
    out = np.where((covered | ring)[..., None] if img.ndim == 3 else covered | ring, img[ri, ci], up)
    return out.astype(np.float64)
