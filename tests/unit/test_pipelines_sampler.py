"""The rectified-flow sampler: exact on flows whose Euler/Heun steps are exact, CFG arithmetic, determinism."""

from __future__ import annotations

import pytest
import torch

from topos_cli.models.registry import build
from topos_cli.pipelines.sampler import SamplerConfig, guided_velocity, integrate, sample


def test_euler_integrates_a_straight_flow_exactly():
    # the rectified-flow ideal: x_t = t x1 + (1 - t) x0 has the constant velocity x1 - x0
    x0, x1 = torch.randn(3, 5, 2, dtype=torch.float64), torch.randn(3, 5, 2, dtype=torch.float64)
    out = integrate(lambda x, t: x1 - x0, x0, steps=7)
    torch.testing.assert_close(out, x1, rtol=0, atol=1e-12)


def test_euler_on_a_linear_ode_is_the_compound_product():
    x0 = torch.ones(2, 1, dtype=torch.float64)
    out = integrate(lambda x, t: 0.5 * x, x0, steps=10)
    torch.testing.assert_close(out, x0 * (1 + 0.05) ** 10, rtol=1e-12, atol=0)


def test_heun_is_exact_for_a_velocity_linear_in_time():
    x0 = torch.zeros(4, 1, dtype=torch.float64)
    out = integrate(lambda x, t: 2 * t[:, None], x0, steps=5, method="heun")
    euler = integrate(lambda x, t: 2 * t[:, None], x0, steps=5)
    torch.testing.assert_close(out, x0 + 1.0, rtol=0, atol=1e-12)  # integral of 2t over [0, 1]
    assert (euler - 1.0).abs().max() > 0.1  # Euler is not (left Riemann sum: 0.8)


def test_bad_sampler_settings_raise():
    with pytest.raises(ValueError):
        integrate(lambda x, t: x, torch.zeros(1, 1), steps=0)


def _model(tiny_template):
    torch.manual_seed(0)
    model = build("flow-dit", {"num_tokens": 3, "token_dim": 4}, tiny_template, preset="tiny").eval()
    with torch.no_grad():  # adaLN-Zero output layers start at zero; give them weights
        for name, p in model.named_parameters():
            if "ada" in name or "final.proj" in name:
                p.normal_(0, 0.1)
        model.null_cond.normal_(0, 1.0)
    return model


def test_cfg_scale_one_is_the_conditional_velocity_and_scale_s_extrapolates(tiny_template):
    model = _model(tiny_template)
    size = model.config.crop_size
    cond = model.encode_condition({"crop": torch.rand(2, 3, size, size), "landmarks": torch.rand(2, 478, 2)})
    x, t = torch.randn(2, 3, 4), torch.tensor([0.3, 0.8])
    with torch.no_grad():
        v_cond = model.velocity(x, t, cond)
        v_null = model.velocity(x, t, model.null_condition(cond))
        torch.testing.assert_close(guided_velocity(model, cond, 1.0)(x, t), v_cond)
        torch.testing.assert_close(guided_velocity(model, cond, 3.0)(x, t), v_null + 3.0 * (v_cond - v_null),
                                   rtol=1e-5, atol=1e-5)
    assert (v_cond - v_null).abs().max() > 1e-4


def test_sample_is_deterministic_given_the_generator(tiny_template):
    model = _model(tiny_template)
    size = model.config.crop_size
    cond = model.encode_condition({"crop": torch.rand(1, 3, size, size), "landmarks": torch.rand(1, 478, 2)})
    a = sample(model, cond.expand(2, -1, -1), torch.Generator().manual_seed(5), SamplerConfig(steps=4, cfg=2.0))
    b = sample(model, cond.expand(2, -1, -1), torch.Generator().manual_seed(5), SamplerConfig(steps=4, cfg=2.0))
    assert a.shape == (2, 3, 4) and torch.equal(a, b)
    assert not torch.equal(a[0], a[1])  # one noise draw per row


def test_temperature_zero_starts_from_the_noise_mean(tiny_template):
    model = _model(tiny_template)
    size = model.config.crop_size
    cond = model.encode_condition({"crop": torch.rand(1, 3, size, size), "landmarks": torch.rand(1, 478, 2)})
    cfg = SamplerConfig(steps=3, cfg=2.0, temperature=0.0)
    a = sample(model, cond, torch.Generator().manual_seed(1), cfg)
    b = sample(model, cond, torch.Generator().manual_seed(2), cfg)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, integrate(guided_velocity(model, cond, 2.0), torch.zeros_like(a), 3))
