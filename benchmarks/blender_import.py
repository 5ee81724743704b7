"""Does a real client read topos's exports right? Blender (the `bpy` wheel) imports a GLB or USD and checks it.

    pip install --target /tmp/bpylib --no-deps bpy        # ~370 MB; Blender 5.x as a Python module
    topos export -o runs/head.glb --lod 0,1                # any topos GLB
    PYTHONPATH=/tmp/bpylib python benchmarks/blender_import.py runs/head.glb [--render runs/head_blender.png]

Checks, printed as one JSON object: the ARKit-named shape keys (52 + Basis), a UV layer, the material's base
colour / normal / roughness textures, the head's height in Blender (metres; ~0.3), the armature's bones (jaw,
eyes), smooth shading (no flat faces), and that setting Blender's `jawOpen` shape key to 1 moves every vertex
by topos's own jawOpen delta (max difference in metres; the issue asks <= 1e-5). `--render` writes a Cycles
CPU render of the imported head with jawOpen 0.6 (docs/blender_import.png is one such render).
"""

from __future__ import annotations

import argparse
import array
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _coords(mesh, shape_key=None) -> np.ndarray:
    """(N, 3) vertex positions of a Blender mesh (or of one shape key), read through a flat float buffer."""
    source = shape_key.data if shape_key is not None else mesh.vertices
    flat = array.array("f", [0.0]) * (len(source) * 3)
    source.foreach_get("co", flat)
    return np.frombuffer(flat, np.float32).reshape(-1, 3).astype(np.float64)


def _expected(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """LOD0's vertices (skin seam copies, then the eye/mouth parts) and their jawOpen deltas, glTF frame, as
    topos wrote them (Blender joins a mesh's primitives into one object)."""
    from topos_cli.io.gltf import _load, _read_accessor

    doc, blob = _load(path)
    names = doc["meshes"][0]["extras"]["targetNames"]
    pos, jaw = [], []
    for prim in doc["meshes"][0]["primitives"]:
        pos.append(_read_accessor(doc, blob, prim["attributes"]["POSITION"]).astype(np.float64))
        jaw.append(_read_accessor(doc, blob, prim["targets"][names.index("jawOpen")]["POSITION"]).astype(np.float64))
    return np.concatenate(pos), np.concatenate(jaw), names


def _expected_usd(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """LOD0's points and jawOpen offsets (metres, USD frame) as topos wrote them."""
    from topos_cli.io.usd import read_usd_head

    head = read_usd_head(path)
    return head.verts / 100.0, head.morphs[head.morph_names.index("jawOpen")] / 100.0, head.morph_names


def check(path: Path) -> dict:
    import bpy
    from scipy.spatial import cKDTree

    bpy.ops.wm.read_factory_settings(use_empty=True)
    is_usd = path.suffix.lower() in (".usd", ".usda", ".usdc", ".usdz")
    if is_usd:
        bpy.ops.wm.usd_import(filepath=str(path))
    else:
        bpy.ops.import_scene.gltf(filepath=str(path))
    meshes = [o for o in bpy.context.scene.objects if o.type == "MESH" and o.data.shape_keys]
    arm = [o for o in bpy.context.scene.objects if o.type == "ARMATURE"]
    obj = max(meshes, key=lambda o: len(o.data.vertices))
    keys = obj.data.shape_keys.key_blocks
    mat = obj.active_material
    images = sorted({n.image.name for n in mat.node_tree.nodes if n.type == "TEX_IMAGE" and n.image}) if mat else []
    rest = _coords(obj.data)
    world = np.array(obj.matrix_world)
    rest_w = rest @ world[:3, :3].T + world[:3, 3]
    pos, jaw, names = _expected_usd(path) if is_usd else _expected(path)
    to_blender = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], np.float64)  # glTF +Y up -> Blender +Z up
    dist, idx = cKDTree(pos @ to_blender.T).query(rest_w)
    moved = _coords(obj.data, keys["jawOpen"]) - rest  # the key's full-weight offset, object space
    moved_w = moved @ world[:3, :3].T
    want = jaw[idx] @ to_blender.T
    return {
        "file": str(path), "blender": bpy.app.version_string, "mesh_vertices": len(rest),
        "shape_keys": len(keys) - 1, "arkit_names_match": [k.name for k in keys][1:] == names,
        "uv_layers": len(obj.data.uv_layers), "textures": images,
        "height_m": round(float(np.ptp(rest_w[:, 2])), 4),
        "bones": [b.name for b in arm[0].data.bones] if arm else [],
        "smooth_faces": float(np.mean([p.use_smooth for p in obj.data.polygons])),
        "vertex_match_max_m": float(dist.max()),
        "jawOpen_max_diff_m": float(np.abs(moved_w - want).max()),
    }


def render(path: Path, out: Path) -> None:
    import bpy

    obj = max((o for o in bpy.context.scene.objects if o.type == "MESH" and o.data.shape_keys),
              key=lambda o: len(o.data.vertices))
    obj.data.shape_keys.key_blocks["jawOpen"].value = 0.6
    scene = bpy.context.scene
    cam = bpy.data.objects.new("cam", bpy.data.cameras.new("cam"))
    scene.collection.objects.link(cam)
    cam.location, cam.rotation_euler = (0.0, -0.9, 0.02), (1.5708, 0.0, 0.0)
    scene.camera = cam
    light = bpy.data.objects.new("key", bpy.data.lights.new("key", "SUN"))
    scene.collection.objects.link(light)
    light.rotation_euler = (0.9, 0.2, 0.4)
    scene.render.engine = "CYCLES"
    scene.cycles.samples = 16
    scene.render.resolution_x = scene.render.resolution_y = 384
    scene.render.filepath = str(out)
    bpy.ops.render.render(write_still=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("glb", type=Path)
    parser.add_argument("--render", type=Path, default=None)
    args = parser.parse_args()
    result = check(args.glb.resolve())
    if args.render is not None:
        render(args.glb, args.render.resolve())
        result["render"] = str(args.render.resolve())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
