"""The face crop TOPOS-DiT sees: a similarity-normalised square around the face, from the 478 face-mesh landmarks.

One function, used identically when the training data are built and at inference. The similarity is fixed by
the eye centres and the mouth centre (rotation by the eye line, scale by eye distance and eye-to-mouth
distance, centre between eyes and mouth), so the same face lands in the same place whatever the framing,
roll and resolution of the photo. Landmarks are mapped into the crop's normalised frame ([-1, 1]^2, +x right,
+y down; z scaled like x and y) for the landmark condition.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CROP_SIZE = 128  # pixels: the face fills ~100 px, enough for the shape cues a small CNN can use on CPU
# mediapipe face-mesh indices (canonical face-mesh topology): eye corners and mouth corners
RIGHT_EYE = (33, 133)  # the subject's right eye (image left)
LEFT_EYE = (362, 263)
MOUTH = (61, 291)
# crop half-size: max of eye distance x EYE_SCALE and eye-to-mouth distance x MOUTH_SCALE (whole face, chin and
# brow inside, a little background around the cheeks)
EYE_SCALE = 2.0
MOUTH_SCALE = 1.8
CENTER_SHIFT = 0.1  # the crop centre moves this fraction of eye-to-mouth from the eyes toward the mouth


@dataclass
class FaceCrop:
    """A face crop and the similarity that made it.

    Attributes:
        image: (S, S, 3) uint8 crop.
        matrix: (2, 3) float64 affine map from image pixels to crop pixels (a similarity).
    """

    image: np.ndarray
    matrix: np.ndarray

    @property
    def scale(self) -> float:
        """Crop pixels per image pixel."""
        return float(np.hypot(self.matrix[0, 0], self.matrix[0, 1]))

    def normalize_landmarks(self, landmarks: np.ndarray) -> np.ndarray:
        """(L, 2|3) image-pixel landmarks (z in pixel-like units, as the face mesh gives) -> crop frame [-1, 1].

        z is scaled like x and y (no offset), so the result is invariant to the photo's framing.
        """
        pts = np.asarray(landmarks, np.float64)
        half = self.image.shape[0] / 2.0
        xy = pts[:, :2] @ self.matrix[:, :2].T + self.matrix[:, 2]
        out = [(xy - half) / half]
        if pts.shape[1] > 2:
            out.append(pts[:, 2:3] * self.scale / half)
        return np.concatenate(out, 1).astype(np.float32)


def crop_similarity(landmarks: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """(2, 3) image->crop similarity from (478, 2+) landmarks in pixels."""
    pts = np.asarray(landmarks, np.float64)[:, :2]
    eye_r, eye_l = pts[list(RIGHT_EYE)].mean(0), pts[list(LEFT_EYE)].mean(0)
    mouth = pts[list(MOUTH)].mean(0)
    eyes = (eye_r + eye_l) / 2
    eye_vec, down = eye_l - eye_r, mouth - eyes
    # x axis along the eye line, tilted so that it is also perpendicular to the eye-to-mouth direction
    axis = eye_vec - np.array([-down[1], down[0]])
    axis /= max(np.linalg.norm(axis), 1e-9)
    half = max(np.linalg.norm(eye_vec) * EYE_SCALE, np.linalg.norm(down) * MOUTH_SCALE)
    center = eyes + CENTER_SHIFT * down
    scale = (size / 2.0) / max(half, 1e-6)
    rot = np.array([[axis[0], axis[1]], [-axis[1], axis[0]]])
    lin = scale * rot
    return np.concatenate([lin, (size / 2.0 - lin @ center)[:, None]], 1)


def face_crop(image: np.ndarray, landmarks: np.ndarray, size: int = CROP_SIZE) -> FaceCrop:
    """The normalised face crop of an RGB image.

    Args:
        image: (H, W, 3) uint8 RGB (any size).
        landmarks: (478, 2+) face-mesh landmarks in pixels of `image`.
        size: crop side in pixels.
    Returns:
        FaceCrop with the (size, size, 3) uint8 crop (bilinear, edges replicated) and the similarity.
    """
    import cv2

    matrix = crop_similarity(landmarks, size)
    src = np.ascontiguousarray(image[..., :3])
    shrink = int(1.0 / max(np.hypot(*matrix[0, :2]), 1e-9) // 2)  # area-downsample big photos first (no aliasing)
    warp = matrix.copy()
    if shrink >= 2:
        height, width = src.shape[:2]
        src = cv2.resize(src, (max(1, width // shrink), max(1, height // shrink)), interpolation=cv2.INTER_AREA)
        warp[:, :2] *= shrink * np.array([width / (width // shrink * shrink), height / (height // shrink * shrink)])
    crop = cv2.warpAffine(src, warp, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return FaceCrop(image=crop, matrix=matrix)
