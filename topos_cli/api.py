"""Public Python API: one function per command, same names and parameters as the CLI.

    from topos_cli import api
    api.augment(None, "data/aug", copies=4, seed=0)     # == topos augment -o data/aug --copies 4 --seed 0

Each function validates its inputs, does the work through `geometry`/`models`/`render`/`io`, writes
its outputs atomically and returns plain data (what `--json` prints). Errors a user can cause are
`ToposError`s with an actionable message.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from topos_cli.errors import MeshError, PartialFailure, ToposError, UsageError
from topos_cli.io.manifest import BatchResult
from topos_cli.template import Template, load_template


# ----------------------------------------------------------------------------------------------- template
def template_info(template: str | Path | None = None) -> dict:
    """Counts, regions, landmarks, bases, boundary loops and hash of a template (`topos template info`)."""
    return load_template(template).summary()


def template_export(template: str | Path | None, out: str | Path, identity: list[float] | None = None,
                    expression: dict[str, float] | None = None, weights: str | Path | None = None) -> Path:
    """Write the template mesh, optionally with identity/expression weights applied (`topos template export`).

    Args:
        template: template name or folder.
        out: .obj (keeps UVs and polygons), .ply or .glb.
        identity: identity-mode weights (first len(identity) modes).
        expression: {ARKit expression name: weight}.
        weights: JSON file {"identity": [...], "expression": {name: w}} merged under the explicit ones.
    """
    from topos_cli.geometry.augment import apply_weights
    from topos_cli.io.mesh import MeshData, save_mesh

    tpl = load_template(template)
    if weights is not None:
        data = _read_json(weights)
        identity = identity if identity is not None else data.get("identity")
        expression = {**data.get("expression", {}), **(expression or {})}
    verts = apply_weights(tpl, identity=identity, expression=expression)
    return save_mesh(out, MeshData.from_template(tpl, verts))


def template_import(mesh: str | Path, out: str | Path, name: str | None = None,
                    regions: str | Path | None = None, landmarks: str | Path | None = None,
                    symmetry: bool = True, force: bool = False) -> dict:
    """Turn a studio's own mesh (MetaHuman, FLAME, in-house OBJ) into a template folder.

    Args:
        mesh: the topology, in its rest pose (OBJ keeps UVs and quads).
        out: template folder to create.
        name: template name (default: the folder name).
        regions: JSON {region: [vertex ids]} (default: one region "all").
        landmarks: JSON list of vertex ids, or {"scheme": ..., "indices": [...]}.
        symmetry: compute a left/right map by mirroring x (kept only if every vertex finds a partner).
        force: overwrite an existing template folder.
    """
    from topos_cli.geometry.template_import import build_template_meta
    from topos_cli.io.fs import write_json, write_text
    from topos_cli.io.mesh import load_mesh, save_mesh

    out = Path(out)
    if (out / "template.json").exists() and not force:
        raise UsageError(f"{out} already holds a template; pass --force to overwrite it")
    src = load_mesh(mesh)
    region_map = _read_json(regions) if regions else None
    landmark_data = _read_json(landmarks) if landmarks else None
    meta = build_template_meta(src.verts, src.faces, name or out.name, region_map, landmark_data, symmetry)
    save_mesh(out / "template.obj", src)
    write_json(out / "template.json", meta)
    write_text(out / "NOTICE", f"Imported from {Path(mesh).name}; the licence of the source mesh applies.\n")
    write_text(out / "README.md", f"# {meta['name']}\n\nImported with `topos template import {Path(mesh).name}`: "
               f"{len(src.verts)} vertices, {len(src.faces)} triangles, regions {sorted(meta['regions'])}.\n")
    return load_template(out).summary()


def _read_json(path: str | Path):
    from topos_cli.io.fs import read_json

    return read_json(path)


# ----------------------------------------------------------------------------------------------- augment
def augment(input: str | Path | None, out: str | Path, template: str | Path | None = None, copies: int = 4,
            seed: int = 0, regions: bool = True, identity_sigma: float = 0.0, identity_modes: int | None = None,
            expressions: int = 0, expression_max: float = 1.0, include_base: bool = False,
            shard: str | None = None, force: bool = False, progress: bool = True) -> BatchResult:
    """Build a dataset of augmented heads in template topology (`topos augment`).

    Args:
        input: None (the template's rest mesh), a mesh file, a folder of meshes, a dataset folder with
            `manifest.jsonl`, or '-' (JSONL records with a "mesh" path on stdin). All in template topology.
        out: dataset folder (manifest.jsonl, meta.json, items/<id>/mesh.ply, failures.jsonl).
        copies: augmented copies per base mesh.
        seed: run seed; each item's generator is derived from (seed, item id), so results do not depend on
            sharding, resume or order.
        regions / identity_sigma / identity_modes / expressions / expression_max: see AugmentConfig.
        include_base: also write each base mesh itself as `<id>-base`.
        shard: "K/N" to process only that shard of the items.
        force: redo items whose mesh exists.

    Raises:
        PartialFailure: some base meshes were unusable (listed in OUT/failures.jsonl); the rest was written.
    """
    from topos_cli.geometry.augment import AugmentConfig, batch_deltas, sample_coefficients
    from topos_cli.io.fs import write_bytes
    from topos_cli.io.manifest import Shard, merge_manifest, run_meta, split_for, write_failures, write_meta
    from topos_cli.io.mesh import MeshData, format_ply
    from topos_cli.utils.log import progress as bar
    from topos_cli.utils.seeding import item_rng, item_seed

    if copies < 0:
        raise UsageError("--copies must be >= 0")
    tpl = load_template(template)
    config = AugmentConfig(regions=regions and bool(tpl.meta.get("augment")), identity_sigma=identity_sigma,
                           identity_modes=identity_modes, expressions=expressions, expression_max=expression_max)
    _check_bases(tpl, config, regions)
    part = Shard.parse(shard)
    out = Path(out)
    bases = _augment_bases(input, tpl)
    result = BatchResult(out=out)
    jobs = [(base, f"{base['id']}-aug{c:03d}", c) for base in bases for c in range(copies)]
    if include_base:
        jobs = [(base, f"{base['id']}-base", -1) for base in bases] + jobs
    jobs = [j for j in jobs if part.owns(j[1])]
    loaded: dict[str, np.ndarray | Exception] = {}
    pending: list[tuple[np.ndarray, dict, Path]] = []  # (base verts, coeffs, path) waiting for one GEMM

    def flush() -> None:
        deltas = batch_deltas(tpl, [c for _, c, _ in pending])
        for (base_verts, _, path), delta in zip(pending, deltas, strict=True):
            verts = (base_verts + delta).astype(np.float32)
            write_bytes(path, format_ply(MeshData(verts=verts, faces=tpl.faces)))
        pending.clear()

    for base, item_id, copy in bar(jobs, description="augment"):
        key = base["id"]
        if key not in loaded:
            loaded[key] = _load_base(base, tpl, result.failures)
        base_verts = loaded[key]
        if isinstance(base_verts, Exception):
            continue
        coeffs = {} if copy < 0 else sample_coefficients(tpl, config, item_rng(seed, item_id), base_verts)
        rel = Path("items") / item_id / "mesh.ply"
        record = {k: v for k, v in base.items() if k not in ("verts", "mesh", "id", "root")}
        record.update({"id": item_id, "parent": key, "mesh": str(out / rel), "template": tpl.name,
                       "template_hash": tpl.hash, "split": base.get("split") or split_for(key),
                       "seed": item_seed(seed, item_id), "coeffs": coeffs})
        if (out / rel).exists() and not force:
            result.skipped += 1
        else:
            pending.append((base_verts, coeffs, out / rel))
            if len(pending) >= 32:
                flush()
        result.records.append(record)
    flush()
    merge_manifest(out, result.records)
    write_meta(out, run_meta("augment", seed=seed, template=tpl, copies=copies, shard=shard,
                             config=config.__dict__, input=None if input is None else str(input)))
    write_failures(out, result.failures)
    if result.failures and not result.records:  # nothing usable: bad input, not a partial batch
        first = result.failures[0]["error"]
        more = f" (and {len(result.failures) - 1} more, see {out / 'failures.jsonl'})" if len(result.failures) > 1 else ""
        raise UsageError(first + more)
    if result.failures:
        raise PartialFailure(f"{len(result.failures)} base mesh(es) failed, {len(result.records)} items written; "
                             f"see {out / 'failures.jsonl'}", result.failures)
    return result


def _load_base(base: dict, tpl: Template, failures: list[dict]) -> np.ndarray | Exception:
    """Base vertices in template topology, or the error (recorded in `failures`) for an unusable mesh."""
    from topos_cli.io.mesh import check_template_topology, load_mesh

    if "verts" in base:
        return base["verts"]
    try:
        mesh = load_mesh(base["mesh"])
        check_template_topology(mesh, tpl, str(base["mesh"]))
        return mesh.verts
    except ToposError as exc:
        failures.append({"id": base["id"], "mesh": str(base.get("mesh")), "error": str(exc)})
        return exc


def _check_bases(tpl: Template, config, regions_requested: bool) -> None:
    if config.identity_sigma > 0 and "identity" not in tpl.bases:
        raise UsageError(f"template '{tpl.name}' has no identity basis; drop --identity-sigma")
    if config.expressions > 0 and "expression" not in tpl.bases:
        raise UsageError(f"template '{tpl.name}' has no expression basis; drop --expressions")
    if not (config.regions or config.identity_sigma > 0 or config.expressions > 0):
        if regions_requested and not tpl.meta.get("augment"):
            raise UsageError(f"template '{tpl.name}' declares no augmentation regions; use --identity-sigma or "
                             "--expressions, or add an 'augment' table to its template.json")


def _augment_bases(input: str | Path | None, tpl: Template) -> list[dict]:
    """Resolve INPUT into base records {"id", "mesh" | "verts", ...} (None: the template's rest mesh)."""
    from topos_cli.io.manifest import resolve_inputs

    if input is None or str(input) in ("", "template"):
        return [{"id": tpl.name, "verts": tpl.verts}]
    return resolve_inputs(input)


# ----------------------------------------------------------------------------------------------- run
def run_recipe(recipe: str | Path, overrides: dict[str, str] | None = None, dry_run: bool = False) -> list[str]:
    """Run a recipe's steps through the CLI in this process (`topos run`); returns the shell lines.

    With `dry_run`, nothing runs and the equivalent `topos ...` lines are returned. Otherwise the resolved
    recipe is saved as `<vars.run>/recipe.resolved.yaml` (when the recipe has a `run` var) and each step runs
    in order; a failing step stops the recipe with its exit code.
    """
    from topos_cli.io.fs import write_text
    from topos_cli.io.recipe import dump_resolved, load_recipe, shell_line, step_argv

    resolved = load_recipe(recipe, overrides)
    steps = [step_argv(cmd, opts) for step in resolved["steps"] for cmd, opts in step.items()]
    lines = [shell_line(argv) for argv in steps]
    if dry_run:
        return lines
    if "run" in resolved["vars"]:
        write_text(Path(resolved["vars"]["run"]) / "recipe.resolved.yaml", dump_resolved(resolved))
    from topos_cli.cli.main import app
    from topos_cli.utils.log import console

    for i, (argv, line) in enumerate(zip(steps, lines, strict=True), 1):
        console.print(f"[bold]step {i}/{len(steps)}[/] {line}", highlight=False)
        try:
            code = app(argv, standalone_mode=False)  # click returns the exit code instead of exiting
        except Exception as exc:
            import click

            if not isinstance(exc, click.ClickException):
                raise
            raise UsageError(f"step {i} ({argv[0]}): {exc.format_message()}") from None
        if code:
            err = ToposError(f"step {i} ({' '.join(argv[:1])}) failed with exit code {code}")
            err.exit_code = int(code)
            raise err
    return lines


# ----------------------------------------------------------------------------------------------- render
def render(input: str | Path | None, out: str | Path, template: str | Path | None = None, backend: str = "gl",
           size: int = 512, passes: tuple[str, ...] | str = ("color",), lighting: str = "studio",
           shading: str = "ggx", texture: str | Path | None = None, normal_map: str | Path | None = None,
           camera: str | Path | None = None,
           views: int = 1, per_mesh: int = 1, random_lighting: bool = False, random_textures: bool = False,
           texture_pool: int = 32, texture_size: int = 512, turntable: bool = False, frames: int = 36,
           fps: float = 24.0, contact_sheet: bool = False, ssaa: int = 1, normal_space: str = "world",
           fov: float = 20.0, seed: int = 0, shard: str | None = None, force: bool = False,
           device: str = "cpu") -> BatchResult:
    """Render meshes (`topos render`). The mode follows OUT:

    * `head.png`: one picture (passes beside it as head_<pass>.png; `views` > 1 gives head_vNN.png);
    * `head.gif` / `head.mp4` (or `turntable`): a turntable of `frames` frames;
    * `contact_sheet` with a .png: geometry, texture and relit views side by side;
    * a folder: a render dataset (manifest.jsonl with camera, lighting and texture of every image;
      `per_mesh` perturbed frontal cameras or an orbit of `views`; resumable; `shard` "K/N").

    Args:
        input: mesh file, folder of meshes, dataset folder, '-' (JSONL on stdin) or None (the template).
        backend: "gl" (EGL rasterizer, fast) or "torch" (differentiable, CPU/CUDA; same pictures).
        passes: names or a comma list from color, albedo, normal, depth, mask, uv, face_id, region, visibility.
        lighting: preset (studio, sky, sunset, overcast, night, front, side, top, rim), an equirectangular
            image, or a JSON light rig.
        shading: "ggx" (microfacet, relightable) or "lambert".
        texture: albedo image for the mesh's UVs (default: the mesh's own texture, else clay).
        normal_map: tangent-space normal map for the mesh's UVs (OpenGL convention: green = +v).
        random_textures: synthesized skin (seeded) for meshes in template topology; in dataset mode each
            image draws from a pool of `texture_pool` textures of `texture_size` pixels.
        camera: JSON file with camera records (see README "Cameras").
        ssaa: odd supersampling factor for color/albedo (1 = off).
        normal_space: "world" or "camera" for the normal pass.
        seed: seeds random cameras, lighting and textures (bit-identical for the same seed).
    """
    from topos_cli.io.manifest import run_meta
    from topos_cli.pipelines import render as job

    if views < 1 or per_mesh < 1 or frames < 1:
        raise UsageError("--views, --per-mesh and --frames must be >= 1")
    opts = job.make_options(size=size, backend=backend, device=_render_device(device, backend), passes=passes,
                            lighting=lighting, shading=shading, ssaa=ssaa, normal_space=normal_space,
                            texture=texture, fov=fov, template=template, random_texture=random_textures, seed=seed,
                            normal_map=normal_map)
    out = Path(out)
    suffix = out.suffix.lower()
    result = BatchResult(out=out)
    if turntable or suffix in (".gif", ".mp4", ".webm"):
        job.check_animation_output(out)
        result.records.append(job.render_turntable(input, out, opts, frames, fps))
    elif contact_sheet:
        if suffix != ".png":
            raise UsageError(f"--contact-sheet writes one picture: give -o with .png, not {out.name}")
        result.records.append(job.render_contact_sheet(input, out, opts))
    elif suffix == ".png":
        result.records.extend(job.render_images(input, out, opts, camera, views))
    elif suffix:
        raise UsageError(f"-o {out}: give a .png, .gif/.mp4 or a folder (dataset mode)")
    else:
        res = job.render_dataset(input, out, opts, views, per_mesh, random_lighting, random_textures,
                                 texture_pool, camera, seed, shard, force, texture_size)
        meta = run_meta("render", seed=seed, template=job.MeshSource(template).try_template(), backend=backend,
                        size=size, passes=list(opts.passes), shading=shading, per_mesh=per_mesh, views=views,
                        random_lighting=random_lighting, random_textures=random_textures, texture_pool=texture_pool,
                        texture_size=texture_size, shard=shard, ssaa=ssaa, normal_space=normal_space,
                        input=None if input is None else str(input))
        job.finish_dataset(out, res, meta)
        result.records, result.skipped, result.failures = res.records, res.skipped, res.failures
        if result.failures:
            raise PartialFailure(f"{len(result.failures)} mesh(es) failed, {len(result.records)} images written; "
                                 f"see {out / 'failures.jsonl'}", result.failures)
    return result


def textures(template: str | Path | None, out: str | Path, count: int = 16, seed: int = 0, size: int = 512,
             makeup: float = 0.5, shard: str | None = None, force: bool = False) -> BatchResult:
    """Synthesize appearance maps in the template's UV space (`topos textures`).

    Writes OUT/items/texNNN_{albedo,roughness,specular}.png (+ texNNN.json with the drawn parameters),
    OUT/manifest.jsonl and OUT/meta.json. Skin tones span 16 melanin levels; makeup, tints, pores and
    roughness/specular perturbations are drawn per texture from (seed, texture id).

    Args:
        template: template name or folder (must have UVs).
        count: number of textures. size: texture size in pixels.
        makeup: probability of each makeup element (blush, lipstick, eyeshadow, eyeliner; tattoos at 1/5).
    """
    from topos_cli.io.manifest import merge_manifest, run_meta, write_meta
    from topos_cli.pipelines import render as job

    if not 0 <= makeup <= 1:
        raise UsageError(f"--makeup is a probability in [0, 1], got {makeup}")
    tpl = load_template(template)
    res = job.synthesize_textures(tpl, Path(out), count, seed, size, makeup, shard, force)
    merge_manifest(out, res.records)
    write_meta(out, run_meta("textures", seed=seed, template=tpl, count=count, size=size, makeup=makeup,
                             shard=shard))
    return BatchResult(out=Path(out), records=res.records, skipped=res.skipped)


def _render_device(device: str, backend: str) -> str:
    if backend not in ("gl", "torch"):
        raise UsageError(f"--backend must be gl or torch, got {backend!r}")
    if backend != "torch":
        return "cpu"
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: no CUDA device here; use --device cpu (or auto)")
    if not (device == "cpu" or device.startswith("cuda")):
        raise UsageError(f"--device must be cpu, cuda, cuda:N or auto, got {device!r}")
    return device

# ----------------------------------------------------------------------------------------------- retopo
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
    from topos_cli.io.manifest import Shard, merge_manifest, run_meta, write_failures, write_meta
    from topos_cli.io.mesh import MESH_SUFFIXES
    from topos_cli.pipelines.retopo import RetopoOptions, RetopoPipeline
    from topos_cli.utils.log import progress as bar

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
    pipe = RetopoPipeline.from_pretrained(checkpoint, template, device=_torch_device(device), use_vae=vae)
    if single:
        rec = _retopo_one(pipe, Path(input), out, options, seed, landmarks, strict)
        return BatchResult(out=out, records=[rec])
    records = [r for r in _augment_bases(input, pipe.template) if str(Path(r["mesh"]).suffix).lower() in MESH_SUFFIXES
               or str(input) == "-"]
    part = Shard.parse(shard)
    result = BatchResult(out=out)
    for rec in bar([r for r in records if part.owns(r["id"])], description="retopo"):
        dest = out / "items" / rec["id"] / f"mesh.{format}"
        if dest.exists() and (dest.parent / "report.json").exists() and not force:
            result.skipped += 1
            result.records.append({**json.loads((dest.parent / "report.json").read_text()), "skipped": True})
            continue
        try:
            result.records.append(_retopo_one(pipe, Path(rec["mesh"]), dest, options, seed, None, strict,
                                              item_id=rec["id"]))
        except ToposError as exc:
            result.failures.append({"id": rec["id"], "mesh": str(rec["mesh"]), "error": str(exc)})
    merge_manifest(out, [{k: v for k, v in r.items() if k != "skipped"} for r in result.records])
    write_meta(out, run_meta("retopo", seed=seed, template=pipe.template, input=str(input), shard=shard,
                             checkpoint=str(checkpoint) if checkpoint else None, options=options.__dict__))
    write_failures(out, result.failures)
    if result.failures:
        raise PartialFailure(f"{len(result.failures)} scan(s) failed, {len(result.records)} fitted; "
                             f"see {out / 'failures.jsonl'}", result.failures)
    return result


def _retopo_one(pipe, scan_path: Path, dest: Path, options, seed: int, landmarks, strict: bool,
                item_id: str | None = None) -> dict:
    """Fit one scan file and write the mesh (+ report.json beside batch items); returns the record."""
    from topos_cli.io.fs import write_json
    from topos_cli.io.mesh import MeshData, load_mesh, save_mesh

    scan = load_mesh(scan_path, allow_points=True)
    if len(scan.verts) < 100:
        raise MeshError(f"{scan_path}: only {len(scan.verts)} points; a scan needs at least 100")
    lms = _read_landmarks(landmarks, pipe.template) if landmarks is not None else None
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


def _read_landmarks(path: str | Path, tpl: Template) -> tuple[np.ndarray, np.ndarray]:
    """Scan landmarks JSON -> (points (L, 3), template vertex ids (L,))."""
    data = _read_json(path)
    if isinstance(data, dict) and ("groups" in data or isinstance(data.get("landmarks"), dict)):  # menpo LJSON
        from topos_cli.io.landmarks import ljson_to_ibug68

        if len(tpl.landmarks) != 68:
            raise UsageError(f"{path}: LJSON gives iBUG-68 points, and template {tpl.name} has "
                             f"{len(tpl.landmarks)} landmarks, not 68")
        pts, ids = ljson_to_ibug68(data, str(path)), tpl.landmarks
    elif isinstance(data, dict) and "landmarks" in data:
        items = data["landmarks"]
        try:
            pts = [it["point"] for it in items]
            ids = [it["vertex"] if "vertex" in it else int(tpl.landmarks[it["index"]]) for it in items]
        except (KeyError, TypeError, IndexError):
            raise UsageError(f"{path}: each landmark needs 'point' and 'vertex' (template vertex id) or 'index' "
                             "(position in the template's landmark list)") from None
    elif isinstance(data, dict) and "points" in data:
        pts = data["points"]
        ids = data.get("vertices", tpl.landmarks[: len(pts)].tolist())
    else:
        raise UsageError(f"{path}: expected {{'points': [[x,y,z],...], 'vertices': [ids]}} or {{'landmarks': [...]}}")
    pts, ids = np.asarray(pts, np.float64), np.asarray(ids, np.int64)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) != len(ids) or not np.isfinite(pts).all():
        raise UsageError(f"{path}: landmark points must be finite [x, y, z] triples, one per vertex id")
    if len(ids) and (ids.min() < 0 or ids.max() >= tpl.num_verts):
        raise UsageError(f"{path}: landmark vertex ids must be in [0, {tpl.num_verts})")
    return pts, ids


def _torch_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# ----------------------------------------------------------------------------------------------- train vae
def train_vae(data: str | Path | None, out: str | Path, config: str = "small", args: dict | None = None,
              template: str | Path | None = None, steps: int = 1000, batch: int = 8, lr: float = 1e-3,
              points: int = 2048, seed: int = 0, resume: bool = False, device: str = "auto",
              ckpt_every: int = 200, log_every: int = 10, time_limit: float = 0.0, workers: int = 0,
              ema_decay: float = 0.999, kl_warmup: int = 1000, init: str | Path | None = None,
              loss_weights: dict | None = None, warmup: int | None = None, on_log=None) -> dict:
    """Train TOPOS-VAE (`topos train vae`); checkpoints in OUT (step-XXXXXXXXX/, latest, log.jsonl).

    Args:
        data: augment dataset folder (manifest.jsonl, meshes in template order) or None / "synthetic" to
            draw heads from the template's identity and expression bases on the fly.
        out: run folder. config: named size (paper, small, tiny); args: overrides of its fields.
        steps/batch/lr/points/seed: optimisation; `points` = scan samples per simulated scan.
        resume: continue from OUT/latest (required when OUT already has checkpoints).
        device: auto, cpu, cuda. ckpt_every/log_every: in steps. time_limit: seconds (0: none).
        ema_decay: decay of the EMA weights that inference loads (lower for short runs).
        kl_warmup: steps over which the KL weight ramps from 0 to its value (against posterior collapse).
        init: checkpoint folder whose (EMA) weights a new run starts from, with a fresh optimizer and its own
            step count (fine-tuning); the architecture is the checkpoint's. Ignored when resuming a run.
        loss_weights: overrides of the paper's loss weights, e.g. {"vertex": 10}; a resumed run keeps those it
            was started with unless given again.
        warmup: learning-rate warm-up steps (default: min(100, steps / 20)).

    Returns:
        The last log record.
    """
    from topos_cli.io.checkpoint import load_model, read_model_json, trained_steps
    from topos_cli.io.manifest import run_meta, write_meta
    from topos_cli.models.registry import build
    from topos_cli.train.data import HeadSource, ScanDataset, ScanSimConfig
    from topos_cli.train.determinism import seed_everything
    from topos_cli.train.loop import TrainConfig, train
    from topos_cli.train.vae import VaeTask

    out = Path(out)
    if (out / "latest").is_file() and not resume:
        raise UsageError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if data is not None and str(data) != "synthetic" and not (Path(data) / "manifest.jsonl").is_file():
        raise UsageError(f"--data {data}: not a dataset folder (no manifest.jsonl); make one with `topos augment`")
    if steps < 1 or batch < 1:
        raise UsageError("--steps and --batch must be >= 1")
    tpl = load_template(template)
    seed_everything(seed)  # before the model is built: its initial weights come from the global torch RNG
    extra = {}
    if resume and (out / "latest").is_file():
        meta = read_model_json(out)
        model = build(meta["name"], meta["args"], tpl)
        config = meta.get("config", config)
        loss_weights = meta.get("loss_weights") if loss_weights is None else loss_weights
        extra = {"init": meta["init"]} if "init" in meta else {}
    elif init is not None:
        if args:
            raise UsageError("--args cannot change the architecture of an --init checkpoint; drop one of them")
        model = load_model(init, tpl).train()
        start = model.checkpoint_meta
        config = start.get("config", config)
        extra = {"init": {"path": str(init), "step": trained_steps(start), "git": start.get("git")}}
    else:
        try:
            model = build("mesh-vae", args, tpl, preset=config)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if "identity" not in tpl.bases and (data is None or str(data) == "synthetic"):
        raise UsageError(f"template '{tpl.name}' has no identity basis to synthesise heads; pass --data DIR")
    from topos_cli.train.vae import loss_weights as _weights

    try:
        _weights(loss_weights)
    except ValueError as exc:
        raise UsageError(f"--loss-weights: {exc}") from None
    if loss_weights:
        extra["loss_weights"] = loss_weights
    dataset = ScanDataset(HeadSource(tpl, data), seed=seed, sim=ScanSimConfig(num_points=points))
    cfg = TrainConfig(steps=steps, batch=batch, lr=lr, seed=seed, ckpt_every=ckpt_every, log_every=log_every,
                      time_limit=time_limit, workers=workers,
                      warmup=min(100, max(1, steps // 20)) if warmup is None else max(0, warmup),
                      ema_decay=ema_decay)
    out.mkdir(parents=True, exist_ok=True)
    write_meta(out, run_meta("train vae", seed=seed, template=tpl, data=str(data), config=config, args=args,
                             init=str(init) if init is not None else None, loss_weights=loss_weights))
    return train(VaeTask(model, tpl, kl_warmup, loss_weights), dataset, cfg, out, device=_torch_device(device),
                 resume=resume, meta={"config": config, "data": str(data) if data else "synthetic", **extra},
                 on_log=on_log)


# ------------------------------------------------------------------------------------------- align, metrics
def align(pred: str | Path, gt: str | Path, out: str | Path, protocol: str = "robust", trim: float | None = None,
          yaws: list[float] | None = None, tilts: list[float] | None = None, scales: list[float] | None = None,
          seed_iters: int | None = None, final_iters: int | None = None, seed: int = 0, workers: int = 1,
          shard: str | None = None, force: bool = False) -> dict:
    """Similarity-align predictions onto ground truths (`topos align`); the ground truth stays fixed.

    Args:
        pred, gt: two mesh files, or two folders paired by file stem.
        out: the moved prediction (a mesh file; its suffix picks the format) or a folder (one file per pair,
            named like the prediction, plus manifest.jsonl with each transform, meta.json, failures.jsonl).
        protocol: "robust" (default) or "topos" (the paper's trimmed ICP verbatim; see README "Alignment").
        trim / yaws / tilts / scales / seed_iters / final_iters: protocol options; None keeps the default.
        seed: surface-sampling seed (robust protocol); each pair derives its own stream from (seed, stem).
        workers: pairs aligned in parallel processes.
        shard: "K/N" to process only that shard of the pairs (folders).
        force: redo pairs whose output exists (folders; a single pair always runs).

    Returns:
        {"out", "records": [{id, mesh, scale, rotation, translation, matrix, residual, ...}], "skipped",
        "failures", "unmatched": {"pred": [...], "gt": [...]}}. Failed pairs are reported, not raised.
    """
    from topos_cli.metrics.pairs import align_options, run_align

    options = align_options(protocol, trim=trim, yaws=yaws, tilts=tilts, scales=scales, seed_iters=seed_iters,
                            final_iters=final_iters)
    if workers < 1:
        raise UsageError("--workers must be >= 1")
    return run_align(pred, gt, out, protocol=protocol, options=options, seed=seed, workers=workers, shard=shard,
                     force=force)


def metrics(pred: str | Path, gt: str | Path, icp: bool = False, protocol: str = "robust", samples: int = 10000,
            threshold: float = 0.01, thresholds: list[float] | None = None, clip: bool = True,
            clip_margin: float = 0.05, seed: int = 0, workers: int = 1, shard: str | None = None,
            template: str | Path | None = None, trim: float | None = None, yaws: list[float] | None = None,
            tilts: list[float] | None = None, scales: list[float] | None = None, seed_iters: int | None = None,
            final_iters: int | None = None) -> dict:
    """Geometry metrics of predictions against ground truths (`topos metrics`), TOPOS appendix D.

    Args:
        pred, gt: two mesh files, or two folders paired by file stem.
        icp: similarity-align each prediction onto its ground truth first (see `align`).
        protocol and trim ... final_iters: alignment options, as in `align`.
        samples: area-weighted samples per surface.
        threshold: F-score threshold relative to the gt's bounding-box diagonal; `thresholds` adds more.
        clip / clip_margin: clip the prediction to the gt's bounding box grown by `clip_margin` (5%).
        seed: sampling seed; each pair derives its own streams from (seed, stem).
        workers: pairs evaluated in parallel processes.
        shard: "K/N" to evaluate only that shard of the pairs.
        template: template whose regions give per-region vertex errors for meshes in its topology.

    Returns:
        {"kind": "geometry", "convention", "pairs": [rows], "summary": {metric: {mean, std, n}}, "count",
        "failures", "unmatched"}. Failed or unmatched pairs are reported here, not raised.
    """
    from topos_cli.metrics.pairs import align_options, run_metrics

    if samples < 1 or threshold <= 0 or clip_margin < 0 or workers < 1:
        raise UsageError("need --samples >= 1, --threshold > 0, --clip-margin >= 0 and --workers >= 1")
    opts = align_options(protocol, trim=trim, yaws=yaws, tilts=tilts, scales=scales, seed_iters=seed_iters,
                         final_iters=final_iters)
    metric_options = {"n": samples, "threshold": threshold, "thresholds": tuple(thresholds or ()), "clip": clip,
                      "clip_margin": clip_margin}
    return run_metrics(pred, gt, icp=icp, protocol=protocol, align_opts=opts, metric_options=metric_options,
                       seed=seed, workers=workers, shard=shard, template=template)


def image_metrics(pred: str | Path, gt: str | Path, mask: str | Path | None = None,
                  weights_dir: str | Path | None = None, select: list[str] | tuple = ("psnr", "ssim"),
                  seed: int = 0) -> dict:
    """Texture and identity metrics of rendered images (`topos metrics --images`): PSNR, SSIM, LPIPS, FID, KID, CSIM.

    Args:
        pred, gt: two image files, or two folders paired by file stem.
        mask: folder of masks paired by stem (white = used) restricting PSNR and SSIM.
        weights_dir: folder with the weights files (README "Image metrics"); also $TOPOS_WEIGHTS.
        select: metrics to compute; a selected metric whose weights file is missing is a MissingWeights error.
        seed: KID subset sampling seed.

    Returns:
        {"kind": "images", "convention", "pairs", "summary", "set": {fid, kid_mean, kid_std}, "failures",
        "unmatched"}.
    """
    from topos_cli.metrics.image import run_image_metrics

    return run_image_metrics(pred, gt, mask=mask, weights_dir=weights_dir, select=select, seed=seed)
