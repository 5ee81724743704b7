"""The records the template fit passes between its stages: the hair allowance, pose candidates, scan clouds.

Scan samples are `geometry.similarity.PointCloud`s (points, unit normals, k-d tree); poses are `Similarity`s that
map the scan into the template frame (x_template = scale * R @ x_scan + t).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from topos_cli.geometry.mesh_ops import face_normals, sample_surface, vertex_normals
from topos_cli.geometry.similarity import PointCloud, Similarity, rotation_error_deg

# thickest hair the orientation search allows for over the hair regions, fraction of the template's diagonal
HAIR_DEPTH = 0.1
# two candidate poses closer than this in rotation (degrees) and in where they put the template's origin
# (fraction of the diagonal) are one pose (non-maximum suppression of the search)
SAME_POSE_DEG = 20.0
SAME_POSE_SHIFT = 0.05
# the orientation search's scores, where the template has hair regions (`HairLayer`): the face (hair-free) points
# are trimmed less and weigh FACE_WEIGHT times the hair regions' points
FACE_TRIM = 0.9
FACE_WEIGHT = 2.0


@dataclass(frozen=True)
class Candidate:
    """One pose hypothesis of the orientation search.

    Attributes:
        sim: scan -> template similarity.
        score: its pose score (template units; lower is better; nan before it is scored).
        rotation: the start rotation it was refined from.
        rel: the head's size relative to the whole scan it assumed (1: the scan is the head).
        center: (3,) the head centre it assumed, scan frame.
    """

    sim: Similarity
    score: float = float("nan")
    rotation: np.ndarray | None = None
    rel: float = 1.0
    center: np.ndarray | None = None


@dataclass
class HairLayer:
    """Where a layer of hair may lie over the template's skin: `mask` (P,) 1 at the template points of the
    hair regions (scalp, back of head, temples, forehead, ears), 0 elsewhere; `depth` its largest thickness
    (template units). The orientation search measures distances there to the skin pushed out by up to `depth`,
    so a hairy head is not scored as a poorly fitting one (nor a smaller head on the torso as a better one)."""

    mask: np.ndarray
    depth: float

    def subset(self, index) -> HairLayer:
        return HairLayer(self.mask[index], self.depth)


def without_hair(diff: np.ndarray, normals: np.ndarray, hair: HairLayer | None) -> np.ndarray:
    """Template->scan offsets `diff` (..., P, 3) less the hair: at hair points, the part of the offset along the
    template's outward normal `normals` (..., P, 3) between 0 and the hair depth is taken off."""
    if hair is None:
        return diff
    out = np.clip((diff * normals).sum(-1), 0.0, hair.depth) * hair.mask
    return diff - out[..., None] * normals


def distinct(stage: list[Candidate], keep: int, diag: float, max_deg: float = SAME_POSE_DEG,
             max_shift: float = SAME_POSE_SHIFT) -> list[Candidate]:
    """The first `keep` of the candidates in `stage` (best first) that differ from every one kept
    before by more than `max_deg` degrees of rotation or `max_shift` of the diagonal `diag` in where they put the
    template's origin: near copies of one pose would otherwise fill every place (non-maximum suppression)."""
    kept, where = [], []
    for row in stage:
        sim = row.sim
        at = sim.inverse().apply(np.zeros((1, 3)))[0] * sim.scale  # the template origin, scan frame, template units
        near = False
        for other, pos in zip(kept, where, strict=True):
            if (rotation_error_deg(other.sim.rotation, sim.rotation) < max_deg
                    and np.linalg.norm(pos - at) < max_shift * diag):
                near = True
                break
        if not near:
            kept.append(row)
            where.append(at)
            if len(kept) == keep:
                break
    return kept


def outward_normals(cloud: PointCloud) -> PointCloud:
    """Flip all scan normals if most of them point towards the scan's centroid (the scan's faces are wound
    inwards, or it was mirrored). Heads, face shells and busts are curved round their centroid, so outward
    normals point away from it; the search's normal tests and hair allowance need them outward."""
    away = ((cloud.points - cloud.points.mean(0)) * cloud.normals).sum(1)
    return cloud.flipped() if np.sign(away).sum() < 0 else cloud


def orient_normals(cloud: PointCloud, verts: np.ndarray, faces: np.ndarray) -> PointCloud:
    """Flip all scan normals if most of them point against the aligned template's."""
    nrm = vertex_normals(verts, faces)
    _, idx = cloud.tree.query(verts)
    if np.median((cloud.normals[idx] * nrm).sum(1)) < 0:
        return cloud.flipped()
    return cloud


def sample_scan(verts: np.ndarray, faces: np.ndarray, count: int, rng: np.random.Generator) -> PointCloud:
    """Area-weighted samples with face normals; for point clouds without faces use PointCloud directly."""
    verts = verts.astype(float)
    pts, fidx, _ = sample_surface(verts, faces, count, rng)
    return PointCloud(pts, face_normals(verts, faces[fidx]))  # the sampled faces' normals only

