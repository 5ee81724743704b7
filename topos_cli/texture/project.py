"""Project texels through a photo's camera: visibility (z-buffer, view cosine, inside the image) and
interpolated colour samples. The per-texel surface comes from `uv.UVRaster.interpolate` of the posed mesh."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from topos_cli.render.camera import Camera

DEPTH_TOLERANCE_CM = 0.5  # a texel is on the visible surface when within 5 mm of the depth pass (prototype)
DEPTH_FOOTPRINTS = 2.0  # ... plus two pixel footprints, so steep surfaces at low resolution are not lost
MIN_VIEW_COS = 0.25  # grazing texels (n.v below this) smear the photo over the surface: not seen
FULL_VIEW_COS = 0.75  # from this view cosine on a texel's sample gets full weight (smoothstep in between); below it
# a texel blends with its mirror texel: on 12 held-out synthetic heads, on the same texels, 0.6 -> 0.75 took
# photo/mirrored MAE 0.0120/0.0169 -> 0.0117/0.0165 (foreshortened samples are blurrier and shaded less surely)
INTERPOLATION = "cubic"  # photo sampling: bicubic keeps more of the photo's detail than bilinear (photo-texel MAE
# 0.0124 -> 0.0121 on 12 held-out heads); "linear" and "lanczos" are the alternatives


@dataclass
class TexelProjection:
    """What a photo says about each covered texel.

    Attributes:
        colour: (N, 3) float32 samples (INTERPOLATION) of the photo (its own colour space).
        weight: (N,) float32 confidence in [0, 1]: smoothstep of the view cosine, 0 where not visible.
        pixel: (N, 2) float64 photo position (col, row; pixel centres at +0.5).
    """

    colour: np.ndarray
    weight: np.ndarray
    pixel: np.ndarray

    @property
    def visible(self) -> np.ndarray:
        return self.weight > 0


def depth_map(verts: np.ndarray, faces: np.ndarray, camera: Camera, backend: str = "auto") -> np.ndarray:
    """(H, W) camera-z depth pass of a mesh (0 = background)."""
    from topos_cli.render.raster_gl import gl_available
    from topos_cli.render.renderer import Renderer, RenderMesh

    backend = ("gl" if gl_available() else "torch") if backend == "auto" else backend
    out = Renderer(backend).render(RenderMesh(np.asarray(verts, np.float32), np.asarray(faces)), camera,
                                   passes=("depth",))
    return out["depth"]


def smoothstep(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    t = np.clip((np.asarray(x, np.float64) - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def project_texels(image: np.ndarray, position: np.ndarray, normal: np.ndarray, camera: Camera,
                   depth: np.ndarray, warp=None) -> TexelProjection:
    """Sample a photo at the texels' surface points (INTERPOLATION; cv2's cubic may overshoot by a few %).

    Args:
        image: (H, W, C) float photo taken with `camera` (row 0 at the top).
        position, normal: (N, 3) texel surface points (cm) and unit normals of the posed mesh.
        camera: the photo's camera (`render/camera.py` convention).
        depth: (H, W) depth pass of the same mesh from `camera` (`depth_map`).
        warp: a `register.PhotoWarp` (where the photo's features lie relative to the head), or None: visibility
            stays the head's, colours are sampled at the warped positions.
    """
    import cv2

    pix, z = camera.project(position)
    h, w = depth.shape
    col, row = np.floor(pix[:, 0]).astype(np.int64), np.floor(pix[:, 1]).astype(np.int64)
    inside = (z > camera.near) & (col >= 0) & (col < w) & (row >= 0) & (row < h)
    d = np.where(inside, depth[np.clip(row, 0, h - 1), np.clip(col, 0, w - 1)], 0.0)
    tolerance = DEPTH_TOLERANCE_CM + DEPTH_FOOTPRINTS * z / camera.fx
    seen = inside & (d > 0) & (np.abs(z - d) <= tolerance)
    view = camera.center[None] - position
    cos = (normal * view).sum(1) / np.maximum(np.linalg.norm(view, axis=1) * np.linalg.norm(normal, axis=1), 1e-12)
    weight = np.where(seen, smoothstep(cos, MIN_VIEW_COS, FULL_VIEW_COS), 0.0).astype(np.float32)
    # cv2.remap puts pixel centres on integers and caps map rows below 32767: sample as a (rows, 4096) grid
    sample = pix if warp is None else warp.apply(pix)
    n = len(pix)
    cols = 4096
    rows = (n + cols - 1) // cols
    mx = np.full(rows * cols, -1.0, np.float32)
    my = np.full(rows * cols, -1.0, np.float32)
    mx[:n], my[:n] = sample[:, 0] - 0.5, sample[:, 1] - 0.5
    img = np.ascontiguousarray(image, np.float32)
    flag = {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "lanczos": cv2.INTER_LANCZOS4}[INTERPOLATION]
    out = cv2.remap(img, mx.reshape(rows, cols), my.reshape(rows, cols), flag,
                    borderMode=cv2.BORDER_REPLICATE)
    colour = np.maximum(out.reshape(rows * cols, -1)[:n], 0.0)  # cubic overshoot below black
    return TexelProjection(colour.astype(np.float32), weight, sample)
