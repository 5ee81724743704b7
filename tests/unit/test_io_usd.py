"""USD export: UsdSkel blend shapes round-trip in template order; usd-core's validators pass; USDZ packs textures."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

pytest.importorskip("pxr", reason="usd-core is not installed (pip install usd-core)")

from topos_cli.io.gltf import Animation  # noqa: E402
from topos_cli.io.usd import read_usd_head, usd_problems, write_usd  # noqa: E402
from topos_cli.pipelines.head_asset import build_head_asset, named_targets, texture_maps  # noqa: E402
from topos_cli.template import load_template  # noqa: E402


@pytest.fixture(scope="module")
def asset():
    tpl = load_template()
    return tpl, build_head_asset(tpl, tpl.verts)[0]


def test_usda_round_trip_and_validators(asset, tmp_path):
    tpl, head_asset = asset
    maps, _ = texture_maps(tpl, None)
    path = write_usd(tmp_path / "head.usda", head_asset, maps)
    assert (tmp_path / "head_textures" / "albedo.png").is_file()
    assert usd_problems(path) == []
    head = read_usd_head(path)
    assert np.abs(head.verts - tpl.verts).max() < 1e-4 and np.array_equal(head.faces, tpl.faces)
    names, deltas = named_targets(tpl, tpl.bases["expression"], "arkit")
    assert head.morph_names == names and np.abs(head.morphs - deltas).max() < 1e-4
    text = path.read_text()
    assert "UsdPreviewSurface" in text and 'uniform token[] joints = ["root", "root/neck"' in text


def test_usdz_packs_textures_and_animation(asset, tmp_path):
    tpl, head_asset = asset
    maps, _ = texture_maps(tpl, None)
    times = np.arange(4) / 60.0
    weights = np.zeros((4, len(head_asset.morph_names)), np.float32)
    weights[:, head_asset.morph_names.index("jawOpen")] = [0, 0.5, 1, 0.5]
    anim = Animation(times, weights, {"head": np.tile([0, 0.1, 0, 0.995], (4, 1))})
    path = write_usd(tmp_path / "head.usdz", head_asset, maps, units="cm", animation=anim)
    with zipfile.ZipFile(path) as zf:
        assert sorted(n.split("/")[-1] for n in zf.namelist()) == ["albedo.png", "head.usdc", "normal.png",
                                                                  "roughness.png"]
    assert usd_problems(path) == []
    head = read_usd_head(path)
    assert head.meta["units"] == "cm" and np.abs(head.verts - tpl.verts).max() < 1e-5
