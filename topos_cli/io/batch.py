"""The batch engine every dataset-writing command runs on (augment, render, textures, retopo, align, ...).

    items = [BatchItem(id="s0012-aug03", outputs=(out / "items/s0012-aug03/mesh.ply",), record={...})]
    result = run_batch(items, work, out, shard="1/4", meta=run_meta("augment", seed=0))
    result.raise_failures("item(s)")

`run_batch` does, once for all commands:

1. **shard selection**: keeps the items whose id hashes to shard K of N (`Shard.owns`);
2. **skip-if-done**: an item whose `outputs` all exist is not redone (unless `force`): its record is
   `done(item)` (default: `item.record`). Outputs are written temp-file + rename, so existing means complete;
3. **work**: `work(item)` writes the item's files and returns its record(s) (`dict` or `Outcome`); a
   `ToposError` it raises becomes a failure record `{"id", **item.failure, "error"}`, anything else is a bug
   and propagates. `workers > 1` maps the work over processes (the work function must be picklable);
4. **bookkeeping**: sweeps temp files left by killed runs, then writes the manifest, `meta.json` and
   `failures.jsonl` the shard-safe way of `io/manifest.py` (a shard writes only its own files).

Everything stochastic must be drawn from (seed, item id) inside `work`, so results do not depend on shards,
resume or order (utils/seeding.py).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from topos_cli.errors import DiskFull, PartialFailure, ToposError, UsageError
from topos_cli.io.manifest import BatchResult, Shard, merge_manifest, write_failures, write_meta

STALE_TMP_AGE_S = 3600.0  # a temp file of another host (or an old-style name) is stale after an hour


@dataclass
class BatchItem:
    """One unit of work.

    Attributes:
        id: stable item id (shards and seeds hash it).
        outputs: files whose existence means the item is done; empty: always call `work` (it skips itself).
        record: the item's manifest record when it is skipped (and what `work` may build on).
        payload: whatever `work` needs (a base record, a scan path, ...).
        failure: fields added to the failure record when `work` fails (e.g. the input path).
    """

    id: str
    outputs: tuple[Path, ...] = ()
    record: dict = field(default_factory=dict)
    payload: object = None
    failure: dict = field(default_factory=dict)


@dataclass
class Outcome:
    """What `work` returns when one item gives several records or skipped some of them itself."""

    records: list[dict]
    skipped: int = 0


def run_batch(items: Iterable[BatchItem], work: Callable[[BatchItem], dict | Outcome], out: Path | None, *,
              shard: str | None = None, force: bool = False, meta: dict | None = None, description: str = "batch",
              workers: int = 1, done: Callable[[BatchItem], dict] | None = None,
              failures: list[dict] | None = None, write: bool = True) -> BatchResult:
    """Run `work` over the items of this shard that are not done; write the folder's bookkeeping.

    Args:
        items: all items of the run (every shard enumerates the same list).
        work: writes one item's outputs and returns its record (paths absolute) or an `Outcome`.
        out: dataset folder (manifest, meta, failures), or None for a batch that writes no folder.
        shard: "K/N" or None. force: redo items whose outputs exist.
        meta: provenance for meta.json (`run_meta(...)`); the shard is added.
        workers: processes (1: in this process).
        done: record of a skipped item (default `item.record`).
        failures: failures found before the batch (e.g. unreadable inputs), reported with the others.
        write: write manifest/meta/failures (False: only return them).

    Returns:
        BatchResult with the records of this shard's items (done or skipped), the skip count and failures.
    """
    part = Shard.parse(shard)
    result = BatchResult(out=Path(out) if out is not None else Path("."), failures=list(failures or []))
    if out is not None:
        sweep_stale_temps(Path(out))
    todo = []
    for item in (it for it in items if part.owns(it.id)):
        if item.outputs and not force and all(Path(p).exists() for p in item.outputs):
            result.records.append(done(item) if done else item.record)
            result.skipped += 1
        else:
            todo.append(item)
    disk_full = None
    for item, outcome in map_items(work, todo, workers, description):
        if isinstance(outcome, DiskFull):  # every later item would fail alike: stop, keep what finished
            disk_full = outcome
            break
        if isinstance(outcome, ToposError):
            result.failures.append({"id": item.id, **item.failure, "error": str(outcome)})
            continue
        outcome = outcome if isinstance(outcome, Outcome) else Outcome([outcome])
        result.records.extend(outcome.records)
        result.skipped += outcome.skipped
    if out is not None and write:
        finish(result, part, {**(meta or {}), "shard": shard})
    if disk_full is not None:
        raise DiskFull(f"{disk_full} ({len(result.records)} item(s) of this run are done)")
    return result


def finish(result: BatchResult, part: Shard, meta: dict) -> None:
    """Write this run's manifest (merged by id), meta and failures. A run that produced no record but
    failures writes only failures.jsonl, and nothing for a single failure (a bad single input leaves no
    folder behind: its error says it all)."""
    out = result.out
    if not result.records and result.failures:
        if len(result.failures) > 1:
            write_failures(out, result.failures, part)
        elif out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        return
    merge_manifest(out, result.records, part)
    write_meta(out, meta, part)
    write_failures(out, result.failures, part)


def raise_failures(result: BatchResult, what: str, written: str = "items written",
                   all_failed_is_usage: bool = False) -> None:
    """PartialFailure (exit 3) when items failed; with `all_failed_is_usage`, a UsageError (exit 2) naming the
    first failure when nothing was produced (bad input, not a partial batch)."""
    if not result.failures:
        return
    where = result.out / "failures.jsonl"
    if all_failed_is_usage and not result.records:
        more = f" (and {len(result.failures) - 1} more, see {where})" if len(result.failures) > 1 else ""
        raise UsageError(result.failures[0]["error"] + more)
    raise PartialFailure(f"{len(result.failures)} {what} failed, {len(result.records)} {written}; see {where}",
                         result.failures)


# ----------------------------------------------------------------------------- parallel map
def map_items(fn: Callable, items: Iterable, workers: int, description: str) -> Iterator[tuple]:
    """Yield `(item, fn(item) or its ToposError)` in item order, optionally over worker processes.

    User-caused errors (ToposError) are returned in place of the result so that one bad item does not stop a
    batch; anything else is a bug and propagates.
    """
    from topos_cli.utils.log import progress

    items = list(items)
    if workers <= 1 or len(items) <= 1:
        for item in progress(items, description=description):
            yield item, _guarded(fn, item)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init) as pool:
        futures = [pool.submit(_guarded, fn, item) for item in items]
        for item, fut in zip(items, progress(futures, description=description), strict=True):
            yield item, fut.result()


def _guarded(fn, item):
    try:
        return fn(item)
    except ToposError as exc:
        return exc


def _worker_init() -> None:
    """One BLAS/OpenMP thread per worker process: the workers are the parallelism."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:
        pass


# ----------------------------------------------------------------------------- stale temp files
def sweep_stale_temps(out: Path) -> int:
    """Remove temp files (`.name.<host>-<pid>.xxxx.tmp.ext`, io/fs.py) under `out` left by killed runs:
    those of this host whose process is gone, and any older than STALE_TMP_AGE_S. Returns the count."""
    import time

    if not out.is_dir():
        return 0
    host, removed, now = socket.gethostname().replace(".", "_"), 0, time.time()
    for path in out.rglob(".*.tmp*"):
        owner = path.name.split(".")[2] if path.name.count(".") >= 4 else ""
        name_host, _, pid = owner.rpartition("-")
        try:
            mine_and_dead = name_host == host and pid.isdigit() and not _alive(int(pid))
            if mine_and_dead or now - path.stat().st_mtime > STALE_TMP_AGE_S:
                path.unlink()
                removed += 1
        except FileNotFoundError:  # its writer renamed it meanwhile
            continue
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
