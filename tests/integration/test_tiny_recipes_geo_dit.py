"""Slow: recipes/tiny-geo-dit.yaml end to end (augment, render, train TOPOS-DiT 2 steps, resume to 3), then sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from topos_cli.cli.main import app

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_tiny_geo_dit_recipe(tmp_path):
    pytest.importorskip("mediapipe")
    import torch

    from topos_cli.render.raster_gl import gl_available

    if not gl_available():
        pytest.skip("no headless EGL context here")
    run = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", str(REPO / "recipes" / "tiny-geo-dit.yaml"), "--set", f"run={run}"])
    assert res.exit_code == 0, res.output
    assert (run / "dit" / "latest").read_text().strip() == "step-000000003"
    assert [json.loads(x)["step"] for x in (run / "dit" / "log.jsonl").read_text().splitlines()] == [1, 2, 3]

    from topos_cli.faces.detect import detect_faces
    from topos_cli.io.image import read_image
    from topos_cli.io.manifest import read_manifest
    from topos_cli.pipelines.geo_prior import GeoPrior

    prior = GeoPrior.from_pretrained(run / "dit")
    image = read_image(run / "renders" / read_manifest(run / "renders")[0]["image"])[..., :3]
    out = prior(image, detect_faces(image)[0].landmarks, torch.Generator().manual_seed(0), steps=4)
    assert out.verts.shape == (prior.latent.template.num_verts, 3) and np.isfinite(out.verts).all()
