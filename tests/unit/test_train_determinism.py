"""CPU training is a function of its seed: two runs, and a run stopped and resumed, end bit-identical."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from topos_cli import api
from topos_cli.train.determinism import rng_state, seed_everything, set_rng_state

STEPS = 4
TINY = {"config": "tiny", "steps": STEPS, "batch": 2, "points": 128, "ckpt_every": 2, "log_every": 1,
        "device": "cpu", "seed": 3}
TIMING = ("it_s", "seconds")  # wall-clock fields of a log record: the only ones allowed to differ


def _train(out, tiny_template_dir, **kwargs):
    return api.train_vae(None, out, template=tiny_template_dir, **{**TINY, **kwargs})


def _losses(run) -> list[dict]:
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in rec.items() if k not in TIMING} for rec in records]


def _weights(run, step: int) -> dict:
    return load_file(str(run / f"step-{step:09d}" / "model.safetensors"))


def _assert_same_run(a, b):
    assert _losses(a) == _losses(b)
    assert [rec["step"] for rec in _losses(a)] == list(range(1, STEPS + 1))
    for step in (2, STEPS):
        wa, wb = _weights(a, step), _weights(b, step)
        assert wa.keys() == wb.keys()
        for name in wa:
            assert torch.equal(wa[name], wb[name]), (step, name)
    sa, sb = (torch.load(r / f"step-{STEPS:09d}" / "train_state.pt", weights_only=False) for r in (a, b))
    for name in sa["model"]:
        assert torch.equal(sa["model"][name], sb["model"][name]), name


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, tiny_template_dir):
    """The uninterrupted reference run (STEPS steps, checkpoints at 2 and STEPS)."""
    out = tmp_path_factory.mktemp("determinism") / "full"
    torch.manual_seed(12345)  # the global state a caller leaves behind must not matter
    _train(out, tiny_template_dir)
    return out


def test_two_runs_with_one_seed_are_bit_identical(tmp_path, tiny_template_dir, full_run):
    torch.manual_seed(999)
    _train(tmp_path / "b", tiny_template_dir)
    _assert_same_run(full_run, tmp_path / "b")
    _train(tmp_path / "c", tiny_template_dir, seed=4, steps=2)
    assert _losses(tmp_path / "c")[:2] != _losses(full_run)[:2]  # the seed does something


def test_stopped_and_resumed_run_equals_the_uninterrupted_one(tmp_path, tiny_template_dir, full_run):
    def stop_after_step_3(record):  # past the step-2 checkpoint: the resume redoes step 3 from step 2
        if record["step"] == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path / "cut", tiny_template_dir, on_log=stop_after_step_3)
    assert (tmp_path / "cut" / "latest").read_text().strip() == "step-000000002"
    random.seed(7)  # a resumed process starts from other global states; the checkpoint restores them
    np.random.seed(7)
    torch.manual_seed(7)
    _train(tmp_path / "cut", tiny_template_dir, resume=True)
    _assert_same_run(full_run, tmp_path / "cut")


def test_checkpoint_carries_rng_states_and_data_cursor(full_run):
    state = torch.load(full_run / "step-000000002" / "train_state.pt", weights_only=False)
    assert set(state["rng"]) >= {"python", "numpy", "torch"}
    assert state["cursor"] == {"next_step": 2, "batch": 2, "world": 1, "threads": torch.get_num_threads()}


def test_rng_state_round_trip():
    seed_everything(5)
    saved = rng_state()
    first = (random.random(), np.random.random(), torch.rand(1).item())
    seed_everything(6)
    set_rng_state(saved)
    assert (random.random(), np.random.random(), torch.rand(1).item()) == first


@pytest.mark.slow  # a second interpreter importing torch: ~10 s alone, a minute on a loaded machine
def test_sigkilled_training_resumes_to_the_same_weights(tmp_path, tiny_template_dir, full_run):
    """A real crash: SIGKILL the process once its first checkpoint exists, resume, compare with a clean run."""
    run = tmp_path / "killed"
    argv = [sys.executable, "-m", "topos_cli", "train", "vae", "-o", str(run), "-t", str(tiny_template_dir)]
    for key, value in TINY.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}  # the threads this process uses
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (run / "latest").is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before its first checkpoint was seen"
    _train(run, tiny_template_dir, resume=True)
    _assert_same_run(full_run, run)


def test_full_disk_at_a_checkpoint_is_one_line_and_the_run_resumes(tmp_path, tiny_template_dir, full_run,
                                                                    monkeypatch):
    """torch.save reports a full disk as a RuntimeError: the CLI still says it in one line (exit 2), removes
    the partial step folder, keeps the step-2 checkpoint, and --resume then ends where the full run does."""
    import shutil

    from typer.testing import CliRunner

    from topos_cli.cli.main import app

    real_save = torch.save

    def full_at_the_last_step(obj, path, *args, **kwargs):
        if f"step-{STEPS:09d}" in str(path):
            Path(path).write_bytes(b"partial")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")
        return real_save(obj, path, *args, **kwargs)

    run = tmp_path / "run"
    argv = ["train", "vae", "-o", str(run), "-t", str(tiny_template_dir)]
    for key, value in TINY.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    monkeypatch.setattr(torch, "save", full_at_the_last_step)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1 << 30, 1 << 30, 0))
    res = CliRunner().invoke(app, argv)
    monkeypatch.undo()
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and "Traceback" not in res.output, res.output
    assert "no space left" in lines[0] and f"step-{STEPS:09d}" in lines[0] and "step-000000002" in lines[0]
    assert sorted(p.name for p in run.iterdir() if p.name.startswith("step-")) == ["step-000000002"]
    _train(run, tiny_template_dir, resume=True)
    _assert_same_run(full_run, run)


def test_a_run_killed_before_latest_was_rewritten_resumes_from_its_newest_step(tmp_path):
    """A kill between the step folder's rename and rewriting `latest` leaves `latest` behind: folders decide."""
    from topos_cli.io.checkpoint import latest_step_dir, resolve_checkpoint

    run = tmp_path / "run"
    for step in (2, 4):
        (run / f"step-{step:09d}").mkdir(parents=True)
        (run / f"step-{step:09d}" / "model.json").write_text("{}")
    (run / "step-000000006.tmp").mkdir()  # a checkpoint still being written: not complete
    (run / "latest").write_text("step-000000002\n")  # stale
    assert resolve_checkpoint(run).name == "step-000000004"
    (run / "latest").unlink()  # the first checkpoint's `latest` was never written
    assert latest_step_dir(run).name == "step-000000004"
    assert latest_step_dir(tmp_path / "empty") is None
