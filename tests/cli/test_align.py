"""`topos align`: single pairs in several formats, folders paired by stem, resume, GLB scene root, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.unit.test_geometry_align import toy_head
from topos_cli.cli.main import app
from topos_cli.geometry.align import rotation_error_deg, rotation_from_euler
from topos_cli.io.mesh import MeshData, load_mesh, save_mesh

runner = CliRunner()
FAST = ["--tilts", "0"]  # a smaller start grid keeps these tests quick; the defaults are tested in unit/
PLUMBING = ["--protocol", "topos", "--yaws", "0", "--scales", "1", "--seed-iters", "3", "--final-iters", "3"]


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _pair(tmp_path, pred_name="pred.obj", gt_name="gt.ply", yaw=150.0, scale=0.01):
    verts, faces = toy_head(3)
    rot = rotation_from_euler(yaw, 5.0, 0.0)
    pred = (scale * verts @ rot.T + np.array([0.3, -0.2, 0.1])).astype(np.float32)
    normals = np.tile(np.array([[0.0, 0.0, 1.0]], np.float32), (len(verts), 1))
    save_mesh(tmp_path / pred_name, MeshData(verts=pred, faces=faces, normals=normals))
    save_mesh(tmp_path / gt_name, MeshData(verts=verts.astype(np.float32), faces=faces))
    return tmp_path / pred_name, tmp_path / gt_name, verts, faces, rot


def test_help_has_an_example():
    res = _run("align", "--help")
    assert res.exit_code == 0 and "topos align pred.obj scan.ply" in res.stdout


def test_single_pair_json_transform_and_kept_connectivity(tmp_path):
    pred, gt, verts, faces, rot = _pair(tmp_path)
    out = tmp_path / "aligned.obj"
    res = _run("align", pred, gt, "-o", out, "--json", *FAST)
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)
    assert rec["mesh"] == str(out.resolve()) and rec["protocol"] == "robust"
    assert np.asarray(rec["matrix"]).shape == (4, 4)
    assert rec["scale"] * 0.01 == np.float64(rec["scale"] * 0.01)  # plain JSON numbers
    assert abs(rec["scale"] * 0.01 - 1.0) < 1e-3
    assert rotation_error_deg(np.asarray(rec["rotation"]), rot.T) < 0.1
    moved = load_mesh(out)
    assert np.array_equal(moved.faces, faces)  # connectivity and vertex order kept
    diag = np.linalg.norm(verts.max(0) - verts.min(0))
    assert np.abs(moved.verts - verts).max() / diag < 1e-3
    # normals are rotated by R, not scaled: still unit length, now R @ +Z
    expected = np.asarray(rec["rotation"]) @ np.array([0.0, 0.0, 1.0])
    assert np.allclose(moved.normals, expected, atol=1e-5)


def test_topos_protocol_and_options(tmp_path):
    pred, gt, _, _, rot = _pair(tmp_path, yaw=95.0, scale=1.0)
    res = _run(
        "align",
        pred,
        gt,
        "-o",
        tmp_path / "a.ply",
        "--protocol",
        "topos",
        "--yaws",
        "0,270",
        "--scales",
        "1",
        "--seed-iters",
        "10",
        "--final-iters",
        "60",
        "--json",
    )
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)
    assert rec["protocol"] == "topos" and rec["seed"]["yaw_deg"] == 270.0
    assert rec["iterations"] <= 60
    # the paper's one-way trimmed ICP lands near, not on, the answer (README "Alignment"): ~9 degrees here
    assert rotation_error_deg(np.asarray(rec["rotation"]), rot.T) < 15.0


def test_folders_unmatched_exit_3_and_resume(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "g").mkdir()
    _pair(tmp_path, "p/a.obj", "g/a.obj")
    _pair(tmp_path, "p/b.obj", "g/b.obj", yaw=30.0)
    _pair(tmp_path, "p/lonely.obj", "g/other.obj")
    out = tmp_path / "out"
    res = _run("align", tmp_path / "p", tmp_path / "g", "-o", out, *PLUMBING)
    assert res.exit_code == 3, res.output
    assert "lonely" in res.stderr and "other" in res.stderr
    assert sorted(p.name for p in out.glob("*.obj")) == ["a.obj", "b.obj"]
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert [r["id"] for r in manifest] == ["a", "b"] and all("matrix" in r for r in manifest)
    before = (out / "a.obj").stat().st_mtime_ns
    res = _run("align", tmp_path / "p", tmp_path / "g", "-o", out, "--json", *PLUMBING)
    assert res.exit_code == 3
    assert (out / "a.obj").stat().st_mtime_ns == before  # resumed: existing outputs are not redone
    assert len(res.stdout.splitlines()) == 2 and "matrix" in json.loads(res.stdout.splitlines()[0])


def test_glb_transform_goes_on_the_scene_root(tmp_path):
    import trimesh

    GLTF2 = pytest.importorskip("pygltflib").GLTF2

    pred, gt, verts, _, _ = _pair(tmp_path, "pred.glb", "gt.obj")
    out = tmp_path / "aligned.glb"
    res = _run("align", pred, gt, "-o", out, "--json", *FAST)
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)
    gltf = GLTF2().load(str(out))
    root = gltf.nodes[gltf.scenes[gltf.scene or 0].nodes[0]]
    assert root.name == "topos_align"
    assert np.allclose(np.asarray(root.matrix).reshape(4, 4).T, rec["matrix"])
    assert len(gltf.meshes) == len(GLTF2().load(str(pred)).meshes)
    scene = trimesh.load(out, process=False)
    moved = scene.to_geometry() if hasattr(scene, "to_geometry") else scene.dump(concatenate=True)
    diag = np.linalg.norm(verts.max(0) - verts.min(0))
    assert np.abs(np.sort(moved.vertices, 0) - np.sort(verts, 0)).max() / diag < 1e-3


def test_bad_inputs_exit_2_with_one_line(tmp_path):
    pred, gt, _, faces, _ = _pair(tmp_path)
    res = _run("align", tmp_path / "missing.obj", gt, "-o", tmp_path / "o.obj")
    assert res.exit_code == 2 and "does not exist" in res.stderr and "Traceback" not in res.output
    bad = tmp_path / "nan.obj"
    bad.write_text("v 0 0 0\nv 1 0 nan\nv 0 1 0\nf 1 2 3\n")
    res = _run("align", bad, gt, "-o", tmp_path / "o.obj")
    assert res.exit_code == 2 and "NaN" in res.stderr
    res = _run("align", pred, tmp_path, "-o", tmp_path / "o.obj")
    assert res.exit_code == 2 and "two mesh files or two folders" in res.stderr
    res = _run("align", pred, gt, "-o", tmp_path / "o.obj", "--trim", "1.5")
    assert res.exit_code == 2 and "--trim" in res.stderr
    res = _run("align", pred, gt, "-o", tmp_path / "o.obj", "--yaws", "a,b")
    assert res.exit_code == 2 and "--yaws" in res.stderr


def test_obj_materials_uvs_and_groups_are_kept_verbatim(tmp_path):
    verts, faces = toy_head(2)
    rot = rotation_from_euler(200.0, 0.0, 0.0)
    moved = 0.5 * verts @ rot.T + 1.0
    lines = ["# made by hand", "mtllib skin.mtl", "o head"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in moved]
    lines += [f"vt {i / len(verts):.4f} 0.5" for i in range(len(verts))]
    lines += ["g front", "usemtl skin"]
    half = len(faces) // 2
    lines += [f"f {a + 1}/{a + 1} {b + 1}/{b + 1} {c + 1}/{c + 1}" for a, b, c in faces[:half]]
    lines += ["g back", "usemtl hair"]
    lines += [f"f {a + 1}/{a + 1} {b + 1}/{b + 1} {c + 1}/{c + 1}" for a, b, c in faces[half:]]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "pred.obj").write_text("\n".join(lines) + "\n")
    (tmp_path / "in" / "skin.mtl").write_text("newmtl skin\nmap_Kd skin.png\nnewmtl hair\n")
    (tmp_path / "in" / "skin.png").write_bytes(b"not really a png")
    save_mesh(tmp_path / "gt.ply", MeshData(verts=verts.astype(np.float32), faces=faces))
    out = tmp_path / "out" / "aligned.obj"
    res = _run("align", tmp_path / "in" / "pred.obj", tmp_path / "gt.ply", "-o", out, "--json", *FAST)
    assert res.exit_code == 0, res.output
    new = out.read_text().splitlines()
    assert [ln for ln in new if not ln.startswith("v ")] == [ln for ln in lines if not ln.startswith("v ")]
    assert (tmp_path / "out" / "skin.mtl").is_file() and (tmp_path / "out" / "skin.png").is_file()
    pos = np.array([[float(v) for v in ln.split()[1:4]] for ln in new if ln.startswith("v ")])
    diag = np.linalg.norm(verts.max(0) - verts.min(0))
    assert np.abs(pos - verts).max() / diag < 1e-3


def test_result_does_not_depend_on_the_file_names(tmp_path):
    """The sampling stream comes from --seed alone (issue 14): renamed copies of a pair align identically."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    pred_a, gt_a, *_ = _pair(tmp_path / "a", "head.obj", "scan.ply")
    pred_b, gt_b, *_ = _pair(tmp_path / "b", "x7.obj", "other.ply")
    recs = []
    for pred, gt in ((pred_a, gt_a), (pred_b, gt_b)):
        res = _run("align", pred, gt, "-o", pred.parent / "out.ply", "--json", "--seed", "3", *FAST)
        assert res.exit_code == 0, res.output
        recs.append(json.loads(res.stdout))
    assert recs[0]["matrix"] == recs[1]["matrix"] and recs[0]["residual"] == recs[1]["residual"]


def test_degenerate_mesh_is_one_line_exit_2(tmp_path):
    """Three identical vertices: a usage error naming the pair, no traceback, no output written."""
    _, gt, *_ = _pair(tmp_path)
    bad = tmp_path / "dot.ply"
    save_mesh(bad, MeshData(verts=np.ones((3, 3), np.float32), faces=np.array([[0, 1, 2]])))
    res = _run("align", bad, gt, "-o", tmp_path / "out.ply")
    assert res.exit_code == 2
    assert "Traceback" not in res.output and "dot.ply" in res.output
    assert not (tmp_path / "out.ply").exists()
