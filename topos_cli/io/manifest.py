"""Dataset folders and JSONL manifests (STYLE.md §3.4).

A dataset folder holds `manifest.jsonl` (one record per item, paths relative to the folder), `meta.json`
(provenance), `items/<id>/...` and, only when items failed, `failures.jsonl`. `-` means JSONL on
stdin/stdout so commands chain in a pipe. Sharding and splits hash the stable item id, never a row number.

Shards never write a shared file: run `--shard K/N` writes `manifest.shard-K-of-N.jsonl`,
`meta.shard-K-of-N.json` and `failures.shard-K-of-N.jsonl` (each atomically, temp file + rename), so any
number of shard processes can fill one folder at once, also on NFS where `flock` may not hold. Readers
(`read_manifest`) merge `manifest.jsonl` and every shard manifest by id; `consolidate` (`topos manifest merge
DIR`, and every unsharded run) folds the shard files into `manifest.jsonl` and `meta.json` (whose `shards` list
keeps each shard's provenance) and removes them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from topos_cli.errors import UsageError
from topos_cli.io.fs import write_json, write_text

MANIFEST = "manifest.jsonl"
META = "meta.json"
FAILURES = "failures.jsonl"
_SHARD_FILE = re.compile(r"^(manifest|meta|failures)\.shard-(\d+)-of-(\d+)\.(jsonl|json)$")


@dataclass
class BatchResult:
    """Outcome of a batch command: records written, items skipped as already done, failures."""

    out: Path
    records: list[dict] = field(default_factory=list)
    skipped: int = 0
    failures: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (0-based): items whose id hashes to `index` modulo `count`."""

    index: int = 0
    count: int = 1

    @staticmethod
    def parse(text: str | None) -> Shard:
        if not text:
            return Shard()
        try:
            k, n = (int(p) for p in text.split("/"))
        except ValueError:
            raise UsageError(f"--shard '{text}' must look like K/N, e.g. 0/4 (K counts from 0)") from None
        if n < 1 or not 0 <= k < n:
            raise UsageError(f"--shard '{text}': need N >= 1 and 0 <= K < N")
        return Shard(k, n)

    def owns(self, item_id: str) -> bool:
        return self.count == 1 or stable_hash(item_id) % self.count == self.index

    @property
    def sharded(self) -> bool:
        return self.count > 1

    def file_name(self, name: str) -> str:
        """`manifest.jsonl` -> `manifest.shard-K-of-N.jsonl` (unchanged for an unsharded run)."""
        if not self.sharded:
            return name
        stem, dot, suffix = name.partition(".")
        return f"{stem}.shard-{self.index}-of-{self.count}{dot}{suffix}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "little")


def split_for(item_id: str, val: float = 0.05, test: float = 0.05) -> str:
    """Deterministic train/val/test split from the id (assigned once, copied forward afterwards)."""
    u = (stable_hash("split:" + item_id) % 10_000) / 10_000
    return "test" if u < test else "val" if u < test + val else "train"


def read_jsonl(path: str | Path) -> list[dict]:
    """Records of a JSONL file, or of stdin for '-'. Errors name the line."""
    if str(path) == "-":
        lines = sys.stdin.read().splitlines()
        where = "stdin"
    else:
        p = Path(path)
        if not p.is_file():
            raise UsageError(f"{p}: no such manifest file")
        lines = p.read_text().splitlines()
        where = str(p)
    records = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{where} line {i} is not JSON ({exc.msg})") from None
        if not isinstance(rec, dict):
            raise UsageError(f"{where} line {i} is not a JSON object")
        records.append(rec)
    return records


def is_dataset(folder: str | Path) -> bool:
    """True for a folder holding `manifest.jsonl` or any shard manifest."""
    folder = Path(folder)
    return folder.is_dir() and ((folder / MANIFEST).is_file() or bool(shard_files(folder, "manifest")))


def shard_files(folder: str | Path, kind: str) -> list[Path]:
    """The folder's `<kind>.shard-K-of-N.*` files ('manifest', 'meta' or 'failures'), in (N, K) order."""
    found = []
    for path in Path(folder).glob(f"{kind}.shard-*"):
        m = _SHARD_FILE.match(path.name)
        if m and m.group(1) == kind:
            found.append((int(m.group(3)), int(m.group(2)), path))
    return [p for *_, p in sorted(found)]


def read_manifest(folder: str | Path) -> list[dict]:
    """Records of a dataset folder (`manifest.jsonl` merged by id with every shard manifest), sorted by id,
    their paths made absolute."""
    folder = Path(folder)
    files = ([folder / MANIFEST] if (folder / MANIFEST).is_file() else []) + shard_files(folder, "manifest")
    if not files:
        raise UsageError(f"{folder / MANIFEST}: no such manifest file")
    by_id: dict = {}
    for path in files:
        for i, rec in enumerate(read_jsonl(path)):
            by_id[rec.get("id", f"{path.name}:{i}")] = rec
    return [absolutize(by_id[k], folder) for k in sorted(by_id, key=str)]


PATH_KEYS = ("mesh", "albedo", "image", "points", "roughness", "specular", "normal_map", "scan", "pred", "gt")
# dict fields holding paths: every value of `passes`, the map paths of `texture`
NESTED_PATH_KEYS = {"passes": None, "texture": ("albedo", "roughness", "specular", "normal", "normal_map")}


def _map_paths(record: dict, fn) -> dict:
    """A copy of `record` with `fn` applied to every path string it holds (top level and nested)."""
    out = dict(record)
    for key in PATH_KEYS:
        if isinstance(out.get(key), str):
            out[key] = fn(out[key])
    for key, names in NESTED_PATH_KEYS.items():
        if isinstance(out.get(key), dict):
            out[key] = {k: fn(v) if isinstance(v, str) and (names is None or k in names) else v
                        for k, v in out[key].items()}
    return out


def absolutize(record: dict, folder: Path) -> dict:
    """The record with its paths, stored relative to `folder`, made absolute."""
    root = Path(folder)
    return _map_paths(record, lambda v: v if Path(v).is_absolute() else str((root / v).resolve()))


def relativize(record: dict, folder: Path) -> dict:
    """The record with its paths (absolute, or relative to the working directory) made relative to `folder`
    (`../aug/items/...` for a parent dataset), so a dataset moves to another machine together with the
    folders it references."""
    root = Path(folder).resolve()
    return _map_paths(record, lambda v: os.path.relpath(Path(v).resolve(), root))


def write_manifest(folder: str | Path, records: Iterable[dict], name: str = MANIFEST) -> Path:
    """Write records (relative paths) atomically, sorted by id so shards merge to identical files."""
    folder = Path(folder)
    recs = sorted((relativize(r, folder) for r in records), key=lambda r: str(r.get("id", "")))
    path = folder / name
    write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in recs))
    return path


def merge_manifest(folder: str | Path, new_records: Iterable[dict], shard: Shard | None = None) -> Path:
    """Add/replace records by id in this run's manifest file (so shards and resumed runs accumulate).

    A shard rewrites only its own `manifest.shard-K-of-N.jsonl`; an unsharded run folds every shard file into
    `manifest.jsonl` (see `consolidate`)."""
    folder = Path(folder)
    shard = shard or Shard()
    name = shard.file_name(MANIFEST)
    existing = {}
    if not shard.sharded and is_dataset(folder):
        existing = {r["id"]: r for r in read_manifest(folder) if "id" in r}
    elif (folder / name).is_file():
        existing = {r["id"]: absolutize(r, folder) for r in read_jsonl(folder / name) if "id" in r}
    for rec in new_records:
        existing[rec["id"]] = rec
    path = write_manifest(folder, existing.values(), name)
    if not shard.sharded:
        for old in shard_files(folder, "manifest"):
            old.unlink(missing_ok=True)
    return path


def write_failures(folder: str | Path, failures: list[dict], shard: Shard | None = None) -> Path | None:
    """This run's failures (one JSON line each), or no file when none failed."""
    shard = shard or Shard()
    path = Path(folder) / shard.file_name(FAILURES)
    if not shard.sharded:
        for old in shard_files(folder, "failures"):
            old.unlink(missing_ok=True)
    if not failures:
        if path.exists():
            path.unlink()
        return None
    write_text(path, "".join(json.dumps(f, sort_keys=True) + "\n" for f in failures))
    return path


def run_meta(command: str, seed: int | None = None, template=None, **extra) -> dict:
    """Provenance for meta.json: command, argv, version, git SHA, seed, template name and hash."""
    from topos_cli import __version__

    meta = {"command": command, "argv": sys.argv, "topos_version": __version__, "git": git_sha(), "seed": seed}
    if template is not None:
        meta["template"] = template.name
        meta["template_hash"] = template.hash
    meta.update(extra)
    return meta


def write_meta(folder: str | Path, meta: dict, shard: Shard | None = None) -> Path:
    """This run's provenance: `meta.json`, or `meta.shard-K-of-N.json` for a shard."""
    shard = shard or Shard()
    path = Path(folder) / shard.file_name(META)
    write_json(path, meta)
    if not shard.sharded:
        for old in shard_files(folder, "meta"):
            old.unlink(missing_ok=True)
    return path


def read_meta(folder: str | Path) -> dict:
    """`meta.json` with the provenance of shards not yet consolidated appended to its `shards` list."""
    from topos_cli.io.fs import read_json

    folder = Path(folder)
    meta = read_json(folder / META, "meta.json") if (folder / META).is_file() else {}
    pending = [read_json(p, "shard meta") for p in shard_files(folder, "meta")]
    if pending:
        meta = {**{k: v for k, v in pending[-1].items() if k not in ("shard", "argv")}, **meta}
        meta["shards"] = list(meta.get("shards", [])) + [_shard_entry(m) for m in pending]
    return meta


def _shard_entry(meta: dict) -> dict:
    return {"shard": meta.get("shard"), "argv": meta.get("argv"), "git": meta.get("git")}


def consolidate(folder: str | Path) -> dict:
    """Fold a folder's shard files into `manifest.jsonl`, `meta.json` (with a `shards` list) and
    `failures.jsonl`, then remove them (`topos manifest merge DIR`). Run it when no shard is running.

    Returns:
        {"out", "records": count, "shards": count merged, "failures": count}.
    """
    folder = Path(folder)
    if not is_dataset(folder):
        raise UsageError(f"{folder}: not a dataset folder (no manifest.jsonl or manifest.shard-*.jsonl)")
    metas = shard_files(folder, "meta")
    records = read_manifest(folder)
    failures = [f for p in shard_files(folder, "failures") for f in read_jsonl(p)]
    if (folder / FAILURES).is_file():
        failures = read_jsonl(folder / FAILURES) + failures
    meta = read_meta(folder)
    write_manifest(folder, records)
    if metas:
        write_json(folder / META, meta)
    if failures:
        write_text(folder / FAILURES, "".join(json.dumps(f, sort_keys=True) + "\n" for f in failures))
    for path in shard_files(folder, "manifest") + metas + shard_files(folder, "failures"):
        path.unlink(missing_ok=True)
    return {"out": str(folder.resolve()), "records": len(records), "shards": len(metas), "failures": len(failures)}


def git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def resolve_inputs(input: str | Path) -> list[dict]:
    """A command's INPUT as records {"id", "mesh", ...}: a mesh file, a folder of meshes, a dataset folder
    (its manifest, paths made absolute) or '-' (JSON lines on stdin). Ids default to the file stem."""
    from topos_cli.io.mesh import MESH_SUFFIXES, list_meshes

    if str(input) == "-":
        records = read_jsonl("-")
        if not records:
            raise UsageError("nothing was read from stdin: expected JSON lines with a 'mesh' path "
                             "(e.g. from `topos augment ... --json`)")
    else:
        path = Path(input)
        if not path.exists():
            raise UsageError(f"{path}: no such file or folder")
        if is_dataset(path):
            records = read_manifest(path)
        elif path.is_dir():
            records = [{"id": p.stem, "mesh": str(p)} for p in list_meshes(path)]
            if not records:
                raise UsageError(f"{path} holds no mesh files ({', '.join(MESH_SUFFIXES)}) and no manifest.jsonl")
        elif path.suffix.lower() in MESH_SUFFIXES:
            records = [{"id": path.stem, "mesh": str(path)}]
        else:
            raise UsageError(f"{path}: expected a mesh file ({', '.join(MESH_SUFFIXES)}), a folder or a dataset")
    for i, rec in enumerate(records):
        if "mesh" not in rec:
            raise UsageError(f"input record {i + 1} has no 'mesh' field")
        rec.setdefault("id", Path(rec["mesh"]).stem)
    return records
