"""Similarity alignment (7-DoF: scale, rotation, translation) of one surface onto another (numpy).

Convention everywhere: a point x of the source maps to ``s * R @ x + t``; the target stays fixed.

Two protocols (see README "Alignment"):

* ``"topos"`` — the paper's procedure verbatim (TOPOS appendix C): every source vertex is matched to its
  nearest target vertex (k-d tree), the ``trim`` fraction of smallest residuals is kept, a closed-form Umeyama
  similarity is solved on that set and composed with the running transform. Multi-start over a yaw grid x a
  scale grid around a centroid / bounding-box-diagonal start, ``seed_iters`` iterations each, then up to
  ``final_iters`` iterations from the lowest residual. Kept for reproducing published numbers; it is fragile
  (one-way trimmed residuals reward shrinking the source).
* ``"robust"`` (default) — the same multi-start skeleton with the failure modes fixed: area-weighted surface
  samples instead of vertices (density independent), symmetric correspondences (target->source pairs penalise
  shrinking), seed scoring on the symmetric residual averaged over several trims (cannot prefer collapse, and
  a partial shell cannot hide its distinctive part), a scale guard, more rotation starts (yaw every 45 deg,
  +-20 deg pitch and roll, the 24 axis-aligned frames) pruned coarse to fine on growing sample counts, Gauss-
  Newton point-to-plane steps, and a final refinement whose per-direction overlap is estimated from the data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from topos_cli.geometry.icp_batch import HESSIAN_DAMPING, MAX_LOG_SCALE_STEP, symmetric_icp_batch

# the shared alignment toolkit, importable from here too (retopo and the generation fit use the same names)
from topos_cli.geometry.similarity import (  # noqa: F401
    PointCloud,
    Similarity,
    apply_similarity,
    axis_rotations,
    bbox_diagonal,
    frame_from_up_front,
    pca_normals,
    principal_axes,
    rodrigues,
    rodrigues_batch,
    rotation_error_deg,
    rotation_from_euler,
    skew,
    umeyama,
)

PAPER_YAWS = (0.0, 90.0, 180.0, 270.0)
PAPER_SCALES = (0.5, 0.7, 1.0, 1.4)
ROBUST_SCALES = (0.5, 0.7, 1.0, 1.4, 2.0)
SAME_SEED_DEG = 1.0  # an axis frame within this of a yaw/tilt start is the same start
FINAL_COARSE_POINTS = 3000  # samples of the final refinement's first pass (converges there, polishes on all)
FINAL_COARSE_TOL, FINAL_TOL = 1e-5, 1e-6  # stop moves of those passes, fraction of the target's diagonal
# per-direction overlap of the final refinement: pairs closer than 6 x the 10 % distance quantile, at least 10 %
FINAL_OVERLAP = (0.1, 6.0, 0.1)
# starts that reach the final refinement: the multi-start's stages score on few samples and few iterations, so on a
# partial overlap (a head onto a bust) the right basin can rank second there; each survivor is refined and the one
# with the best common score (`_common_scores`, on the final samples) wins
FINAL_CANDIDATES = 6
# placements of a start beside centroid-on-centroid: the source's box flush with a side of the target's box, tried
# along an axis where the (rotated, scaled) source is at most this fraction of the target's extent
FLUSH_MAX_RATIO = 0.8
PLACEMENTS = ("centroid", "-x", "+x", "-y", "+y", "-z", "+z")


@dataclass(frozen=True)
class AlignResult(Similarity):
    """A fitted similarity ``x -> scale * rotation @ x + translation`` with how it was found.

    Attributes (beside `Similarity`'s scale, rotation, translation):
        residual: final trimmed RMS point distance, in target units.
        residual_rel: ``residual`` divided by the target's bounding-box diagonal.
        iterations: ICP iterations of the final refinement.
        protocol: "robust" or "topos".
        seed: the winning start (``yaw_deg``, ``scale_factor``, ...).
        info: extra diagnostics (overlap fractions, seconds, ...).
    """

    residual: float = float("nan")
    residual_rel: float = float("nan")
    iterations: int = 0
    protocol: str = "robust"
    seed: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    @classmethod
    def of(cls, sim: Similarity, residual: float, diag: float, iterations: int, protocol: str, seed: dict,
           info: dict | None = None) -> AlignResult:
        """The result for ``sim``; ``diag`` is the target's bounding-box diagonal (for ``residual_rel``)."""
        return cls(sim.scale, sim.rotation, sim.translation, residual, residual / diag, iterations, protocol,
                   seed, info or {})

    def to_dict(self) -> dict:
        """Plain JSON-able dict: s, R, t, the 4x4 matrix and the final residual."""
        return {
            "protocol": self.protocol,
            "scale": float(self.scale),
            "rotation": self.rotation.tolist(),
            "translation": self.translation.tolist(),
            "matrix": self.matrix.tolist(),
            "residual": float(self.residual),
            "residual_rel": float(self.residual_rel),
            "iterations": int(self.iterations),
            "seed": self.seed,
            **self.info,
        }


@dataclass(frozen=True)
class IcpFit:
    """Where an ICP run ended: the similarity, its trimmed RMS residual, the iterations done and the fraction of
    pairs kept in each direction (source -> target, target -> source) by its last step."""

    sim: Similarity
    residual: float
    iterations: int
    overlap: tuple[float, float] = (1.0, 1.0)


def _trimmed(dist: np.ndarray, trim: float) -> np.ndarray:
    """Indices of the ceil(trim * N) smallest distances."""
    k = max(3, int(np.ceil(trim * len(dist))))
    if k >= len(dist):
        return np.arange(len(dist))
    return np.argpartition(dist, k - 1)[:k]


# ----------------------------------------------------------------------------------------------------------
# The paper's protocol, verbatim
# ----------------------------------------------------------------------------------------------------------


def trimmed_icp(src: np.ndarray, dst_tree: cKDTree, dst: np.ndarray, sim: Similarity, *, iters: int, trim: float,
                tol: float = 1e-7) -> IcpFit:
    """One-way trimmed similarity ICP (the paper's inner loop).

    Each iteration matches every source point to its nearest target point, keeps the ``trim`` fraction
    of smallest residuals, solves Umeyama on them and composes the step with the running transform.

    Args:
        src: (N, 3) source points (untransformed).
        dst_tree: cKDTree over ``dst``.
        dst: (M, 3) target points.
        sim: start transform.
        iters: maximum iterations.
        trim: kept fraction in (0, 1].
        tol: stop when the trimmed RMS changes by less than ``tol`` (relative).

    Returns:
        IcpFit: the transform, its trimmed RMS residual (target units, after the last step), iterations done.
    """
    prev = np.inf
    done = 0
    for step in range(1, iters + 1):
        done = step
        cur = sim.apply(src)
        dist, idx = dst_tree.query(cur)
        keep = _trimmed(dist, trim)
        rms = float(np.sqrt(np.mean(dist[keep] ** 2)))
        sim = umeyama(cur[keep], dst[idx[keep]]).compose(sim)
        if abs(prev - rms) <= tol * max(rms, 1e-30):
            break
        prev = rms
    dist, _ = dst_tree.query(sim.apply(src))
    keep = _trimmed(dist, trim)
    return IcpFit(sim, float(np.sqrt(np.mean(dist[keep] ** 2))), done, (trim, trim))


def _start(src: np.ndarray, dst: np.ndarray, rot0: np.ndarray, factor: float) -> Similarity:
    """Centroid-to-centroid start with scale ``factor * diag(dst) / diag(src)``, rotated about the centroid."""
    s = factor * (bbox_diagonal(dst) / max(bbox_diagonal(src), 1e-30))
    return Similarity(s, rot0, dst.mean(0) - s * rot0 @ src.mean(0))


def align_topos(
    src: np.ndarray,
    dst: np.ndarray,
    *,
    trim: float = 0.5,
    yaws=PAPER_YAWS,
    scales=PAPER_SCALES,
    seed_iters: int = 30,
    final_iters: int = 300,
) -> AlignResult:
    """The paper's multi-start trimmed similarity ICP on vertices, verbatim (see module docstring).

    Args:
        src: (N, 3) source (prediction) vertices.
        dst: (M, 3) target (ground-truth) vertices, fixed.
        trim: kept fraction tau of the smallest residuals.
        yaws: yaw angles in degrees (about +Y) of the start grid.
        scales: scale factors of the start grid, relative to the bounding-box-diagonal ratio.
        seed_iters: ICP iterations from each start.
        final_iters: maximum iterations of the final refinement.

    Returns:
        AlignResult with protocol "topos".
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    tree = cKDTree(dst)
    best, best_seed = None, {}
    for yaw in yaws:
        for factor in scales:
            fit = trimmed_icp(src, tree, dst, _start(src, dst, rotation_from_euler(yaw), factor), iters=seed_iters,
                              trim=trim)
            if best is None or fit.residual < best.residual:
                best, best_seed = fit, {"yaw_deg": float(yaw), "scale_factor": float(factor)}
    fit = trimmed_icp(src, tree, dst, best.sim, iters=final_iters, trim=trim)
    return AlignResult.of(fit.sim, fit.residual, bbox_diagonal(dst), fit.iterations, "topos", best_seed)


# ----------------------------------------------------------------------------------------------------------
# The robust protocol (default)
# ----------------------------------------------------------------------------------------------------------


def _keep_adaptive(dist: np.ndarray, low_q: float, factor: float, min_keep: float) -> np.ndarray:
    """Indices of pairs closer than ``factor`` x the ``low_q`` quantile (an overlap estimate), at least ``min_keep``."""
    thr = factor * np.quantile(dist, low_q)
    keep = np.flatnonzero(dist <= thr)
    if len(keep) < max(3, min_keep * len(dist)):
        keep = _trimmed(dist, min_keep)
    return keep


def _gauss_newton_step(a: np.ndarray, b: np.ndarray, normals: np.ndarray, w: np.ndarray,
                       point_weight: float) -> Similarity:
    """Linearised similarity step moving points ``a`` towards ``b``.

    Minimises ``sum w (n.(a' - b))^2 + point_weight * sum w |a' - b|^2`` to first order in
    a' = c + (1 + sigma)(a - c) + omega x (a - c) + tau, then maps (sigma, omega, tau) to an exact similarity.
    """
    c = w @ a / w.sum()
    x = a - c
    diff = a - b
    jac = np.concatenate([(normals * x).sum(1, keepdims=True), np.cross(x, normals), normals], 1)  # (N, 7)
    res = (normals * diff).sum(1)
    hess = jac.T @ (jac * w[:, None])
    grad = jac.T @ (res * w)
    if point_weight > 0:
        wp = point_weight * w
        jp = np.concatenate([x[:, :, None], -skew(x), np.broadcast_to(np.eye(3), (len(x), 3, 3))], 2)  # (N, 3, 7)
        jp = jp.reshape(-1, 7)
        wp3 = np.repeat(wp, 3)
        hess = hess + jp.T @ (jp * wp3[:, None])
        grad = grad + jp.T @ (diff.reshape(-1) * wp3)
    hess = hess + HESSIAN_DAMPING * np.trace(hess) * np.eye(7)
    theta = -np.linalg.solve(hess, grad)
    ds = float(np.exp(np.clip(theta[0], -MAX_LOG_SCALE_STEP, MAX_LOG_SCALE_STEP)))
    d_rot = rodrigues(theta[1:4])
    return Similarity(ds, d_rot, c + theta[4:] - ds * d_rot @ c)


def _sym_step(src: PointCloud, dst: PointCloud, sim: Similarity, trim: float, point_weight: float | None,
              adaptive: tuple | None) -> IcpFit:
    """One symmetric ICP step: the new transform, the rms before the step and the kept fractions.

    ``point_weight`` None solves point-to-point (Umeyama); a number solves point-to-plane plus that much
    point-to-point by one Gauss-Newton step.
    """
    cur = sim.apply(src.points)
    d_fwd, j_fwd = dst.tree.query(cur)
    dst_in_src = ((dst.points - sim.translation) @ sim.rotation) / sim.scale  # target samples in the source frame
    d_bwd, j_bwd = src.tree.query(dst_in_src)
    d_bwd = d_bwd * sim.scale
    if adaptive is None:
        k_fwd, k_bwd = _trimmed(d_fwd, trim), _trimmed(d_bwd, trim)
    else:
        k_fwd, k_bwd = _keep_adaptive(d_fwd, *adaptive), _keep_adaptive(d_bwd, *adaptive)
    a = np.concatenate([cur[k_fwd], cur[j_bwd[k_bwd]]])
    b = np.concatenate([dst.points[j_fwd[k_fwd]], dst.points[k_bwd]])
    w = np.concatenate([np.full(len(k_fwd), 0.5 / len(k_fwd)), np.full(len(k_bwd), 0.5 / len(k_bwd))])
    if point_weight is None:
        step = umeyama(a, b, w)
    else:
        normals = np.concatenate([dst.normals[j_fwd[k_fwd]], src.normals[j_bwd[k_bwd]] @ sim.rotation.T])
        step = _gauss_newton_step(a, b, normals, w, point_weight)
    rms = float(np.sqrt(0.5 * np.mean(d_fwd[k_fwd] ** 2) + 0.5 * np.mean(d_bwd[k_bwd] ** 2)))
    return IcpFit(step.compose(sim), rms, 1, (len(k_fwd) / len(d_fwd), len(k_bwd) / len(d_bwd)))


def symmetric_icp(
    src: PointCloud,
    dst: PointCloud,
    sim: Similarity,
    *,
    iters: int,
    trim: float = 0.5,
    point_weight: float | None = None,
    adaptive: tuple | None = None,
    scale_range: tuple[float, float] = (0.0, np.inf),
    tol: float = 1e-6,
) -> IcpFit:
    """Symmetric trimmed similarity ICP from ``sim``.

    Stops when an iteration moves no corner of the source's bounding box by more than ``tol`` x the
    target's bounding-box diagonal, or when two iterations made no progress (the kept set flickering
    between two states).
    """
    corners = np.array(np.meshgrid(*zip(src.points.min(0), src.points.max(0), strict=True))).T.reshape(-1, 3)
    scale_len = bbox_diagonal(dst.points)
    fit, moves = IcpFit(sim, np.inf, 0, (trim, trim)), []
    for step in range(1, iters + 1):
        before = sim.apply(corners)
        fit = _sym_step(src, dst, sim, trim, point_weight, adaptive)
        sim = fit.sim
        if not scale_range[0] <= sim.scale <= scale_range[1]:  # scale guard: clamp about the current centroid
            c = sim.apply(src.points.mean(0, keepdims=True))[0]
            s_new = float(np.clip(sim.scale, *scale_range))
            sim = Similarity(s_new, sim.rotation, c - s_new * sim.rotation @ src.points.mean(0))
        fit = IcpFit(sim, fit.residual, step, fit.overlap)
        moves.append(np.abs(sim.apply(corners) - before).max())
        if moves[-1] <= tol * scale_len:
            break
        if len(moves) >= 3 and moves[-1] >= 0.9 * moves[-3]:  # a 2-cycle of the kept set: no more progress
            break
    return fit


@dataclass(frozen=True)
class SeedRotation:
    """A named start rotation of the robust multi-start."""

    name: str
    rotation: np.ndarray


def _robust_seeds(yaws, tilts, axis_frames: bool) -> list[SeedRotation]:
    """Start rotations: each yaw, tilted by each nonzero tilt about X (pitch) and about Z (roll), plus the 24
    axis-aligned frames (meshes with another up axis), deduplicated."""
    seeds = []
    for yaw in yaws:
        for tilt in tilts:
            if tilt == 0:
                seeds.append(SeedRotation(f"yaw{yaw:g}", rotation_from_euler(yaw)))
            else:
                seeds.append(SeedRotation(f"yaw{yaw:g}_pitch{tilt:g}", rotation_from_euler(yaw, tilt, 0.0)))
                seeds.append(SeedRotation(f"yaw{yaw:g}_roll{tilt:g}", rotation_from_euler(yaw, 0.0, tilt)))
    if axis_frames:
        for i, m in enumerate(axis_rotations()):
            if all(rotation_error_deg(m, seed.rotation) > SAME_SEED_DEG for seed in seeds):
                seeds.append(SeedRotation(f"axes{i}", m))
    return seeds


ROBUST_YAWS = (0.0, 45.0, 90.0, 135.0, 180.0, 225.0, 270.0, 315.0)
ROBUST_TILTS = (0.0, -20.0, 20.0)
ROBUST_SCHEDULE = ((150, 3, 24), (400, 8, 4), (1000, 25, 1))


@dataclass(frozen=True)
class StartGrid:
    """The robust multi-start's surviving starts: transforms as arrays (B,), (B, 3, 3), (B, 3), the index of
    each into the full grid, and the grid itself ((G, 3): seed index, scale factor, placement index into
    PLACEMENTS)."""

    scale: np.ndarray
    rotation: np.ndarray
    translation: np.ndarray
    alive: np.ndarray
    grid: np.ndarray

    def take(self, rows: np.ndarray) -> StartGrid:
        return StartGrid(self.scale[rows], self.rotation[rows], self.translation[rows], self.alive[rows], self.grid)

    def similarity(self, row: int) -> Similarity:
        return Similarity(float(self.scale[row]), self.rotation[row], self.translation[row])


@dataclass(frozen=True)
class _Boxes:
    """The source's bounding box (corners (8, 3), centre) and centroid, the target's box and centroid."""

    src_corners: np.ndarray
    src_centre: np.ndarray
    src_mean: np.ndarray
    dst_lo: np.ndarray
    dst_hi: np.ndarray
    dst_mean: np.ndarray

    @classmethod
    def of(cls, src: PointCloud, dst: PointCloud) -> _Boxes:
        lo, hi = src.points.min(0), src.points.max(0)
        corners = np.array(np.meshgrid(*zip(lo, hi, strict=True))).T.reshape(-1, 3)
        return cls(corners, 0.5 * (lo + hi), src.points.mean(0), dst.points.min(0), dst.points.max(0),
                   dst.points.mean(0))


def _placements(boxes: _Boxes, rot: np.ndarray, scale: float) -> list[tuple[int, np.ndarray]]:
    """(placement index, translation) of a start: centroid onto centroid, and the source's box flush with each
    side of the target's box where the source is markedly smaller along that axis (a head on a bust sits at its
    top, a face shell at its front: the centroid start would put it in the chest or the skull)."""
    out = [(0, boxes.dst_mean - scale * rot @ boxes.src_mean)]
    corners = scale * boxes.src_corners @ rot.T  # (8, 3)
    half, centre = 0.5 * np.ptp(corners, 0), scale * rot @ boxes.src_centre
    d_lo, d_hi = boxes.dst_lo, boxes.dst_hi
    for axis in range(3):
        if half[axis] > FLUSH_MAX_RATIO * 0.5 * (d_hi[axis] - d_lo[axis]):
            continue
        for side, bound in ((1, d_lo[axis] + half[axis]), (2, d_hi[axis] - half[axis])):
            where = 0.5 * (d_lo + d_hi)
            where[axis] = bound
            out.append((2 * axis + side, where - centre))
    return out


def _start_grid(src: PointCloud, dst: PointCloud, seeds: list[SeedRotation], scales, s0: float) -> StartGrid:
    """Every (rotation, scale, placement) start."""
    boxes = _Boxes.of(src, dst)
    rows, rots, trans = [], [], []
    for r, seed in enumerate(seeds):
        for f in scales:
            for place, t in _placements(boxes, seed.rotation, f * s0):
                rows.append((r, f, place))
                rots.append(seed.rotation)
                trans.append(t)
    grid = np.array(rows)
    return StartGrid(grid[:, 1] * s0, np.stack(rots), np.stack(trans), np.arange(len(grid)), grid)


def _prune_starts(src: PointCloud, dst: PointCloud, starts: StartGrid, schedule, *, trim: float,
                  point_weight: float, guard: tuple[float, float]) -> StartGrid:
    """Coarse to fine: each stage runs every surviving start's ICP on more samples and keeps the best (at least
    FINAL_CANDIDATES of them, best first)."""
    for points, iters, kept in schedule:
        s, rot, t, rms = symmetric_icp_batch(src.head(points), dst.head(points), starts.scale, starts.rotation,
                                             starts.translation, iters=iters, trim=trim, point_weight=point_weight,
                                             scale_range=guard)
        top = np.argsort(rms, kind="stable")[: max(kept, FINAL_CANDIDATES)]
        starts = StartGrid(s, rot, t, starts.alive, starts.grid).take(top)
    return starts


def _final_pass(src: PointCloud, dst: PointCloud, sim: Similarity, points: int, tol: float, *, iters: int,
                point_weight: float, guard: tuple[float, float]) -> IcpFit:
    """One pass of the final refinement (point-to-plane, adaptive overlap) on the first `points` samples."""
    return symmetric_icp(src.head(points), dst.head(points), sim, iters=iters, point_weight=point_weight,
                         adaptive=FINAL_OVERLAP, scale_range=guard, tol=tol)


def _common_scores(src: PointCloud, dst: PointCloud, sims: list[Similarity], *, point_weight: float) -> np.ndarray:
    """(B,) one score for poses found from different starts: the symmetric residual averaged over several trims
    (`icp_batch._multi_trim_score`) on all samples, at the poses as given. Unlike each fit's own residual, its kept
    fractions do not adapt to the pose, so a wrong basin cannot win by keeping fewer pairs."""
    _, _, _, scores = symmetric_icp_batch(
        src, dst, np.array([sim.scale for sim in sims]), np.stack([sim.rotation for sim in sims]),
        np.stack([sim.translation for sim in sims]), iters=0, trim=1.0, point_weight=point_weight,
        scale_range=(0.0, np.inf))
    return scores


def _best_basin(src: PointCloud, dst: PointCloud, starts: StartGrid, *, final_points: int, final_iters: int,
                point_weight: float, score_weight: float, guard: tuple[float, float]) -> tuple[int, IcpFit]:
    """Each surviving start refined on the coarse final samples; the row and fit of the best common score."""
    coarse = min(FINAL_COARSE_POINTS, final_points)
    fits = [_final_pass(src, dst, starts.similarity(row), coarse, FINAL_COARSE_TOL, iters=final_iters,
                        point_weight=point_weight, guard=guard) for row in range(len(starts.scale))]
    if len(fits) == 1:
        return 0, fits[0]
    scores = _common_scores(src.head(final_points), dst.head(final_points), [fit.sim for fit in fits],
                            point_weight=score_weight)
    row = int(np.argmin(scores))  # ties: the multi-start's own order
    return row, fits[row]


def align_robust(
    src_verts: np.ndarray,
    src_faces: np.ndarray | None,
    dst_verts: np.ndarray,
    dst_faces: np.ndarray | None,
    *,
    rng: np.random.Generator,
    trim: float = 0.5,
    yaws=ROBUST_YAWS,
    tilts=ROBUST_TILTS,
    scales=ROBUST_SCALES,
    axis_frames: bool = True,
    schedule=ROBUST_SCHEDULE,
    final_points: int = 8000,
    final_iters: int = 100,
    scale_guard: float = 4.0,
    point_weight: float = 0.2,
    final_point_weight: float = 0.01,
) -> AlignResult:
    """Robust multi-start similarity alignment of a source surface onto a fixed target surface.

    Every (rotation, scale) start runs a symmetric trimmed ICP; a coarse-to-fine ``schedule`` prunes the
    starts on the symmetric residual (which cannot prefer collapse), and the winner is refined by
    point-to-plane ICP on ``final_points`` samples with per-direction overlap estimated from the data.

    Args:
        src_verts, src_faces: (N, 3) float and (F, 3) int source mesh (faces may be None: point cloud).
        dst_verts, dst_faces: target mesh, fixed.
        rng: numpy Generator for the surface samples (same seed -> bit-identical result).
        trim: kept fraction tau per direction in the multi-start stages.
        yaws: yaw grid (degrees about +Y).
        tilts: tilt grid in degrees: each nonzero value adds a pitch (about +X) and a roll (about +Z) start,
            applied before the yaw.
        scales: scale grid, factors of the bounding-box-diagonal ratio s0.
        axis_frames: also start from the 24 axis-aligned frames (meshes with another up axis).
        schedule: ((points, iterations, starts kept), ...) for the multi-start stages, coarse to fine.
        final_points, final_iters: final refinement (point-to-plane, adaptive overlap).
        scale_guard: the scale stays within [s0 / g, s0 * g].
        point_weight: weight of the point-to-point term beside point-to-plane in the multi-start stages.
        final_point_weight: the same in the final refinement (small: point-to-plane is unbiased by sampling).

    Returns:
        AlignResult with protocol "robust"; ``residual`` is the symmetric trimmed RMS of the final stage.
    """
    n_max = max([final_points] + [stage[0] for stage in schedule])
    src_all = PointCloud.sample(src_verts, src_faces, n_max, rng)
    dst_all = PointCloud.sample(dst_verts, dst_faces, n_max, rng)
    s0 = bbox_diagonal(dst_all.points) / max(bbox_diagonal(src_all.points), 1e-30)
    guard = (s0 / scale_guard, s0 * scale_guard)
    seeds = _robust_seeds(yaws, tilts, axis_frames)
    starts = _prune_starts(src_all, dst_all, _start_grid(src_all, dst_all, seeds, scales, s0), schedule, trim=trim,
                           point_weight=point_weight, guard=guard)
    row, coarse = _best_basin(src_all, dst_all, starts, final_points=final_points, final_iters=final_iters,
                              point_weight=final_point_weight, score_weight=final_point_weight, guard=guard)
    best = starts.grid[starts.alive[row]]
    seed = {"rotation": seeds[int(best[0])].name, "scale_factor": float(best[1]),
            "placement": PLACEMENTS[int(best[2])], "starts": len(starts.grid), "rank": row}
    fit = _final_pass(src_all, dst_all, coarse.sim, final_points, FINAL_TOL, iters=final_iters,
                      point_weight=final_point_weight, guard=guard)
    info = {"overlap_src": float(fit.overlap[0]), "overlap_dst": float(fit.overlap[1])}
    return AlignResult.of(fit.sim, fit.residual, bbox_diagonal(dst_all.points), coarse.iterations + fit.iterations,
                          "robust", seed, info)
