"""Slow: recipes/tiny-retopo-vae.yaml end to end (augment, train 2 steps, resume to 4, retopo with it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from topos_cli.cli.main import app

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_tiny_retopo_vae_recipe(tmp_path):
    from topos_cli.template import DEFAULT_TEMPLATE, TEMPLATES_DIR

    if not (TEMPLATES_DIR / DEFAULT_TEMPLATE / "template.json").is_file():
        pytest.skip("the default template topos-head is not built")
    run = tmp_path / "run"
    res = CliRunner().invoke(app, ["run", str(REPO / "recipes" / "tiny-retopo-vae.yaml"), "--set", f"run={run}"])
    assert res.exit_code == 0, res.output
    assert (run / "vae" / "latest").read_text().strip() == "step-000000004"
    steps = [json.loads(x)["step"] for x in (run / "vae" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]
    records = [json.loads(x) for x in (run / "fit" / "manifest.jsonl").read_text().splitlines()]
    assert len(records) == 3 and all(r["vae_step"] == 4 for r in records)
    assert all(r["metrics"]["fscore"] > 0.9 for r in records)
