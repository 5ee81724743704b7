"""Shared CLI options and the one place that maps errors to exit codes (typer only, no math)."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated

import typer

from topos_cli.errors import PartialFailure, ToposError

EXIT_CODES = ("Exit codes: 0 all items succeeded; 1 internal error (a bug); 2 usage error, bad input or "
              "template mismatch; 3 partial failure (see OUT/failures.jsonl); 130 interrupted.")

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout (JSON lines).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed: the same seed gives bit-identical outputs.")]
ShardOpt = Annotated[str | None, typer.Option(
    "--shard", metavar="K/N", help="Process only shard K of N (K from 0), e.g. $SLURM_ARRAY_TASK_ID/8.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Redo items whose outputs already exist.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA when present), cpu, cuda or cuda:N.")]
TemplateOpt = Annotated[str | None, typer.Option(
    "--template", "-t", help="Template name or folder (default: the bundled topos-head).")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output file or folder.")]


def epilog(example: str) -> str:
    """Help epilog: an example (shown verbatim) followed by the exit codes."""
    lines = "\n\n".join(f"  $ {line.strip()}" for line in example.splitlines() if line.strip())
    return f"Example:\n\n{lines}\n\n{EXIT_CODES}"


def handle_errors(fn):
    """Run a command body: user errors become one line on stderr and exit 2/3, Ctrl-C exits 130."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from topos_cli.utils.log import console

        try:
            return fn(*args, **kwargs)
        except PartialFailure as exc:
            console.print(f"[yellow]partial failure:[/] {exc}", highlight=False)
            raise typer.Exit(exc.exit_code) from None
        except ToposError as exc:
            console.print(f"[red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            console.print("[red]interrupted[/]")
            raise typer.Exit(130) from None
        except BrokenPipeError:  # `topos ... | head`: the reader left; not an error of ours
            sys.stderr.close()
            raise typer.Exit(0) from None

    return wrapper
