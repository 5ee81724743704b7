"""The renderer: a G-buffer from either backend, shading, and the output passes.

    r = Renderer("gl")                                   # or "torch" (differentiable, CPU/CUDA)
    images = r.render(RenderMesh(verts, faces, uv=uv, uv_faces=uvf), camera, Material(albedo_map=img),
                      preset_rig("studio"), passes=("color", "normal", "depth", "mask"))

Both backends produce the same `GBuffer` (packed per covered pixel, torch tensors). The torch backend shades with
`shading.py` (differentiable); the GL backend shades its colour pass in GLSL (`shading_gl.py`, the same
formulas; rigs with more than 16 light samples fall back to torch), so a picture differs between the
backends only by rasterization and mip-selection round-off (tested). Output passes are numpy arrays, row 0 at the
top: color/albedo (H, W, 4) float RGBA in sRGB [0, 1] (alpha = coverage), normal (H, W, 3) in [-1, 1],
depth (H, W) camera z in cm (0 = background), mask (H, W) bool, uv (H, W, 2), face_id (H, W) int64 (-1),
region (H, W) int64 label index (-1), and visibility: (V,) bool per mesh vertex (with vertex_pixels (V, 2)
and vertex_depth (V,), the vertices projected by the camera).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from topos_cli.errors import UsageError
from topos_cli.geometry.mesh_ops import vertex_normals_torch
from topos_cli.render.camera import Camera
from topos_cli.render.lights import LightRig, preset_rig

PASSES = ("color", "albedo", "normal", "depth", "mask", "uv", "face_id", "region", "visibility")
CLAY = (0.62, 0.52, 0.46)  # linear base colour of untextured heads (a neutral clay)
# vertex visibility: a pixel's depth spans footprint x slope on a surface inclined to the view; up to this slope
# (tan 76 deg: the silhouette's steep flanks, the side of the nose) a vertex is not hidden by its own surface
GRAZING_SLOPE = 4.0
DEPTH_REL_TOL = 1e-3  # plus this fraction of the depth (float round-off of the depth pass at far distances)
TEXTURE_CACHE_SIZE = 8  # textures kept on the device per renderer (a dataset render reuses a handful of maps)


@dataclass
class GBuffer:
    """The packed G-buffer of one camera, the same fields for both backends: per covered pixel (N of them, flat
    indices `pix` into the (H, W) image) torch tensors; fields a pass set did not ask for are None.

    Attributes:
        shape: (H, W).
        pix: (N,) int64 flat pixel index of each covered pixel.
        face_id: (H, W) int64 triangle per pixel (-1 background), or None.
        position: (N, 3) world position (cm). normal: (N, 3) unit world normal. uv: (N, 2).
        albedo: (N, 3) linear albedo. roughness, specular: (N,). depth: (N,) camera z (cm).
        color: (N, 3) sRGB colour shaded by the GL backend (None: shade in torch).
        fragments: the torch rasterizer's fragments, clip positions and faces (torch backend: what antialiasing
            of a differentiable picture needs), else None.
    """

    shape: tuple[int, int]
    pix: torch.Tensor
    face_id: torch.Tensor | None = None
    position: torch.Tensor | None = None
    normal: torch.Tensor | None = None
    uv: torch.Tensor | None = None
    albedo: torch.Tensor | None = None
    roughness: torch.Tensor | None = None
    specular: torch.Tensor | None = None
    depth: torch.Tensor | None = None
    color: torch.Tensor | None = None
    fragments: TorchFragments | None = None


@dataclass
class TorchFragments:
    """The torch rasterizer's output for one camera: fragments, (1, V, 4) clip positions and (F, 3) faces."""

    frags: object
    clip: torch.Tensor
    faces: torch.Tensor


@dataclass
class TextureCache:
    """Device copies of texture images, decoded to linear (1, C, H, W) float: one renderer uploads a map once
    however many views use it. Keyed by the image object (its identity, held so the key cannot be reused by
    another array) with the colour space and device; cleared when more than `size` are held."""

    size: int = TEXTURE_CACHE_SIZE
    entries: dict = field(default_factory=dict)

    def get(self, image: np.ndarray, device, srgb: bool) -> torch.Tensor:
        key = (id(image), srgb, str(device))
        hit = self.entries.get(key)
        if hit is not None and hit[0] is image:
            return hit[1]
        tex = _texture_tensor(image, device, srgb)
        if len(self.entries) > self.size:
            self.entries.clear()
        self.entries[key] = (image, tex)
        return tex


@dataclass
class RenderMesh:
    """What the renderer needs from a mesh (arrays; no file handling here).

    Attributes:
        verts: (V, 3) float world positions (cm); a torch tensor with grad for the torch backend is fine.
        faces: (F, 3) int64 triangles.
        normals: (V, 3) vertex normals or None (computed, area-weighted).
        uv, uv_faces: (T, 2) texture coordinates and (F, 3) corner indices, or None.
        colors: (V, 3) linear per-vertex albedo, or None.
        face_labels: (F,) int64 region label per triangle (-1 none), for the region pass.
    """

    verts: object
    faces: np.ndarray
    normals: np.ndarray | None = None
    uv: np.ndarray | None = None
    uv_faces: np.ndarray | None = None
    colors: np.ndarray | None = None
    face_labels: np.ndarray | None = None


@dataclass
class Material:
    """Relightable material: sRGB albedo map (row 0 = v 1), linear material map (roughness, specular scale),
    optional tangent-space normal map (x along +u, y along +v, z out of the surface; stored as n / 2 + 0.5,
    the OpenGL convention)."""

    albedo_map: np.ndarray | None = None
    material_map: np.ndarray | None = None
    normal_map: np.ndarray | None = None
    color: tuple = (1.0, 1.0, 1.0)
    roughness: float = 0.55
    specular: float = 1.0


class Renderer:
    """Renders `RenderMesh`es with the GL (fast) or torch (differentiable) rasterizer."""

    def __init__(self, backend: str = "gl", device: str = "cpu"):
        if backend not in ("gl", "torch"):
            raise UsageError(f"unknown backend {backend!r}; use gl or torch")
        self.backend, self.device = backend, torch.device(device)
        if self.device.type == "cpu":
            from topos_cli.render.threads import apply_torch_threads

            apply_torch_threads()
        self._gl, self.textures = None, TextureCache()
        if backend == "gl":
            from topos_cli.render.raster_gl import GLRasterizer

            self._gl = GLRasterizer()

    # ------------------------------------------------------------------ G-buffer
    def gbuffer(self, mesh: RenderMesh, camera: Camera, material: Material | None = None,
                passes=None, gl_shading: dict | None = None) -> GBuffer:
        """The packed G-buffer (`GBuffer`) of `mesh` seen by `camera`; `passes` (GL) limits what is filled."""
        material = material or Material()
        if self.backend == "gl":
            return self._gbuffer_gl(mesh, camera, material, passes, gl_shading)
        return self._gbuffer_torch(mesh, camera, material)

    def _gbuffer_gl(self, mesh, camera, material, passes, shading=None):
        colors = _albedo_colors(mesh, material)
        gb = self._gl.rasterize(_numpy(mesh.verts), mesh.faces, camera, normals=mesh.normals, uv=mesh.uv,
                                uv_faces=mesh.uv_faces, colors=colors, albedo_map=material.albedo_map,
                                material_map=material.material_map, roughness=material.roughness,
                                specular=material.specular, normal_map=material.normal_map, passes=passes,
                                packed=True, shading=shading)
        h, w = gb["shape"]
        out = GBuffer((h, w), torch.from_numpy(gb["pix"]))
        if "face_id" in gb:
            fid = np.full(h * w, -1, np.int64)
            fid[gb["pix"]] = gb["face_id"]
            out.face_id = torch.from_numpy(fid.reshape(h, w))
        for key in ("position", "normal", "uv", "albedo", "roughness", "specular", "depth", "color"):
            if key in gb:
                setattr(out, key, torch.from_numpy(gb[key]))
        return out

    def _gbuffer_torch(self, mesh, camera, material):
        from topos_cli.render import raster_torch as rt

        dev = self.device
        verts = mesh.verts.to(dev) if isinstance(mesh.verts, torch.Tensor) else \
            torch.as_tensor(np.asarray(mesh.verts), dtype=torch.float32, device=dev)
        faces = torch.as_tensor(np.asarray(mesh.faces), dtype=torch.long, device=dev)
        clip = rt.to_clip(verts, camera.clip_matrix().astype(np.float32))  # (1, V, 4)
        frags = rt.rasterize(clip, faces, camera.height, camera.width, camera.near, camera.far)
        bary = rt.barycentrics(clip, faces, frags)  # (N, 3)
        normals = vertex_normals_torch(verts, faces) if mesh.normals is None else \
            torch.as_tensor(mesh.normals, dtype=torch.float32, device=dev)
        colors = torch.as_tensor(_albedo_colors(mesh, material), dtype=torch.float32, device=dev)
        attrs = rt.interpolate(torch.cat([verts, normals, colors, clip[0, :, 3:4]], 1), faces, frags, bary)  # (N, 10)
        out = GBuffer((camera.height, camera.width), frags.pix, face_id=frags.face_id[0], position=attrs[:, 0:3],
                      normal=torch.nn.functional.normalize(attrs[:, 3:6], dim=-1), depth=attrs[:, 9],
                      fragments=TorchFragments(frags, clip, faces))
        albedo = attrs[:, 6:9]
        rough = torch.full_like(out.depth, material.roughness)
        spec = torch.full_like(out.depth, material.specular)
        if mesh.uv is not None:
            uv = torch.as_tensor(mesh.uv, dtype=torch.float32, device=dev)
            uvf = torch.as_tensor(np.asarray(mesh.uv_faces if mesh.uv_faces is not None else mesh.faces),
                                  dtype=torch.long, device=dev)
            out.uv = rt.interpolate(uv, uvf, frags, bary)
            uv_da = rt.uv_derivatives(clip, faces, uv, uvf, frags)
            if material.albedo_map is not None:
                albedo = albedo * rt.texture(self.textures.get(material.albedo_map, dev, srgb=True), out.uv, uv_da)
            if material.material_map is not None:
                mat = rt.texture(self.textures.get(material.material_map, dev, srgb=False), out.uv, uv_da)
                rough, spec = rough * mat[:, 0], spec * mat[:, 1]
            if material.normal_map is not None:
                normal_map = self.textures.get(material.normal_map, dev, srgb=False)
                out.normal = _perturb_normal(out.normal, mesh, normal_map, uvf, frags, bary, out.uv, uv_da)
        else:
            out.uv = torch.zeros(len(frags.pix), 2, device=dev)
        out.albedo, out.roughness, out.specular = albedo, rough, spec
        return out

    def image(self, mesh: RenderMesh, camera: Camera, material: Material | None = None,
              rig: LightRig | None = None, shading: str = "ggx", antialias: bool = True) -> torch.Tensor:
        """A differentiable picture (torch backend): (H, W, 4) linear RGB + coverage alpha, row 0 at the top.

        Gradients reach `mesh.verts` (a tensor with requires_grad) through interpolation, shading and, with
        `antialias`, the silhouette; and reach textures given as tensors through sampling. What fitting uses.
        """
        if self.backend != "torch":
            raise UsageError("Renderer.image is differentiable and needs the torch backend: Renderer('torch')")
        from topos_cli.render import raster_torch as rt
        from topos_cli.render.shading import shade

        gb = self._gbuffer_torch(mesh, camera, material or Material())
        colour = shade(gb.position, gb.normal, gb.albedo, gb.roughness, gb.specular, camera.center,
                       rig if rig is not None else preset_rig("studio"), shading)
        frags = gb.fragments.frags
        rgba = rt.to_image(torch.cat([colour, torch.ones_like(colour[:, :1])], 1), frags)  # (1, H, W, 4)
        if antialias:
            depth = rt.to_image(gb.depth[:, None], frags)[..., 0]
            rgba = rt.antialias(rgba, frags, gb.fragments.clip, gb.fragments.faces, depth)
        return rgba[0]

    # ------------------------------------------------------------------ passes
    def render(self, mesh: RenderMesh, camera: Camera, material: Material | None = None,
               rig: LightRig | None = None, shading: str = "ggx", passes=("color",), ssaa: int = 1,
               normal_space: str = "world") -> dict:
        """Render the requested passes (see module docstring); `ssaa` (odd) supersamples color/albedo/alpha."""
        unknown = set(passes) - set(PASSES)
        if unknown:
            raise UsageError(f"unknown pass(es) {sorted(unknown)}; choose from {', '.join(PASSES)}")
        if ssaa < 1 or ssaa % 2 == 0:
            raise UsageError(f"--ssaa must be an odd number >= 1 (1, 3, 5), got {ssaa}")
        rig = rig if rig is not None else preset_rig("studio")
        big = camera.resized(camera.width * ssaa, camera.height * ssaa) if ssaa > 1 else camera
        uniforms = None
        if self.backend == "gl" and "color" in passes:
            from topos_cli.render.shading_gl import light_uniforms

            uniforms = light_uniforms(rig, big.center, shading)  # None: too many lights, shade in torch
        gl_passes = _gl_passes([p for p in passes if p != "color"] if uniforms else passes)
        gb = self.gbuffer(mesh, big, material, gl_passes, uniforms)
        h, w = gb.shape
        out, shaded = {}, {}
        from topos_cli.render.shading import linear_to_srgb, shade

        if "color" in passes:
            shaded["color"] = gb.color if uniforms else linear_to_srgb(shade(
                gb.position, gb.normal, gb.albedo, gb.roughness, gb.specular, big.center, rig, shading))
        if "albedo" in passes:
            shaded["albedo"] = linear_to_srgb(gb.albedo)

        for name, srgb in shaded.items():
            out[name] = _rgba(srgb, gb.pix, h, w, ssaa)
        out.update(_data_passes(gb, mesh, camera, passes, ssaa, normal_space))
        return out


def _rgba(srgb: torch.Tensor, pix: torch.Tensor, h: int, w: int, ssaa: int) -> np.ndarray:
    """Packed (N, 3) colours to an (H/ssaa, W/ssaa, 4) RGBA image; alpha is pixel coverage."""
    img = _scatter(srgb, pix, h, w)  # (H, W, 3)
    rgba = torch.cat([img, _scatter(torch.ones_like(srgb[:, :1]), pix, h, w)], -1)
    if ssaa > 1:  # average premultiplied colour, then un-premultiply
        rgba = torch.nn.functional.avg_pool2d(rgba.permute(2, 0, 1)[None], ssaa)[0].permute(1, 2, 0)
        rgba = torch.cat([rgba[..., :3] / rgba[..., 3:].clamp(min=1e-6), rgba[..., 3:]], -1)
    return rgba.detach().cpu().numpy()


def _data_passes(gb: GBuffer, mesh: RenderMesh, camera: Camera, passes, ssaa: int, normal_space: str) -> dict:
    """mask, depth, normal, uv, face_id, region and visibility at the native resolution (pixel centres)."""
    h, w = gb.shape
    centre = (slice(ssaa // 2, None, ssaa), slice(ssaa // 2, None, ssaa))
    mask = np.zeros(h * w, bool)
    mask[gb.pix.cpu().numpy()] = True
    mask = mask.reshape(h, w)[centre]
    sub = _Sub(gb, h, w, centre)
    out = {"mask": mask} if "mask" in passes else {}
    depth = sub("depth")[..., 0] if {"depth", "visibility"} & set(passes) else None
    if "depth" in passes:
        out["depth"] = depth
    if "normal" in passes:
        n = sub("normal")
        out["normal"] = n @ np.asarray(camera.R, np.float32).T if normal_space == "camera" else n
    if "uv" in passes:
        out["uv"] = sub("uv")
    if {"face_id", "region"} & set(passes):
        fid = gb.face_id.cpu().numpy()[centre]
        if "face_id" in passes:
            out["face_id"] = fid
        if "region" in passes:
            labels = mesh.face_labels if mesh.face_labels is not None else np.zeros(len(mesh.faces), np.int64)
            out["region"] = np.where(fid >= 0, np.asarray(labels)[np.maximum(fid, 0)], -1)
    if "visibility" in passes:
        verts = _numpy(mesh.verts)
        out["visibility"] = vertex_visibility(verts, camera, depth, mask)
        pix, z = camera.project(verts)
        out["vertex_pixels"], out["vertex_depth"] = pix.astype(np.float32), z.astype(np.float32)
    return out


class _Sub:
    """Scatter a packed G-buffer entry to a numpy image, subsampled at native pixel centres."""

    def __init__(self, gb, h, w, centre):
        self.gb, self.h, self.w, self.centre = gb, h, w, centre

    def __call__(self, name: str):
        val = getattr(self.gb, name).detach()
        val = val[:, None] if val.dim() == 1 else val
        return _scatter(val, self.gb.pix, self.h, self.w).cpu().numpy()[self.centre]


def _scatter(packed: torch.Tensor, pix: torch.Tensor, h: int, w: int) -> torch.Tensor:
    out = packed.new_zeros(h * w, packed.shape[1])
    return out.index_put((pix.to(packed.device),), packed).view(h, w, packed.shape[1])


def _gl_passes(passes) -> list[str]:
    need = {"mask"}
    for p in passes:
        need |= {"color": {"position", "normal", "albedo", "roughness", "specular"}, "albedo": {"albedo"},
                 "normal": {"normal"}, "depth": {"depth"}, "uv": {"uv"}, "face_id": {"face_id"},
                 "region": {"face_id"}, "visibility": {"depth"}, "mask": set()}[p]
    return sorted(need)


def _numpy(verts) -> np.ndarray:
    return verts.detach().cpu().numpy() if isinstance(verts, torch.Tensor) else np.asarray(verts)


def _albedo_colors(mesh: RenderMesh, material: Material) -> np.ndarray:
    """(V, 3) linear per-vertex albedo factor: vertex colours or the clay base, times material.color."""
    n = len(mesh.verts)
    if mesh.colors is not None:
        base = np.asarray(mesh.colors, np.float32)[:, :3]
    elif material.albedo_map is not None:
        base = np.ones((n, 3), np.float32)
    else:
        base = np.tile(np.asarray(CLAY, np.float32), (n, 1))
    return base * np.asarray(material.color, np.float32)


def _perturb_normal(normal, mesh, normal_map: torch.Tensor, uvf, frags, bary, uv, uv_da):
    """Apply a tangent-space normal map (tangents from the uv layout, as the GL shader does)."""
    from topos_cli.render import raster_torch as rt
    from topos_cli.render.raster_gl import uv_tangents

    tan = uv_tangents(_numpy(mesh.verts).astype(np.float32), np.asarray(mesh.faces), np.asarray(mesh.uv, np.float32),
                      uvf.cpu().numpy())
    tan = rt.interpolate(torch.as_tensor(tan, device=normal.device), uvf, frags, bary)  # (N, 4)
    t = torch.nn.functional.normalize(tan[:, :3] - normal * (normal * tan[:, :3]).sum(-1, keepdim=True), dim=-1)
    b = torch.cross(normal, t, dim=-1) * torch.where(tan[:, 3:] < 0, -1.0, 1.0)
    m = rt.texture(normal_map, uv, uv_da) * 2 - 1
    return torch.nn.functional.normalize(t * m[:, :1] + b * m[:, 1:2] + normal * m[:, 2:3], dim=-1)


def _texture_tensor(image: np.ndarray, device, srgb: bool) -> torch.Tensor:
    """(1, C, H, W) float texture in linear values (sRGB decoded); `TextureCache.get` keeps them."""
    from topos_cli.render.shading import srgb_to_linear

    img = np.asarray(image)
    img = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)
    img = img[..., None] if img.ndim == 2 else img
    tex = torch.from_numpy(np.ascontiguousarray(img[..., :3 if srgb else img.shape[2]])).permute(2, 0, 1)[None]
    if srgb:
        # GL rounds sRGB texels through 8 bits before decoding; so do we (same values to < 1e-6)
        tex = srgb_to_linear(tex)
    return tex.to(device)


def vertex_visibility(verts: np.ndarray, camera: Camera, depth: np.ndarray, mask: np.ndarray,
                      tolerance: float = 2.0) -> np.ndarray:
    """(V,) bool: vertex lies in the image, in front of the camera and on the visible surface.

    A vertex is visible when its camera z is at most the depth pass at its pixel plus the depth the surface can
    span over `tolerance` pixels at a slope of up to GRAZING_SLOPE (tolerance x GRAZING_SLOPE pixel footprints,
    a footprint being z / fx), plus DEPTH_REL_TOL of z; occluded vertices (behind the nose, the far side) lie a
    whole head's thickness behind and are not.
    """
    pix, z = camera.project(verts)
    col, row = np.floor(pix[:, 0]).astype(np.int64), np.floor(pix[:, 1]).astype(np.int64)
    inside = (z > camera.near) & (col >= 0) & (col < camera.width) & (row >= 0) & (row < camera.height)
    vis = np.zeros(len(verts), bool)
    idx = np.flatnonzero(inside)
    c, r = col[idx], row[idx]
    d = depth[r, c]
    covered = mask[r, c]
    footprint = z[idx] / camera.fx
    tol = tolerance * footprint * GRAZING_SLOPE + DEPTH_REL_TOL * z[idx]
    vis[idx] = covered & (d > 0) & (z[idx] <= d + tol)
    return vis
