"""Render an animated head asset to pictures: the `.mp4` output of `topos animate` (a talking head).

    scene = TalkingHead.from_asset(asset, maps)          # LOD0 skin + eye/mouth parts as one mesh
    for frame in scene.frames(animation, size=512):     # (H, W, 3) uint8 RGB per animation frame
        ...

Each frame poses the asset the way a glTF client does: morph weights add their deltas to the rest positions,
then linear blend skinning applies the joints' rotations (local rotations about each joint, no rest rotation,
parents before children). The skin takes its colour per vertex from the albedo map at the vertex's UV (one
draw for skin and parts together: the parts carry vertex colours and no UVs); studio light, a fixed frontal
camera framing the head, one GL context reused for every frame.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from topos_cli.geometry.asset import HeadAsset, Skeleton

FOV_DEG = 20.0  # a portrait lens (about 70 mm full-frame): little perspective distortion of the face
FRAME_MARGIN = 1.15  # the head (chin to crown) fills 1 / FRAME_MARGIN of the picture's height
SKIN_FALLBACK = (0.62, 0.52, 0.46)  # linear clay colour of the skin without an albedo map (renderer's CLAY)
LIGHT_RIG = "studio"  # the renderer's default portrait lighting


@dataclass
class TalkingHead:
    """One mesh (skin then parts) with its morph deltas and skin, ready to pose.

    Attributes:
        verts: (V, 3) float32 rest positions (cm). faces: (F, 3) int64. colors: (V, 3) float32 linear albedo.
        morphs: (K, V, 3) float32 deltas in the asset's morph order. joints / weights: (V, 4) skin or None.
        skeleton: the rig or None. morph_names: the K names.
    """

    verts: np.ndarray
    faces: np.ndarray
    colors: np.ndarray
    morphs: np.ndarray
    joints: np.ndarray | None
    weights: np.ndarray | None
    skeleton: Skeleton | None
    morph_names: list[str]

    @classmethod
    def from_asset(cls, asset: HeadAsset, maps=None) -> TalkingHead:
        """LOD0 and the parts of `asset`; skin colours from `maps.albedo` (a `PbrMaps`) when given."""
        skin = asset.lods[0]
        meshes = [skin] + ([asset.parts] if asset.parts is not None else [])
        colors = [_skin_colors(skin, None if maps is None else maps.albedo)]
        if asset.parts is not None:
            colors.append(np.asarray(asset.parts.colors if asset.parts.colors is not None else
                                     np.tile(SKIN_FALLBACK, (len(asset.parts.verts), 1)), np.float32))
        offsets = np.cumsum([0] + [len(m.verts) for m in meshes])
        rigged = asset.skeleton is not None and all(m.joints is not None for m in meshes)
        return cls(np.concatenate([m.verts for m in meshes]).astype(np.float32),
                   np.concatenate([m.faces + o for m, o in zip(meshes, offsets, strict=False)]),
                   np.concatenate(colors), np.concatenate([m.morphs for m in meshes], 1).astype(np.float32),
                   np.concatenate([m.joints for m in meshes]) if rigged else None,
                   np.concatenate([m.weights for m in meshes]) if rigged else None,
                   asset.skeleton if rigged else None, list(asset.morph_names))

    def posed(self, weights: np.ndarray | None, rotations: dict[str, np.ndarray]) -> np.ndarray:
        """(V, 3) positions for one frame: (K,) morph weights, joint -> (4,) quaternion (x, y, z, w)."""
        verts = self.verts.astype(np.float64)
        if weights is not None and len(weights):
            active = np.flatnonzero(np.abs(weights) > 0)
            verts = verts + np.tensordot(weights[active], self.morphs[active], 1)
        if self.skeleton is None or not rotations:
            return verts.astype(np.float32)
        skin = joint_matrices(self.skeleton, rotations)  # (J, 3, 4)
        blended = np.einsum("vk,vkij->vij", self.weights, skin[self.joints])  # (V, 3, 4)
        return (np.einsum("vij,vj->vi", blended[:, :, :3], verts) + blended[:, :, 3]).astype(np.float32)

    def camera(self, size: int):
        """A frontal camera framing the head above the neck joint (chin to crown) at `size` x `size` pixels."""
        from topos_cli.render.camera import look_at

        top = self.verts[:, 1].max()
        low = self.skeleton.positions[self.skeleton.index("neck"), 1] if self.skeleton is not None else \
            self.verts[:, 1].min()
        above = self.verts[self.verts[:, 1] >= low]
        centre = np.array([0.5 * (above[:, 0].max() + above[:, 0].min()), 0.5 * (top + low), above[:, 2].mean()])
        dist = FRAME_MARGIN * 0.5 * (top - low) / math.tan(math.radians(FOV_DEG) / 2) + above[:, 2].max() - centre[2]
        return look_at(centre + (0.0, 0.0, dist), centre, fov=FOV_DEG, width=size)

    def frames(self, animation, size: int = 512, renderer=None) -> Iterator[np.ndarray]:
        """(size, size, 3) uint8 sRGB pictures of `animation` (an `io.gltf.Animation` on this head's morphs)."""
        from topos_cli.render.lights import preset_rig
        from topos_cli.render.renderer import Renderer, RenderMesh

        renderer = renderer or Renderer("gl")  # one context for every frame
        camera, rig = self.camera(size), preset_rig(LIGHT_RIG)
        for t in range(len(animation.times)):
            weights = None if animation.weights is None else np.asarray(animation.weights[t], np.float64)
            rotations = {j: q[t] for j, q in animation.rotations.items()}
            mesh = RenderMesh(self.posed(weights, rotations), self.faces, colors=self.colors)
            rgba = renderer.render(mesh, camera, rig=rig, passes=("color",))["color"]
            yield (np.clip(rgba[..., :3], 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def quat_matrix(q: np.ndarray) -> np.ndarray:
    """(4,) unit quaternion (x, y, z, w) -> (3, 3) rotation."""
    x, y, z, w = np.asarray(q, np.float64) / max(float(np.linalg.norm(q)), 1e-12)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def joint_matrices(skeleton: Skeleton, rotations: dict[str, np.ndarray]) -> np.ndarray:
    """(J, 3, 4) skinning transforms (posed world transform times the inverse rest transform) of every joint."""
    count = len(skeleton.names)
    world_rot = np.zeros((count, 3, 3))
    world_pos = np.zeros((count, 3))
    pos = np.asarray(skeleton.positions, np.float64)
    for j, name in enumerate(skeleton.names):  # parents come before children
        local = quat_matrix(rotations[name]) if name in rotations else np.eye(3)
        parent = int(skeleton.parents[j])
        if parent < 0:
            world_rot[j], world_pos[j] = local, pos[j]
        else:
            world_rot[j] = world_rot[parent] @ local
            world_pos[j] = world_pos[parent] + world_rot[parent] @ (pos[j] - pos[parent])
    shift = world_pos - np.einsum("jab,jb->ja", world_rot, pos)  # x -> R (x - rest) + posed
    return np.concatenate([world_rot, shift[:, :, None]], 2)


def _skin_colors(skin, albedo: np.ndarray | None) -> np.ndarray:
    """(V, 3) linear albedo per skin vertex: the albedo map at one of the vertex's UV corners (or clay)."""
    if albedo is None or skin.uv is None or skin.uv_faces is None:
        return np.tile(np.asarray(SKIN_FALLBACK, np.float32), (len(skin.verts), 1))
    from topos_cli.render.lights import srgb_to_linear

    corner_uv = np.zeros((len(skin.verts), 2), np.float64)
    corner_uv[np.asarray(skin.faces).reshape(-1)] = np.asarray(skin.uv)[np.asarray(skin.uv_faces).reshape(-1)]
    h, w = albedo.shape[:2]
    cols = np.clip((corner_uv[:, 0] * w).astype(np.int64), 0, w - 1)
    rows = np.clip(((1.0 - corner_uv[:, 1]) * h).astype(np.int64), 0, h - 1)  # row 0 = v 1
    texel = np.asarray(albedo)[rows, cols, :3].astype(np.float64) / 255.0
    return srgb_to_linear(texel).astype(np.float32)


__all__ = ["TalkingHead", "joint_matrices", "quat_matrix"]
