import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from topos_cli.cli.main import app
from topos_cli.io.manifest import read_manifest
from topos_cli.io.mesh import load_mesh

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_augment_writes_dataset_and_is_bit_identical_for_a_seed(tmp_path, tiny_template, tiny_template_dir):
    outs = []
    for name in ("a", "b"):
        res = _run("augment", "-o", tmp_path / name, "-t", tiny_template_dir, "--copies", 3, "--seed", 5,
                   "--identity-sigma", 1, "--expressions", 2, "--json")
        assert res.exit_code == 0, res.output
        records = [json.loads(line) for line in res.stdout.splitlines()]
        assert [r["id"] for r in records] == ["tiny-head-aug000", "tiny-head-aug001", "tiny-head-aug002"]
        outs.append(tmp_path / name)
    for rec in (outs[0] / "manifest.jsonl").read_text().splitlines():
        rel = json.loads(rec)["mesh"]
        assert (outs[0] / rel).read_bytes() == (outs[1] / rel).read_bytes()
        mesh = load_mesh(outs[0] / rel)
        assert np.array_equal(mesh.faces, tiny_template.faces)  # template connectivity kept
        assert not np.allclose(mesh.verts, tiny_template.verts)
    meta = json.loads((outs[0] / "meta.json").read_text())
    assert meta["seed"] == 5 and meta["template_hash"] == tiny_template.hash


def test_shards_partition_items_and_merge_to_the_full_run(tmp_path, tiny_template_dir):
    full = _run("augment", "-o", tmp_path / "full", "-t", tiny_template_dir, "--copies", 6, "--seed", 1)
    assert full.exit_code == 0
    ids = set()
    for k in range(2):
        res = _run("augment", "-o", tmp_path / "sharded", "-t", tiny_template_dir, "--copies", 6, "--seed", 1,
                   "--shard", f"{k}/2", "--json")
        assert res.exit_code == 0, res.output
        shard_ids = {json.loads(line)["id"] for line in res.stdout.splitlines()}
        assert not ids & shard_ids
        ids |= shard_ids
    assert len(ids) == 6
    sharded = tmp_path / "sharded"
    assert sorted(p.name for p in sharded.glob("*.shard-*")) == [
        "manifest.shard-0-of-2.jsonl", "manifest.shard-1-of-2.jsonl", "meta.shard-0-of-2.json",
        "meta.shard-1-of-2.json"]  # each shard writes only its own files
    full_records = read_manifest(tmp_path / "full")
    assert [r["id"] for r in read_manifest(sharded)] == [r["id"] for r in full_records]  # readers merge shards
    res = _run("manifest", "merge", sharded)
    assert res.exit_code == 0, res.output
    assert not list(sharded.glob("*.shard-*"))
    assert (tmp_path / "full/manifest.jsonl").read_text() == (sharded / "manifest.jsonl").read_text()
    assert [s["shard"] for s in json.loads((sharded / "meta.json").read_text())["shards"]] == ["0/2", "1/2"]
    for rec in full_records:  # the same bytes, whatever the shard boundaries
        assert Path(rec["mesh"]).read_bytes() == (sharded / Path(rec["mesh"]).relative_to(tmp_path / "full")).read_bytes()


def test_resume_skips_existing_items(tmp_path, tiny_template_dir):
    _run("augment", "-o", tmp_path / "o", "-t", tiny_template_dir, "--copies", 2)
    mesh = tmp_path / "o/items/tiny-head-aug000/mesh.ply"
    mesh.write_bytes(b"sentinel")
    res = _run("augment", "-o", tmp_path / "o", "-t", tiny_template_dir, "--copies", 2)
    assert res.exit_code == 0 and mesh.read_bytes() == b"sentinel"
    res = _run("augment", "-o", tmp_path / "o", "-t", tiny_template_dir, "--copies", 2, "--force")
    assert res.exit_code == 0 and mesh.read_bytes() != b"sentinel"


def test_bad_base_mesh_is_reported_and_skipped(tmp_path, tiny_template, tiny_template_dir):
    from topos_cli.io.mesh import MeshData, save_mesh

    bases = tmp_path / "bases"
    save_mesh(bases / "good.ply", MeshData.from_template(tiny_template))
    (bases / "broken.obj").write_text("v 0 0 0\n")
    small = tiny_template.faces[:5]
    save_mesh(bases / "wrongtopo.ply", MeshData(tiny_template.verts[: small.max() + 1], small))
    res = _run("augment", bases, "-o", tmp_path / "o", "-t", tiny_template_dir, "--copies", 2)
    assert res.exit_code == 3, res.output
    failures = [json.loads(x) for x in (tmp_path / "o/failures.jsonl").read_text().splitlines()]
    assert {f["id"] for f in failures} == {"broken", "wrongtopo"}
    assert len((tmp_path / "o/manifest.jsonl").read_text().splitlines()) == 2
    assert "Traceback" not in res.output


def test_chain_through_stdin(tmp_path, tiny_template_dir):
    first = _run("augment", "-o", tmp_path / "a", "-t", tiny_template_dir, "--copies", 2, "--json")
    second = runner.invoke(app, ["augment", "-", "-o", str(tmp_path / "b"), "-t", str(tiny_template_dir),
                                 "--copies", "1", "--json"], input=first.stdout)
    assert second.exit_code == 0, second.output
    recs = [json.loads(line) for line in second.stdout.splitlines()]
    assert [r["parent"] for r in recs] == ["tiny-head-aug000", "tiny-head-aug001"]


def test_usage_errors_exit_2_with_one_line(tmp_path, tiny_template_dir):
    for args in (["augment", tmp_path / "missing", "-o", tmp_path / "o", "-t", tiny_template_dir],
                 ["augment", "-o", tmp_path / "o", "-t", tmp_path / "nowhere"],
                 ["augment", "-o", tmp_path / "o", "-t", tiny_template_dir, "--shard", "3/2"]):
        res = _run(*args)
        assert res.exit_code == 2, res.output
        assert "error:" in res.output and "Traceback" not in res.output


def test_single_bad_base_is_a_usage_error(tmp_path, tiny_template_dir):
    (tmp_path / "nan.obj").write_text("v 0 0 nan\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    res = _run("augment", tmp_path / "nan.obj", "-o", tmp_path / "o", "-t", tiny_template_dir)
    assert res.exit_code == 2 and "NaN" in res.output and "Traceback" not in res.output
