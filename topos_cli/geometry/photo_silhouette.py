"""Silhouette term of the photo fit: the head's occluding contour should lie on the outline of a person mask.

The mask (a person segmentation of the photo) becomes a signed distance field D (pixels, > 0 outside). At the
current fit, candidate vertices (the caller's choice; generate-geo uses the neck, whose width nothing else in a
portrait shows; never the scalp or the forehead, which hair hides in photos) whose normal is perpendicular to the
view ray and which project within SNAP_EYES eye distances of the mask's outline, with the normal pointing out of
the mask, are contour points; each gives the residual D(pi(X)) / unit, with the exact Jacobian
grad D . dpi/dX . dX/dparams. Points far from the outline (a neck under long hair, a collar well below the jaw)
are left out, so hair and clothing do not pull the head.
Pure numpy; the caller supplies the mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONTOUR_COS = 0.12  # |n . view| below this: the vertex is on the occluding contour (~7 deg from grazing)
SNAP_EYES = 0.08  # contour points farther than this (x the eye distance, ~5 px) from the outline are ignored


@dataclass
class SilhouetteTarget:
    """A photo's person mask as a signed distance field.

    Attributes:
        distance: (H, W) float64 pixels to the mask outline, > 0 outside the mask, < 0 inside.
        grad_x, grad_y: (H, W) its derivatives along x (columns) and y (rows).
    """

    distance: np.ndarray
    grad_x: np.ndarray
    grad_y: np.ndarray


def silhouette_target(mask: np.ndarray) -> SilhouetteTarget:
    """Signed distance field of a boolean (H, W) mask (pixel centres at +0.5, as `render/camera.py`)."""
    from scipy import ndimage

    mask = np.asarray(mask, bool)
    dist = ndimage.distance_transform_edt(~mask) - ndimage.distance_transform_edt(mask)
    gy, gx = np.gradient(dist)
    return SilhouetteTarget(dist.astype(np.float64), gx, gy)


def sample(field: np.ndarray, pix: np.ndarray) -> np.ndarray:
    """Bilinear samples (N,) of an (H, W) field at continuous pixel positions (N, 2) (clamped to the image)."""
    h, w = field.shape
    x = np.clip(pix[:, 0] - 0.5, 0, w - 1.001)
    y = np.clip(pix[:, 1] - 0.5, 0, h - 1.001)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    top = field[y0, x0] * (1 - fx) + field[y0, x0 + 1] * fx
    bottom = field[y0 + 1, x0] * (1 - fx) + field[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def contour_points(cam_points: np.ndarray, cam_normals: np.ndarray, pix: np.ndarray, target: SilhouetteTarget,
                   unit: float) -> np.ndarray:
    """Indices of candidate points on the occluding contour near the mask outline, normal pointing outwards.

    Args:
        cam_points: (S, 3) camera-frame positions. cam_normals: (S, 3) camera-frame unit normals.
        pix: (S, 2) their projections. unit: pixels per residual unit (the eye distance).
    """
    view = cam_points / np.linalg.norm(cam_points, axis=1, keepdims=True)
    grazing = np.abs((cam_normals * view).sum(1)) < CONTOUR_COS
    near = np.abs(sample(target.distance, pix)) < SNAP_EYES * unit
    grad = np.stack([sample(target.grad_x, pix), sample(target.grad_y, pix)], 1)
    normal_2d = cam_normals[:, :2]  # image x right, y down = camera x, y
    outward = (grad * normal_2d).sum(1) > 0
    return np.flatnonzero(grazing & near & outward)
