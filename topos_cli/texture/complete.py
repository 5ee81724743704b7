"""Complete a partial UV texture: symmetry fill, then a skin prior blended seam-free by pull-push.

1. Mirror: a texel the photo saw poorly takes its mirror texel's value in proportion to how much better the
   mirror was seen (weights blend, so the photo/mirror border has no step).
2. Prior: the rest follows a prior texture (the template's default skin flattened to one tone outside its
   features, `flatten_prior`: lips, brows and lids keep their own colours) times a colour ratio: the photo's
   robust (median) skin/prior ratio, and near observed texels a smooth local ratio pulled and pushed in from them
   (`render/textures.fill_padding`) that fades into the global one over `reach` of the side, so
   the completed skin continues the photo's tone without a seam while far texels do not inherit the colour of
   the last (often grazing or misfit) border texel.
3. Trust: with a head fitted to the photo (not its true shape) the photo's and mirror's shares are scaled by
   `trust` < 1: each texel shrinks toward the completion, the estimate that does not depend on the head's
   registration (see `pipelines/tex.py` FITTED_HEAD).
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
RATIO_REACH = 1 / 64  # with an exact head the local ratio fades into the global one over this fraction of the side
# (e-folding) away from observed texels: on 12 held-out synthetic heads (true mesh) photo/mirrored/completed MAE
# 0.0119/0.0158/0.0142 with the global ratio alone -> 0.0119/0.0161/0.0143, but the photo/completion border's
# gradient ridge 1.36 -> 1.20x its surroundings (no seam); reach 0 (global only) suits fitted heads, whose border
# texels carry their misfit shading (generate-geo's head: completed 0.0139 global, 0.0159 with this reach)
RATIO_MIN_TEXELS = 16  # fewer well-seen texels than this: no colour to follow (ratio 1: the prior as it is)
FEATURE_MASKS = ("lips", "brows", "eyeliner")  # where the default skin's own colours stay in the prior


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
        (blended values (S*S, C), own weight (S*S,), mirror weight (S*S,)) with
        mirror weight = (1 - own) * mirror's weight.
    """
    has = mirror >= 0
    w_m = np.where(has, weight[np.maximum(mirror, 0)], 0.0) * (1.0 - weight)
    v_m = values[np.maximum(mirror, 0)]
    total = weight + w_m
    out = (values * weight[:, None] + v_m * w_m[:, None]) / np.maximum(total, 1e-12)[:, None]
    return out, weight, w_m


def complete(albedo: np.ndarray, weight: np.ndarray, covered: np.ndarray, mirror_index: np.ndarray,
             prior: np.ndarray, trust: float | np.ndarray = 1.0, reach: float = RATIO_REACH) -> Completion:
    """Mirror-fill and prior-complete a partial albedo.

    Args:
        albedo: (S, S, 3) linear albedo where seen (anything elsewhere). weight: (S, S) confidence in [0, 1].
        covered: (S, S) bool texels on the UV charts. mirror_index: (S*S,) flat mirror texel per texel (-1).
        prior: (S, S, 3) linear prior albedo (the template's default skin, `flatten_prior`).
        trust: scale of the photo's and mirror's shares, a number or (S, S) per texel (1: the head is the
            photographed shape; below 1 a texel shrinks toward the completion). The completion's colour uses the
            full weights.
        reach: how far (fraction of the side) the completion follows the local colour of observed texels
            before it is the photo's global skin colour (`smooth_ratio`); 0: global only.
    """
    s = covered.shape[0]
    flat, w = albedo.reshape(-1, 3), np.where(covered, weight, 0.0).reshape(-1)
    mixed, w_own, w_mir = mirror_fill(flat, w, mirror_index)
    mixed = mixed.reshape(s, s, 3)
    seen = np.where(covered, np.clip(w_own + w_mir, 0.0, 1.0).reshape(s, s), 0.0)
    ratio = smooth_ratio(mixed, prior, seen, covered, reach)
    filled = prior * ratio
    trust = np.broadcast_to(np.asarray(trust, np.float64), (s, s))
    share = (trust * seen)[..., None]
    out = np.where(covered[..., None], share * mixed + (1 - share) * filled, 0.0)
    photo = np.where(covered, trust * w_own.reshape(s, s), 0.0)
    mirror = np.where(covered, trust * w_mir.reshape(s, s), 0.0)
    return Completion(out, photo, mirror, np.where(covered, 1.0 - np.clip(photo + mirror, 0, 1), 0.0))


def flatten_prior(prior: np.ndarray, features: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """The default skin with one tone outside its features: (S, S, 3) `prior` where `features` (S, S) in [0, 1]
    is 1, the median of `prior` over the `skin` (S, S) bool texels where it is 0, blended in between (the
    default skin's blotches and freckles are one person's; on 12 held-out synthetic heads completed-texel MAE
    with the true mesh 0.0153 -> 0.0142 with the global ratio)."""
    tone = np.median(prior[skin], axis=0) if skin.any() else prior.reshape(-1, prior.shape[-1]).mean(0)
    f = np.clip(features, 0.0, 1.0)[..., None]
    return f * prior + (1.0 - f) * tone


def smooth_ratio(values: np.ndarray, prior: np.ndarray, seen: np.ndarray, covered: np.ndarray,
                 reach: float = RATIO_REACH) -> np.ndarray:
    """(S, S, 3) observed/prior colour ratio: the robust global ratio, and near observed texels a smooth local one.

    The global ratio is the median over well-seen texels. The local one is computed at RATIO_SIZE²
    (low-frequency by construction): confidence-weighted area averages of the ratio, a normalized Gaussian blur,
    pull-push into the unseen texels; it fades into the global one (in log ratio) with the distance from
    observed texels, e-folding over `reach` of the side (0: the global ratio everywhere), then bilinear to S².
    """
    import cv2

    s = covered.shape[0]
    observed = seen >= RATIO_MIN_SEEN
    if observed.sum() < RATIO_MIN_TEXELS:
        return np.ones((s, s, 3))
    glob = np.clip(np.median(values[observed] / np.maximum(prior[observed], 1e-4), axis=0), *RATIO_RANGE)
    if reach <= 0:
        return np.broadcast_to(glob, (s, s, 3)).copy()
    small = min(s, RATIO_SIZE)
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
    keep = np.exp(-ndimage.distance_transform_edt(~(have & chart)) / (small * reach))[..., None]
    est = glob * (np.maximum(est, 1e-6) / glob) ** keep
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
