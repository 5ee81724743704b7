"""`topos augment` as a function: a dataset of augmented heads in template topology."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from topos_cli.errors import ToposError, UsageError
from topos_cli.io.manifest import BatchResult
from topos_cli.template import Template, load_template


@dataclass
class CopyJob:
    """The payload of one augmented copy: the base head and the coefficients drawn for it."""

    base_verts: np.ndarray
    coeffs: dict


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
            sharding, resume or order (the files are byte-identical).
        regions / identity_sigma / identity_modes / expressions / expression_max: see AugmentConfig.
        include_base: also write each base mesh itself as `<id>-base`.
        shard: "K/N" to process only that shard of the items.
        force: redo items whose mesh exists.

    Raises:
        UsageError: nothing to sample, or every base mesh unusable (a single bad input leaves no folder).
        PartialFailure: some base meshes were unusable (listed in OUT/failures.jsonl); the rest was written.
    """
    from topos_cli.geometry.augment import AugmentConfig
    from topos_cli.io.batch import raise_failures, run_batch
    from topos_cli.io.manifest import Shard, run_meta

    if copies < 0:
        raise UsageError("--copies must be >= 0")
    tpl = load_template(template)
    config = AugmentConfig(regions=regions and bool(tpl.meta.get("augment")), identity_sigma=identity_sigma,
                           identity_modes=identity_modes, expressions=expressions, expression_max=expression_max)
    check_config(tpl, config, regions, copies)
    out = Path(out)
    part = Shard.parse(shard)
    bases = base_records(input, tpl)
    failures: list[dict] = []
    copy_numbers = ([-1] if include_base else []) + list(range(copies))
    loaded = {base["id"]: _load_base(base, tpl, failures) for base in bases
              if any(part.owns(copy_id(base["id"], c)) for c in copy_numbers)}
    kept = [base for base in bases if loaded.get(base["id"]) is not None]
    order = [(base, -1) for base in kept] if include_base else []  # bases first, then the copies of each
    order += [(base, c) for base in kept for c in range(copies)]
    items = [_copy_item(base, c, loaded[base["id"]], tpl, config, seed, out) for base, c in order
             if part.owns(copy_id(base["id"], c))]
    meta = run_meta("augment", seed=seed, template=tpl, copies=copies, config=config.__dict__,
                    input=None if input is None else str(input))
    result = run_batch(items, partial(_write_copy, tpl), out, shard=shard, force=force, meta=meta,
                       description="augment", failures=failures)
    raise_failures(result, "base mesh(es)", all_failed_is_usage=True)
    return result


def copy_id(base_id: str, copy: int) -> str:
    """`<base>-augNNN` for copy NNN, `<base>-base` for the base itself (copy -1)."""
    return f"{base_id}-base" if copy < 0 else f"{base_id}-aug{copy:03d}"


def _copy_item(base: dict, copy: int, base_verts: np.ndarray, tpl: Template, config, seed: int, out: Path):
    """The BatchItem of one copy; its coefficients are drawn from (seed, item id) whether it runs or not."""
    from topos_cli.geometry.augment import sample_coefficients
    from topos_cli.io.batch import BatchItem
    from topos_cli.io.manifest import split_for
    from topos_cli.utils.seeding import item_rng, item_seed

    item_id = copy_id(base["id"], copy)
    coeffs = {} if copy < 0 else sample_coefficients(tpl, config, item_rng(seed, item_id), base_verts)
    path = out / "items" / item_id / "mesh.ply"
    record = {k: v for k, v in base.items() if k not in ("verts", "mesh", "id", "root")}
    record.update({"id": item_id, "parent": base["id"], "mesh": str(path), "template": tpl.name,
                   "template_hash": tpl.hash, "split": base.get("split") or split_for(base["id"]),
                   "seed": item_seed(seed, item_id), "coeffs": coeffs})
    return BatchItem(id=item_id, outputs=(path,), record=record, payload=CopyJob(base_verts, coeffs))


def _write_copy(tpl: Template, item) -> dict:
    """Write one copy's mesh: base + the coefficients' offset, summed per item (byte-identical across shards)."""
    from topos_cli.geometry.augment import batch_deltas
    from topos_cli.io.fs import write_bytes
    from topos_cli.io.mesh import MeshData, format_ply

    job: CopyJob = item.payload
    verts = (job.base_verts + batch_deltas(tpl, [job.coeffs])[0]).astype(np.float32)
    write_bytes(item.outputs[0], format_ply(MeshData(verts=verts, faces=tpl.faces)))
    return item.record


def _load_base(base: dict, tpl: Template, failures: list[dict]) -> np.ndarray | None:
    """Base vertices in template topology, or None (the error recorded in `failures`) for an unusable mesh."""
    from topos_cli.io.mesh import check_template_topology, load_mesh

    if "verts" in base:
        return base["verts"]
    try:
        mesh = load_mesh(base["mesh"])
        check_template_topology(mesh, tpl, str(base["mesh"]))
        return mesh.verts
    except ToposError as exc:
        failures.append({"id": base["id"], "mesh": str(base.get("mesh")), "error": str(exc)})
        return None


def check_config(tpl: Template, config, regions_requested: bool, copies: int) -> None:
    """UsageError for a configuration that cannot sample anything, naming only flags this template supports."""
    if config.identity_sigma > 0 and "identity" not in tpl.bases:
        raise UsageError(f"template '{tpl.name}' has no identity basis; drop --identity-sigma")
    if config.expressions > 0 and "expression" not in tpl.bases:
        raise UsageError(f"template '{tpl.name}' has no expression basis; drop --expressions")
    modes = len(tpl.bases["identity"]) if "identity" in tpl.bases else 0
    if config.identity_modes is not None and modes == 0:
        raise UsageError(f"template '{tpl.name}' has no identity basis; drop --identity-modes")
    if config.identity_modes is not None and not 1 <= config.identity_modes <= modes:
        raise UsageError(f"--identity-modes {config.identity_modes} is out of range (allowed: >= 1 and <= {modes}, "
                         f"the identity modes of template '{tpl.name}')")
    if config.regions or config.identity_sigma > 0 or config.expressions > 0 or copies == 0:
        return
    if not regions_requested:
        raise UsageError("--no-regions without --identity-sigma or --expressions samples nothing: every copy "
                         "would equal its base; enable one of them (or --copies 0 --include-base to copy bases)")
    flags = [f for f, basis in (("--identity-sigma", "identity"), ("--expressions", "expression"))
             if basis in tpl.bases]
    hint = f"use {' or '.join(flags)}" if flags else "it has no identity or expression basis either"
    raise UsageError(f"template '{tpl.name}' declares no augmentation regions; {hint}, or add an 'augment' "
                     "table to its template.json")


def base_records(input: str | Path | None, tpl: Template) -> list[dict]:
    """Resolve INPUT into base records {"id", "mesh" | "verts", ...} (None: the template's rest mesh)."""
    from topos_cli.io.manifest import resolve_inputs

    if input is None or str(input) in ("", "template"):
        return [{"id": tpl.name, "verts": tpl.verts}]
    return resolve_inputs(input)
