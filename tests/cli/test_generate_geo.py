"""`topos generate-geo` through typer's CliRunner on the public-domain Grace Hopper portrait."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from topos_cli.cli.main import app

runner = CliRunner()
pytest.importorskip("mediapipe")


def _run(*args):
    return runner.invoke(app, ["generate-geo", *[str(a) for a in args]])


@pytest.fixture(scope="module")
def portrait(tmp_path_factory) -> Path:
    matplotlib = pytest.importorskip("matplotlib")
    src = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    dst = tmp_path_factory.mktemp("photos") / "hopper.jpg"
    shutil.copy(src, dst)
    return dst


def _one_line_error(res, text: str) -> None:
    assert res.exit_code == 2, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and text in lines[0], res.stderr
    assert "Traceback" not in res.output


def test_help_has_an_example():
    res = runner.invoke(app, ["generate-geo", "--help"])
    assert res.exit_code == 0 and "topos generate-geo portrait.jpg -o head.obj" in res.stdout


def test_one_portrait_json_record_and_camera(tmp_path, portrait):
    from topos_cli.io.mesh import load_mesh
    from topos_cli.render.camera import from_dict
    from topos_cli.template import load_template

    out = tmp_path / "head.obj"
    res = _run(portrait, "-o", out, "--json", "--steps", 4)
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout.splitlines()[0])
    tpl = load_template()
    mesh = load_mesh(out)
    assert len(mesh.verts) == tpl.num_verts and mesh.uv is not None
    assert len(rec["expression"]) == 53 and all(0 <= w <= 1 for w in rec["expression"].values())
    assert rec["landmarks"]["reprojection_px_median"] < 3.0  # her face spans ~180 px
    assert abs(rec["pose"]["yaw"]) < 15 and set(rec["seconds"]) >= {"detect", "prior", "fit", "total"}
    cam = from_dict(json.loads(Path(rec["camera_file"]).read_text()))
    assert (cam.width, cam.height) == (512, 600)
    pix, depth = cam.project(mesh.verts)  # the head lands on her face in the photo
    nose = pix[tpl.landmarks[30]]
    x0, y0, x1, y1 = rec["face"]["bbox"]
    assert (depth > 0).all() and x0 < nose[0] < x1 and y0 < nose[1] < y1


def test_no_face_unreadable_and_missing_weights_are_one_line_exit_2(tmp_path, portrait):
    import imageio.v3 as iio

    blank = tmp_path / "blank.png"
    iio.imwrite(blank, np.full((64, 64, 3), 128, np.uint8))
    _one_line_error(_run(blank, "-o", tmp_path / "a.obj"), "no face found in")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    _one_line_error(_run(broken, "-o", tmp_path / "b.obj"), "cannot read image")
    empty = tmp_path / "empty_model"
    empty.mkdir()
    _one_line_error(_run(portrait, "-o", tmp_path / "c.obj", "--model", empty), str(empty))
    _one_line_error(_run(portrait, "-o", tmp_path / "d.txt"), "ending in .obj, .ply or .glb")


def test_folder_with_a_faceless_photo_is_a_partial_failure(tmp_path, portrait):
    import imageio.v3 as iio

    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(portrait, photos / "hopper.jpg")
    iio.imwrite(photos / "wall.png", np.full((64, 64, 3), 90, np.uint8))
    res = _run(photos, "-o", tmp_path / "heads", "--json", "--steps", 4, "--format", "ply")
    assert res.exit_code == 3, res.output
    assert (tmp_path / "heads" / "items" / "hopper" / "head.ply").is_file()
    failures = [json.loads(line) for line in (tmp_path / "heads" / "failures.jsonl").read_text().splitlines()]
    assert [f["id"] for f in failures] == ["wall"] and "no face found" in failures[0]["error"]
