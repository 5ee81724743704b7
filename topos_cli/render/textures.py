"""Procedural appearance in a template's UV space (TOPOS paper section 4.1: the template ships no textures).

`synthesize(atlas, rng)` returns an sRGB albedo map, roughness and specular maps and the drawn parameters:

* skin tone from a two-layer melanin / haemoglobin model (`skin_albedo`): light passes the epidermis twice
  (melanin absorption) and returns from the dermis with a diffusion-style reflectance set by the ratio of
  absorption (blood: oxy/deoxy haemoglobin, bloodless tissue) to scattering. Per-channel coefficients are
  effective broadband values; the free constants were fitted so the tones span measured skin colours, from
  sRGB about (223, 191, 178) to (79, 53, 35). `SKIN_TONES` fixes 16 melanin levels (very light to very dark);
  each sample jitters melanin and blood around its tone;
* fine noise, pores and low-frequency blotches;
* region tints: lips, brows, cheeks, beard shadow (where the template has those landmarks/regions);
* procedural makeup: blush, lipstick, eyeliner/eyelashes, eyeshadow and occasional tattoos;
* roughness/specular maps perturbed per sample (oilier T-zone, glossy lipstick, matte brows).

Texels outside the UV charts (the padding that bilinear and mip filtering read at chart borders) are filled
by pull-push from the charts (`fill_padding`): smooth continuations of each island's border colour instead
of copies of the nearest texel's procedural values, which smeared stair-steps into the padding. Decals
(tattoos) are placed only where their 3-D footprint is one connected piece of one chart, so no seam cuts them.

Facial features are placed from the 68 iBUG landmarks when the template has them (lips, eyes, brows are
polygons in the frontal x-y plane of the template, +Y up, face along +Z), otherwise from region names.
Everything is numpy and seeded through the given `np.random.Generator`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

SKIN_TONES = 16
TATTOO_TRIES = 20  # places a tattoo may try before it is skipped (a disc crosses a seam ~30 % of the time)
_LAMBDA = np.array([650.0, 550.0, 450.0])  # nm, for R, G, B
_MU_MEL = 49.4 * (_LAMBDA / 550.0) ** -1.0  # melanin, effective broadband RGB absorption (/mm)
_MU_HB = 0.7 * np.array([0.2, 23.0, 33.6]) + 0.3 * np.array([2.0, 28.6, 55.6])  # blood, 70% oxygenated (/mm)
_MU_BASE = 0.0244 + 8.53 * np.exp(-(_LAMBDA - 154.0) / 66.2)  # bloodless tissue (/mm)


def skin_albedo(melanin: float, blood: float) -> np.ndarray:
    """Linear RGB diffuse albedo (3,) of skin with epidermal melanin and dermal blood volume fractions.

    Args:
        melanin: epidermal melanin volume fraction (0.012 very light to 0.35 very dark); array or float.
        blood: dermal blood volume fraction (about 0.005 to 0.04); broadcast with melanin.

    Returns:
        (..., 3) linear RGB albedo.
    """
    melanin, blood = np.asarray(melanin, np.float64)[..., None], np.asarray(blood, np.float64)[..., None]
    epidermis = np.exp(-2 * 0.08 * (melanin * _MU_MEL + (1 - melanin) * _MU_BASE))  # 0.08 mm, down and up
    mu_a = blood * _MU_HB + (1 - blood) * _MU_BASE
    dermis = np.exp(-2.0 * np.sqrt(mu_a / (3 * (mu_a + 1.0))))  # diffusion-style, mu_s' = 1/mm
    return np.clip(epidermis * dermis, 0, 1)


def tone_melanin(tone: int) -> float:
    """Melanin fraction of skin tone `tone` in [0, SKIN_TONES): 0 very light ... 15 very dark."""
    return float(0.012 + 0.338 * (tone / (SKIN_TONES - 1)) ** 1.6)


@dataclass
class UVAtlas:
    """Per-texel geometry of a template's UV layout (square texture, row 0 = v 1).

    Attributes:
        size: texture size in pixels.
        covered: (S, S) bool texels inside some UV triangle.
        position: (S, S, 3) template rest position (cm) per texel (nearest covered texel outside charts).
        normal: (S, S, 3) unit normal per texel.
        regions: name -> (S, S) float soft mask in [0, 1].
        landmarks: (68, 3) landmark positions or None.
        scale: head size (cm, half bounding-box diagonal) to make feature sizes template-independent.
    """

    size: int
    covered: np.ndarray
    position: np.ndarray
    normal: np.ndarray
    regions: dict
    landmarks: np.ndarray | None
    scale: float


def build_atlas(verts: np.ndarray, faces: np.ndarray, uv: np.ndarray, uv_faces: np.ndarray,
                regions: dict | None = None, landmarks: np.ndarray | None = None, size: int = 512) -> UVAtlas:
    """Rasterize a template into its UV space (torch rasterizer) and fill texels outside the charts.

    Args:
        verts: (V, 3) rest positions (cm). faces: (F, 3). uv: (T, 2). uv_faces: (F, 3).
        regions: name -> vertex indices. landmarks: (68,) vertex indices or None.
        size: texture size in pixels.
    """
    import torch

    from topos_cli.render import raster_torch as rt
    from topos_cli.render.raster_gl import _vertex_normals

    uvt = torch.as_tensor(np.asarray(uv), dtype=torch.float32)
    clip = torch.cat([uvt * 2 - 1, torch.zeros_like(uvt[:, :1]), torch.ones_like(uvt[:, :1])], 1)[None]
    uvf = torch.as_tensor(np.asarray(uv_faces), dtype=torch.long)
    frags = rt.rasterize(clip, uvf, size, size, near=0.5, far=1.5)
    bary = rt.barycentrics(clip, uvf, frags)
    faces_t = torch.as_tensor(np.asarray(faces), dtype=torch.long)
    normals = _vertex_normals(np.asarray(verts, np.float32), np.asarray(faces))
    names = list(regions or {})
    per_vertex = [np.asarray(verts, np.float32), normals]
    if names:
        ind = np.zeros((len(verts), len(names)), np.float32)
        for i, name in enumerate(names):
            ind[np.asarray(regions[name]), i] = 1.0
        per_vertex.append(ind)
    attrs = torch.as_tensor(np.concatenate(per_vertex, 1))
    packed = rt.interpolate(attrs, faces_t, frags, bary).numpy()
    covered = frags.mask[0].numpy()
    img = np.zeros((size * size, packed.shape[1]), np.float32)
    img[frags.pix.numpy()] = packed
    img = img.reshape(size, size, -1)
    if covered.any() and not covered.all():  # push chart borders outwards (mip filtering reads them)
        _, (ri, ci) = ndimage.distance_transform_edt(~covered, return_indices=True)
        img = img[ri, ci]
    normal = img[..., 3:6] / np.maximum(np.linalg.norm(img[..., 3:6], axis=-1, keepdims=True), 1e-8)
    soft = {name: ndimage.gaussian_filter(img[..., 6 + i], size / 256) for i, name in enumerate(names)}
    lms = np.asarray(verts)[np.asarray(landmarks)] if landmarks is not None and len(landmarks) == 68 else None
    lo, hi = np.asarray(verts).min(0), np.asarray(verts).max(0)
    return UVAtlas(size, covered, img[..., :3], normal, soft, lms, float(np.linalg.norm(hi - lo) / 2))


# ----------------------------------------------------------------------------- feature masks

def _inside(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test of (N, 2) points against an (M, 2) polygon."""
    x, y = points[:, 0], points[:, 1]
    inside = np.zeros(len(points), bool)
    for (x0, y0), (x1, y1) in zip(poly, np.roll(poly, -1, 0), strict=True):
        crosses = (y0 > y) != (y1 > y)
        xint = x0 + (y - y0) * (x1 - x0) / np.where(y1 == y0, 1e-12, y1 - y0)
        inside ^= crosses & (x < xint)
    return inside


def _polyline_distance(points: np.ndarray, line: np.ndarray, with_position: bool = False):
    """Distance (N,) from (N, 2) points to an open (M, 2) polyline (and the nearest point's position along
    it, 0 at the first vertex and 1 at the last, when `with_position`)."""
    best = np.full(len(points), np.inf)
    where = np.zeros(len(points))
    for i, (a, b) in enumerate(zip(line[:-1], line[1:], strict=True)):
        ab = b - a
        t = np.clip(((points - a) @ ab) / max(ab @ ab, 1e-12), 0, 1)
        d = np.linalg.norm(points - (a + t[:, None] * ab), axis=1)
        closer = d < best
        best, where = np.where(closer, d, best), np.where(closer, (i + t) / (len(line) - 1), where)
    return (best, where) if with_position else best


def feature_masks(atlas: UVAtlas) -> dict[str, np.ndarray]:
    """Soft (S, S) masks in [0, 1]: lips, eyeliner, eyeshadow, brows, cheeks, beard, tzone, face."""
    s = atlas.size
    blur = s / 512.0
    names = ("lips", "eyeliner", "eyeshadow", "brows", "cheeks", "beard", "tzone", "face")
    if atlas.landmarks is None:
        def region(*keys):
            found = [atlas.regions[k] for k in atlas.regions if any(key in k for key in keys)]
            return np.clip(sum(found), 0, 1) if found else np.zeros((s, s), np.float32)

        m = {"lips": region("mouth", "lip"), "brows": region("brow"), "cheeks": region("cheek"),
             "beard": region("jaw", "chin"), "tzone": region("forehead", "nose"), "eyeliner": region("eye"),
             "face": region("face", "forehead", "cheek", "nose", "mouth", "jaw", "chin", "eye", "brow")}
        m["eyeshadow"] = m["eyeliner"] * 0.5
        return {k: m.get(k, np.zeros((s, s), np.float32)) for k in names}
    lm = atlas.landmarks
    eye_w = np.linalg.norm(lm[39] - lm[36])  # one eye's width: the unit for feature sizes
    all_xy = atlas.position[..., :2].reshape(-1, 2)
    lo, hi = lm[:, :2].min(0) - 2 * eye_w, lm[:, :2].max(0) + 2 * eye_w
    front = (atlas.normal[..., 2].reshape(-1) > 0.05) & (atlas.position[..., 2].reshape(-1) > lm[:17, 2].min() - 1)
    near = np.flatnonzero(front & (all_xy >= lo).all(1) & (all_xy <= hi).all(1))  # only the face is tested
    xy = all_xy[near]

    def full(values):
        out = np.zeros(s * s, np.float32)
        out[near] = values
        return out.reshape(s, s)

    def soft(hard, sigma=1.5):
        return np.clip(ndimage.gaussian_filter(full(hard), sigma * blur), 0, 1)

    lips = _inside(xy, lm[48:60, :2])
    eyes = _inside(xy, lm[36:42, :2]) | _inside(xy, lm[42:48, :2])
    upper = [lm[36:40, :2], lm[42:46, :2]]
    liner = np.zeros(len(xy), bool)
    shadow = np.zeros(len(xy), bool)
    for line in upper:
        d = _polyline_distance(xy, line)
        above = xy[:, 1] >= np.interp(xy[:, 0], *np.sort(line, 0).T) - 0.02 * eye_w
        liner |= (d < 0.09 * eye_w) & above & ~eyes
        shadow |= (d < 0.45 * eye_w) & above & ~eyes
    brows = np.zeros(len(xy), bool)
    for line in (lm[17:22, :2], lm[26:21:-1, :2]):  # both run from the outer end to the inner end
        dist, along = _polyline_distance(xy, line, with_position=True)
        brows |= dist < (0.07 + 0.12 * along) * eye_w  # tapered: thin at the tail, full at the head
    cheeks = np.zeros(len(xy))
    for jaw, nose in ((2, 31), (14, 35)):
        centre = 0.55 * lm[jaw, :2] + 0.45 * lm[nose, :2] + np.array([0, 0.35 * eye_w])
        cheeks = np.maximum(cheeks, np.exp(-np.sum((xy - centre) ** 2, 1) / (2 * (0.55 * eye_w) ** 2)))
    nose_y = lm[33, 1]
    beard_poly = np.concatenate([lm[2:15, :2], [[lm[14, 0], nose_y], [lm[2, 0], nose_y]]])
    beard = _inside(xy, beard_poly) & ~lips
    tzone = (_inside(xy, np.concatenate([lm[27:36, :2][[0, 4, 5, 6, 7, 8]]])) |
             ((np.abs(xy[:, 0] - lm[27, 0]) < 1.2 * eye_w) & (xy[:, 1] > lm[19, 1] + 0.3 * eye_w)))
    face = _inside(xy, np.concatenate([lm[0:17, :2], lm[26:16:-1, :2] + np.array([0, 1.5 * eye_w])]))
    return {"lips": soft(lips, 1.0), "eyeliner": soft(liner, 0.7), "eyeshadow": soft(shadow, 3),
            "brows": soft(brows, 1.5), "cheeks": full(cheeks),
            "beard": soft(beard, 4), "tzone": soft(tzone, 6), "face": soft(face, 4)}


# ----------------------------------------------------------------------------- synthesis

LIPSTICKS = {"red": (0.45, 0.02, 0.03), "pink": (0.6, 0.15, 0.25), "nude": (0.45, 0.22, 0.17),
             "plum": (0.2, 0.03, 0.08), "coral": (0.75, 0.2, 0.12), "berry": (0.3, 0.02, 0.1)}
BLUSHES = {"pink": (0.75, 0.25, 0.3), "peach": (0.8, 0.35, 0.22), "rose": (0.55, 0.12, 0.15)}
INKS = {"black": (0.02, 0.02, 0.025), "blue-green": (0.02, 0.06, 0.07), "red": (0.25, 0.02, 0.02)}


@dataclass
class TextureSample:
    """One synthesized appearance: albedo (S, S, 3) uint8 sRGB, roughness and specular (S, S) uint8.

    `roughness` holds perceptual roughness * 255; `specular` holds (F0 scale / 2) * 255, so render it with
    `Material(roughness=1, specular=2)`; `normal` (S, S, 3) uint8 is a tangent-space normal map of pores and
    fine wrinkles (x along +u, y along +v). `params` records every random choice (for the manifest).
    """

    albedo: np.ndarray
    roughness: np.ndarray
    specular: np.ndarray
    params: dict
    normal: np.ndarray | None = None


def _field(rng: np.random.Generator, points: np.ndarray, wavelength: float, count: int = 24,
           step: int = 4) -> np.ndarray:
    """Smooth random field of unit variance over texel positions (S*S, 3): random Fourier features (seamless
    in UV), evaluated on every `step`-th texel and interpolated bilinearly (the field is smooth)."""
    omega = rng.normal(size=(count, 3)) * (2 * np.pi / wavelength)
    phase = rng.uniform(0, 2 * np.pi, count)
    s = int(round(np.sqrt(len(points))))
    coarse = points.reshape(s, s, 3)[::step, ::step]
    values = (np.cos(coarse @ omega.T + phase) * np.sqrt(2.0 / count)).sum(-1)  # (S/step, S/step)
    grid = np.arange(s) / step
    rows, cols = np.meshgrid(grid, grid, indexing="ij")
    return ndimage.map_coordinates(values, [rows, cols], order=1, mode="nearest").reshape(-1)


def _uv_noise(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    n = ndimage.gaussian_filter(rng.normal(size=(size, size)).astype(np.float32), sigma)
    return n / max(float(n.std()), 1e-8)


def _mix(base: np.ndarray, colour, amount: np.ndarray) -> np.ndarray:
    a = np.clip(amount, 0, 1)[..., None]
    return base * (1 - a) + np.asarray(colour, np.float64) * a


def synthesize(atlas: UVAtlas, rng: np.random.Generator, tone: int | None = None, makeup: float = 0.5,
               masks: dict | None = None) -> TextureSample:
    """Draw one appearance in the atlas's UV space.

    Args:
        atlas: from `build_atlas`.
        rng: the sample's generator (all randomness comes from it).
        tone: skin tone index in [0, SKIN_TONES) or None to draw one uniformly.
        makeup: probability of each makeup element (blush, lipstick, eyeliner, eyeshadow); tattoos get a fifth.
        masks: precomputed `feature_masks(atlas)` (computed when None).
    """
    s = atlas.size
    m = masks if masks is not None else feature_masks(atlas)
    pts = atlas.position.reshape(-1, 3) / atlas.scale * 20.0  # positions in "20 cm head" units
    tone = int(rng.integers(SKIN_TONES)) if tone is None else int(tone)
    p = {"tone": tone, "melanin": tone_melanin(tone) * float(np.exp(rng.normal(0, 0.08))),
         "blood": float(rng.uniform(0.006, 0.02))}
    blotch = _field(rng, pts, 8.0).reshape(s, s)
    melanin = p["melanin"] * np.exp(0.06 * blotch)
    if rng.random() < 0.2 and tone < 8:  # freckles
        freckles = (_uv_noise(rng, s, 0.8 * s / 512) > 2.6) * m["face"]
        melanin = melanin * (1 + 1.5 * ndimage.gaussian_filter(freckles.astype(np.float32), s / 512))
        p["freckles"] = True
    blood = p["blood"] * np.exp(0.1 * _field(rng, pts, 4.0).reshape(s, s))
    blood = blood + m["cheeks"] * rng.uniform(0.003, 0.015) + m["lips"] * rng.uniform(0.03, 0.06)
    albedo = skin_albedo(melanin * (1 - 0.4 * m["lips"]), blood)  # (S, S, 3) linear
    pores = _uv_noise(rng, s, 0.6 * s / 1024)
    p["pores"] = float(rng.uniform(0.03, 0.1))
    dips = np.clip(pores - 1.2, 0, None)
    albedo *= (1 - p["pores"] * dips)[..., None]
    normal = _normal_map(-dips - 0.15 * _uv_noise(rng, s, 1.5 * s / 512), strength=float(rng.uniform(0.02, 0.06)))
    albedo *= np.exp(0.03 * _uv_noise(rng, s, 0.5))[..., None]
    albedo = _hair(rng, albedo, m, p, s)
    albedo = _makeup(rng, albedo, m, p, makeup, pts, atlas.covered)
    rough, spec = _material(rng, m, p, s)
    covered = atlas.covered
    albedo, rough, spec = (fill_padding(a, covered) for a in (albedo, rough, spec))
    normal = fill_padding(normal, covered)
    normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-8)
    srgb = np.where(albedo <= 0.0031308, 12.92 * albedo, 1.055 * np.clip(albedo, 0, 1) ** (1 / 2.4) - 0.055)
    to8 = lambda a: (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)  # noqa: E731
    return TextureSample(to8(srgb), to8(rough), to8(spec / 2), p, to8(normal * 0.5 + 0.5))


def _normal_map(height: np.ndarray, strength: float) -> np.ndarray:
    """Tangent-space normals (S, S, 3) of a height field in texels (row 0 = v 1, so d/dv = -d/drow)."""
    d_row, d_col = np.gradient(height)
    n = np.stack([-d_col * strength, d_row * strength, np.ones_like(height)], -1)
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def _hair(rng, albedo, m, p, s):
    """Brows (strand texture) and, sometimes, beard shadow."""
    dark = p["tone"] >= 6 or rng.random() < 0.6
    hair = np.array([0.02, 0.015, 0.012]) if dark else np.array([0.25, 0.15, 0.07]) * rng.uniform(0.4, 1.2)
    strands = ndimage.gaussian_filter(rng.normal(size=(s, s)), (0.35 * s / 512, 1.5 * s / 512))
    strands = np.clip(0.7 + 0.35 * strands / max(strands.std(), 1e-8), 0, 1)  # fine hairs, not blocks
    p["brow_density"] = float(rng.uniform(0.5, 0.95))
    albedo = _mix(albedo, hair, m["brows"] * strands * p["brow_density"])
    if rng.random() < 0.35:
        p["beard_shadow"] = float(rng.uniform(0.15, 0.5))
        stubble = np.clip(_uv_noise(rng, s, 0.5 * s / 1024) * 0.5 + 0.6, 0, 1)
        albedo = _mix(albedo, hair * 1.5 + 0.01, m["beard"] * stubble * p["beard_shadow"])
    return albedo


def _makeup(rng, albedo, m, p, prob, pts, covered):
    """Blush, lipstick, eyeliner/lashes, eyeshadow and tattoos, each with its own probability."""
    if rng.random() < prob:
        name = str(rng.choice(sorted(BLUSHES)))
        p["blush"] = {"color": name, "opacity": float(rng.uniform(0.1, 0.35))}
        albedo = _mix(albedo, BLUSHES[name], m["cheeks"] * p["blush"]["opacity"])
    if rng.random() < prob:
        name = str(rng.choice(sorted(LIPSTICKS)))
        p["lipstick"] = {"color": name, "opacity": float(rng.uniform(0.5, 0.9))}
        albedo = _mix(albedo, LIPSTICKS[name], m["lips"] * p["lipstick"]["opacity"])
    if rng.random() < prob:
        colour = rng.uniform(0.05, 0.6, 3) * np.array([1.0, 0.9, 1.0])
        p["eyeshadow"] = {"color": colour.round(3).tolist(), "opacity": float(rng.uniform(0.2, 0.5))}
        albedo = _mix(albedo, colour, m["eyeshadow"] * p["eyeshadow"]["opacity"])
    if rng.random() < prob:
        p["eyeliner"] = {"opacity": float(rng.uniform(0.6, 0.95))}
        albedo = _mix(albedo, (0.01, 0.01, 0.012), m["eyeliner"] * p["eyeliner"]["opacity"])
    if rng.random() < prob / 5:
        albedo = _tattoo(rng, albedo, m, p, pts, covered)
    return albedo


def _tattoo(rng, albedo, m, p, pts, covered):
    """Ink lines: level sets of a random smooth field inside a random disc on the skin, placed where the
    disc's texels are one connected piece of one chart (a disc over a seam would be cut along it)."""
    s = albedo.shape[0]
    ink = str(rng.choice(sorted(INKS)))
    on_chart = np.flatnonzero(covered.reshape(-1))
    for placements in range(1, TATTOO_TRIES + 1):  # noqa: B007 (read after the loop)
        centre = pts[on_chart[int(rng.integers(len(on_chart)))]]
        radius = float(rng.uniform(1.5, 3.5))
        disc = np.linalg.norm(pts - centre, axis=1) < radius
        if ndimage.label(disc.reshape(s, s) & covered, structure=np.ones((3, 3)))[1] == 1:
            break
    else:
        p["tattoo"] = {"skipped": "no place inside one chart"}
        return albedo
    field = _field(rng, pts, float(rng.uniform(1.0, 2.5)), count=6)
    lines = np.exp(-(field / 0.12) ** 2) * disc
    p["tattoo"] = {"ink": ink, "center": centre.round(2).tolist(), "radius": radius, "placements": placements}
    return _mix(albedo, INKS[ink], 0.85 * lines.reshape(s, s) * (1 - m["lips"]))


def fill_padding(image: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """Fill texels outside the charts by pull-push (Gortler et al. 1996) from the covered texels.

    Pull: a pyramid of coverage-weighted 2x2 sums; push: from the coarsest level down, each level keeps its
    own average where it has coverage (weight clamped to 1) and takes the bilinearly upsampled coarser
    estimate elsewhere. Covered texels are unchanged; padding becomes a smooth continuation of the nearby
    islands' borders, so bilinear and mip filtering at a chart border read plausible colours.

    Args:
        image: (S, S) or (S, S, C) float map.
        covered: (S, S) bool texels inside a UV triangle.

    Returns:
        float64 array shaped like `image`.
    """
    img = np.asarray(image, np.float64)
    flat = img.ndim == 2
    img = img[..., None] if flat else img
    weight = covered.astype(np.float64)
    if weight.all() or not weight.any():
        return img[..., 0] if flat else img
    levels = [(img * weight[..., None], weight)]
    while min(levels[-1][1].shape) > 1:
        val, w = levels[-1]
        h, wd = (w.shape[0] + 1) // 2 * 2, (w.shape[1] + 1) // 2 * 2
        val = np.pad(val, ((0, h - val.shape[0]), (0, wd - val.shape[1]), (0, 0)))
        w = np.pad(w, ((0, h - w.shape[0]), (0, wd - w.shape[1])))
        levels.append((val.reshape(h // 2, 2, wd // 2, 2, -1).sum((1, 3)), w.reshape(h // 2, 2, wd // 2, 2).sum((1, 3))))
    val, w = levels[-1]
    est = val / np.maximum(w, 1e-12)[..., None]
    for val, w in reversed(levels[:-1]):
        zoom = (w.shape[0] / est.shape[0], w.shape[1] / est.shape[1], 1)
        up = ndimage.zoom(est, zoom, order=1, mode="nearest", grid_mode=True)[: w.shape[0], : w.shape[1]]
        own = np.minimum(w, 1.0)[..., None]
        est = own * (val / np.maximum(w, 1e-12)[..., None]) + (1 - own) * up
    est[covered] = img[covered]
    return est[..., 0] if flat else est


def _material(rng, m, p, s):
    """Roughness (S, S) and specular scale (S, S) maps with per-sample perturbation."""
    p["roughness"] = float(rng.uniform(0.4, 0.65))
    p["specular"] = float(rng.uniform(0.7, 1.3))
    grain = _uv_noise(rng, s, 1.0 * s / 512)
    # grain stays faint: grazing highlights turn small roughness changes into visible blotches
    rough = p["roughness"] + 0.015 * grain - rng.uniform(0.0, 0.15) * m["tzone"] + 0.25 * m["brows"]
    spec = p["specular"] * (1 + 0.4 * m["tzone"] - 0.6 * m["brows"]) * (1 + 0.03 * grain)
    if "lipstick" in p:
        gloss = float(rng.uniform(0, 1))
        p["lipstick"]["gloss"] = gloss
        rough = rough - m["lips"] * gloss * 0.3
        spec = spec + m["lips"] * gloss * 0.8
    return np.clip(rough, 0.05, 1.0), np.clip(spec, 0.0, 2.0)
