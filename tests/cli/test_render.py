"""`topos render` and `topos textures` through typer's CliRunner on the tiny template."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from topos_cli.cli.main import app
from topos_cli.io.image import read_image

runner = CliRunner()


def _run(*args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


@pytest.fixture(scope="module")
def egl():
    from topos_cli.render.raster_gl import gl_available

    if not gl_available():
        pytest.skip("no headless EGL context here (apt-get install libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri)")


def test_help_shows_an_example():
    res = _run("render", "--help")
    assert res.exit_code == 0 and "topos render head.obj -o head.png" in res.output
    assert _run("textures", "--help").exit_code == 0


@pytest.mark.parametrize("backend", ["gl", "torch"])
def test_single_picture_with_data_passes(tmp_path, tiny_template_dir, backend, request):
    if backend == "gl":
        request.getfixturevalue("egl")
    res = _run("render", "-o", tmp_path / "head.png", "-t", tiny_template_dir, "--size", 48, "--backend", backend,
               "--passes", "color,normal,depth,mask,uv,region,visibility", "--json")
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout.splitlines()[0])
    color = read_image(rec["passes"]["color"])
    assert color.shape == (48, 48, 4) and color.dtype == np.uint8
    depth = read_image(rec["passes"]["depth"]).astype(float) * 0.01  # cm (encoding in the module docs)
    dist = np.linalg.norm(rec["camera"]["center"])
    assert abs(depth[24, 24] - (dist - 10.0)) < 0.1  # nearest point of the 10 cm sphere
    mask = read_image(rec["passes"]["mask"]) > 0
    assert np.array_equal(mask, color[..., 3] > 0) and np.array_equal(mask, depth > 0)
    normal = read_image(rec["passes"]["normal"]).astype(float) / 65535 * 2 - 1
    assert normal[24, 24, 2] > 0.95  # world normal at the centre faces the camera (+Z)
    region = read_image(rec["passes"]["region"])
    assert set(np.unique(region[mask])) <= {1, 2, 3, 4} and (region[~mask] == 0).all()
    ids = np.load(rec["passes"]["ids"])
    visible = ids["visible"]
    assert 0.3 < visible.mean() < 0.7  # about the front half of a sphere
    cols, rows = np.floor(ids["vertex_pixels"][visible]).astype(int).T
    assert mask[rows, cols].all()  # visible vertices project onto the mask
    cap = ids["vertex_depth"][visible] < dist - 5  # the part facing the camera (the limb is too steep at 48 px)
    assert np.allclose(depth[rows, cols][cap], ids["vertex_depth"][visible][cap], atol=0.02 * dist)


def test_dataset_mode_manifest_resume_and_seed(tmp_path, tiny_dataset, tiny_template_dir, egl):
    args = ["render", tiny_dataset, "-t", tiny_template_dir, "--per-mesh", 2, "--random-lighting",
            "--random-textures", "--texture-pool", 2, "--texture-size", 32, "--size", 32, "--seed", 3, "--json"]
    res = _run(*args[:1], *args[1:], "-o", tmp_path / "r")
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(records) == 8 and len({r["id"] for r in records}) == 8
    rec = records[0]
    assert {"camera", "lighting", "texture", "view", "parent", "split", "template_hash"} <= set(rec)
    assert rec["texture"]["params"]["tone"] in range(16) and rec["lighting"]["lights"]
    manifest = (tmp_path / "r" / "manifest.jsonl").read_text().splitlines()
    first = json.loads(manifest[0])
    assert len(manifest) == 8 and not first["image"].startswith("/")
    assert not first["passes"]["color"].startswith("/") and (tmp_path / "r" / first["texture"]["albedo"]).is_file()
    for k in range(2):  # shards partition the meshes and merge into the same manifest
        shard = _run(*args, "-o", tmp_path / "sh", "--shard", f"{k}/2")
        assert shard.exit_code == 0, shard.output
    assert _run("manifest", "merge", tmp_path / "sh").exit_code == 0
    merged = (tmp_path / "sh" / "manifest.jsonl").read_text().splitlines()
    assert merged == manifest  # the same records, paths relative to each folder
    again = _run(*args, "-o", tmp_path / "r")
    assert again.exit_code == 0 and "0 written, 8 already done" in again.output
    other = _run(*args, "-o", tmp_path / "s")
    for a, b in zip(records, [json.loads(line) for line in other.stdout.splitlines()], strict=True):
        assert open(a["image"], "rb").read() == open(b["image"], "rb").read()  # bit-identical for a seed
        assert a["camera"] == b["camera"]


def test_chain_from_augment_and_turntable(tmp_path, tiny_template_dir, egl):
    aug = _run("augment", "-o", tmp_path / "aug", "-t", tiny_template_dir, "--copies", 2, "--identity-sigma", 1,
               "--json")
    assert aug.exit_code == 0, aug.output
    res = _run("render", "-", "-o", tmp_path / "views", "-t", tiny_template_dir, "--views", 2, "--size", 32,
               input=aug.stdout)
    assert res.exit_code == 0, res.output
    assert len(res.stdout.splitlines()) == 4
    gif = _run("render", "-o", tmp_path / "spin.gif", "-t", tiny_template_dir, "--size", 32, "--frames", 3)
    assert gif.exit_code == 0 and (tmp_path / "spin.gif").stat().st_size > 100


def test_bad_inputs_exit_2_and_partial_failure_exits_3(tmp_path, tiny_template_dir, egl):
    res = _run("render", tmp_path / "missing.obj", "-o", tmp_path / "x.png")
    assert res.exit_code == 2 and "no such file" in res.output
    bad = tmp_path / "meshes"
    bad.mkdir()
    (bad / "nan.obj").write_text("v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    (bad / "ok.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    res = _run("render", bad / "nan.obj", "-o", tmp_path / "x.png", "-t", tiny_template_dir)
    assert res.exit_code == 2 and "NaN" in res.output and "Traceback" not in res.output
    res = _run("render", bad, "-o", tmp_path / "out", "-t", tiny_template_dir, "--size", 16)
    assert res.exit_code == 3
    assert "nan.obj" in (tmp_path / "out" / "failures.jsonl").read_text()
    assert len((tmp_path / "out" / "manifest.jsonl").read_text().splitlines()) == 1
    no_uv = ["--texture", tmp_path / "x.png"]
    cuda = ["--backend", "torch", "--device", "cuda"] if not __import__("torch").cuda.is_available() else ["--size", 4]
    for args in (["--passes", "colour"], ["--ssaa", 2], ["--size", 4], ["-o", tmp_path / "x.jpg"], no_uv,
                 ["--backend", "vulkan"], cuda):
        res = _run("render", bad / "ok.obj", "-o", tmp_path / "x.png", *args)
        assert res.exit_code == 2, (args, res.output)


def test_missing_egl_is_a_clear_usage_error(tmp_path, tiny_template_dir, monkeypatch):
    from topos_cli.errors import UsageError
    from topos_cli.render import raster_gl

    def no_context():
        raise UsageError(f"cannot create a headless OpenGL (EGL) context (test); {raster_gl.INSTALL_HINT}")

    monkeypatch.setattr(raster_gl, "gl_context", no_context)
    res = _run("render", "-o", tmp_path / "x.png", "-t", tiny_template_dir, "--size", 16)
    assert res.exit_code == 2 and "libegl1" in res.output and "--backend torch" in res.output
    res = _run("render", "-o", tmp_path / "x.png", "-t", tiny_template_dir, "--size", 16, "--backend", "torch")
    assert res.exit_code == 0


def test_textures_command_writes_seeded_maps(tmp_path, tiny_template_dir):
    res = _run("textures", tiny_template_dir, "-o", tmp_path / "t", "--count", 2, "--size", 32, "--json")
    assert res.exit_code == 0, res.output
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["id"] for r in records] == ["tex000", "tex001"]
    albedo = read_image(records[0]["albedo"])
    assert albedo.shape == (32, 32, 3)
    again = _run("textures", tiny_template_dir, "-o", tmp_path / "u", "--count", 2, "--size", 32, "--json")
    first = json.loads(again.stdout.splitlines()[0])
    assert np.array_equal(read_image(first["albedo"]), albedo) and first["params"] == records[0]["params"]
    assert _run("textures", tiny_template_dir, "-o", tmp_path / "v", "--makeup", 2).exit_code == 2


def test_lighting_from_image_and_json_and_cameras_from_json(tmp_path, tiny_template_dir, egl):
    from topos_cli.io.image import write_png

    sky = np.zeros((16, 32, 3))
    sky[:8] = 1.0  # light from above only
    write_png(tmp_path / "sky.png", sky)
    rig = {"lights": [{"kind": "directional", "direction": [0, -1, 0], "intensity": 1.0}]}  # from below
    (tmp_path / "rig.json").write_text(json.dumps(rig))
    cams = [{"eye": [0, 0, 60], "fov": 30}, {"eye": [60, 0, 0], "fov": 30}]
    (tmp_path / "cams.json").write_text(json.dumps({"cameras": cams}))
    tops = []
    for light in ("sky.png", "rig.json"):
        res = _run("render", "-o", tmp_path / f"{light}.png", "-t", tiny_template_dir, "--size", 32,
                   "--lighting", tmp_path / light, "--shading", "lambert", "--json")
        assert res.exit_code == 0, res.output
        img = read_image(json.loads(res.stdout)["image"]).astype(float)
        tops.append(img[8, 16, :3].mean() - img[24, 16, :3].mean())  # upper minus lower half
    assert tops[0] > 20 and tops[1] < -20  # the lighting follows the light
    res = _run("render", "-o", tmp_path / "c.png", "-t", tiny_template_dir, "--size", 32, "--camera",
               tmp_path / "cams.json", "--json")
    records = [json.loads(line) for line in res.stdout.splitlines()]
    assert res.exit_code == 0 and [r["id"] for r in records] == ["c_v00", "c_v01"]
    assert np.allclose(records[1]["camera"]["center"], [60, 0, 0])
    strip = _run("render", "-o", tmp_path / "relit.png", "-t", tiny_template_dir, "--size", 32,
                 "--lighting", "studio,side,sunset")
    assert strip.exit_code == 0 and read_image(tmp_path / "relit.png").shape[:2] == (32, 96)
    bad = _run("render", "-o", tmp_path / "d.png", "-t", tiny_template_dir, "--lighting", "disco")
    assert bad.exit_code == 2 and "studio" in bad.output
