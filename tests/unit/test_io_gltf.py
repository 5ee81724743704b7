"""glTF export: round trip in template order, morph targets = expression deltas, valid for Khronos' validator."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.gltf_validator import problems, unavailable_reason, validate, validator_path
from topos_cli.geometry.asset import HeadAsset
from topos_cli.io.gltf import Animation, read_gltf_head, write_gltf
from topos_cli.pipelines.head_asset import build_head_asset, named_targets, texture_maps
from topos_cli.template import load_template


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import os

    old = os.environ.get("TOPOS_CACHE_DIR")
    os.environ["TOPOS_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    tpl = load_template()
    asset, info = build_head_asset(tpl, tpl.verts, lods=[0, 1, 3])
    yield tpl, asset, info, tmp_path_factory.mktemp("gltf")
    if old is None:
        os.environ.pop("TOPOS_CACHE_DIR")
    else:
        os.environ["TOPOS_CACHE_DIR"] = old


def _json(path) -> dict:
    data = path.read_bytes()
    n = int(np.frombuffer(data[12:16], "<u4")[0])
    return json.loads(data[20:20 + n])


def test_round_trip_template_order_and_morph_deltas(setup):
    tpl, asset, info, out = setup
    path = write_gltf(out / "head.glb", asset)
    head = read_gltf_head(path)
    assert head.meta["units"] == "m" and head.lods == 3 and len(head.morph_names) == 52
    assert np.abs(head.verts - tpl.verts).max() < 1e-4  # cm, after the metre round trip in float32
    assert np.array_equal(head.faces, tpl.faces)
    names, deltas = named_targets(tpl, tpl.bases["expression"], "arkit")
    assert head.morph_names == names
    assert np.abs(head.morphs - deltas).max() < 1e-4
    assert head.morph_names.index("eyeBlinkLeft") >= 0 and not head.morphs[names.index("tongueOut")].any()
    doc = _json(path)
    assert doc["materials"][0]["pbrMetallicRoughness"]["metallicFactor"] == 0.0
    assert {"KHR_materials_specular", "MSFT_lod"} <= set(doc["extensionsUsed"])
    assert [n["name"] for n in doc["nodes"] if "mesh" not in n][:6] == ["root", "neck", "head", "jaw", "eye_L", "eye_R"]
    position = doc["accessors"][doc["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]
    height = position["max"][1] - position["min"][1]
    assert 0.25 < height < 0.4  # metres: a head and neck (0.34 m), not a 34 m giant


def test_browinnerup_is_the_sum_of_its_halves(setup):
    tpl, asset, info, out = setup
    own = [str(n) for n in tpl.bases["expression_names"]]
    e = tpl.bases["expression"]
    k = asset.morph_names.index("browInnerUp")
    assert np.allclose(asset.lods[0].morphs[k], e[own.index("browInnerUp_L")] + e[own.index("browInnerUp_R")])


def test_units_cm_and_gltf_text_with_bin(setup):
    tpl, asset, info, out = setup
    small = HeadAsset(asset.name, asset.lods[:1], asset.morph_names[:2], asset.skeleton, asset.template)
    small.lods[0] = type(asset.lods[0])(**{**vars(asset.lods[0]), "morphs": asset.lods[0].morphs[:2]})
    path = write_gltf(out / "head_cm.gltf", small, units="cm")
    assert (out / "head_cm.bin").is_file()
    head = read_gltf_head(path)
    assert head.meta["units"] == "cm" and np.abs(head.verts - tpl.verts).max() < 1e-5


def test_mesh_loader_welds_the_export_back_into_template_order(setup):
    from topos_cli.io.mesh import load_mesh

    tpl, asset, info, out = setup
    path = write_gltf(out / "plain.glb", HeadAsset("plain", asset.lods[:1], [], None, asset.template),
                      units="cm")
    mesh = load_mesh(path)
    assert mesh.verts.shape == tpl.verts.shape and np.abs(mesh.verts - tpl.verts).max() < 1e-5
    full = load_mesh(write_gltf(out / "full.glb", asset))  # metres, parts, LODs: still the skin in cm
    assert np.abs(full.verts - tpl.verts).max() < 1e-4 and np.array_equal(full.faces, tpl.faces)


def _animation(asset: HeadAsset) -> Animation:
    times = np.linspace(0, 1, 5)
    weights = np.zeros((5, len(asset.morph_names)))
    weights[:, asset.morph_names.index("jawOpen")] = np.sin(times * np.pi)
    quat = np.tile([0.0, 0.0, 0.0, 1.0], (5, 1))
    return Animation(times, weights, {"head": quat, "eye_L": quat})


def _assert_valid(files: dict) -> None:
    for name, path in files.items():
        report = validate(path)
        assert report["issues"]["numErrors"] == 0 and report["issues"]["numWarnings"] == 0, (name, problems(report))


@pytest.mark.skipif(validator_path() is None, reason=unavailable_reason())
def test_khronos_validator_reports_no_errors_or_warnings(setup):
    """One file with everything (textures, 52 morph targets, skin, LOD0/1/3, animation) and a bare .gltf."""
    tpl, asset, info, out = setup
    maps, _ = texture_maps(tpl, None)
    bare = HeadAsset("bare", asset.lods[2:], [], None, asset.template)
    _assert_valid({"everything": write_gltf(out / "v_all.glb", asset, maps, animation=_animation(asset)),
                   "bare gltf": write_gltf(out / "v_bare.gltf", bare)})


@pytest.mark.slow
@pytest.mark.skipif(validator_path() is None, reason=unavailable_reason())
def test_khronos_validator_on_every_variant(setup):
    tpl, asset, info, out = setup
    maps, _ = texture_maps(tpl, None)
    files = {"untextured": write_gltf(out / "v_plain.glb", asset),
             "textured": write_gltf(out / "v_tex.glb", asset, maps),
             "animated": write_gltf(out / "v_anim.glb", asset, maps, animation=_animation(asset)),
             "gltf": write_gltf(out / "v_text.gltf", asset, maps)}
    for k in range(len(asset.lods)):  # each LOD alone as its own file
        single = HeadAsset(f"lod{k}", [asset.lods[k]], asset.morph_names, asset.skeleton, asset.template)
        files[f"LOD{k}"] = write_gltf(out / f"v_lod{k}.glb", single, maps)
    _assert_valid(files)


def test_parts_follow_the_rig_and_the_targets(setup):
    tpl, asset, info, out = setup
    parts, sk = asset.parts, asset.skeleton
    assert info["parts"] == tpl.parts.num_verts and parts.colors.shape == (tpl.parts.num_verts, 3)
    groups = tpl.parts.spec["groups"]
    lower = tpl.parts.vertex_group == groups.index("lower")
    upper = tpl.parts.vertex_group == groups.index("upper")
    assert (parts.joints[lower, 0] == sk.index("jaw")).all() and (parts.joints[upper, 0] == sk.index("head")).all()
    jaw = parts.morphs[asset.morph_names.index("jawOpen")]
    assert np.linalg.norm(jaw[lower], axis=1).mean() > 1.0 > np.linalg.norm(jaw[upper], axis=1).mean()
    ball = tpl.parts.vertex_group == groups.index("eye_left")
    centre = sk.positions[sk.index("eye_L")]
    look = parts.verts[ball] + parts.morphs[asset.morph_names.index("eyeLookUpLeft")][ball]
    radius = np.linalg.norm(parts.verts[ball] - centre, axis=1)
    change = np.abs(np.linalg.norm(look - centre, axis=1) - radius)  # a rotation about the eye joint keeps it
    assert np.median(change) < 1e-5 and change.max() < 0.03  # (a few vertices also carry the basis' own deltas)
    assert np.abs(look - parts.verts[ball]).max() > 0.3  # ... that moves the eyeball
    doc = _json(write_gltf(out / "parts.glb", asset))
    assert [len(m["primitives"]) for m in doc["meshes"]] == [2, 2, 2]  # every LOD shows the same parts
    assert doc["meshes"][0]["primitives"][1]["attributes"] == doc["meshes"][2]["primitives"][1]["attributes"]


def test_texture_folder_maps_are_found_and_embedded(setup, tmp_path):
    from topos_cli.io.image import write_png

    tpl, asset, info, out = setup
    items = tmp_path / "tex" / "items"
    items.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, shape in (("albedo", (16, 16, 3)), ("normal", (16, 16, 3)), ("roughness", (16, 16)),
                        ("specular", (16, 16))):
        write_png(items / f"tex007_{name}.png", rng.integers(0, 255, shape, dtype=np.uint8))
    maps, paths = texture_maps(tpl, tmp_path / "tex")
    assert sorted(paths) == ["albedo", "normal", "roughness", "specular"] and "tex007_" in paths["albedo"]
    assert maps.roughness.shape == (16, 16) and maps.png["albedo"] == (items / "tex007_albedo.png").read_bytes()
    doc = _json(write_gltf(out / "tex.glb", HeadAsset("t", asset.lods[2:], [], None, asset.template), maps))
    material = doc["materials"][0]
    assert {"baseColorTexture", "metallicRoughnessTexture"} <= set(material["pbrMetallicRoughness"])
    assert "normalTexture" in material and "specularTexture" in material["extensions"]["KHR_materials_specular"]
