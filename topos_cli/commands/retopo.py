"""`topos retopo` as a function: fit the template to scans of any topology, units and pose."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from topos_cli.commands.augment import base_records
from topos_cli.errors import MeshError, UsageError
from topos_cli.io.manifest import BatchResult


def retopo(input: str | Path, out: str | Path, template: str | Path | None = None,
           checkpoint: str | Path | None = None, landmarks: str | Path | None = None,
           up: str | None = None, front: str | None = None, frame: str = "scan", vae: bool = True,
           bases: bool = True, refine: bool = True, iters: int = 12, points: int = 30000, format: str = "ply", seed: int = 0,
           device: str = "cpu", strict: bool = False, shard: str | None = None, force: bool = False) -> BatchResult:
    """Fit the template to scans of any topology, units and pose (`topos retopo`).

    Args:
        input: a scan file (any mesh format; point clouds .ply work too), a folder of scans, or a dataset
            folder / '-' (JSONL records with a "mesh" path).
        out: a mesh file (.obj/.ply/.glb) for one scan, or a dataset folder for many
            (items/<id>/mesh.<format> + report.json, manifest.jsonl, meta.json, failures.jsonl).
        template: template name or folder (default: the checkpoint's template, else topos-head).
        checkpoint: VAE checkpoint folder (default: the shipped retopo-vae-small when present).
        landmarks: JSON file {"points": [[x, y, z], ...], "vertices": [template vertex ids]} or
            {"landmarks": [{"vertex": id, "point": [x, y, z]}, ...]} in scan coordinates, or a menpo LJSON
            file of the 68 iBUG points (single scan only).
        up, front: scan-space axes like "+Z", "-Y" or "0,0,1" (skip the automatic orientation search).
        frame: "scan" (output lies on the scan, scan units) or "template" (canonical, cm).
        vae / bases / refine: enable the VAE prior, the bases fit and the non-rigid refinement.
        iters: bases-fit iterations; points: scan samples used by the fit.
        format: mesh format of batch outputs (ply, obj, glb).
        strict: a poor fit is an error (exit 2 for one scan, a failure in batch mode) instead of a warning.
        shard / force: batch sharding ("K/N") and redoing finished items.

    Returns:
        BatchResult whose records carry the output path and the fit report.
    """
    from topos_cli.io.batch import BatchItem, raise_failures, run_batch
    from topos_cli.io.manifest import run_meta
    from topos_cli.io.mesh import MESH_SUFFIXES
    from topos_cli.pipelines.retopo import RetopoOptions, RetopoPipeline
    from topos_cli.utils.device import torch_device

    if frame not in ("scan", "template"):
        raise UsageError(f"--frame must be 'scan' or 'template', got '{frame}'")
    options = RetopoOptions(up=_parse_axis(up, "--up"), front=_parse_axis(front, "--front"), points=points,
                            vae=vae, bases=bases, refine=refine, iters=iters, frame=frame)
    out = Path(out)
    single = str(input) != "-" and Path(input).is_file()
    if single and out.suffix.lower() not in (".obj", ".ply", ".glb"):
        raise UsageError(f"-o {out}: for one scan give an output mesh path ending in .obj, .ply or .glb")
    if not single and landmarks is not None:
        raise UsageError("--landmarks applies to a single scan, not to a folder")
    if format not in ("ply", "obj", "glb"):
        raise UsageError(f"--format must be ply, obj or glb, got '{format}'")
    pipe = RetopoPipeline.from_pretrained(checkpoint, template, device=torch_device(device), use_vae=vae)
    if single:
        rec = _retopo_one(pipe, Path(input), out, options, seed, landmarks, strict)
        return BatchResult(out=out, records=[rec])
    records = [r for r in base_records(input, pipe.template)
               if str(Path(r["mesh"]).suffix).lower() in MESH_SUFFIXES or str(input) == "-"]
    items = [BatchItem(id=r["id"], outputs=(out / "items" / r["id"] / f"mesh.{format}",
                                            out / "items" / r["id"] / "report.json"),
                       payload=Path(r["mesh"]), failure={"mesh": str(r["mesh"])}) for r in records]
    meta = run_meta("retopo", seed=seed, template=pipe.template, input=str(input),
                    checkpoint=str(checkpoint) if checkpoint else None, options=options.__dict__)
    result = run_batch(items, partial(_retopo_item, pipe, options, seed, strict), out, shard=shard, force=force,
                       meta=meta, description="retopo", done=_retopo_done)
    raise_failures(result, "scan(s)", "fitted")
    return result


def _retopo_item(pipe, options, seed: int, strict: bool, item) -> dict:
    return _retopo_one(pipe, item.payload, item.outputs[0], options, seed, None, strict, item_id=item.id)


def _retopo_done(item) -> dict:
    """The record of a scan fitted by an earlier run (its report.json), with this run's paths."""
    from topos_cli.io.fs import read_json

    report = read_json(item.outputs[1], "report.json")
    return {**report, "scan": str(item.payload.resolve()), "mesh": str(item.outputs[0].resolve())}


def _retopo_one(pipe, scan_path: Path, dest: Path, options, seed: int, landmarks, strict: bool,
                item_id: str | None = None) -> dict:
    """Fit one scan file and write the mesh (+ report.json beside batch items); returns the record."""
    from topos_cli.io.fs import write_json
    from topos_cli.io.landmarks import read_landmarks
    from topos_cli.io.mesh import MeshData, load_mesh, save_mesh

    scan = load_mesh(scan_path, allow_points=True)
    if len(scan.verts) < 100:
        raise MeshError(f"{scan_path}: only {len(scan.verts)} points; a scan needs at least 100")
    lms = read_landmarks(landmarks, pipe.template) if landmarks is not None else None
    result = pipe(scan.verts, scan.faces if len(scan.faces) else None, options=options, landmarks=lms, seed=seed)
    if strict and not result.report["ok"]:
        raise MeshError(f"{scan_path}: {'; '.join(result.report['warnings'])} (drop --strict to keep it)")
    save_mesh(dest, MeshData.from_template(pipe.template, result.verts))
    record = {"id": item_id or scan_path.stem, "scan": str(scan_path.resolve()), "mesh": str(dest.resolve()),
              "template": pipe.template.name, "template_hash": pipe.template.hash, **result.report}
    if item_id is not None:
        write_json(dest.parent / "report.json", record)
    return record


def _parse_axis(text: str | None, flag: str) -> tuple[float, float, float] | None:
    if text is None:
        return None
    named = {"+x": (1, 0, 0), "-x": (-1, 0, 0), "+y": (0, 1, 0), "-y": (0, -1, 0), "+z": (0, 0, 1), "-z": (0, 0, -1)}
    key = text.strip().lower()
    key = key if key[:1] in "+-" else "+" + key
    if key in named:
        return tuple(float(v) for v in named[key])
    try:
        vec = tuple(float(v) for v in text.split(","))
    except ValueError:
        vec = ()
    if len(vec) != 3 or not np.isfinite(vec).all() or np.linalg.norm(vec) == 0:
        raise UsageError(f"{flag} '{text}' must be an axis like +Z / -Y or a vector like 0,0,1")
    return vec
