"""`topos export`, `topos animate`, `topos template lod` through the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from topos_cli.cli.main import app
from topos_cli.io.gltf import read_gltf_head

runner = CliRunner()
LLF_CHANNELS = ["EyeBlinkLeft", "JawOpen", "MouthSmileLeft", "TongueOut"]


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _glb_json(path) -> dict:
    data = path.read_bytes()
    n = int(np.frombuffer(data[12:16], "<u4")[0])
    return json.loads(data[20:20 + n])


def write_llf_csv(path, frames: int) -> None:
    """A Live Link Face take: Timecode, BlendShapeCount, ARKit channels, head yaw/pitch/roll (radians)."""
    lines = ["Timecode,BlendShapeCount," + ",".join(LLF_CHANNELS) + ",HeadYaw,HeadPitch,HeadRoll"]
    for i in range(frames):
        t = i / 60
        values = [0.5 + 0.5 * np.sin(t * 6), 0.5 + 0.5 * np.sin(t * 3), 0.3, 0.0, 0.2 * np.sin(t), 0.05, 0.0]
        lines.append(f"10:00:{i // 60:02d}:{i % 60:02d}.000,{len(LLF_CHANNELS)}," + ",".join(f"{v:.4f}" for v in values))
    path.write_text("\n".join(lines) + "\n")


def test_export_tiny_template_glb_json(tmp_path, tiny_template_dir, tiny_template):
    res = _run("export", "-t", tiny_template_dir, "-o", tmp_path / "h.glb", "--rig", "none", "--names", "template",
               "--json")
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)
    assert rec["method"] == "linear-model" and rec["morph_targets"] == 4 and rec["joints"] == []
    head = read_gltf_head(tmp_path / "h.glb")
    assert np.abs(head.verts - tiny_template.verts).max() < 1e-4
    assert head.morph_names == ["jawOpen", "eyeBlink_L", "eyeBlink_R", "mouthSmile_L"]


def test_export_refuses_fbx_and_unknown_options(tmp_path, tiny_template_dir):
    res = _run("export", "-t", tiny_template_dir, "-o", tmp_path / "h.fbx")
    assert res.exit_code == 2 and "FBX SDK" in res.output
    res = _run("export", "-t", tiny_template_dir, "-o", tmp_path / "h.glb", "--names", "template", "--rig", "bones")
    assert res.exit_code == 2 and "--rig" in res.output
    res = _run("export", "-t", tiny_template_dir, "-o", tmp_path / "h.glb", "--rig", "none")
    assert res.exit_code == 2 and "arkit_map.json" in res.output  # the toy template declares no ARKit map


def test_animate_keyframes_on_morph_weights(tmp_path, tiny_template_dir):
    keys = {"keyframes": [{"time": 0, "weights": {"jawOpen": 0}}, {"time": 0.5, "weights": {"jawOpen": 1}},
                          {"frame": 30, "weights": {"jawOpen": 0, "eyeBlink_L": 1}}], "fps": 30}
    (tmp_path / "keys.json").write_text(json.dumps(keys))
    res = _run("animate", "-t", tiny_template_dir, "-o", tmp_path / "a.glb", "--from", tmp_path / "keys.json",
               "--rig", "none", "--names", "template", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["frames"] == 3
    doc = _glb_json(tmp_path / "a.glb")
    assert doc["animations"][0]["channels"][0]["target"]["path"] == "weights"
    assert doc["accessors"][doc["animations"][0]["samplers"][0]["input"]]["max"] == [1.0]


def test_animate_live_link_face_csv_on_the_default_head(tmp_path):
    write_llf_csv(tmp_path / "take.csv", 12)
    res = _run("animate", "-o", tmp_path / "take.glb", "--from", tmp_path / "take.csv", "--json")
    assert res.exit_code == 0, res.output
    doc = _glb_json(tmp_path / "take.glb")
    paths = sorted(c["target"]["path"] for c in doc["animations"][0]["channels"])
    assert paths == ["rotation", "weights"]
    names = doc["meshes"][0]["extras"]["targetNames"]
    weights = doc["accessors"][doc["animations"][0]["samplers"][0]["output"]]
    assert len(names) == 52 and weights["count"] == 12 * 52


def test_template_lod_json(tmp_path, tiny_template_dir, monkeypatch):
    monkeypatch.setenv("TOPOS_CACHE_DIR", str(tmp_path / "cache"))
    res = _run("template", "lod", tiny_template_dir, "-o", tmp_path / "lods", "--json")
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)
    assert rec["lods"][0]["verts"] == 162 and (tmp_path / "lods" / "LOD0.obj").is_file()
    assert (tmp_path / "cache" / "lod").is_dir()


@pytest.mark.slow
def test_export_a_head_off_the_model_by_deformation_transfer(tmp_path):
    """A scan-like head (noise off the identity span) in millimetres and turned: rigged by transfer."""
    from topos_cli.io.mesh import MeshData, save_mesh
    from topos_cli.template import load_template

    tpl = load_template()
    rng = np.random.default_rng(7)
    head = tpl.verts + rng.normal(0, 0.03, tpl.verts.shape)
    c, s = np.cos(0.4), np.sin(0.4)
    scan = 10 * head @ np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]).T
    save_mesh(tmp_path / "scan.ply", MeshData.from_template(tpl, scan.astype(np.float32)))
    res = _run("export", tmp_path / "scan.ply", "-o", tmp_path / "scan.glb", "--units", "cm", "--json")
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)
    assert rec["method"] == "deformation-transfer" and rec["morph_targets"] == 52
    out = read_gltf_head(tmp_path / "scan.glb")
    assert np.abs(out.verts - scan).max() < 1e-3
    jaw = out.morphs[out.morph_names.index("jawOpen")]
    assert 30 < np.linalg.norm(jaw, axis=1).max() < 50  # millimetres: the template's 4.2 cm jaw, scaled by 10


def test_eye_joints_turn_only_without_eyelook_channels(tmp_path):
    rot = {"head": [10, 0, 0], "eye_L": [0, 5, 0]}
    for name, weights, joints in (("gaze", {"eyeLookUpLeft": 1.0}, ["head"]), ("bones", {"jawOpen": 1.0},
                                                                               ["eye_L", "head"])):
        keys = {"keyframes": [{"time": 0}, {"time": 1, "weights": weights, "rotations": rot}]}
        (tmp_path / f"{name}.json").write_text(json.dumps(keys))
        res = _run("animate", "-o", tmp_path / f"{name}.glb", "--from", tmp_path / f"{name}.json")
        assert res.exit_code == 0, res.output
        doc = _glb_json(tmp_path / f"{name}.glb")
        turned = sorted(doc["nodes"][c["target"]["node"]]["name"] for c in doc["animations"][0]["channels"]
                        if c["target"]["path"] == "rotation")
        assert turned == joints
