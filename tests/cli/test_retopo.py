"""`topos retopo` and `topos train vae` through typer's CliRunner on the tiny template."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh
from typer.testing import CliRunner

from topos_cli.cli.main import app
from topos_cli.io.mesh import load_mesh

runner = CliRunner()


def _run(*args):
    if args and args[0] == "retopo":
        args = (*args, "--points", 4000)  # small scans: fewer samples keep the tests fast
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def scan_path(tmp_path, tiny_template):
    """A remeshed (subdivided), bumped, scaled (mm) and shifted copy of the tiny head."""
    verts = tiny_template.verts.astype(float)
    unit = verts / np.linalg.norm(verts, axis=1, keepdims=True)
    verts = verts + unit * np.exp(-((unit - [0, 0, 1.0]) ** 2).sum(1) / 0.3)[:, None]
    mesh = trimesh.Trimesh(verts * 10.0 + [5.0, -3.0, 20.0], tiny_template.faces, process=False).subdivide()
    path = tmp_path / "scan.obj"
    mesh.export(path)
    return path


def test_retopo_single_scan_json_report(tmp_path, tiny_template, tiny_template_dir, scan_path):
    out = tmp_path / "head.obj"
    res = _run("retopo", scan_path, "-o", out, "-t", tiny_template_dir, "--up", "+Y", "--front", "+Z", "--json")
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout.splitlines()[0])
    assert rec["template_hash"] == tiny_template.hash
    assert rec["alignment"]["scale"] == pytest.approx(0.1, rel=0.05)  # the scan is in mm
    assert set(rec["seconds"]) >= {"align", "bases", "refine", "total"}
    assert rec["ok"] is True and rec["head_supported"] > 0.9
    mesh = load_mesh(out)
    assert np.array_equal(mesh.faces, tiny_template.faces)  # template topology and UVs kept
    assert mesh.uv is not None
    scan = load_mesh(scan_path)
    assert np.abs(mesh.verts.mean(0) - scan.verts.mean(0)).max() < 2.0  # output lies on the scan (mm)
    assert rec["bases_coefficients"] == len(tiny_template.bases["identity"]) + len(tiny_template.bases["expression"])
    res = _run("retopo", scan_path, "-o", tmp_path / "nb.obj", "-t", tiny_template_dir, "--up", "+Y", "--front", "+Z",
               "--no-bases", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.splitlines()[0])["bases_coefficients"] is None


def test_retopo_is_bit_identical_for_a_seed(tmp_path, tiny_template_dir, scan_path):
    for name in ("a.ply", "b.ply"):
        res = _run("retopo", scan_path, "-o", tmp_path / name, "-t", tiny_template_dir, "--up", "+Y",
                   "--front", "+Z", "--seed", 3)
        assert res.exit_code == 0, res.output
    assert (tmp_path / "a.ply").read_bytes() == (tmp_path / "b.ply").read_bytes()


def test_retopo_bad_inputs_exit_2(tmp_path, tiny_template_dir):
    res = _run("retopo", tmp_path / "missing.obj", "-o", tmp_path / "o.obj", "-t", tiny_template_dir)
    assert res.exit_code == 2 and "Traceback" not in res.output
    bad = tmp_path / "nan.obj"
    bad.write_text("v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    res = _run("retopo", bad, "-o", tmp_path / "o.obj", "-t", tiny_template_dir)
    assert res.exit_code == 2 and "Traceback" not in res.output
    res = _run("retopo", bad, "-o", tmp_path / "o.txt", "-t", tiny_template_dir)
    assert res.exit_code == 2
    res = _run("retopo", bad, "-o", tmp_path / "o.obj", "-t", tiny_template_dir, "--up", "sideways")
    assert res.exit_code == 2 and "--up" in res.output


def test_retopo_folder_partial_failure_resume_and_shards(tmp_path, tiny_template_dir, scan_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / "good.obj").write_bytes(scan_path.read_bytes())
    (scans / "broken.obj").write_text("v 0 0 0\n")
    out = tmp_path / "fit"
    res = _run("retopo", scans, "-o", out, "-t", tiny_template_dir, "--up", "+Y", "--front", "+Z", "--json")
    assert res.exit_code == 3, res.output
    failures = [json.loads(x) for x in (out / "failures.jsonl").read_text().splitlines()]
    assert [f["id"] for f in failures] == ["broken"]
    assert (out / "items" / "good" / "mesh.ply").is_file()
    manifest = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    assert [m["id"] for m in manifest] == ["good"]
    (scans / "broken.obj").unlink()
    res = _run("retopo", scans, "-o", out, "-t", tiny_template_dir, "--up", "+Y", "--front", "+Z")
    assert res.exit_code == 0 and "1 already done" in res.output
    ids = []
    for k in range(2):
        res = _run("retopo", scans, "-o", tmp_path / f"s{k}", "-t", tiny_template_dir, "--up", "+Y", "--front", "+Z",
                   "--shard", f"{k}/2", "--json")
        assert res.exit_code == 0, res.output
        ids += [json.loads(x)["id"] for x in res.stdout.splitlines()]
    assert ids == ["good"]


def test_retopo_help_has_example():
    res = _run("retopo", "--help")
    assert res.exit_code == 0 and "topos retopo scan.obj -o head.obj" in res.output


def test_train_vae_two_steps_then_resume(tmp_path, tiny_template_dir):
    run = tmp_path / "run"
    base = ("train", "vae", "-o", run, "-t", tiny_template_dir, "--config", "tiny", "--batch", 2, "--points", 128,
            "--ckpt-every", 2, "--log-every", 1, "--device", "cpu")
    res = _run(*base, "--steps", 2, "--warmup", 4, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["step"] == 2
    first = json.loads((run / "log.jsonl").read_text().splitlines()[0])
    assert first["lr"] == pytest.approx(1e-3 * 2 / 4)  # after one step of a 4-step linear warm-up
    assert (run / "latest").read_text().strip() == "step-000000002"
    res = _run(*base, "--steps", 3)
    assert res.exit_code == 2  # existing run without --resume
    with open(run / "log.jsonl", "a") as fh:  # a step logged after the last checkpoint by a run that was stopped
        fh.write(json.dumps({"step": 3, "total": 1.0}) + "\n")
    res = _run(*base, "--steps", 4, "--resume", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["step"] == 4
    logs = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in logs] == [1, 2, 3, 4] and logs[2]["total"] != 1.0  # step 3 logged once, anew
    out = tmp_path / "fit.obj"
    scan = tmp_path / "scan.obj"
    trimesh.creation.icosphere(3, radius=100.0).export(scan)
    res = _run("retopo", scan, "-o", out, "--checkpoint", run, "-t", tiny_template_dir, "--up", "+Y", "--front",
               "+Z", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.splitlines()[0])["vae_step"] == 4


def test_train_vae_init_fine_tunes_a_checkpoint_with_its_own_loss_weights(tmp_path, tiny_template, tiny_template_dir):
    import torch

    from topos_cli.io.checkpoint import load_model, read_model_json

    common = ("-t", tiny_template_dir, "--batch", 2, "--points", 128, "--ckpt-every", 1, "--log-every", 1,
              "--device", "cpu")
    res = _run("train", "vae", "-o", tmp_path / "base", "--config", "tiny", "--steps", 3, *common)
    assert res.exit_code == 0, res.output
    ft = tmp_path / "ft"
    res = _run("train", "vae", "-o", ft, "--init", tmp_path / "base", "--steps", 1, "--lr", 0.0, "--kl-warmup", 0,
               "--loss-weights", '{"vertex": 10}', "--seed", 1, *common)
    assert res.exit_code == 0, res.output
    meta = read_model_json(ft)
    assert meta["step"] == 1 and meta["init"]["step"] == 3 and meta["loss_weights"] == {"vertex": 10}
    base, tuned = load_model(tmp_path / "base", tiny_template), load_model(ft, tiny_template)
    for (name, a), b in zip(base.state_dict().items(), tuned.state_dict().values(), strict=True):
        if not name.startswith("latent_"):  # lr 0: the weights are the checkpoint's (the latent statistics move)
            assert torch.equal(a, b), name
    first = json.loads((ft / "log.jsonl").read_text().splitlines()[0])
    assert first["total"] == pytest.approx(10 * first["vertex"] + first["normal"] + 5 * first["angle"]
                                           + 5 * first["dihedral"] + 1e-3 * first["kl"], rel=1e-4)
    res = _run("train", "vae", "-o", ft, "--resume", "--steps", 2, "--lr", 0.0, "--kl-warmup", 0, "--seed", 1, *common)
    assert res.exit_code == 0, res.output  # the run keeps the weights it was started with
    last = json.loads((ft / "log.jsonl").read_text().splitlines()[-1])
    assert last["step"] == 2 and last["total"] == pytest.approx(
        10 * last["vertex"] + last["normal"] + 5 * last["angle"] + 5 * last["dihedral"] + 1e-3 * last["kl"], rel=1e-4)
    scan = tmp_path / "scan.obj"
    trimesh.creation.icosphere(3, radius=100.0).export(scan)
    res = _run("retopo", scan, "-o", tmp_path / "fit.obj", "--checkpoint", ft, "-t", tiny_template_dir, "--up", "+Y",
               "--front", "+Z", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.splitlines()[0])["vae_step"] == 3 + 2  # the prior's steps and the fine-tune's
    for extra, word in ((("--loss-weights", '{"chamfer": 1}'), "unknown loss term"),
                        (("--loss-weights", "[1, 2]"), "JSON object"),
                        (("--args", '{"depth": 2}'), "--init checkpoint"),
                        (("--loss-weights", "{vertex"), "not valid JSON")):
        res = _run("train", "vae", "-o", tmp_path / "bad", "--init", tmp_path / "base", "--steps", 1, *common, *extra)
        assert res.exit_code == 2 and word in res.output and "Traceback" not in res.output, res.output
    res = _run("train", "vae", "-o", tmp_path / "bad", "--init", tmp_path / "nothing", "--steps", 1, *common)
    assert res.exit_code != 0 and "Traceback" not in res.output


def test_retopo_landmarks_ljson_pin_the_turn_a_sphere_cannot_show(tmp_path, tiny_template, tiny_template_dir):
    """A round head turned 40 degrees about its up axis: its surface cannot show the turn, its landmarks can."""
    from scipy.spatial.transform import Rotation

    rot = Rotation.from_euler("y", 40, degrees=True).as_matrix()
    verts = tiny_template.verts.astype(float) @ rot.T * 10.0 + [5.0, -3.0, 20.0]  # mm
    scan = tmp_path / "turned.obj"
    trimesh.Trimesh(verts, tiny_template.faces, process=False).export(scan)
    points = verts[tiny_template.landmarks]
    (tmp_path / "turned.ljson").write_text(json.dumps({"landmarks": {"points": points.tolist()}, "labels": []}))
    (tmp_path / "short.ljson").write_text(json.dumps({"landmarks": {"points": points[:60].tolist()}}))
    common = ("-t", tiny_template_dir, "--up", "+Y", "--front", "+Z")
    errors = {}
    for name, extra in (("free", ()), ("pinned", ("--landmarks", tmp_path / "turned.ljson"))):
        res = _run("retopo", scan, "-o", tmp_path / f"{name}.obj", *common, *extra)
        assert res.exit_code == 0, res.output
        fitted = load_mesh(tmp_path / f"{name}.obj").verts[tiny_template.landmarks]
        errors[name] = np.linalg.norm(fitted - points, axis=1).mean()
    assert errors["free"] > 30.0  # mm: without landmarks the head keeps the --front it was given
    assert errors["pinned"] < 5.0
    res = _run("retopo", scan, "-o", tmp_path / "x.obj", *common, "--landmarks", tmp_path / "short.ljson")
    assert res.exit_code == 2 and "68" in res.output and "Traceback" not in res.output


def test_retopo_json_reports_coverage_per_region(tmp_path, tiny_template, tiny_template_dir, scan_path):
    res = _run("retopo", scan_path, "-o", tmp_path / "c.obj", "-t", tiny_template_dir, "--up", "+Y", "--front", "+Z",
               "--json")
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout.splitlines()[0])
    assert set(rec["coverage"]) == set(tiny_template.regions)  # fraction of each region with scan data under it
    assert all(0.0 <= v <= 1.0 for v in rec["coverage"].values())
    if rec["coverage"]:
        assert max(rec["coverage"].values()) > 0.9  # the scan is the whole (bumped) head
    assert "face" not in rec  # --up/--front: no face search
