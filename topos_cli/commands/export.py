"""`topos export` and `topos template lod` as functions: production assets of one head (`topos animate`: animate.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from topos_cli.errors import UsageError
from topos_cli.template import Template, load_template

GLTF_SUFFIXES = (".glb", ".gltf")
USD_SUFFIXES = (".usd", ".usda", ".usdc", ".usdz")
EXPORT_SUFFIXES = GLTF_SUFFIXES + USD_SUFFIXES + (".obj",)
FBX_REASON = ("FBX is not written: the only maintained FBX writer is Autodesk's FBX SDK, whose Python bindings are "
              "not installable from PyPI; export .glb (Blender, Unity, Unreal, three.js) or .usdz/.usd instead")


def export(head: str | Path | None, out: str | Path, template: str | Path | None = None,
           texture: str | Path | None = None, rig: str = "arkit", lod: list[int] | None = None, units: str = "m",
           names: str = "arkit", method: str = "auto", animation: str | Path | None = None,
           fps: float | None = None) -> dict:
    """Write a head in template topology as a rigged, textured, multi-LOD asset (`topos export`).

    Args:
        head: a mesh file in template topology (template, augment, retopo, generate-geo output), or None for
            the template's own rest head.
        out: .glb/.gltf (glTF 2.0), .usd/.usda/.usdc/.usdz (UsdSkel) or .obj (geometry, UVs, albedo only).
        template: template name or folder (default: topos-head).
        texture: a `topos textures` folder or an *_albedo.png beside its siblings; default: the template's maps/.
        rig: "arkit" (joints root, neck, head, jaw, eye_L, eye_R with skin weights) or "none".
        lod: LOD indices (default [0]); LODs come from `topos template lod`'s cached chain.
        units: "m" (default; glTF's and most engines' unit) or "cm" (the template's).
        names: "arkit" (Apple's 52 via the template's arkit_map.json) or "template" (its own names).
        method: expressions from the "linear-model", by "deformation-transfer", or "auto" (model if it fits).
        animation: optional Live Link Face CSV or keyframe JSON (or an io.animation.FaceAnimation) baked into
            the file (glTF / USD).
        fps: frame rate for timecodes / frame-numbered keys (default: the file's).

    Returns:
        {"out", "format", "method", "model_residual", "morph_targets", "lods", "joints", "textures", "frames"}.
    """
    from topos_cli.pipelines.head_asset import build_head_asset, texture_maps

    out = Path(out)
    suffix = out.suffix.lower()
    if suffix == ".fbx":
        raise UsageError(FBX_REASON)
    if suffix not in EXPORT_SUFFIXES:
        raise UsageError(f"{out}: cannot export '{suffix}'; use one of {', '.join(EXPORT_SUFFIXES)}")
    tpl = load_template(template)
    verts = _head_verts(tpl, head)
    asset, info = build_head_asset(tpl, verts, names=names, rig=rig, lods=lod, method=method,
                                   name=Path(head).stem if head else tpl.name)
    maps, paths = texture_maps(tpl, texture)
    anim = None
    if animation is not None:  # a file, or a FaceAnimation `topos animate` fitted from a video
        from topos_cli.io.animation import FaceAnimation, read_animation

        face = animation if isinstance(animation, FaceAnimation) else read_animation(animation, fps)
        anim = asset_animation(asset, tpl, face, names, "animation" if isinstance(animation, FaceAnimation)
                               else Path(animation).stem)
    if suffix in GLTF_SUFFIXES:
        from topos_cli.io.gltf import write_gltf

        write_gltf(out, asset, maps, units=units, animation=anim)
    elif suffix in USD_SUFFIXES:
        from topos_cli.io.usd import write_usd

        write_usd(out, asset, maps, units=units, animation=anim)
    else:
        _write_obj(out, asset, maps, units)
    return {"out": str(out.resolve()), "format": suffix[1:], **info, "units": units, "textures": paths,
            "frames": 0 if anim is None else int(len(anim.times))}


def template_lod(template: str | Path | None = None, out: str | Path | None = None, rebuild: bool = False) -> dict:
    """Build (or load from the cache) the template's LOD chain (`topos template lod`).

    Args:
        template: template name or folder.
        out: optional folder: writes LOD<k>.obj (UVs kept) for inspection.
        rebuild: rebuild even when the cache holds the chain.

    Returns:
        {"template", "cache", "lods": [{"lod", "verts", "faces", "uv"}], "out"}.
    """
    from topos_cli.geometry.lod import DEFAULT_TARGETS
    from topos_cli.io.lod import lod_cache_path
    from topos_cli.pipelines.head_asset import lod_chain

    tpl = load_template(template)
    levels = lod_chain(tpl, rebuild=rebuild)
    if out is not None:
        from topos_cli.io.mesh import MeshData, save_mesh

        Path(out).mkdir(parents=True, exist_ok=True)
        for k, lvl in enumerate(levels):
            save_mesh(Path(out) / f"LOD{k}.obj", MeshData(verts=lvl.sample(tpl.verts), faces=lvl.faces, uv=lvl.uv,
                                                          uv_faces=lvl.uv_faces))
    return {"template": tpl.name, "cache": str(lod_cache_path(tpl.name, tpl.hash, DEFAULT_TARGETS)),
            "lods": [{"lod": k, "verts": lvl.num_verts, "faces": int(len(lvl.faces)), "uv": int(len(lvl.uv))}
                     for k, lvl in enumerate(levels)],
            "out": None if out is None else str(Path(out).resolve())}


def _head_verts(tpl: Template, head: str | Path | None) -> np.ndarray:
    if head is None:
        return tpl.verts
    if Path(head).suffix.lower() in GLTF_SUFFIXES:  # glTF files (topos's own weld back into template order)
        from topos_cli.io.gltf import read_gltf_head

        gl = read_gltf_head(head)
        tpl.check_verts(gl.verts, str(head))
        return gl.verts
    from topos_cli.io.mesh import check_template_topology, load_mesh

    mesh = load_mesh(head)
    check_template_topology(mesh, tpl, str(head))
    return mesh.verts


def asset_animation(asset, tpl, anim, names: str, name: str):
    """The asset's `io.gltf.Animation` from a FaceAnimation: curves mapped onto its morph targets."""
    from topos_cli.io.animation import euler_to_quat
    from topos_cli.io.gltf import Animation
    from topos_cli.pipelines.head_asset import arkit_map

    curves = dict(anim.weights)
    if names == "template":  # ARKit channels drive every template shape they are made of
        for arkit, parts in arkit_map(tpl, required=False).items():
            for part in parts:
                if arkit in anim.weights and part not in curves:
                    curves[part] = anim.weights[arkit]
    known = [n for n in curves if n in asset.morph_names]
    if anim.weights and not known:
        raise UsageError(f"{name}: none of its channels ({', '.join(list(anim.weights)[:4])}, ...) name a target "
                         f"of this export ({', '.join(asset.morph_names[:4])}, ...)")
    weights = np.zeros((len(anim.times), len(asset.morph_names)), np.float32)
    for k, target in enumerate(asset.morph_names):
        if target in curves:
            weights[:, k] = curves[target]
    rotations = {}
    if asset.skeleton is not None:
        # a capture's eye rotations repeat its eyeLook* channels, whose targets already turn the eyeballs:
        # applying both would turn them twice, so the eye joints only move when no eyeLook* channel is given
        gaze = any(n.startswith("eyeLook") and np.abs(curves[n]).max() > 0 for n in known)
        rotations = {j: euler_to_quat(ypr) for j, ypr in anim.rotations.items()
                     if j in asset.skeleton.names and not (gaze and j.startswith("eye_"))}
    return Animation(np.asarray(anim.times, np.float32), weights, rotations, name=name)


def _write_obj(out: Path, asset, maps, units: str) -> None:
    """LOD0 geometry with UVs (and the albedo as map_Kd); OBJ has no morph targets or skin."""
    from topos_cli.io.gltf import UNIT_SCALE
    from topos_cli.io.mesh import MeshData, save_mesh

    lod0 = asset.lods[0]
    mesh = MeshData(verts=lod0.verts * UNIT_SCALE[units], faces=lod0.faces, uv=lod0.uv, uv_faces=lod0.uv_faces)
    albedo = None if maps is None or maps.albedo is None else maps.albedo[..., :3]
    save_mesh(out, mesh, texture=albedo)
