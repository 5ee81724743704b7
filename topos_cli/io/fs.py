"""Atomic file writes: write to a temporary sibling, then rename, so existing means complete."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds.

    The temporary name keeps the real suffix (`.x.<host>-<pid>.abc123.tmp.ply`) so writers that dispatch on the
    suffix work, and names its writer so a later run can sweep the files of a killed one (io/batch.py).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    owner = f"{socket.gethostname().replace('.', '_')}-{os.getpid()}"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem.replace('.', '_')}.{owner}.", suffix=f".tmp{path.suffix}",
                               dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give outputs the usual mode
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: str | Path, what: str = "file"):
    """Parse a JSON file; a missing or malformed file is a one-line UsageError naming it (`what`: its role)."""
    from topos_cli.errors import UsageError

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such {what}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
