"""`topos generate-tex --method learned` through typer's CliRunner: a tiny tex-uv checkpoint runs end to end;
missing or corrupt weights are one line, exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.unit.test_models_uv_net import save_tiny


@pytest.fixture(scope="module")
def tpl():
    from topos_cli.template import load_template

    return load_template("topos-head")


def _cli(*args):
    from topos_cli.cli.main import app

    return CliRunner().invoke(app, ["generate-tex", *[str(a) for a in args]])


def _scene(tmp_path, tpl):
    from topos_cli.io.image import write_png
    from topos_cli.io.mesh import MeshData, save_mesh
    from topos_cli.render.views import framed_camera

    cam = framed_camera(tpl.verts.astype(float), 0, 0, 64)
    write_png(tmp_path / "photo.png", np.full((64, 64, 3), 0.5))
    save_mesh(tmp_path / "head.obj", MeshData.from_template(tpl))
    (tmp_path / "cam.json").write_text(json.dumps(cam.to_dict()))
    return ["--mesh", tmp_path / "head.obj", "--camera", tmp_path / "cam.json", "--size", 64, "--no-preview"]


def test_missing_and_corrupt_weights_exit_2(tpl, tmp_path):
    opts = _scene(tmp_path, tpl)
    res = _cli(tmp_path / "photo.png", "-o", tmp_path / "a", "--method", "learned", "--weights", tmp_path / "none",
               *opts)
    assert res.exit_code == 2 and "tex-uv checkpoint" in res.output and "Traceback" not in res.output
    save_tiny(tpl, tmp_path / "bad")
    step = next((tmp_path / "bad").glob("step-*"))
    (step / "model.safetensors").write_bytes(b"not a safetensors file")
    res = _cli(tmp_path / "photo.png", "-o", tmp_path / "b", "--method", "learned", "--weights", tmp_path / "bad",
               *opts)
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert len([line for line in res.stderr.splitlines() if line.strip()]) == 1, res.stderr


def test_learned_runs_through_the_cli(tpl, tmp_path):
    opts = _scene(tmp_path, tpl)
    save_tiny(tpl, tmp_path / "run")
    res = _cli(tmp_path / "photo.png", "-o", tmp_path / "tex", "--method", "learned", "--weights", tmp_path / "run",
               "--json", *opts)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "tex" / "albedo.png").is_file()
