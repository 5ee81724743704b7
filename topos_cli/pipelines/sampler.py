"""Rectified-flow ODE sampler (Euler, optional Heun) with classifier-free guidance, separate from the model.

Integrates dx/dt = v(x, t) from t = 0 (noise) to t = 1 (data) on a uniform grid, the convention of
models/flow_dit.py. With guidance scale s the velocity is v_null + s (v_cond - v_null) (s = 1: the conditional
velocity alone); conditional and null rows go through the model as one batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

DEFAULT_STEPS = 50  # paper appendix A
DEFAULT_CFG = 3.0  # paper appendix A

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x (B, ...), t (B,)) -> v (B, ...)


@dataclass
class SamplerConfig:
    """steps: ODE steps; cfg: guidance scale (1 = none); method: "euler" or "heun"; temperature: scale of the
    initial noise (1 = a sample of the learned distribution; 0 = the flow of the noise mean, one deterministic
    head near the centre of the conditional distribution)."""

    steps: int = DEFAULT_STEPS
    cfg: float = DEFAULT_CFG
    method: str = "euler"
    temperature: float = 1.0


def integrate(velocity: Velocity, noise: torch.Tensor, steps: int = DEFAULT_STEPS, method: str = "euler") -> torch.Tensor:
    """Solve dx/dt = velocity(x, t) from t = 0 (x = noise) to t = 1.

    Args:
        velocity: (x, t) -> dx/dt with x (B, ...) and t (B,).
        noise: (B, ...) the state at t = 0.
        steps: uniform steps (>= 1).
        method: "euler" (first order, one call per step) or "heun" (second order, two calls per step).
    Returns:
        (B, ...) the state at t = 1.
    """
    if steps < 1 or method not in ("euler", "heun"):
        raise ValueError(f"steps must be >= 1 and method euler or heun, got {steps}, {method!r}")
    x = noise
    grid = torch.linspace(0.0, 1.0, steps + 1, device=noise.device, dtype=noise.dtype)
    for i in range(steps):
        t0, t1 = grid[i], grid[i + 1]
        v0 = velocity(x, t0.expand(len(x)))
        if method == "heun":
            x_pred = x + (t1 - t0) * v0
            v1 = velocity(x_pred, t1.expand(len(x)))
            x = x + (t1 - t0) * 0.5 * (v0 + v1)
        else:
            x = x + (t1 - t0) * v0
    return x


def guided_velocity(model, cond_tokens: torch.Tensor, scale: float) -> Velocity:
    """The CFG velocity of a FlowDiT for fixed condition tokens (B, M, W) (scale 1: conditional only)."""
    if scale == 1.0:
        return lambda x, t: model.velocity(x, t, cond_tokens)
    both = torch.cat([cond_tokens, model.null_condition(cond_tokens)])  # (2B, M, W)

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        v_cond, v_null = model.velocity(torch.cat([x, x]), torch.cat([t, t]), both).chunk(2)
        return v_null + scale * (v_cond - v_null)

    return velocity


@torch.no_grad()
def sample(model, cond_tokens: torch.Tensor, generator: torch.Generator | None = None,
           config: SamplerConfig | None = None) -> torch.Tensor:
    """Normalised latent tokens (B, T, d) for condition tokens (B, M, W) (one sample per row).

    Args:
        model: a FlowDiT (eval mode).
        cond_tokens: from `model.encode_condition`; repeat rows for several samples per condition.
        generator: the only source of randomness (the initial noise).
        config: steps, guidance scale, method.
    """
    config = config or SamplerConfig()
    cfg = model.config
    noise = torch.randn((len(cond_tokens), cfg.num_tokens, cfg.token_dim), generator=generator,
                        device=cond_tokens.device, dtype=cond_tokens.dtype) * config.temperature
    return integrate(guided_velocity(model, cond_tokens, config.cfg), noise, config.steps, config.method)
