"""generate-tex benchmark protocols beyond texel error: relit renders and seam visibility.

Relit renders (the TOPOS protocol): the true head rendered with a produced texture set and with the true one,
under lightings and views the photo never had (frontal + 6 views in the front hemisphere, `LIGHTINGS` random
rigs from a seed no portrait uses), compared on a face mask without eyes, ears, neck and scalp: PSNR and SSIM
(sRGB, 0-1). The produced albedo gets the same per-channel gain as the texel tables (the light's absolute level
is unobservable). Both use the true mesh, so the rows differ only by their maps.

Seam visibility: (a) chart seams: every mesh edge cut by the UV layout appears twice in the texture; the albedo
is sampled just inside each side (`SEAM_INSET` texels in from the edge, `SEAM_SAMPLES` points along it) and the
mean colour jump between the two sides is reported for the produced map and for the truth (the truth's jump is
the floor set by the inset); (b) fill borders: the mean luminance gradient on texels within `BORDER_TEXELS` of a
border between texel classes (photo / mirror / completed: the largest share) divided by the mean gradient in the
band `BORDER_TEXELS`..`NEIGHBOUR_TEXELS` away from it, for the produced map and for the truth on the same texels
(about 1 = no ridge along the border, i.e. no visible seam).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

VIEWS = ((0, 0), (-35, 0), (35, 0), (-65, 5), (65, 5), (0, 25), (0, -20))  # (azimuth, elevation) degrees
LIGHTINGS = 2  # random rigs per portrait
LIGHT_SEED = 17_500  # rigs no portrait was photographed under
RENDER_SIZE = 256  # relit renders (SSIM window 7 px: ~1.5 % of the face)
MASK_OUT = ("eye", "ear", "neck", "scalp", "back_of_head")  # protocol: face without eyes/neck
SEAM_INSET = 1.5  # texels inside each chart the seam samples sit (bilinear reads stay inside the chart)
SEAM_SAMPLES = 4  # points along each seam edge
BORDER_TEXELS = 2  # texels each side of a texel-class border counted as "border"
NEIGHBOUR_TEXELS = 8  # ... compared with the band from 2 to 8 texels away
LUMA = np.array([0.2126, 0.7152, 0.0722])


@dataclass
class RelitScore:
    """Per view (len(VIEWS)), averaged over lightings: psnr (dB) and ssim on the face mask."""

    psnr: np.ndarray
    ssim: np.ndarray


def face_labels(tpl) -> np.ndarray:
    """(F,) 1 on triangles of the protocol's face mask, 0 elsewhere."""
    out_v = np.zeros(len(tpl.verts), bool)
    for name in MASK_OUT:
        out_v[tpl.regions.get(name, [])] = True
    return (~out_v[tpl.faces].any(1)).astype(np.int64)


def _material(albedo_srgb: np.ndarray, roughness, specular, normal, spec_scale: float):
    from topos_cli.io.image import to_uint8
    from topos_cli.render.renderer import Material

    return Material(albedo_map=to_uint8(albedo_srgb),
                    material_map=np.stack([roughness, specular], -1).astype(np.float32),
                    normal_map=to_uint8(np.asarray(normal) * 0.5 + 0.5) if normal.dtype != np.uint8 else normal,
                    roughness=1.0, specular=spec_scale)


def truth_material(smp):
    """The true texture sample's material, as the portrait was rendered."""
    from topos_cli.render.renderer import Material

    return Material(albedo_map=smp.albedo, material_map=np.stack([smp.roughness, smp.specular], -1) / 255.0,
                    normal_map=smp.normal, roughness=1.0, specular=2.0)


def result_material(albedo_lin: np.ndarray, result):
    """A produced texture set's material with its albedo replaced by `albedo_lin` (gain applied)."""
    from topos_cli.pipelines.tex import linear_to_srgb

    return _material(linear_to_srgb(albedo_lin), result.roughness, result.specular, result.normal, 1.0)


def constant_material(albedo_lin: np.ndarray, smp):
    """The constant-colour row: the truth's median colour with the truth's roughness/specular, flat normals."""
    from topos_cli.pipelines.tex import linear_to_srgb

    flat = np.zeros((*albedo_lin.shape[:2], 3))
    flat[..., 2] = 1.0
    return _material(linear_to_srgb(albedo_lin), smp.roughness / 255.0, smp.specular / 255.0 * 2, flat, 1.0)


def relit_renders(tpl, verts, material, renderer, case: int) -> list[np.ndarray]:
    """(len(VIEWS) * LIGHTINGS) sRGB renders of the true head with `material` (same rigs for every row)."""
    from topos_cli.render.renderer import RenderMesh
    from topos_cli.render.views import framed_camera

    mesh = RenderMesh(verts, tpl.faces, uv=tpl.uv, uv_faces=tpl.uv_faces)
    out = []
    for rig in _rigs(case):
        for az, el in VIEWS:
            cam = framed_camera(verts, az, el, RENDER_SIZE, zoom=1.4)
            out.append(renderer.render(mesh, cam, material, rig, "ggx", ("color",))["color"][..., :3])
    return out


def face_masks(tpl, verts, renderer) -> list[np.ndarray]:
    """(len(VIEWS)) bool masks of the protocol's face region per view."""
    from topos_cli.render.renderer import RenderMesh
    from topos_cli.render.views import framed_camera

    mesh = RenderMesh(verts, tpl.faces, face_labels=face_labels(tpl))
    return [renderer.render(mesh, framed_camera(verts, az, el, RENDER_SIZE, zoom=1.4), None, None, "ggx",
                            ("region",))["region"] == 1 for az, el in VIEWS]


def _rigs(case: int):
    from topos_cli.render.lights import random_rig

    rng = np.random.default_rng([LIGHT_SEED, case])
    return [random_rig(rng) for _ in range(LIGHTINGS)]


def compare_renders(pred: list, truth: list, masks: list) -> RelitScore:
    """PSNR/SSIM per view on the face mask, averaged over lightings."""
    from skimage.metrics import structural_similarity

    n = len(VIEWS)
    psnr, ssim = np.zeros((LIGHTINGS, n)), np.zeros((LIGHTINGS, n))
    for k, (p, t) in enumerate(zip(pred, truth, strict=True)):
        li, vi = divmod(k, n)
        m = masks[vi]
        p, t = np.clip(p, 0, 1), np.clip(t, 0, 1)
        mse = float(((p - t) ** 2)[m].mean())
        psnr[li, vi] = 10 * np.log10(1.0 / max(mse, 1e-10))
        _, full = structural_similarity(p, t, data_range=1.0, channel_axis=2, full=True, gaussian_weights=True)
        ssim[li, vi] = float(full.mean(-1)[m].mean())
    return RelitScore(psnr.mean(0), ssim.mean(0))


# ----------------------------------------------------------------------------- seams


@dataclass
class SeamSamples:
    """Pairs of texture positions (pixel coordinates, x right / y down) on the two sides of the UV seams."""

    side_a: np.ndarray  # (M, 2)
    side_b: np.ndarray  # (M, 2)


@lru_cache(maxsize=2)
def seam_samples(tpl, size: int) -> SeamSamples:
    """Sample pairs across every mesh edge the UV layout cuts (two faces, different UV corners)."""
    faces, uvf, uv = np.asarray(tpl.faces), np.asarray(tpl.uv_faces), np.asarray(tpl.uv, np.float64)
    owner: dict[tuple[int, int], list] = {}
    for f in range(len(faces)):
        for k in range(3):
            a, b = int(faces[f, k]), int(faces[f, (k + 1) % 3])
            owner.setdefault((min(a, b), max(a, b)), []).append((f, k))
    t = (np.arange(SEAM_SAMPLES) + 0.5) / SEAM_SAMPLES
    side_a, side_b = [], []
    for (a, _), sides in owner.items():
        if len(sides) != 2:
            continue
        pts = [_inset_points(faces[f], uvf[f], uv, k, a, t, size) for f, k in sides]
        if np.abs(pts[0][0] - pts[1][0]).max() < 2 * SEAM_INSET + 1:  # same place: not a seam
            continue
        side_a.append(pts[0][1])
        side_b.append(pts[1][1])
    return SeamSamples(np.concatenate(side_a), np.concatenate(side_b))


def _inset_points(face, uvface, uv, k, first_vertex, t, size):
    """Edge points (pixels) along edge k of a face, ordered from `first_vertex`, and the same moved inside."""
    i, j, o = k, (k + 1) % 3, (k + 2) % 3
    if face[i] != first_vertex:
        i, j = j, i
    p = lambda c: np.array([uv[uvface[c], 0] * size, (1 - uv[uvface[c], 1]) * size])  # noqa: E731
    pi, pj, po = p(i), p(j), p(o)
    edge = pi[None] + t[:, None] * (pj - pi)[None]
    inward = po - (pi + pj) / 2
    inward /= max(np.linalg.norm(inward), 1e-9)
    return edge, edge + SEAM_INSET * inward[None]


def seam_jump(srgb: np.ndarray, samples: SeamSamples) -> float:
    """Mean absolute sRGB colour difference (0-1, mean over channels) between the two sides of the seams."""
    import cv2

    img = np.ascontiguousarray(srgb, np.float32)

    def sample(pts):
        mx = (pts[:, 0] - 0.5).astype(np.float32)[None]
        my = (pts[:, 1] - 0.5).astype(np.float32)[None]
        return cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)[0]

    return float(np.abs(sample(samples.side_a) - sample(samples.side_b)).mean())


def border_ratio(srgb: np.ndarray, coverage: np.ndarray, covered: np.ndarray) -> float:
    """Mean luminance gradient within BORDER_TEXELS of a texel-class border over the mean in the band
    BORDER_TEXELS..NEIGHBOUR_TEXELS away from it (both sides): a seam is a ridge of gradient along the border
    (ratio > 1), while detail that merely stops at the border (photo on one side, smooth fill on the other) is
    in both bands."""
    from scipy import ndimage

    luma = srgb @ LUMA
    gy, gx = np.gradient(luma)
    grad = np.hypot(gx, gy)
    inner = ndimage.binary_erosion(covered, iterations=2)  # chart borders are the seam metric's business
    cls = np.argmax(coverage, -1)
    edge = np.zeros_like(covered)
    for c in range(3):
        m = (cls == c) & covered
        edge |= m & ~ndimage.binary_erosion(m, iterations=1)
    dist = ndimage.distance_transform_edt(~(edge & inner))
    border = inner & (dist <= BORDER_TEXELS)
    near = inner & (dist > BORDER_TEXELS) & (dist <= NEIGHBOUR_TEXELS)
    if border.sum() == 0 or near.sum() == 0:
        return float("nan")
    return float(grad[border].mean() / max(grad[near].mean(), 1e-9))
