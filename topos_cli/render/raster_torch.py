"""Differentiable rasterizer in pure torch (CPU and CUDA), split as in nvdiffrast.

1. `rasterize` (not differentiable): which triangle covers each pixel centre, with a z-buffer. It works in
   homogeneous 2D coordinates (Olano & Greer), so triangles that cross the camera plane need no clipping:
   a pixel is covered where its interpolated camera z lies in [near, far].
2. `barycentrics` (differentiable w.r.t. clip positions): perspective-correct barycentric coordinates of
   each covered pixel, and `interpolate` (differentiable w.r.t. attributes and barycentrics).
3. `texture` (differentiable w.r.t. the texture and uv): bilinear, or trilinear over a box-filtered mip
   pyramid with the level of detail from analytic uv derivatives (for minified textures).

4. `antialias` (differentiable w.r.t. colours and positions): analytic blending across silhouette edges,
   which gives outlines (masks, contours) a gradient; without it silhouettes carry none.

Pixels follow `camera.py`: row 0 at the top, pixel centres at +0.5.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

_CHUNK_PAIRS = 1 << 22  # (triangle, pixel) candidates tested per chunk; bounds memory (~200 MB float64)


@dataclass
class Fragments:
    """Covered pixels of a batch, packed.

    Attributes:
        face_id: (B, H, W) int64 triangle index per pixel, -1 for background.
        pix: (N,) int64 flat index into B*H*W of each covered pixel.
        face: (N,) int64 triangle of each covered pixel.
        ndc: (N, 2) float32 NDC position of each covered pixel centre.
    """

    face_id: torch.Tensor
    pix: torch.Tensor
    face: torch.Tensor
    ndc: torch.Tensor

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.face_id.shape)

    @property
    def mask(self) -> torch.Tensor:
        return self.face_id >= 0


def to_clip(verts: torch.Tensor, clip_matrix) -> torch.Tensor:
    """World positions (B, V, 3) or (V, 3) to clip coordinates (B, V, 4) with a (4, 4) matrix."""
    verts = verts if verts.dim() == 3 else verts[None]
    m = torch.as_tensor(clip_matrix, dtype=torch.float32, device=verts.device).to(verts.dtype)
    homo = torch.cat([verts, torch.ones_like(verts[..., :1])], -1)  # (B, V, 4)
    return homo @ m.T


def _face_setup(clip: torch.Tensor, faces: torch.Tensor):
    """Per-face homogeneous edge vectors c_i = q_j x q_k (F, 3, 3) and determinant (F,), float64."""
    q = clip[:, [0, 1, 3]].double()[faces]  # (F, 3, 3): corners x (x, y, w)
    c = torch.stack([torch.cross(q[:, 1], q[:, 2], dim=-1), torch.cross(q[:, 2], q[:, 0], dim=-1),
                     torch.cross(q[:, 0], q[:, 1], dim=-1)], 1)  # (F, 3, 3)
    det = (q[:, 0] * c[:, 0]).sum(-1)
    return q, c, det


def _face_boxes(q: torch.Tensor, height: int, width: int, near: float):
    """Pixel bounding boxes (x0, y0, bw, bh) per face; faces crossing the near plane get the whole image."""
    w = q[..., 2]
    front = (w > near).all(1)
    wsafe = torch.where(w > 1e-12, w, torch.ones_like(w))
    px = (q[..., 0] / wsafe + 1) * 0.5 * width
    py = (1 - q[..., 1] / wsafe) * 0.5 * height
    x0 = torch.ceil(px.min(1).values - 0.5).clamp(0, width)
    x1 = torch.floor(px.max(1).values - 0.5).clamp(-1, width - 1)
    y0 = torch.ceil(py.min(1).values - 0.5).clamp(0, height)
    y1 = torch.floor(py.max(1).values - 0.5).clamp(-1, height - 1)
    partial = ~front & (w > near).any(1)
    x0, y0 = torch.where(partial, 0, x0), torch.where(partial, 0, y0)
    x1, y1 = torch.where(partial, width - 1, x1), torch.where(partial, height - 1, y1)
    bw, bh = (x1 - x0 + 1).clamp(min=0), (y1 - y0 + 1).clamp(min=0)
    keep = (front | partial)
    bw, bh = torch.where(keep, bw, 0), torch.where(keep, bh, 0)
    return x0.long(), y0.long(), bw.long(), bh.long()


@torch.no_grad()
def rasterize(clip: torch.Tensor, faces: torch.Tensor, height: int, width: int, near: float = 1e-3,
              far: float = float("inf")) -> Fragments:
    """Visible triangle per pixel centre (z-buffer on camera z; ties go to the lower triangle index).

    Args:
        clip: (B, V, 4) clip coordinates (w = camera z, as produced by `Camera.clip_matrix`).
        faces: (F, 3) int64 triangles.
        height, width: image size in pixels.
        near, far: camera-z range that is kept (cm).
    """
    clip = clip if clip.dim() == 3 else clip[None]
    faces = faces.to(clip.device).long()
    b_count, device = clip.shape[0], clip.device
    face_id = torch.full((b_count, height * width), -1, dtype=torch.long, device=device)
    for b in range(b_count):
        face_id[b] = _rasterize_one(clip[b], faces, height, width, near, far)
    face_id = face_id.view(b_count, height, width)
    pix = torch.nonzero(face_id.view(-1) >= 0).squeeze(1)
    rem = pix % (height * width)
    rows, cols = rem // width, rem % width
    ndc = torch.stack([(cols.float() + 0.5) * (2.0 / width) - 1, 1 - (rows.float() + 0.5) * (2.0 / height)], 1)
    return Fragments(face_id, pix, face_id.view(-1)[pix], ndc)


def _rasterize_one(clip, faces, height, width, near, far):
    q, c, det = _face_setup(clip, faces)
    x0, y0, bw, bh = _face_boxes(q, height, width, near)
    counts = bw * bh
    zbuf = torch.full((height * width,), float("inf"), dtype=torch.float64, device=clip.device)
    fbuf = torch.full((height * width,), -1, dtype=torch.long, device=clip.device)
    cum = torch.cumsum(counts, 0)
    start = 0
    total = int(cum[-1]) if len(cum) else 0
    while start < len(faces) and total > 0:
        base = int(cum[start - 1]) if start > 0 else 0
        stop = int(torch.searchsorted(cum, torch.tensor(base + _CHUNK_PAIRS, device=cum.device), right=True))
        stop = max(stop, start + 1)
        _raster_chunk(slice(start, stop), counts, x0, y0, bw, c, det, height, width, near, far, zbuf, fbuf)
        start = stop
    return fbuf


def _raster_chunk(sl, counts, x0, y0, bw, c, det, height, width, near, far, zbuf, fbuf):
    """Test every (triangle, pixel-in-its-box) pair of a chunk of faces and merge into the z-buffer."""
    device = counts.device
    idx = torch.arange(sl.start, sl.stop, device=device)
    n = counts[sl]
    if int(n.sum()) == 0:
        return
    face = torch.repeat_interleave(idx, n)
    offs = torch.arange(int(n.sum()), device=device) - torch.repeat_interleave(torch.cumsum(n, 0) - n, n)
    col = x0[face] + offs % bw[face]
    row = y0[face] + torch.div(offs, bw[face], rounding_mode="floor")
    px = (col.to(c.dtype) + 0.5) * (2.0 / width) - 1
    py = 1 - (row.to(c.dtype) + 0.5) * (2.0 / height)
    coef = (c * torch.sign(det)[:, None, None]).reshape(-1, 9).T.contiguous()  # (9, F), inside is e >= 0
    e0 = px * coef[0][face] + py * coef[1][face] + coef[2][face]  # edge functions as (P,) rows: faster
    e1 = px * coef[3][face] + py * coef[4][face] + coef[5][face]  # than (P, 3) reductions on a CPU
    e2 = px * coef[6][face] + py * coef[7][face] + coef[8][face]
    s = e0 + e1 + e2
    dface = det[face]
    z = dface.abs() / torch.where(s > 0, s, torch.ones_like(s))  # camera z at the pixel
    inside = (e0 >= 0) & (e1 >= 0) & (e2 >= 0) & (s > 0) & (dface != 0) & (z >= near) & (z <= far)
    pixel = (row * width + col)[inside]
    z, face = z[inside], face[inside]
    if len(pixel) == 0:
        return
    zmin = torch.full_like(zbuf, float("inf")).scatter_reduce(0, pixel, z, "amin")
    win = z == zmin[pixel]
    fmin = torch.full_like(fbuf, torch.iinfo(torch.long).max).scatter_reduce(0, pixel[win], face[win], "amin")
    better = zmin < zbuf
    zbuf[better] = zmin[better]
    fbuf[better] = fmin[better]


def barycentrics(clip: torch.Tensor, faces: torch.Tensor, frags: Fragments) -> torch.Tensor:
    """Perspective-correct barycentric coordinates (N, 3) of the covered pixels, differentiable w.r.t. clip."""
    clip = clip if clip.dim() == 3 else clip[None]
    h, w = frags.shape[1:]
    batch = torch.div(frags.pix, h * w, rounding_mode="floor")
    q = clip[..., [0, 1, 3]][batch[:, None], faces[frags.face]]  # (N, 3, 3)
    p = torch.cat([frags.ndc.to(q.dtype), torch.ones_like(frags.ndc[:, :1], dtype=q.dtype)], 1)  # (N, 3)
    c = torch.stack([torch.cross(q[:, 1], q[:, 2], dim=-1), torch.cross(q[:, 2], q[:, 0], dim=-1),
                     torch.cross(q[:, 0], q[:, 1], dim=-1)], 1)  # (N, 3, 3)
    e = (c * p[:, None]).sum(-1)  # (N, 3)
    return e / e.sum(1, keepdim=True)


def interpolate(attr: torch.Tensor, faces: torch.Tensor, frags: Fragments, bary: torch.Tensor) -> torch.Tensor:
    """Interpolate per-vertex attributes (B|1, V, C) or (V, C) with (F, 3) indices to packed (N, C)."""
    idx = faces.to(bary.device)[frags.face]  # (N, 3)
    bary = bary.to(attr.dtype)
    if attr.dim() == 2 or attr.shape[0] == 1:
        flat = attr.reshape(-1, attr.shape[-1])
        gather = [flat[idx[:, k]] for k in range(3)]  # three (N, C) gathers: cheaper than one (N, 3, C)
    else:
        h, w = frags.shape[1:]
        batch = torch.div(frags.pix, h * w, rounding_mode="floor")
        gather = [attr[batch, idx[:, k]] for k in range(3)]
    return gather[0] * bary[:, :1] + gather[1] * bary[:, 1:2] + gather[2] * bary[:, 2:3]


def to_image(packed: torch.Tensor, frags: Fragments, background: float = 0.0) -> torch.Tensor:
    """Scatter packed (N, C) values to (B, H, W, C) images (differentiable)."""
    b, h, w = frags.shape
    out = packed.new_full((b * h * w, packed.shape[1]), background)
    return out.index_put((frags.pix,), packed).view(b, h, w, packed.shape[1])


def uv_derivatives(clip: torch.Tensor, faces: torch.Tensor, uv: torch.Tensor, uv_faces: torch.Tensor,
                   frags: Fragments) -> torch.Tensor:
    """Screen derivatives (N, 4) = (du/dx, dv/dx, du/dy, dv/dy) per pixel step (x right, y down); no grad."""
    with torch.no_grad():
        clip = clip if clip.dim() == 3 else clip[None]
        h, w = frags.shape[1:]
        batch = torch.div(frags.pix, h * w, rounding_mode="floor")
        _, c, _ = _face_setup(clip[0] if clip.shape[0] == 1 else clip[batch[0]], faces)  # (F, 3, 3) float64
        c = c.float()[frags.face]  # (N, 3, 3): mip selection needs no float64
        px, py = frags.ndc[:, 0:1], frags.ndc[:, 1:2]
        e = px * c[..., 0] + py * c[..., 1] + c[..., 2]  # (N, 3)
        s = e[:, :1] + e[:, 1:2] + e[:, 2:3]
        uvi = uv_faces[frags.face]
        uvc = [uv[uvi[:, k]] for k in range(3)]  # 3 x (N, 2)
        out = []
        for axis, step in ((0, 2.0 / w), (1, -2.0 / h)):
            de = c[..., axis]  # (N, 3)
            dsum = de[:, :1] + de[:, 1:2] + de[:, 2:3]
            dbary = (de * s - e * dsum) / (s * s) * step
            out.append(dbary[:, :1] * uvc[0] + dbary[:, 1:2] * uvc[1] + dbary[:, 2:3] * uvc[2])
        return torch.cat(out, 1)


def mip_pyramid(tex: torch.Tensor) -> list[torch.Tensor]:
    """Box-filtered mip levels of a (B, C, H, W) texture down to 1 pixel on the short side."""
    levels = [tex]
    while min(levels[-1].shape[-2:]) > 1:
        levels.append(F.avg_pool2d(levels[-1], 2, ceil_mode=True))
    return levels


def texture(tex: torch.Tensor, uv: torch.Tensor, uv_da: torch.Tensor | None = None,
            batch: torch.Tensor | None = None) -> torch.Tensor:
    """Sample a texture at packed uv (differentiable w.r.t. tex and uv).

    Args:
        tex: (B|1, C, Ht, Wt) texture in linear values, row 0 at the top (v = 1); clamp-to-edge addressing.
        uv: (N, 2) texture coordinates.
        uv_da: (N, 4) screen derivatives from `uv_derivatives`; given, sampling is trilinear over mips.
        batch: (N,) batch index of each sample (default 0).

    Returns:
        (N, C) samples.
    """
    tex = tex if tex.dim() == 4 else tex[None]
    grid = torch.stack([uv[:, 0] * 2 - 1, 1 - uv[:, 1] * 2], -1)  # (N, 2) grid_sample coordinates
    batch = torch.zeros(len(uv), dtype=torch.long, device=uv.device) if batch is None or tex.shape[0] == 1 \
        else batch
    if uv_da is None:
        return _sample(tex, grid, batch)
    ht, wt = tex.shape[-2:]
    rho = torch.maximum(torch.hypot(uv_da[:, 0] * wt, uv_da[:, 1] * ht), torch.hypot(uv_da[:, 2] * wt,
                                                                                     uv_da[:, 3] * ht))
    levels = mip_pyramid(tex)
    lod = torch.log2(rho.clamp(min=1e-8)).clamp(0, len(levels) - 1)  # (N,)
    lo = lod.floor().long()
    frac = (lod - lo.to(lod.dtype))[:, None]
    out = torch.zeros(len(uv), tex.shape[1], dtype=tex.dtype, device=tex.device)
    for i in torch.unique(torch.cat([lo, (lo + 1).clamp(max=len(levels) - 1)])).tolist():
        weight = torch.where(lo[:, None] == i, 1 - frac, torch.zeros_like(frac)) + \
            torch.where((lo[:, None] + 1) == i, frac, torch.zeros_like(frac))
        sel = torch.nonzero(weight[:, 0] > 0).squeeze(1)
        if len(sel):
            out = out.index_add(0, sel, _sample(levels[i], grid[sel], batch[sel]) * weight[sel])
    return out


def _sample(tex: torch.Tensor, grid: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
    """Bilinear samples (N, C) of (B, C, H, W) at grid (N, 2) in [-1, 1] (texel centres, clamp to edge)."""
    out = []
    order = []
    for b in torch.unique(batch).tolist():
        sel = torch.nonzero(batch == b).squeeze(1)
        s = F.grid_sample(tex[b:b + 1], grid[sel][None, None], mode="bilinear", padding_mode="border",
                          align_corners=False)  # (1, C, 1, n)
        out.append(s[0, :, 0].T)
        order.append(sel)
    if len(out) == 1:
        return out[0]
    perm = torch.cat(order)
    res = torch.cat(out)
    return res.new_zeros(res.shape).index_copy(0, perm, res)


def antialias(color: torch.Tensor, frags: Fragments, clip: torch.Tensor, faces: torch.Tensor,
              depth: torch.Tensor, relative_gap: float = 0.01) -> torch.Tensor:
    """Analytic antialiasing of silhouette edges, differentiable w.r.t. colours and vertex positions.

    After nvdiffrast's antialias op: for each pair of horizontally or vertically adjacent pixels across a
    silhouette (one side background, or a surface more than `relative_gap` farther), the foreground
    triangle's edge crossing between the two pixel centres is found (edge functions are linear in screen
    space); if it lies past the midpoint, the background pixel takes that fraction of the foreground colour,
    otherwise the foreground pixel takes the background's. Gradients reach the vertices through the
    crossing position, which gives silhouettes (masks, colours at the outline) a gradient.

    Args:
        color: (B, H, W, C) shaded image (include alpha as a channel to antialias the mask too).
        frags: `rasterize` output. clip: (B, V, 4) clip coordinates (with grad). faces: (F, 3).
        depth: (B, H, W) camera z (0 = background), e.g. from `interpolate` + `to_image`.
    """
    clip = clip if clip.dim() == 3 else clip[None]
    out = color
    b_count, h, w = frags.shape
    fid = frags.face_id
    z = depth.detach()
    for axis in (2, 1):  # horizontal pairs (along W), then vertical pairs (along H)
        n = fid.shape[axis]
        a_id, b_id = fid.narrow(axis, 0, n - 1), fid.narrow(axis, 1, n - 1)
        a_z, b_z = z.narrow(axis, 0, n - 1), z.narrow(axis, 1, n - 1)
        a_fg = (a_id >= 0) & ((b_id < 0) | (b_z > a_z * (1 + relative_gap)))
        b_fg = (b_id >= 0) & ((a_id < 0) | (a_z > b_z * (1 + relative_gap)))
        for fg_first, sel in ((True, a_fg), (False, b_fg)):
            idx = torch.nonzero(sel)  # (K, 3): batch, row, col of the first pixel of the pair
            if len(idx) == 0:
                continue
            first = idx.clone()
            second = idx.clone()
            second[:, axis] += 1
            fg, bg = (first, second) if fg_first else (second, first)
            out = out + _edge_blend(color, fg, bg, fid, clip, faces, h, w, horizontal=axis == 2)
    return out


def _edge_blend(color, fg, bg, fid, clip, faces, h, w, horizontal: bool):
    """Colour deltas (B, H, W, C) for foreground/background pixel pairs (K, 3) (batch, row, col).

    An edge is handled by the pairs across its dominant direction only (horizontal pairs for steep
    edges), so no edge is blended twice."""
    tri = fid[fg[:, 0], fg[:, 1], fg[:, 2]]
    q = clip[..., [0, 1, 3]][fg[:, :1], faces[tri]]  # (K, 3, 3): corners x (x, y, w)
    c = torch.stack([torch.cross(q[:, 1], q[:, 2], dim=-1), torch.cross(q[:, 2], q[:, 0], dim=-1),
                     torch.cross(q[:, 0], q[:, 1], dim=-1)], 1)  # (K, 3 edges, 3)
    sign = torch.sign((q[:, 0] * c[:, 0]).sum(-1)).detach()[:, None]

    def edge(pix):  # edge functions (K, 3) at pixel centres, positive inside
        px = (pix[:, 2].to(q.dtype) + 0.5) * (2.0 / w) - 1
        py = 1 - (pix[:, 1].to(q.dtype) + 0.5) * (2.0 / h)
        return (c[..., 0] * px[:, None] + c[..., 1] * py[:, None] + c[..., 2]) * sign

    e_f, e_b = edge(fg), edge(bg)
    steep = (c[..., 0] * (2.0 / w)).abs() >= (c[..., 1] * (2.0 / h)).abs()  # (K, 3): |de/dx| >= |de/dy|
    crossing = (e_b < 0) & (e_f >= 0) & (steep if horizontal else ~steep)
    t = torch.where(crossing, e_f / (e_f - e_b).clamp(min=1e-12), torch.full_like(e_f, 2.0)).min(1).values
    keep = t <= 1.0
    t = t[keep]
    fg, bg = fg[keep], bg[keep]
    col_f = color[fg[:, 0], fg[:, 1], fg[:, 2]]
    col_b = color[bg[:, 0], bg[:, 1], bg[:, 2]]
    cover = (t - 0.5)[:, None]  # > 0: the edge reaches past the midpoint into the background pixel
    delta = torch.zeros_like(color)
    delta = delta.index_put((bg[:, 0], bg[:, 1], bg[:, 2]), cover.clamp(min=0) * (col_f - col_b), accumulate=True)
    return delta.index_put((fg[:, 0], fg[:, 1], fg[:, 2]), (-cover).clamp(min=0) * (col_b - col_f), accumulate=True)
