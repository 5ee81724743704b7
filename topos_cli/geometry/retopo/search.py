"""Pre-alignment: the similarity that brings a scan (any units, pose) into the template frame.

Scale starts from the ratio of RMS radii (so mm, cm, m and inches all work), orientation from the 24 axis
permutations/sign flips that map the scan's principal axes onto the template's, each refined by trimmed
similarity ICP (template -> scan, normal-compatible matches) and scored by the trimmed template-to-scan distance
(where the template has hair regions, up to `HAIR_DEPTH` of hair may lie over them, and the hair-free face counts
more: `HairLayer`). When that whole-scan fit leaves much of the scan unexplained (a bust), the head is searched for
inside the scan (`hypotheses.extra_hypotheses`). `up`/`front` skip the orientation search.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from topos_cli.geometry.mesh_ops import vertex_normals
from topos_cli.geometry.retopo.bases import refine_similarity
from topos_cli.geometry.retopo.hypotheses import HeadSearch, extra_hypotheses
from topos_cli.geometry.retopo.pose import icp_batch, icp_similarity, pose_scores
from topos_cli.geometry.retopo.types import (
    HAIR_DEPTH,
    Candidate,
    HairLayer,
    distinct,
    outward_normals,
    without_hair,
)
from topos_cli.geometry.similarity import (
    PointCloud,
    Similarity,
    axis_rotations,
    bbox_diagonal,
    frame_from_up_front,
    principal_axes,
    rotation_error_deg,
    umeyama,
)

SEARCH_POINTS = 6000  # scan samples the orientation search uses: it needs coverage, not density
LANDMARK_ICP_ITERS = 20  # ICP iterations after a landmark fit (the start is close: a short polish)
START_ICP_ITERS = 8  # ICP iterations from each whole-scan start (enough to sort the 24 orientations)
CHOICE_ICP_ITERS = 15  # more iterations for the distinct best starts before the choice
CHOICE_KEEP = 6  # distinct candidates refined for the choice
CHOICE_FINALS = 3  # of those, polished by point-to-plane Gauss-Newton and rescored
WINNER_POLISH_ITERS = 15  # Gauss-Newton steps for the winner (under hair, ten steps leave it short)
EXPLAINED_RADIUS = 0.05  # a scan point within this fraction of the diagonal of the template is explained
REVERSE_TRIM = 0.9  # the reverse score's kept fraction of scan points inside the template's box
NECK_CUT = 0.1  # the reverse score ignores the template box's lowest tenth (the neck cut, where busts go on)
MIN_INSIDE = 20  # fewer scan points inside the template's box: the reverse score is the box's diagonal (worst)
OTHER_ORIENTATION_DEG = 45.0  # a final candidate turned further than this from the winner is another orientation
EXPLAINED_PROBES = 3000  # scan points probed for the explained fraction
# face cues (landmarks found on the scan, `find_face`): their score term is the mean distance of the closest
# CUE_TRIM of them to their template vertices (template units), times CUE_WEIGHT; a detection puts a wrong
# orientation tens of cm off, the right one a few mm (the detector's and the identity's spread)
CUE_TRIM = 0.7
CUE_WEIGHT = 1.0
CUE_FINALS = 3  # whole-scan finals that compete with the face-landmark pose
# a face-landmark pose scoring above this fraction of the diagonal (landmark term included) is not taken: the
# search for heads inside the scan runs as without a face (measured: face masks 3.7-8.8 %, their template reaching
# far beyond the shell; a head in the corner of a room, its face found, 25 %)
CUE_MAX_SCORE = 0.15
# the face path is for shells, which lie within a head: when under CUE_INSIDE of the scan points fall inside the
# template's box (grown by CUE_BOX_PAD of its size per axis) under the landmark pose, the scan holds more than a
# head (a bust, a room) and the search inside the scan runs as without a face (face masks: 1.0; busts ~0.3-0.5,
# where the face pose, taken, laid two heads of twelve wrong)
CUE_INSIDE = 0.8
CUE_BOX_PAD = 0.1


@dataclass(frozen=True)
class SearchContext:
    """What every stage of the search needs: the scan (all samples and the search's subsample), the template
    (vertices, faces, normals, a k-d tree, its ICP subset and their normals) and the settings."""

    full: PointCloud
    cloud: PointCloud
    verts: np.ndarray
    faces: np.ndarray
    normals: np.ndarray
    tree: cKDTree
    tpts: np.ndarray
    tnrm: np.ndarray
    trim: float
    fixed: bool
    hair: HairLayer | None
    hair_verts: HairLayer | None
    outside_mask: np.ndarray | None

    @property
    def diag(self) -> float:
        return bbox_diagonal(self.verts)

    def icp(self, sim: Similarity, iters: int, cloud: PointCloud | None = None) -> Candidate:
        return icp_similarity(self.cloud if cloud is None else cloud, self.tpts, self.tnrm, sim, iters, self.trim,
                              self.fixed, self.hair)

    def reverse(self, sim: Similarity) -> float:
        return reverse_score(self.cloud, sim, self.verts, self.tree, hair=self.hair_verts, normals=self.normals)


def _context(cloud: PointCloud, verts: np.ndarray, faces: np.ndarray, num_points: int, trim: float, fixed: bool,
             outside_mask: np.ndarray | None) -> SearchContext:
    full = outward_normals(cloud)
    search = full.every(len(full.points) // SEARCH_POINTS + 1) if len(full.points) > SEARCH_POINTS else full
    nrm = vertex_normals(verts, faces)
    sub = np.linspace(0, len(verts) - 1, min(num_points, len(verts))).astype(np.int64)
    hair_v = None if outside_mask is None else HairLayer(outside_mask.astype(float), HAIR_DEPTH * bbox_diagonal(verts))
    return SearchContext(full, search, verts, faces, nrm, cKDTree(verts), verts[sub].astype(float),
                         nrm[sub].astype(float), trim, fixed, None if hair_v is None else hair_v.subset(sub), hair_v,
                         outside_mask)


def _rms_radius(points: np.ndarray) -> float:
    return float(np.sqrt(((points - points.mean(0)) ** 2).sum(1).mean()))


def prealign(cloud: PointCloud, tmpl_verts: np.ndarray, tmpl_faces: np.ndarray, *, up=None, front=None,
             landmarks: tuple[np.ndarray, np.ndarray] | None = None, num_points: int = 1000,
             trim: float = 0.6, final_trim: float = 0.9, min_explained: float = 0.75,
             max_score: float = 0.025, outside_mask: np.ndarray | None = None,
             find_face: Callable[[], tuple[np.ndarray, np.ndarray] | None] | None = None,
             ambiguous: float = 1.05) -> tuple[Similarity, dict]:
    """Find the similarity that maps the scan (cloud, any units/pose) into the template frame.

    Args:
        cloud: scan samples in scan coordinates.
        tmpl_verts: (V, 3) template rest shape (cm, +Y up, +Z front).
        tmpl_faces: (F, 3) int template triangles.
        up, front: optional (3,) scan-space directions of the head's up and facing directions.
        landmarks: optional (scan_points (L, 3), template vertex ids (L,)) for a direct similarity fit.
        num_points: template points used for the ICP.
        trim: fraction of closest matches kept in the trimmed ICP of the orientation search (robust).
        final_trim: fraction kept in the ICP that follows a landmark fit.
        min_explained, max_score: when no centred, whole-scan-sized start puts this fraction of the scan points
            within 5% of the template's diagonal of the template (the scan holds more than a head: shoulders,
            torso, hair, background), or the best one's two-sided score exceeds `max_score` times the diagonal
            (a poorly fitting shell), heads of other sizes at the scan's extremities are tried too.
        outside_mask: (V,) template vertices where hair may cover the skin: the search lets a layer of hair up to
            `HAIR_DEPTH` of the diagonal lie over them (`HairLayer`), the final polish discounts matches far
            outside them (`refine_similarity`).
        find_face: called (once) when the whole-scan search is in doubt (the scan is not just a clean head, or
            another orientation scores within `ambiguous` times the winner's): face landmarks found on the scan,
            (scan points (L, 3), template vertex ids (L,)), or None. When it finds a face, its landmark pose
            competes with the whole-scan finals by the common score plus a landmark term (`_choose_with_face`)
            instead of the search for heads inside the scan; info["face"] says what it found.

    Returns:
        (Similarity scan->template, info dict with the candidate scores).
    """
    guided = up is not None or front is not None
    ctx = _context(cloud, tmpl_verts, tmpl_faces, num_points, trim, guided, outside_mask)
    if landmarks is not None and len(landmarks[1]) >= 3:
        sim0 = umeyama(landmarks[0], tmpl_verts[landmarks[1]])
        fit = icp_similarity(ctx.full, ctx.tpts, ctx.tnrm, sim0, LANDMARK_ICP_ITERS, final_trim, hair=ctx.hair)
        return fit.sim, {"method": "landmarks", "score": fit.score}
    head = HeadSearch(tmpl_verts.mean(0), _rms_radius(tmpl_verts), ctx.cloud.points.mean(0),
                      _rms_radius(ctx.cloud.points), principal_axes(tmpl_verts))
    if guided:
        starts = [frame_from_up_front(np.asarray(up if up is not None else [0, 1, 0], float),
                                      np.asarray(front if front is not None else [0, 0, 1], float))]
    else:
        pa_s = principal_axes(ctx.cloud.points)
        starts = [head.tmpl_axes.T @ cube @ pa_s for cube in axis_rotations()]
    sims, scores = icp_batch(ctx.cloud, ctx.tpts, ctx.tnrm, [head.start(rot) for rot in starts], START_ICP_ITERS,
                             trim, ctx.fixed, ctx.hair)
    results = [Candidate(sim, float(score), rot, 1.0, head.scan_mean)
               for sim, score, rot in zip(sims, scores, starts, strict=True)]
    best = sorted(results, key=lambda c: c.score)[:CHOICE_FINALS]
    explained = max(_scan_explained(ctx.cloud, c.sim, ctx.tree, EXPLAINED_RADIUS * ctx.diag) for c in best)
    finals = None if explained < min_explained else _choose(results, ctx)  # a bust needs the search below anyway
    info = {"whole_scan_explained": round(explained, 4),
            "whole_scan_score": None if finals is None else round(finals[0].score, 4)}
    doubtful = finals is None or finals[0].score > max_score * ctx.diag
    if find_face is not None and (doubtful or _ambiguous(finals, ambiguous)):
        cues = find_face()
        info["face"] = cues is not None
        faced = None if cues is None else _choose_with_face(ctx, results, finals, cues)
        if faced is not None and faced[0].score <= CUE_MAX_SCORE * ctx.diag:
            return faced[0].sim, {"method": "face", "score": faced[0].score, "candidates": len(results),
                                  **_runner_up(faced), **info}
    if doubtful:
        # the scan is not just a head (shoulders, torso, hair, background), or it is a shell that the whole-scan
        # starts do not fit well: try heads of other sizes at the scan's extremities, oriented by local axes
        # and by the best whole-scan rotations
        results = results + extra_hypotheses(ctx, head, starts[0] if ctx.fixed else None,
                                             extra_rots=[c.rotation for c in best])
        finals = _choose(results, ctx)
    return finals[0].sim, {"method": "up-front" if guided else "search", "score": finals[0].score,
                           "candidates": len(results), **_runner_up(finals), **info}


def _choose(results: list[Candidate], ctx: SearchContext) -> list[Candidate]:
    """The final candidates, best first: the distinct best refined, polished, and rescored with a reverse term
    (scan points inside the template's box must lie on the template: on a bust the scan's own face must find
    template surface under it too)."""
    results = distinct(sorted(results, key=lambda c: c.score), CHOICE_KEEP, ctx.diag)
    refined = sorted((ctx.icp(c.sim, CHOICE_ICP_ITERS) for c in results),
                     key=lambda c: c.score + ctx.reverse(c.sim))
    # the last polish is point-to-plane with a distance gate: a less trimmed ICP drags a front-only shell's
    # head (half of it has no data under it) out of shape
    polished = [refine_similarity(ctx.full, ctx.verts, ctx.faces, c.sim, outside_mask=ctx.outside_mask)
                for c in refined[:CHOICE_FINALS]]
    scores = pose_scores(ctx.full, ctx.tpts, ctx.tnrm, polished, ctx.trim, ctx.hair)
    finals = sorted([Candidate(sim, score + ctx.reverse(sim)) for sim, score in zip(polished, scores, strict=True)],
                    key=lambda c: c.score)
    sim = refine_similarity(ctx.full, ctx.verts, ctx.faces, finals[0].sim, iters=WINNER_POLISH_ITERS,
                            outside_mask=ctx.outside_mask)
    winner = Candidate(sim, pose_scores(ctx.full, ctx.tpts, ctx.tnrm, [sim], ctx.trim, ctx.hair)[0] + ctx.reverse(sim))
    return [winner] + finals[1:]


def _ambiguous(finals: list[Candidate] | None, factor: float) -> bool:
    """Another orientation of the finals scores within `factor` times the winner's."""
    if finals is None:
        return True
    other = _runner_up(finals)["other_orientation"]
    return other is not None and other["score"] < factor * finals[0].score


def cue_score(sim: Similarity, cues: tuple[np.ndarray, np.ndarray], verts: np.ndarray) -> float:
    """Trimmed mean distance (template units) of the face landmarks under `sim` to their template vertices."""
    dist = np.sort(np.linalg.norm(sim.apply(cues[0]) - verts[cues[1]], axis=1))
    return float(dist[: max(1, int(CUE_TRIM * len(dist)))].mean())


def _choose_with_face(ctx: SearchContext, results: list[Candidate], finals: list[Candidate] | None,
                      cues: tuple[np.ndarray, np.ndarray]) -> list[Candidate] | None:
    """The landmark pose (a robust similarity fit of the face landmarks, polished on the scan) against the best
    whole-scan poses, by the common score (pose score + reverse score) plus the landmark term, best first; None
    when the scan does not lie within the head the landmarks put on it (`CUE_INSIDE`)."""
    keep = np.arange(len(cues[1]))
    for _ in range(2):  # refit to the closest landmarks: a few detections land off their point
        sim0 = umeyama(cues[0][keep], ctx.verts[cues[1][keep]])
        err = np.linalg.norm(sim0.apply(cues[0]) - ctx.verts[cues[1]], axis=1)
        keep = np.argsort(err)[: max(3, int(CUE_TRIM * len(err)))]
    lo, hi = ctx.verts.min(0), ctx.verts.max(0)
    pad = CUE_BOX_PAD * (hi - lo)
    pts = sim0.apply(ctx.cloud.points)
    if np.all((pts > lo - pad) & (pts < hi + pad), 1).mean() < CUE_INSIDE:
        return None
    others = [c.sim for c in (finals or sorted(results, key=lambda c: c.score))[:CUE_FINALS]]
    sims = [refine_similarity(ctx.full, ctx.verts, ctx.faces, sim0, outside_mask=ctx.outside_mask)] + others
    scores = pose_scores(ctx.full, ctx.tpts, ctx.tnrm, sims, ctx.trim, ctx.hair)
    rows = sorted((Candidate(sim, score + ctx.reverse(sim) + CUE_WEIGHT * cue_score(sim, cues, ctx.verts))
                   for sim, score in zip(sims, scores, strict=True)), key=lambda c: c.score)
    sim = refine_similarity(ctx.full, ctx.verts, ctx.faces, rows[0].sim, iters=WINNER_POLISH_ITERS,
                            outside_mask=ctx.outside_mask)
    score = pose_scores(ctx.full, ctx.tpts, ctx.tnrm, [sim], ctx.trim, ctx.hair)[0] + ctx.reverse(sim)
    return [Candidate(sim, score + CUE_WEIGHT * cue_score(sim, cues, ctx.verts))] + rows[1:]


def _runner_up(finals: list[Candidate]) -> dict:
    """The runner-up's score and the best final candidate that turns the head another way: when it scores about
    as well, the scan does not show which way the head faces (a symmetric blob, a scan of the back of a head)."""
    winner = finals[0].sim
    other = [c for c in finals[1:] if rotation_error_deg(winner.rotation, c.sim.rotation) > OTHER_ORIENTATION_DEG]
    return {"runner_up": finals[1].score if len(finals) > 1 else None,
            "other_orientation": {"score": other[0].score,
                                  "degrees": rotation_error_deg(winner.rotation, other[0].sim.rotation)}
            if other else None}
def _scan_explained(cloud: PointCloud, sim: Similarity, tree: cKDTree, radius: float) -> float:
    """Fraction of the scan points within `radius` (template units) of the template under `sim`."""
    pts = sim.apply(cloud.points[:: max(1, len(cloud.points) // EXPLAINED_PROBES)])
    dist, _ = tree.query(pts, distance_upper_bound=radius)
    return float(np.isfinite(dist).mean())


def reverse_score(cloud: PointCloud, sim: Similarity, tmpl_verts: np.ndarray, tree: cKDTree,
                   trim: float = REVERSE_TRIM, hair: HairLayer | None = None, normals: np.ndarray | None = None) -> float:
    """Trimmed mean distance (template units) from the scan points inside the template's box (above its
    lowest tenth: the neck cut, where scans go on into shoulders) to the template vertices (at `hair` vertices,
    with (V, 3) vertex `normals`: to the skin pushed out by the hair)."""
    pts = sim.apply(cloud.points)
    lo, hi = tmpl_verts.min(0), tmpl_verts.max(0)
    lo = lo + np.array([0.0, NECK_CUT, 0.0]) * (hi - lo)
    inside = np.all((pts > lo) & (pts < hi), 1)
    if inside.sum() < MIN_INSIDE:
        return float(np.linalg.norm(hi - lo))
    dist, vid = tree.query(pts[inside])
    if hair is not None:
        dist = np.linalg.norm(without_hair(pts[inside] - tmpl_verts[vid], normals[vid], hair.subset(vid)), axis=1)
    return float(np.sort(dist)[: max(1, int(trim * len(dist)))].mean())


