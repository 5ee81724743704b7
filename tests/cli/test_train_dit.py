"""`topos train dit`: a tiny config trains a few steps on real renders, resumes, and GeoPrior samples from it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from topos_cli.cli.main import app
from topos_cli.errors import MissingWeights, ToposError

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def renders(tmp_path_factory):
    """Three augmented topos-head heads, one portrait-like render each (faces the detector finds)."""
    pytest.importorskip("mediapipe")
    from topos_cli import api
    from topos_cli.render.raster_gl import gl_available

    if not gl_available():
        pytest.skip("no headless EGL context here")
    root = tmp_path_factory.mktemp("dit")
    api.augment(None, root / "aug", copies=3, seed=0, identity_sigma=1.0)
    api.render(root / "aug", root / "renders", size=256, per_mesh=1, random_lighting=True, random_textures=True,
               texture_pool=2, texture_size=64, seed=0)
    return root / "renders"


def test_help_shows_an_example():
    res = _run("train", "dit", "--help")
    assert res.exit_code == 0 and "topos train dit --data" in res.output


def test_tiny_config_trains_resumes_and_samples(renders, tmp_path):
    run = tmp_path / "run"
    res = _run("train", "dit", "--data", renders, "--config", "tiny", "--out", run, "--steps", 2, "--batch", 2,
               "--ckpt-every", 2, "--log-every", 1, "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout.splitlines()[-1])["step"] == 2
    meta = json.loads((run / "step-000000002" / "model.json").read_text())
    assert meta["name"] == "flow-dit" and meta["args"]["latent"] == "bases" and meta["renders"]["train"] >= 1
    again = _run("train", "dit", "--data", renders, "--out", run, "--steps", 2, "--batch", 2)
    assert again.exit_code == 2 and "--resume" in again.output
    res = _run("train", "dit", "--data", renders, "--out", run, "--steps", 3, "--batch", 2, "--resume",
               "--ckpt-every", 1, "--log-every", 1)
    assert res.exit_code == 0, res.output
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]

    from topos_cli.faces.detect import detect_faces
    from topos_cli.io.image import read_image
    from topos_cli.io.manifest import read_manifest
    from topos_cli.pipelines.geo_prior import GeoPrior

    prior = GeoPrior.from_pretrained(run)
    rec = read_manifest(renders)[0]
    image = read_image(renders / rec["image"])[..., :3]
    face = detect_faces(image)[0]
    out = prior(image, face.landmarks, torch.Generator().manual_seed(0), steps=3, cfg=3.0, samples=2)
    assert out.verts.shape == (prior.latent.template.num_verts, 3) and out.samples.shape[0] == 2
    assert np.isfinite(out.verts).all()
    np.testing.assert_allclose(prior.decode(out.latents), out.samples, atol=1e-4)
    np.testing.assert_allclose(prior.decode(prior.encode(out.verts)), out.verts[None], atol=1e-3)

    # the guidance scale defaults to the checkpoint's sampling.cfg (else the paper's 3.0)
    def head(cfg):
        return prior(image, face.landmarks, torch.Generator().manual_seed(0), steps=3, cfg=cfg).verts

    assert np.array_equal(head(None), head(3.0)) and not np.array_equal(head(3.0), head(0.0))
    prior.meta["sampling"] = {"cfg": 0.0}
    assert np.array_equal(head(None), head(0.0))


def test_ridge_mean_head_is_fitted_saved_and_is_the_temperature_0_head(renders, tmp_path):
    """With mean_head "ridge" the run fits the landmark regression before step 1 (recorded in the checkpoint), and
    an untrained flow (zero-initialised output) at temperature 0 returns exactly the regression's head."""
    run = tmp_path / "run"
    res = _run("train", "dit", "--data", renders, "--config", "tiny", "--args", '{"mean_head": "ridge"}',
               "--out", run, "--steps", 1, "--batch", 2, "--lr", 0, "--ckpt-every", 1)
    assert res.exit_code == 0, res.output
    meta = json.loads((run / "step-000000001" / "model.json").read_text())
    assert meta["args"]["mean_head"] == "ridge" and meta["mean_head"]["samples"] >= 1

    from topos_cli.faces.detect import detect_faces
    from topos_cli.io.image import read_image
    from topos_cli.io.manifest import read_manifest
    from topos_cli.pipelines.geo_prior import GeoPrior

    prior = GeoPrior.from_pretrained(run)
    assert prior.model.mean_head.weight.abs().sum() > 0
    image = read_image(renders / read_manifest(renders)[0]["image"])[..., :3]
    face = detect_faces(image)[0]
    points = np.concatenate([face.landmarks, face.depth[:, None]], 1)
    out = prior(image, points, torch.Generator().manual_seed(0), steps=2, temperature=0.0)
    np.testing.assert_allclose(out.verts, prior.regression(image, points), atol=1e-4)
    with pytest.raises(ToposError, match="3 landmark coordinates"):
        prior(image, face.landmarks, torch.Generator().manual_seed(0), steps=2)


def test_bad_data_is_one_line_exit_2(tmp_path):
    res = _run("train", "dit", "--data", tmp_path / "nothing", "--out", tmp_path / "run")
    assert res.exit_code == 2 and "not a dataset folder" in res.output


def test_missing_or_corrupt_weights_are_one_line_errors(tmp_path):
    from topos_cli.io.checkpoint import save_checkpoint
    from topos_cli.models.registry import build
    from topos_cli.pipelines.geo_prior import GeoPrior
    from topos_cli.template import load_template

    with pytest.raises(MissingWeights) as err:
        GeoPrior.from_pretrained(tmp_path / "nothing")
    assert "\n" not in str(err.value) and err.value.exit_code == 2
    tpl = load_template(None)
    model = build("flow-dit", {}, tpl, preset="tiny")
    step = save_checkpoint(tmp_path / "run", 1, "flow-dit", model.config.to_dict(), tpl, model.state_dict())
    (step / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ToposError) as err:
        GeoPrior.from_pretrained(tmp_path / "run")
    assert "\n" not in str(err.value) and err.value.exit_code == 2 and "model.safetensors" in str(err.value)
    (step / "model.safetensors").unlink()
    with pytest.raises(MissingWeights, match="is missing"):
        GeoPrior.from_pretrained(tmp_path / "run")
