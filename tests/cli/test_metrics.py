"""`topos metrics`: JSON/CSV reports, folders by stem, workers and shards, --icp, per-vertex errors, errors."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.unit.test_geometry_align import toy_head
from topos_cli.cli.main import app
from topos_cli.geometry.align import rotation_from_euler
from topos_cli.io.mesh import MeshData, save_mesh

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def folders(tmp_path):
    """pred/ and gt/ with three pairs (offsets 0, 0.1, 0.3 along +Z) and one unmatched file on each side."""
    verts, faces = toy_head(3)
    (tmp_path / "pred").mkdir()
    (tmp_path / "gt").mkdir()
    for name, dz in (("a", 0.0), ("b", 0.1), ("c", 0.3)):
        save_mesh(tmp_path / "gt" / f"{name}.obj", MeshData(verts=verts.astype(np.float32), faces=faces))
        moved = (verts + np.array([0.0, 0.0, dz])).astype(np.float32)
        save_mesh(tmp_path / "pred" / f"{name}.ply", MeshData(verts=moved, faces=faces))
    save_mesh(tmp_path / "pred" / "only_pred.obj", MeshData(verts=verts.astype(np.float32), faces=faces))
    save_mesh(tmp_path / "gt" / "only_gt.obj", MeshData(verts=verts.astype(np.float32), faces=faces))
    return tmp_path / "pred", tmp_path / "gt", verts, faces


def test_help_has_an_example():
    res = _run("metrics", "--help")
    assert res.exit_code == 0 and "topos metrics --icp" in res.stdout


def test_single_pair_json_has_values_convention_and_per_vertex_error(folders):
    pred, gt, verts, _ = folders
    res = _run("metrics", pred / "b.ply", gt / "b.obj", "--json", "--samples", 4000, "--thresholds", "0.05")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["convention"]["chamfer_l1"].startswith("sum") and report["convention"]["samples"] == 4000
    row = report["pairs"][0]
    diag = np.linalg.norm(verts.max(0) - verts.min(0))
    assert row["v2v_mean"] == pytest.approx(0.1 / diag, rel=1e-4)  # every vertex moved by 0.1
    assert row["v2v_max"] == pytest.approx(0.1 / diag, rel=1e-4)
    assert 0 < row["chamfer_l1"] < 0.05 and row["normal_consistency"] > 0.95
    assert [f["threshold"] for f in row["fscores"]] == [0.01, 0.05] and row["fscores"][1]["f"] > 0.99
    assert report["summary"]["chamfer_l1"]["mean"] == row["chamfer_l1"]
    assert "chamfer_l1" in res.stderr  # the table goes to stderr


def test_folders_csv_unmatched_exit_3(folders):
    pred, gt, _, _ = folders
    res = _run("metrics", pred, gt, "--csv", "--samples", 2000)
    assert res.exit_code == 3
    assert "only_pred" in res.stderr and "only_gt" in res.stderr
    rows = list(csv.DictReader(io.StringIO(res.stdout)))
    assert [r["id"] for r in rows] == ["a", "b", "c", "mean", "std"]
    v2v = [float(r["v2v_mean"]) for r in rows[:3]]
    assert v2v[0] == 0.0 and v2v[1] < v2v[2]
    assert float(rows[3]["v2v_mean"]) == pytest.approx(np.mean(v2v), rel=1e-6)


def test_workers_and_shards_give_the_same_rows(folders):
    pred, gt, _, _ = folders
    serial = json.loads(_run("metrics", pred, gt, "--json", "--samples", 1500).stdout)
    parallel = json.loads(_run("metrics", pred, gt, "--json", "--samples", 1500, "--workers", 2).stdout)
    assert serial["pairs"] == parallel["pairs"]
    shards = [
        json.loads(_run("metrics", pred, gt, "--json", "--samples", 1500, "--shard", f"{k}/2").stdout)
        for k in range(2)
    ]
    merged = sorted((r for s in shards for r in s["pairs"]), key=lambda r: r["id"])
    assert merged == serial["pairs"]


def test_icp_recovers_a_moved_copy(tmp_path):
    verts, faces = toy_head(3)
    rot = rotation_from_euler(120.0, 10.0, 0.0)
    save_mesh(tmp_path / "gt.obj", MeshData(verts=verts.astype(np.float32), faces=faces))
    moved = (2.0 * verts @ rot.T + 5.0).astype(np.float32)
    save_mesh(tmp_path / "pred.obj", MeshData(verts=moved, faces=faces))
    plain = json.loads(_run("metrics", tmp_path / "pred.obj", tmp_path / "gt.obj", "--json").stdout)
    res = _run("metrics", tmp_path / "pred.obj", tmp_path / "gt.obj", "--icp", "--json", "--tilts", "0")
    assert res.exit_code == 0, res.output
    aligned = json.loads(res.stdout)["pairs"][0]
    assert plain["pairs"][0]["chamfer_l1"] > 0.2
    assert aligned["chamfer_l1"] < 0.03 and aligned["v2v_max"] < 1e-3
    assert aligned["align"]["scale"] == pytest.approx(0.5, rel=1e-3)


def test_bad_inputs_exit_2(tmp_path, folders):
    pred, gt, _, _ = folders
    res = _run("metrics", tmp_path / "nope.obj", gt / "a.obj")
    assert res.exit_code == 2 and "does not exist" in res.stderr
    empty = tmp_path / "empty.obj"
    empty.write_text("")
    res = _run("metrics", empty, gt / "a.obj")
    assert res.exit_code == 2 and "empty" in res.stderr and "Traceback" not in res.output
    res = _run("metrics", pred / "a.ply", gt / "a.obj", "--threshold", "0")
    assert res.exit_code == 2
    far = tmp_path / "far.obj"
    far.write_text("v 100 100 100\nv 101 100 100\nv 100 101 100\nf 1 2 3\n")
    res = _run("metrics", far, gt / "a.obj")
    assert res.exit_code == 2 and "bounding box" in res.stderr


def test_images_psnr_ssim_json_and_missing_weights_exit_2(tmp_path, monkeypatch):
    from topos_cli.io.image import write_png

    monkeypatch.delenv("TOPOS_WEIGHTS", raising=False)
    rng = np.random.default_rng(0)
    for name in ("x", "y"):
        img = (rng.random((20, 20, 3)) * 255).astype(np.uint8)
        write_png(tmp_path / "p" / f"{name}.png", img)
        write_png(tmp_path / "g" / f"{name}.png", np.clip(img.astype(int) + 10, 0, 255).astype(np.uint8))
    res = _run("metrics", "--images", tmp_path / "p", tmp_path / "g", "--select", "psnr,ssim", "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["kind"] == "images" and [r["id"] for r in report["pairs"]] == ["x", "y"]
    assert 25 < report["summary"]["psnr"]["mean"] < 30 and report["summary"]["ssim"]["mean"] < 1.0
    res = _run("metrics", "--images", tmp_path / "p", tmp_path / "g", "--select", "lpips", "--weights-dir", tmp_path)
    assert res.exit_code == 2 and "alexnet-owt-7be5be79.pth" in res.stderr and "Traceback" not in res.output
