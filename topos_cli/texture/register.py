"""Register a photo to a head that fits it only roughly: a smooth 2D warp of the photo from face landmarks.

Where the head is off (a landmark-fitted mesh), a texel's projection lands a few pixels beside the photo's feature
it belongs to. The detected landmarks (mediapipe's 478) and the same landmarks on the head (the template's
landmark map: triangle + barycentrics), projected through the camera, give that offset at ~470 points;
a smoothing thin-plate spline through them (affine part included) is the displacement field, evaluated on a
coarse grid and sampled bilinearly: each texel samples the photo at `pixel + field(pixel)`.

Landmarks the head hides from the camera (the far cheek's contour on a turned face: mediapipe guesses them) and
those the map marks unreliable are left out; offsets are shrunk toward zero by the landmark noise level
(`NOISE_PX`), so a head that already fits is not disturbed by detector jitter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GRID_PX = 8  # the field is smooth: evaluated every 8 photo pixels, bilinear in between
MIN_RELIABILITY = 0.3  # landmarks the template's map weighs below this (inner lips, jaw contour) are not used
NOISE_FRACTION = 0.02  # detector jitter, as a fraction of the eye distance (~2-3 px on a 130 px face)
SMOOTHING = 1.0  # thin-plate smoothing relative to the landmark count (an interpolating spline follows jitter)
MAX_SHIFT_FRACTION = 0.15  # offsets beyond this fraction of the eye distance are a detector failure: no warp
DEPTH_SLACK_CM = 0.5  # a landmark is visible when within this of the head's depth pass at its pixel
MIN_LANDMARKS = 20  # fewer usable landmarks than this: no warp
EYE_OUTER = (33, 263)  # mediapipe indices of the outer eye corners (the face's scale)


@dataclass
class PhotoWarp:
    """A displacement field of photo pixels (x right, y down): sample at `pixel + field(pixel)`.

    Attributes:
        field: (GH, GW, 2) float32 displacement (pixels) at grid nodes `(i * step, j * step)`.
        step: grid spacing in pixels.
        used: landmarks that set it.
        shift_px: median |offset| over the used landmarks, before shrinking.
    """

    field: np.ndarray
    step: float
    used: int
    shift_px: float

    def apply(self, pix: np.ndarray) -> np.ndarray:
        """(N, 2) pixel positions (pixel centres at +0.5) moved by the field."""
        from scipy import ndimage

        coords = np.stack([(pix[:, 1] - 0.5) / self.step, (pix[:, 0] - 0.5) / self.step])  # (2, N) grid row, col
        disp = [ndimage.map_coordinates(self.field[..., c], coords, order=1, mode="nearest") for c in range(2)]
        return pix + np.stack(disp, 1)


def landmark_points(verts: np.ndarray, faces: np.ndarray, triangles: np.ndarray,
                    barycentrics: np.ndarray) -> np.ndarray:
    """(L, 3) landmark positions on a head from the template's landmark map (triangle + barycentrics)."""
    corners = np.asarray(verts, np.float64)[np.asarray(faces)[np.asarray(triangles)]]  # (L, 3, 3)
    return np.einsum("lk,lkc->lc", np.asarray(barycentrics, np.float64), corners)


def landmark_warp(detected: np.ndarray, points: np.ndarray, reliability: np.ndarray, camera,
                  depth: np.ndarray) -> PhotoWarp | None:
    """The photo warp that moves the head's projected landmarks onto the detected ones (None: nothing to do).

    Args:
        detected: (L, 2) landmarks found in the photo (pixels, x right, y down).
        points: (L, 3) the same landmarks on the posed head (`landmark_points`), world cm.
        reliability: (L,) the landmark map's weight per landmark in [0, 1].
        camera: the photo's camera (its size is the photo's). depth: (H, W) the head's depth pass.
    """
    from scipy.interpolate import RBFInterpolator

    pix, z = camera.project(points)
    h, w = depth.shape
    col = np.clip(np.floor(pix[:, 0]).astype(int), 0, w - 1)
    row = np.clip(np.floor(pix[:, 1]).astype(int), 0, h - 1)
    d = depth[row, col]
    visible = (d > 0) & (z <= d + DEPTH_SLACK_CM)
    use = visible & (np.asarray(reliability) >= MIN_RELIABILITY) & np.isfinite(detected).all(1)
    if use.sum() < MIN_LANDMARKS:
        return None
    eye = float(np.linalg.norm(detected[EYE_OUTER[0]] - detected[EYE_OUTER[1]]))
    offset = (np.asarray(detected, np.float64) - pix)[use]
    size = np.linalg.norm(offset, axis=1)
    shift = float(np.median(size))
    if shift > MAX_SHIFT_FRACTION * eye:
        return None
    noise = NOISE_FRACTION * eye
    offset *= (size ** 2 / (size ** 2 + noise ** 2))[:, None]  # shrink jitter-sized offsets toward zero
    spline = RBFInterpolator(pix[use], offset, kernel="thin_plate_spline", smoothing=SMOOTHING * use.sum(),
                             degree=1)
    gy, gx = np.mgrid[0:h + GRID_PX:GRID_PX, 0:w + GRID_PX:GRID_PX].astype(np.float64)
    nodes = np.stack([gx.ravel() + 0.5, gy.ravel() + 0.5], 1)
    field = spline(nodes).reshape(*gx.shape, 2).astype(np.float32)
    return PhotoWarp(field, float(GRID_PX), int(use.sum()), shift)

