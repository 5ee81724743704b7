"""Dataset folders and JSONL manifests (STYLE.md §3.4).

A dataset folder holds `manifest.jsonl` (one record per item, paths relative to the folder), `meta.json`
(provenance), `items/<id>/...` and, only when items failed, `failures.jsonl`. `-` means JSONL on
stdin/stdout so commands chain in a pipe. Sharding and splits hash the stable item id, never a row number.
"""

from __future__ import annotations

import hashlib
import json
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


def read_manifest(folder: str | Path) -> list[dict]:
    """Records of `folder/manifest.jsonl` with their paths made absolute (key `root` = the folder)."""
    folder = Path(folder)
    records = read_jsonl(folder / MANIFEST)
    return [absolutize(rec, folder) for rec in records]


PATH_KEYS = ("mesh", "albedo", "image", "points", "roughness", "specular", "normal_map")


def absolutize(record: dict, folder: Path) -> dict:
    out = dict(record)
    for key in PATH_KEYS:
        if isinstance(out.get(key), str) and not Path(out[key]).is_absolute():
            out[key] = str((folder / out[key]).resolve())
    return out


def relativize(record: dict, folder: Path) -> dict:
    out = dict(record)
    for key in PATH_KEYS:
        if isinstance(out.get(key), str):
            try:
                out[key] = str(Path(out[key]).resolve().relative_to(folder.resolve()))
            except ValueError:
                pass
    return out


def write_manifest(folder: str | Path, records: Iterable[dict], name: str = MANIFEST) -> Path:
    """Write records (relative paths) atomically, sorted by id so shards merge to identical files."""
    folder = Path(folder)
    recs = sorted((relativize(r, folder) for r in records), key=lambda r: str(r.get("id", "")))
    path = folder / name
    write_text(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in recs))
    return path


def merge_manifest(folder: str | Path, new_records: Iterable[dict], name: str = MANIFEST) -> Path:
    """Add/replace records by id in an existing manifest (so shards and resumed runs accumulate)."""
    folder = Path(folder)
    existing = {}
    if (folder / name).is_file():
        existing = {r["id"]: r for r in read_manifest(folder) if "id" in r} if name == MANIFEST else {}
    for rec in new_records:
        existing[rec["id"]] = rec
    return write_manifest(folder, existing.values(), name)


def write_failures(folder: str | Path, failures: list[dict]) -> Path | None:
    path = Path(folder) / FAILURES
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


def write_meta(folder: str | Path, meta: dict) -> Path:
    path = Path(folder) / META
    write_json(path, meta)
    return path


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
    else:
        path = Path(input)
        if not path.exists():
            raise UsageError(f"{path}: no such file or folder")
        if path.is_dir() and (path / MANIFEST).is_file():
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
