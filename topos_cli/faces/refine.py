"""Landmark refiner: moves mediapipe's face-mesh points to where the template's mapped points really project.

mediapipe's 478 points are pulled toward its own mean face: on topos's held-out synthetic portraits they lie a
median 4.1 px (2.6 % of the eye distance) from the true projections of the template points the landmark map
assigns to them, and that error is per face (a constant per-point correction removes 5 % of it), so a fit to
them keeps little identity. The refiner is a supervised descent method (Xiong & De la Torre 2013), a cascade of
steps: around each current point a step samples oriented-gradient channels (8 orientations, two cell sizes,
2 x 2 cells: a dense HOG read at the point), and a linear map, fitted in closed form on portraits with known truth
(`fit_refiner`), predicts all 478 offsets at once in a low-rank basis of offsets (their principal directions).
Each step after the first is fitted to the previous step's cross-fitted outputs (what it does on unseen crops).
It works in the crop that mediapipe's own points frame (faces/crop.py similarity, CROP_SIZE pixels, grey), so the
result is invariant to the photo's framing and roll. Pure numpy + OpenCV; weights in `model.safetensors`.

    refiner = LandmarkRefiner.from_pretrained()      # the shipped one (scripts/train_landmark_refiner.py)
    points = refiner(image_rgb, face.landmarks)      # (478, 2) pixels
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from topos_cli.errors import MissingWeights

CROP_SIZE = 192  # refiner crop side: the eye distance is ~48 px in it
ORIENTATIONS = 8  # unsigned gradient orientation bins
CELLS = (3, 6)  # cell sizes (crop pixels) of the two scales; each is read at 2 x 2 cells around the point
EPS_NORM = 1e-3  # per-point descriptor normalisation floor
DEFAULT_DIR = Path(__file__).resolve().parents[1] / "assets" / "checkpoints" / "landmark-refiner-small"


def refiner_crop(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(grey (CROP_SIZE, CROP_SIZE) uint8 crop, (2, 3) image->crop similarity) framed by mediapipe's points (L, 2+).

    The one crop the refiner is trained on (scripts/train_landmark_refiner.py) and applied to.
    """
    import cv2

    from topos_cli.faces.crop import crop_similarity

    mat = crop_similarity(np.asarray(landmarks, np.float64)[:, :2], CROP_SIZE)
    gray = image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
    crop = cv2.warpAffine(gray, mat, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_AREA if mat[0, 0] < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    return crop, mat


def orientation_channels(gray: np.ndarray) -> list[np.ndarray]:
    """Per cell size, (ORIENTATIONS, S, S) float32 gradient magnitude split by orientation, box-summed over a cell."""
    import cv2

    g = np.asarray(gray, np.float32) / 255.0
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    mag = np.hypot(gx, gy)
    pos = (np.arctan2(gy, gx) % np.pi) / np.pi * ORIENTATIONS
    low = np.floor(pos).astype(np.int64) % ORIENTATIONS
    frac = pos - np.floor(pos)
    bins = np.zeros((ORIENTATIONS,) + g.shape, np.float32)
    for o in range(ORIENTATIONS):  # linear vote into the two nearest bins
        bins[o] = mag * ((low == o) * (1 - frac) + ((low + 1) % ORIENTATIONS == o) * frac)
    return [np.stack([cv2.blur(b, (cell, cell)) for b in bins]) for cell in CELLS]


def _bilinear(field: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """(C, N) samples of a (C, H, W) field at pixel positions (N, 2) (centres at +0.5, clamped)."""
    _, h, w = field.shape
    x = np.clip(pts[:, 0] - 0.5, 0, w - 1.001)
    y = np.clip(pts[:, 1] - 0.5, 0, h - 1.001)
    x0, y0 = x.astype(np.int64), y.astype(np.int64)
    fx, fy = x - x0, y - y0
    return (field[:, y0, x0] * (1 - fx) * (1 - fy) + field[:, y0, x0 + 1] * fx * (1 - fy)
            + field[:, y0 + 1, x0] * (1 - fx) * fy + field[:, y0 + 1, x0 + 1] * fx * fy)


def point_features(channels: list[np.ndarray], points: np.ndarray) -> np.ndarray:
    """(L * F,) descriptor of points (L, 2) in crop pixels: each point's 2 x 2 cells per scale, unit-normalised."""
    parts = []
    for cell, chan in zip(CELLS, channels, strict=True):
        for dy in (-1, 1):
            for dx in (-1, 1):
                parts.append(_bilinear(chan, points + np.array([dx, dy]) * cell / 2.0))
    feats = np.concatenate(parts, 0).T  # (L, F)
    feats = feats / (np.linalg.norm(feats, axis=1, keepdims=True) + EPS_NORM)
    return feats.ravel()


@dataclass
class RefinerStage:
    """One descent step: points + (((x - x_mean) / x_std) @ weight) @ basis + offset, x = the descriptors read at
    the points, followed (when x_mean is 2L longer than the descriptors) by the points themselves: the detector's
    pull toward its mean face is in part a function of the face's shape, which the points carry.

    Attributes:
        x_mean, x_std: (F,) feature standardisation (the points' std divided by the shape gain: a larger share of
            the ridge for 2L numbers among ~30k). weight: (F, K) ridge map to the offset coefficients.
        basis: (K, 2L) principal directions of the training offsets. offset: (2L,) their mean.
    """

    x_mean: np.ndarray
    x_std: np.ndarray
    weight: np.ndarray
    basis: np.ndarray
    offset: np.ndarray

    def __post_init__(self):
        for name in ("x_mean", "x_std", "weight", "basis", "offset"):
            setattr(self, name, np.asarray(getattr(self, name), np.float32))

    def step(self, features: np.ndarray, points: np.ndarray) -> np.ndarray:
        """(N, L, 2) moved points from descriptors (N, F') read at points (N, L, 2)."""
        if self.x_mean.shape[0] == features.shape[1] + points[0].size:
            features = np.concatenate([features, points.reshape(len(points), -1)], 1)
        coeffs = ((features - self.x_mean) / self.x_std) @ self.weight
        return points + (coeffs @ self.basis + self.offset).reshape(points.shape)


class LandmarkRefiner:
    """A cascade of descent steps (RefinerStage), each reading the crop at the previous step's points.

    Attributes:
        stages: the steps, applied in order. report: what `fit_refiner` measured (and the training script added).
    """

    def __init__(self, stages: list[RefinerStage], report: dict | None = None):
        if not stages:
            raise ValueError("a landmark refiner needs at least one stage")
        self.stages, self.report = list(stages), report or {}

    @property
    def landmark_count(self) -> int:
        return self.stages[0].offset.shape[0] // 2

    def refine_crop_points(self, crops: np.ndarray, points: np.ndarray, stages: int | None = None) -> np.ndarray:
        """(N, L, 2) refined points for grey crops (N, S, S) and their current points (N, L, 2), crop pixels
        (`stages`: apply only the first few)."""
        points = np.asarray(points, np.float64)
        channels = [orientation_channels(c) for c in crops]
        for stage in self.stages[:stages]:
            feats = np.stack([point_features(ch, p) for ch, p in zip(channels, points, strict=True)])
            points = stage.step(feats, points)
        return points

    def __call__(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """(L, 2) float32 refined pixel positions of mediapipe's points (L, 2+) in an RGB (or grey) image."""
        pts = np.asarray(landmarks, np.float64)[:, :2]
        if pts.shape[0] != self.landmark_count:
            raise ValueError(f"the refiner takes {self.landmark_count} face-mesh points, got {pts.shape[0]}")
        crop, mat = refiner_crop(image, pts)
        inside = self.refine_crop_points(crop[None], (pts @ mat[:, :2].T + mat[:, 2])[None])[0]
        inv = np.linalg.inv(np.vstack([mat, [0.0, 0.0, 1.0]]))[:2]
        return (inside @ inv[:, :2].T + inv[:, 2]).astype(np.float32)

    def save(self, folder: str | Path, report: dict | None = None) -> None:
        """`model.safetensors` (per stage; weight and basis as float16) + `model.json`, each written atomically."""
        from safetensors.numpy import save_file

        from topos_cli.io.fs import atomic_path

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {}
        for k, st in enumerate(self.stages):
            tensors.update({f"stage{k}.x_mean": st.x_mean, f"stage{k}.x_std": st.x_std,
                            f"stage{k}.weight": st.weight.astype(np.float16),
                            f"stage{k}.basis": st.basis.astype(np.float16), f"stage{k}.offset": st.offset})
        with atomic_path(folder / "model.safetensors") as tmp:
            save_file(tensors, str(tmp))
        meta = {"format": 2, "name": "landmark-refiner", "crop_size": CROP_SIZE, "orientations": ORIENTATIONS,
                "cells": list(CELLS), "stages": len(self.stages), "rank": int(self.stages[0].basis.shape[0]),
                "report": report or self.report}
        with atomic_path(folder / "model.json") as tmp:
            Path(tmp).write_text(json.dumps(meta, indent=1) + "\n")

    @classmethod
    def from_pretrained(cls, folder: str | Path | None = None) -> LandmarkRefiner:
        """Load a refiner folder (default: the shipped one); MissingWeights when absent or unreadable."""
        folder = Path(folder) if folder is not None else DEFAULT_DIR
        weights, meta_path = folder / "model.safetensors", folder / "model.json"
        if not weights.is_file() or not meta_path.is_file():
            raise MissingWeights(f"{folder}: no landmark refiner (model.json + model.safetensors); make one with "
                                 "scripts/train_landmark_refiner.py")
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            meta = json.loads(meta_path.read_text())
            t = load_file(str(weights))
            if meta.get("name") != "landmark-refiner" or meta.get("crop_size") != CROP_SIZE:
                raise ValueError("not a landmark refiner of this version")
            names = ("x_mean", "x_std", "weight", "basis", "offset")
            if meta.get("format", 1) == 1:  # one stage, unprefixed tensors
                stages = [RefinerStage(*(t[n] for n in names))]
            else:
                stages = [RefinerStage(*(t[f"stage{k}.{n}"] for n in names)) for k in range(int(meta["stages"]))]
            for st in stages:
                if st.weight.shape != (st.x_mean.shape[0], st.basis.shape[0]) or st.offset.shape != stages[0].offset.shape:
                    raise ValueError("inconsistent tensor shapes")
            refiner = cls(stages, meta.get("report"))
        except (OSError, ValueError, KeyError, SafetensorError) as exc:
            raise MissingWeights(f"{folder}: unreadable landmark refiner ({exc})") from None
        return refiner


def fit_refiner(crops: np.ndarray, points: np.ndarray, truth: np.ndarray, rank: int = 80, lam: float = 1e4,
                stages: int = 2, groups: np.ndarray | None = None, folds: int = 4,
                shape_gain: float = 0.0) -> tuple[LandmarkRefiner, dict]:
    """Closed-form refiner cascade from grey crops (N, S, S), current points and true points (N, L, 2), crop pixels.

    Each stage projects the remaining offsets (truth - points) on their top `rank` principal directions and
    regresses them with a ridge `lam` on the standardised descriptors read at the points (dual form: N x N, cheap
    for N << F). A stage is fitted to what the previous one does on crops it has *not* seen: `folds`-fold
    cross-fitted outputs (folds by `groups`, e.g. the head id, so one head's views stay together), since on its
    own training crops a ridge over ~30k descriptors is nearly exact and the next stage would learn nothing real.
    `shape_gain` > 0 appends the current points (crop pixels) to the descriptors, standardised and scaled by it.
    """
    points, truth = np.asarray(points, np.float64), np.asarray(truth, np.float64)
    n = len(points)
    groups = np.arange(n) if groups is None else np.asarray(groups)
    fold = np.unique(groups, return_inverse=True)[1] % folds
    report = {"portraits": n, "rank": rank, "lambda": lam, "stages": stages, "shape_gain": shape_gain,
              "train_px_before": float(np.linalg.norm(points - truth, axis=2).mean()), "cross_fitted_px": []}
    current, fitted = points, []
    for k in range(stages):
        hog = np.stack([point_features(orientation_channels(c), p)
                        for c, p in zip(crops, current, strict=True)]).astype(np.float32)
        fitted.append(_fit_stage(hog, current, truth, rank, lam, shape_gain))
        if k + 1 < stages:
            moved = np.empty_like(current)
            for f in range(folds):
                out = fold == f
                if out.all() or not out.any():
                    raise ValueError(f"cross-fitting needs at least {folds} groups")
                stage = _fit_stage(hog[~out], current[~out], truth[~out], rank, lam, shape_gain)
                moved[out] = stage.step(hog[out], current[out])
            current = moved
            report["cross_fitted_px"].append(float(np.linalg.norm(current - truth, axis=2).mean()))
        del hog
    refiner = LandmarkRefiner(fitted, report)
    report["train_px_after"] = float(np.linalg.norm(refiner.refine_crop_points(crops[:200], points[:200])
                                                    - truth[:200], axis=2).mean())  # a sample: in-sample, optimistic
    return refiner, report


def _fit_stage(hog: np.ndarray, points: np.ndarray, truth: np.ndarray, rank: int, lam: float,
               shape_gain: float = 0.0) -> RefinerStage:
    """One ridge stage on descriptors (N, F) (and, with shape_gain > 0, the points appended: RefinerStage.step)."""
    n = len(points)
    feats = np.concatenate([hog, points.reshape(n, -1).astype(np.float32)], 1) if shape_gain > 0 else hog
    x_mean, x_std = feats.mean(0), feats.std(0) + 1e-6
    if shape_gain > 0:
        x_std[hog.shape[1]:] /= shape_gain
    xn = (feats - x_mean) / x_std
    y = (truth - points).reshape(n, -1)
    offset = y.mean(0)
    _, _, vt = np.linalg.svd(y - offset, full_matrices=False)
    basis = vt[: min(rank, len(vt))]
    coeffs = ((y - offset) @ basis.T).astype(np.float32)
    alpha = np.linalg.solve(xn @ xn.T + np.float32(lam) * np.eye(n, dtype=np.float32), coeffs)
    return RefinerStage(x_mean, x_std, xn.T @ alpha, basis, offset)
