"""The installed `topos` entry point: click's parse errors are one line on stderr, exit 2, no box."""

import subprocess
import sys

import pytest


def _topos(*args):
    return subprocess.run([sys.executable, "-m", "topos_cli", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, words", [
    (("augment", "--bogus"), "No such option: --bogus"),
    (("train", "vae", "--steps", "abc"), "'--steps'"),
    (("retopo", "scan.ply"), "Missing option '--out'"),
])
def test_parse_errors_are_one_line_exit_2(args, words):
    proc = _topos(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0]
    assert "Traceback" not in proc.stderr and "╭" not in proc.stderr


def test_version_and_help_still_exit_0():
    assert _topos("--version").stdout.startswith("topos ")
    proc = _topos("augment", "--help")
    assert proc.returncode == 0 and "Example" in proc.stdout
