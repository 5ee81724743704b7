"""Pairs of mesh files: pairing by stem, align one pair, evaluate one pair, summaries, parallel map.

The orchestration behind `api.align` and `api.metrics`: files in, plain dict records out. The maths lives
in `geometry/align.py` and `geometry/metrics.py`; reading and writing in `io/mesh.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from topos_cli.errors import MeshError, ToposError, UsageError

PROTOCOLS = ("robust", "topos")
SUMMARY_KEYS = (
    "chamfer_l1",
    "accuracy",
    "completeness",
    "normal_consistency",
    "precision",
    "recall",
    "fscore",
    "clip_area_kept",
    "v2v_mean",
    "v2v_max",
    "align_residual_rel",
)


@dataclass(frozen=True)
class Pair:
    """One prediction file and its ground truth, paired by file stem."""

    stem: str
    pred: Path
    gt: Path


@dataclass
class Pairs:
    """The pairs plus the stems that could not be paired."""

    items: list[Pair] = field(default_factory=list)
    unmatched_pred: list[str] = field(default_factory=list)
    unmatched_gt: list[str] = field(default_factory=list)

    @property
    def unmatched(self) -> dict:
        return {"pred": self.unmatched_pred, "gt": self.unmatched_gt}


def check_pair_paths(pred: Path, gt: Path, kind: str) -> None:
    """UsageError unless both paths exist and are both files or both folders (`kind`: 'mesh', 'image')."""
    for path, what in ((pred, "prediction"), (gt, "ground truth")):
        if not path.exists():
            raise UsageError(f"{what} '{path}' does not exist")
    if pred.is_dir() != gt.is_dir():
        raise UsageError(f"give two {kind} files or two folders, not '{pred}' and '{gt}'")


def resolve_pairs(pred: str | Path, gt: str | Path) -> Pairs:
    """Two mesh files (one pair) or two folders (paired by file stem; case-sensitive).

    Raises:
        UsageError: a path is missing, or one is a file and the other a folder.
    """
    from topos_cli.io.mesh import list_meshes

    pred, gt = Path(pred), Path(gt)
    check_pair_paths(pred, gt, "mesh")
    if pred.is_file():
        return Pairs(items=[Pair(pred.stem, pred, gt)])
    by_stem = {}
    for name, folder in (("pred", pred), ("gt", gt)):
        files = {}
        for path in list_meshes(folder):
            files.setdefault(path.stem, path)  # a.obj before a.ply: the first by name wins
        by_stem[name] = files
    stems = sorted(set(by_stem["pred"]) & set(by_stem["gt"]))
    if not stems:
        raise UsageError(f"no mesh file in '{pred}' has a partner with the same stem in '{gt}'")
    return Pairs(
        items=[Pair(s, by_stem["pred"][s], by_stem["gt"][s]) for s in stems],
        unmatched_pred=sorted(set(by_stem["pred"]) - set(stems)),
        unmatched_gt=sorted(set(by_stem["gt"]) - set(stems)),
    )


def used_verts(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """The vertices that faces reference (stray vertices must not steer an alignment)."""
    if len(faces) == 0:
        return verts
    used = np.zeros(len(verts), dtype=bool)
    used[faces.ravel()] = True
    return verts if used.all() else verts[used]


def fit_alignment(pred, gt, *, protocol: str, options: dict, rng: np.random.Generator, names: str = "pair"):
    """Similarity mapping mesh ``pred`` (MeshData) onto ``gt``; returns an AlignResult.

    A mesh the alignment cannot use (no surface area, all points in one spot) is a MeshError naming ``names``.
    """
    from topos_cli.geometry.align import align_robust, align_topos

    if protocol not in PROTOCOLS:
        raise UsageError(f"--protocol must be one of {', '.join(PROTOCOLS)}, not '{protocol}'")
    for mesh in (pred, gt):
        if len(mesh.verts) < 3 or float(np.ptp(np.asarray(mesh.verts, np.float64), axis=0).max()) == 0.0:
            raise MeshError(f"{names}: a mesh has all its points in one spot; nothing to align")
    try:
        if protocol == "topos":
            return align_topos(used_verts(pred.verts, pred.faces), used_verts(gt.verts, gt.faces), **options)
        return align_robust(pred.verts, pred.faces, gt.verts, gt.faces, rng=rng, **options)
    except ValueError as exc:  # zero surface area, too few points: a property of the input
        raise MeshError(f"{names}: {exc}") from None


def transformed(mesh, result):
    """The mesh moved by an AlignResult: positions and normals change, everything else is kept verbatim."""
    from dataclasses import replace

    normals = None if mesh.normals is None else result.apply_normals(mesh.normals)
    return replace(mesh, verts=result.apply(mesh.verts).astype(np.float32), normals=normals)


def align_file(
    stem: str, pred: Path, gt: Path, out: Path, *, protocol: str, options: dict, seed: int
) -> dict:
    """Align one pred file onto one gt file and write the moved prediction to ``out``.

    GLB/glTF in and out: the similarity goes on the scene root (hierarchy and materials untouched); OBJ in
    and out: only the `v`/`vn` lines change (faces, UVs, groups and materials are copied verbatim);
    otherwise the vertices are transformed and written in ``out``'s format with connectivity, UVs and vertex
    order kept.
    """
    from topos_cli.io.mesh import load_mesh, save_mesh, transform_gltf_scene, transform_obj_file

    pred_mesh, gt_mesh = load_mesh(pred, allow_points=True), load_mesh(gt, allow_points=True)  # scans may be clouds
    # the sampling stream comes from --seed alone: the result must not depend on the files' names
    result = fit_alignment(pred_mesh, gt_mesh, protocol=protocol, options=options, rng=np.random.default_rng(seed),
                           names=f"{pred.name} vs {gt.name}")
    gltf = (".glb", ".gltf")
    if pred.suffix.lower() in gltf and out.suffix.lower() in gltf:
        transform_gltf_scene(pred, out, result.matrix)
    elif pred.suffix.lower() == ".obj" and out.suffix.lower() == ".obj":
        transform_obj_file(pred, out, result.matrix)
    else:
        save_mesh(out, transformed(pred_mesh, result), texture=pred_mesh.texture)
    return {
        "id": stem,
        "mesh": str(out.resolve()),
        "pred": str(pred.resolve()),
        "gt": str(gt.resolve()),
        **result.to_dict(),
    }


def evaluate_file(
    stem: str,
    pred: Path,
    gt: Path,
    *,
    seed: int,
    icp: bool,
    protocol: str,
    align_options: dict,
    metric_options: dict,
    template: str | Path | None,
) -> dict:
    """Geometry metrics of one pair (optionally aligned first); a flat row of numbers plus details.

    The pair's random streams derive from --seed alone: results depend neither on the files' names nor on order,
    shards or workers.
    """
    from topos_cli.geometry.metrics import surface_metrics, vertex_errors
    from topos_cli.io.mesh import load_mesh

    pred_mesh, gt_mesh = load_mesh(pred), load_mesh(gt)
    rng_align, rng_metrics = np.random.default_rng(seed).spawn(2)
    row: dict = {"id": stem, "pred": str(pred.resolve()), "gt": str(gt.resolve())}
    if icp:
        result = fit_alignment(pred_mesh, gt_mesh, protocol=protocol, options=align_options, rng=rng_align,
                               names=f"{pred.name} vs {gt.name}")
        pred_mesh = transformed(pred_mesh, result)
        row["align"] = result.to_dict()
        row["align_residual_rel"] = result.residual_rel
    try:
        geo = surface_metrics(
            pred_mesh.verts, pred_mesh.faces, gt_mesh.verts, gt_mesh.faces, rng=rng_metrics, **metric_options
        )
    except ValueError as exc:  # zero area, nothing inside the box: a property of the input
        raise MeshError(f"{pred.name} vs {gt.name}: {exc}") from None
    row.update({k: geo[k] for k in ("chamfer_l1", "accuracy", "completeness", "normal_consistency")})
    row.update(
        {
            "precision": geo["fscore"]["precision"],
            "recall": geo["fscore"]["recall"],
            "fscore": geo["fscore"]["f"],
            "fscores": geo["fscores"],
            "clip_area_kept": geo["clip_area_kept"],
            "diagonal": geo["diagonal"],
        }
    )
    if _same_topology(pred_mesh, gt_mesh):
        errors = vertex_errors(
            pred_mesh.verts,
            gt_mesh.verts,
            scale=geo["diagonal"],
            regions=_template_regions(gt_mesh, template),
        )
        row.update({"v2v_mean": errors["mean"], "v2v_max": errors["max"], "v2v_rmse": errors["rmse"]})
        if "per_region" in errors:
            row["v2v_regions"] = errors["per_region"]
    return row


def _same_topology(a, b) -> bool:
    return len(a.verts) == len(b.verts) and np.array_equal(a.faces, b.faces)


def _template_regions(mesh, template: str | Path | None) -> dict | None:
    """The template's regions when the mesh is in that template's topology, else None."""
    from topos_cli.template import load_template

    try:
        tpl = load_template(template)
    except ToposError:
        if template is not None:  # asked for by name: a wrong name is the user's error
            raise
        return None
    if len(tpl.verts) != len(mesh.verts) or not np.array_equal(tpl.faces, mesh.faces):
        return None
    return {name: np.asarray(idx) for name, idx in tpl.regions.items()}


def summarize(rows: list[dict]) -> dict:
    """Mean, std (population) and count of each numeric metric over the rows that have it."""
    out = {}
    for key in SUMMARY_KEYS:
        vals = np.array([r[key] for r in rows if r.get(key) is not None], dtype=np.float64)
        if len(vals):
            out[key] = {"mean": float(vals.mean()), "std": float(vals.std()), "n": int(len(vals))}
    return out


def align_options(
    protocol: str,
    *,
    trim: float | None = None,
    yaws=None,
    tilts=None,
    scales=None,
    seed_iters: int | None = None,
    final_iters: int | None = None,
) -> dict:
    """Keyword arguments for `align_robust` / `align_topos` from the CLI's options (None: the default)."""
    from topos_cli.geometry.align import ROBUST_SCHEDULE

    if protocol not in PROTOCOLS:
        raise UsageError(f"--protocol must be one of {', '.join(PROTOCOLS)}, not '{protocol}'")
    if trim is not None and not 0.0 < trim <= 1.0:
        raise UsageError(f"--trim must be in (0, 1], got {trim}")
    if scales is not None and (not scales or min(scales) <= 0):
        raise UsageError("--scales must be positive numbers, e.g. 0.5,0.7,1,1.4")
    for name, value in (("--seed-iters", seed_iters), ("--final-iters", final_iters)):
        if value is not None and value < 0:
            raise UsageError(f"{name} must be >= 0")
    opts = {"trim": trim, "yaws": yaws, "scales": scales, "final_iters": final_iters}
    if protocol == "topos":
        if tilts is not None:
            raise UsageError("--tilts applies to --protocol robust only (the paper's grid is yaw x scale)")
        opts["seed_iters"] = seed_iters
    else:
        opts["tilts"] = tilts
        if seed_iters is not None:  # the last (finest) multi-start stage plays the paper's 30-iteration role
            *head, (points, _, kept) = ROBUST_SCHEDULE
            opts["schedule"] = (*head, (points, seed_iters, kept))
    return {k: v for k, v in opts.items() if v is not None}


def run_align(pred, gt, out, *, protocol: str, options: dict, seed: int, workers: int = 1,
              shard: str | None = None, force: bool = False) -> dict:
    """Align one pair (``out`` a mesh file, or a folder) or two folders paired by stem (``out`` a folder,
    written by the batch engine: manifest, meta, failures, resumable and shardable)."""
    from topos_cli.io.batch import BatchItem, run_batch
    from topos_cli.io.manifest import is_dataset, read_manifest, run_meta
    from topos_cli.io.mesh import MESH_SUFFIXES

    pairs = resolve_pairs(pred, gt)
    out = Path(out)
    report = {"out": str(out.resolve()), "records": [], "skipped": 0, "failures": [], "unmatched": pairs.unmatched}
    if Path(pred).is_file():  # one explicit pair always runs, and its error is the command's error (exit 2)
        pair = pairs.items[0]
        target = out if out.suffix.lower() in MESH_SUFFIXES else out / pair.pred.name
        report["records"].append(align_file(pair.stem, pair.pred, pair.gt, target, protocol=protocol,
                                            options=options, seed=seed))
        return report
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out}: for folders of pairs, -o must be a folder")
    old = {r["id"]: r for r in read_manifest(out) if "id" in r} if is_dataset(out) else {}
    items = [BatchItem(id=p.stem, outputs=(out / p.pred.name,), payload=p,
                       record=old.get(p.stem, {"id": p.stem, "mesh": str((out / p.pred.name).resolve())}),
                       failure={"pred": str(p.pred), "gt": str(p.gt)}) for p in pairs.items]
    meta = run_meta("align", seed=seed, protocol=protocol, options=_plain(options), pred=str(pred), gt=str(gt))
    result = run_batch(items, partial(_align_item, protocol, options, seed, out), out, shard=shard, force=force,
                       meta=meta, description="align", workers=workers)
    report.update(records=result.records, skipped=result.skipped, failures=result.failures)
    return report


def _align_item(protocol: str, options: dict, seed: int, out: Path, item) -> dict:
    pair = item.payload
    return align_file(pair.stem, pair.pred, pair.gt, out / pair.pred.name, protocol=protocol, options=options,
                      seed=seed)


def run_metrics(pred, gt, *, icp: bool, protocol: str, align_opts: dict, metric_options: dict, seed: int,
                workers: int = 1, shard: str | None = None, template: str | Path | None = None) -> dict:
    """Evaluate one pair or two folders paired by stem; returns the report (rows, summary, failures).
    Writes no folder: the batch engine only shards and maps the pairs."""
    from topos_cli.geometry.metrics import CONVENTION
    from topos_cli.io.batch import BatchItem, run_batch

    pairs = resolve_pairs(pred, gt)
    fn = partial(_evaluate_item, {"seed": seed, "icp": icp, "protocol": protocol, "align_options": align_opts,
                                  "metric_options": metric_options, "template": template})
    items = [BatchItem(id=p.stem, payload=p, failure={"pred": str(p.pred), "gt": str(p.gt)}) for p in pairs.items]
    if Path(pred).is_file():  # one pair: its error is the command's error
        rows, failures = [fn(items[0])], []
    else:
        result = run_batch(items, fn, None, shard=shard, description="metrics", workers=workers)
        rows, failures = result.records, result.failures
    convention = {**CONVENTION, "samples": metric_options.get("n", 10000),
                  "fscore_threshold": metric_options.get("threshold", 0.01), "clip": metric_options.get("clip", True),
                  "clip_margin": metric_options.get("clip_margin", 0.05), "icp": icp,
                  "protocol": protocol if icp else None, "seed": seed}
    return {"kind": "geometry", "convention": convention, "pairs": rows, "summary": summarize(rows),
            "count": len(rows), "failures": failures, "unmatched": pairs.unmatched, "shard": shard}


def _evaluate_item(kwargs: dict, item) -> dict:
    pair = item.payload
    return evaluate_file(pair.stem, pair.pred, pair.gt, **kwargs)


def _plain(options: dict) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in options.items()}


CSV_COLUMNS = ("id", *SUMMARY_KEYS)


def report_csv(report: dict) -> str:
    """Per-pair rows, then `mean` and `std` rows, as CSV text (empty cells where a metric does not apply)."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in report["pairs"]:
        writer.writerow([_cell(row.get(c)) for c in CSV_COLUMNS])
    for stat in ("mean", "std"):
        writer.writerow([stat] + [_cell(report["summary"].get(c, {}).get(stat)) for c in CSV_COLUMNS[1:]])
    return buf.getvalue()


def _cell(value) -> str:
    if value is None:
        return ""
    return f"{value:.8g}" if isinstance(value, float) else str(value)
