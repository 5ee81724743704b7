"""View sets: framing a mesh, orbits/turntables, perturbed frontal views, cameras from JSON records.

Angles follow the head frame (+Y up, face along +Z): azimuth 0 looks at the face, positive azimuth moves the
camera towards +X (the head's left side); positive elevation moves it up.
"""

from __future__ import annotations

import math

import numpy as np

from topos_cli.errors import UsageError
from topos_cli.render.camera import Camera, from_dict, look_at


def bounding_sphere(verts: np.ndarray) -> tuple[np.ndarray, float]:
    """(centre (3,), radius) of the axis-aligned bounding box's circumscribed sphere."""
    verts = np.asarray(verts, np.float64)
    lo, hi = verts.min(0), verts.max(0)
    return (lo + hi) / 2, float(np.linalg.norm(hi - lo) / 2)


def orbit_direction(azimuth: float, elevation: float) -> np.ndarray:
    """Unit vector from the target to the camera for azimuth/elevation in degrees."""
    az, el = math.radians(azimuth), math.radians(elevation)
    return np.array([math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)])


def framed_camera(verts: np.ndarray, azimuth: float = 0.0, elevation: float = 0.0, size: int = 512,
                  fov: float = 20.0, margin: float = 1.05, roll: float = 0.0, zoom: float = 1.0,
                  shift: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> Camera:
    """A camera that fits the mesh's bounding sphere in the image.

    Args:
        verts: (V, 3) world coordinates (cm) to frame.
        azimuth, elevation, roll: degrees (see module docstring); roll turns the image clockwise.
        size: square image size in pixels.
        fov: vertical field of view in degrees.
        margin: > 1 leaves a border around the sphere.
        zoom: > 1 moves the camera closer.
        shift: (3,) cm added to the look-at target.
    """
    centre, radius = bounding_sphere(verts)
    radius = max(radius, 1e-6)
    dist = margin * radius / math.sin(math.radians(fov) / 2) / zoom
    target = centre + np.asarray(shift, np.float64)
    eye = target + dist * orbit_direction(azimuth, elevation)
    up = (0.0, 1.0, 0.0) if abs(elevation) < 89.0 else (0.0, 0.0, -math.copysign(1.0, elevation))
    cam = look_at(eye, target, up, fov=fov, width=size, near=max(dist - 2 * radius, dist * 0.05),
                  far=dist + 2 * radius)
    if roll:
        c, s = math.cos(math.radians(roll)), math.sin(math.radians(roll))
        rz = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
        cam.R, cam.t = rz @ cam.R, rz @ cam.t
    return cam


def orbit(verts: np.ndarray, count: int, elevation: float = 10.0, size: int = 512, fov: float = 20.0,
          start: float = 0.0, sweep: float = 360.0) -> list[Camera]:
    """`count` cameras evenly spaced in azimuth (a turntable when sweep is 360)."""
    if count < 1:
        raise UsageError(f"need at least one view, got {count}")
    step = sweep / count if sweep >= 360 else (sweep / max(count - 1, 1))
    return [framed_camera(verts, start + i * step, elevation, size, fov) for i in range(count)]


def perturbed_frontal(verts: np.ndarray, rng: np.random.Generator, size: int = 512, fov: float = 20.0,
                      max_azimuth: float = 15.0, max_elevation: float = 10.0, max_roll: float = 3.0,
                      zoom_range: tuple[float, float] = (0.95, 1.1)) -> tuple[Camera, dict]:
    """A frontal camera with a small random perturbation (the generation models' training views).

    Returns:
        camera and the drawn parameters (degrees, zoom, fov) for the manifest.
    """
    _, radius = bounding_sphere(verts)
    params = {
        "azimuth": float(rng.uniform(-max_azimuth, max_azimuth)),
        "elevation": float(rng.uniform(-max_elevation, max_elevation)),
        "roll": float(rng.uniform(-max_roll, max_roll)),
        "zoom": float(rng.uniform(*zoom_range)),
        "fov": float(fov * rng.uniform(0.85, 1.15)),
    }
    shift = (rng.normal(0, 0.02 * radius, 3)).tolist()
    params["shift"] = shift
    cam = framed_camera(verts, params["azimuth"], params["elevation"], size, params["fov"],
                        roll=params["roll"], zoom=params["zoom"], shift=shift)
    return cam, params


def cameras_from_json(data, size: int | None = None) -> list[Camera]:
    """Cameras from parsed JSON: one record, a list of records, or {"cameras": [...]} (see camera.from_dict)."""
    if isinstance(data, dict) and "cameras" in data:
        data = data["cameras"]
    records = data if isinstance(data, list) else [data]
    if not records or not all(isinstance(r, dict) for r in records):
        raise UsageError("camera JSON must be an object, a list of objects, or {\"cameras\": [...]}")
    return [_longer_side(from_dict(r), size) for r in records]


def _longer_side(cam: Camera, size: int | None) -> Camera:
    """`cam` scaled so its longer side is `size` pixels, keeping the record's aspect ratio (a 600x800 photo's
    camera stays 3:4, so a render with it overlays the photo)."""
    if not size or max(cam.width, cam.height) == size:
        return cam
    scale = size / max(cam.width, cam.height)
    return cam.resized(max(1, round(cam.width * scale)), max(1, round(cam.height * scale)))
