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
