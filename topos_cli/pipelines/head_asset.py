"""Assemble a production `HeadAsset` from a head in template topology (what `topos export` writes).

    asset, info = build_head_asset(template, verts, names="arkit", rig="arkit", lods=[0, 1, 2])

* expressions: the template's linear model where the head came from it, else deformation transfer
  (`geometry/deformation_transfer.py`);
* names: Apple ARKit's 52 through the template's `arkit_map.json` (split shapes summed, missing ones zero),
  or the template's own names;
* rig: the six-joint skeleton and skin weights of `geometry/rig.py`;
* LODs: the template's cached LOD chain (`topos template lod`), every per-vertex array sampled by its
  barycentrics;
* textures: a `topos textures` folder (`*_albedo.png`, `*_normal.png`, `*_roughness.png`, `*_specular.png`)
  or the template's default maps (`maps/`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from topos_cli.errors import UsageError
from topos_cli.geometry.asset import AssetMesh, HeadAsset
from topos_cli.geometry.lod import DEFAULT_TARGETS, LodLevel, build_lod_chain
from topos_cli.template import Template

MAP_NAMES = ("albedo", "normal", "roughness", "specular")
NAME_MODES = ("arkit", "template")
RIG_MODES = ("arkit", "none")


def lod_chain(template: Template, targets: tuple[int, ...] = DEFAULT_TARGETS, rebuild: bool = False) -> list[LodLevel]:
    """The template's LOD chain from the cache, built (and cached) when missing or when `rebuild`."""
    from topos_cli.io.lod import load_lod_chain, lod_cache_path, save_lod_chain

    if template.uv is None or template.uv_faces is None:
        raise UsageError(f"template '{template.name}' has no UVs; LODs keep UVs and need them")
    path = lod_cache_path(template.name, template.hash, tuple(targets))
    levels = None if rebuild else load_lod_chain(path)
    if levels is None:
        levels = build_lod_chain(template.verts, template.faces, template.uv, template.uv_faces, tuple(targets))
        save_lod_chain(path, levels)
    return levels


def arkit_map(template: Template, required: bool = True) -> dict[str, dict[str, float]]:
    """{ARKit name: {template expression: weight}} from the template's `arkit_map.json` ({} if absent and
    not `required`)."""
    from topos_cli.io.fs import read_json

    path = (template.root / "arkit_map.json") if template.root is not None else None
    if path is None or not path.is_file():
        if not required:
            return {}
        raise UsageError(f"template '{template.name}' declares no ARKit name map (arkit_map.json); "
                         "export with --names template")
    return read_json(path, "ARKit map")["names"]


def named_targets(template: Template, deltas: np.ndarray, names: str) -> tuple[list[str], np.ndarray]:
    """Morph target names and (K', V, 3) deltas: the template's own, or combined into ARKit's 52."""
    own = [str(n) for n in template.bases.get("expression_names", [])]
    if names == "template":
        return own, deltas
    mapping = arkit_map(template)
    out = np.zeros((len(mapping), deltas.shape[1], 3), np.float32)
    for k, parts in enumerate(mapping.values()):
        for name, weight in parts.items():
            if name not in own:
                raise UsageError(f"arkit_map.json names '{name}', which template '{template.name}' does not have")
            out[k] += weight * deltas[own.index(name)]
    return list(mapping), out


def build_head_asset(template: Template, verts: np.ndarray, names: str = "arkit", rig: str = "arkit",
                     lods: list[int] | None = None, method: str = "auto", name: str = "head",
                     with_parts: bool = True) -> tuple[HeadAsset, dict]:
    """A rigged, multi-LOD asset of one head; returns it and a plain-data summary (method, counts).

    Args:
        template: the head's template. verts: (V, 3) the head in template topology (template units and frame
            for the linear model; any frame for deformation transfer).
        names: "arkit" or "template". rig: "arkit" (six joints and skin weights) or "none".
        lods: LOD indices to include (default [0]). method: expression transfer, see `expression_deltas`.
        with_parts: add the template's eye and mouth parts (eyeballs bound to the eye joints, lower teeth and
            tongue to the jaw) when it has them.
    """
    from topos_cli.geometry.deformation_transfer import expression_deltas

    if names not in NAME_MODES or rig not in RIG_MODES:
        raise UsageError(f"--names must be one of {NAME_MODES} and --rig one of {RIG_MODES}")
    lods = sorted(set(lods or [0]))
    template.check_verts(np.asarray(verts), "head")
    expression = template.bases.get("expression")
    if expression is None:
        raise UsageError(f"template '{template.name}' has no expression basis to rig the head with")
    result = expression_deltas(template.verts, template.faces, template.bases.get("identity"), expression,
                               verts, method)
    target_names, morphs = named_targets(template, result.deltas, names)
    frame = _template_frame(template, verts, result.method)
    skeleton = joints = weights = None
    if rig == "arkit":
        skeleton, joints, weights = _rig(template, verts, frame, result.deltas)
    parts = None
    if with_parts and template.parts is not None:
        parts = _parts_mesh(template, verts, frame, result, names, skeleton)
    chain = lod_chain(template) if max(lods) > 0 else None
    if chain is not None and max(lods) >= len(chain):
        raise UsageError(f"--lod {max(lods)}: template '{template.name}' has LODs 0..{len(chain) - 1}")
    meshes = [_lod_mesh(template, verts, morphs, joints, weights, chain[k] if k else None) for k in lods]
    asset = HeadAsset(name, meshes, target_names, skeleton, {"template": template.name, "template_hash": template.hash},
                      parts)
    info = {"method": result.method, "model_residual": result.model_residual, "morph_targets": len(target_names),
            "lods": {f"LOD{k}": int(len(m.verts)) for k, m in zip(lods, meshes, strict=True)},
            "joints": list(skeleton.names) if skeleton else [], "parts": 0 if parts is None else len(parts.verts)}
    return asset, info


@dataclass(frozen=True)
class HeadFrame:
    """The similarity taking a head into the template frame: template_point = scale * rotation @ p + shift."""

    scale: float
    rotation: np.ndarray
    shift: np.ndarray

    def to_template(self, points: np.ndarray) -> np.ndarray:
        return self.scale * np.asarray(points, np.float64) @ self.rotation.T + self.shift

    def to_head(self, points: np.ndarray, vectors: bool = False) -> np.ndarray:
        """Template-frame points (or, with `vectors`, displacements) back in the head's frame."""
        points = np.asarray(points, np.float64) - (0.0 if vectors else self.shift)
        return points @ self.rotation / self.scale


def _template_frame(template: Template, verts: np.ndarray, method: str) -> HeadFrame:
    """Identity for heads of the linear model (they are in the template frame); else a similarity fit."""
    if method == "linear-model":
        return HeadFrame(1.0, np.eye(3), np.zeros(3))
    from topos_cli.geometry.deformation_transfer import similarity

    return HeadFrame(*similarity(np.asarray(verts, np.float64), template.verts))


def _rig(template: Template, verts: np.ndarray, frame: HeadFrame, deltas: np.ndarray):
    """Skeleton (built in the template frame, returned in the head's) and skin weights of the head."""
    from topos_cli.geometry.asset import Skeleton
    from topos_cli.geometry.rig import build_skeleton, skin_weights

    boundaries = {k: np.asarray(v) for k, v in template.meta.get("boundaries", {}).items()}
    if not {"neck", "eye_left", "eye_right"} <= set(boundaries):
        raise UsageError(f"template '{template.name}' lacks neck/eye boundary loops the rig needs; use --rig none")
    jaw = deltas[[str(n) for n in template.bases["expression_names"]].index("jawOpen")]
    local = build_skeleton(frame.to_template(verts), boundaries, template.regions.get("ear"))
    skeleton = Skeleton(local.names, local.parents, frame.to_head(local.positions))
    joints, weights = skin_weights(verts, skeleton, jaw, template.regions.get("neck"))
    return skeleton, joints, weights


PART_JOINTS = {"eye_left": "eye_L", "eye_right": "eye_R", "upper": "head", "lower": "jaw"}  # group -> joint


def _parts_mesh(template: Template, verts: np.ndarray, frame: HeadFrame, result, names: str,
                skeleton) -> AssetMesh:
    """The template's parts placed on this head, their morph deltas (gaze included) and rigid skinning.

    A head from the linear model gets its parts from the same identity weights; any other head gets them by
    `geometry.parts.fit_parts` on the head moved into the template frame (a few seconds), moved back.
    """
    from topos_cli.geometry.deformation_transfer import model_fit
    from topos_cli.geometry.parts import fit_parts, part_verts

    tp = template.parts
    own = [str(n) for n in template.bases["expression_names"]]
    aligned = frame.to_template(verts)
    identity = result.identity_weights
    if result.method != "linear-model":
        identity = model_fit(template.verts, template.bases.get("identity"), aligned)[1]
    rest = part_verts(template, identity=identity)
    local = rest if result.method == "linear-model" else fit_parts(template, aligned)
    placed = frame.to_head(local)
    # a part's expression delta is its basis row, except eyeLook*, which also turn the eyeballs about their
    # identity-dependent centres: only those need part_verts (53 calls cost ~0.6 s of the export)
    deltas = np.zeros((len(own), tp.num_verts, 3))
    for k, n in enumerate(own):
        if n.startswith("eyeLook") or k >= len(tp.expression):
            deltas[k] = part_verts(template, identity, {n: 1.0}) - rest
        else:
            deltas[k] = tp.expression[k]
    deltas = frame.to_head(deltas.reshape(-1, 3), vectors=True).reshape(deltas.shape).astype(np.float32)
    _, morphs = named_targets(template, deltas, names)
    colors = np.array([tp.spec["materials"][m]["color"] for m in tp.spec["material_order"]], np.float32)
    joints = weights = None
    if skeleton is not None:
        groups = tp.spec["groups"]
        joints = np.zeros((tp.num_verts, 4), np.int64)
        joints[:, 0] = [skeleton.index(PART_JOINTS.get(groups[g], "head")) for g in tp.vertex_group]
        weights = np.zeros((tp.num_verts, 4), np.float32)
        weights[:, 0] = 1.0
        for eye, joint in (("eye_left", "eye_L"), ("eye_right", "eye_R")):  # eye joints at the eyeball centres
            ball = tp.vertex_group == groups.index(eye)
            centre = np.asarray(tp.spec["eyes"][eye]["pivot"]) - tp.verts[ball].mean(0)
            skeleton.positions[skeleton.index(joint)] = frame.to_head(local[ball].mean(0) + centre)
    return AssetMesh(np.asarray(placed, np.float32), tp.faces, None, None, morphs, joints, weights,
                     colors[tp.vertex_material])


def _lod_mesh(template: Template, verts, morphs, joints, weights, level: LodLevel | None) -> AssetMesh:
    if level is None:
        return AssetMesh(np.asarray(verts, np.float32), template.faces, template.uv, template.uv_faces, morphs,
                         joints, weights)
    lod_joints = lod_weights = None
    if joints is not None:  # the LOD vertex takes the joints of its triangle's dominant corner
        dominant = level.corners[np.arange(level.num_verts), level.bary.argmax(1)]
        lod_joints, lod_weights = joints[dominant], weights[dominant]
    return AssetMesh(level.sample(np.asarray(verts, np.float32)), level.faces, level.uv, level.uv_faces,
                     level.sample(morphs), lod_joints, lod_weights)


def texture_maps(template: Template, texture: str | Path | None):
    """PbrMaps from a `topos textures` folder (or one of its *_albedo.png), else the template's maps/."""
    from topos_cli.io.gltf import PbrMaps
    from topos_cli.io.image import read_image

    paths = _map_paths(template, texture)
    maps, png = {}, {}
    for key, path in paths.items():
        img = read_image(path)
        if key in ("albedo", "normal") and img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3:
            png[key] = path.read_bytes()  # embedded as is
        if img.dtype == np.uint16:
            img = (img // 257).astype(np.uint8)
        if key in ("roughness", "specular") and img.ndim == 3:
            img = img[..., 0]
        maps[key] = np.asarray(img, np.uint8)
    return PbrMaps(**maps, png=png), {k: str(v) for k, v in paths.items()}


def _map_paths(template: Template, texture: str | Path | None) -> dict[str, Path]:
    if texture is None:
        folder = template.root / "maps" if template.root is not None else None
        if folder is None or not folder.is_dir():
            return {}
        return {m: folder / f"{m}.png" for m in MAP_NAMES if (folder / f"{m}.png").is_file()}
    texture = Path(texture)
    if texture.is_file():
        albedo = texture
    elif texture.is_dir():
        found = sorted(texture.glob("*albedo.png")) or sorted(texture.glob("items/*albedo.png")) or \
            sorted(texture.glob("**/*albedo.png"))
        if not found:
            raise UsageError(f"{texture}: no *albedo.png inside; give a `topos textures` folder or an albedo PNG")
        albedo = found[0]
    else:
        raise UsageError(f"--texture {texture}: no such file or folder")
    stem = albedo.name[: -len("albedo.png")]
    return {m: albedo.parent / f"{stem}{m}.png" for m in MAP_NAMES if (albedo.parent / f"{stem}{m}.png").is_file()}
