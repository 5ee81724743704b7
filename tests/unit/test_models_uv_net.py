"""The tex-uv network (generate-tex --method learned): forward shape, identity at init, a few training steps
lower the loss, the gain alignment of the target, and the checkpoint round trip through the pipeline loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from topos_cli.models.registry import build
from topos_cli.models.uv_net import (
    OUT_CHANNELS,
    PHOTO_CHANNELS,
    SKIN,
    STATIC_CHANNELS,
    compose,
    static_channels,
    uv_features,
)

SIZE = 32  # the tiny config's network side


@pytest.fixture(scope="module")
def tpl():
    from topos_cli.template import load_template

    return load_template("topos-head")


def _features(bsz: int, gen: torch.Generator) -> torch.Tensor:
    albedo = torch.rand(bsz, 3, SIZE, SIZE, generator=gen)
    coverage = torch.rand(bsz, 3, SIZE, SIZE, generator=gen)
    static = static_channels(torch.rand(SIZE, SIZE, 3, generator=gen), torch.ones(SIZE, SIZE, dtype=torch.bool))
    mirror = torch.arange(SIZE * SIZE).flip(0)
    return uv_features(albedo, coverage, static, mirror)


def test_forward_shape_and_output_at_init(tpl):
    net = build("tex-uv", None, tpl, "tiny")
    gen = torch.Generator().manual_seed(0)
    features = _features(2, gen)
    assert features.shape == (2, PHOTO_CHANNELS + STATIC_CHANNELS, SIZE, SIZE)
    out = net(features)
    assert out.shape == (2, OUT_CHANNELS, SIZE, SIZE)
    full = torch.rand(2, 3, 4 * SIZE, 4 * SIZE, generator=gen)
    low = torch.nn.functional.adaptive_avg_pool2d(full, SIZE)
    composed = compose(full, low, out, features)
    assert composed.shape == full.shape
    # zero-initialised head: no correction, both gates 0.5 (half the skin colour, half the unwrap's detail)
    skin = features[:, SKIN:SKIN + 3, :1, :1]
    up = torch.nn.functional.interpolate(0.5 * low + 0.5 * skin, scale_factor=4, mode="bilinear")
    up_low = torch.nn.functional.interpolate(low, scale_factor=4, mode="bilinear")
    assert torch.allclose(composed, (up + 0.5 * (full - up_low)).clamp(0, 1), atol=1e-5)


def _synthetic_pairs(tpl, count: int) -> list[dict]:
    """Unwrap-like inputs whose truth is a smoothed, shifted copy (what the network must learn to undo)."""
    gen = torch.Generator().manual_seed(1)
    items = []
    for _ in range(count):
        truth = 0.4 + 0.2 * torch.rand(3, 1, 1, generator=gen) + 0.02 * torch.rand(3, 64, 64, generator=gen)
        albedo = (truth * 1.3 + 0.1 * torch.rand(3, 64, 64, generator=gen)).clamp(0, 1)
        items.append({"albedo": albedo, "coverage": torch.rand(3, 64, 64, generator=gen), "target": truth})
    return items


def test_a_few_steps_lower_the_loss(tpl):
    from topos_cli.train.tex_uv import TexUVTask, uv_loss

    torch.manual_seed(0)
    net = build("tex-uv", None, tpl, "tiny")
    task = TexUVTask(net, tpl, data_size=64)
    items = _synthetic_pairs(tpl, 4)
    batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    with torch.no_grad():
        first = float(uv_loss(net, batch, task.maps_low, task.covered)["l1"])
    for _ in range(30):
        terms = task.loss(net, batch, None)
        opt.zero_grad()
        terms["total"].backward()
        opt.step()
    with torch.no_grad():
        last = float(uv_loss(net, batch, task.maps_low, task.covered)["l1"])
    assert last < 0.7 * first, (first, last)


def test_aligned_truth_removes_a_gain():
    from topos_cli.train.tex_uv import aligned_truth

    rng = np.random.default_rng(0)
    truth = rng.uniform(0.2, 0.8, (16, 16, 3))
    lin = np.where(truth <= 0.04045, truth / 12.92, ((truth + 0.055) / 1.055) ** 2.4)
    albedo = (1.055 * (lin * [0.8, 0.9, 1.1]) ** (1 / 2.4) - 0.055)
    coverage = np.zeros((16, 16, 3))
    coverage[..., 0] = 1
    out = aligned_truth(truth, albedo, coverage, np.ones((16, 16), bool))
    assert np.abs(out - albedo).max() < 1e-3


def save_tiny(tpl, folder):
    from topos_cli.io.checkpoint import save_checkpoint

    torch.manual_seed(2)
    net = build("tex-uv", None, tpl, "tiny")
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.01 * torch.randn_like(p))
    save_checkpoint(folder, 1, "tex-uv", net.config.to_dict(), tpl, net.state_dict())
    return net


def test_from_pretrained_round_trip(tpl, tmp_path):
    from topos_cli.pipelines.tex import template_assets
    from topos_cli.pipelines.tex_learned import LearnedCorrector

    net = save_tiny(tpl, tmp_path / "run")
    corrector = LearnedCorrector.from_pretrained(tmp_path / "run", tpl)
    features = _features(1, torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.allclose(corrector.model(features), net.eval()(features))
    size = 64
    rng = np.random.default_rng(0)
    albedo = corrector(rng.uniform(0.3, 0.7, (size, size, 3)), rng.uniform(0, 1, (size, size, 3)),
                       template_assets(tpl, corrector.size))
    assert albedo.shape == (size, size, 3) and np.isfinite(albedo).all() and 0 <= albedo.min() <= albedo.max() <= 1


def test_the_shipped_checkpoint_loads_and_stays_small(tpl):
    from topos_cli.pipelines.tex_learned import DEFAULT_WEIGHTS, LearnedCorrector

    corrector = LearnedCorrector.from_pretrained(None, tpl)
    assert corrector.size == 128
    assert (DEFAULT_WEIGHTS / "model.safetensors").stat().st_size < 5 * 2**20
