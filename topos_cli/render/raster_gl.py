"""Fast G-buffer rasterizer: OpenGL 3.3 core through headless EGL (moderngl).

Mesa's llvmpipe on a CPU, NVIDIA's EGL driver on a GPU; `GLCONTEXT_DEVICE_INDEX` picks the EGL device and
`LP_NUM_THREADS` (set here from `threads.render_threads()` unless the user set it) llvmpipe's thread count.
All GL conventions stay in this file: images come back with row 0 at the top, textures are given with row 0
at the top (v = 1), depth is camera z in cm.

One draw fills every requested pass (multiple render targets, compiled per pass set); `GLBuffers` arrays are numpy
float32. Normals and materials travel as half floats (about 1e-3 relative precision), depth as float32;
world positions are rebuilt from depth and the camera ray (exact for a pinhole camera).
"""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np

from topos_cli.errors import UsageError
from topos_cli.render.shading_gl import DEFINES, GLSL

_VERTEX = """
#version 330
uniform mat4 u_clip;
uniform vec4 u_zrow;   // third row of world-to-camera: camera z = dot(u_zrow, (p, 1))
in vec3 in_pos; in vec3 in_nrm; in vec3 in_col; in vec2 in_uv; in vec4 in_tan;
out vec3 v_pos; out vec3 v_nrm; out vec2 v_uv; out vec3 v_col; out vec4 v_tan; out float v_z;
void main() {
    v_pos = in_pos; v_nrm = in_nrm; v_uv = in_uv; v_col = in_col; v_tan = in_tan;
    v_z = dot(u_zrow, vec4(in_pos, 1.0));
    gl_Position = u_clip * vec4(in_pos, 1.0);
}
"""

# Fragment outputs, each compiled in only when a pass needs it (llvmpipe's cost grows with bytes written).
_OUTPUTS = {  # name: (GL type, components, dtype, statement)
    "depth": ("float", 1, "f4", "o_depth = v_z;"),  # camera z; 0 = background, so it is also the mask
    "nrmspec": ("vec4", 4, "f2", "o_nrmspec = vec4(nrm, rs.y);"),
    "albrough": ("vec4", 4, "f2", "o_albrough = vec4(alb, rs.x);"),
    "uv": ("vec2", 2, "f4", "o_uv = v_uv;"),
    "face": ("int", 1, "i4", "o_face = gl_PrimitiveID + 1;"),  # 0 = background after the clear
    "color": ("vec4", 4, "f2", "o_color = vec4(to_srgb(shade(v_pos, nrm, alb, rs.x, rs.y)), 1.0);"),
}
_NEEDS = {"depth": {"mask", "depth", "position"}, "nrmspec": {"normal", "specular"},
          "albrough": {"albedo", "roughness"}, "uv": {"uv"}, "face": {"face_id", "bary"}, "color": {"color"}}


def _fragment(outputs: tuple[str, ...], defines: tuple = ()) -> str:
    decl = "\n".join(f"layout(location = {i}) out {_OUTPUTS[o][0]} o_{o};" for i, o in enumerate(outputs))
    body = "\n    ".join(_OUTPUTS[o][3] for o in outputs)
    shading = "".join(f"#define {k} {v}\n" for k, v in defines) + GLSL if "color" in outputs else ""
    return f"""
#version 330
uniform sampler2D u_albedo;    // sRGB texture: sampled as linear RGB
uniform sampler2D u_material;  // linear: r = roughness scale, g = specular scale
uniform sampler2D u_normal_map;  // linear tangent-space normals (x along +u, y along +v), 0.5-offset
uniform int u_has_albedo; uniform int u_has_material; uniform int u_has_normal_map;
uniform vec2 u_rough_spec;
in vec3 v_pos; in vec3 v_nrm; in vec2 v_uv; in vec3 v_col; in vec4 v_tan; in float v_z;
{decl}
{shading}
void main() {{
    vec3 alb = v_col;
    if (u_has_albedo == 1) alb *= texture(u_albedo, v_uv).rgb;
    vec2 rs = u_rough_spec;
    if (u_has_material == 1) rs *= texture(u_material, v_uv).rg;
    vec3 nrm = normalize(v_nrm);
    if (u_has_normal_map == 1) {{
        vec3 t = normalize(v_tan.xyz - nrm * dot(nrm, v_tan.xyz));
        vec3 b = cross(nrm, t) * (v_tan.w < 0.0 ? -1.0 : 1.0);
        vec3 m = texture(u_normal_map, v_uv).xyz * 2.0 - 1.0;
        nrm = normalize(t * m.x + b * m.y + nrm * m.z);
    }}
    {body}
}}
"""


INSTALL_HINT = ("install the EGL/GL runtime (Debian/Ubuntu: apt-get install -y libegl1 libgl1 libegl-mesa0 "
                "libgl1-mesa-dri) or use --backend torch")


class GLBuffers(dict):
    """What one GL draw read back (the raw targets; `renderer.GBuffer` is the packed, typed form), row 0 at
    the top. Keys (H, W[, C]) float32 unless noted:

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


TEX_CACHE_SIZE = 16  # GL textures kept between draws (about five heads' maps); older ones are re-uploaded


class GLRasterizer:
    """Rasterizes meshes into `GLBuffers`s; reuse it across frames (programs, buffers and textures persist)."""

    def __init__(self):
        self.ctx = gl_context()
        self._programs: dict[tuple, object] = {}
        self._fbos: dict[tuple, tuple] = {}
        self._tex_cache: dict[int, object] = {}
        self._static: tuple | None = None

    def _program(self, outputs: tuple[str, ...], defines: tuple = ()):
        key = (outputs, defines)
        if key not in self._programs:
            self._programs[key] = self.ctx.program(vertex_shader=_VERTEX, fragment_shader=_fragment(outputs, defines))
        return self._programs[key]

    def _framebuffer(self, width: int, height: int, outputs: tuple[str, ...]):
        key = (width, height, outputs)
        if key not in self._fbos:
            ctx = self.ctx
            if len(self._fbos) > 8:  # many sizes (e.g. --ssaa plus thumbnails): free the GL objects
                for fbo, targets in self._fbos.values():
                    for tex in targets.values():
                        tex.release()
                    fbo.release()
                self._fbos.clear()
            targets = {o: ctx.texture((width, height), _OUTPUTS[o][1], dtype=_OUTPUTS[o][2]) for o in outputs}
            depth = ctx.depth_renderbuffer((width, height))
            self._fbos[key] = (ctx.framebuffer(color_attachments=list(targets.values()), depth_attachment=depth),
                               targets)
        return self._fbos[key]

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
        self._tex_cache[key] = (image, tex)  # keep the array alive so its id stays unique
        return tex

    def _trim_textures(self, keep: set) -> None:
        """Release cached textures once there are more than TEX_CACHE_SIZE, never those in `keep` (what this
        draw binds: releasing a texture already bound to a unit let the next upload take its place, so a head
        could be drawn with another texture, depending on what earlier draws had cached)."""
        if len(self._tex_cache) <= TEX_CACHE_SIZE:
            return
        for key in [k for k in self._tex_cache if k not in keep]:
            self._tex_cache.pop(key)[1].release()

    def rasterize(self, verts, faces, camera, normals=None, uv=None, uv_faces=None, colors=None,
                  albedo_map=None, material_map=None, roughness: float = 0.5, specular: float = 1.0,
                  normal_map=None,
                  passes=None, packed: bool = False, shading: dict | None = None) -> GLBuffers:
        """Rasterize a triangle mesh.

        Args:
            verts: (V, 3) world positions (cm). faces: (F, 3) int triangles.
            camera: `Camera`.
            normals: (V, 3) vertex normals (default: area-weighted from the mesh).
            uv, uv_faces: (T, 2) texture coordinates and (F, 3) corner indices (default: none, uv = 0).
            colors: (V, 3) linear per-vertex albedo, default 0.7 grey; multiplied by the albedo map.
            albedo_map: (H, W, 3|4) sRGB image (uint8 or float in [0, 1]), row 0 = top (v = 1).
            material_map: (H, W, 2+) linear image, channel 0 roughness scale, channel 1 specular scale.
            normal_map: (H, W, 3) tangent-space normal map (x along +u, y along +v, z out; encoded n/2 + 0.5).
            roughness, specular: material constants (scaled by material_map when given).
            passes: names to read back (default all); fewer passes mean less readback time.
            packed: return only covered pixels (see `_read`), as the renderer wants them.
            shading: uniforms from `shading_gl.light_uniforms`; given, the "color" pass (sRGB, shaded in
                GLSL) is rendered too.
        """
        verts = np.asarray(verts, np.float32)
        faces = np.asarray(faces, np.int64)
        want = (set(passes or ALL_PASSES) - {"color"}) | {"mask"} | ({"color"} if shading else set())
        outputs = tuple(o for o in _OUTPUTS if want & _NEEDS[o])
        shading = dict(shading or {})
        defines = tuple((k, shading.pop(k)) for k in DEFINES if k in shading) if "color" in outputs else ()
        prog = self._program(outputs, defines)
        nrm = _vertex_normals(verts, faces) if normals is None else np.asarray(normals, np.float32)
        col = np.full((len(verts), 3), 0.7, np.float32) if colors is None else np.asarray(colors, np.float32)
        remap, index, uvs = self._topology(faces, uv, uv_faces)
        dynamic = np.concatenate([verts, nrm, col], 1)[remap]  # (V', 9): vertices split at uv seams
        vbo = self.ctx.buffer(np.ascontiguousarray(dynamic, np.float32).tobytes())
        names = [n for n in ("in_pos", "in_nrm", "in_col") if n in prog]
        layout = " ".join("3f" if n in names else "12x" for n in ("in_pos", "in_nrm", "in_col"))
        content = [(vbo, layout, *names)] + ([(uvs, "2f", "in_uv")] if "in_uv" in prog else [])
        tan_vbo = None
        if normal_map is not None and uv is not None and "in_tan" in prog:
            uvf = np.asarray(uv_faces if uv_faces is not None else faces, np.int64)
            tangents = uv_tangents(verts, faces, np.asarray(uv, np.float32), uvf)[self._static[2]]
            tan_vbo = self.ctx.buffer(np.ascontiguousarray(tangents, np.float32).tobytes())
            content.append((tan_vbo, "4f", "in_tan"))
        vao = self.ctx.vertex_array(prog, content, index_buffer=index, index_element_size=4)
        self._bind(prog, camera, {"u_rough_spec": (float(roughness), float(specular)), **(shading or {})},
                   {"albedo": albedo_map, "material": material_map, "normal_map": normal_map if tan_vbo else None})
        fbo, targets = self._framebuffer(camera.width, camera.height, outputs)
        fbo.use()
        self.ctx.viewport = (0, 0, camera.width, camera.height)
        fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        self.ctx.enable(self.ctx.DEPTH_TEST)
        self.ctx.disable(self.ctx.CULL_FACE)
        vao.render()  # (a depth pre-pass was measured slower on llvmpipe)
        self._last = (verts, faces, camera.clip_matrix())
        out = self._read(targets, camera, want, packed)
        vao.release()
        vbo.release()
        if tan_vbo is not None:
            tan_vbo.release()
        return out

    def _bind(self, prog, camera, uniforms: dict, textures: dict) -> None:
        """Set the camera, material/light uniforms and texture units that `prog` uses."""
        clip = camera.clip_matrix().astype(np.float32)
        prog["u_clip"].write(np.ascontiguousarray(clip.T).tobytes())  # GL is column-major
        prog["u_zrow"].value = tuple(float(v) for v in camera.world_to_camera()[2])
        self._trim_textures({(id(image), name == "albedo") for name, image in textures.items() if image is not None})
        for unit, (name, image) in enumerate(textures.items()):
            uniforms[f"u_has_{name}"] = int(image is not None)
            if image is not None and f"u_{name}" in prog:
                self._texture(image, srgb=name == "albedo").use(location=unit)  # only albedo is sRGB
                prog[f"u_{name}"].value = unit
        for name, value in uniforms.items():
            if name in prog:
                member = prog[name]
                if isinstance(value, list):  # arrays may be shortened by the compiler to the part in use
                    value = value[:member.array_length]
                    value = value[0] if member.array_length == 1 else value
                member.value = value

    def _topology(self, faces, uv, uv_faces):
        """Split vertices at uv seams once per topology: (remap (V',), index buffer, uv buffer), cached.

        Indexed drawing keeps gl_PrimitiveID equal to the triangle index and moves 3F corners per frame
        down to V' (about 1.1 V) vertices.
        """
        key = (faces, uv, uv_faces)
        if self._static is not None and all(a is b for a, b in zip(self._static[0], key, strict=True)):
            return self._static[1]
        uv_index = None
        if uv is None:
            remap, index = np.arange(int(faces.max()) + 1), faces.reshape(-1)
            uvc = np.zeros((len(remap), 2), np.float32)
        else:
            uvf = np.asarray(uv_faces if uv_faces is not None else faces, np.int64)
            pairs = np.stack([faces.reshape(-1), uvf.reshape(-1)], 1)
            unique, index = np.unique(pairs, axis=0, return_inverse=True)
            remap, uvc, uv_index = unique[:, 0], np.asarray(uv, np.float32)[unique[:, 1]], unique[:, 1]
        if self._static is not None:
            for buf in self._static[1][1:]:  # (remap, ibo, uvs): release the GL buffers
                buf.release()
        ibo = self.ctx.buffer(np.ascontiguousarray(index, np.int32).tobytes())
        uvs = self.ctx.buffer(np.ascontiguousarray(uvc, np.float32).tobytes())
        self._static = (key, (remap, ibo, uvs), uv_index)
        return self._static[1]

    def _read(self, targets: dict, camera, want: set, packed: bool) -> GLBuffers:
        """Read the targets back. Packed: only covered pixels, as (N, C) arrays plus their flat image-order
        index `pix` and the image `shape` (skips flipping and copying the background)."""
        width, height = camera.width, camera.height
        depth = np.frombuffer(targets["depth"].read(), np.float32)
        sel = np.flatnonzero(depth > 0)  # GL order: row 0 at the bottom
        rows, cols = height - 1 - sel // width, sel % width
        gb = GLBuffers(pix=rows * width + cols, shape=(height, width))
        gb["mask"] = np.ones(len(sel), bool)
        z = depth[sel]
        gb["depth"] = z
        if "position" in want:
            gb["position"] = _unproject(camera, cols, rows, z)
        for name in ("nrmspec", "albrough", "uv", "color"):
            if name in targets:
                dt = np.float16 if _OUTPUTS[name][2] == "f2" else np.float32
                arr = np.frombuffer(targets[name].read(), dt).reshape(-1, _OUTPUTS[name][1])[sel].astype(np.float32)
                if name == "nrmspec":
                    n = arr[:, :3]
                    gb["normal"] = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
                    gb["specular"] = arr[:, 3]
                elif name == "albrough":
                    gb["albedo"], gb["roughness"] = arr[:, :3], arr[:, 3]
                elif name == "color":
                    gb["color"] = arr[:, :3]
                else:
                    gb["uv"] = arr[:, :2]
        if "face" in targets:
            gb["face_id"] = np.frombuffer(targets["face"].read(), np.int32)[sel].astype(np.int64) - 1
        if "bary" in want:
            gb["bary"] = _barycentrics(*self._last, gb, width, height)
        return gb if packed else unpack(gb)


def _barycentrics(verts, faces, clip_matrix, gb, width, height) -> np.ndarray:
    """Perspective-correct barycentrics (N, 3) of covered pixels from their triangle (no extra GL output)."""
    import torch

    from topos_cli.render import raster_torch as rt

    clip = rt.to_clip(torch.from_numpy(np.asarray(verts, np.float64)), clip_matrix)
    pix = gb["pix"]
    rows, cols = pix // width, pix % width
    ndc = np.stack([(cols + 0.5) * (2.0 / width) - 1, 1 - (rows + 0.5) * (2.0 / height)], 1)
    frags = rt.Fragments(torch.zeros(1, height, width, dtype=torch.long), torch.from_numpy(pix),
                         torch.from_numpy(gb["face_id"]), torch.from_numpy(ndc))
    return rt.barycentrics(clip, torch.from_numpy(faces), frags).numpy().astype(np.float32)


def _unproject(camera, cols: np.ndarray, rows: np.ndarray, z: np.ndarray) -> np.ndarray:
    """World positions (N, 3) of pixel centres at camera depth z (pinhole)."""
    z = z.astype(np.float64)
    cam = np.stack([(cols + 0.5 - camera.cx) / camera.fx * z, (rows + 0.5 - camera.cy) / camera.fy * z, z], 1)
    return ((cam - camera.t) @ np.asarray(camera.R)).astype(np.float32)


ALL_PASSES = ("mask", "depth", "position", "normal", "uv", "bary", "face_id", "albedo", "roughness", "specular")


def unpack(gb: GLBuffers) -> GLBuffers:
    """Packed G-buffer to (H, W[, C]) images, row 0 at the top (background 0, face_id -1, mask False)."""
    h, w = gb["shape"]
    out = GLBuffers()
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


def uv_tangents(verts: np.ndarray, faces: np.ndarray, uv: np.ndarray, uv_faces: np.ndarray) -> np.ndarray:
    """Per-uv-vertex tangents (T, 4): xyz along +u in world space (area-weighted), w = handedness (+1/-1)."""
    p = verts[faces]  # (F, 3, 3)
    t = uv[uv_faces]  # (F, 3, 2)
    dp1, dp2 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    dt1, dt2 = t[:, 1] - t[:, 0], t[:, 2] - t[:, 0]
    det = dt1[:, 0] * dt2[:, 1] - dt2[:, 0] * dt1[:, 1]
    sign = np.where(det < 0, -1.0, 1.0)[:, None]
    tan = (dp1 * dt2[:, 1:2] - dp2 * dt1[:, 1:2]) * sign  # along +u, scaled by uv-area (weights)
    bit = (dp2 * dt1[:, 0:1] - dp1 * dt2[:, 0:1]) * sign  # along +v
    idx = uv_faces.reshape(-1)
    acc_t = np.stack([np.bincount(idx, np.repeat(tan[:, k], 3), len(uv)) for k in range(3)], 1)
    acc_b = np.stack([np.bincount(idx, np.repeat(bit[:, k], 3), len(uv)) for k in range(3)], 1)
    normal = np.cross(dp1, dp2)
    acc_n = np.stack([np.bincount(idx, np.repeat(normal[:, k], 3), len(uv)) for k in range(3)], 1)
    hand = np.where((np.cross(acc_n, acc_t) * acc_b).sum(1) < 0, -1.0, 1.0)
    acc_t /= np.maximum(np.linalg.norm(acc_t, axis=1, keepdims=True), 1e-12)
    return np.concatenate([acc_t, hand[:, None]], 1).astype(np.float32)
