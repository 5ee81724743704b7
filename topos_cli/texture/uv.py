"""A mesh rasterized in its own UV space, and the template's UV mirror map.

`rasterize_uv` gives, per covered texel, the triangle and barycentric coordinates (torch rasterizer, the same
one `render/unwrap.py` and `render/textures.build_atlas` use), so any per-vertex or per-corner attribute can be
interpolated into the texture: positions and normals of a posed head, the mirror map below, region masks.
Textures follow the renderer's convention: square, row 0 = v 1, texel centres at +0.5.

The mirror map sends each texel to the texel of its mirror point (x -> -x) on the head. It is derived from the
template's vertex symmetry, once per (template, size): each polygon's mirror polygon is the one made of the
mirrored vertices, so each corner of a triangle gets the UV of its mirror vertex *inside the mirror polygon*
(never a UV copy across a seam), and interpolating those per-corner UVs with the texel's barycentrics lands on
the mirror point in the mirror chart. Polygons whose mirror is not a polygon of the mesh map nowhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

UV_NEAR, UV_FAR = 0.5, 1.5  # the UV-space "camera" puts every triangle at w = 1: any range around 1 keeps them


@dataclass
class UVRaster:
    """Covered texels of a UV layout, packed.

    Attributes:
        size: texture side in texels.
        pix: (N,) int64 flat index (row * size + col) of each covered texel.
        face: (N,) int64 triangle under each covered texel.
        bary: (N, 3) float32 barycentric coordinates of the texel centre in that triangle.
    """

    size: int
    pix: np.ndarray
    face: np.ndarray
    bary: np.ndarray

    @property
    def covered(self) -> np.ndarray:
        """(S, S) bool texels inside some UV triangle."""
        mask = np.zeros(self.size * self.size, bool)
        mask[self.pix] = True
        return mask.reshape(self.size, self.size)

    def interpolate(self, values: np.ndarray, faces: np.ndarray) -> np.ndarray:
        """(N, C) per-texel interpolation of per-vertex `values` (V, C) over `faces` (F, 3)."""
        corners = np.asarray(values)[np.asarray(faces)[self.face]]  # (N, 3, C)
        return np.einsum("nk,nkc->nc", self.bary, corners)

    def interpolate_corners(self, values: np.ndarray) -> np.ndarray:
        """(N, C) per-texel interpolation of per-corner `values` (F, 3, C)."""
        return np.einsum("nk,nkc->nc", self.bary, np.asarray(values)[self.face])

    def image(self, packed: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """(S, S[, C]) texture from packed (N[, C]) texel values; `fill` elsewhere."""
        packed = np.asarray(packed)
        out = np.full((self.size * self.size, *packed.shape[1:]), fill, packed.dtype)
        out[self.pix] = packed
        return out.reshape(self.size, self.size, *packed.shape[1:])

    def texel_uv(self) -> np.ndarray:
        """(N, 2) UV coordinates of the covered texel centres."""
        row, col = np.divmod(self.pix, self.size)
        return np.stack([(col + 0.5) / self.size, 1 - (row + 0.5) / self.size], 1)


def rasterize_uv(uv: np.ndarray, uv_faces: np.ndarray, size: int, backend: str = "auto") -> UVRaster:
    """Rasterize a UV layout: which triangle covers each texel centre, with barycentrics.

    Args:
        uv: (T, 2) texture coordinates in [0, 1]. uv_faces: (F, 3) corner indices into `uv`.
        size: texture side in texels.
        backend: "gl" (EGL, ~4x faster at 1024²), "torch", or "auto" (gl when a context can be made).
            Both cover the same texel centres except ties on shared edges.
    """
    from topos_cli.render.raster_gl import gl_available

    uv = np.asarray(uv, np.float32)
    uv_faces = np.asarray(uv_faces, np.int64)
    if backend == "gl" or (backend == "auto" and gl_available()):
        return _rasterize_uv_gl(uv, uv_faces, size)
    from topos_cli.render import raster_torch as rt

    uvt = torch.as_tensor(uv)
    clip = torch.cat([uvt * 2 - 1, torch.zeros_like(uvt[:, :1]), torch.ones_like(uvt[:, :1])], 1)[None]
    uvf = torch.as_tensor(uv_faces)
    frags = rt.rasterize(clip, uvf, size, size, near=UV_NEAR, far=UV_FAR)
    bary = rt.barycentrics(clip, uvf, frags)
    return UVRaster(size, frags.pix.numpy(), frags.face.numpy(), bary.detach().numpy().astype(np.float32))


def _rasterize_uv_gl(uv: np.ndarray, uv_faces: np.ndarray, size: int) -> UVRaster:
    """UV rasterization on the GL rasterizer: UV vertices placed at (u, 1 - v, 1) in front of a pinhole camera
    with f = size and the principal point at the corner, so every triangle is at depth 1 and pixel = uv texel."""
    from topos_cli.render.camera import Camera

    flat = np.concatenate([uv[:, :1], 1 - uv[:, 1:2], np.ones((len(uv), 1), np.float32)], 1)
    cam = Camera(size, size, float(size), float(size), 0.0, 0.0, near=UV_NEAR, far=UV_FAR)
    gb = _gl_rasterizer().rasterize(flat, uv_faces, cam, passes=("face_id", "bary"), packed=True)
    order = np.argsort(gb["pix"], kind="stable")
    return UVRaster(size, gb["pix"][order], gb["face_id"][order], gb["bary"][order])


@lru_cache(maxsize=1)
def _gl_rasterizer():
    """One GL rasterizer per process (its compiled programs and buffers are reused)."""
    from topos_cli.render.raster_gl import GLRasterizer

    return GLRasterizer()


@lru_cache(maxsize=4)
def template_raster(template, size: int) -> UVRaster:
    """`rasterize_uv` of a template's layout, once per (template, size) and process."""
    return rasterize_uv(template.uv, template.uv_faces, size)


# ----------------------------------------------------------------------------- mirror map

def mirror_corner_uv(faces: np.ndarray, uv_faces: np.ndarray, uv: np.ndarray, symmetry: np.ndarray,
                     owner: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-corner UVs of each corner's mirror vertex inside the mirror polygon.

    Args:
        faces: (F, 3) triangles. uv_faces: (F, 3) their corner UV indices. uv: (T, 2).
        symmetry: (V,) mirror partner of each vertex.
        owner: (F,) polygon of each triangle (fan-triangulated polygons), or None (each triangle its own).

    Returns:
        corner_uv: (F, 3, 2) float32 mirror UVs; valid: (F,) bool triangles whose mirror polygon exists.
    """
    faces, uv_faces = np.asarray(faces, np.int64), np.asarray(uv_faces, np.int64)
    owner = np.arange(len(faces)) if owner is None else np.asarray(owner, np.int64)
    corner_uv_index: dict[tuple[int, int], int] = {}  # (polygon, vertex) -> uv index inside that polygon
    for f, p in enumerate(owner.tolist()):
        for v, t in zip(faces[f].tolist(), uv_faces[f].tolist(), strict=True):
            corner_uv_index[(p, v)] = t
    poly_verts: dict[int, set] = {}
    for f, p in enumerate(owner.tolist()):
        poly_verts.setdefault(p, set()).update(faces[f].tolist())
    by_set = {frozenset(vs): p for p, vs in poly_verts.items()}
    mirror_poly = {p: by_set.get(frozenset(int(symmetry[v]) for v in vs), -1) for p, vs in poly_verts.items()}
    sym = np.asarray(symmetry, np.int64)
    out = np.zeros((len(faces), 3, 2), np.float32)
    valid = np.zeros(len(faces), bool)
    for f, p in enumerate(owner.tolist()):
        q = mirror_poly[p]
        if q < 0:
            continue
        out[f] = np.asarray(uv)[[corner_uv_index[(q, int(sym[v]))] for v in faces[f].tolist()]]
        valid[f] = True
    return out, valid


@dataclass
class MirrorMap:
    """Texel -> mirror texel of a UV layout (see the module docstring).

    Attributes:
        index: (N,) int64 flat texel index of each covered texel's mirror (-1: none or not covered).
    """

    index: np.ndarray


@lru_cache(maxsize=4)
def template_mirror(template, size: int) -> MirrorMap:
    """The template's mirror map at `size`, derived once per process (≈ 0.1 s at 1024²)."""
    from topos_cli.template import triangulate_polys

    raster = template_raster(template, size)
    owner = triangulate_polys(template.polys)[1] if template.polys is not None else None
    corner_uv, valid = mirror_corner_uv(template.faces, template.uv_faces, template.uv, template.symmetry, owner)
    muv = raster.interpolate_corners(corner_uv)
    col = np.clip(np.floor(muv[:, 0] * size), 0, size - 1).astype(np.int64)
    row = np.clip(np.floor((1 - muv[:, 1]) * size), 0, size - 1).astype(np.int64)
    target = row * size + col
    covered = raster.covered.reshape(-1)
    index = np.where(valid[raster.face] & covered[target], target, -1)
    return MirrorMap(index)
