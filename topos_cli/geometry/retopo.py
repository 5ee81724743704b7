"""Non-rigid template fitting: scan -> template-ordered vertices (pure numpy/scipy).

Three stages, each usable alone (the pipeline in `pipelines/retopo.py` chains them):

1. `prealign`: a similarity transform (scale, rotation, translation) that brings the scan into the template
   frame. Scale starts from the ratio of RMS radii (so mm, cm, m and inches all work), orientation from the
   24 axis permutations/sign flips that map the scan's principal axes onto the template's, each refined by
   trimmed similarity ICP (template -> scan, normal-compatible matches) and scored by the trimmed
   template-to-scan distance (where the template has hair regions, up to `HAIR_DEPTH` of hair may lie over
   them, and the hair-free face counts more: `HairLayer`). When that whole-scan fit leaves much of the scan
   unexplained (a bust), the head is searched for inside the scan (`_extra_hypotheses`: head sizes and centres,
   orientations from the cropped head's axes and from the body below it). `up`/`front` (unit vectors in scan
   coordinates) skip the orientation search.
2. `fit_bases`: alternating least squares over the template's linear shape bases (identity + expression)
   and the similarity, with point-to-plane, distance-gated, normal-compatible correspondences in both
   directions and a Gaussian (ridge) prior on the coefficients. Tangential sliding cannot happen here: the
   bases carry the semantic correspondence.
3. `refine`: displacement field on top of the prior, min  sum_i w_i |x_i + d_i - c_i|^2 + alpha |L d|^2 * k_i,
   where c_i is the foot of x_i on the scan's tangent plane (normal-only pull, so vertices do not slide),
   L the uniform Laplacian (bi-Laplacian energy: where the scan has holes the displacement is smoothly
   interpolated and the shape follows the prior), k_i a per-vertex stiffness (eye/mouth boundary loops and
   landmarks' neighbourhoods stiffer). A decreasing alpha schedule as in optimal-step NICP.

All arrays are float64 internally; inputs and outputs are (N, 3) arrays in the stated frames.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from scipy import sparse
from scipy.sparse import linalg as splinalg
from scipy.spatial import cKDTree

from topos_cli.geometry import align
from topos_cli.geometry.mesh_ops import face_normals, uniform_laplacian, vertex_normals


@dataclass
class Similarity:
    """x_template = scale * R @ x_scan + t."""

    scale: float = 1.0
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def apply(self, points: np.ndarray) -> np.ndarray:
        return self.scale * points @ self.rotation.T + self.translation

    def inverse(self) -> Similarity:
        rot = self.rotation.T
        return Similarity(1.0 / self.scale, rot, -(rot @ self.translation) / self.scale)

    def compose(self, inner: Similarity) -> Similarity:
        """self after inner."""
        return Similarity(self.scale * inner.scale, self.rotation @ inner.rotation,
                          self.scale * self.rotation @ inner.translation + self.translation)

    def matrix(self) -> np.ndarray:
        mat = np.eye(4)
        mat[:3, :3] = self.scale * self.rotation
        mat[:3, 3] = self.translation
        return mat

    def to_dict(self) -> dict:
        return {"scale": float(self.scale), "rotation": self.rotation.tolist(),
                "translation": self.translation.tolist(), "matrix": self.matrix().tolist()}


def umeyama(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None,
            with_scale: bool = True, rotation: np.ndarray | None = None) -> Similarity:
    """Weighted least-squares similarity dst ~ s R src + t (geometry.align.umeyama) as a `Similarity`;
    `rotation` keeps that rotation fixed and fits only scale and translation."""
    return Similarity(*align.umeyama(src, dst, weights, with_scale, rotation))


def _principal_axes(points: np.ndarray) -> np.ndarray:
    """(3, 3) rows = principal axes, largest variance first, right-handed."""
    centred = points - points.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    if np.linalg.det(vt) < 0:
        vt[2] *= -1
    return vt


def _cube_rotations() -> list[np.ndarray]:
    """The 24 proper rotations that permute and flip coordinate axes."""
    rots = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product([1, -1], repeat=3):
            mat = np.zeros((3, 3))
            mat[range(3), perm] = signs
            if np.linalg.det(mat) > 0:
                rots.append(mat)
    return rots


def _frame_from_up_front(up: np.ndarray, front: np.ndarray) -> np.ndarray:
    """Rotation taking scan vectors `up`->+Y and `front`->+Z (front orthogonalised against up)."""
    up = np.asarray(up, float) / np.linalg.norm(up)
    front = np.asarray(front, float) - up * float(np.dot(front, up))
    if np.linalg.norm(front) < 1e-8:
        raise ValueError("up and front directions are parallel")
    front /= np.linalg.norm(front)
    right = np.cross(up, front)
    return np.stack([right, up, front])  # rows: scan directions mapped to +X, +Y, +Z


@dataclass
class ScanCloud:
    """Points with unit normals sampled from a scan, plus a KD-tree (all in one frame)."""

    points: np.ndarray
    normals: np.ndarray

    def __post_init__(self):
        self.tree = cKDTree(self.points)

    def transformed(self, sim: Similarity) -> ScanCloud:
        return ScanCloud(sim.apply(self.points), self.normals @ sim.rotation.T)

    def spacing(self, probes: int = 2000) -> float:
        """Median distance from a sample to its nearest other sample (over about `probes` of them)."""
        probe = self.points[:: max(1, len(self.points) // probes)]
        return float(np.median(self.tree.query(probe, k=2)[0][:, 1]))


def _workers(query: np.ndarray) -> int:
    """KD-tree query threads: all cores for the search's batched queries, one for small ones (thread start-up
    costs more than it saves there)."""
    return -1 if query.size > 150_000 else 1


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


def _without_hair(diff: np.ndarray, normals: np.ndarray, hair: HairLayer | None) -> np.ndarray:
    """Template->scan offsets `diff` (..., P, 3) less the hair: at hair points, the part of the offset along the
    template's outward normal `normals` (..., P, 3) between 0 and the hair depth is taken off."""
    if hair is None:
        return diff
    out = np.clip((diff * normals).sum(-1), 0.0, hair.depth) * hair.mask
    return diff - out[..., None] * normals


def _icp_similarity(cloud: ScanCloud, tmpl_pts: np.ndarray, tmpl_nrm: np.ndarray, sim: Similarity,
                    iters: int, trim: float, fix_rotation: bool = False,
                    hair: HairLayer | None = None) -> tuple[Similarity, float]:
    """`_icp_batch` from one start: the refined scan->template similarity and its score."""
    sims, scores = _icp_batch(cloud, tmpl_pts, tmpl_nrm, [sim], iters, trim, fix_rotation, hair)
    return sims[0], float(scores[0])


def _pose_scores(cloud: ScanCloud, tmpl_pts: np.ndarray, tmpl_nrm: np.ndarray, sims: list[Similarity],
                 trim: float, hair: HairLayer | None = None) -> np.ndarray:
    """(H,) score of each scan->template pose, in one KD-tree query for all of them: the mean of the closest
    `trim` fraction of template->scan distances (template units; at `hair` points, to the skin pushed out by
    the hair), each plus half the median distance times (1 - |normal agreement|)."""
    scales = np.array([s.scale for s in sims])
    rots = np.stack([s.rotation for s in sims])  # (H, 3, 3)
    trans = np.stack([s.translation for s in sims])
    query = np.einsum("hpj,hji->hpi", tmpl_pts[None] - trans[:, None], rots) / scales[:, None, None]  # scan frame
    dist, idx = cloud.tree.query(query.reshape(-1, 3), workers=_workers(query))
    if hair is None:
        dist = dist.reshape(len(sims), -1) * scales[:, None]  # template units
    else:
        diff = np.einsum("hpj,hij->hpi", cloud.points[idx].reshape(query.shape) - query, rots) * scales[:, None, None]
        dist = np.linalg.norm(_without_hair(diff, tmpl_nrm[None], hair), axis=2)
    compat = np.abs(np.einsum("hpj,hij,pi->hp", cloud.normals[idx].reshape(*query.shape), rots, tmpl_nrm))
    cost = dist + 0.5 * np.median(dist, axis=1, keepdims=True) * (1.0 - compat)
    if hair is None:
        return np.sort(cost, axis=1)[:, : int(trim * len(tmpl_pts))].mean(1)
    # the face and the hair regions count alike, and the face (no hair there: every head scan shows it) is
    # trimmed less: with the allowance for hair, a smaller head on a torso fits the hair regions as well as the
    # right one does, but not its whole face
    groups = [(cost[:, hair.mask > 0], trim), (cost[:, hair.mask == 0], max(trim, FACE_TRIM))]
    means = [np.sort(g, axis=1)[:, : max(1, int(t * g.shape[1]))].mean(1) for g, t in groups if g.shape[1]]
    return means[0] if len(means) == 1 else (means[0] + FACE_WEIGHT * means[1]) / (1 + FACE_WEIGHT)


def _row_quantiles(values: np.ndarray, counts: np.ndarray, q: float) -> np.ndarray:
    """Per row, the q-quantile (numpy's default linear method) of its first `counts` smallest values (the others
    are +inf fillers)."""
    ordered = np.sort(values, axis=1)
    pos = q * (counts - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, counts - 1)
    rows = np.arange(len(values))
    a, b, t = ordered[rows, lo], ordered[rows, hi], pos - lo
    return np.where(t >= 0.5, b - (b - a) * (1 - t), a + (b - a) * t)  # numpy's lerp


def _icp_batch(cloud: ScanCloud, tmpl_pts: np.ndarray, tmpl_nrm: np.ndarray, sims: list[Similarity], iters: int,
               trim: float, fix_rotation: bool = False,
               hair: HairLayer | None = None) -> tuple[list[Similarity], np.ndarray]:
    """Trimmed, normal-compatible template->scan similarity ICP from many starts at once (one KD-tree query per
    iteration for all of them): the refined scan->template similarities and their `_pose_scores`.

    Each iteration matches every template point to its nearest scan point, keeps the normal-compatible matches
    (the scan's normals may be flipped as a whole: the majority sign decides), trims them to the closest `trim`
    fraction and solves Umeyama on the rest (only scale and shift when `fix_rotation`). `hair` enters the scores
    only: a hair allowance in the matches would let every head shrink inside its scan."""
    num, count = len(sims), len(tmpl_pts)
    scales = np.array([1.0 / s.scale for s in sims])  # the ICP runs on the inverse (template -> scan)
    rots = np.stack([s.rotation.T for s in sims])
    trans = np.stack([-(s.rotation.T @ s.translation) / s.scale for s in sims])
    for _ in range(iters):
        query = scales[:, None, None] * (tmpl_pts @ rots.transpose(0, 2, 1)) + trans[:, None]
        dist, idx = cloud.tree.query(query.reshape(-1, 3), workers=_workers(query))
        dist, idx = dist.reshape(num, count), idx.reshape(num, count)
        compat = ((cloud.normals[idx] @ rots.transpose(0, 2, 1)) * tmpl_nrm).sum(2)  # (n @ R_inv^T) . tn
        compat = compat * np.where(np.median(compat, axis=1, keepdims=True) >= 0, 1.0, -1.0)
        keep = compat > 0.3
        keep[keep.sum(1) < 10] = True
        cut = _row_quantiles(np.where(keep, dist, np.inf), keep.sum(1), trim)[:, None]
        w = (keep & (dist <= cut)).astype(float)
        wsum = w.sum(1, keepdims=True)
        dst = cloud.points[idx]  # (H, P, 3)
        mu_s, mu_d = (w @ tmpl_pts) / wsum, (w[:, None] @ dst)[:, 0] / wsum
        xs, xd = tmpl_pts[None] - mu_s[:, None], dst - mu_d[:, None]
        var_s = (w * (xs ** 2).sum(2)).sum(1) / wsum[:, 0]
        if fix_rotation:
            scales = np.einsum("hp,hpi,hpi->h", w, np.einsum("hpj,hij->hpi", xs, rots), xd) / wsum[:, 0] / var_s
        else:
            cov = (xd * w[..., None]).transpose(0, 2, 1) @ xs / wsum[:, :, None]
            u, sig, vt = np.linalg.svd(cov)
            d = np.ones((num, 3))
            d[np.linalg.det(u) * np.linalg.det(vt) < 0, 2] = -1.0
            rots = (u * d[:, None]) @ vt
            scales = (sig * d).sum(1) / var_s
        trans = mu_d - scales[:, None] * np.einsum("hij,hj->hi", rots, mu_s)
    out = [Similarity(float(s), r, t).inverse() for s, r, t in zip(scales, rots, trans, strict=True)]
    return out, _pose_scores(cloud, tmpl_pts, tmpl_nrm, out, trim, hair)


def prealign(cloud: ScanCloud, tmpl_verts: np.ndarray, tmpl_faces: np.ndarray, *, up=None, front=None,
             landmarks: tuple[np.ndarray, np.ndarray] | None = None, num_points: int = 1000,
             trim: float = 0.6, final_trim: float = 0.9, min_explained: float = 0.75,
             max_score: float = 0.025, outside_mask: np.ndarray | None = None) -> tuple[Similarity, dict]:
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

    Returns:
        (Similarity scan->template, info dict with the candidate scores).
    """
    full = cloud = outward_normals(cloud)
    if len(cloud.points) > 6000:  # the search needs coverage, not density
        cloud = ScanCloud(cloud.points[:: len(cloud.points) // 6000 + 1], cloud.normals[:: len(cloud.points) // 6000 + 1])
    nrm = vertex_normals(tmpl_verts, tmpl_faces)
    sub = np.linspace(0, len(tmpl_verts) - 1, min(num_points, len(tmpl_verts))).astype(np.int64)
    tpts, tnrm = tmpl_verts[sub].astype(float), nrm[sub].astype(float)
    t_diag = float(np.linalg.norm(tmpl_verts.max(0) - tmpl_verts.min(0)))
    hair_v = None if outside_mask is None else HairLayer(outside_mask.astype(float), HAIR_DEPTH * t_diag)
    hair = None if hair_v is None else hair_v.subset(sub)
    t_mean = tmpl_verts.mean(0)
    t_rms = np.sqrt(((tmpl_verts - t_mean) ** 2).sum(1).mean())
    s_mean = cloud.points.mean(0)
    s_rms = np.sqrt(((cloud.points - s_mean) ** 2).sum(1).mean())
    if landmarks is not None and len(landmarks[1]) >= 3:
        sim0 = umeyama(landmarks[0], tmpl_verts[landmarks[1]])
        sim, score = _icp_similarity(full, tpts, tnrm, sim0, 20, final_trim, hair=hair)
        return sim, {"method": "landmarks", "score": score}
    pa_t = _principal_axes(tmpl_verts)
    if up is not None or front is not None:
        up = np.asarray(up if up is not None else [0, 1, 0], float)
        front = np.asarray(front if front is not None else [0, 0, 1], float)
        starts = [_frame_from_up_front(up, front)]
    else:
        pa_s = _principal_axes(cloud.points)
        starts = [pa_t.T @ cube @ pa_s for cube in _cube_rotations()]
    def start(rot, rel, center=s_mean):
        scale = rel * t_rms / max(s_rms, 1e-12)
        return Similarity(scale, rot, t_mean - scale * rot @ center)

    fixed = len(starts) == 1  # --up/--front given: the search is over scale and position only
    sims, scores = _icp_batch(cloud, tpts, tnrm, [start(rot, 1.0) for rot in starts], 8, trim, fixed, hair)
    results = [(sim, float(score), rot, 1.0, s_mean) for sim, score, rot in zip(sims, scores, starts, strict=True)]
    tree = cKDTree(tmpl_verts)

    def reverse(sim):
        return _reverse_score(cloud, sim, tmpl_verts, tree, hair=hair_v, normals=nrm)

    def choose(results):
        # the choice adds a reverse term (scan points inside the template's box must lie on the template): on a
        # bust the scan's own face must find template surface under it too
        results = _distinct(sorted(results, key=lambda r: r[1]), 6, t_diag)
        refined = [_icp_similarity(cloud, tpts, tnrm, sim0, 15, trim, fixed, hair) for sim0, *_ in results]
        refined.sort(key=lambda r: r[1] + reverse(r[0]))
        # the last polish is point-to-plane with a distance gate: a less trimmed ICP drags a front-only shell's
        # head (half of it has no data under it) out of shape
        finals = [refine_similarity(full, tmpl_verts, tmpl_faces, r[0], outside_mask=outside_mask) for r in refined[:3]]
        finals = list(zip(finals, _pose_scores(full, tpts, tnrm, finals, trim, hair), strict=True))
        finals = sorted([(sim, score + reverse(sim)) for sim, score in finals], key=lambda r: r[1])
        # the winner polished to convergence (under hair, ten steps leave it short)
        sim = refine_similarity(full, tmpl_verts, tmpl_faces, finals[0][0], iters=15, outside_mask=outside_mask)
        return [(sim, _pose_scores(full, tpts, tnrm, [sim], trim, hair)[0] + reverse(sim))] + finals[1:]

    best = sorted(results, key=lambda r: r[1])[:3]
    explained = max(_scan_explained(cloud, r[0], tree, 0.05 * t_diag) for r in best)
    finals = None if explained < min_explained else choose(results)  # a bust needs the search below anyway
    info = {"whole_scan_explained": round(explained, 4),
            "whole_scan_score": None if finals is None else round(finals[0][1], 4)}
    if finals is None or finals[0][1] > max_score * t_diag:
        # the scan is not just a head (shoulders, torso, hair, background), or it is a shell that the whole-scan
        # starts do not fit well: try heads of other sizes at the scan's extremities, oriented by local axes
        # and by the best whole-scan rotations
        results = results + _extra_hypotheses(
            cloud, tpts[::3], tnrm[::3], (tmpl_verts, tmpl_faces), pa_t, starts[0] if fixed else None, start,
            s_mean, s_rms, t_rms, trim, extra_rots=[r[2] for r in best],
            hair=None if hair is None else hair.subset(slice(None, None, 3)), outside_mask=outside_mask)
        finals = choose(results)
    sim, score = finals[0]
    # the best final candidate that turns the head another way: when it scores about as well, the scan does not
    # show which way the head faces (a symmetric blob, a scan of the back of a head)
    other = [(s, _degrees_between(sim.rotation, r.rotation)) for r, s in finals[1:]]
    other = [o for o in other if o[1] > OTHER_ORIENTATION_DEG]
    return sim, {"method": "search" if len(starts) > 1 else "up-front", "score": score,
                 "candidates": len(results), "runner_up": finals[1][1] if len(finals) > 1 else None,
                 "other_orientation": {"score": other[0][0], "degrees": other[0][1]} if other else None, **info}


def _degrees_between(rot_a: np.ndarray, rot_b: np.ndarray) -> float:
    """Angle of the rotation that takes rot_a to rot_b, in degrees."""
    return float(np.degrees(np.arccos(np.clip((np.trace(rot_a.T @ rot_b) - 1.0) / 2.0, -1.0, 1.0))))


def _scan_explained(cloud: ScanCloud, sim: Similarity, tree: cKDTree, radius: float) -> float:
    """Fraction of the scan points within `radius` (template units) of the template under `sim`."""
    pts = sim.apply(cloud.points[:: max(1, len(cloud.points) // 3000)])
    dist, _ = tree.query(pts, distance_upper_bound=radius)
    return float(np.isfinite(dist).mean())


def _reverse_score(cloud: ScanCloud, sim: Similarity, tmpl_verts: np.ndarray, tree: cKDTree,
                   trim: float = 0.9, hair: HairLayer | None = None, normals: np.ndarray | None = None) -> float:
    """Trimmed mean distance (template units) from the scan points inside the template's box (above its
    lowest tenth: the neck cut, where scans go on into shoulders) to the template vertices (at `hair` vertices,
    with (V, 3) vertex `normals`: to the skin pushed out by the hair)."""
    pts = sim.apply(cloud.points)
    lo, hi = tmpl_verts.min(0), tmpl_verts.max(0)
    lo = lo + np.array([0.0, 0.1, 0.0]) * (hi - lo)
    inside = np.all((pts > lo) & (pts < hi), 1)
    if inside.sum() < 20:
        return float(np.linalg.norm(hi - lo))
    dist, vid = tree.query(pts[inside])
    if hair is not None:
        dist = np.linalg.norm(_without_hair(pts[inside] - tmpl_verts[vid], normals[vid], hair.subset(vid)), axis=1)
    return float(np.sort(dist)[: max(1, int(trim * len(dist)))].mean())


# prior std of the similarity correction that the bases fit accumulates on top of the pre-alignment (scale,
# radians, cm): without it, a head the bases cannot explain (hair) lets the scale drift until nothing matches
SIM_PRIOR_STD = (0.05, 0.1, 2.0)
# the orientation search's scores, where the template has hair regions (`HairLayer`): the face (hair-free) points
# are trimmed less and weigh FACE_WEIGHT times the hair regions' points
FACE_TRIM = 0.9
FACE_WEIGHT = 2.0
OTHER_ORIENTATION_DEG = 45.0  # a final candidate turned further than this from the winner is another orientation
HAIR_DEPTH = 0.1  # thickest hair the orientation search allows for over the hair regions, fraction of the diagonal
UNIT_CM = (0.1, 1.0, 2.54, 100.0)  # cm per scan unit for scans in mm, cm, inches and m


def _distinct(stage: list, keep: int, diag: float, max_deg: float = 20.0, max_shift: float = 0.05) -> list:
    """The first `keep` of the (similarity, ...) tuples in `stage` (best first) that differ from every one kept
    before by more than `max_deg` degrees of rotation or `max_shift` of the diagonal `diag` in where they put the
    template's origin: near copies of one pose would otherwise fill every place (non-maximum suppression)."""
    kept, where = [], []
    for row in stage:
        sim = row[0]
        at = sim.inverse().apply(np.zeros((1, 3)))[0] * sim.scale  # the template origin, scan frame, template units
        near = False
        for other, pos in zip(kept, where, strict=True):
            if _degrees_between(other[0].rotation, sim.rotation) < max_deg and np.linalg.norm(pos - at) < max_shift * diag:
                near = True
                break
        if not near:
            kept.append(row)
            where.append(at)
            if len(kept) == keep:
                break
    return kept


def _upright_rotations(up: np.ndarray, radius: float, yaws: int = 12) -> list[np.ndarray]:
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
    return [_frame_from_up_front(up, np.cos(a) * f0 + np.sin(a) * f1) for a in angles]


def _extra_hypotheses(cloud, tpts, tnrm, tmpl, pa_t, fixed_rot, start, s_mean, s_rms, t_rms, trim,
                      rels=(1.0, 1.6, 2.2, 3.0), centers=16, keep=16, extra_rots=(), hair=None, outside_mask=None):
    """ICP runs for (smaller head, off-centre, rotation) hypotheses, for scans that hold more than a head.

    Head sizes: the scan's RMS radius divided by each of `rels`, plus the exact head size the common units
    (mm, cm, inches, m) would give. A head of that size is centred one radius inside the surface (against the
    normal) under each of `centers` farthest-point samples, so one of them sits near the head's centre
    whatever else the scan holds. Its orientation candidates come from the principal axes of the scan cropped
    to a ball around that centre (the head alone, not the torso that dominates the whole scan's axes): the
    24 axis permutations/flips, plus `extra_rots` (the best whole-scan orientations), or `fixed_rot` when the
    orientation is given; for heads smaller than the scan also `_upright_rotations`. Every hypothesis is scored as
    placed, the best quarter (at most 512) gets two ICP iterations, and the best `keep` distinct ones three more
    plus five point-to-plane Gauss-Newton steps.
    `hair`, `outside_mask`: see `prealign`."""
    from topos_cli.geometry.mesh_ops import farthest_point_sampling

    step = max(1, len(cloud.points) // 2000)
    small = ScanCloud(cloud.points[::step], cloud.normals[::step])
    pick = farthest_point_sampling(small.points, centers)
    outward = np.sign(((small.points - s_mean) * small.normals).sum(1).mean()) or 1.0
    unit_rels = [s_rms * u / t_rms for u in UNIT_CM]
    all_rels = list(rels) + [r for r in unit_rels if 1.15 < r < 5.0 and min(abs(np.log(r / q)) for q in rels) > 0.03]
    cubes = _cube_rotations()
    fixed = fixed_rot is not None
    hyps = []
    for rel in all_rels:
        radius = s_rms / rel
        for p, n in zip(small.points[pick], small.normals[pick] * outward, strict=True):
            center = p - n * radius
            if fixed:
                rots = [fixed_rot]
            else:
                crop = small.points[np.linalg.norm(small.points - center, axis=1) < 1.5 * radius]
                if len(crop) < 30:
                    continue
                pa_c = _principal_axes(crop)
                rots = [pa_t.T @ cube @ pa_c for cube in cubes] + list(extra_rots)
                if rel > 1.15:
                    rots += _upright_rotations(center - s_mean, radius)
            for rot in rots:
                sim = start(rot, rel, center)
                # put the sample on the template's support point in its (rotated) normal direction: for a
                # sample on the crown, the face or the back of the head, this places the head exactly
                support = tpts[np.argmax(tpts @ (rot @ n))]
                sim.translation = support - sim.scale * rot @ p
                hyps.append((sim, rot, rel, center))
    # coarse to fine: score all, two ICP iterations for the best quarter, more for the best `keep` distinct ones
    # (batched KD-tree queries, in chunks of 512 hypotheses to bound memory)
    if not hyps:
        return []
    scores = np.concatenate([_pose_scores(small, tpts, tnrm, [h[0] for h in hyps[i:i + 512]], trim, hair)
                             for i in range(0, len(hyps), 512)])
    best = np.argsort(scores, kind="stable")[: max(keep, min(len(hyps) // 4, 512))]
    stage = []
    for start_at in range(0, len(best), 512):
        ids = best[start_at:start_at + 512]
        sims, icp_scores = _icp_batch(small, tpts, tnrm, [hyps[i][0] for i in ids], 2, trim, fixed, hair)
        stage += list(zip(sims, icp_scores, ids, strict=True))
    stage.sort(key=lambda r: r[1])
    out = []
    for sim, _, i in _distinct(stage, keep, float(np.linalg.norm(np.ptp(tmpl[0], 0)))):
        sim = _icp_similarity(small, tpts, tnrm, sim, 3, trim, fixed, hair)[0]
        if not fixed:  # point-to-plane Gauss-Newton converges where point-to-point ICP crawls
            sim = refine_similarity(small, tmpl[0], tmpl[1], sim, iters=5, max_points=600, outside_mask=outside_mask)
        out.append(_icp_similarity(small, tpts, tnrm, sim, 0, trim, fixed, hair) + hyps[i][1:])
    return out


def refine_similarity(cloud: ScanCloud, verts: np.ndarray, faces: np.ndarray, sim: Similarity,
                      iters: int = 10, max_points: int = 3000, outside_mask: np.ndarray | None = None,
                      outside_tol: float = 0.5) -> Similarity:
    """Point-to-plane Gauss-Newton refinement of a scan->template similarity (converges where ICP crawls).

    outside_mask: (V,) template vertices where the scan may lie far outside the skin (hair): there, matches
    more than `outside_tol` (template units) outside the template count less, so hair does not inflate the scale.
    """
    nrm = vertex_normals(verts, faces)
    sub = np.linspace(0, len(verts) - 1, min(max_points, len(verts))).astype(np.int64)
    no_bases = np.zeros((len(verts), 3, 0))
    wide_gate = 0.05 * float(np.linalg.norm(verts.max(0) - verts.min(0)))
    for _ in range(iters):
        # the template into the scan's frame, not the scan into the template's (no new KD-tree per step)
        dist, idx = cloud.tree.query(sim.inverse().apply(verts[sub]))
        dist = dist * sim.scale  # template units
        near_nrm = cloud.normals[idx] @ sim.rotation.T
        gate = np.full(len(sub), 3.0 * np.median(dist) + 1e-9)
        if outside_mask is not None:  # hair-free parts (the face) may be far off when hair set the scale
            gate[~outside_mask[sub]] = max(gate[0], wide_gate)
        ok = (dist < gate) & ((near_nrm * nrm[sub]).sum(1) > 0.5)
        if ok.sum() < 10:
            break
        pts, pn, vid = sim.apply(cloud.points[idx[ok]]), near_nrm[ok], sub[ok]
        weight = _outside_weights(pts, pn, verts[vid], vid, outside_mask, outside_tol)
        _, step = _solve_bases_step(no_bases, verts, vid, pts, pn, weight, np.ones(0), 0.0, True, None)
        sim = step.compose(sim)
    return sim


def _outside_weights(points: np.ndarray, normals: np.ndarray, verts: np.ndarray, vid: np.ndarray,
                     mask: np.ndarray | None, tol: float) -> np.ndarray:
    """Per match weight: 1, or 1 / (1 + (excess / tol)^2) where a `mask` vertex has its scan point more than
    `tol` outside it along the scan normal (a layer of hair over the skin is always outside)."""
    weight = np.ones(len(points))
    if mask is None:
        return weight
    excess = ((points - verts) * normals).sum(1) - tol
    hit = mask[vid] & (excess > 0)
    weight[hit] = 1.0 / (1.0 + (excess[hit] / tol) ** 2)
    return weight


def _correspondences(cloud: ScanCloud, verts: np.ndarray, nrm: np.ndarray, gate: float,
                     normal_cos: float = 0.5, max_tangent: float | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Template->scan matches: scan point, scan normal and weight per vertex (0 where rejected).

    max_tangent: reject a match whose scan point lies more than this far from the vertex along the scan's
    tangent plane. Beyond the edge of a partial scan, a vertex's nearest sample is on that edge, sideways
    of it: pulled onto the edge's tangent plane, such vertices would raise a lip along every scan border.
    """
    dist, idx = cloud.tree.query(verts, distance_upper_bound=gate)
    ok = np.isfinite(dist)
    idx = np.where(ok, idx, 0)
    snrm = cloud.normals[idx]
    ok &= (snrm * nrm).sum(1) > normal_cos
    if max_tangent is not None:
        off = cloud.points[idx] - verts
        ok &= np.linalg.norm(off - (off * snrm).sum(1, keepdims=True) * snrm, axis=1) < max_tangent
    weight = ok * np.exp(-0.5 * (np.where(ok, dist, 0) / gate * 2.0) ** 2)
    return cloud.points[idx], snrm, weight


def _reverse_matches(cloud: ScanCloud, verts: np.ndarray, nrm: np.ndarray, gate: float, step: int,
                     normal_cos: float = 0.5, border: np.ndarray | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scan->template matches (subsampled scan points): template vertex, scan point, scan normal.

    Matches landing on `border` vertices (the template's open boundaries) are dropped: there the scan goes
    on beyond the template (shoulders below the neck cut, eyeballs and mouth interior), and those points
    would drag the boundary outwards.
    """
    pts, pn = cloud.points[::step], cloud.normals[::step]
    dist, vid = cKDTree(verts).query(pts, distance_upper_bound=gate)
    ok = np.isfinite(dist)
    vid = np.where(ok, vid, 0)
    ok &= (pn * nrm[vid]).sum(1) > normal_cos
    if border is not None:
        ok &= ~border[vid]
    return vid[ok], pts[ok], pn[ok]


def border_mask(num_verts: int, faces: np.ndarray, rings: int = 1) -> np.ndarray:
    """(V,) bool: vertices on open boundaries and their `rings`-ring."""
    from topos_cli.template import boundary_loops

    loops = boundary_loops(faces)
    mask = np.zeros(num_verts, bool)
    if not loops:
        return mask
    mask[np.concatenate(loops)] = True
    adj = (uniform_laplacian(num_verts, faces) != 0).astype(float)
    for _ in range(rings):
        mask = (adj @ mask.astype(float)) > 0
    return mask


@dataclass
class Plane:
    """A flat piece of background in a scan: the points within `tol` of {x : x . normal = offset} (whatever
    their normals: the rim of a floor slab or a wall goes with it)."""

    normal: np.ndarray
    offset: float
    tol: float

    def holds(self, points: np.ndarray) -> np.ndarray:
        return np.abs(points @ self.normal - self.offset) < self.tol


def find_planes(cloud: ScanCloud, *, max_planes: int = 3, tol: float = 0.004, min_fraction: float = 0.1,
                trials: int = 256, sample: int = 3000) -> list[Plane]:
    """Large planes in a scan (a floor, a wall, a turntable, a flat cap closing a cut): RANSAC over sampled
    triples, at most `max_planes` times, each plane kept only when more than `min_fraction` of all the scan's
    points lie within `tol` of the scan's diagonal of it with normals along it (all points that near it go).
    No part of a head is that flat; a background plane makes the head a small part of the scan and draws the
    search onto itself. Deterministic (a fixed internal seed)."""
    pts, nrm = cloud.points, cloud.normals
    dist_tol = tol * float(np.linalg.norm(pts.max(0) - pts.min(0)))
    rng = np.random.default_rng(0)
    keep = np.ones(len(pts), bool)
    planes = []
    for _ in range(max_planes):
        idx = np.flatnonzero(keep)
        if len(idx) < 100:
            break
        sub = idx[rng.choice(len(idx), min(sample, len(idx)), replace=False)]
        tri = pts[sub[rng.integers(0, len(sub), (trials, 3))]]
        normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        length = np.linalg.norm(normal, axis=1)
        ok = length > 1e-12
        normal = normal[ok] / length[ok, None]
        offset = (tri[ok, 0] * normal).sum(1)
        near = (np.abs(pts[sub] @ normal.T - offset) < dist_tol) & (np.abs(nrm[sub] @ normal.T) > 0.9)
        counts = near.sum(0)
        if not len(counts) or counts.max() < min_fraction * len(pts) * len(sub) / len(idx):  # of the whole scan
            break
        best = int(np.argmax(counts))
        plane = Plane(normal[best], float(offset[best]), dist_tol)
        for _ in range(2):  # least squares on its inliers: a triple spanning a slab's two faces leaves it tilted
            inl = pts[idx[plane.holds(pts[idx]) & (np.abs(nrm[idx] @ plane.normal) > 0.9)]]
            centre = inl.mean(0)
            axis = np.linalg.svd(inl - centre, full_matrices=False)[2][-1]
            plane = Plane(axis, float(centre @ axis), dist_tol)
        planes.append(plane)
        keep[idx[plane.holds(pts[idx])]] = False
    return planes


def without_planes(cloud: ScanCloud, planes: list[Plane]) -> ScanCloud:
    """The cloud's points that lie on none of the planes."""
    off = np.zeros(len(cloud.points), bool)
    for plane in planes:
        off |= plane.holds(cloud.points)
    return ScanCloud(cloud.points[~off], cloud.normals[~off])


def outward_normals(cloud: ScanCloud) -> ScanCloud:
    """Flip all scan normals if most of them point towards the scan's centroid (the scan's faces are wound
    inwards, or it was mirrored). Heads, face shells and busts are curved round their centroid, so outward
    normals point away from it; the search's normal tests and hair allowance need them outward."""
    away = ((cloud.points - cloud.points.mean(0)) * cloud.normals).sum(1)
    return ScanCloud(cloud.points, -cloud.normals) if np.sign(away).sum() < 0 else cloud


def orient_normals(cloud: ScanCloud, verts: np.ndarray, faces: np.ndarray) -> ScanCloud:
    """Flip all scan normals if most of them point against the aligned template's."""
    nrm = vertex_normals(verts, faces)
    _, idx = cloud.tree.query(verts)
    if np.median((cloud.normals[idx] * nrm).sum(1)) < 0:
        return ScanCloud(cloud.points, -cloud.normals)
    return cloud


def fit_bases(cloud: ScanCloud, base_verts: np.ndarray, faces: np.ndarray, bases: np.ndarray,
              prior_std: np.ndarray, *, iters: int = 12, gate: float = 3.0, prior_weight: float = 1.0,
              vertex_weight: np.ndarray | None = None, landmarks: tuple[np.ndarray, np.ndarray] | None = None,
              update_similarity: bool = True, max_points: int = 4000,
              prior_anneal: float = 10.0,
              init_coeffs: np.ndarray | None = None,
              max_scale_change: float = 1.25, outside_mask: np.ndarray | None = None,
              outside_tol: float = 0.5) -> tuple[np.ndarray, np.ndarray, Similarity]:
    """Least-squares fit of linear shape bases (and a similarity) to a pre-aligned scan.

    Args:
        cloud: scan samples already in the template frame.
        base_verts: (V, 3) starting shape (template rest shape or a VAE decode).
        faces: (F, 3) template triangles.
        bases: (K, V, 3) vertex deltas; shape = base_verts + sum_k c_k bases[k].
        prior_std: (K,) prior standard deviation of each coefficient (ridge prior).
        iters: alternations (correspondences, coefficients, similarity).
        gate: correspondence distance gate in template units (cm), shrinks to gate/3.
        prior_weight: multiplier of the coefficient prior.
        vertex_weight: (V,) optional per-vertex data weight (e.g. 0 on vertices that should not drive the fit).
        landmarks: optional (points (L, 3) in the template frame, vertex ids (L,)).
        update_similarity: re-estimate a similarity correction each iteration.
        max_points: template vertices / scan points used per direction.
        prior_anneal: the prior starts `prior_anneal` times stronger and relaxes geometrically to
            `prior_weight` by the last iteration (coarse-to-fine: early, unreliable matches cannot pull the
            coefficients far).
        init_coeffs: (K,) starting coefficients (e.g. a VAE decode projected on the bases): they shape the
            first correspondences only; the prior stays centred at zero.
        max_scale_change: bound on the scale correction relative to the pre-alignment. The correction also
            has a Gaussian prior (`SIM_PRIOR_STD`), so that the coefficient prior cannot push it to drift.
        outside_mask, outside_tol: hair regions and tolerance (see `refine_similarity`).

    Returns:
        (verts (V, 3), coefficients (K,), similarity correction applied to the cloud's frame).
    """
    num_k, num_v = bases.shape[0], base_verts.shape[0]
    sim_precision = 1e-3 / np.array([SIM_PRIOR_STD[0]] + [SIM_PRIOR_STD[1]] * 3 + [SIM_PRIOR_STD[2]] * 3) ** 2
    basis_vk = np.ascontiguousarray(bases.transpose(1, 2, 0), dtype=float)  # (V, 3, K)
    coeffs = np.zeros(num_k)
    corr = Similarity()
    vw = np.ones(num_v) if vertex_weight is None else vertex_weight
    subset = np.linspace(0, num_v - 1, min(num_v, max_points)).astype(np.int64)
    verts = base_verts.astype(float)
    if init_coeffs is not None:
        verts = verts + np.einsum("vck,k->vc", basis_vk, init_coeffs)
    border = border_mask(num_v, faces)

    def cur_lm(sim):
        return sim.apply(landmarks[0])

    for it in range(iters):
        g = gate * (1.0 - 0.67 * it / max(iters - 1, 1))
        cur = cloud.transformed(corr)
        nrm = vertex_normals(verts, faces)
        tgt, tnrm, w = _correspondences(cur, verts[subset], nrm[subset], g)
        w = w * vw[subset]
        step = max(1, len(cur.points) // max_points)
        vid, rpts, rnrm = _reverse_matches(cur, verts, nrm, g, step, border=border)
        ok = w > 0
        rows_v = np.concatenate([subset[ok], vid])
        rows_p = np.concatenate([tgt[ok], rpts])
        rows_n = np.concatenate([tnrm[ok], rnrm])
        rows_w = np.concatenate([w[ok], 0.5 * vw[vid]])
        rows_w = rows_w * _outside_weights(rows_p, rows_n, verts[rows_v], rows_v, outside_mask, outside_tol)
        coeffs, step_sim = _solve_bases_step(basis_vk, base_verts, rows_v, rows_p, rows_n, rows_w, prior_std,
                                             prior_weight * prior_anneal ** (1.0 - it / max(iters - 1, 1)),
                                             update_similarity and it < iters - 1,
                                             None if landmarks is None else (cur_lm(corr), landmarks[1]),
                                             sim_prior=(_similarity_params(corr), sim_precision))
        verts = base_verts + np.einsum("vck,k->vc", basis_vk, coeffs)
        corr = step_sim.compose(corr)
        corr.scale = float(np.clip(corr.scale, 1.0 / max_scale_change, max_scale_change))
    return verts, coeffs, corr


def _similarity_params(sim: Similarity) -> np.ndarray:
    """(7,) scale - 1, rotation vector, translation: the accumulated correction as the solver's unknowns."""
    from scipy.spatial.transform import Rotation

    return np.concatenate([[sim.scale - 1.0], Rotation.from_matrix(sim.rotation).as_rotvec(), sim.translation])


def _solve_bases_step(basis_vk, base_verts, rows_v, rows_p, rows_n, rows_w, prior_std, prior_weight,
                      with_sim: bool, landmarks, sim_prior=None) -> tuple[np.ndarray, Similarity]:
    """One Gauss-Newton step over coefficients and (linearised) similarity of the scan points.

    Residual per match: x0_v + B_v c - (1 + ds) p - w x p - t, point-to-plane (n^T) plus 0.1 x point-to-point.
    """
    num_k = basis_vk.shape[2]
    b_rows = basis_vk[rows_v]  # (M, 3, K)
    resid = rows_p - base_verts[rows_v]  # (M, 3)
    jac_sim = np.concatenate([-rows_p[:, :, None], align.skew(rows_p), -np.repeat(np.eye(3)[None], len(rows_p), 0)],
                             2)  # (M, 3, 7): d(-p')/d(ds, w, t)
    if not with_sim:
        jac_sim = jac_sim[:, :, :0]
    jac = np.concatenate([b_rows, jac_sim], 2)  # (M, 3, K+7)
    a_pl = np.einsum("mc,mck->mk", rows_n, jac)  # (M, K+7)
    r_pl = (resid * rows_n).sum(1)
    ata = (a_pl * rows_w[:, None]).T @ a_pl
    atb = a_pl.T @ (rows_w * r_pl)
    jac_flat = jac.reshape(-1, jac.shape[2])
    w3 = np.repeat(0.1 * rows_w, 3)
    ata += (jac_flat * w3[:, None]).T @ jac_flat
    atb += jac_flat.T @ (w3 * resid.reshape(-1))
    if landmarks is not None:
        lm_p, lm_v = landmarks
        lj = np.concatenate([basis_vk[lm_v], np.concatenate(
            [-lm_p[:, :, None], align.skew(lm_p), -np.repeat(np.eye(3)[None], len(lm_p), 0)], 2)[:, :, :jac.shape[2] - num_k]],
            2).reshape(-1, jac.shape[2])
        lw = 10.0 * rows_w.sum() / max(len(rows_w), 1)
        ata += lw * lj.T @ lj
        atb += lw * lj.T @ (lm_p - base_verts[lm_v]).reshape(-1)
    reg = np.zeros(jac.shape[2])
    reg[:num_k] = prior_weight * rows_w.sum() * 1e-3 / prior_std ** 2
    reg[num_k:] = 1e-6 * rows_w.sum()
    if sim_prior is not None and jac.shape[2] > num_k:  # pull the accumulated correction back towards 0
        current, precision = sim_prior
        reg[num_k:] += precision * rows_w.sum()
        atb[num_k:] -= precision * rows_w.sum() * current
    sol = np.linalg.solve(ata + np.diag(reg + 1e-9), atb)  # the floor: no matches at all -> no step
    coeffs = sol[:num_k]
    if not with_sim:
        return coeffs, Similarity()
    ds, omega, trans = sol[num_k], sol[num_k + 1:num_k + 4], sol[num_k + 4:]
    return coeffs, Similarity(1.0 + float(ds), align.rodrigues(omega), trans)


def project_on_bases(verts: np.ndarray, base_verts: np.ndarray, bases: np.ndarray, ridge: float = 1e-3) -> np.ndarray:
    """(K,) least-squares coefficients c with base_verts + sum_k c_k bases[k] ~ verts (slightly ridged)."""
    mat = bases.reshape(len(bases), -1).astype(float)  # (K, 3V)
    gram = mat @ mat.T
    rhs = mat @ (verts - base_verts).reshape(-1)
    return np.linalg.solve(gram + ridge * np.trace(gram) / len(gram) * np.eye(len(gram)), rhs)


def stiffness_weights(num_verts: int, faces: np.ndarray, loops: list[np.ndarray], rings: int = 2,
                      boost: float = 8.0, regions: list[tuple[np.ndarray, float]] = ()) -> np.ndarray:
    """(V,) stiffness multipliers: `boost` on the given boundary loops and their `rings`-ring, each region's own
    boost on its vertices and their `rings`-ring (the largest boost wins where they meet), 1 elsewhere."""
    k = np.ones(num_verts)
    adj = (uniform_laplacian(num_verts, faces) != 0).astype(float)
    for ids, gain in ([(np.concatenate(loops), boost)] if loops else []) + list(regions):
        mask = np.zeros(num_verts)
        mask[np.asarray(ids, np.int64)] = 1.0
        for _ in range(rings):
            mask = np.minimum(1.0, adj @ mask)
        k = np.maximum(k, 1.0 + (gain - 1.0) * mask)
    return k


def refine(cloud: ScanCloud, init_verts: np.ndarray, faces: np.ndarray, *, stiffness: np.ndarray | None = None,
           alphas: tuple[float, ...] = (5.0, 1.0, 0.2), iters_per_alpha: int = 2, gate: float = 1.0,
           landmarks: tuple[np.ndarray, np.ndarray] | None = None,
           vertex_weight: np.ndarray | None = None, anchor: float = 0.02, tangent_tol: float = 2.0) -> np.ndarray:
    """Laplacian-regularised displacement fit of a template-topology head onto a pre-aligned scan.

    Args:
        cloud: scan samples in the template frame (normals oriented outward).
        init_verts: (V, 3) prior head (bases fit or VAE decode), template frame.
        faces: (F, 3) template triangles.
        stiffness: (V,) per-vertex multiplier of the smoothness term.
        alphas: decreasing smoothness weights (relative to the data term), one stage each.
        iters_per_alpha: correspondence updates per stage.
        gate: correspondence distance gate in template units (cm).
        landmarks: optional (points (L, 3) template frame, vertex ids (L,)) as soft constraints.
        vertex_weight: (V,) optional data weight multiplier.
        anchor: weight pulling every vertex towards the prior (zero displacement); where the scan has no
            data it keeps the smoothness term from extrapolating the displacement away from the prior.
        tangent_tol: a vertex's match is dropped when its scan point lies more than this many spacings (the
            larger of the scan's sample spacing and the head's median edge) sideways of it: the vertex is
            beyond the edge of the scan's data.

    Returns:
        (V, 3) refined vertices.
    """
    num_v = len(init_verts)
    x0 = init_verts.astype(float)
    lap = uniform_laplacian(num_v, faces).astype(float)
    deg = np.asarray(lap.diagonal()).clip(min=1)
    lap = sparse.diags(1.0 / deg) @ lap  # normalised: (L d)_i = d_i - mean of neighbours
    kdiag = sparse.diags(np.ones(num_v) if stiffness is None else stiffness)
    bilap = (lap.T @ kdiag @ lap).tocsc()
    vw = np.ones(num_v) if vertex_weight is None else vertex_weight
    border = border_mask(num_v, faces)
    edge_spacing = float(np.median(np.linalg.norm(x0[faces[:, 0]] - x0[faces[:, 1]], axis=1)))
    max_tangent = tangent_tol * max(cloud.spacing(), edge_spacing)
    disp = np.zeros_like(x0)
    for alpha in alphas:
        for _ in range(iters_per_alpha):
            verts = x0 + disp
            nrm = vertex_normals(verts, faces)
            tgt, tnrm, w = _correspondences(cloud, verts, nrm, gate, max_tangent=max_tangent)
            w = w * vw
            # foot of the vertex on the scan's tangent plane: a normal-only pull, no sliding
            foot = verts + ((tgt - verts) * tnrm).sum(1, keepdims=True) * tnrm
            acc_w, acc_t = w.copy(), foot * w[:, None]
            vid, rpts, rnrm = _reverse_matches(cloud, verts, nrm, gate, max(1, len(cloud.points) // num_v),
                                               border=border)
            rfoot = verts[vid] + ((rpts - verts[vid]) * rnrm).sum(1, keepdims=True) * rnrm
            np.add.at(acc_w, vid, 0.5)
            np.add.at(acc_t, vid, 0.5 * rfoot)
            if landmarks is not None:
                np.add.at(acc_w, landmarks[1], 5.0)
                np.add.at(acc_t, landmarks[1], 5.0 * landmarks[0])
            # rhs = sum of weighted targets minus x0 * data weight; the anchor adds weight with target x0
            system = (sparse.diags(acc_w + anchor) + alpha * bilap).tocsc()
            rhs = acc_t - acc_w[:, None] * x0
            solve = splinalg.factorized(system)
            disp = np.stack([solve(rhs[:, c]) for c in range(3)], 1)
    return x0 + disp


def sample_scan(verts: np.ndarray, faces: np.ndarray, count: int, rng: np.random.Generator) -> ScanCloud:
    """Area-weighted samples with face normals; for point clouds without faces use ScanCloud directly."""
    from topos_cli.geometry.mesh_ops import sample_surface

    verts = verts.astype(float)
    pts, fidx, _ = sample_surface(verts, faces, count, rng)
    return ScanCloud(pts, face_normals(verts, faces[fidx]))  # the sampled faces' normals only
