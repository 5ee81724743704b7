"""`topos manifest merge DIR`: fold the shard files of a dataset folder into one manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from topos_cli.cli.common import JsonOpt, epilog, handle_errors

app = typer.Typer(no_args_is_help=True, help="Dataset folders: merge the files of sharded runs.")


@app.command("merge", no_args_is_help=True,
             epilog=epilog("parallel topos augment -o data/aug --copies 1000 --shard {}/4 ::: 0 1 2 3 "
                           "&& topos manifest merge data/aug"))
@handle_errors
def merge(
    folder: Annotated[Path, typer.Argument(help="Dataset folder written by --shard K/N runs.")],
    json: JsonOpt = False,
) -> None:
    """Fold manifest.shard-K-of-N.jsonl files into manifest.jsonl and meta.json (run after every shard ended).

    Readers merge shard manifests anyway; this makes one plain manifest.jsonl for other tools."""
    from topos_cli import api
    from topos_cli.utils.log import console, emit_json, emit_line

    summary = api.manifest_merge(folder)
    emit_json(summary) if json else emit_line(summary["out"])
    console.print(f"manifest merge: {summary['records']} records, {summary['shards']} shard(s) merged, "
                  f"{summary['failures']} failure(s) -> {folder}")
