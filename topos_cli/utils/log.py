"""The one rich Console (stderr: for people) and the JSON emitter (stdout: for data)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

PIPED_WIDTH = 100_000  # stderr that is not a terminal (a pipe, a log file) is never wrapped: lines stay whole


def _stderr_console() -> Console:
    """The terminal's width on a terminal; no wrapping when stderr is piped or redirected (rich would wrap at 80
    columns, splitting paths and commands mid-line)."""
    on_terminal = Console(stderr=True)
    if on_terminal.is_terminal:
        return on_terminal
    return Console(stderr=True, width=PIPED_WIDTH, soft_wrap=True)


console = _stderr_console()
T = TypeVar("T")


def progress(items: Iterable[T], total: int | None = None, description: str = "working") -> Iterator[T]:
    """Iterate with a rich progress bar on stderr (hidden when stderr is not a terminal)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)


def emit_json(record) -> None:
    """Write one JSON document (one line) to stdout."""
    sys.stdout.write(json.dumps(record, default=_default) + "\n")
    sys.stdout.flush()


def emit_line(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _default(obj):
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)
