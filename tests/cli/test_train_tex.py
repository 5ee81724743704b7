"""TOPOS-Texture on the tiny random Qwen-Image-Edit stack (CPU): `topos train tex --config tiny` end to end,
the LoRA reloads exactly, changes the output, and `generate-tex --method qwen` paints a texture with it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from topos_cli.cli.main import app

pytest.importorskip("diffusers", reason="the tex extra (pip install -e .[tex]) is not installed")
pytest.importorskip("peft", reason="the tex extra (pip install -e .[tex]) is not installed")
pytest.importorskip("transformers", reason="the tex extra (pip install -e .[tex]) is not installed")

runner = CliRunner()


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A 3-step tiny fine-tune on a 2-record render-style dataset (random images, their 'albedo')."""
    from topos_cli.io.image import write_png

    data = tmp_path_factory.mktemp("renders")
    rng = np.random.default_rng(0)
    lines = []
    for i in range(2):
        write_png(data / f"r{i}.png", rng.random((40, 40, 3)))
        write_png(data / f"a{i}.png", rng.random((40, 40, 3)))
        lines.append(json.dumps({"id": f"r{i}", "image": f"r{i}.png", "texture": {"albedo": f"a{i}.png"}}))
    (data / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path_factory.mktemp("run") / "tex"
    res = runner.invoke(app, ["train", "tex", "--data", str(data), "--config", "tiny", "--out", str(out),
                              "--lr", "0.01", "--lr-min", "0.005", "--log-every", "1", "--json"])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout.strip().splitlines()[-1])
    assert rec["step"] == 3 and rec["resolution"] == 48 and np.isfinite(rec["loss"])
    return out


def test_training_writes_a_lora_with_its_schedule(run):
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["resolution"] for r in log] == [32, 32, 48]  # progressive stages
    assert log[0]["lr"] == pytest.approx(0.01) and log[-1]["lr"] == pytest.approx(0.005)  # cosine ends
    assert log[0]["mu"] != log[-1]["mu"]  # the time shift follows each resolution's token count
    meta = json.loads((run / "lora" / "topos_texture.json").read_text())
    assert meta["resolution"] == 48 and meta["config"]["rank"] == 32 and meta["config"]["cond_dropout"] == 0.2


def test_lora_reloads_exactly_and_changes_the_output(run):
    from topos_cli.pipelines.tex_qwen import QwenTexturer, load_parts

    photo = np.random.default_rng(1).random((50, 50, 3))
    tuned = QwenTexturer.from_pretrained(run / "tiny-base", lora=run / "lora")
    again = QwenTexturer.from_pretrained(run / "tiny-base", lora=run / "lora")
    base = QwenTexturer(load_parts(run / "tiny-base"), resolution=48)
    a, b, c = (t(photo, seed=3, steps=2) for t in (tuned, again, base))
    assert a.shape == (48, 48, 3) and np.array_equal(a, b)
    assert np.abs(a - c).max() > 1e-3


def test_generate_tex_with_the_qwen_method(run, tmp_path):
    from topos_cli.io.image import read_image, write_png
    from topos_cli.io.mesh import MeshData, save_mesh
    from topos_cli.render.views import framed_camera
    from topos_cli.template import load_template

    tpl = load_template("topos-head")
    cam = framed_camera(tpl.verts.astype(float), 0, 0, 96)
    write_png(tmp_path / "photo.png", np.full((96, 96, 3), 0.6))
    save_mesh(tmp_path / "head.obj", MeshData.from_template(tpl))
    (tmp_path / "cam.json").write_text(json.dumps(cam.to_dict()))
    weights = tmp_path / "weights"
    shutil.copytree(run / "tiny-base", weights)
    res = runner.invoke(app, ["generate-tex", str(tmp_path / "photo.png"), "-o", str(tmp_path / "tex"), "--mesh",
                              str(tmp_path / "head.obj"), "--camera", str(tmp_path / "cam.json"), "--method", "qwen",
                              "--weights", str(weights), "--lora", str(run / "lora"), "--size", "64", "--no-preview",
                              "--json"])
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout.strip().splitlines()[-1])
    assert rec["method"] == "qwen" and rec["texels"]["completed"] == pytest.approx(1.0)
    assert read_image(rec["albedo"]).shape == (64, 64, 3)
