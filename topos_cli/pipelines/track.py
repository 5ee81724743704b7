"""Portrait video -> facial animation: per-frame landmarks, pose + expression fit, temporal smoothing.

    tracker = FaceTracker(template, head_verts)
    track = tracker(clip.frames(), fps=clip.fps)      # any iterable of (H, W, 3) uint8 RGB frames
    anim = track.animation(arkit_map(template))       # io.animation.FaceAnimation: ARKit + template curves

Per frame: mediapipe's 478 points (`faces/detect.py`, the largest face), then `geometry/photo_fit.py`'s
`fit_landmarks`, the fit `generate-geo` runs, through the template's mediapipe landmark map, with the same
expression prior. The differences are what a video allows:

* identity is fixed: fitted (regularised towards the HEAD, as generate-geo does around its generator's head)
  on each of the first `identity_frames` frames with a face, the per-coefficient median kept; every frame is
  then fitted for pose and expression only (59 unknowns instead of 159), so a frame costs a few milliseconds;
* the focal length is fixed for the whole clip from the first face (generate-geo's assumed-distance rule);
* each frame's pose starts from the previous frame's (no pose search); a start that ends in a poor fit
  (a cut, a fast turn) is redone with the pose search. `fit_landmarks` starts the expression at zero
  (it takes no expression start), which costs a few more solver steps but keeps frames independent;
* frames without a face hold the previous frame's pose and expression (the first found, before any), and
  are counted;
* smoothing: a Gaussian over time (zero phase), sigma `smooth_s` seconds, on expression weights, head angles
  and translation. The clip is fitted offline, so a two-sided filter can be used: it adds no lag, unlike the
  causal one-euro filter (built for live input, whose cut-off rises with speed but which delays onsets by a
  frame or more and shifts lip motion against the audio). Its sigma is set from the signal's band: the gain
  exp(-2 pi^2 f^2 sigma^2) stays >= 0.9 up to 5 Hz (syllable-rate jaw and lip motion, blinks of 100-400 ms)
  with sigma = 15 ms, and falls to 0.37 at 15 Hz, where frame-to-frame landmark jitter lives at 30 fps.
  On the benchmark clip (benchmarks/animate.py) sigma 1/30 s cost jawOpen's correlation 0.979 -> 0.958.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from topos_cli.errors import UsageError
from topos_cli.template import Template

SMOOTH_SECONDS = 0.015  # Gaussian sigma over time: gain >= 0.9 up to 5 Hz (speech), 0.37 at 15 Hz (jitter)
IDENTITY_FRAMES = 3  # first face frames the fixed identity is fitted on (median of 3: robust to one odd frame)
TRACK_EVALS = 12  # solver evaluations per frame (warm pose start); 20 cut jawOpen MAE only 0.088 -> 0.085 on the
# 300-frame benchmark clip, for 20 % more fitting time
POOR_FIT = 0.06  # median landmark error (fraction of the eye distance; generate-geo's HIGH_REPROJECTION): redo


@dataclass
class TrackOptions:
    """Per-call options (the command's flags).

    Attributes:
        smooth_s: Gaussian sigma over time in seconds (0: no smoothing).
        identity_frames: first face frames the identity is fitted on (0: take the HEAD as it is).
        max_evals: solver evaluations per frame.
    """

    smooth_s: float = SMOOTH_SECONDS
    identity_frames: int = IDENTITY_FRAMES
    max_evals: int = TRACK_EVALS


@dataclass
class Track:
    """A fitted clip, one row per frame.

    Attributes:
        times: (T,) seconds. expression: (T, E) weights (template names `names`), smoothed.
        angles: (T, 3) head yaw, pitch, roll in degrees (photo_fit's convention), smoothed.
        translation: (T, 3) cm, camera frame, smoothed. found: (T,) a face was found in the frame.
        reprojection_px: (T,) median landmark error of each frame's fit (NaN where no face).
        identity: (K,) the fixed identity correction. intrinsics: (fx, fy, cx, cy).
        seconds: timings (detect, fit, total). warnings: what a user should know.
    """

    times: np.ndarray
    expression: np.ndarray
    angles: np.ndarray
    translation: np.ndarray
    found: np.ndarray
    reprojection_px: np.ndarray
    names: list[str]
    identity: np.ndarray
    intrinsics: tuple
    seconds: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def animation(self, arkit: dict[str, dict[str, float]]):
        """FaceAnimation with the template's curves and, through `arkit` ({ARKit: {template: weight}}), ARKit's
        (each the least-squares weight of its parts: (sum w_p beta_p) / (sum w_p^2)); head rotation in radians."""
        from topos_cli.io.animation import FaceAnimation

        curves = {n: self.expression[:, k] for k, n in enumerate(self.names)}
        for name, parts in arkit.items():
            used = {p: w for p, w in parts.items() if p in curves}
            if used:
                norm = sum(w * w for w in used.values())
                curves[name] = np.clip(sum(w * curves[p] for p, w in used.items()) / norm, 0.0, 1.0)
        return FaceAnimation(self.times, curves, {"head": np.radians(self.angles)})

    def record(self) -> dict:
        """Plain data for the command's report."""
        fitted = self.reprojection_px[self.found]
        return {"frames": int(len(self.times)), "no_face_frames": int((~self.found).sum()),
                "reprojection_px_median": round(float(np.median(fitted)), 4) if len(fitted) else None,
                "fit_fps": round(len(self.times) / max(self.seconds.get("total", 0.0), 1e-9), 2),
                "seconds": {k: round(v, 3) for k, v in self.seconds.items()}, "warnings": list(self.warnings)}


@dataclass
class _Frame:
    face: object  # faces.detect.Face (the largest), or None
    shape: tuple
    fit: object = None

    @property
    def landmarks(self) -> np.ndarray | None:
        return None if self.face is None else self.face.landmarks


class FaceTracker:
    """Fits a clip frame by frame with one head: the template's bases, landmark map and the HEAD as base."""

    def __init__(self, template: Template, head_verts: np.ndarray | None = None, options: TrackOptions | None = None):
        from topos_cli.pipelines.geo import EXPRESSION_REG, IDENTITY_REG_PRIOR, load_landmark_map

        self.template, self.options = template, options or TrackOptions()
        self.head = np.asarray(template.verts if head_verts is None else head_verts, np.float64)
        template.check_verts(self.head, "head")
        self.identity, self.expression = template.basis("identity"), template.basis("expression")
        self.names = [str(n) for n in template.bases.get("expression_names", [])]
        self.lmap = load_landmark_map(template)
        self.expression_reg, self.identity_reg = EXPRESSION_REG, IDENTITY_REG_PRIOR

    def __call__(self, frames: Iterable[np.ndarray], fps: float) -> Track:
        from topos_cli.faces.detect import detect_faces

        start, frames_out, detect_s = time.perf_counter(), [], 0.0
        for image in frames:
            t0 = time.perf_counter()
            faces = detect_faces(image)
            detect_s += time.perf_counter() - t0
            frames_out.append(_Frame(faces[0] if faces else None, image.shape))
        found = np.array([f.landmarks is not None for f in frames_out], bool)
        if not len(found) or not found.any():
            raise UsageError(f"no face found in any of the {len(found)} frames; give a portrait video with the "
                             "face visible and near-frontal")
        t0 = time.perf_counter()
        intrinsics = self._intrinsics(frames_out[int(np.argmax(found))])
        alpha = self._identity([f for f in frames_out if f.landmarks is not None], intrinsics)
        model = self._model(alpha)
        self._fit_all(frames_out, model, intrinsics)
        fit_s = time.perf_counter() - t0
        track = self._track(frames_out, fps, alpha, intrinsics)
        track.seconds = {"detect": detect_s, "fit": fit_s, "total": time.perf_counter() - start}
        return track

    def _intrinsics(self, frame: _Frame) -> tuple:
        from topos_cli.pipelines.geo import GeoOptions, GeoPipeline

        return GeoPipeline.intrinsics(frame.shape, frame.face, GeoOptions())

    def _model(self, alpha: np.ndarray):
        from topos_cli.geometry.photo_fit import landmark_model

        base = self.head + np.tensordot(alpha, self.identity[:len(alpha)], 1) if len(alpha) else self.head
        return landmark_model(base, self.identity, self.expression, self.lmap.triangles, self.lmap.barycentrics,
                              self.template.faces, self.lmap.weights, self.names)

    def _config(self, fit_identity: bool):
        from topos_cli.geometry.photo_fit import FitConfig

        return FitConfig(fit_identity=fit_identity, identity_reg=self.identity_reg,
                         expression_reg=self.expression_reg,
                         max_evals=FitConfig().max_evals if fit_identity else self.options.max_evals)

    def _identity(self, frames: list[_Frame], intrinsics) -> np.ndarray:
        """Median identity correction over the first `identity_frames` face frames (zeros: the HEAD as is)."""
        from topos_cli.geometry.photo_fit import fit_landmarks

        count = min(self.options.identity_frames, len(frames))
        if count <= 0:
            return np.zeros(0)
        model = self._model(np.zeros(0))
        fits = [fit_landmarks(model, f.landmarks, intrinsics, self._config(True)) for f in frames[:count]]
        return np.median(np.stack([f.identity for f in fits]), 0)

    def _fit_all(self, frames: list[_Frame], model, intrinsics) -> None:
        from topos_cli.geometry.photo_fit import EYE_OUTER, fit_landmarks, matrix_to_rotvec

        config, pose = self._config(False), None
        for frame in frames:
            if frame.landmarks is None:
                continue
            fit = fit_landmarks(model, frame.landmarks, intrinsics, config, pose=pose)
            eyes = float(np.linalg.norm(frame.landmarks[EYE_OUTER[0]] - frame.landmarks[EYE_OUTER[1]]))
            if pose is not None and fit.reprojection_px > POOR_FIT * eyes:  # a cut or a fast turn: search again
                fit = fit_landmarks(model, frame.landmarks, intrinsics, config)
            frame.fit = fit
            pose = np.concatenate([matrix_to_rotvec(fit.rotation), fit.translation])

    def _track(self, frames: list[_Frame], fps: float, alpha: np.ndarray, intrinsics) -> Track:
        found = np.array([f.fit is not None for f in frames], bool)
        first = next(f.fit for f in frames if f.fit is not None)
        rows, last = [], first
        for f in frames:  # hold the previous fit where there is no face (the first found before any)
            last = f.fit if f.fit is not None else last
            rows.append(last)
        expression = np.stack([r.expression for r in rows])
        angles = np.array([[r.yaw, r.pitch, r.roll] for r in rows])
        translation = np.stack([r.translation for r in rows])
        reproj = np.array([f.fit.reprojection_px if f.fit is not None else np.nan for f in frames])
        sigma = self.options.smooth_s * fps
        if sigma > 0 and len(frames) > 1:
            expression = np.clip(gaussian_smooth(expression, sigma), 0.0, 1.0)
            angles, translation = gaussian_smooth(angles, sigma), gaussian_smooth(translation, sigma)
        warnings = []
        if (~found).any():
            warnings.append(f"no face in {int((~found).sum())} of {len(found)} frames; they hold the previous "
                            "frame's pose and expression")
        return Track(np.arange(len(frames)) / float(fps), expression, angles, translation, found, reproj,
                     list(self.names), alpha, tuple(float(v) for v in intrinsics), warnings=warnings)


def gaussian_smooth(values: np.ndarray, sigma: float) -> np.ndarray:
    """(T, C) values smoothed along T by a normalised Gaussian of `sigma` samples (edges: renormalised)."""
    radius = max(1, int(np.ceil(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    values = np.asarray(values, np.float64)
    out = np.zeros_like(values)
    norm = np.zeros(len(values))
    for k, w in zip(range(-radius, radius + 1), taps, strict=True):
        lo, hi = max(0, -k), min(len(values), len(values) - k)
        out[lo:hi] += w * values[lo + k:hi + k]
        norm[lo:hi] += w
    return out / norm[:, None]


__all__ = ["FaceTracker", "Track", "TrackOptions", "gaussian_smooth"]
