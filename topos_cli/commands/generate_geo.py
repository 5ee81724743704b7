"""`topos generate-geo` as a function: portraits in, heads in the template topology out."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from topos_cli.errors import UsageError
from topos_cli.io.manifest import BatchResult

MESH_OUTPUTS = (".obj", ".ply", ".glb")


def generate_geo(input: str | Path, out: str | Path, model: str | Path | None = None, seed: int = 0,
                 samples: int = 1, steps: int = 50, cfg: float | None = None, keep_expression: bool = False,
                 refine: bool = True, overlay: bool = False, face_index: int | None = None, format: str = "obj",
                 device: str = "cpu", shard: str | None = None, force: bool = False,
                 prior: bool = True, shading: bool = True, landmark_refiner: bool = True) -> BatchResult:
    """Make a head in the template topology from each portrait (`topos generate-geo`).

    Args:
        input: a photo (JPG/PNG/...), a folder of photos, or a dataset folder / '-' (JSONL records with an
            "image" path).
        out: a mesh file (.obj with the template's UVs, .ply or .glb) for one photo, or a folder for many
            (items/<id>/head.<format>, camera.json, report.json, overlay.png; manifest.jsonl, meta.json).
        model: TOPOS-DiT checkpoint folder (default: the shipped one when present, else the mean head).
        seed / samples / steps / cfg: the generator's noise seed, draws averaged, ODE steps, guidance scale
            (None: the checkpoint's `sampling.cfg`, else 3.0).
        keep_expression: write the fitted expression (default: the neutral head).
        refine: fit the identity bases to the photo's landmarks (else keep the generator's shape).
        overlay: also write the photo with the fitted mesh drawn over it.
        face_index: which face when there are several (0 = largest); default the largest, with a warning.
        format: mesh format of batch outputs (obj, ply, glb).
        prior: False skips the generator even when a checkpoint is present (the mean head is the prior).
        shading: after the landmark fit, refine the shape so its shading explains the photo (with `refine`).
        landmark_refiner: move mediapipe's points with the shipped landmark refiner (faces/refine.py) first.

    Returns:
        BatchResult whose records hold the mesh, camera and overlay paths and the fit record.
    """
    from topos_cli.io.batch import BatchItem, raise_failures, run_batch
    from topos_cli.io.manifest import run_meta
    from topos_cli.pipelines.geo import GeoOptions, GeoPipeline
    from topos_cli.utils.device import torch_device

    _check(samples, steps, cfg, face_index, format)
    out = Path(out)
    single = str(input) != "-" and Path(input).is_file()
    if single and out.suffix.lower() not in MESH_OUTPUTS:
        raise UsageError(f"-o {out}: for one photo give an output mesh path ending in .obj, .ply or .glb")
    options = GeoOptions(samples=samples, steps=steps, cfg=cfg, refine=refine, shading=shading,
                         keep_expression=keep_expression, face_index=face_index)
    records = [] if single else photo_records(input)
    pipe = GeoPipeline.from_pretrained(model, device=torch_device(device), use_prior=prior,
                                       use_refiner=landmark_refiner)
    if single:
        return BatchResult(out=out, records=[_one(pipe, Path(input), out, options, seed, overlay)])
    items = [BatchItem(id=r["id"], outputs=(out / "items" / r["id"] / f"head.{format}",
                                            out / "items" / r["id"] / "report.json"),
                       payload=r, failure={"image": str(r["image"])}) for r in records]
    meta = run_meta("generate-geo", seed=seed, template=pipe.template, input=str(input), model=pipe.model_dir,
                    options=options.__dict__, landmark_refiner=pipe.refiner is not None)
    result = run_batch(items, partial(_item, pipe, options, seed, overlay), out, shard=shard, force=force,
                       meta=meta, description="generate-geo", done=_done)
    raise_failures(result, "photo(s)", "heads written", all_failed_is_usage=len(items) == 1)
    return result


def _check(samples: int, steps: int, cfg: float | None, face_index: int | None, format: str) -> None:
    if samples < 1 or steps < 1:
        raise UsageError("--samples and --steps must be >= 1")
    if cfg is not None and cfg < 0:
        raise UsageError(f"--cfg must be >= 0, got {cfg}")
    if face_index is not None and face_index < 0:
        raise UsageError(f"--face-index must be >= 0 (0 = the largest face), got {face_index}")
    if format not in ("obj", "ply", "glb"):
        raise UsageError(f"--format must be obj, ply or glb, got '{format}'")


def photo_records(input: str | Path) -> list[dict]:
    """INPUT as records {"id", "image", ...}: a folder of photos, a dataset folder or '-' (JSON lines)."""
    from topos_cli.io.image import PHOTO_SUFFIXES
    from topos_cli.io.manifest import is_dataset, read_jsonl, read_manifest

    if str(input) == "-":
        records = read_jsonl("-")
    else:
        path = Path(input)
        if not path.exists():
            raise UsageError(f"{path}: no such file or folder")
        if is_dataset(path):
            records = read_manifest(path)
        else:
            records = [{"id": p.stem, "image": str(p)} for p in sorted(path.iterdir())
                       if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES]
            if not records:
                raise UsageError(f"{path} holds no photos ({', '.join(PHOTO_SUFFIXES)}) and no manifest.jsonl")
    for i, rec in enumerate(records):
        if not isinstance(rec.get("image"), str):
            raise UsageError(f"input record {i + 1} has no 'image' path (e.g. {{\"image\": \"me.jpg\"}})")
        rec.setdefault("id", Path(rec["image"]).stem)
    ids = [r["id"] for r in records]
    if len(set(ids)) != len(ids):
        raise UsageError("two input photos share an id (file stem); rename one or give ids in the records")
    return records


def _item(pipe, options, seed: int, overlay: bool, item) -> dict:
    from topos_cli.utils.seeding import item_seed

    return _one(pipe, Path(item.payload["image"]), item.outputs[0], options, item_seed(seed, item.id), overlay,
                base=item.payload)


def _done(item) -> dict:
    """The record of a photo done by an earlier run (its report.json)."""
    from topos_cli.io.fs import read_json

    return read_json(item.outputs[1], "report.json")


def _one(pipe, photo: Path, dest: Path, options, seed: int, overlay: bool, base: dict | None = None) -> dict:
    """Fit one photo; write the head, its camera (and overlay, report.json in batches); return the record."""
    from topos_cli.faces.detect import as_rgb8
    from topos_cli.io.fs import write_json
    from topos_cli.io.image import read_photo, write_png
    from topos_cli.io.mesh import MeshData, save_mesh
    from topos_cli.pipelines.geo import overlay as draw_overlay

    image = as_rgb8(read_photo(photo))
    result = pipe(image, source=str(photo), seed=seed, options=options)
    batch = base is not None
    camera_path = dest.parent / "camera.json" if batch else dest.with_name(dest.stem + ".camera.json")
    save_mesh(dest, MeshData.from_template(pipe.template, result.verts))
    write_json(camera_path, result.camera.to_dict())
    record = {**(base or {}), "id": (base or {}).get("id", photo.stem), "image": str(photo.resolve()),
              "mesh": str(dest.resolve()), "camera_file": str(camera_path.resolve()),
              "template": pipe.template.name, "template_hash": pipe.template.hash,
              "expression_kept": options.keep_expression, "seed": seed,
              **result.record(pipe.expression_names)}
    if pipe.prior is None:
        record["warnings"].append("no TOPOS-DiT checkpoint: the template's mean head is the prior")
    if overlay:
        path = dest.parent / "overlay.png" if batch else dest.with_name(dest.stem + "_overlay.png")
        write_png(path, draw_overlay(image, result.posed, pipe.template, result.camera))
        record["overlay"] = str(path.resolve())
    if batch:
        write_json(dest.parent / "report.json", record)
    return record
