"""`topos manifest merge` as a function: fold a dataset folder's shard files into one manifest."""

from __future__ import annotations

from pathlib import Path


def manifest_merge(folder: str | Path) -> dict:
    """Fold `manifest.shard-K-of-N.jsonl` (and the shard meta/failures files) of a dataset folder into
    `manifest.jsonl`, `meta.json` (its `shards` list keeps each shard's provenance) and `failures.jsonl`.

    Readers merge shard manifests anyway (`io.manifest.read_manifest`); this makes one plain file for other
    tools. Run it after every shard has finished. Returns {"out", "records", "shards", "failures"} (counts).
    """
    from topos_cli.io.manifest import consolidate

    return consolidate(folder)
