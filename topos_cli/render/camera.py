"""Pinhole cameras with one written convention (README "Cameras").

World frame: the template's frame, centimetres, +Y up, the face looks down +Z, +X is the head's left.

A `Camera` stores OpenCV-style parameters:

* extrinsics `R (3,3)`, `t (3,)` map world to camera: `x_cam = R @ x_world + t`; camera axes are
  x right, y down, z forward (into the scene), so visible points have z > 0;
* intrinsics `fx, fy, cx, cy` in pixels, image origin at the top-left corner of the top-left pixel,
  +x right, +y down; pixel (col, row) has its centre at (col + 0.5, row + 0.5).  OpenCV puts pixel
  centres on integers, so OpenCV's principal point is `cx - 0.5, cy - 0.5` (`to_opencv` / `from_opencv`).

Images everywhere in topos have row 0 at the top. OpenGL's bottom-left origin and its y-up / z-backward eye
frame exist only inside `clip_matrix` and `raster_gl.py`. Depth passes hold camera z (cm along the optical
axis), not distance to the eye and not GL's non-linear depth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from topos_cli.errors import UsageError


@dataclass
class Camera:
    """A pinhole camera (see module docstring for the convention).

    Attributes:
        width, height: image size in pixels.
        fx, fy, cx, cy: intrinsics in pixels (top-left origin, pixel centres at +0.5).
        R: (3, 3) float64 world-to-camera rotation (OpenCV axes: x right, y down, z forward).
        t: (3,) float64 world-to-camera translation (cm).
        near, far: clipping distances along camera z (cm).
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    R: np.ndarray = field(default_factory=lambda: np.eye(3))
    t: np.ndarray = field(default_factory=lambda: np.zeros(3))
    near: float = 1.0
    far: float = 1000.0

    @property
    def center(self) -> np.ndarray:
        """(3,) camera position in world coordinates (cm)."""
        return -np.asarray(self.R).T @ np.asarray(self.t)

    @property
    def K(self) -> np.ndarray:
        """(3, 3) intrinsic matrix in this module's pixel convention (centres at +0.5)."""
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1.0]])

    def world_to_camera(self) -> np.ndarray:
        """(4, 4) world-to-camera matrix (OpenCV axes)."""
        m = np.eye(4)
        m[:3, :3], m[:3, 3] = self.R, self.t
        return m

    def projection(self) -> np.ndarray:
        """(4, 4) camera (OpenCV axes) to GL clip space, with image row 0 at the top (NDC y = +1).

        NDC x = 2 u / W - 1 and NDC y = 1 - 2 v / H for pixel coordinates (u, v); w_clip = camera z;
        NDC z maps [near, far] to [-1, 1].
        """
        w, h, n, f = self.width, self.height, self.near, self.far
        return np.array([
            [2 * self.fx / w, 0, 2 * self.cx / w - 1, 0],
            [0, -2 * self.fy / h, 1 - 2 * self.cy / h, 0],
            [0, 0, (f + n) / (f - n), -2 * f * n / (f - n)],
            [0, 0, 1, 0],
        ])

    def clip_matrix(self) -> np.ndarray:
        """(4, 4) world to clip space: `projection() @ world_to_camera()`."""
        return self.projection() @ self.world_to_camera()

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project world points to pixels.

        Args:
            points: (N, 3) world coordinates (cm).

        Returns:
            pixels: (N, 2) float64 (u right, v down; pixel centres at +0.5).
            depth: (N,) float64 camera z (cm); <= 0 means behind the camera.
        """
        cam = np.asarray(points, np.float64) @ np.asarray(self.R).T + self.t
        z = cam[:, 2]
        safe = np.where(np.abs(z) < 1e-12, 1e-12, z)
        pix = np.stack([self.fx * cam[:, 0] / safe + self.cx, self.fy * cam[:, 1] / safe + self.cy], 1)
        return pix, z

    def to_dict(self) -> dict:
        """Plain data for manifests and camera JSON files (the format `from_dict` reads)."""
        return {"convention": "opencv", "width": int(self.width), "height": int(self.height),
                "fx": float(self.fx), "fy": float(self.fy), "cx": float(self.cx), "cy": float(self.cy),
                "R": np.asarray(self.R, float).round(10).tolist(), "t": np.asarray(self.t, float).round(10).tolist(),
                "near": float(self.near), "far": float(self.far), "center": self.center.round(10).tolist()}

    def resized(self, width: int, height: int) -> Camera:
        """The same view at another resolution (intrinsics scaled)."""
        sx, sy = width / self.width, height / self.height
        return Camera(width, height, self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy,
                      np.array(self.R), np.array(self.t), self.near, self.far)


def from_dict(data: dict, width: int | None = None, height: int | None = None) -> Camera:
    """Build a camera from `Camera.to_dict()` output or a hand-written JSON record.

    Accepted keys: `width`, `height`, intrinsics as `fx, fy, cx, cy` or `K` (3x3) or `fov` (vertical degrees),
    extrinsics as `R`+`t` (world to camera) or `eye`+`target` (+ optional `up`, default +Y).
    `"convention": "opengl"` means `R`/`t` map to a y-up, z-backward eye frame (converted here);
    `"pixel_centers": "integer"` means OpenCV-style intrinsics (converted by +0.5).
    """
    try:
        w = int(data.get("width", width or 512))
        h = int(data.get("height", height or w))
        near, far = float(data.get("near", 1.0)), float(data.get("far", 1000.0))
        if "eye" in data:
            cam = look_at(data["eye"], data.get("target", (0, 0, 0)), data.get("up", (0, 1, 0)),
                          fov=float(data.get("fov", 20.0)), width=w, height=h, near=near, far=far)
        else:
            R, t = np.asarray(data["R"], float).reshape(3, 3), np.asarray(data["t"], float).reshape(3)
            if data.get("convention", "opencv").lower() == "opengl":
                flip = np.diag([1.0, -1.0, -1.0])
                R, t = flip @ R, flip @ t
            cam = Camera(w, h, *_intrinsics(data, w, h), R=R, t=t, near=near, far=far)
        if "K" in data or "fx" in data:
            cam.fx, cam.fy, cam.cx, cam.cy = _intrinsics(data, w, h)
        if str(data.get("pixel_centers", "half")).lower() == "integer":
            cam.cx, cam.cy = cam.cx + 0.5, cam.cy + 0.5
        if width and (width, height or width) != (w, h):
            cam = cam.resized(int(width), int(height or width))
        return cam
    except (KeyError, ValueError, TypeError) as exc:
        raise UsageError(f"bad camera record ({exc!s}); give width, height, fx/fy/cx/cy or fov, and R+t or eye") \
            from None


def _intrinsics(data: dict, w: int, h: int) -> tuple[float, float, float, float]:
    if "K" in data:
        K = np.asarray(data["K"], float).reshape(3, 3)
        return float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])
    if "fx" in data:
        return (float(data["fx"]), float(data.get("fy", data["fx"])), float(data.get("cx", w / 2)),
                float(data.get("cy", h / 2)))
    f = focal_from_fov(float(data.get("fov", 20.0)), h)
    return f, f, w / 2, h / 2


def focal_from_fov(fov_deg: float, size: int) -> float:
    """Focal length in pixels for a field of view (degrees) across `size` pixels."""
    if not 0 < fov_deg < 180:
        raise UsageError(f"field of view must be in (0, 180) degrees, got {fov_deg}")
    return 0.5 * size / math.tan(math.radians(fov_deg) / 2)


def look_at(eye, target=(0.0, 0.0, 0.0), up=(0.0, 1.0, 0.0), fov: float = 20.0, width: int = 512,
            height: int | None = None, near: float | None = None, far: float | None = None) -> Camera:
    """A camera at `eye` looking at `target` with `up` pointing up in the image.

    Args:
        eye, target, up: 3-vectors in world coordinates (cm).
        fov: vertical field of view in degrees.
        width, height: image size in pixels (height defaults to width).
        near, far: clip distances (cm); default to a range around the target that fits a head.
    """
    height = height or width
    eye, target, up = (np.asarray(a, np.float64) for a in (eye, target, up))
    forward = target - eye
    dist = float(np.linalg.norm(forward))
    if dist < 1e-9:
        raise UsageError("camera eye and target coincide; move the eye away from the target")
    z = forward / dist
    x = np.cross(z, up)  # right = forward x up; then y = forward x right points down (OpenCV)
    if np.linalg.norm(x) < 1e-9:
        x = np.cross(z, np.array([0.0, 0.0, -1.0]) if abs(z[1]) > 0.9 else -up)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    f = focal_from_fov(fov, height)
    near = near if near is not None else max(dist * 0.05, 0.1)
    far = far if far is not None else dist * 4 + 100.0
    return Camera(width, height, f, f, width / 2, height / 2, R=R, t=-R @ eye, near=near, far=far)
