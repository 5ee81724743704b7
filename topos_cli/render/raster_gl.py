"""Fast G-buffer rasterizer: OpenGL 3.3 core through headless EGL (moderngl).

Mesa's llvmpipe on a CPU, NVIDIA's EGL driver on a GPU; `GLCONTEXT_DEVICE_INDEX` picks the EGL device and
`LP_NUM_THREADS` (set here from `threads.render_threads()` unless the user set it) llvmpipe's thread count.
All GL conventions stay in this file: images come back with row 0 at the top, textures are given with row 0
at the top (v = 1), depth is camera z in cm.

One draw fills every pass (multiple render targets); `GBuffer` arrays are numpy float32.
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from topos_cli.errors import UsageError

_VERTEX = """
#version 330
uniform mat4 u_clip;
uniform vec4 u_zrow;   // third row of world-to-camera: camera z = dot(u_zrow, (p, 1))
in vec3 in_pos; in vec3 in_nrm; in vec2 in_uv; in vec3 in_col; in vec3 in_bary;
out vec3 v_pos; out vec3 v_nrm; out vec2 v_uv; out vec3 v_col; out vec3 v_bary; out float v_z;
void main() {
    v_pos = in_pos; v_nrm = in_nrm; v_uv = in_uv; v_col = in_col; v_bary = in_bary;
    v_z = dot(u_zrow, vec4(in_pos, 1.0));
    gl_Position = u_clip * vec4(in_pos, 1.0);
}
"""

_FRAGMENT = """
#version 330
uniform sampler2D u_albedo;    // sRGB texture: sampled as linear RGB
uniform sampler2D u_material;  // linear: r = roughness, g = specular scale
uniform int u_has_albedo; uniform int u_has_material;
uniform vec2 u_rough_spec;
in vec3 v_pos; in vec3 v_nrm; in vec2 v_uv; in vec3 v_col; in vec3 v_bary; in float v_z;
layout(location = 0) out vec4 o_pos;    // world xyz, camera z
layout(location = 1) out vec4 o_nrm;    // world normal xyz, coverage
layout(location = 2) out vec4 o_uv;     // uv, barycentric b1 b2 (b0 = 1 - b1 - b2)
layout(location = 3) out vec4 o_alb;    // linear albedo rgb, roughness
layout(location = 4) out vec4 o_spec;   // specular scale
layout(location = 5) out int o_face;    // triangle index
void main() {
    o_pos = vec4(v_pos, v_z);
    o_nrm = vec4(normalize(v_nrm), 1.0);
    o_uv = vec4(v_uv, v_bary.y, v_bary.z);
    vec3 alb = v_col;
    if (u_has_albedo == 1) alb *= texture(u_albedo, v_uv).rgb;
    vec2 rs = u_rough_spec;
    if (u_has_material == 1) rs *= texture(u_material, v_uv).rg;
    o_alb = vec4(alb, rs.x);
    o_spec = vec4(rs.y, 0.0, 0.0, 1.0);
    o_face = gl_PrimitiveID + 1;  // 0 = background after the clear
}
"""

INSTALL_HINT = ("install the EGL/GL runtime (Debian/Ubuntu: apt-get install -y libegl1 libgl1 libegl-mesa0 "
                "libgl1-mesa-dri) or use --backend torch")


class GBuffer(dict):
    """Per-pixel passes, row 0 at the top. Keys (H, W[, C]) float32 unless noted:

    mask (bool), depth (camera z, 0 = background), position (world), normal (world, unit), uv, bary (3),
    face_id (int64, -1 = background), albedo (linear RGB), roughness, specular.
    """


@lru_cache(maxsize=1)
def gl_context():
    """The process-wide headless EGL context (created once; UsageError with install steps if impossible)."""
    from topos_cli.render.threads import render_threads

    os.environ.setdefault("LP_NUM_THREADS", str(render_threads()))
    try:
        import moderngl

        kwargs = {"backend": "egl"}
        if "GLCONTEXT_DEVICE_INDEX" in os.environ:
            kwargs["device_index"] = int(os.environ["GLCONTEXT_DEVICE_INDEX"])
        ctx = moderngl.create_standalone_context(require=330, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any loader/driver failure means the same thing to the user
        raise UsageError(f"cannot create a headless OpenGL (EGL) context ({str(exc).splitlines()[0][:120]}); "
                         f"{INSTALL_HINT}") from None
    return ctx


def gl_available() -> bool:
    """True when a headless EGL context can be created here."""
    try:
        gl_context()
        return True
    except UsageError:
        return False


class GLRasterizer:
    """Rasterizes one mesh topology into a `GBuffer`; reuse it across frames (programs and buffers persist)."""

    def __init__(self):
        self.ctx = gl_context()
        self.prog = self.ctx.program(vertex_shader=_VERTEX, fragment_shader=_FRAGMENT)
        self._fbo_key = None
        self._tex_cache: dict[int, object] = {}

    def _framebuffer(self, width: int, height: int):
        if self._fbo_key != (width, height):
            ctx = self.ctx
            self._targets = [ctx.texture((width, height), 4, dtype="f4") for _ in range(5)]
            self._targets.append(ctx.texture((width, height), 1, dtype="i4"))
            for tex in self._targets:
                tex.filter = (ctx.NEAREST, ctx.NEAREST)
            self._depth = ctx.depth_renderbuffer((width, height))
            self.fbo = ctx.framebuffer(color_attachments=self._targets, depth_attachment=self._depth)
            self._fbo_key = (width, height)
        return self.fbo

    def _texture(self, image: np.ndarray, srgb: bool):
        """Upload (H, W, C) uint8 or float image (row 0 = top = v 1) with mipmaps; cached by identity."""
        key = (id(image), srgb)
        if key in self._tex_cache:
            return self._tex_cache[key][1]
        img = np.asarray(image)
        if img.ndim == 2:
            img = img[..., None]
        if img.dtype != np.uint8:
            img = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
        img = np.concatenate([img, np.full(img.shape[:2] + (4 - img.shape[2],), 255, np.uint8)], 2) \
            if img.shape[2] < 4 else img[..., :4]
        data = np.ascontiguousarray(img[::-1])  # GL's first row is v = 0 (bottom)
        tex = self.ctx.texture((img.shape[1], img.shape[0]), 4, data.tobytes(),
                               internal_format=0x8C43 if srgb else None)  # GL_SRGB8_ALPHA8
        tex.build_mipmaps()
        tex.filter = (0x2703, 0x2601)  # LINEAR_MIPMAP_LINEAR, LINEAR
        tex.repeat_x = tex.repeat_y = False
        if len(self._tex_cache) > 16:
            for old in self._tex_cache.values():
                old[1].release()
            self._tex_cache.clear()
        self._tex_cache[key] = (image, tex)  # keep the array alive so its id stays unique
        return tex

    def rasterize(self, verts, faces, camera, normals=None, uv=None, uv_faces=None, colors=None,
                  albedo_map=None, material_map=None, roughness: float = 0.5, specular: float = 1.0,
                  passes=None, packed: bool = False) -> GBuffer:
        """Rasterize a triangle mesh.

        Args:
            verts: (V, 3) world positions (cm). faces: (F, 3) int triangles.
            camera: `Camera`.
            normals: (V, 3) vertex normals (default: area-weighted from the mesh).
            uv, uv_faces: (T, 2) texture coordinates and (F, 3) corner indices (default: none, uv = 0).
            colors: (V, 3) linear per-vertex albedo, default 0.7 grey; multiplied by the albedo map.
            albedo_map: (H, W, 3|4) sRGB image (uint8 or float in [0, 1]), row 0 = top (v = 1).
            material_map: (H, W, 2+) linear image, channel 0 roughness scale, channel 1 specular scale.
            roughness, specular: material constants (scaled by material_map when given).
            passes: names to read back (default all); fewer passes mean less readback time.
            packed: return only covered pixels (see `_read`), as the renderer wants them.
        """
        verts = np.asarray(verts, np.float32)
        faces = np.asarray(faces, np.int64)
        nrm = _vertex_normals(verts, faces) if normals is None else np.asarray(normals, np.float32)
        corners = faces.reshape(-1)
        n = len(corners)
        col = np.full((len(verts), 3), 0.7, np.float32) if colors is None else np.asarray(colors, np.float32)
        uvc = np.zeros((n, 2), np.float32) if uv is None else np.asarray(uv, np.float32)[
            np.asarray(uv_faces if uv_faces is not None else faces).reshape(-1)]
        bary = np.tile(np.eye(3, dtype=np.float32), (len(faces), 1))
        data = np.concatenate([verts[corners], nrm[corners], uvc, col[corners], bary], 1).astype(np.float32)
        vbo = self.ctx.buffer(data.tobytes())
        vao = self.ctx.vertex_array(self.prog, [(vbo, "3f 3f 2f 3f 3f", "in_pos", "in_nrm", "in_uv", "in_col",
                                                 "in_bary")])
        clip = camera.clip_matrix().astype(np.float32)
        self.prog["u_clip"].write(np.ascontiguousarray(clip.T).tobytes())  # GL is column-major
        self.prog["u_zrow"].value = tuple(float(v) for v in camera.world_to_camera()[2])
        self.prog["u_rough_spec"].value = (float(roughness), float(specular))
        self.prog["u_has_albedo"].value = int(albedo_map is not None)
        self.prog["u_has_material"].value = int(material_map is not None)
        if albedo_map is not None:
            self._texture(albedo_map, srgb=True).use(location=0)
            self.prog["u_albedo"].value = 0
        if material_map is not None:
            self._texture(material_map, srgb=False).use(location=1)
            self.prog["u_material"].value = 1
        fbo = self._framebuffer(camera.width, camera.height)
        fbo.use()
        self.ctx.viewport = (0, 0, camera.width, camera.height)
        fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        self.ctx.enable(self.ctx.DEPTH_TEST)
        self.ctx.disable(self.ctx.CULL_FACE)
        vao.render()
        out = self._read(camera.width, camera.height, passes, packed)
        vao.release()
        vbo.release()
        return out

    def _read(self, width: int, height: int, passes, packed: bool) -> GBuffer:
        """Read the attachments back. Packed: only covered pixels, as (N, C) arrays plus their flat
        image-order index `pix` and the image `shape` (skips flipping and copying background)."""
        want = set(passes or ALL_PASSES)
        need = {0: {"depth", "position"}, 2: {"uv", "bary"}, 3: {"albedo", "roughness"}, 4: {"specular"}}
        mask_gl = np.frombuffer(self._targets[1].read(), np.float32).reshape(height * width, 4)
        sel = np.flatnonzero(mask_gl[:, 3] > 0.5)  # GL order: row 0 at the bottom
        pix = (height - 1 - sel // width) * width + sel % width
        arrays = {1: mask_gl[sel]}
        for i, names in need.items():
            if want & names:
                arrays[i] = np.frombuffer(self._targets[i].read(), np.float32).reshape(-1, 4)[sel]
        gb = GBuffer(pix=pix, shape=(height, width))
        gb["mask"] = np.ones(len(sel), bool)
        if 0 in arrays:
            gb["position"], gb["depth"] = arrays[0][:, :3], arrays[0][:, 3]
        if "normal" in want:
            gb["normal"] = arrays[1][:, :3]
        if 2 in arrays:
            gb["uv"] = arrays[2][:, :2]
            gb["bary"] = np.concatenate([1 - arrays[2][:, 2:4].sum(-1, keepdims=True), arrays[2][:, 2:4]], -1)
        if 3 in arrays:
            gb["albedo"], gb["roughness"] = arrays[3][:, :3], arrays[3][:, 3]
        if 4 in arrays:
            gb["specular"] = arrays[4][:, 0]
        if want & {"face_id", "region", "visibility"}:
            ids = np.frombuffer(self._targets[5].read(), np.int32).astype(np.int64) - 1  # stored +1
            gb["face_id"] = ids[sel]
        return gb if packed else unpack(gb)


ALL_PASSES = ("mask", "depth", "position", "normal", "uv", "bary", "face_id", "albedo", "roughness", "specular")


def unpack(gb: GBuffer) -> GBuffer:
    """Packed G-buffer to (H, W[, C]) images, row 0 at the top (background 0, face_id -1, mask False)."""
    h, w = gb["shape"]
    out = GBuffer()
    for key, val in gb.items():
        if key in ("pix", "shape"):
            continue
        fill = -1 if key == "face_id" else 0
        img = np.full((h * w,) + val.shape[1:], fill, val.dtype)
        img[gb["pix"]] = val
        out[key] = img.reshape((h, w) + val.shape[1:])
    return out


def _vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals via bincount (several times faster than np.add.at)."""
    tri = verts[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    idx = faces.reshape(-1)
    vn = np.stack([np.bincount(idx, np.repeat(fn[:, k], 3), len(verts)) for k in range(3)], 1)
    return (vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)).astype(np.float32)
