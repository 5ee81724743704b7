"""Unwrap a picture of a mesh into its UV space (the inverse of texturing): what `generate-tex` and
`metrics --images` build on.

For every texel: its surface point (rasterizing the mesh in UV space), the point's pixel in the picture
(the camera), whether the camera sees it (depth test against a depth render of the same mesh), and a
confidence weight (cosine between surface normal and view direction, so grazing texels count little).
Colour sampling is bilinear and differentiable w.r.t. the image (torch).
"""

from __future__ import annotations

import numpy as np
import torch

from topos_cli.render.camera import Camera


def unwrap(image: torch.Tensor, verts: np.ndarray, faces: np.ndarray, uv: np.ndarray, uv_faces: np.ndarray,
           camera: Camera, size: int = 512, depth: np.ndarray | None = None,
           tolerance: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Project a picture onto the mesh and read it back in UV space.

    Args:
        image: (H, W, C) float picture taken with `camera` (row 0 at the top).
        verts: (V, 3) mesh in the picture's pose (cm). faces: (F, 3). uv: (T, 2). uv_faces: (F, 3).
        camera: the picture's camera (`camera.py` convention).
        size: texture size in pixels.
        depth: (H, W) depth pass of the mesh from `camera` (rendered with the torch rasterizer if None).
        tolerance: depth-test slack in pixel footprints.

    Returns:
        texture: (size, size, C) colours (0 where unseen); weight: (size, size) in [0, 1] (0 = unseen).
    """
    from topos_cli.render import raster_torch as rt
    from topos_cli.render.raster_gl import _vertex_normals

    verts = np.asarray(verts, np.float32)
    faces = np.asarray(faces, np.int64)
    uvt = torch.as_tensor(np.asarray(uv), dtype=torch.float32)
    clip = torch.cat([uvt * 2 - 1, torch.zeros_like(uvt[:, :1]), torch.ones_like(uvt[:, :1])], 1)[None]
    uvf = torch.as_tensor(np.asarray(uv_faces), dtype=torch.long)
    frags = rt.rasterize(clip, uvf, size, size, near=0.5, far=1.5)
    bary = rt.barycentrics(clip, uvf, frags)
    attrs = torch.as_tensor(np.concatenate([verts, _vertex_normals(verts, faces)], 1))
    texel = rt.interpolate(attrs, torch.as_tensor(faces), frags, bary).double().numpy()  # (N, 6)
    pix, z = camera.project(texel[:, :3])
    if depth is None:
        depth = _depth(verts, faces, camera)
    col, row = np.floor(pix[:, 0]).astype(np.int64), np.floor(pix[:, 1]).astype(np.int64)
    inside = (z > camera.near) & (col >= 0) & (col < camera.width) & (row >= 0) & (row < camera.height)
    d = np.where(inside, depth[np.clip(row, 0, camera.height - 1), np.clip(col, 0, camera.width - 1)], 0)
    tol = tolerance * 4 * z / camera.fx + 1e-3 * z
    seen = inside & (d > 0) & (z <= d + tol)
    view = camera.center[None] - texel[:, :3]
    cos = (texel[:, 3:] * view).sum(1) / np.maximum(np.linalg.norm(view, axis=1) * np.linalg.norm(texel[:, 3:], axis=1),
                                                    1e-12)
    weight = np.where(seen, np.clip(cos, 0, 1), 0.0)
    grid = torch.as_tensor(np.stack([pix[:, 0] / camera.width * 2 - 1, pix[:, 1] / camera.height * 2 - 1], 1),
                           dtype=image.dtype)
    colours = torch.nn.functional.grid_sample(image.permute(2, 0, 1)[None], grid[None, None], mode="bilinear",
                                              padding_mode="border", align_corners=False)[0, :, 0].T  # (N, C)
    w = torch.as_tensor(weight, dtype=image.dtype)
    texture = rt.to_image(colours * (w > 0)[:, None], frags)[0]
    weights = rt.to_image(w[:, None], frags)[0, ..., 0]
    return texture, weights


def _depth(verts, faces, camera) -> np.ndarray:
    from topos_cli.render import raster_torch as rt

    v = torch.as_tensor(verts)
    f = torch.as_tensor(faces)
    clip = rt.to_clip(v, camera.clip_matrix().astype(np.float32))
    frags = rt.rasterize(clip, f, camera.height, camera.width, camera.near, camera.far)
    z = rt.interpolate(clip[0, :, 3:4], f, frags, rt.barycentrics(clip, f, frags))
    return rt.to_image(z, frags)[0, ..., 0].numpy()
