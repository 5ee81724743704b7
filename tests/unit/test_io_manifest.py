import json

import pytest

from topos_cli.errors import UsageError
from topos_cli.io.manifest import Shard, merge_manifest, read_jsonl, read_manifest, split_for


def test_shard_parse_and_partition():
    assert Shard.parse(None) == Shard(0, 1) and Shard.parse("2/4") == Shard(2, 4)
    for bad in ("4/4", "x/2", "1", "-1/3", "0/0"):
        with pytest.raises(UsageError):
            Shard.parse(bad)
    ids = [f"s{i:04d}" for i in range(400)]
    owners = [[k for k in range(4) if Shard(k, 4).owns(i)] for i in ids]
    assert all(len(o) == 1 for o in owners)  # every id in exactly one shard
    counts = [sum(o == [k] for o in owners) for k in range(4)]
    assert min(counts) > 70  # hash spreads items (expected 100 each)


def test_split_is_a_function_of_the_id():
    splits = [split_for(f"s{i}") for i in range(2000)]
    assert splits == [split_for(f"s{i}") for i in range(2000)]
    assert 0.85 < splits.count("train") / 2000 < 0.95 and splits.count("test") > 40


def test_manifest_paths_are_relative_on_disk_absolute_in_memory(tmp_path):
    merge_manifest(tmp_path, [{"id": "b", "mesh": str(tmp_path / "items/b/mesh.ply")}])
    merge_manifest(tmp_path, [{"id": "a", "mesh": str(tmp_path / "items/a/mesh.ply")}])
    lines = [json.loads(x) for x in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert [r["id"] for r in lines] == ["a", "b"] and lines[0]["mesh"] == "items/a/mesh.ply"
    assert read_manifest(tmp_path)[1]["mesh"] == str((tmp_path / "items/b/mesh.ply").resolve())


def test_bad_jsonl_names_the_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"id": 1}\n\nnot json\n')
    with pytest.raises(UsageError, match="line 3"):
        read_jsonl(path)


def test_shards_write_their_own_files_and_readers_merge_them(tmp_path):
    from topos_cli.io.manifest import consolidate, read_meta, write_meta

    for k, ids in ((0, ["a", "c"]), (1, ["b"])):
        shard = Shard(k, 2)
        merge_manifest(tmp_path, [{"id": i, "mesh": str(tmp_path / f"items/{i}.ply")} for i in ids], shard)
        write_meta(tmp_path, {"seed": 0, "shard": f"{k}/2"}, shard)
    assert not (tmp_path / "manifest.jsonl").exists()  # no shard touched a shared file
    assert [r["id"] for r in read_manifest(tmp_path)] == ["a", "b", "c"]
    assert [s["shard"] for s in read_meta(tmp_path)["shards"]] == ["0/2", "1/2"]
    merge_manifest(tmp_path, [{"id": "a", "mesh": str(tmp_path / "items/a2.ply")}], Shard(0, 2))  # a resumed shard
    assert read_manifest(tmp_path)[0]["mesh"].endswith("a2.ply") and len(read_manifest(tmp_path)) == 3
    summary = consolidate(tmp_path)
    assert summary["records"] == 3 and summary["shards"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.jsonl", "meta.json"]
    assert [r["id"] for r in read_manifest(tmp_path)] == ["a", "b", "c"]


def test_paths_outside_the_folder_are_stored_relative_too(tmp_path):
    parent = tmp_path / "aug" / "items" / "x" / "mesh.ply"
    merge_manifest(tmp_path / "views", [{"id": "v", "mesh": str(parent),
                                         "passes": {"color": str(tmp_path / "views/items/v.png")},
                                         "texture": {"albedo": str(tmp_path / "tex/a.png"), "params": {"tone": 3}}}])
    stored = json.loads((tmp_path / "views/manifest.jsonl").read_text())
    assert stored["mesh"] == "../aug/items/x/mesh.ply" and stored["passes"]["color"] == "items/v.png"
    assert stored["texture"] == {"albedo": "../tex/a.png", "params": {"tone": 3}}
    back = read_manifest(tmp_path / "views")[0]
    assert back["mesh"] == str(parent.resolve()) and back["texture"]["albedo"] == str((tmp_path / "tex/a.png").resolve())


def test_empty_stdin_is_a_usage_error(monkeypatch):
    import io

    from topos_cli.io.manifest import resolve_inputs

    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(UsageError, match="nothing was read from stdin"):
        resolve_inputs("-")
