"""`topos generate-tex` through typer's CliRunner: a synthetic portrait with its true mesh and camera, and the
user errors (wrong topology, missing camera, missing weights, no face) as one line with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from topos_cli.cli.main import app

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, ["generate-tex", *[str(a) for a in args]])


def _one_line_error(res, text: str) -> None:
    assert res.exit_code == 2, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and text in lines[0], res.stderr
    assert "Traceback" not in res.output


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> dict:
    """A clay render of the template head, the head as OBJ and its camera JSON."""
    from topos_cli.io.image import write_png
    from topos_cli.io.mesh import MeshData, save_mesh
    from topos_cli.render.renderer import Renderer, RenderMesh
    from topos_cli.render.views import framed_camera
    from topos_cli.template import load_template

    folder = tmp_path_factory.mktemp("scene")
    tpl = load_template("topos-head")
    cam = framed_camera(tpl.verts.astype(float), 10, 0, 128)
    img = Renderer("torch").render(RenderMesh(tpl.verts, tpl.faces), cam)["color"][..., :3]
    write_png(folder / "photo.png", img)
    save_mesh(folder / "head.obj", MeshData.from_template(tpl))
    (folder / "cam.json").write_text(json.dumps(cam.to_dict()))
    return {"folder": folder, "photo": folder / "photo.png", "mesh": folder / "head.obj",
            "camera": folder / "cam.json"}


def test_help_has_an_example():
    res = runner.invoke(app, ["generate-tex", "--help"])
    assert res.exit_code == 0 and "topos generate-tex portrait.jpg" in res.output


def test_writes_the_texture_set_and_a_record(scene, tmp_path):
    out = tmp_path / "tex"
    res = _run(scene["photo"], "-o", out, "--mesh", scene["mesh"], "--camera", scene["camera"], "--size", 64,
               "--no-preview", "--json")
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout.strip().splitlines()[-1])
    for name in ("albedo", "normal", "roughness", "specular", "coverage", "obj", "mtl"):
        assert Path(rec[name]).is_file(), name
    assert "map_Kd albedo.png" in Path(rec["mtl"]).read_text()
    assert 0.2 < rec["texels"]["photo"] < 0.7 and rec["method"] == "unwrap"
    from topos_cli.io.mesh import load_mesh

    mesh = load_mesh(rec["obj"])
    assert mesh.texture is not None and mesh.texture.name == "albedo.png"
    assert np.allclose(mesh.verts, load_mesh(scene["mesh"]).verts)


def test_wrong_topology_mesh_is_exit_2(scene, tmp_path):
    import trimesh

    bad = tmp_path / "sphere.obj"
    trimesh.creation.icosphere(subdivisions=2, radius=10).export(bad)
    res = _run(scene["photo"], "-o", tmp_path / "t", "--mesh", bad, "--camera", scene["camera"], "--size", 64)
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "sphere.obj" in res.stderr


def test_mesh_without_camera_is_exit_2(scene, tmp_path):
    res = _run(scene["photo"], "-o", tmp_path / "t", "--mesh", scene["mesh"])
    _one_line_error(res, "--mesh and --camera go together")


def test_qwen_without_weights_names_the_folder(scene, tmp_path):
    res = _run(scene["photo"], "-o", tmp_path / "t", "--mesh", scene["mesh"], "--camera", scene["camera"],
               "--method", "qwen", "--weights", tmp_path / "nowhere")
    _one_line_error(res, "nowhere: no such folder")
    res = _run(scene["photo"], "-o", tmp_path / "t", "--mesh", scene["mesh"], "--camera", scene["camera"],
               "--method", "qwen")
    _one_line_error(res, "--weights DIR")


def test_no_face_is_exit_2(tmp_path):
    pytest.importorskip("mediapipe")
    from topos_cli.io.image import write_png

    blank = tmp_path / "wall.png"
    write_png(blank, np.full((128, 128, 3), 0.5))
    res = _run(blank, "-o", tmp_path / "t", "--size", 64, "--no-preview")
    _one_line_error(res, "no face found")


def test_json_lines_on_stdin_make_a_dataset_and_resume(scene, tmp_path):
    cam = json.loads(Path(scene["camera"]).read_text())
    lines = "".join(json.dumps({"id": f"p{i}", "image": str(scene["photo"]), "mesh": str(scene["mesh"]),
                                "camera": cam, "expression": {}}) + "\n" for i in range(2))
    out = tmp_path / "texs"
    args = ["generate-tex", "-", "-o", str(out), "--size", "64", "--no-preview"]
    res = runner.invoke(app, args, input=lines)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (out / "items").iterdir()) == ["p0", "p1"]
    assert (out / "items" / "p1" / "albedo.png").is_file() and (out / "manifest.jsonl").is_file()
    again = runner.invoke(app, args, input=lines)
    assert again.exit_code == 0 and "0 textured, 2 already done" in again.stderr


def test_no_pbr_writes_albedo_only(scene, tmp_path):
    out = tmp_path / "flat"
    res = _run(scene["photo"], "-o", out, "--mesh", scene["mesh"], "--camera", scene["camera"], "--size", 64,
               "--no-preview", "--no-pbr")
    assert res.exit_code == 0, res.output
    assert (out / "albedo.png").is_file() and not (out / "normal.png").exists()
    assert "roughness.png" not in (out / "head.mtl").read_text()
