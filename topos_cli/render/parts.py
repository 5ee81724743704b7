"""Eyes and mouth interior in renders: the template's parts appended to a skin `RenderMesh`.

    mesh, material = with_parts(template, mesh, material)          # placed by fitting the skin
    mesh, material = with_parts(template, mesh, material, identity=w, expression={"jawOpen": 0.8})
    renderer = PartsRenderer("gl", template="topos-head")            # what `topos render` uses by default

The parts get flat per-vertex colours (template.json `parts.materials`: sclera, iris, pupil, teeth, gums,
a dark mouth socket). The renderer multiplies vertex colours by the albedo map, so the parts' UVs point into
`parts.uv_patch`, a square of the skin's UV padding that this module paints white in copies of the maps
(neutral normal, the parts' roughness), cached per source map. Data passes see the parts too: the region
label of their faces is -1 and their uv pass reads the patch. `PartsRenderer` (a `Renderer` that appends the
parts to every head in its template's topology) also reports their face_id as -1 and cuts the per-vertex
outputs (visibility, vertex_pixels, vertex_depth) back to the skin's vertices, so every pass indexes the
template as before.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from topos_cli.errors import ToposError
from topos_cli.render.renderer import CLAY, Material, Renderer, RenderMesh
from topos_cli.template import Template, load_template

PART_ROUGHNESS_DEFAULT = 0.3  # wet eyes and teeth are glossier than skin
_PAINTED: dict = {}  # (id(source map), kind) -> (source, painted copy): painted once per texture
_COMBINED: dict = {}  # ids of the skin's topology arrays -> (those arrays, skin + parts topology)


def with_parts(template: Template, mesh: RenderMesh, material: Material | None = None, identity=None,
               expression: dict | None = None, placed: np.ndarray | None = None) -> tuple[RenderMesh, Material]:
    """The skin mesh with the template's parts appended, and a material whose maps carry the white patch.

    Args:
        template: the skin's template; without parts (or for a mesh not in its topology) nothing changes.
        mesh: the skin in template vertex order.
        material: the skin's material (None: clay).
        identity, expression: the bases weights the skin was made with; None places the parts by fitting
            the skin (geometry/parts.fit_parts), which works for any head in template topology.
        placed: (P, 3) part vertices already placed (skips both).
    """
    material = material or Material()
    parts = template.parts
    skin = np.asarray(mesh.verts.detach().cpu().numpy() if hasattr(mesh.verts, "detach") else mesh.verts)
    if parts is None or skin.shape != (template.num_verts, 3):
        return mesh, material
    from topos_cli.geometry.parts import fit_parts, part_verts

    if placed is not None:
        pts = np.asarray(placed, np.float32)
    elif identity is not None or expression:
        pts = part_verts(template, identity, expression)
    else:
        pts = fit_parts(template, skin)
    n = len(skin)
    colors = np.concatenate([_skin_colors(mesh, material, n), _part_colors(parts)]).astype(np.float32)
    faces, uv, uv_faces, labels = _combined_topology(parts, mesh, n)
    normals = None
    if mesh.normals is not None:
        from topos_cli.geometry.mesh_ops import vertex_normals

        normals = np.concatenate([np.asarray(mesh.normals, np.float32),
                                  vertex_normals(pts.astype(np.float32), parts.faces)])
    out = replace(mesh, verts=np.concatenate([skin.astype(np.float32), pts]), faces=faces, normals=normals,
                  uv=uv, uv_faces=uv_faces, colors=colors, face_labels=labels)
    return out, _painted_material(material, parts.spec)


def _combined_topology(parts, mesh: RenderMesh, n: int) -> tuple:
    """(faces, uv, uv_faces, face_labels) of skin + parts, cached per skin arrays: the same objects come back
    for every head of a topology, so the GL rasterizer's per-topology cache keeps hitting."""
    sources = (mesh.faces, mesh.uv, mesh.uv_faces, mesh.face_labels, parts)
    key = (*(id(a) for a in sources), n)
    hit = _COMBINED.get(key)
    if hit is not None and all(a is b for a, b in zip(hit[0], sources, strict=True)):
        return hit[1]
    faces = np.concatenate([np.asarray(mesh.faces), parts.faces + n])
    labels = None if mesh.face_labels is None else \
        np.concatenate([mesh.face_labels, np.full(len(parts.faces), -1, np.int64)])
    uv, uv_faces = mesh.uv, mesh.uv_faces
    if uv is not None:
        lo, hi = np.asarray(parts.spec["uv_patch"][:2]), np.asarray(parts.spec["uv_patch"][2:])
        inner = lo + 0.25 * (hi - lo) + 0.5 * (hi - lo) * parts.uv  # the middle of the patch: mips stay white
        uv_faces = np.concatenate([np.asarray(uv_faces if uv_faces is not None else mesh.faces),
                                   parts.uv_faces + len(uv)])
        uv = np.concatenate([np.asarray(uv, np.float32), inner.astype(np.float32)])
    if len(_COMBINED) > 8:
        _COMBINED.clear()
    _COMBINED[key] = (sources, (faces, uv, uv_faces, labels))
    return _COMBINED[key][1]


def _skin_colors(mesh: RenderMesh, material: Material, n: int) -> np.ndarray:
    """What the renderer would use for the skin alone (vertex colours, white under a texture, or clay)."""
    if mesh.colors is not None:
        return np.asarray(mesh.colors, np.float32)[:, :3]
    if material.albedo_map is not None:
        return np.ones((n, 3), np.float32)
    return np.tile(np.asarray(CLAY, np.float32), (n, 1))


def _part_colors(parts) -> np.ndarray:
    order = parts.spec["material_order"]
    table = np.asarray([parts.spec["materials"][m]["color"] for m in order], np.float32)
    return table[parts.vertex_material]


def _painted_material(material: Material, spec: dict) -> Material:
    """Copies of the maps with the parts' UV patch painted (albedo white, neutral normal, glossy)."""
    if material.albedo_map is None and material.material_map is None and material.normal_map is None:
        return material
    rough = PART_ROUGHNESS_DEFAULT / max(material.roughness, 1e-6)
    values = {"albedo": 255, "material": (min(rough, 1.0) * 255, min(1.0 / max(material.specular, 1e-6), 1.0) * 255),
              "normal": (128, 128, 255)}
    maps = {}
    for kind, image in (("albedo", material.albedo_map), ("material", material.material_map),
                        ("normal", material.normal_map)):
        maps[kind] = None if image is None else _paint(image, spec["uv_patch"], values[kind], kind)
    return replace(material, albedo_map=maps["albedo"], material_map=maps["material"], normal_map=maps["normal"])


def _paint(image: np.ndarray, patch, value, kind: str) -> np.ndarray:
    key = (id(image), kind)
    hit = _PAINTED.get(key)
    if hit is not None and hit[0] is image:
        return hit[1]
    out = np.array(image, copy=True)
    h, w = out.shape[:2]
    u0, v0, u1, v1 = patch
    rows = slice(int(np.floor((1 - v1) * h)), int(np.ceil((1 - v0) * h)))  # row 0 = v 1
    cols = slice(int(np.floor(u0 * w)), int(np.ceil(u1 * w)))
    channels = out.shape[2] if out.ndim == 3 else 1
    fill = np.broadcast_to(np.asarray(value, np.float64), (channels,)) if np.ndim(value) else np.full(channels, value)
    scale = 1.0 if out.dtype == np.uint8 else 1.0 / 255.0
    out[rows, cols] = (fill[:channels] * scale).astype(out.dtype) if out.ndim == 3 else fill[0] * scale
    if len(_PAINTED) > 64:
        _PAINTED.clear()
    _PAINTED[key] = (image, out)
    return out


PER_VERTEX_OUTPUTS = ("visibility", "vertex_pixels", "vertex_depth")


class PartsRenderer(Renderer):
    """A `Renderer` that draws its template's eye and mouth parts with every head in that template's topology.

    Other meshes render unchanged. The parts of the last head are cached (a dataset renders each head from
    several cameras), so the skin fit runs once per head.
    """

    def __init__(self, backend: str = "gl", device: str = "cpu", template=None):
        super().__init__(backend, device)
        try:
            self.template = template if isinstance(template, Template) else load_template(template)
        except ToposError:  # an unloadable template is reported where the meshes are loaded
            self.template = None
        self._last: tuple | None = None  # (skin verts object, placed parts)

    def render(self, mesh: RenderMesh, camera, material: Material | None = None, rig=None, shading: str = "ggx",
               passes=("color",), ssaa: int = 1, normal_space: str = "world") -> dict:
        tpl = self.template
        n_verts, n_faces = len(mesh.verts), len(mesh.faces)
        if tpl is None or tpl.parts is None or n_verts != tpl.num_verts or \
                not np.array_equal(np.asarray(mesh.faces), tpl.faces):
            return super().render(mesh, camera, material, rig, shading, passes, ssaa, normal_space)
        if self._last is None or self._last[0] is not mesh.verts:
            from topos_cli.geometry.parts import fit_parts

            skin = mesh.verts.detach().cpu().numpy() if hasattr(mesh.verts, "detach") else mesh.verts
            self._last = (mesh.verts, fit_parts(tpl, np.asarray(skin)))
        full, full_material = with_parts(tpl, mesh, material, placed=self._last[1])
        out = super().render(full, camera, full_material, rig, shading, passes, ssaa, normal_space)
        if "face_id" in out:
            out["face_id"] = np.where(out["face_id"] >= n_faces, -1, out["face_id"])
        for key in PER_VERTEX_OUTPUTS:
            if key in out:
                out[key] = out[key][:n_verts]
        return out
