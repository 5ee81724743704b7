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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from topos_cli.geometry import retopo as rt
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


@dataclass
class RetopoResult:
    verts: np.ndarray  # (V, 3) in the requested frame
    verts_template: np.ndarray  # (V, 3) template frame (cm)
    similarity: rt.Similarity  # scan -> template frame
    report: dict = field(default_factory=dict)


class RetopoPipeline:
    """Template (+ optional VAE) -> callable scan fitter."""

    def __init__(self, template: Template, vae=None, device: str = "cpu"):
        self.template, self.vae, self.device = template, vae, device
        t = template
        self.diag = float(np.linalg.norm(t.verts.max(0) - t.verts.min(0)))
        bases = [t.bases[k] for k in ("identity", "expression") if k in t.bases and t.bases[k].ndim == 3]
        self.bases = np.concatenate(bases).astype(np.float64) if bases else None
        stds = [np.ones(len(t.bases["identity"]))] if "identity" in t.bases else []
        stds += [0.5 * np.ones(len(t.bases["expression"]))] if "expression" in t.bases else []
        self.prior_std = np.concatenate(stds) if stds else None
        loops = [np.asarray(v, np.int64) for v in (t.meta.get("boundaries") or {}).values()
                 if isinstance(v, list) and v and not isinstance(v[0], list)]
        loops = sorted(loops, key=len, reverse=True)[1:] if loops else list(t.boundary_loops[1:])
        # eye and mouth loops stay clean; the longest open boundary (the neck cut) is left free. Ears move almost
        # as one piece: they are thin folds beside the head that scans catch badly (hair, occlusion), and free
        # per-vertex pulls fold the concha onto the skin behind them
        regions = [(t.regions[name], gain) for name, gain in REGION_STIFFNESS.items() if name in t.regions]
        self.stiffness = rt.stiffness_weights(t.num_verts, t.faces, loops, rings=2, boost=6.0, regions=regions)
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
        from topos_cli.io.checkpoint import load_model, read_model_json
        from topos_cli.template import load_template

        if use_vae and checkpoint is not None:  # asked for explicitly: a mismatch is an error
            ckpt = Path(checkpoint)
            tpl = load_template(template) if template is not None else load_template(read_model_json(ckpt)["template"])
            return cls(tpl, load_model(ckpt, template=tpl, device=device), device)
        tpl = load_template(template)
        shipped = DEFAULT_CHECKPOINT
        if use_vae and ((shipped / "latest").is_file() or (shipped / "model.json").is_file()):
            try:  # the shipped prior serves only the template it was trained for; others fit without it
                return cls(tpl, load_model(shipped, template=tpl, device=device), device)
            except TemplateMismatch:
                pass
        return cls(tpl, None, device)

    def vae_prior(self, cloud: rt.ScanCloud, seed: int, draws: int = 4, mirror: bool = True) -> np.ndarray:
        """Decode the posterior mean of the (template-frame) scan samples: (V, 3) float64.

        draws: independent point subsets encoded as one batch; their posterior means are averaged (the
            encoder's answer varies with the sampling; the average is the steadier estimate).
        mirror: when the template has a symmetry map, also encode the subsets mirrored (x -> -x), decode, mirror
            the head back through the map and average it with the direct one.
        """
        import torch

        gen = np.random.default_rng(seed)
        # the encoder was trained on heads alone, as near-uniform surface samples: drop what lies outside the
        # template's box (shoulders, a chest, background) and keep one point per voxel of what remains
        lo, hi = self.template.verts.min(0), self.template.verts.max(0)
        pad = 0.05 * (hi - lo)
        inside = np.flatnonzero(np.all((cloud.points > lo - pad) & (cloud.points < hi + pad), 1))
        if len(inside) < 1024:
            inside = np.arange(len(cloud.points))
        cell = self.diag / 150.0
        _, first = np.unique(np.floor(cloud.points[inside] / cell).astype(np.int64), axis=0, return_index=True)
        pool = inside[np.sort(first)] if len(first) >= 1024 else inside
        idx = np.stack([pool[gen.choice(len(pool), min(len(pool), 4096), replace=False)] for _ in range(draws)])
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
        t, timings, t0 = self.template, {}, time.perf_counter()
        rng = np.random.default_rng(seed)
        scan_verts = np.asarray(scan_verts, np.float64)
        if scan_faces is not None and len(scan_faces):
            cloud = rt.sample_scan(scan_verts, scan_faces, opt.points, rng)
            planes = rt.find_planes(cloud)
            if planes:  # background planes (floor, wall): the rest of the scan gets the whole point budget
                centres = scan_verts[scan_faces].mean(1)
                on = np.any([plane.holds(centres) for plane in planes], axis=0)
                if not on.all():
                    scan_faces = scan_faces[~on]
                    cloud = rt.sample_scan(scan_verts, scan_faces, opt.points, rng)
        else:
            cloud = rt.ScanCloud(scan_verts, _pca_normals(scan_verts))
            planes = rt.find_planes(cloud)
            rest = rt.without_planes(cloud, planes) if planes else cloud
            if len(rest.points) >= 100:
                cloud, scan_verts = rest, rest.points
        sim, info = rt.prealign(cloud, t.verts.astype(np.float64), t.faces, up=opt.up, front=opt.front,
                                landmarks=landmarks, outside_mask=self.hair_mask)
        timings["align"] = time.perf_counter() - t0
        local = rt.orient_normals(cloud.transformed(sim), t.verts.astype(np.float64), t.faces)
        prior, init = t.verts.astype(np.float64), None
        if opt.vae and self.vae is not None:
            decoded = self.vae_prior(local, seed)
            if opt.bases and self.bases is not None:  # the VAE seeds the bases fit (first correspondences)
                init = rt.project_on_bases(decoded, prior, self.bases)
            else:  # the decode takes the pre-alignment's residual pose error with it: re-fit the similarity,
                for round_ in range(max(opt.vae_rounds, 1)):  # and encode again in the better pose
                    if round_:
                        decoded = self.vae_prior(local, seed)
                    corr = rt.refine_similarity(local, decoded, t.faces, rt.Similarity(),
                                                outside_mask=self.hair_mask)
                    sim = corr.compose(sim)
                    local = rt.ScanCloud(sim.apply(cloud.points), local.normals @ corr.rotation.T)
                prior = decoded
        timings["vae"] = time.perf_counter() - t0 - timings["align"]
        lm_local = None if landmarks is None else (sim.apply(landmarks[0]), landmarks[1])
        verts, coeffs = prior, None
        if opt.bases and self.bases is not None:
            verts, coeffs, corr = rt.fit_bases(local, prior, t.faces, self.bases, self.prior_std, iters=opt.iters,
                                               gate=0.07 * self.diag, landmarks=lm_local,
                                               prior_weight=opt.prior_weight, init_coeffs=init,
                                               outside_mask=self.hair_mask)
            sim = corr.compose(sim)
            local = rt.ScanCloud(sim.apply(cloud.points), local.normals @ corr.rotation.T)
            lm_local = None if landmarks is None else (sim.apply(landmarks[0]), landmarks[1])
        timings["bases"] = time.perf_counter() - t0 - timings["align"] - timings["vae"]
        prior_verts = verts
        if opt.refine:
            verts = rt.refine(local, verts, t.faces, stiffness=self.stiffness, gate=opt.gate / 100 * self.diag,
                              landmarks=lm_local)
        timings["refine"] = time.perf_counter() - t0 - sum(timings.values())
        out = verts if opt.frame == "template" else sim.inverse().apply(verts)
        report = self._report(local, verts, prior_verts, sim, info, coeffs, opt)
        report["background_planes"] = len(planes)  # removed before the fit; the metrics below leave them out
        report["metrics"] = _scan_metrics(sim.inverse().apply(verts), t.faces, scan_verts, scan_faces, seed)
        precision, score = report["metrics"].get("precision", 1.0), info.get("score")
        if precision < opt.min_precision:
            report["ok"] = False
            report["warnings"].append(
                f"poor fit: only {precision:.0%} of the fitted head lies on the scan; if the "
                "scan holds more than a head (shoulders, torso), pass --up/--front or --landmarks")
        elif (info.get("method") != "landmarks" and score is not None and score > POOR_POSE_SCORE * self.diag
              and precision < POOR_POSE_PRECISION):  # no head pose explains the scan, and the fit shows it
            report["ok"] = False
            report["warnings"].append(
                f"poor fit: the best head pose found stays {score / self.diag * 100:.1f}% of its diagonal from the "
                f"scan and {1 - precision:.0%} of the fitted head is off it; if the scan holds more than a head, "
                "pass --up/--front or --landmarks")
        timings["total"] = time.perf_counter() - t0
        report["seconds"] = {k: round(v, 3) for k, v in timings.items()}
        return RetopoResult(out.astype(np.float32), verts.astype(np.float32), sim, report)

    def _report(self, local, verts, prior_verts, sim, info, coeffs, opt) -> dict:
        t = self.template
        dist_t2s, _ = local.tree.query(verts)  # template -> scan, in cm
        near = max(0.01 * self.diag, 2.0 * local.spacing())  # sparse samples must not read as missing data
        supported = float((dist_t2s < near).mean())  # fraction of the head with scan data under it
        close = dist_t2s < 5 * near
        median = float(np.median(dist_t2s[close])) if close.any() else float("inf")
        warnings = []
        if median / self.diag * 100 > opt.poor_fit:
            warnings.append(f"poor fit: median head-to-scan distance {median / self.diag * 100:.2f}% of the diagonal")
        if supported < 0.25:
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
            "vae_step": None if self.vae is None else trained_steps(getattr(self.vae, "checkpoint_meta", None)),
            "bases_coefficients": None if coeffs is None else int(len(coeffs)),
            "head_supported": supported,
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
            m = surface_metrics(verts, faces, scan_verts, scan_faces, n=10000, rng=rng)
        else:
            from topos_cli.geometry.metrics import sample_points_normals

            pts, nrm = sample_points_normals(verts, faces, 10000, rng)
            diag = float(np.linalg.norm(scan_verts.max(0) - scan_verts.min(0)))
            m = point_metrics(pts, nrm, scan_verts, None, scale=diag)
            m["fscore"] = m["fscore"][0]
    except ValueError as exc:
        return {"error": str(exc)}
    return {"chamfer_l1": m["chamfer_l1"], "normal_consistency": m["normal_consistency"],
            "fscore": m["fscore"]["f"], "precision": m["fscore"]["precision"], "scan_covered": m["fscore"]["recall"],
            "threshold": m["fscore"]["threshold"]}


def _pca_normals(points: np.ndarray, k: int = 12) -> np.ndarray:
    """Unoriented normals of a point cloud (smallest local PCA axis), flipped away from the centroid."""
    from scipy.spatial import cKDTree

    _, idx = cKDTree(points).query(points, k=min(k, len(points)))
    nb = points[idx] - points[idx].mean(1, keepdims=True)
    _, _, vt = np.linalg.svd(nb, full_matrices=False)
    nrm = vt[:, -1]
    flip = ((points - points.mean(0)) * nrm).sum(1) < 0
    nrm[flip] *= -1
    return nrm


