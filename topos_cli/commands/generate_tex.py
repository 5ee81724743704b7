"""`topos generate-tex` and `topos generate` as functions: portraits in, relightable UV texture sets out."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from topos_cli.errors import UsageError
from topos_cli.io.manifest import BatchResult

TEX_FILES = ("albedo.png", "coverage.png", "head.obj", "head.mtl")  # + PBR_FILES with pbr
MIN_SIZE, MAX_SIZE = 64, 4096  # below 64² the face is a few texels; 4096² float maps take ~1 GB


def generate_tex(input: str | Path, out: str | Path, geo: str | Path | None = None, mesh: str | Path | None = None,
                 camera: str | Path | None = None, method: str = "unwrap", size: int = 1024, pbr: bool = True,
                 preview: bool = True, seed: int = 0, weights: str | Path | None = None, lora: str | Path | None = None,
                 model: str | Path | None = None, device: str = "cpu", shard: str | None = None,
                 force: bool = False) -> BatchResult:
    """Texture heads from portraits (`topos generate-tex`).

    Args:
        input: a photo; a folder of photos; a dataset folder or '-' (JSON lines, e.g. `topos generate-geo
            --json` records with "image", "mesh", "camera" and "expression").
        out: the texture folder for one photo (albedo/normal/roughness/specular/coverage PNGs, head.obj +
            head.mtl, preview.png), or a dataset folder for many (items/<id>/...).
        geo: a generate-geo record (JSON file) for a single photo: its mesh, camera and expression.
        mesh / camera: the head in template topology posed as in the photo, and its camera JSON
            (`render/camera.py` formats); instead of `geo`. Without any of them generate-geo runs first.
        method: "unwrap" (classical, CPU), "qwen" (TOPOS-Texture; needs local weights) or "learned".
        size: texture side in texels. pbr: also write normal/roughness/specular maps (and name them in the
            MTL). preview: also render preview.png. seed: the qwen sampler's seed.
        weights: folder of the Qwen-Image-Edit weights and TOPOS-Texture LoRA (method qwen), or a tex-uv
            checkpoint folder (method learned; default: the shipped tex-uv-small).
        lora: the LoRA folder when it is not WEIGHTS/lora (e.g. a `topos train tex` run's RUN/lora).
        model: TOPOS-DiT checkpoint for the generate-geo step. device: torch device for learned parts.
    """
    from topos_cli.io.batch import BatchItem, raise_failures, run_batch
    from topos_cli.io.manifest import run_meta
    from topos_cli.pipelines.tex import PBR_FILES, TexturePipeline
    from topos_cli.template import load_template

    if not MIN_SIZE <= size <= MAX_SIZE:
        raise UsageError(f"--size must be in [{MIN_SIZE}, {MAX_SIZE}], got {size}")
    if (mesh is None) != (camera is None):
        raise UsageError("--mesh and --camera go together: give both (the head as posed in the photo and its "
                         "camera), or --geo RECORD.json, or neither to run generate-geo first")
    out = Path(out)
    single = str(input) != "-" and Path(input).is_file()
    if not single and (geo or mesh):
        raise UsageError("--geo/--mesh/--camera apply to a single photo; for many, pipe generate-geo's records")
    pipe = TexturePipeline(load_template(None), size, method, weights=weights, lora=lora, device=device)
    geometry = GeometrySource(pipe.template, model, device)
    if single:
        base = _single_record(Path(input), geo, mesh, camera)
        return BatchResult(out=out, records=[texture_one(pipe, geometry, base, out, Writing(preview, pbr), seed)])
    from topos_cli.commands.generate_geo import photo_records

    records = photo_records(input)
    files = (*TEX_FILES, *(PBR_FILES if pbr else ()), "report.json")
    items = [BatchItem(id=r["id"], outputs=tuple(out / "items" / r["id"] / f for f in files),
                       payload=r, failure={"image": str(r["image"])}) for r in records]
    meta = run_meta("generate-tex", seed=seed, template=pipe.template, input=str(input), method=method, size=size)
    result = run_batch(items, partial(_item, pipe, geometry, Writing(preview, pbr), seed), out, shard=shard, force=force,
                       meta=meta, description="generate-tex", done=_done)
    raise_failures(result, "photo(s)", "textures written", all_failed_is_usage=len(items) == 1)
    return result


@dataclass(frozen=True)
class Writing:
    """Which optional outputs to write."""

    preview: bool = True
    pbr: bool = True


class GeometrySource:
    """The posed head and camera of a record: from its mesh + camera (+ expression), else from generate-geo
    (its pipeline built on first use and kept for the batch)."""

    def __init__(self, template, model=None, device: str = "cpu"):
        self.template, self.model, self.device, self._geo = template, model, device, None

    def __call__(self, record: dict, photo_rgb8: np.ndarray, seed: int):
        if record.get("mesh"):
            return self._from_record(record, photo_rgb8.shape)
        if self._geo is None:
            from topos_cli.pipelines.geo import GeoPipeline
            from topos_cli.utils.device import torch_device

            self._geo = GeoPipeline.from_pretrained(self.model, template=self.template,
                                                    device=torch_device(self.device))
        res = self._geo(photo_rgb8, source=str(record["image"]), seed=seed)
        return res.posed, res.camera, {"geo": res.record(self._geo.expression_names)}

    def _from_record(self, record: dict, shape):
        from topos_cli.io.mesh import check_template_topology, load_mesh
        from topos_cli.render.camera import from_dict

        data = load_mesh(record["mesh"])
        check_template_topology(data, self.template, str(record["mesh"]))
        cam = record.get("camera")
        if cam is None and record.get("camera_file"):
            cam = _read_camera(record["camera_file"])
        if cam is None:
            raise UsageError(f"{record['mesh']}: no camera; give --camera cam.json (the camera that reproduces "
                             f"the photo, e.g. generate-geo's *.camera.json)")
        verts = np.asarray(data.verts, np.float64)
        weights = record.get("expression")
        if isinstance(weights, dict) and weights and not record.get("expression_kept", False):
            verts = _pose(self.template, verts, weights)  # generate-geo writes the neutral head by default
        return verts, from_dict(cam, width=shape[1], height=shape[0]), {}


def _pose(template, verts: np.ndarray, weights: dict) -> np.ndarray:
    """The head with generate-geo's fitted expression applied (what its camera sees)."""
    names = [str(n) for n in template.bases.get("expression_names", [])]
    basis = template.basis("expression")
    w = np.array([float(weights.get(n, 0.0)) for n in names])
    return verts + np.tensordot(w, np.asarray(basis, np.float64)[: len(w)], 1)


def _read_camera(path) -> dict:
    from topos_cli.io.fs import read_json

    data = read_json(path, "camera file")
    if isinstance(data, dict) and "cameras" in data:
        data = data["cameras"]
    if isinstance(data, list):
        if not data:
            raise UsageError(f"{path}: no camera in the file")
        data = data[0]
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a camera file holds a JSON object (see README 'Cameras')")
    return data


def _single_record(photo: Path, geo, mesh, camera) -> dict:
    from topos_cli.io.fs import read_json

    record = {"id": photo.stem, "image": str(photo)}
    if geo is not None:
        data = read_json(geo, "generate-geo record")
        if not isinstance(data, dict) or "mesh" not in data:
            raise UsageError(f"{geo}: not a generate-geo record (needs 'mesh' and 'camera')")
        record.update({k: v for k, v in data.items() if k not in ("id", "image")})
    if mesh is not None:
        record.update(mesh=str(mesh), camera=_read_camera(camera), expression=None)
    return record


def _item(pipe, geometry, writing: Writing, seed: int, item) -> dict:
    from topos_cli.utils.seeding import item_seed

    return texture_one(pipe, geometry, item.payload, item.outputs[0].parent, writing, item_seed(seed, item.id),
                       batch=True)


def _done(item) -> dict:
    from topos_cli.io.fs import read_json

    return read_json(item.outputs[-1], "report.json")


def texture_one(pipe, geometry, record: dict, out: Path, writing: Writing, seed: int, batch: bool = False) -> dict:
    """Texture one photo into the folder `out`; returns the record (paths absolute)."""
    from topos_cli.faces.detect import as_rgb8
    from topos_cli.io.fs import write_json
    from topos_cli.io.image import read_photo
    from topos_cli.pipelines.tex import write_texture_set

    photo = Path(record["image"])
    rgb8 = as_rgb8(read_photo(photo))
    verts, cam, extra = geometry(record, rgb8, seed)
    fitted = bool(extra) or "pose" in record  # generate-geo's head (run here or its record): not the true shape
    result = pipe(rgb8 / 255.0, verts, cam, seed=seed, fitted=fitted)
    paths = write_texture_set(out, result, verts, pipe.template, preview=writing.preview, pbr=writing.pbr)
    rec = {**{k: v for k, v in record.items() if k not in ("camera",)}, "id": record.get("id", photo.stem),
           "image": str(photo.resolve()), "texture_dir": str(Path(out).resolve()), **paths,
           "camera": cam.to_dict(), "method": pipe.method, "size": pipe.size,
           "texels": {k: result.stats[k] for k in ("photo", "mirror", "completed") if k in result.stats},
           "seconds": result.stats.get("seconds", {}), **extra}
    if batch:
        write_json(Path(out) / "report.json", rec)
    return rec


def generate(input: str | Path, out: str | Path, method: str = "unwrap", size: int = 1024, seed: int = 0,
             weights: str | Path | None = None, lora: str | Path | None = None, model: str | Path | None = None,
             device: str = "cpu", shard: str | None = None, force: bool = False) -> BatchResult:
    """Portrait -> head in template topology + texture set + preview (`topos generate`).

    The same as `generate-tex` without a mesh: generate-geo's pipeline fits the head, and the record carries
    the textured OBJ (head.obj + head.mtl + maps) and the camera that reproduces the photo (`camera`).
    """
    return generate_tex(input, out, method=method, size=size, seed=seed, weights=weights, lora=lora, model=model,
                        device=device, shard=shard, force=force)
