"""Head hypotheses inside a scan that holds more than a head (a bust, a torso, background).

Head sizes: the scan's RMS radius divided by each of `HEAD_RELS`, plus the exact head size the common units
(mm, cm, inches, m) would give. A head of that size is centred one radius inside the surface (against the
normal) under each of `HEAD_CENTRES` farthest-point samples, so one of them sits near the head's centre whatever
else the scan holds. Its orientation candidates come from the principal axes of the scan cropped to a ball around
that centre (the head alone, not the torso that dominates the whole scan's axes): the 24 axis permutations/flips,
plus the best whole-scan orientations, or the given orientation; for heads smaller than the scan also
`upright_rotations`. Every hypothesis is scored as placed, the best quarter (at most `BATCH`) gets
`COARSE_ICP_ITERS` ICP iterations, and the best `KEEP` distinct ones `FINE_ICP_ITERS` more plus
`GN_ITERS` point-to-plane Gauss-Newton steps.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from topos_cli.geometry.mesh_ops import farthest_point_sampling
from topos_cli.geometry.retopo.bases import refine_similarity
from topos_cli.geometry.retopo.pose import icp_batch, icp_similarity, pose_scores
from topos_cli.geometry.retopo.types import Candidate, distinct
from topos_cli.geometry.similarity import (
    PointCloud,
    Similarity,
    axis_rotations,
    bbox_diagonal,
    frame_from_up_front,
    principal_axes,
)

if TYPE_CHECKING:
    from topos_cli.geometry.retopo.search import SearchContext

UNIT_CM = (0.1, 1.0, 2.54, 100.0)  # cm per scan unit for scans in mm, cm, inches and m
HEAD_RELS = (1.0, 1.6, 2.2, 3.0)  # the scan's RMS radius over the head's, tried for every scan that holds more
HEAD_CENTRES = 16  # farthest-point samples a head is hung under (one lands near the head whatever the scan holds)
KEEP = 16  # distinct hypotheses refined to the end
SMALL_POINTS = 2000  # scan samples the hypotheses are scored on (coverage, not density)
UNIT_REL_RANGE = (1.15, 5.0)  # a unit-derived head size is tried only in this range of scan/head radius ratios
SAME_REL = 0.03  # ... and only when its log ratio to every HEAD_RELS value exceeds this (else it is a duplicate)
SMALLER_HEAD = 1.15  # a head this much smaller than the scan also gets the upright (body-below) orientations
CROP_RADII = 1.5  # the local axes come from the scan within this many head radii of the centre
MIN_CROP = 30  # fewer points in that ball: no local axes (the centre is off the scan)
BATCH = 512  # hypotheses per batched k-d tree query (bounds memory); also the most that get the coarse ICP
COARSE_ICP_ITERS, FINE_ICP_ITERS = 2, 3  # ICP iterations for the best quarter, then for the KEEP distinct ones
GN_ITERS, GN_POINTS = 5, 600  # point-to-plane Gauss-Newton steps and template points for the KEEP ones
UPRIGHT_YAWS = 12  # headings tried about a head's body-up direction
TEMPLATE_STRIDE = 3  # every third template point of the search's subset scores the hypotheses
RADIUS_FLOOR = 1e-12  # a scan with no extent keeps a finite scale


@dataclass(frozen=True)
class HeadSearch:
    """Where heads are placed: the template's centroid, RMS radius and principal axes (rows), the scan's centroid
    and RMS radius (all in their own frames)."""

    tmpl_mean: np.ndarray
    tmpl_rms: float
    scan_mean: np.ndarray
    scan_rms: float
    tmpl_axes: np.ndarray

    def start(self, rot: np.ndarray, rel: float = 1.0, center: np.ndarray | None = None) -> Similarity:
        """A head `rel` times smaller than the scan, rotated by `rot`, its centroid on `center` (default: the
        scan's)."""
        center = self.scan_mean if center is None else center
        scale = rel * self.tmpl_rms / max(self.scan_rms, RADIUS_FLOOR)
        return Similarity(scale, rot, self.tmpl_mean - scale * rot @ center)


def upright_rotations(up: np.ndarray, radius: float, yaws: int = UPRIGHT_YAWS) -> list[np.ndarray]:
    """Rotations that take `up` (scan frame: from the whole scan's centroid to a head centre candidate) to the
    template's +Y, at `yaws` headings about it: a head sits on its body (a bust's torso is below the head), and a
    rounded head (hair) has no principal axes to orient it. None when the centre is within `radius` of the
    centroid (no body direction to read)."""
    if np.linalg.norm(up) < radius:
        return []
    up = up / np.linalg.norm(up)
    side = np.eye(3)[np.argmin(np.abs(up))]
    f0 = side - up * (side @ up)
    f0 /= np.linalg.norm(f0)
    f1 = np.cross(up, f0)
    angles = 2 * np.pi * np.arange(yaws) / yaws
    return [frame_from_up_front(up, np.cos(a) * f0 + np.sin(a) * f1) for a in angles]


def _head_sizes(head: HeadSearch) -> list[float]:
    """HEAD_RELS plus the head sizes the common units would give (within range, not duplicates)."""
    unit_rels = [head.scan_rms * u / head.tmpl_rms for u in UNIT_CM]
    return list(HEAD_RELS) + [r for r in unit_rels if UNIT_REL_RANGE[0] < r < UNIT_REL_RANGE[1]
                              and min(abs(np.log(r / q)) for q in HEAD_RELS) > SAME_REL]


def _orientations(small: PointCloud, head: HeadSearch, center: np.ndarray, radius: float, rel: float,
                  fixed_rot: np.ndarray | None, extra_rots) -> list[np.ndarray]:
    """Start rotations of a head at `center`: the given one, or the cropped scan's axes (and the extras)."""
    if fixed_rot is not None:
        return [fixed_rot]
    crop = small.points[np.linalg.norm(small.points - center, axis=1) < CROP_RADII * radius]
    if len(crop) < MIN_CROP:
        return []
    pa_c = principal_axes(crop)
    rots = [head.tmpl_axes.T @ cube @ pa_c for cube in axis_rotations()] + list(extra_rots)
    if rel > SMALLER_HEAD:
        rots += upright_rotations(center - head.scan_mean, radius)
    return rots


def _place_heads(small: PointCloud, tpts: np.ndarray, head: HeadSearch, fixed_rot: np.ndarray | None,
                 extra_rots) -> list[Candidate]:
    """Every (size, centre, orientation) hypothesis, placed with its sample on the template's support point."""
    pick = farthest_point_sampling(small.points, HEAD_CENTRES)
    outward = np.sign(((small.points - head.scan_mean) * small.normals).sum(1).mean()) or 1.0
    hyps = []
    for rel in _head_sizes(head):
        radius = head.scan_rms / rel
        for p, n in zip(small.points[pick], small.normals[pick] * outward, strict=True):
            center = p - n * radius
            for rot in _orientations(small, head, center, radius, rel, fixed_rot, extra_rots):
                scale = head.start(rot, rel, center).scale
                # put the sample on the template's support point in its (rotated) normal direction: for a
                # sample on the crown, the face or the back of the head, this places the head exactly
                support = tpts[np.argmax(tpts @ (rot @ n))]
                hyps.append(Candidate(Similarity(scale, rot, support - scale * rot @ p), rotation=rot, rel=rel,
                                      center=center))
    return hyps


def extra_hypotheses(ctx: SearchContext, head: HeadSearch, fixed_rot: np.ndarray | None,
                     extra_rots=()) -> list[Candidate]:
    """ICP-refined (smaller head, off-centre, rotation) candidates for scans that hold more than a head (see the
    module docstring). `fixed_rot`: the given orientation (--up/--front), else None; `extra_rots`: the best
    whole-scan orientations."""
    small = ctx.cloud.every(max(1, len(ctx.cloud.points) // SMALL_POINTS))
    tpts, tnrm = ctx.tpts[::TEMPLATE_STRIDE], ctx.tnrm[::TEMPLATE_STRIDE]
    hair = None if ctx.hair is None else ctx.hair.subset(slice(None, None, TEMPLATE_STRIDE))
    hyps = _place_heads(small, tpts, head, fixed_rot, extra_rots)
    if not hyps:
        return []
    # coarse to fine: score all, a few ICP iterations for the best quarter, more for the best KEEP distinct ones
    scores = np.concatenate([pose_scores(small, tpts, tnrm, [h.sim for h in hyps[i:i + BATCH]], ctx.trim, hair)
                             for i in range(0, len(hyps), BATCH)])
    best = np.argsort(scores, kind="stable")[: max(KEEP, min(len(hyps) // 4, BATCH))]
    stage = []
    for start_at in range(0, len(best), BATCH):
        ids = best[start_at:start_at + BATCH]
        sims, icp_scores = icp_batch(small, tpts, tnrm, [hyps[i].sim for i in ids], COARSE_ICP_ITERS, ctx.trim,
                                     ctx.fixed, hair)
        stage += [replace(hyps[i], sim=sim, score=float(score)) for sim, score, i in zip(sims, icp_scores, ids,
                                                                                        strict=True)]
    stage.sort(key=lambda c: c.score)
    out = []
    for cand in distinct(stage, KEEP, bbox_diagonal(ctx.verts)):
        sim = icp_similarity(small, tpts, tnrm, cand.sim, FINE_ICP_ITERS, ctx.trim, ctx.fixed, hair).sim
        if not ctx.fixed:  # point-to-plane Gauss-Newton converges where point-to-point ICP crawls
            sim = refine_similarity(small, ctx.verts, ctx.faces, sim, iters=GN_ITERS, max_points=GN_POINTS,
                                    outside_mask=ctx.outside_mask)
        fit = icp_similarity(small, tpts, tnrm, sim, 0, ctx.trim, ctx.fixed, hair)
        out.append(replace(cand, sim=fit.sim, score=fit.score))
    return out
