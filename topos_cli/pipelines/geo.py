"""generate-geo inference: portrait -> face landmarks -> (TOPOS-DiT prior) -> photo fit -> head in template topology.

    pipe = GeoPipeline.from_pretrained()                  # the shipped geo-dit-small when present
    result = pipe(image_rgb_uint8, source="me.jpg", seed=0)
    result.verts, result.camera, result.record()          # neutral head (cm, template frame), OpenCV camera

Stages: faces/detect.py finds the face and its 478 landmarks (faces/refine.py moves them to where the template's
points project); the generator (pipelines/geo_prior.py, when a checkpoint is there) draws a plausible neutral head
from the photo; geometry/photo_fit.py fits camera pose, expression and a shape correction (`fit_basis`:
regularised toward the generator's head) to the landmarks through the template's derived landmark map, and the
neck's side outline to the photo's person mask (geometry/photo_silhouette.py);
geometry/photo_shading.py refines the shape so its shading explains the photo. Without a generator the prior is the
template's mean head.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from topos_cli.errors import UsageError

LANDMARK_MAP = "face_landmarks_mediapipe.json"  # the template sidecar written by scripts/build_face_landmark_map.py
ASSUMED_DISTANCE_CM = 75.0  # camera-to-face distance assumed for a photo of unknown focal (portraits: 0.4-2 m)
EYE_CORNERS_CM = 9.0  # typical outer-eye-corner distance, turns the assumed distance into a focal length
IDENTITY_REG_MEAN = 1e-3  # identity prior weight around the mean head (research sweep: flat within +-0.05 %)
IDENTITY_REG_PRIOR = 1e-1  # around the generator's head: landmarks carry little identity, keep what it made
# around the generator's head when the landmark refiner (faces/refine.py) placed the points: they carry identity;
# the fit then moves the generator's own error directions (GeoPipeline.fit_basis), c ~ N(0, 1). Swept on 60
# validation portraits (seed 8000), face after the fit: 2e-5 0.393 %, 5e-5 0.389 %, 1e-4 0.388 %, 2e-4 0.390 %,
# 3e-4 0.393 %, 5e-4 0.399 %
IDENTITY_REG_REFINED = 1e-4
FIT_DIRECTIONS = 128  # of the generator's error directions the landmark fit moves
EXPRESSION_REG = 1e-3  # expression prior weight (research sweep)
# the silhouette term pulls the neck's side outline onto the photo's person mask: nothing else in a portrait says
# how wide the neck is. Swept on 60 validation portraits (seed 8000), face / head after the whole pipeline: off
# 0.377 / 0.758 %; neck at weight 0.03 0.369 / 0.717, 0.05 0.370 / 0.716, 0.1 0.372 / 0.716, 0.3 0.381 / 0.727;
# at 0.05 adding the jaw 0.414 / 0.763 or the cheeks 0.376 / 0.722; the cheek, ear, temple and cheekbone outline
# (hair and beards are part of the mask there) at 0.1 0.396 / 0.787, at 1 0.494 / 0.986. Neck + ears at 0.03 gave
# 0.366 / 0.704 on these bald synthetic heads, but on real photos hair over the ears widened them by 1.5 cm.
SILHOUETTE_REGIONS = ("neck",)
SILHOUETTE_WEIGHT = 0.05
SILHOUETTE_STRIDE = 2  # every 2nd candidate vertex: the 2.5 mm face spacing is finer than the mask's pixels
PERSON_THRESHOLD = 0.5  # segmentation probability above which a pixel is the person
SMALL_FACE_PX = 80.0  # faces smaller than this (box side) give coarse landmarks
HIGH_REPROJECTION = 0.06  # median landmark error (fraction of the eye distance) that means a poor fit
SHADING_DIRECTIONS = 64  # shape directions the photometric fit moves (the generator's residual: 64 hold ~99 %)
OVERLAY_MAX_SIDE = 1024  # overlays of large photos are drawn at most this big
OVERLAY_OPACITY = 0.6  # mesh over the photo: the face stays readable beneath it
OVERLAY_COLOUR = (0.25, 0.45, 0.85)  # linear albedo of the drawn mesh: blue stands apart from any skin tone


@dataclass
class GeoOptions:
    """Per-call options (the command's flags).

    Attributes:
        samples / steps / cfg: generator draws (their mean is the prior), ODE steps, guidance scale (None: the
            checkpoint's `sampling.cfg`, else 3.0).
        refine: fit a shape correction to the landmarks (`GeoPipeline.fit_basis`; else keep the prior's shape;
            pose and expression are still fitted).
        shading: then refine the shape so its shading explains the photo (geometry/photo_shading.py; with refine).
        keep_expression: output the fitted expression instead of the neutral head.
        face_index: which face (0 = largest) when there are several; None = the largest, with a warning.
        intrinsics: (fx, fy, cx, cy) when the camera is known; None assumes ASSUMED_DISTANCE_CM.
    """

    samples: int = 1
    steps: int = 50
    cfg: float | None = None
    refine: bool = True
    shading: bool = True
    keep_expression: bool = False
    face_index: int | None = None
    intrinsics: tuple | None = None


@dataclass
class GeoResult:
    """One portrait's head and how it was fitted."""

    verts: np.ndarray  # (V, 3) float32 output head (neutral unless keep_expression), template frame, cm
    posed: np.ndarray  # (V, 3) float32 the head with the fitted expression (what the camera sees)
    prior: np.ndarray  # (V, 3) float32 the generator's (or mean) head the fit started from
    camera: object  # render.camera.Camera: template frame -> photo pixels
    fit: object  # geometry.photo_fit.LandmarkFit
    face: object  # faces.detect.Face
    faces_found: int
    warnings: list[str] = field(default_factory=list)
    latents: np.ndarray | None = None
    seconds: dict = field(default_factory=dict)
    model: str | None = None
    shading: object = None  # geometry.photo_shading.ShadingFit, or None when the refinement did not run
    identity_basis: str = "identity"  # what fit.identity weighs: the template's identity modes, or "generator-error"

    def record(self, expression_names: list[str]) -> dict:
        """Plain data for `--json`: camera, pose, expression, latent, reprojection, warnings, timings."""
        fit = self.fit
        err = np.linalg.norm(fit.residual_px, axis=1)
        return {
            "camera": self.camera.to_dict(),
            "pose": {"yaw": round(fit.yaw, 3), "pitch": round(fit.pitch, 3), "roll": round(fit.roll, 3),
                     "rotation": np.round(fit.rotation, 8).tolist(), "translation": np.round(fit.translation, 6).tolist()},
            "expression": {n: round(float(w), 5) for n, w in zip(expression_names, fit.expression, strict=False)},
            "identity": np.round(fit.identity, 5).tolist(), "identity_basis": self.identity_basis,
            "latent": None if self.latents is None else np.round(self.latents, 5).tolist(),
            "landmarks": {"count": int(len(err)), "reprojection_px_median": round(fit.reprojection_px, 4),
                          "reprojection_px_mean": round(float(err.mean()), 4),
                          "refined": "refine" in self.seconds},
            "silhouette": {"contour_points": int(fit.contour_points)},
            "face": {"bbox": np.round(self.face.bbox, 2).tolist(), "score": round(self.face.score, 4),
                     "faces_found": self.faces_found},
            "shading": None if self.shading is None else {
                "vertices": self.shading.vertices_used, "residual": round(float(self.shading.residual), 5),
                "inliers": round(float(self.shading.inliers), 4), "applied": bool(self.shading.applied),
                "directions": int(len(self.shading.coefficients))},
            "model": self.model, "warnings": list(self.warnings),
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
        }


@dataclass
class LandmarkMap:
    """The template's mediapipe map: triangle + barycentrics + reliability per landmark."""

    triangles: np.ndarray
    barycentrics: np.ndarray
    weights: np.ndarray


def load_landmark_map(template) -> LandmarkMap:
    """The template's derived landmark map; UsageError naming the script that builds it when absent."""
    data = template.sidecar(LANDMARK_MAP)
    if data is None:
        raise UsageError(f"template '{template.name}' has no {LANDMARK_MAP}; build it with "
                         f"scripts/build_face_landmark_map.py --template {template.root} --out "
                         f"{template.root}/{LANDMARK_MAP}")
    if data.get("template_hash") not in (None, template.hash):
        raise UsageError(f"{LANDMARK_MAP} of template '{template.name}' was made for another topology; rebuild it")
    return LandmarkMap(np.asarray(data["triangles"], np.int64), np.asarray(data["barycentrics"], np.float64),
                       np.asarray(data["weights"], np.float64))


class GeoPipeline:
    """Portrait -> head; the template, its bases and the optional generator are loaded once."""

    def __init__(self, template, prior=None, model_dir: str | None = None, identity_reg: float | None = None,
                 expression_reg: float = EXPRESSION_REG, silhouette_weight: float = SILHOUETTE_WEIGHT, refiner=None):
        for name in ("identity", "expression"):
            template.basis(name)  # UsageError if the template lacks them
        self.template, self.prior, self.model_dir, self.refiner = template, prior, model_dir, refiner
        if identity_reg is None:
            identity_reg = IDENTITY_REG_MEAN if prior is None else \
                (IDENTITY_REG_REFINED if refiner is not None else IDENTITY_REG_PRIOR)
        self.identity_reg = identity_reg
        self.expression_reg, self.silhouette_weight = expression_reg, silhouette_weight
        self.lmap = load_landmark_map(template)
        self.identity = template.basis("identity")
        self.expression = template.basis("expression")
        self.expression_names = [str(n) for n in template.bases.get("expression_names", [])]
        from topos_cli.geometry.photo_shading import ShadingConfig

        self.shading_config = ShadingConfig()
        self._posterior, self._skin = None, None

    @classmethod
    def from_pretrained(cls, model: str | Path | None = None, template=None, device: str = "cpu",
                        use_prior: bool = True, use_refiner: bool = True) -> GeoPipeline:
        """Load the generator from `model` (default: the shipped checkpoint if its folder exists).

        Args:
            model: TOPOS-DiT checkpoint folder; None uses the shipped one when present, else the mean head.
            template: Template (default: the generator's, else topos-head).
            use_prior: False skips the generator (the mean head is the prior).
            use_refiner: refine mediapipe's points with the shipped landmark refiner (faces/refine.py) when it is
                installed and the template is the one it was trained for.
        """
        from topos_cli.template import load_template

        prior = None
        if use_prior:
            from topos_cli.pipelines.geo_prior import DEFAULT_MODEL, GeoPrior

            path = Path(model) if model is not None else DEFAULT_MODEL
            if model is not None and not path.exists():
                raise UsageError(f"--model {path}: no such folder")
            shipped = model is None and any((path / f).is_file() for f in ("model.json", "latest"))
            if model is not None or shipped:
                prior = GeoPrior.from_pretrained(path, template=template, device=device)
                model = str(path)
        tpl = template or (load_template(prior.meta.get("template")) if prior is not None else load_template())
        refiner = _shipped_refiner(tpl) if use_refiner else None
        return cls(tpl, prior, str(model) if model is not None else None, refiner=refiner)

    def __call__(self, image: np.ndarray, source: str = "image", seed: int = 0,
                 options: GeoOptions | None = None) -> GeoResult:
        """Fit one portrait.

        Args:
            image: (H, W, 3) uint8 RGB (faces.detect.as_rgb8 for other layouts).
            source: name used in messages (the file path).
            seed: the generator's noise seed.
        """
        from topos_cli.faces.detect import detect_faces, pick_face

        options = options or GeoOptions()
        seconds, t0 = {}, time.perf_counter()
        faces = detect_faces(image)
        face, warnings = pick_face(faces, options.face_index, source)
        seconds["detect"] = time.perf_counter() - t0
        base, latents = self._prior(image, face, seed, options, seconds)  # mediapipe's points: what it learned on
        if self.refiner is not None:  # the fit and the refinement use the refined points
            t1 = time.perf_counter()
            face = dataclasses.replace(face, landmarks=self.refiner(image, face.landmarks))
            seconds["refine"] = time.perf_counter() - t1
        intrinsics = self.intrinsics(image.shape, face, options)
        fit = self._fit(base, face, intrinsics, options, seconds, image)
        neutral = _apply(base, self.fit_basis(), fit.identity)
        posed = _apply(neutral, self.expression, fit.expression)
        shading = None
        if options.shading and options.refine:
            shading, fit, delta = self._shade(image, posed, fit, face, intrinsics, seconds)
            neutral, posed = neutral + delta, posed + delta
            if not shading.applied:
                warnings.append(f"shape from landmarks only: {shading.inliers:.0%} of the visible skin fits a "
                                "smooth-light, one-colour model (hair, hat, beard, make-up or hard shadows?)")
        camera = _camera(image.shape, intrinsics, fit)
        warnings += _warnings(face, fit)
        seconds["total"] = time.perf_counter() - t0
        return GeoResult(posed if options.keep_expression else neutral, posed, base, camera, fit, face, len(faces),
                         warnings, latents, seconds, self.model_dir, shading,
                         "generator-error" if self.fit_basis() is not self.identity else "identity")

    def _prior(self, image, face, seed: int, options: GeoOptions, seconds: dict):
        if self.prior is None:
            seconds["prior"] = 0.0
            return self.template.verts.astype(np.float32), None
        from topos_cli.utils.seeding import torch_generator

        t0 = time.perf_counter()
        points = np.concatenate([face.landmarks, face.depth[:, None]], 1)
        out = self.prior(image, points, torch_generator(seed, str(self.prior.device)), steps=options.steps,
                         cfg=options.cfg, samples=options.samples)
        seconds["prior"] = time.perf_counter() - t0
        return np.asarray(out.verts, np.float32), out.latents

    def _silhouette(self, base: np.ndarray, image: np.ndarray) -> tuple:
        """(ContourModel at the side-outline vertices of `base`, the photo's person-mask distance field)."""
        from topos_cli.faces.detect import segment_person
        from topos_cli.geometry.mesh_ops import vertex_normals
        from topos_cli.geometry.photo_fit import ContourModel
        from topos_cli.geometry.photo_silhouette import silhouette_target

        regions = [self.template.regions[r] for r in SILHOUETTE_REGIONS if r in self.template.regions]
        idx = np.unique(np.concatenate(regions))[::SILHOUETTE_STRIDE] if regions else np.zeros(0, np.int64)
        normals = vertex_normals(np.asarray(base, np.float64), self.template.faces)[idx]
        contour = ContourModel(np.asarray(base, np.float64)[idx], self.fit_basis()[:, idx], self.expression[:, idx],
                               normals)
        return contour, silhouette_target(segment_person(image) > PERSON_THRESHOLD)

    def _fit(self, base: np.ndarray, face, intrinsics, options: GeoOptions, seconds: dict, image=None):
        from topos_cli.geometry.photo_fit import FitConfig, fit_landmarks, landmark_model

        t0 = time.perf_counter()
        model = landmark_model(base, self.fit_basis(), self.expression, self.lmap.triangles, self.lmap.barycentrics,
                               self.template.faces, self.lmap.weights, self.expression_names)
        config = FitConfig(fit_identity=options.refine, identity_reg=self.identity_reg,
                           expression_reg=self.expression_reg, silhouette_weight=self.silhouette_weight)
        silhouette = self._silhouette(base, image) if self.silhouette_weight > 0 else None
        fit = fit_landmarks(model, face.landmarks, intrinsics, config, silhouette=silhouette)
        seconds["fit"] = time.perf_counter() - t0
        return fit

    def _posterior_basis(self) -> np.ndarray:
        """(K, V, 3) where the generator errs on held-out renders (its residual covariance's scaled principal
        directions, c ~ N(0, 1)), else the spread of augment's heads; computed once."""
        if self._posterior is None:
            from topos_cli.geometry.shape_prior import population_basis

            basis = self.prior.posterior_basis() if self.prior is not None else None
            self._posterior = population_basis(self.template) if basis is None else basis
        return self._posterior

    def shape_basis(self) -> np.ndarray:
        """(K, V, 3) the photometric refinement's shape directions (c ~ N(0, 1))."""
        return self._posterior_basis()[:SHADING_DIRECTIONS]

    def fit_basis(self) -> np.ndarray:
        """(K, V, 3) the shape directions the landmark fit moves: with a generator and refined points, where the
        generator errs (c ~ N(0, 1): the fit is its posterior given the points), else the template's identity."""
        if self.prior is not None and self.refiner is not None:
            return self._posterior_basis()[:FIT_DIRECTIONS]
        return self.identity

    def _shade(self, image, posed: np.ndarray, fit, face, intrinsics, seconds: dict):
        """Photometric refinement (geometry/photo_shading.py): (ShadingFit, the updated fit, (V, 3) shape delta)."""
        import dataclasses

        from topos_cli.geometry.photo_fit import head_pose_degrees
        from topos_cli.geometry.photo_shading import LandmarkTarget, refine_shading, skin_vertices
        from topos_cli.render.lights import srgb_to_linear

        t0 = time.perf_counter()
        if self._skin is None:
            self._skin = skin_vertices(self.template)
        target = LandmarkTarget(face.landmarks, self.lmap.triangles, self.lmap.barycentrics, self.lmap.weights)
        basis = self.shape_basis()
        photo = srgb_to_linear(image[..., :3] / 255.0).astype(np.float32)
        shading = refine_shading(photo, posed, basis, self.template.faces, fit.rotation,
                                 fit.translation, intrinsics, self._skin, target,
                                 depth_fn=_depth_fn(self.template.faces, image.shape, intrinsics),
                                 config=self.shading_config)
        err = np.linalg.norm(shading.residual_px, axis=1)[self.lmap.weights > 0]
        fit = dataclasses.replace(fit, rotation=shading.rotation, translation=shading.translation,
                                  residual_px=shading.residual_px, reprojection_px=float(np.median(err)),
                                  **dict(zip(("yaw", "pitch", "roll"), head_pose_degrees(shading.rotation),
                                             strict=True)))
        delta = np.tensordot(shading.coefficients, basis, 1).astype(np.float32)
        seconds["shading"] = time.perf_counter() - t0
        return shading, fit, delta

    @staticmethod
    def intrinsics(shape, face, options: GeoOptions) -> tuple[float, float, float, float]:
        """(fx, fy, cx, cy): given, or a centred pinhole whose focal puts the face at ASSUMED_DISTANCE_CM."""
        if options.intrinsics is not None:
            return tuple(float(v) for v in options.intrinsics)
        from topos_cli.geometry.photo_fit import EYE_OUTER

        h, w = shape[:2]
        eyes_px = float(np.linalg.norm(face.landmarks[EYE_OUTER[0]] - face.landmarks[EYE_OUTER[1]]))
        focal = ASSUMED_DISTANCE_CM * max(eyes_px, 1.0) / EYE_CORNERS_CM
        return focal, focal, w / 2.0, h / 2.0



def _shipped_refiner(template):
    """The shipped landmark refiner, or None when absent or made for another template's landmark map."""
    from topos_cli.faces.refine import DEFAULT_DIR, LandmarkRefiner

    if not (DEFAULT_DIR / "model.json").is_file():
        return None
    refiner = LandmarkRefiner.from_pretrained(DEFAULT_DIR)
    return refiner if refiner.report.get("template_hash") in (None, template.hash) else None


def _camera(shape, intrinsics, fit):
    """The photo's camera for the template frame (R, t = the fitted head pose), near/far around the head."""
    return _pose_camera(shape, intrinsics, fit.rotation, fit.translation)


def _pose_camera(shape, intrinsics, rot, t):
    from topos_cli.render.camera import Camera

    h, w = shape[:2]
    depth = float(np.linalg.norm(t))
    return Camera(w, h, *intrinsics, R=rot, t=t, near=max(depth * 0.5, 1.0), far=depth * 2 + 100.0)


def _depth_fn(faces: np.ndarray, shape, intrinsics):
    """(verts, R, t) -> (H, W) depth pass in the photo's camera (the photometric fit's occlusion test)."""
    from topos_cli.texture.project import depth_map

    return lambda verts, rot, t: depth_map(verts, faces, _pose_camera(shape, intrinsics, rot, t))


def _apply(verts: np.ndarray, basis: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return (np.asarray(verts, np.float64) + np.tensordot(weights, basis[:len(weights)], 1)).astype(np.float32)


def _warnings(face, fit) -> list[str]:
    from topos_cli.geometry.photo_fit import EYE_OUTER, MAX_YAW_WARN

    out = []
    if abs(fit.yaw) > MAX_YAW_WARN:
        out.append(f"head turned {fit.yaw:+.0f} deg; near-frontal portraits (|yaw| <= {MAX_YAW_WARN:.0f}) are the "
                   "supported input, expect a poorer shape")
    if face.size < SMALL_FACE_PX:
        out.append(f"small face ({face.size:.0f} px); landmarks are coarse below {SMALL_FACE_PX:.0f} px")
    eyes = float(np.linalg.norm(face.landmarks[EYE_OUTER[0]] - face.landmarks[EYE_OUTER[1]]))
    if fit.reprojection_px > HIGH_REPROJECTION * eyes:
        out.append(f"landmarks fit poorly (median {fit.reprojection_px:.1f} px): occlusion or an unusual face?")
    return out


def overlay(image: np.ndarray, verts: np.ndarray, template, camera) -> np.ndarray:
    """(H', W', 3) uint8: the photo with the mesh (clay, studio light) drawn over it (at most OVERLAY_MAX_SIDE)."""
    from topos_cli.render.lights import preset_rig
    from topos_cli.render.renderer import Renderer, RenderMesh

    h, w = image.shape[:2]
    scale = min(1.0, OVERLAY_MAX_SIDE / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    photo = image if scale == 1.0 else _resize(image, size)
    cam = camera.resized(*size)
    cam.near, cam.far = 1.0, 1000.0
    colors = np.tile(np.asarray(OVERLAY_COLOUR, np.float32), (len(verts), 1))
    out = Renderer("gl").render(RenderMesh(verts, template.faces, colors=colors), cam, rig=preset_rig("studio"),
                                passes=("color",))
    rgba = out["color"]
    alpha = rgba[..., 3:] * OVERLAY_OPACITY
    blend = photo.astype(np.float32) / 255.0 * (1 - alpha) + rgba[..., :3] * alpha
    return (np.clip(blend, 0, 1) * 255 + 0.5).astype(np.uint8)


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)
