"""Retopology pipeline: scan (any topology, units, pose) -> head in template topology lying on the scan.

    scan --sample--> points+normals --prealign--> template frame
         --VAE encode/decode (optional)--> prior head --bases fit (+similarity)--> prior head on the scan
         --refine (Laplacian, tangent-plane pulls)--> fitted head --inverse similarity--> scan frame

`RetopoPipeline.from_pretrained(dir)` loads the VAE checkpoint (default: the shipped
`assets/checkpoints/retopo-vae-small`) and its template; `__call__` fits one scan and returns the vertices
plus a plain-data report (alignment, surface metrics, coverage, timings, warnings).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from topos_cli.errors import ToposError
from topos_cli.geometry import retopo as rt
from topos_cli.geometry.similarity import PointCloud, Similarity, bbox_diagonal, pca_normals
from topos_cli.io.checkpoint import trained_steps
from topos_cli.template import Template

HAIR_REGIONS = ("scalp", "back_of_head", "temple", "forehead", "ear")
# the pre-alignment's best other orientation scoring within this factor of the winner's makes the fit ambiguous
# (measured: 1.0 on an ellipsoid; on 38 benchmark and real scans, all oriented right, 1.14 and above)
AMBIGUOUS_ORIENTATION = 1.05
# a pre-alignment score (trimmed mean distance, template units) above this fraction of the template's diagonal,
# with less than POOR_POSE_PRECISION of the fitted head on the scan, is a head that was not found (measured: good
# fits score 2.0 % and under, with 0.93-0.99 on the scan, front-only shells 0.47; a head laid into the corner of a
# floor and a wall 4.8 % and 0.55, a box 4.3 %)
POOR_POSE_SCORE = 0.03
POOR_POSE_PRECISION = 0.8
REGION_STIFFNESS = {"ear": 300.0}  # smoothness multiplier of the surface refinement per template region
BOUNDARY_STIFFNESS = 6.0  # smoothness multiplier on the eye/mouth loops and their 2-ring: they stay clean
BOUNDARY_RINGS = 2
# where hair may cover the skin, the refinement moves a vertex at most this fraction of the template's diagonal
# outward of the prior (along the prior's normal): hair, carved or real, lies over the skin and must not pull it out
# (1 % is 0.5 cm on a 47 cm head; the prior's own skin error there is a few mm)
HAIR_OFFSET = 0.01
EXPRESSION_PRIOR_STD = 0.5  # prior std of the expression coefficients (identity: 1), expressions are rarer
BASES_GATE = 0.07  # the bases fit's first correspondence gate, fraction of the template's diagonal
# the VAE encoder was trained on heads alone, as near-uniform surface samples: points outside the template's box
# grown by VAE_BOX_PAD (per axis, of its size) go, and one point per voxel of VAE_VOXELS cells along the diagonal
# stays; VAE_POINTS of them per draw; with fewer than VAE_MIN_POINTS left, the crop is skipped
VAE_BOX_PAD = 0.05
VAE_VOXELS = 150.0
VAE_POINTS = 4096
VAE_MIN_POINTS = 1024
MIN_CLOUD_POINTS = 100  # a point cloud left with fewer points once its planes are gone keeps them
NEAR_SCAN = 0.01  # a head point within this fraction of the diagonal (or 2 sample spacings) has scan data under it
NEAR_SPACINGS = 2.0
CLOSE_FACTOR = 5.0  # the median head-to-scan distance is taken over points within this x that distance
MIN_SUPPORTED = 0.25  # less of the head than this with scan data under it: probably not a head
# a scan under less than this fraction of the head is a shell (a face scan, a statue's front): without a face
# found on it, its pose is a guess, and it is refused (whole heads measure 0.75 and above, face masks 0.2-0.45)
SHELL_SUPPORTED = 0.6
METRIC_SAMPLES = 10000  # surface samples of the fit-to-scan metrics
LANDMARK_MAP = "face_landmarks_mediapipe.json"  # the template sidecar mapping mediapipe's 478 points to vertices
# the bases fit uses every FACE_CUE_STEP-th face landmark found on a shell (~45 of ~380): each weighs ten surface
# matches there, and the detector's points are a few mm off their template vertices
FACE_CUE_STEP = 8
# a face shell (its pose from the face landmarks) holds little of the head: its bases fit weighs the coefficient
# prior this many times more (inner-face masks: face error 0.46/0.78 -> 0.36/0.42 % of the diagonal at 10x,
# 0.39/0.58 % at 3x)
FACE_SHELL_PRIOR = 10.0
NO_FACE = "no face found in any view of the scan; pass --landmarks or --up/--front"
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "assets" / "checkpoints" / "retopo-vae-small"


@dataclass
class RetopoOptions:
    """Fit settings (the CLI's options).

    Attributes:
        up, front: scan-space up / facing directions (skip the orientation search), e.g. (0, 0, 1).
        points: scan samples used by the fit.
        vae: use the VAE prior (when a checkpoint is loaded).
        bases: fit the template's identity/expression bases (when it has them).
        refine: run the non-rigid refinement.
        iters: bases-fit iterations.
        vae_rounds: without the bases fit, alternate this many VAE encodes with similarity re-fits to the
            decoded head (each encode sees the scan in a better pose).
        gate: refinement correspondence gate, in % of the template's bounding-box diagonal.
        frame: "scan" (output lies on the input scan) or "template" (canonical frame, cm).
        poor_fit: a fit whose template-side distance to the scan has median above this (% of diagonal)
            is flagged poor.
        prior_weight: strength of the Gaussian prior on the bases coefficients.
        min_precision: a fit with less than this fraction of its surface within 1% of the scan (inside the
            scan's box) is flagged poor.
        hair_offset: over the hair regions, the refinement moves the skin at most this far (% of the diagonal)
            outward of the prior; None: unbounded.
        face_landmarks: when the pose search found face landmarks on the scan (a face shell), the bases fit uses
            a subset of them as landmarks.
    """

    up: tuple[float, float, float] | None = None
    front: tuple[float, float, float] | None = None
    points: int = 30000
    vae: bool = True
    bases: bool = True
    refine: bool = True
    iters: int = 12
    vae_rounds: int = 3
    gate: float = 2.0
    frame: str = "scan"
    poor_fit: float = 1.0
    prior_weight: float = 0.1
    min_precision: float = 0.4
    hair_offset: float | None = HAIR_OFFSET * 100
    face_landmarks: bool = True


@dataclass
class RetopoResult:
    verts: np.ndarray  # (V, 3) in the requested frame
    verts_template: np.ndarray  # (V, 3) template frame (cm)
    similarity: Similarity  # scan -> template frame
    report: dict = field(default_factory=dict)
    verts_prior: np.ndarray | None = None  # (V, 3) the head before the surface refinement, in the requested frame


@dataclass
class ScanInput:
    """A scan ready for the fit: its samples and the vertices/faces left once background planes are gone."""

    cloud: PointCloud
    verts: np.ndarray
    faces: np.ndarray | None
    planes: int


@dataclass
class FitState:
    """The fit as it moves through the stages: the scan->template similarity, the scan samples in the template
    frame, the head (prior, then fitted) and what the stages report."""

    sim: Similarity
    local: PointCloud
    prior: np.ndarray
    verts: np.ndarray | None = None
    coeffs: np.ndarray | None = None
    init: np.ndarray | None = None


class StageTimer:
    """Wall seconds per named stage (`with timer("align"): ...`) and in total."""

    def __init__(self):
        self.start, self.seconds = time.perf_counter(), {}

    @contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

    def report(self) -> dict:
        return {**{k: round(v, 3) for k, v in self.seconds.items()},
                "total": round(time.perf_counter() - self.start, 3)}


def prepare_scan(scan_verts: np.ndarray, scan_faces: np.ndarray | None, points: int,
                 rng: np.random.Generator) -> ScanInput:
    """Sample the scan and drop background planes (floor, wall): the rest of the scan gets the whole budget."""
    scan_verts = np.asarray(scan_verts, np.float64)
    if scan_faces is not None and len(scan_faces):
        cloud = rt.sample_scan(scan_verts, scan_faces, points, rng)
        planes = rt.find_planes(cloud)
        if planes:
            centres = scan_verts[scan_faces].mean(1)
            on = np.any([plane.holds(centres) for plane in planes], axis=0)
            if not on.all():
                scan_faces = scan_faces[~on]
                cloud = rt.sample_scan(scan_verts, scan_faces, points, rng)
        return ScanInput(cloud, scan_verts, scan_faces, len(planes))
    cloud = PointCloud(scan_verts, pca_normals(scan_verts, outward=True))
    planes = rt.find_planes(cloud)
    rest = rt.without_planes(cloud, planes) if planes else cloud
    if len(rest.points) >= MIN_CLOUD_POINTS:
        cloud, scan_verts = rest, rest.points
    return ScanInput(cloud, scan_verts, scan_faces, len(planes))


class RetopoPipeline:
    """Template (+ optional VAE) -> callable scan fitter."""

    def __init__(self, template: Template, vae=None, device: str = "cpu", vae_meta: dict | None = None):
        self.template, self.vae, self.device, self.vae_meta = template, vae, device, vae_meta
        t = template
        self.diag = bbox_diagonal(t.verts)
        bases = [t.bases[k] for k in ("identity", "expression") if k in t.bases and t.bases[k].ndim == 3]
        self.bases = np.concatenate(bases).astype(np.float64) if bases else None
        stds = [np.ones(len(t.bases["identity"]))] if "identity" in t.bases else []
        stds += [EXPRESSION_PRIOR_STD * np.ones(len(t.bases["expression"]))] if "expression" in t.bases else []
        self.prior_std = np.concatenate(stds) if stds else None
        # eye and mouth loops stay clean; the longest open boundary (the neck cut) is left free. Ears move almost
        # as one piece: they are thin folds beside the head that scans catch badly (hair, occlusion), and free
        # per-vertex pulls fold the concha onto the skin behind them
        regions = [(t.regions[name], gain) for name, gain in REGION_STIFFNESS.items() if name in t.regions]
        self.stiffness = rt.stiffness_weights(t.num_verts, t.faces, t.inner_boundaries(), rings=BOUNDARY_RINGS,
                                              boost=BOUNDARY_STIFFNESS, regions=regions)
        # where hair may cover the skin: a scan far outside the head there is discounted when the pose, the scale
        # and the shape are fitted (the surface refinement still follows it); templates without these regions
        # get no such discount
        hairy = [t.regions[name] for name in HAIR_REGIONS if name in t.regions]
        self.hair_mask = None
        if hairy:
            self.hair_mask = np.zeros(t.num_verts, bool)
            self.hair_mask[np.concatenate(hairy)] = True

    @classmethod
    def from_pretrained(cls, checkpoint: str | Path | None = None, template=None, device: str = "cpu",
                        use_vae: bool = True) -> RetopoPipeline:
        """Load the VAE checkpoint (default: the shipped one, if present) and its template."""
        from topos_cli.errors import TemplateMismatch
        from topos_cli.io.checkpoint import load_checkpoint, read_model_json
        from topos_cli.template import load_template

        if use_vae and checkpoint is not None:  # asked for explicitly: a mismatch is an error
            ckpt = Path(checkpoint)
            tpl = load_template(template) if template is not None else load_template(read_model_json(ckpt)["template"])
            loaded = load_checkpoint(ckpt, template=tpl, device=device)
            return cls(tpl, loaded.model, device, loaded.meta)
        tpl = load_template(template)
        shipped = DEFAULT_CHECKPOINT
        if use_vae and ((shipped / "latest").is_file() or (shipped / "model.json").is_file()):
            try:  # the shipped prior serves only the template it was trained for; others fit without it
                loaded = load_checkpoint(shipped, template=tpl, device=device)
                return cls(tpl, loaded.model, device, loaded.meta)
            except TemplateMismatch:
                pass
        return cls(tpl, None, device)

    def _vae_points(self, cloud: PointCloud) -> np.ndarray:
        """Indices of the scan samples the encoder sees (see VAE_BOX_PAD)."""
        lo, hi = self.template.verts.min(0), self.template.verts.max(0)
        pad = VAE_BOX_PAD * (hi - lo)
        inside = np.flatnonzero(np.all((cloud.points > lo - pad) & (cloud.points < hi + pad), 1))
        if len(inside) < VAE_MIN_POINTS:
            inside = np.arange(len(cloud.points))
        cell = self.diag / VAE_VOXELS
        _, first = np.unique(np.floor(cloud.points[inside] / cell).astype(np.int64), axis=0, return_index=True)
        return inside[np.sort(first)] if len(first) >= VAE_MIN_POINTS else inside

    def vae_prior(self, cloud: PointCloud, seed: int, draws: int = 4, mirror: bool = True) -> np.ndarray:
        """Decode the posterior mean of the (template-frame) scan samples: (V, 3) float64.

        draws: independent point subsets encoded as one batch; their posterior means are averaged (the
            encoder's answer varies with the sampling; the average is the steadier estimate).
        mirror: when the template has a symmetry map, also encode the subsets mirrored (x -> -x), decode, mirror
            the head back through the map and average it with the direct one.
        """
        import torch

        gen = np.random.default_rng(seed)
        pool = self._vae_points(cloud)
        idx = np.stack([pool[gen.choice(len(pool), min(len(pool), VAE_POINTS), replace=False)]
                        for _ in range(draws)])
        pts, nrm = cloud.points[idx], cloud.normals[idx]
        sym = self.template.symmetry if mirror else None
        flip = np.array([-1.0, 1.0, 1.0])
        if sym is not None:
            pts, nrm = np.concatenate([pts, pts * flip]), np.concatenate([nrm, nrm * flip])
        with torch.no_grad():
            mean, _ = self.vae.encode(torch.tensor(pts, dtype=torch.float32, device=self.device),
                                      torch.tensor(nrm, dtype=torch.float32, device=self.device))
            heads = self.vae.decode(mean.reshape(-1, draws, *mean.shape[1:]).mean(1)).double().cpu().numpy()
        if sym is None:
            return heads[0]
        return 0.5 * (heads[0] + (heads[1] * flip)[sym])

    def __call__(self, scan_verts: np.ndarray, scan_faces: np.ndarray | None, *, options: RetopoOptions | None = None,
                 landmarks: tuple[np.ndarray, np.ndarray] | None = None, seed: int = 0) -> RetopoResult:
        """Fit the template to one scan.

        Args:
            scan_verts: (N, 3) scan vertices (any units and pose); scan_faces: (F, 3) or None (point cloud).
            options: fit settings.
            landmarks: optional (scan points (L, 3), template vertex ids (L,)).
            seed: seeds the surface sampling (same seed -> same result).
        """
        opt = options or RetopoOptions()
        timer, tmpl_verts = StageTimer(), self.template.verts.astype(np.float64)
        face: dict = {}
        with timer("align"):
            scan = prepare_scan(scan_verts, scan_faces, opt.points, np.random.default_rng(seed))
            finder = None if opt.up is not None or opt.front is not None else self._face_finder(scan, face, timer)
            sim, info = rt.prealign(scan.cloud, tmpl_verts, self.template.faces, up=opt.up, front=opt.front,
                                    landmarks=landmarks, outside_mask=self.hair_mask, find_face=finder,
                                    ambiguous=AMBIGUOUS_ORIENTATION)
        state = FitState(sim, rt.orient_normals(scan.cloud.transformed(sim), tmpl_verts, self.template.faces),
                         tmpl_verts)
        with timer("vae"):
            self._vae_stage(state, scan.cloud, opt, seed)
        with timer("bases"):
            cues = _fit_cues(face, opt) if info.get("method") == "face" else None  # the pose came from the face
            self._bases_stage(state, scan.cloud, opt, landmarks if landmarks is not None else cues,
                              FACE_SHELL_PRIOR if cues is not None else 1.0)
        with timer("refine"):
            state.verts = state.prior if state.verts is None else state.verts
            fitted = state.verts
            if opt.refine:
                fitted = rt.refine(state.local, state.verts, self.template.faces, stiffness=self.stiffness,
                                   gate=opt.gate / 100 * self.diag, landmarks=_local_landmarks(state.sim, landmarks))
                fitted, capped = self._bound_hair(fitted, state.verts, opt.hair_offset)
        out = fitted if opt.frame == "template" else state.sim.inverse().apply(fitted)
        report = self._report(state.local, fitted, state.verts, state.sim, info, state.coeffs, opt)
        report["hair_capped"] = capped if opt.refine else 0
        face.pop("cues", None)
        if face:
            report["face"] = face
        report["background_planes"] = scan.planes  # removed before the fit; the metrics below leave them out
        report["metrics"] = _scan_metrics(state.sim.inverse().apply(fitted), self.template.faces, scan.verts,
                                          scan.faces, seed)
        self._flag_poor_pose(report, info, opt)
        report["seconds"] = timer.report()
        prior = state.verts if opt.frame == "template" else state.sim.inverse().apply(state.verts)
        return RetopoResult(out.astype(np.float32), fitted.astype(np.float32), state.sim, report, prior)

    def _face_finder(self, scan: ScanInput, face: dict, timer: StageTimer):
        """The pose search's face cue: a callable that renders the scan, finds face landmarks on it and returns
        them as (scan points, template vertex ids), or None; what it found goes into `face` (the report's "face").
        None when the scan has no faces (a point cloud) or the template no landmark map."""
        landmark_map = self.template.sidecar(LANDMARK_MAP)
        if landmark_map is None or scan.faces is None or not len(scan.faces):
            return None

        def find():
            from topos_cli.pipelines.retopo_faces import find_face

            with timer("face"):
                try:
                    cues = find_face(scan.verts, scan.faces, self.template.verts.astype(np.float64), landmark_map)
                except ToposError as exc:  # no detector installed, no renderer: the search goes on without it
                    face.update(found=False, error=str(exc))
                    return None
            face["found"] = cues is not None
            if cues is None:
                return None
            face.update(landmarks=len(cues.vertex_ids), residual_pct=round(cues.residual * 100, 3),
                        views=cues.views, detections=cues.detections)
            face["cues"] = (cues.points, cues.vertex_ids)
            return cues.points, cues.vertex_ids

        return find

    def _vae_stage(self, state: FitState, cloud: PointCloud, opt: RetopoOptions, seed: int) -> None:
        """The VAE decode: it seeds the bases fit (first correspondences), or without bases it is the prior, the
        similarity re-fitted to it and the scan encoded again in the better pose, `vae_rounds` times."""
        if not (opt.vae and self.vae is not None):
            return
        decoded = self.vae_prior(state.local, seed)
        if opt.bases and self.bases is not None:
            state.init = rt.project_on_bases(decoded, state.prior, self.bases)
            return
        for round_ in range(max(opt.vae_rounds, 1)):
            if round_:
                decoded = self.vae_prior(state.local, seed)
            corr = rt.refine_similarity(state.local, decoded, self.template.faces, Similarity(),
                                        outside_mask=self.hair_mask)
            self._move(state, cloud, corr)
        state.prior = decoded

    def _bases_stage(self, state: FitState, cloud: PointCloud, opt: RetopoOptions, landmarks,
                     prior_gain: float = 1.0) -> None:
        """The bases fit (and its similarity correction) on top of the prior (its weight times `prior_gain`)."""
        if not (opt.bases and self.bases is not None):
            return
        state.verts, state.coeffs, corr = rt.fit_bases(
            state.local, state.prior, self.template.faces, self.bases, self.prior_std, iters=opt.iters,
            gate=BASES_GATE * self.diag, landmarks=_local_landmarks(state.sim, landmarks),
            prior_weight=opt.prior_weight * prior_gain, init_coeffs=state.init, outside_mask=self.hair_mask)
        self._move(state, cloud, corr)

    def _bound_hair(self, fitted: np.ndarray, prior: np.ndarray, offset: float | None) -> tuple[np.ndarray, int]:
        """Over the hair regions, take off what the refinement moved a vertex outward of the prior beyond
        `offset` (% of the diagonal), along the prior's normal: hair over the skin does not pull it out. Returns
        the bounded head and how many vertices the bound moved (the report's `hair_capped`)."""
        if offset is None or self.hair_mask is None:
            return fitted, 0
        from topos_cli.geometry.mesh_ops import vertex_normals

        nrm = vertex_normals(prior, self.template.faces)
        out = ((fitted - prior) * nrm).sum(1)
        excess = np.clip(out - offset / 100 * self.diag, 0.0, None) * self.hair_mask
        return fitted - excess[:, None] * nrm, int((excess > 0).sum())

    @staticmethod
    def _move(state: FitState, cloud: PointCloud, corr: Similarity) -> None:
        """Compose a similarity correction into the fit's pose and re-frame the scan samples."""
        state.sim = corr.compose(state.sim)
        state.local = PointCloud(state.sim.apply(cloud.points), state.local.normals @ corr.rotation.T)

    def _flag_poor_pose(self, report: dict, info: dict, opt: RetopoOptions) -> None:
        """A fit with little of the head on the scan, or a poor pose the fit confirms, is not ok; when the face
        search ran and found none, the first warning says so (what is missing, and the overrides)."""
        precision, score = report["metrics"].get("precision", 1.0), info.get("score")
        if precision < opt.min_precision:
            report["ok"] = False
            report["warnings"].append(
                f"poor fit: only {precision:.0%} of the fitted head lies on the scan; if the "
                "scan holds more than a head (shoulders, torso), pass --up/--front or --landmarks")
        elif (info.get("method") not in ("landmarks", "face") and score is not None and score > POOR_POSE_SCORE * self.diag
              and precision < POOR_POSE_PRECISION):  # no head pose explains the scan, and the fit shows it
            report["ok"] = False
            report["warnings"].append(
                f"poor fit: the best head pose found stays {score / self.diag * 100:.1f}% of its diagonal from the "
                f"scan and {1 - precision:.0%} of the fitted head is off it; if the scan holds more than a head, "
                "pass --up/--front or --landmarks")
        shell = report["head_supported"] < SHELL_SUPPORTED
        if info.get("face") is False and (shell or not report["ok"]):
            report["ok"] = False
            report["warnings"].insert(0, f"{NO_FACE} (the scan lies under {report['head_supported']:.0%} of the "
                                         "head, and its shape alone does not show which way it faces)")

    def _report(self, local, verts, prior_verts, sim, info, coeffs, opt) -> dict:
        t = self.template
        near = max(NEAR_SCAN * self.diag, NEAR_SPACINGS * local.spacing())  # sparse samples must not read as missing data
        # template -> scan, in cm; only distances under CLOSE_FACTOR x near are used (the rest: inf, and the k-d tree
        # query for the half of the head a face shell does not reach gets cheaper)
        dist_t2s, _ = local.tree.query(verts, distance_upper_bound=CLOSE_FACTOR * near)
        supported = float((dist_t2s < near).mean())  # fraction of the head with scan data under it
        close = dist_t2s < CLOSE_FACTOR * near
        median = float(np.median(dist_t2s[close])) if close.any() else float("inf")
        warnings = []
        if median / self.diag * 100 > opt.poor_fit:
            warnings.append(f"poor fit: median head-to-scan distance {median / self.diag * 100:.2f}% of the diagonal")
        if supported < MIN_SUPPORTED:
            warnings.append(f"only {supported:.0%} of the head has scan data under it: check the input is a head")
        other = info.get("other_orientation")
        if other and info.get("score") and other["score"] < AMBIGUOUS_ORIENTATION * info["score"]:
            warnings.append(f"ambiguous orientation: the head turned {other['degrees']:.0f} deg another way fits "
                            f"the scan about as well; check the output or pass --up/--front (or --landmarks)")
        return {
            "template": t.name, "template_hash": t.hash,
            "alignment": {**sim.to_dict(), "method": info.get("method"), "score": info.get("score"),
                          "other_orientation": info.get("other_orientation")},
            "vae": bool(opt.vae and self.vae is not None),
            "vae_step": None if self.vae is None else trained_steps(self.vae_meta),
            "bases_coefficients": None if coeffs is None else int(len(coeffs)),
            "head_supported": supported,
            "coverage": {name: round(float((dist_t2s[ids] < near).mean()), 3) for name, ids in t.regions.items()},
            "median_distance_pct": median / self.diag * 100,
            "refine_shift_pct": float(np.linalg.norm(verts - prior_verts, axis=1).mean() / self.diag * 100),
            "ok": not warnings, "warnings": warnings,
        }


def _scan_metrics(verts, faces, scan_verts, scan_faces, seed: int) -> dict:
    """Chamfer-L1 / normal consistency / F-score@1% of the fit against the scan (paper protocol, scan
    diagonal units; the fit is clipped to the scan's box, so shoulders-free or partial scans are fair) and
    `scan_covered`: the fraction of the scan within 1% of the fit (recall)."""
    from topos_cli.geometry.metrics import point_metrics, surface_metrics

    rng = np.random.default_rng(seed)
    try:
        if scan_faces is not None and len(scan_faces):
            m = surface_metrics(verts, faces, scan_verts, scan_faces, n=METRIC_SAMPLES, rng=rng)
        else:
            from topos_cli.geometry.metrics import sample_points_normals

            pts, nrm = sample_points_normals(verts, faces, METRIC_SAMPLES, rng)
            diag = bbox_diagonal(scan_verts)
            m = point_metrics(pts, nrm, scan_verts, None, scale=diag)
            m["fscore"] = m["fscore"][0]
    except ValueError as exc:
        return {"error": str(exc)}
    return {"chamfer_l1": m["chamfer_l1"], "normal_consistency": m["normal_consistency"],
            "fscore": m["fscore"]["f"], "precision": m["fscore"]["precision"], "scan_covered": m["fscore"]["recall"],
            "threshold": m["fscore"]["threshold"]}


def _fit_cues(face: dict, opt: RetopoOptions):
    """Every FACE_CUE_STEP-th face landmark found on the scan, for the bases fit, or None."""
    cues = face.get("cues")
    if cues is None or not opt.face_landmarks:
        return None
    return cues[0][::FACE_CUE_STEP], cues[1][::FACE_CUE_STEP]


def _local_landmarks(sim: Similarity, landmarks):
    """Landmarks (scan points, vertex ids) moved into the template frame, or None."""
    return None if landmarks is None else (sim.apply(landmarks[0]), landmarks[1])
