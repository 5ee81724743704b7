"""Portrait + head in template topology + camera -> a relightable UV texture set (`topos generate-tex`).

    pipe = TexturePipeline.from_template("topos-head", size=1024)
    result = pipe(photo_srgb, verts, camera)          # method "unwrap" (classical, CPU, any photo)
    paths = write_texture_set(out_dir, result, verts, pipe.template)

`unwrap`: rasterize the head in UV space (`texture/uv.py`), project every texel through the photo's camera
with a z-buffer and view-cosine visibility (`texture/project.py`), de-light with a robust order-2 SH fit on
skin texels (`texture/delight.py`), fill unseen texels from their mirror texel and complete the rest from the
template's default skin with a seam-free pull-push colour ratio (`texture/complete.py`), then derive the PBR
maps (`texture/pbr.py`). `qwen` (TOPOS-Texture) lives in `pipelines/tex_qwen.py`, `learned` (the unwrap
corrected by the small tex-uv network) in `pipelines/tex_learned.py`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

from topos_cli.errors import TemplateMismatch, UsageError
from topos_cli.render.camera import Camera
from topos_cli.texture.complete import RATIO_REACH

METHODS = ("unwrap", "learned", "qwen")
NOT_SKIN = ("eye", "brow", "mouth", "scalp", "back_of_head", "neck", "ear")  # hair, eyes, lips: kept out of the
# lighting fit (texels of these regions are also rejected by the robust weights when the mesh is off)
MASK_SIZE = 256  # region masks are smooth: computed at 256² and upsampled (build_atlas at 1024² costs ~4 s)
SKIN_LUMA_RANGE = (0.04, 0.6)  # linear luminance of skin albedo, darkest to lightest tone (render/textures)
OUTER = ("neck", "scalp", "back_of_head", "ear", "forehead", "temple")  # where photos show clothing, hair, hats and
# background (not jaw, chin, lips, brows: beards and features are real non-skin colours of the face): texels
# there count only as far as their de-lit colour looks like the face's skin (`_skin_gate`)
GATE_CHROMA = 0.04  # chromaticity distance (r, g, b sum to 1) at which the gate falls to 1/e: skin tones span ~0.03
GATE_LOG_LUMA = 0.5  # log-luminance distance at which the gate falls to 1/e: ~1.65x brighter or darker than skin
PREVIEW_LIGHTS = ("studio", "side", "sunset")  # three lightings of the frontal preview, then a studio profile
PREVIEW_SIZE = 384
PRIOR_BLUR_FRACTION = 1 / 64  # the default skin's freckles, pores and blotches are one person's: keep its tones
# (lips, brows, lids); measured on held-out synthetic heads, completed-texel MAE 0.0235 -> see benchmarks


@dataclass(frozen=True)
class HeadFit:
    """How far the head may be from the photographed shape, and what the unwrap does about it.

    Attributes:
        registration_cm: standard deviation of where the head's texels really sit in the photo (cm on the
            surface); the photo is low-passed by it before sampling (the expected texel under that
            misregistration: a fitted head's wrong fine shape moves pores, lids and lip lines by millimetres).
        trust: scale of the photo's (and mirror's) share in each texel; the rest is the completion (the photo's
            median skin colour on the flattened default skin, `texture/complete.py`), which does not depend on
            the head's shape, so the shading a wrong normal leaves in a texel shrinks with it.
        ratio_reach: how far the completion follows the colour of the nearest observed texels (fraction of the
            side, `complete.smooth_ratio`); 0: the photo's global skin colour (a fitted head's border texels
            carry its misfit shading).
        feature_trust: the photo's share scale on the lips and brows (TRUSTED_FEATURES): the person's own
            colours there, which the default skin only approximates, outweigh the misfit's shading.
    """

    registration_cm: float = 0.0
    trust: float = 1.0
    ratio_reach: float = RATIO_REACH
    feature_trust: float = 1.0


EXACT_HEAD = HeadFit()  # the head is the photographed shape (a scan, a render's own mesh): texels as sampled
FITTED_HEAD = HeadFit(0.15, 0.3, 0.0, 1.0)  # generate-geo's head (landmarks fitted to 1-2 px, the shape off by
# millimetres). On 12 held-out synthetic portraits (benchmarks/generate_tex.py; ~14 px/cm there), photo/mirrored/
# completed MAE with the flattened prior and the global colour: 0.0234/0.0200/0.0144 as sampled; low-passed by
# 3 px (~0.2 cm) 0.0221/0.0193/0.0143; + trust 0.4 0.0186/0.0163/0.0140; registration 0.15 cm, trust 0.3
# 0.0184/0.0161/0.0139 (0.1 cm, 0.35: 0.0185/0.0162/0.0139); + feature trust 1 on lips and brows
# 0.0178/0.0160/0.0139 (+ lids: 0.0179/0.0160/0.0140; + eyeshadow and beard areas: 0.0190/0.0164/0.0140; 0.6:
# 0.0181/0.0161/0.0139); the best constant colour 0.0206/0.0165/0.0140
TRUSTED_FEATURES = ("lips", "brows")


@dataclass
class TextureResult:
    """A texture set in the template's UV layout (square maps, row 0 = v 1).

    Attributes:
        albedo: (S, S, 3) float sRGB in [0, 1], de-lit, padded past the chart borders.
        roughness: (S, S) perceptual roughness. specular: (S, S) F0 scale (1 = skin).
        normal: (S, S, 3) unit tangent-space normals.
        coverage: (S, S, 3) fractions from the photo, the mirror and the completion (R, G, B).
        stats: texel fractions and seconds per stage.
    """

    albedo: np.ndarray
    roughness: np.ndarray
    specular: np.ndarray
    normal: np.ndarray
    coverage: np.ndarray
    stats: dict = field(default_factory=dict)


@dataclass
class TemplateTextureAssets:
    """What every portrait on one template at one size shares (computed once per process)."""

    raster: object  # texture.uv.UVRaster
    mirror: np.ndarray  # (S*S,) flat mirror texel per texel, -1 none
    skin: np.ndarray  # (N,) bool covered texels that may be skin (lighting fit)
    outer: np.ndarray  # (N,) bool covered texels of the OUTER regions (skin-gated)
    prior: np.ndarray  # (S, S, 3) linear default albedo
    default_normal: np.ndarray  # (S, S, 3) unit tangent-space normals
    masks: dict  # soft (S, S) feature masks: tzone, lips, brows, beard, face


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = np.clip(np.asarray(c, np.float64), 0, 1)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    c = np.clip(np.asarray(c, np.float64), 0, 1)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    import cv2

    if img.shape[0] == size:
        return img.astype(np.float64)
    interp = cv2.INTER_AREA if img.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(np.asarray(img, np.float32), (size, size), interpolation=interp).astype(np.float64)


@lru_cache(maxsize=4)
def template_assets(template, size: int) -> TemplateTextureAssets:
    """Raster, mirror map, skin texels, default maps and feature masks of a template at `size`."""
    from topos_cli.io.image import read_image
    from topos_cli.render.textures import build_atlas, feature_masks
    from topos_cli.texture.complete import FEATURE_MASKS, flatten_prior
    from topos_cli.texture.uv import template_mirror, template_raster

    if template.uv is None or template.uv_faces is None:
        raise TemplateMismatch(f"template {template.name} has no UVs; generate-tex paints a UV layout")
    raster = template_raster(template, size)
    labels = np.zeros(len(template.verts))
    for name in NOT_SKIN:
        if name in template.regions:
            labels[template.regions[name]] = 1.0
    skin = raster.interpolate(labels[:, None], template.faces)[:, 0] < 0.5
    outer_v = np.zeros(len(template.verts))
    for name in OUTER:
        if name in template.regions:
            outer_v[template.regions[name]] = 1.0
    outer = raster.interpolate(outer_v[:, None], template.faces)[:, 0] >= 0.5
    maps = Path(template.root) / "maps" if template.root is not None else None
    lms = template.landmarks if len(template.landmarks) == 68 else None
    atlas = build_atlas(template.verts, template.faces, template.uv, template.uv_faces, template.regions, lms,
                        MASK_SIZE)
    masks = {k: np.clip(_resize(v, size), 0, 1) for k, v in feature_masks(atlas).items()}
    if maps is not None and (maps / "albedo.png").is_file():
        prior = srgb_to_linear(_resize(read_image(maps / "albedo.png")[..., :3] / 255.0, size))
        prior = np.stack([ndimage.gaussian_filter(prior[..., c], size * PRIOR_BLUR_FRACTION) for c in range(3)], -1)
        features = np.max([masks[k] for k in FEATURE_MASKS if k in masks] or [np.zeros((size, size))], axis=0)
        prior = flatten_prior(prior, features, raster.image(skin.astype(np.float64)) > 0.5)
        nrm = _resize(read_image(maps / "normal.png")[..., :3] / 255.0 * 2 - 1, size)
        nrm /= np.maximum(np.linalg.norm(nrm, axis=-1, keepdims=True), 1e-8)
    else:
        prior = np.broadcast_to(np.array([0.45, 0.3, 0.25]), (size, size, 3)).copy()
        nrm = np.broadcast_to(np.array([0.0, 0.0, 1.0]), (size, size, 3)).copy()
    mirror = np.full(size * size, -1, np.int64)
    mirror[raster.pix] = template_mirror(template, size).index
    return TemplateTextureAssets(raster, mirror, skin, outer, prior, nrm, masks)


class TexturePipeline:
    """Photo + posed head + camera -> `TextureResult` (see the module docstring).

    Methods: "unwrap" (classical, any photo, CPU), "qwen" (TOPOS-Texture: Qwen-Image-Edit + LoRA from a local
    weights folder, `pipelines/tex_qwen.py`), "learned" (the unwrap corrected by a small UV network, weights
    from `weights` or the shipped tex-uv-small, `pipelines/tex_learned.py`).
    """

    def __init__(self, template, size: int = 1024, method: str = "unwrap", weights=None, lora=None,
                 device: str = "cpu"):
        if method not in METHODS:
            raise UsageError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
        self.template, self.size, self.method = template, int(size), method
        self._qwen = self._learned = None
        if method == "learned":
            from topos_cli.pipelines.tex_learned import LearnedCorrector

            self._learned = LearnedCorrector.from_pretrained(weights, template)
        if method == "qwen":
            from topos_cli.pipelines.tex_qwen import QwenTexturer

            self._qwen = QwenTexturer.from_pretrained(weights, lora, device=device)

    @classmethod
    def from_template(cls, template=None, size: int = 1024, method: str = "unwrap", **kw) -> TexturePipeline:
        from topos_cli.template import load_template

        return cls(load_template(template), size, method, **kw)

    def __call__(self, photo: np.ndarray, verts: np.ndarray, camera: Camera, seed: int = 0,
                 fitted: bool = False) -> TextureResult:
        """Texture the head from the photo.

        Args:
            photo: (H, W, 3) float sRGB in [0, 1] (row 0 at the top).
            verts: (V, 3) the head in template topology, posed as in the photo (cm).
            camera: the camera that reproduces the photo (its width/height are rescaled to the photo's).
            seed: the qwen sampler's noise seed (unwrap is deterministic).
            fitted: the head was fitted to the photo (generate-geo), not its true shape: the unwrap runs with
                `FITTED_HEAD` (not under `learned`: its network was trained on exact-head unwraps).
        """
        self.template.check_verts(np.asarray(verts), "head")
        head = FITTED_HEAD if fitted and self._learned is None else EXACT_HEAD
        result = unwrap_texture(self.template, self.size, photo, verts, camera, head=head)
        if self._qwen is not None:  # TOPOS-Texture paints the albedo; the unwrap's PBR detail stays
            result = self._qwen_albedo(result, photo, verts, camera, seed)
        if self._learned is not None:
            result = self._learned_albedo(result)
        return result

    def _learned_albedo(self, result: TextureResult) -> TextureResult:
        """The unwrap's albedo corrected by the tex-uv network; PBR maps re-derived, normal and coverage kept."""
        from topos_cli.texture.complete import pad_charts
        from topos_cli.texture.pbr import pbr_maps

        t0 = time.perf_counter()
        albedo = self._learned(result.albedo, result.coverage, template_assets(self.template, self._learned.size))
        assets = template_assets(self.template, self.size)
        lin = pad_charts(srgb_to_linear(albedo), assets.raster.covered)
        maps = pbr_maps(lin, assets.masks, np.zeros(albedo.shape[:2]), assets.default_normal)
        seconds = {**result.stats.get("seconds", {}), "learned": round(time.perf_counter() - t0, 3)}
        return TextureResult(linear_to_srgb(lin), maps.roughness, maps.specular, result.normal, result.coverage,
                             {**result.stats, "seconds": seconds, "method": "learned"})

    def _qwen_albedo(self, result: TextureResult, photo, verts, camera, seed: int) -> TextureResult:
        from topos_cli.pipelines.tex_qwen import head_crop
        from topos_cli.texture.pbr import pbr_maps

        albedo = np.clip(_resize(self._qwen(head_crop(photo, verts, camera), seed=seed), self.size), 0, 1)
        assets = template_assets(self.template, self.size)
        maps = pbr_maps(srgb_to_linear(albedo), assets.masks, np.zeros(albedo.shape[:2]), assets.default_normal)
        coverage = np.zeros_like(result.coverage)
        coverage[..., 2] = assets.raster.covered  # every texel is generated
        return TextureResult(albedo, maps.roughness, maps.specular, result.normal, coverage,
                             {**result.stats, "photo": 0.0, "mirror": 0.0, "completed": 1.0, "method": "qwen"})


def unwrap_texture(template, size: int, photo: np.ndarray, verts: np.ndarray, camera: Camera,
                   relight: bool = True, landmarks: np.ndarray | None = None,
                   head: HeadFit = EXACT_HEAD) -> TextureResult:
    """The `unwrap` method (see the module docstring); returns the maps and per-stage seconds.

    `relight=False` skips the de-lighting (the photo's shading stays in the albedo): an ablation for benchmarks.
    `landmarks`: (478, 2) mediapipe landmarks detected in the photo (pixels): the photo is registered to the head
    by a landmark warp (`texture/register.py`) before sampling; None samples where the head projects.
    `head`: how far the head may be from the photographed shape (`EXACT_HEAD`, `FITTED_HEAD` for generate-geo's).
    """
    from topos_cli.render.raster_gl import _vertex_normals
    from topos_cli.texture.complete import complete, pad_charts
    from topos_cli.texture.delight import delight, suppress_highlights
    from topos_cli.texture.pbr import pbr_maps
    from topos_cli.texture.project import depth_map, project_texels

    clock = [time.perf_counter()]
    seconds = {}

    def lap(name):
        clock.append(time.perf_counter())
        seconds[name] = round(clock[-1] - clock[-2], 3)

    assets = template_assets(template, size)
    lap("assets")
    h, w = photo.shape[:2]
    cam = camera if (camera.width, camera.height) == (w, h) else camera.resized(w, h)
    verts = np.asarray(verts, np.float32)
    raster = assets.raster
    position = raster.interpolate(verts, template.faces)
    normal = raster.interpolate(_vertex_normals(verts, template.faces), template.faces)
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    depth = depth_map(verts, template.faces, cam)
    warp = _landmark_warp(template, verts, cam, depth, landmarks)
    proj = project_texels(_low_pass(srgb_to_linear(photo[..., :3]), verts, cam, head.registration_cm), position,
                          normal, cam, depth, warp)
    lap("project")
    delit = delight(proj.colour, normal, proj.weight, assets.skin if relight else np.zeros_like(assets.skin))
    lap("delight")
    weight = raster.image(proj.weight * _skin_gate(delit, proj.weight, assets.outer))
    albedo = suppress_highlights(raster.image(delit.albedo), weight)
    done = complete(albedo, weight, raster.covered, assets.mirror, assets.prior * _prior_gain(delit, proj, assets),
                    _trust(head, assets), head.ratio_reach)
    lap("complete")
    lin = pad_charts(done.albedo * _skin_gain(done.albedo, assets), raster.covered)  # pad before filtering
    maps = pbr_maps(lin, assets.masks, np.clip(done.photo, 0, 1), assets.default_normal)
    result = _finish(lin, maps, done)
    lap("pbr")
    result.stats = {**_fractions(done, raster.covered), "seconds": seconds,
                    "registration": None if warp is None else {"landmarks": warp.used,
                                                               "shift_px": round(warp.shift_px, 3)},
                    "lighting_sh": np.round(delit.coefficients, 5).tolist()}
    return result


def _trust(head: HeadFit, assets) -> float | np.ndarray:
    """The photo's share scale: `head.trust`, rising to `head.feature_trust` on TRUSTED_FEATURES ((S, S) then)."""
    found = [assets.masks[k] for k in TRUSTED_FEATURES if k in assets.masks]
    if head.trust == head.feature_trust or not found:
        return head.trust
    features = np.clip(np.max(found, axis=0), 0, 1)
    return head.trust + (head.feature_trust - head.trust) * features


def _low_pass(photo: np.ndarray, verts: np.ndarray, camera: Camera, registration_cm: float) -> np.ndarray:
    """The photo blurred by a Gaussian of `registration_cm` on the head (in pixels at the head's median depth)."""
    if registration_cm <= 0:
        return photo
    import cv2

    _, z = camera.project(np.asarray(verts, np.float64))
    sigma = registration_cm * camera.fx / max(float(np.median(z)), 1e-6)
    return cv2.GaussianBlur(np.asarray(photo, np.float32), (0, 0), sigma).astype(np.float64)


def _landmark_warp(template, verts: np.ndarray, camera: Camera, depth: np.ndarray, landmarks):
    """The landmark registration warp of the photo to this head, or None (no landmarks, no map, too few)."""
    if landmarks is None:
        return None
    from topos_cli.pipelines.geo import load_landmark_map
    from topos_cli.texture.register import landmark_points, landmark_warp

    try:
        lmap = load_landmark_map(template)
    except UsageError:  # a template without the mediapipe map: sample unregistered
        return None
    if len(lmap.triangles) != len(landmarks):
        return None
    points = landmark_points(verts, template.faces, lmap.triangles, lmap.barycentrics)
    return landmark_warp(np.asarray(landmarks, np.float64), points, lmap.weights, camera, depth)


def _skin_gate(delit, weight: np.ndarray, outer: np.ndarray) -> np.ndarray:
    """(N,) in [0, 1]: 1 inside the face; on OUTER texels, how much the de-lit colour looks like the face's skin
    (Gaussian in chromaticity and log-luminance around the lighting fit's inliers), so a collar, a hat or the
    background behind the neck is completed from the mirror or the skin prior instead of painted on."""
    ref_set = delit.inliers & (weight > 0.5)
    if ref_set.sum() < 100:
        return np.ones(len(weight))
    alb = np.maximum(delit.albedo, 1e-6)
    luma = alb @ np.array([0.2126, 0.7152, 0.0722])
    chroma = alb / alb.sum(1, keepdims=True)
    d_chroma = np.abs(chroma - np.median(chroma[ref_set], 0)).sum(1)
    d_luma = np.log(luma / np.median(luma[ref_set]))
    gate = np.exp(-(d_chroma / GATE_CHROMA) ** 2 - (d_luma / GATE_LOG_LUMA) ** 2)
    return np.where(outer, gate, 1.0)


def _prior_gain(delit, proj, assets) -> np.ndarray:
    """Per-channel gain that brings the default skin to the photo's skin colour (median over fitted texels)."""
    used = delit.inliers & (proj.weight > 0.5)
    if used.sum() < 100:
        return np.ones(3)
    prior_flat = assets.prior.reshape(-1, 3)[assets.raster.pix]
    return np.median(delit.albedo[used], axis=0) / np.maximum(np.median(prior_flat[used], axis=0), 1e-4)


def _skin_gain(albedo: np.ndarray, assets) -> float:
    """Overall gain that keeps the median skin luminance inside the range of real skin (the light's absolute
    level is unobservable: a dim photo must not give a dark-skinned texture or the reverse beyond reason)."""
    luma = albedo.reshape(-1, 3)[assets.raster.pix][assets.skin] @ np.array([0.2126, 0.7152, 0.0722])
    med = float(np.median(luma)) if len(luma) else 0.0
    if med <= 0:
        return 1.0
    return float(np.clip(med, *SKIN_LUMA_RANGE) / med)


def _finish(lin: np.ndarray, maps, done) -> TextureResult:
    """Encode the (padded) maps: sRGB albedo, unit normals, coverage shares."""
    coverage = np.stack([done.photo, done.mirror, done.prior], -1)
    return TextureResult(linear_to_srgb(lin), maps.roughness, maps.specular, maps.normal, coverage)


def _fractions(done, covered: np.ndarray) -> dict:
    n = max(int(covered.sum()), 1)
    return {"photo": round(float(done.photo[covered].sum() / n), 4),
            "mirror": round(float(done.mirror[covered].sum() / n), 4),
            "completed": round(float(done.prior[covered].sum() / n), 4)}


# ----------------------------------------------------------------------------- outputs

MTL = """# topos generate-tex (map_Pr / norm are the PBR extension of MTL; map_Kd is read everywhere)
newmtl skin
Ka 0 0 0
Kd 1 1 1
Ks 0.028 0.028 0.028
map_Kd albedo.png
"""
MTL_PBR = "map_Ks specular.png\nmap_Pr roughness.png\nnorm normal.png\nmap_Bump normal.png\n"
PBR_FILES = ("normal.png", "roughness.png", "specular.png")


def write_texture_set(out: Path, result: TextureResult, verts: np.ndarray, template, preview: bool = True,
                      pbr: bool = True) -> dict:
    """Write albedo/normal/roughness/specular/coverage PNGs, head.obj + head.mtl and preview.png into `out`
    (`pbr=False`: albedo and coverage only, and the MTL names only the albedo).

    Returns {name: absolute path}.
    """
    from topos_cli.io.fs import atomic_path
    from topos_cli.io.image import write_png
    from topos_cli.io.mesh import MeshData
    from topos_cli.io.obj import ObjData, format_obj

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"albedo": write_png(out / "albedo.png", result.albedo),
             "coverage": write_png(out / "coverage.png", result.coverage)}
    if pbr:
        paths.update(normal=write_png(out / "normal.png", result.normal * 0.5 + 0.5),
                     roughness=write_png(out / "roughness.png", result.roughness),
                     specular=write_png(out / "specular.png", result.specular / 2))
    mesh = MeshData.from_template(template, np.asarray(verts, np.float32))
    with atomic_path(out / "head.mtl") as tmp:
        tmp.write_text(MTL + (MTL_PBR if pbr else ""))
    obj = ObjData(verts=mesh.verts, polys=mesh.polys if mesh.polys is not None else mesh.faces, uv=mesh.uv,
                  uv_polys=_uv_polys(mesh), normals=None, mtllib="head.mtl",
                  materials=np.zeros(len(mesh.polys if mesh.polys is not None else mesh.faces), np.int64),
                  material_names=["skin"])
    with atomic_path(out / "head.obj") as tmp:
        tmp.write_text(format_obj(obj))
    paths.update(obj=out / "head.obj", mtl=out / "head.mtl")
    if preview:
        paths["preview"] = write_png(out / "preview.png", render_preview(result, verts, template, pbr=pbr))
    return {k: str(Path(v).resolve()) for k, v in paths.items()}


def _uv_polys(mesh) -> np.ndarray:
    from topos_cli.io.mesh import _poly_uv

    return mesh.uv_faces if mesh.polys is None else _poly_uv(mesh)


def render_preview(result: TextureResult, verts: np.ndarray, template, size: int = PREVIEW_SIZE,
                   pbr: bool = True) -> np.ndarray:
    """The textured head, front under `PREVIEW_LIGHTS` and a studio-lit profile, side by side (RGB float)."""
    from topos_cli.io.image import to_uint8
    from topos_cli.pipelines.render import resolve_lighting, sheet
    from topos_cli.render.raster_gl import gl_available
    from topos_cli.render.renderer import Material, Renderer, RenderMesh
    from topos_cli.render.views import framed_camera

    mesh = RenderMesh(np.asarray(verts, np.float32), template.faces, uv=template.uv, uv_faces=template.uv_faces)
    material = Material(albedo_map=to_uint8(result.albedo))
    if pbr:
        material = Material(albedo_map=to_uint8(result.albedo),
                            material_map=np.stack([result.roughness, result.specular], -1).astype(np.float32),
                            normal_map=to_uint8(result.normal * 0.5 + 0.5), roughness=1.0, specular=1.0)
    renderer = Renderer("gl" if gl_available() else "torch")
    v = np.asarray(verts, np.float64)
    front, profile = framed_camera(v, 0, 0, size), framed_camera(v, 90, 0, size)
    tiles = [renderer.render(mesh, front, material, resolve_lighting(name), "ggx", ("color",))["color"]
             for name in PREVIEW_LIGHTS]
    tiles.append(renderer.render(mesh, profile, material, resolve_lighting("studio"), "ggx", ("color",))["color"])
    return sheet([tiles])
