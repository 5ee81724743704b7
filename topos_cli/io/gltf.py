"""glTF 2.0 writer and reader for production heads (`topos export`, `topos animate`).

`write_gltf(path, asset, maps, units, animation)` writes a `HeadAsset` as .glb (one binary file) or .gltf
(+ `<stem>.bin`):

* per LOD one mesh: POSITION, smooth NORMAL (computed on the welded template-order mesh, so no crease at
  UV seams), TANGENT, TEXCOORD_0, JOINTS_0/WEIGHTS_0 with a rig, and `_VERTEX_ID` (the template vertex each
  seam copy was split from, the convention of io/mesh.py's GLB writer, so topos welds its files back into
  template order); LOD1.. hang off LOD0 through `MSFT_lod`;
* named morph targets (`mesh.extras.targetNames`) with POSITION and NORMAL deltas as sparse accessors;
* a skin (inverse bind matrices) over the skeleton's joint nodes;
* one PBR material: baseColor, normal, metallic 0 with a roughness map, specular through
  `KHR_materials_specular`; images embedded as PNG;
* an optional animation: morph weights and joint rotations sampled per frame (LINEAR).

Units: glTF means metres, so `units="m"` (default) scales template centimetres by 0.01; `asset.extras.topos`
records the units, template and hash so `read_gltf_head` can undo it.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from topos_cli.errors import MeshError, UsageError
from topos_cli.geometry.asset import (
    AssetMesh,
    HeadAsset,
    morph_normal_deltas,
    smooth_normals,
    split_at_seams,
    tangent_frames,
)
from topos_cli.io.fs import atomic_path

UNIT_SCALE = {"m": 0.01, "cm": 1.0}  # from template centimetres
VERTEX_ID = "_VERTEX_ID"  # same attribute name as io/mesh.py's GLB writer
FLOAT, UBYTE, USHORT, UINT = 5126, 5121, 5123, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
LINEAR_MIPMAP_LINEAR, LINEAR, REPEAT = 9987, 9729, 10497
DEFAULT_BASE_COLOR = [0.80, 0.62, 0.52, 1.0]  # linear-ish mid skin tone when no albedo map is given
DEFAULT_ROUGHNESS = 0.55  # skin's perceptual roughness when no roughness map is given
# specular maps from `topos textures` store F0 scale / 2 (F0 = 0.028 * scale); glTF's F0 at the default IOR
# 1.5 is 0.04, so the specular colour factor 2 * 0.028 / 0.04 = 1.4 turns the map into glTF's F0 exactly
SPECULAR_COLOR_FACTOR = 1.4
PARTS_ROUGHNESS = 0.3  # eyes, teeth and mouth: the parts' materials range 0.2-0.6; wet surfaces dominate
LOD_COVERAGE = [0.5, 0.25, 0.12, 0.06]  # MSFT_screencoverage: switch LOD below this fraction of the screen


@dataclass
class PbrMaps:
    """Texture maps in the template's UV layout (row 0 = top of the image = v 1), uint8.

    Attributes:
        albedo: (H, W, 3|4) sRGB. normal: (H, W, 3) tangent-space, (n + 1) / 2, +Y along +v.
        roughness: (H, W) perceptual roughness. specular: (H, W) F0 scale / 2 (see SPECULAR_COLOR_FACTOR).
        name: material name.
        png: map name -> the PNG file's bytes when it can be embedded as is (8-bit RGB), saving a re-encode.
    """

    albedo: np.ndarray | None = None
    normal: np.ndarray | None = None
    roughness: np.ndarray | None = None
    specular: np.ndarray | None = None
    name: str = "skin"
    png: dict[str, bytes] = field(default_factory=dict)


@dataclass
class Animation:
    """Per-frame curves.

    Attributes:
        times: (T,) seconds, strictly increasing.
        weights: (T, K) morph weights in the asset's morph order, or None.
        rotations: joint name -> (T, 4) unit quaternions (x, y, z, w) relative to the rest pose.
        name: animation name.
    """

    times: np.ndarray
    weights: np.ndarray | None = None
    rotations: dict[str, np.ndarray] = field(default_factory=dict)
    name: str = "animation"


@dataclass
class GltfHead:
    """What `read_gltf_head` returns, in template units (cm).

    Attributes:
        verts: (V, 3) float32 LOD0 welded into template order. faces: (F, 3) int64 over them.
        morph_names: target names. morphs: (K, V, 3) float32 position deltas.
        lods: number of meshes reachable through MSFT_lod (1 without LODs). meta: `asset.extras.topos`.
    """

    verts: np.ndarray
    faces: np.ndarray
    morph_names: list[str]
    morphs: np.ndarray
    lods: int
    meta: dict


class _Builder:
    """Accumulates one binary buffer and the JSON objects pointing into it."""

    def __init__(self) -> None:
        self.blob = bytearray()
        self.doc: dict = {"asset": {"version": "2.0", "generator": "topos"}, "buffers": [], "bufferViews": [],
                          "accessors": []}

    def view(self, data: bytes, target: int | None = None) -> int:
        self.blob.extend(b"\0" * (-len(self.blob) % 4))  # every view starts 4-byte aligned
        entry = {"buffer": 0, "byteOffset": len(self.blob), "byteLength": len(data)}
        if target is not None:
            entry["target"] = target
        self.blob.extend(data)
        self.doc["bufferViews"].append(entry)
        return len(self.doc["bufferViews"]) - 1

    def accessor(self, array: np.ndarray, component: int, kind: str, target: int | None = ARRAY_BUFFER,
                 bounds: bool = False, normalized: bool = False) -> int:
        dtype = {FLOAT: "<f4", UBYTE: "u1", USHORT: "<u2", UINT: "<u4"}[component]
        data = np.ascontiguousarray(array, dtype=dtype)
        entry = {"bufferView": self.view(data.tobytes(), target), "componentType": component,
                 "count": int(len(data)), "type": kind}
        if normalized:
            entry["normalized"] = True
        if bounds:
            flat = data.reshape(len(data), -1)
            entry["min"], entry["max"] = _bounds(flat)
        self.doc["accessors"].append(entry)
        return len(self.doc["accessors"]) - 1

    def sparse_vec3(self, deltas: np.ndarray, bounds: bool) -> int:
        """A VEC3 float accessor of zeros with the non-zero rows stored sparsely (morph target deltas)."""
        deltas = np.asarray(deltas, "<f4")
        rows = np.flatnonzero(np.abs(deltas).max(1) > 0).astype("<u4")
        entry = {"componentType": FLOAT, "count": int(len(deltas)), "type": "VEC3"}
        if len(rows):
            entry["sparse"] = {"count": int(len(rows)),
                               "indices": {"bufferView": self.view(rows.tobytes()), "componentType": UINT},
                               "values": {"bufferView": self.view(np.ascontiguousarray(deltas[rows]).tobytes())}}
        if bounds:
            entry["min"], entry["max"] = _bounds(deltas)
        self.doc["accessors"].append(entry)
        return len(self.doc["accessors"]) - 1

    def add(self, key: str, item: dict) -> int:
        self.doc.setdefault(key, []).append(item)
        return len(self.doc[key]) - 1


def _bounds(flat: np.ndarray) -> tuple[list, list]:
    lo, hi = flat.min(0), flat.max(0)
    cast = float if flat.dtype.kind == "f" else int
    return [cast(v) for v in lo], [cast(v) for v in hi]


def write_gltf(path: str | Path, asset: HeadAsset, maps: PbrMaps | None = None, units: str = "m",
               animation: Animation | None = None) -> Path:
    """Write `asset` as .glb or .gltf (+ .bin); returns the path.

    Args:
        path: output file (.glb or .gltf).
        asset: LOD meshes, morph targets, skeleton (template units, cm).
        maps: texture maps, or None for factors only.
        units: "m" (glTF's own unit, default) or "cm".
        animation: optional curves (morph weights, joint rotations).
    """
    path = Path(path)
    if units not in UNIT_SCALE:
        raise UsageError(f"--units must be one of {sorted(UNIT_SCALE)}, got {units!r}")
    if path.suffix.lower() not in (".glb", ".gltf"):
        raise UsageError(f"{path}: a glTF file ends in .glb or .gltf")
    scale = UNIT_SCALE[units]
    b = _Builder()
    b.doc["asset"]["extras"] = {"topos": {"format": 1, "units": units, **asset.template,
                                          "morph_names": list(asset.morph_names)}}
    material = _material(b, maps)
    skin = _skin(b, asset, scale) if asset.skeleton is not None else None
    parts = _parts_primitive(b, asset, skin, scale) if asset.parts is not None else None
    mesh_nodes = [_mesh_node(b, asset, lod, k, material, skin, scale, parts) for k, lod in enumerate(asset.lods)]
    scene_nodes = [mesh_nodes[0]]
    if len(mesh_nodes) > 1:
        lod0 = b.doc["nodes"][mesh_nodes[0]]
        lod0["extensions"] = {"MSFT_lod": {"ids": mesh_nodes[1:]}}
        lod0["extras"] = {"MSFT_screencoverage": LOD_COVERAGE[: len(mesh_nodes)]}
        b.doc.setdefault("extensionsUsed", []).append("MSFT_lod")
    if skin is not None:
        scene_nodes.append(b.doc["skins"][skin]["joints"][0])
    b.doc["scenes"] = [{"name": asset.name, "nodes": scene_nodes}]
    b.doc["scene"] = 0
    if animation is not None:
        _animation(b, asset, animation, mesh_nodes, skin)
    with atomic_path(path) as tmp:
        _save(b, tmp, path)
    return path


def _save(b: _Builder, tmp: Path, final: Path) -> None:
    b.blob.extend(b"\0" * (-len(b.blob) % 4))
    b.doc["buffers"] = [{"byteLength": len(b.blob)}]
    if final.suffix.lower() == ".gltf":
        bin_name = final.stem + ".bin"
        b.doc["buffers"][0]["uri"] = bin_name
        with atomic_path(final.parent / bin_name) as btmp:
            btmp.write_bytes(bytes(b.blob))
        tmp.write_text(json.dumps(b.doc, separators=(",", ":")))
        return
    text = json.dumps(b.doc, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    body = bytes(b.blob)
    header = np.array([0x46546C67, 2, 12 + 8 + len(text) + 8 + len(body)], "<u4").tobytes()
    chunk_json = np.array([len(text), 0x4E4F534A], "<u4").tobytes() + text
    chunk_bin = np.array([len(body), 0x004E4942], "<u4").tobytes() + body
    tmp.write_bytes(header + chunk_json + chunk_bin)


def _mesh_node(b: _Builder, asset: HeadAsset, lod: AssetMesh, k: int, material: int, skin: int | None,
               scale: float, parts: dict | None) -> int:
    split = split_at_seams(lod.faces, lod.uv_faces)
    normals = smooth_normals(lod.verts, lod.faces)
    tangents = tangent_frames(lod.verts, normals, lod.uv, split)
    uv = np.asarray(lod.uv, np.float32)[split.uv_index]
    attributes = {
        "POSITION": b.accessor(lod.verts[split.source] * scale, FLOAT, "VEC3", bounds=True),
        "NORMAL": b.accessor(normals[split.source], FLOAT, "VEC3"),
        "TANGENT": b.accessor(tangents, FLOAT, "VEC4"),
        "TEXCOORD_0": b.accessor(np.stack([uv[:, 0], 1.0 - uv[:, 1]], 1), FLOAT, "VEC2"),  # glTF's v runs down
        VERTEX_ID: b.accessor(split.source.astype(np.float32), FLOAT, "SCALAR"),  # exact below 2^24
    }
    if skin is not None and lod.joints is not None:
        joints, weights = _sorted_influences(lod.joints[split.source], lod.weights[split.source])
        attributes["JOINTS_0"] = b.accessor(joints, UBYTE, "VEC4")
        attributes["WEIGHTS_0"] = b.accessor(weights, FLOAT, "VEC4")
    index_type = USHORT if len(split.source) < 65535 else UINT
    primitive = {"attributes": attributes, "material": material, "mode": 4,
                 "indices": b.accessor(split.faces.ravel(), index_type, "SCALAR", ELEMENT_ARRAY_BUFFER)}
    mesh = {"name": f"{asset.name}_LOD{k}", "primitives": [primitive] + ([parts] if parts else [])}
    if len(asset.morph_names):
        primitive["targets"] = _targets(b, lod, normals, split.source, scale)
        mesh["weights"] = [0.0] * len(asset.morph_names)
        mesh["extras"] = {"targetNames": list(asset.morph_names)}
    node = {"name": mesh["name"], "mesh": b.add("meshes", mesh)}
    if skin is not None:
        node["skin"] = skin
    return b.add("nodes", node)


def _targets(b: _Builder, mesh: AssetMesh, normals: np.ndarray, rows: np.ndarray, scale: float) -> list[dict]:
    """Sparse POSITION and NORMAL deltas of every morph target, for the (split) vertices `rows`."""
    normal_deltas = morph_normal_deltas(mesh.verts, mesh.faces, mesh.morphs, normals)
    return [{"POSITION": b.sparse_vec3(mesh.morphs[i][rows] * scale, bounds=True),
             "NORMAL": b.sparse_vec3(normal_deltas[i][rows], bounds=False)} for i in range(len(mesh.morphs))]


def _parts_primitive(b: _Builder, asset: HeadAsset, skin: int | None, scale: float) -> dict:
    """The eye and mouth parts as a second primitive (shared by every LOD mesh): vertex colours, rigid skin."""
    parts = asset.parts
    normals = smooth_normals(parts.verts, parts.faces)
    rows = np.arange(len(parts.verts))
    attributes = {"POSITION": b.accessor(parts.verts * scale, FLOAT, "VEC3", bounds=True),
                  "NORMAL": b.accessor(normals, FLOAT, "VEC3"),
                  "COLOR_0": b.accessor(parts.colors, FLOAT, "VEC3")}
    if skin is not None and parts.joints is not None:
        joints, weights = _sorted_influences(parts.joints, parts.weights)
        attributes["JOINTS_0"] = b.accessor(joints, UBYTE, "VEC4")
        attributes["WEIGHTS_0"] = b.accessor(weights, FLOAT, "VEC4")
    material = b.add("materials", {"name": "eyes_mouth", "doubleSided": False, "pbrMetallicRoughness": {
        "baseColorFactor": [1.0, 1.0, 1.0, 1.0], "metallicFactor": 0.0, "roughnessFactor": PARTS_ROUGHNESS}})
    index_type = USHORT if len(rows) < 65535 else UINT
    primitive = {"attributes": attributes, "material": material, "mode": 4,
                 "indices": b.accessor(parts.faces.ravel(), index_type, "SCALAR", ELEMENT_ARRAY_BUFFER)}
    if len(asset.morph_names):
        primitive["targets"] = _targets(b, parts, normals, rows, scale)
    return primitive


def _sorted_influences(joints: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Heaviest influence first, unused slots joint 0 (the validator flags zero weights on other joints)."""
    order = np.argsort(-weights, axis=1, kind="stable")
    joints, weights = np.take_along_axis(joints, order, 1), np.take_along_axis(weights, order, 1)
    joints = np.where(weights > 0, joints, 0)
    return joints, weights / weights.sum(1, keepdims=True)


def _skin(b: _Builder, asset: HeadAsset, scale: float) -> int:
    sk = asset.skeleton
    pos = np.asarray(sk.positions, np.float64) * scale
    first = len(b.doc.get("nodes", []))
    for j, name in enumerate(sk.names):
        parent = int(sk.parents[j])
        local = pos[j] - (pos[parent] if parent >= 0 else 0.0)
        children = [first + c for c in range(len(sk.names)) if int(sk.parents[c]) == j]
        node = {"name": name, "translation": [float(v) for v in local]}
        if children:
            node["children"] = children
        b.add("nodes", node)
    ibm = np.tile(np.eye(4), (len(sk.names), 1, 1))
    ibm[:, :3, 3] = -pos  # joints carry no rest rotation: the inverse bind is a translation
    matrices = b.accessor(ibm.transpose(0, 2, 1).reshape(len(sk.names), 16), FLOAT, "MAT4", target=None)
    return b.add("skins", {"name": f"{asset.name}_rig", "joints": list(range(first, first + len(sk.names))),
                           "skeleton": first, "inverseBindMatrices": matrices})


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, np.uint8)).save(out, format="PNG", optimize=False)
    return out.getvalue()


def _texture(b: _Builder, image: np.ndarray, name: str, encoded: bytes | None = None) -> dict:
    if not b.doc.get("samplers"):
        b.add("samplers", {"magFilter": LINEAR, "minFilter": LINEAR_MIPMAP_LINEAR, "wrapS": REPEAT, "wrapT": REPEAT})
    data = encoded if encoded is not None else _png(image)
    img = b.add("images", {"name": name, "mimeType": "image/png", "bufferView": b.view(data)})
    return {"index": b.add("textures", {"sampler": 0, "source": img, "name": name})}


def _material(b: _Builder, maps: PbrMaps | None) -> int:
    maps = maps or PbrMaps()
    pbr: dict = {"baseColorFactor": [1.0, 1.0, 1.0, 1.0] if maps.albedo is not None else DEFAULT_BASE_COLOR,
                 "metallicFactor": 0.0, "roughnessFactor": 1.0 if maps.roughness is not None else DEFAULT_ROUGHNESS}
    material: dict = {"name": maps.name, "pbrMetallicRoughness": pbr, "doubleSided": False}
    if maps.albedo is not None:
        pbr["baseColorTexture"] = _texture(b, maps.albedo[..., :3], "albedo", maps.png.get("albedo"))
    if maps.roughness is not None:  # glTF reads roughness from G and metalness from B
        rough = np.asarray(maps.roughness, np.uint8)
        pbr["metallicRoughnessTexture"] = _texture(b, np.stack([np.zeros_like(rough), rough, np.zeros_like(rough)], -1),
                                                   "roughness")
    if maps.normal is not None:
        material["normalTexture"] = _texture(b, maps.normal[..., :3], "normal", maps.png.get("normal"))
    specular = {"specularFactor": 1.0, "specularColorFactor": [SPECULAR_COLOR_FACTOR] * 3}
    if maps.specular is not None:  # KHR_materials_specular reads the strength from the alpha channel
        spec = np.asarray(maps.specular, np.uint8)
        full = np.full_like(spec, 255)
        specular["specularTexture"] = _texture(b, np.stack([full, full, full, spec], -1), "specular")
    material["extensions"] = {"KHR_materials_specular": specular}
    b.doc.setdefault("extensionsUsed", []).append("KHR_materials_specular")
    return b.add("materials", material)


def _animation(b: _Builder, asset: HeadAsset, anim: Animation, mesh_nodes: list[int], skin: int | None) -> None:
    times = np.asarray(anim.times, np.float32)
    if len(times) < 1 or (len(times) > 1 and (np.diff(times) <= 0).any()):
        raise UsageError("animation times must be strictly increasing")
    samplers, channels = [], []
    t_acc = b.accessor(times, FLOAT, "SCALAR", target=None, bounds=True)
    if anim.weights is not None:
        out = b.accessor(np.asarray(anim.weights, np.float32).reshape(-1), FLOAT, "SCALAR", target=None)
        samplers.append({"input": t_acc, "output": out, "interpolation": "LINEAR"})
        channels += [{"sampler": len(samplers) - 1, "target": {"node": n, "path": "weights"}} for n in mesh_nodes]
    if anim.rotations and skin is None:
        raise UsageError("joint rotations need a rig; export with --rig arkit")
    for name, quats in anim.rotations.items():
        node = b.doc["skins"][skin]["joints"][asset.skeleton.index(name)]
        q = np.asarray(quats, np.float64)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        samplers.append({"input": t_acc, "output": b.accessor(q, FLOAT, "VEC4", target=None),
                         "interpolation": "LINEAR"})
        channels.append({"sampler": len(samplers) - 1, "target": {"node": node, "path": "rotation"}})
    b.add("animations", {"name": anim.name, "samplers": samplers, "channels": channels})


# ------------------------------------------------------------------------------------------------ reading
_DTYPES = {5120: "i1", UBYTE: "u1", 5122: "<i2", USHORT: "<u2", UINT: "<u4", FLOAT: "<f4"}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


def read_gltf_head(path: str | Path) -> GltfHead:
    """Read the first mesh of a glTF file's scene welded back into template order (via `_VERTEX_ID`).

    Positions and morph deltas come back in centimetres (the file's `asset.extras.topos.units`, else
    glTF's metres). Raises MeshError for unreadable files or files without a mesh.
    """
    path = Path(path)
    doc, blob = _load(path)
    topos = (doc.get("asset", {}).get("extras") or {}).get("topos", {})
    to_cm = 1.0 / UNIT_SCALE.get(topos.get("units", "m"), 0.01)
    scene = doc.get("scenes", [{}])[doc.get("scene", 0)]
    node = next((doc["nodes"][n] for n in scene.get("nodes", []) if "mesh" in doc["nodes"][n]), None)
    if node is None:
        raise MeshError(f"{path}: no mesh in the default scene")
    mesh = doc["meshes"][node["mesh"]]
    prim = mesh["primitives"][0]
    attrs = prim["attributes"]
    pos = _read_accessor(doc, blob, attrs["POSITION"]) * to_cm
    faces = _read_accessor(doc, blob, prim["indices"]).astype(np.int64).reshape(-1, 3)
    ids = np.arange(len(pos))
    if VERTEX_ID in attrs:
        ids = np.rint(_read_accessor(doc, blob, attrs[VERTEX_ID])).astype(np.int64).reshape(-1)
    count = int(ids.max()) + 1
    verts = np.zeros((count, 3), np.float32)
    verts[ids] = pos
    targets = prim.get("targets", [])
    morphs = np.zeros((len(targets), count, 3), np.float32)
    for k, target in enumerate(targets):
        morphs[k][ids] = _read_accessor(doc, blob, target["POSITION"]) * to_cm
    names = (mesh.get("extras") or {}).get("targetNames", [f"target{k}" for k in range(len(targets))])
    lods = 1 + len(((node.get("extensions") or {}).get("MSFT_lod") or {}).get("ids", []))
    return GltfHead(verts, ids[faces], list(names), morphs, lods, topos)


def _load(path: Path) -> tuple[dict, bytes]:
    if not path.is_file():
        raise MeshError(f"{path}: no such file")
    data = path.read_bytes()
    try:
        if data[:4] == b"glTF":
            json_len = int(np.frombuffer(data[12:16], "<u4")[0])
            doc = json.loads(data[20:20 + json_len])
            rest = data[20 + json_len:]
            blob = rest[8:8 + int(np.frombuffer(rest[:4], "<u4")[0])] if len(rest) >= 8 else b""
        else:
            doc = json.loads(data)
            uri = doc.get("buffers", [{}])[0].get("uri")
            blob = (path.parent / uri).read_bytes() if uri else b""
    except (ValueError, OSError, IndexError) as exc:
        raise MeshError(f"{path}: cannot read glTF ({type(exc).__name__}: {exc})") from None
    return doc, blob


def _read_accessor(doc: dict, blob: bytes, index: int) -> np.ndarray:
    acc = doc["accessors"][index]
    width, dtype = _WIDTH[acc["type"]], np.dtype(_DTYPES[acc["componentType"]])
    out = np.zeros((acc["count"], width), dtype)
    if "bufferView" in acc:
        out = _view_array(doc, blob, acc["bufferView"], acc.get("byteOffset", 0), acc["count"], width, dtype)
    if "sparse" in acc:
        sp = acc["sparse"]
        idx = _view_array(doc, blob, sp["indices"]["bufferView"], sp["indices"].get("byteOffset", 0), sp["count"], 1,
                          np.dtype(_DTYPES[sp["indices"]["componentType"]])).reshape(-1)
        out = out.copy()
        out[idx] = _view_array(doc, blob, sp["values"]["bufferView"], sp["values"].get("byteOffset", 0), sp["count"],
                               width, dtype)
    return out.astype(np.float32) if dtype.kind == "f" else out.reshape(-1) if width == 1 else out


def _view_array(doc, blob, view_index, offset, count, width, dtype) -> np.ndarray:
    view = doc["bufferViews"][view_index]
    start = view.get("byteOffset", 0) + offset
    stride = view.get("byteStride", width * dtype.itemsize)
    raw = np.frombuffer(blob, np.uint8, count=max(stride * (count - 1) + width * dtype.itemsize, 0), offset=start)
    rows = np.lib.stride_tricks.as_strided(raw, (count, width * dtype.itemsize), (stride, 1)) if count else raw
    return np.ascontiguousarray(rows).view(dtype).reshape(count, width)
