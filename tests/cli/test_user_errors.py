"""No traceback for any error a user can cause (issue 14 §5): every command x {numeric option out of range,
unwritable output, empty stdin, full disk, degenerate mesh} exits 2 with one line on stderr and leaves
nothing behind. The commands and their options are read from the app, so a new command is covered at once."""

from __future__ import annotations

import errno
import inspect
import json
import math
import os
import subprocess
import typing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from topos_cli.cli.common import Output, Range, declared_checks, long_flags
from topos_cli.cli.main import app

runner = CliRunner()
STDIN_COMMANDS = (("augment",), ("render",), ("retopo",))  # the commands whose INPUT may be '-'


def _commands(typer_app=app, prefix=()) -> list[tuple[tuple[str, ...], object]]:
    found = [((*prefix, c.name or c.callback.__name__), inspect.unwrap(c.callback))
             for c in typer_app.registered_commands]
    for group in typer_app.registered_groups:
        found += _commands(group.typer_instance, (*prefix, group.name))
    return found


COMMANDS = _commands()


def _numeric_params(fn) -> list[str]:
    names = []
    for name, hint in typing.get_type_hints(fn, include_extras=True).items():
        base = typing.get_args(hint)[0] if hasattr(hint, "__metadata__") else hint
        kinds = set(typing.get_args(base)) or {base}
        if kinds & {int, float} and bool not in kinds:
            names.append(name)
    return names


def _required_argv(fn, tmp: Path, out: Path | None = None) -> list[str]:
    """Placeholder values for the required parameters (the checks run before any of them is used)."""
    checks = {c.name: c for c in declared_checks(fn)}
    hints = typing.get_type_hints(fn, include_extras=True)
    argv = []
    for name, param in inspect.signature(fn).parameters.items():
        if name in checks and isinstance(checks[name].rule, Output):
            kind = checks[name].rule.kind
            argv += [checks[name].flag, str(out or (tmp / "new" / ("o" if kind == "folder" else "o.obj")))]
            continue
        if param.default not in (inspect.Parameter.empty, ...):
            continue
        info = next(m for m in hints[name].__metadata__ if hasattr(m, "param_decls"))
        decls = long_flags(info)
        if type(info).__name__ == "ArgumentInfo":
            argv.append(str(tmp / "placeholder.obj"))
        else:
            argv += [decls[0] if decls else "--" + name.replace("_", "-"), str(tmp / "placeholder")]
    return argv


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def _assert_one_line_exit_2(res, *words):
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.exit_code == 2, (res.exit_code, res.output)
    assert "Traceback" not in res.output and len(lines) == 1, res.output
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def _bad_values(rule: Range, is_int: bool) -> list:
    candidates = [0, -1, -5] + ([] if rule.max is None else [rule.max + 1, rule.max * 10 + 1])
    if not is_int:
        candidates += [math.nan, math.inf]
    return sorted({v for v in candidates if not rule.allows(v)}, key=str)


RANGE_CASES = []
for path, fn in COMMANDS:
    hints = typing.get_type_hints(fn, include_extras=True)
    for check in declared_checks(fn):
        if isinstance(check.rule, Range):
            is_int = int in (set(typing.get_args(typing.get_args(hints[check.name])[0])) or
                             {typing.get_args(hints[check.name])[0]})
            RANGE_CASES += [pytest.param(path, fn, check.flag, value, id=f"{' '.join(path)} {check.flag} {value}")
                            for value in _bad_values(check.rule, is_int)]


def test_every_numeric_option_declares_its_range():
    missing = [f"{' '.join(path)} --{name.replace('_', '-')}" for path, fn in COMMANDS
               for name in _numeric_params(fn) if name not in {c.name for c in declared_checks(fn)}]
    assert not missing, f"declare a Range (cli/common.py) for: {missing}"


def test_every_output_option_is_checked_up_front():
    missing = [" ".join(path) for path, fn in COMMANDS
               if "out" in inspect.signature(fn).parameters
               and not any(c.name == "out" and isinstance(c.rule, Output) for c in declared_checks(fn))]
    assert not missing, f"declare Output(kind) on --out of: {missing}"


@pytest.mark.parametrize(("path", "fn", "flag", "value"), RANGE_CASES)
def test_out_of_range_option_exits_2_with_one_line(tmp_path, monkeypatch, path, fn, flag, value):
    monkeypatch.chdir(tmp_path)
    before = _files(tmp_path)
    res = runner.invoke(app, [*path, *_required_argv(fn, tmp_path), flag, str(value)])
    line = _assert_one_line_exit_2(res, flag, "allowed")
    assert str(value).lower() in line.lower()
    assert _files(tmp_path) == before  # nothing written, no half-made run folder


def _unwritable_outputs(tmp: Path, kind: str) -> dict[str, Path]:
    plain = tmp / "plain.txt"
    plain.write_text("not a folder\n")
    cases = {"proc": Path("/proc") / ("topos-x" if kind == "folder" else "topos-x.obj"),
             "file-as-folder": plain / ("sub" if kind == "folder" else "o.obj")}
    if kind == "folder":
        cases["file-for-folder"] = plain
    if os.geteuid() != 0:  # root writes through permission bits; the read-only mount case covers it there
        locked = tmp / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        cases["read-only-folder"] = locked / ("o" if kind == "folder" else "o.obj")
    return cases


OUTPUT_CASES = [pytest.param(path, fn, id=" ".join(path)) for path, fn in COMMANDS
                if any(isinstance(c.rule, Output) for c in declared_checks(fn))]


@pytest.mark.parametrize(("path", "fn"), OUTPUT_CASES)
def test_unwritable_output_fails_before_any_work(tmp_path, monkeypatch, path, fn):
    monkeypatch.chdir(tmp_path)
    check = next(c for c in declared_checks(fn) if isinstance(c.rule, Output))
    for case, out in _unwritable_outputs(tmp_path, check.rule.kind).items():
        before = _files(tmp_path)
        res = runner.invoke(app, [*path, *_required_argv(fn, tmp_path, out)])
        line = _assert_one_line_exit_2(res, check.flag)
        assert str(out) in line, (case, line)
        assert _files(tmp_path) == before, case


@pytest.fixture
def read_only_mount(tmp_path):
    """A read-only tmpfs (root in CI); skipped where mounting is not allowed."""
    mount = tmp_path / "ro"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root, or no mount permission)")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.parametrize(("path", "fn"), OUTPUT_CASES)
def test_read_only_location_fails_up_front(read_only_mount, tmp_path, path, fn):
    check = next(c for c in declared_checks(fn) if isinstance(c.rule, Output))
    out = read_only_mount / ("o" if check.rule.kind == "folder" else "o.obj")
    res = runner.invoke(app, [*path, *_required_argv(fn, tmp_path, out)])
    _assert_one_line_exit_2(res, check.flag, "Read-only")


@pytest.mark.parametrize("path", STDIN_COMMANDS, ids=" ".join)
def test_empty_stdin_exits_2(tmp_path, monkeypatch, path):
    monkeypatch.chdir(tmp_path)
    fn = dict(COMMANDS)[path]
    check = next(c for c in declared_checks(fn) if isinstance(c.rule, Output))
    out = tmp_path / ("o.png" if path == ("render",) else "o.obj" if check.rule.kind == "file" else "o")
    res = runner.invoke(app, [*path, "-", "-o", str(out)], input="")
    _assert_one_line_exit_2(res, "stdin")
    assert _files(tmp_path) == set()


LIST_CASES = [  # comma-list and NAME=W options, parsed in the command body: same one line, exit 2
    (("metrics", "{a}", "{a}", "--thresholds", "-1"), "--thresholds"),
    (("metrics", "{a}", "{a}", "--thresholds", "0.01,nan"), "--thresholds"),
    (("align", "{a}", "{a}", "-o", "{out}.obj", "--yaws", "0,nan"), "--yaws"),
    (("align", "{a}", "{a}", "-o", "{out}.obj", "--scales", "1,0"), "--scales"),
    (("export", "{a}", "-o", "{out}.glb", "--lod", "-1"), "--lod"),
    (("template", "export", "{tpl}", "-o", "{out}.obj", "--identity", "nan"), "--identity"),
    (("template", "export", "{tpl}", "-o", "{out}.obj", "--expression", "jawOpen=inf"), "--expression"),
    (("template", "export", "{tpl}", "-o", "{out}.obj", "--identity", ",".join(["0.5"] * 11)), "10 identity modes"),
]


@pytest.mark.parametrize(("argv", "word"), LIST_CASES, ids=lambda v: " ".join(v) if isinstance(v, tuple) else v)
def test_bad_list_values_exit_2(tmp_path, monkeypatch, tiny_template_dir, argv, word):
    monkeypatch.chdir(tmp_path)
    mesh = tmp_path / "a.obj"
    mesh.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    before = _files(tmp_path)
    res = runner.invoke(app, [a.format(a=mesh, out=tmp_path / "o", tpl=tiny_template_dir) for a in argv])
    _assert_one_line_exit_2(res, word)
    assert _files(tmp_path) == before


DEGENERATE_CASES = [  # a mesh whose three vertices coincide (zero area), as each mesh-reading command's input
    ("align", "{deg}", "{gt}", "-o", "{out}.obj"), ("align", "{gt}", "{deg}", "-o", "{out}.obj"),
    ("metrics", "{deg}", "{gt}"), ("metrics", "--icp", "{gt}", "{deg}"),
    ("retopo", "{deg}", "-o", "{out}.obj"), ("render", "{deg}", "-o", "{out}.png"),
    ("augment", "{deg}", "-o", "{out}"), ("export", "{deg}", "-o", "{out}.glb"),
]


@pytest.mark.parametrize("argv", DEGENERATE_CASES, ids=" ".join)
def test_degenerate_mesh_exits_2(tmp_path, monkeypatch, tiny_template_dir, argv):
    monkeypatch.chdir(tmp_path)
    degenerate = tmp_path / "deg.obj"
    degenerate.write_text("v 0 0 0\nv 0 0 0\nv 0 0 0\nf 1 2 3\n")
    template = tmp_path / "gt.obj"
    assert runner.invoke(app, ["template", "export", str(tiny_template_dir), "-o", str(template)]).exit_code == 0
    before = _files(tmp_path)
    res = runner.invoke(app, [a.format(deg=degenerate, gt=template, out=tmp_path / "o") for a in argv]
                        + (["-t", str(tiny_template_dir)] if argv[0] in ("retopo", "render", "augment", "export")
                           else []))
    _assert_one_line_exit_2(res, "deg.obj")
    assert _files(tmp_path) == before


# ------------------------------------------------------------------------------------------------ full disk
def test_atomic_write_on_a_full_disk_names_the_file_and_removes_the_temp(tmp_path):
    from topos_cli.errors import DiskFull
    from topos_cli.io.fs import atomic_path

    target = tmp_path / "big.bin"
    with pytest.raises(DiskFull) as info, atomic_path(target) as tmp:
        tmp.write_bytes(b"x" * 3000)
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
    assert str(target) in str(info.value) and "2.9 KiB" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_augment_on_a_full_disk_stops_in_one_line_and_resumes(tmp_path, tiny_template_dir, monkeypatch):
    """The disk fills while the third mesh is written: one line naming it, no temp file, the two finished
    items in the manifest; after space is freed the rerun completes to the bytes of an uninterrupted run."""
    import topos_cli.io.fs as fs

    argv = ["augment", "-o", str(tmp_path / "aug"), "-t", str(tiny_template_dir), "--copies", "5", "--seed", "0"]
    real_chmod, meshes = fs.os.chmod, []

    def full_from_the_third_mesh(path, mode, *args, **kwargs):
        if Path(path).name.startswith(".mesh."):
            meshes.append(path)
            if len(meshes) >= 3:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_chmod(path, mode, *args, **kwargs)

    monkeypatch.setattr(fs.os, "chmod", full_from_the_third_mesh)
    res = runner.invoke(app, argv)
    monkeypatch.setattr(fs.os, "chmod", real_chmod)
    line = _assert_one_line_exit_2(res, "no space left", "mesh.ply", "written", "2 item(s)")
    assert "aug002" in line
    assert not [p for p in (tmp_path / "aug").rglob(".*tmp*")]
    records = [json.loads(x) for x in (tmp_path / "aug" / "manifest.jsonl").read_text().splitlines()]
    assert [r["id"].rsplit("-", 1)[1] for r in records] == ["aug000", "aug001"]
    res = runner.invoke(app, argv)
    assert res.exit_code == 0 and "2 already done" in res.stderr, res.output
    ref = runner.invoke(app, [*argv[:2], str(tmp_path / "ref"), *argv[3:]])
    assert ref.exit_code == 0
    for mesh in sorted((tmp_path / "ref" / "items").rglob("mesh.ply")):
        assert mesh.read_bytes() == (tmp_path / "aug" / mesh.relative_to(tmp_path / "ref")).read_bytes()


def test_augment_into_a_tiny_filesystem(tmp_path, tiny_template_dir):
    """The same on a real full disk (a 64 KiB tmpfs; root in CI, skipped where mounting is not allowed)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root, or no mount permission)")
    try:
        res = runner.invoke(app, ["augment", "-o", str(mount / "aug"), "-t", str(tiny_template_dir), "--copies",
                                  "200", "--seed", "0"])
        _assert_one_line_exit_2(res, "no space left", "written")
        assert not [p for p in mount.rglob(".*tmp*")]
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_piped_stderr_is_not_wrapped(tmp_path, monkeypatch):
    """Stderr that is not a terminal: a long one-line error stays one line (rich would wrap at 80)."""
    import io
    import sys

    import topos_cli.utils.log as log

    with monkeypatch.context() as patch:  # build the Console against a stderr that is not a terminal
        patch.setattr(sys, "stderr", io.StringIO())
        piped = log._stderr_console()
    monkeypatch.setattr(log, "console", piped)
    out = tmp_path / ("a-rather-long-folder-name-" * 6) / "plain.txt"
    out.parent.mkdir()
    out.write_text("x")
    res = runner.invoke(app, ["augment", "-o", str(out / "sub")])
    line = _assert_one_line_exit_2(res, str(out))
    assert len(line) > 200
