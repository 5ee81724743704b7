"""Atomic file writes: write to a temporary sibling, then rename, so existing means complete."""

from __future__ import annotations

import contextlib
import errno
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
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        from topos_cli.errors import DiskFull

        written = tmp_path.stat().st_size if tmp_path.exists() else 0
        raise DiskFull(f"no space left on the device of {path} ({_size(written)} of it written, removed); free "
                       "some space and rerun: finished items are kept and skipped") from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _size(num_bytes: int) -> str:
    if num_bytes < 1024:
        return f"{num_bytes} bytes"
    return f"{num_bytes / 1024:.1f} KiB" if num_bytes < 1 << 20 else f"{num_bytes / (1 << 20):.1f} MiB"


def check_writable(path: str | Path, kind: str = "any", flag: str = "--out") -> None:
    """Check before any work that `path` can be written, leaving nothing behind; UsageError naming `flag`.

    Args:
        path: the output file or folder (it may not exist yet; missing parent folders are fine).
        kind: "file" (a file is written at `path`), "folder" (files are written inside it) or "any".
        flag: the option as the user typed it, for the message.
    """
    from topos_cli.errors import UsageError

    path = Path(path)
    if path.is_file() and kind == "folder":
        raise UsageError(f"{flag} {path} is a file; give a folder (new or existing)")
    if path.is_dir() and kind == "file":
        raise UsageError(f"{flag} {path} is a folder; give a file name")
    probe_in = path if path.is_dir() else path.parent
    while not probe_in.exists() and probe_in != probe_in.parent:
        probe_in = probe_in.parent
    if not probe_in.is_dir():
        raise UsageError(f"{flag} {path}: {probe_in} is a file, so it cannot hold {path.relative_to(probe_in)}")
    try:  # the real test: permissions, read-only mounts and pseudo filesystems (/proc) all fail here
        fd, probe = tempfile.mkstemp(prefix=".topos-write-check.", dir=probe_in)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"{flag} {path}: cannot write in {probe_in} ({exc.strerror})") from None


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
