"""Shared CLI options, the one option validator and the one place that maps errors to exit codes (typer only).

Validating options (for every command, including new ones): declare the allowed values next to the option
and decorate the command with `handle_errors`; the values are checked before the command body runs, so a bad
value exits 2 with one line naming the option, the value and the allowed range, and nothing is written:

    points: Annotated[int, typer.Option(help="Points per scan."), Range(min=64, max=MAX_POINTS)] = 2048
    lr: Annotated[float, typer.Option(help="Peak learning rate."), Range(min=0, min_open=True, max=1)] = 1e-3
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder."), Output("folder")] = ...

`Range` rejects NaN and +-inf for floats and skips None (an option left at its `None` default). `Output`
checks up front that the path can be written: its nearest existing folder takes a new file, an existing
file is not used as a folder (and a "folder" output is not an existing file). The help text shows the range.
Bounds that depend on data (e.g. the template's number of identity modes) are checked where the data is
loaded. `check_options(fn, values)` runs the same checks on a dict, e.g. for recipe steps.
"""

from __future__ import annotations

import errno
import functools
import inspect
import math
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from topos_cli.errors import PartialFailure, ToposError, UsageError

EXIT_CODES = ("Exit codes: 0 all items succeeded; 1 internal error (a bug); 2 usage error, bad input or "
              "template mismatch; 3 partial failure (see OUT/failures.jsonl); 130 interrupted.")



@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric option (see the module docstring); open bounds exclude the bound."""

    min: float | None = None
    max: float | None = None
    min_open: bool = False
    max_open: bool = False

    def allows(self, value) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        low_ok = self.min is None or (value > self.min if self.min_open else value >= self.min)
        high_ok = self.max is None or (value < self.max if self.max_open else value <= self.max)
        return low_ok and high_ok

    def describe(self) -> str:
        low = None if self.min is None else f"{'>' if self.min_open else '>='} {_number(self.min)}"
        high = None if self.max is None else f"{'<' if self.max_open else '<='} {_number(self.max)}"
        return " and ".join(part for part in (low, high) if part) or "any finite number"


@dataclass(frozen=True)
class Output:
    """An output path checked for writability before the command runs: kind "file", "folder" or "any"."""

    kind: str = "any"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


MAX_SEED = 2**63 - 1  # seeds are hashed with item ids into 63-bit generator seeds (utils/seeding.py)
COUNT = Range(min=1)  # counts of items, steps, views, ...
POSITIVE = Range(min=0, min_open=True)
NON_NEGATIVE = Range(min=0)
FRACTION = Range(min=0, max=1)  # probabilities and kept fractions
MAX_IMAGE_SIZE = 8192  # pixels per side: a 8192^2 float32 RGBA buffer is 1 GiB; larger is a typo, not a wish
IMAGE_SIZE = Range(min=16, max=MAX_IMAGE_SIZE)  # below 16 px no face is visible
MAX_POINTS = 10_000_000  # surface samples: 10M x 3 x 8 bytes is 240 MB per copy; more is a typo
MAX_WORKERS = 256

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout (JSON lines).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed: the same seed gives bit-identical outputs."),
                    Range(min=0, max=MAX_SEED)]
ShardOpt = Annotated[str | None, typer.Option(
    "--shard", metavar="K/N", help="Process only shard K of N (K from 0), e.g. $SLURM_ARRAY_TASK_ID/8.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Redo items whose outputs already exist.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto (CUDA when present), cpu, cuda or cuda:N.")]
TemplateOpt = Annotated[str | None, typer.Option(
    "--template", "-t", help="Template name or folder (default: the bundled topos-head).")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output file or folder."), Output()]
WorkersOpt = Annotated[int, typer.Option(help="Items processed in parallel processes."), Range(min=1, max=MAX_WORKERS)]


# OSErrors a user's environment causes (not bugs): a full disk or quota, a read-only place, no permission
ENVIRONMENT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def epilog(example: str) -> str:
    """Help epilog: an example (shown verbatim) followed by the exit codes."""
    lines = "\n\n".join(f"  $ {line.strip()}" for line in example.splitlines() if line.strip())
    return f"Example:\n\n{lines}\n\n{EXIT_CODES}"


@dataclass(frozen=True)
class _Check:
    """One declared check: the parameter, its flag as the user types it, and a Range or an Output."""

    name: str
    flag: str
    rule: Range | Output


def long_flags(info) -> list[str]:
    """The --long names of a typer Option (in Annotated form the first name sits in `default`)."""
    names = (getattr(info, "default", None), *(getattr(info, "param_decls", None) or ()))
    return [n for n in names if isinstance(n, str) and n.startswith("--")]


def declared_checks(fn, hints: dict | None = None) -> list[_Check]:
    """The Range/Output declarations in `fn`'s Annotated parameters (`hints`: its resolved type hints)."""
    hints = hints if hints is not None else typing.get_type_hints(fn, include_extras=True)
    checks = []
    for name in inspect.signature(fn).parameters:
        extras = getattr(hints.get(name), "__metadata__", ())
        info = next((m for m in extras if isinstance(m, typer.models.ParameterInfo)), None)
        decls = long_flags(info)
        flag = decls[0] if decls else ("--" + name.replace("_", "-") if isinstance(info, typer.models.OptionInfo)
                                       else name.upper())
        checks += [_Check(name, flag, m) for m in extras if isinstance(m, Range | Output)]
    return checks


def check_options(fn, values: dict) -> None:
    """Apply `fn`'s declared checks to `values` (parameter name -> value); UsageError on the first bad one."""
    for check in declared_checks(fn):
        value = values.get(check.name)
        if value is None or isinstance(value, bool):
            continue
        if isinstance(check.rule, Range) and not check.rule.allows(value):
            raise UsageError(f"{check.flag} {value} is out of range (allowed: {check.rule.describe()})")
        if isinstance(check.rule, Output):
            from topos_cli.io.fs import check_writable

            check_writable(value, check.rule.kind, check.flag)


def _show_ranges_in_help(fn) -> None:
    """Append each option's allowed range to its help text. The annotations are resolved once here and kept
    resolved (`from __future__ import annotations` would otherwise rebuild the typer.Option objects on each
    evaluation and drop the edit); shared option objects get the text once."""
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except NameError:  # an annotation that cannot be resolved yet: the checks still run at call time
        return
    fn.__annotations__ = hints
    for check in declared_checks(fn, hints):
        info = next((m for m in hints[check.name].__metadata__ if isinstance(m, typer.models.ParameterInfo)), None)
        if isinstance(check.rule, Range) and info is not None and info.help and "(allowed:" not in info.help:
            info.help = f"{info.help} (allowed: {check.rule.describe()})"


def handle_errors(fn):
    """Run a command body after its declared option checks: user errors become one line on stderr and exit
    2/3, a full disk or a read-only place exits 2 naming the path, Ctrl-C exits 130."""
    _show_ranges_in_help(fn)
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from topos_cli.utils.log import console

        try:
            check_options(fn, signature.bind_partial(*args, **kwargs).arguments)
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
        except OSError as exc:
            if exc.errno not in ENVIRONMENT_ERRNOS:
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            hint = ("free some space and rerun (finished items are kept and skipped)"
                    if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "choose a place you can write to")
            console.print(f"[red]error:[/] {where}{exc.strerror}; {hint}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper
