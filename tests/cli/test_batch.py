"""The batch engine end to end: concurrent shards lose nothing, killed runs resume to the same bytes, dataset
folders move, and failed runs leave nothing behind (issues 14 §2, §4, §6 and 15 §1)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from topos_cli.cli.main import app
from topos_cli.io.manifest import read_manifest

runner = CliRunner()
TOPOS = [sys.executable, "-m", "topos_cli"]


def _run(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def _files(folder: Path) -> dict[str, bytes]:
    """{relative path: bytes} of the data files of a dataset folder (not its manifest/meta bookkeeping)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(("manifest", "meta", "failures"))}


def _shards_at_once(argv: list, out: Path, count: int = 4) -> None:
    """Start `count` shard processes of one command together, writing one folder; all must succeed."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([*TOPOS, *map(str, argv), "-o", str(out), "--shard", f"{k}/{count}"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for k in range(count)]
    errors = [p.communicate(timeout=300)[1].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), errors


@pytest.mark.slow
def test_four_concurrent_augment_shards_lose_nothing(tmp_path, tiny_template_dir):
    argv = ["augment", "-t", tiny_template_dir, "--copies", 200, "--seed", 0, "--identity-sigma", 1,
            "--expressions", 2]
    assert _run(*argv, "-o", tmp_path / "full").exit_code == 0
    _shards_at_once(argv, tmp_path / "sharded")
    records = read_manifest(tmp_path / "sharded")
    assert len(records) == 200 and len({r["id"] for r in records}) == 200
    assert [r["id"] for r in records] == [r["id"] for r in read_manifest(tmp_path / "full")]
    assert _files(tmp_path / "sharded") == _files(tmp_path / "full")  # byte-identical meshes
    assert _run("manifest", "merge", tmp_path / "sharded").exit_code == 0
    assert (tmp_path / "sharded/manifest.jsonl").read_text() == (tmp_path / "full/manifest.jsonl").read_text()
    meta = json.loads((tmp_path / "sharded/meta.json").read_text())
    assert sorted(s["shard"] for s in meta["shards"]) == ["0/4", "1/4", "2/4", "3/4"]


@pytest.fixture
def egl():
    from topos_cli.render.raster_gl import gl_available

    if not gl_available():
        pytest.skip("no headless EGL context here")


RENDER = ["--per-mesh", 2, "--random-lighting", "--random-textures", "--texture-pool", 8, "--texture-size", 32,
          "--size", 32, "--seed", 1, "--passes", "color,normal"]


@pytest.mark.slow
def test_four_concurrent_render_shards_lose_nothing(tmp_path, tiny_template_dir, egl):
    from topos_cli import api

    api.augment(None, tmp_path / "aug", template=tiny_template_dir, copies=4, seed=0, identity_sigma=1.0)
    argv = ["render", tmp_path / "aug", "-t", tiny_template_dir, *RENDER]
    assert _run(*argv, "-o", tmp_path / "full").exit_code == 0
    _shards_at_once(argv, tmp_path / "sharded")
    records = read_manifest(tmp_path / "sharded")
    assert len(records) == 8 and len({r["id"] for r in records}) == 8
    assert _files(tmp_path / "sharded") == _files(tmp_path / "full")  # images and the shared texture pool
    assert _run("manifest", "merge", tmp_path / "sharded").exit_code == 0
    assert (tmp_path / "sharded/manifest.jsonl").read_text() == (tmp_path / "full/manifest.jsonl").read_text()


@pytest.mark.slow
def test_killed_render_resumes_to_the_same_bytes_and_sweeps_its_temp_files(tmp_path, tiny_template_dir, egl):
    from topos_cli import api

    api.augment(None, tmp_path / "aug", template=tiny_template_dir, copies=8, seed=0, identity_sigma=1.0)
    # RENDER's pool of 8 textures (24 maps) overflows the GL texture cache, as real runs do: its eviction must
    # never release a texture the draw has already bound (the cause of 5-13 differing images per resumed run)
    argv = [*TOPOS, "render", str(tmp_path / "aug"), "-t", str(tiny_template_dir), *map(str, RENDER), "--per-mesh",
            "3", "-o"]
    subprocess.run([*argv, str(tmp_path / "whole")], check=True, capture_output=True, timeout=300)
    killed = subprocess.Popen([*argv, str(tmp_path / "resumed")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(list((tmp_path / "resumed").rglob("*-r*.png"))) < 8 and killed.poll() is None:
        assert time.time() < deadline
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    done = len(list((tmp_path / "resumed").rglob("*-r*.png")))
    stale = tmp_path / "resumed/textures" / f".tex001_albedo.{_host()}-{killed.pid}.x1y2z3.tmp.png"
    stale.write_bytes(b"half a png")  # what a kill inside a write leaves behind
    assert 0 < done < 48, done  # it died mid-way (24 images x 2 passes)
    subprocess.run([*argv, str(tmp_path / "resumed")], check=True, capture_output=True, timeout=300)
    assert not list((tmp_path / "resumed").rglob("*.tmp*"))
    assert _files(tmp_path / "resumed") == _files(tmp_path / "whole")
    assert (tmp_path / "resumed/manifest.jsonl").read_text() == (tmp_path / "whole/manifest.jsonl").read_text()


def _host() -> str:
    import socket

    return socket.gethostname().replace(".", "_")


def test_moved_dataset_folders_still_read_and_train(tmp_path, tiny_template_dir, egl):
    from topos_cli import api

    work = tmp_path / "machine-a"
    api.augment(None, work / "aug", template=tiny_template_dir, copies=3, seed=0, identity_sigma=1.0)
    cwd = os.getcwd()
    os.chdir(tmp_path)  # relative -o, from another folder: paths must not depend on the working directory
    try:
        res = _run("render", "machine-a/aug", "-o", "machine-a/views", "-t", tiny_template_dir, *RENDER)
    finally:
        os.chdir(cwd)
    assert res.exit_code == 0, res.output
    for name in ("aug", "views"):
        for line in (work / name / "manifest.jsonl").read_text().splitlines():
            assert f'"{tmp_path}' not in line and '"/' not in line, line  # no absolute path on disk
    moved = tmp_path / "machine-b" / "data"
    shutil.move(work, moved)
    records = read_manifest(moved / "views")
    assert len(records) == 6
    for rec in records:
        paths = [rec["mesh"], rec["image"], *rec["passes"].values(), rec["texture"]["albedo"]]
        assert all(Path(p).is_file() and str(moved) in p for p in paths), paths
    last = api.train_vae(moved / "aug", tmp_path / "run", config="tiny", template=tiny_template_dir, steps=1,
                         batch=2, points=64, ckpt_every=1, log_every=1, device="cpu")
    assert last["step"] == 1


def test_failed_single_input_augment_leaves_no_folder(tmp_path, tiny_template, tiny_template_dir):
    from topos_cli.io.mesh import MeshData, save_mesh

    small = tiny_template.faces[:5]
    save_mesh(tmp_path / "wrong.ply", MeshData(tiny_template.verts[: small.max() + 1], small))
    res = _run("augment", tmp_path / "wrong.ply", "-o", tmp_path / "out", "-t", tiny_template_dir)
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert not (tmp_path / "out").exists()


def test_render_of_empty_stdin_says_nothing_was_read(tmp_path, tiny_template_dir):
    res = _run("render", "-", "-o", tmp_path / "views", "-t", tiny_template_dir, "--backend", "torch", input="")
    assert res.exit_code == 2 and "nothing was read from stdin" in res.output
    assert not (tmp_path / "views").exists()


def test_augment_that_would_sample_nothing_is_an_error(tmp_path, tiny_template, tiny_template_dir):
    from topos_cli import api
    from topos_cli.io.mesh import MeshData, save_mesh

    res = _run("augment", "-o", tmp_path / "o", "-t", tiny_template_dir, "--no-regions")
    assert res.exit_code == 2 and "--no-regions" in res.output and not (tmp_path / "o").exists()
    save_mesh(tmp_path / "plain.obj", MeshData.from_template(tiny_template))
    api.template_import(tmp_path / "plain.obj", tmp_path / "plain")  # no bases, no augment table
    res = _run("augment", "-o", tmp_path / "o", "-t", tmp_path / "plain")
    assert res.exit_code == 2 and "no augmentation regions" in res.output
    assert "--identity-sigma" not in res.output and "--expressions" not in res.output


def test_sweep_removes_only_dead_writers_temp_files(tmp_path):
    from topos_cli.io.batch import sweep_stale_temps

    live = tmp_path / f".a.{_host()}-{os.getpid()}.abc.tmp.ply"  # a shard still writing (this process)
    dead = tmp_path / "items" / f".b.{_host()}-999999999.abc.tmp.ply"
    dead.parent.mkdir()
    for path in (live, dead):
        path.write_bytes(b"x")
    assert sweep_stale_temps(tmp_path) == 1 and live.exists() and not dead.exists()
