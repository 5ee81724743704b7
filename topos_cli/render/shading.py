"""Shading of G-buffer samples in torch (shared by both rasterizer backends, differentiable).

Materials are relightable: linear albedo, roughness (perceptual, alpha = roughness^2) and a specular scale on
F0 = 0.028 (skin's reflectance at normal incidence). `ggx` is a Cook-Torrance microfacet BRDF (GGX normal
distribution, Smith-Schlick visibility, Schlick Fresnel) plus Lambert diffuse; `lambert` is diffuse only.
Environment light: diffuse from the SH irradiance formula, specular from the SH radiance at the reflection
direction, band-blurred by roughness and scaled by an analytic split-sum environment BRDF (Karis 2014).
No shadows or interreflections (a rasterizer).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from topos_cli.render.lights import (
    AmbientLight,
    AreaLight,
    DirectionalLight,
    EnvLight,
    LightRig,
    PointLight,
    sh_basis,
)

SKIN_F0 = 0.028
_SH_BAND = torch.tensor([0, 1, 1, 1, 2, 2, 2, 2, 2])
_IRRADIANCE = torch.tensor([1.0, 2 / 3, 2 / 3, 2 / 3, 0.25, 0.25, 0.25, 0.25, 0.25])  # A_l / pi


def _vec(value, ref: torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(np.asarray(value, np.float64), dtype=ref.dtype, device=ref.device)


def _normalize(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp(min=1e-12)


def ggx_specular(n, v, light_dir, roughness, f0):
    """pi * f_spec * (n.l): specular radiance per unit light intensity. Shapes (N, 3) / (N,) -> (N,)."""
    h = _normalize(v + light_dir)
    nl = (n * light_dir).sum(-1).clamp(min=0)
    nv = (n * v).sum(-1).clamp(min=1e-4)
    nh = (n * h).sum(-1).clamp(min=0)
    vh = (v * h).sum(-1).clamp(min=0)
    alpha = (roughness * roughness).clamp(min=1e-3)
    a2 = alpha * alpha
    d = a2 / (math.pi * (nh * nh * (a2 - 1) + 1) ** 2)
    k = alpha / 2
    g = (nl / (nl * (1 - k) + k)) * (nv / (nv * (1 - k) + k))
    fresnel = f0 + (1 - f0) * (1 - vh) ** 5
    return math.pi * d * g * fresnel / (4 * nv) * (nl > 0)


def _env_brdf(roughness, nv, f0):
    """Analytic split-sum environment BRDF approximation (Karis, 'Physically Based Shading on Mobile')."""
    r0 = -roughness + 1.0
    r1 = -0.0275 * roughness + 0.0425
    r2 = -0.572 * roughness + 1.04
    r3 = 0.022 * roughness - 0.04
    a004 = torch.minimum(r0 * r0, torch.exp2(-9.28 * nv)) * r0 + r1
    return f0 * (-1.04 * a004 + r2) + (1.04 * a004 + r3)


def shade(position: torch.Tensor, normal: torch.Tensor, albedo: torch.Tensor, roughness: torch.Tensor,
          specular: torch.Tensor, eye, rig: LightRig, model: str = "ggx") -> torch.Tensor:
    """Outgoing linear radiance towards the camera.

    Args:
        position: (N, 3) world positions (cm). normal: (N, 3) world normals (flipped here to face the eye).
        albedo: (N, 3) linear RGB. roughness: (N,) perceptual roughness in [0, 1]. specular: (N,) F0 scale.
        eye: (3,) camera centre (cm).
        rig: the lights. model: "ggx" or "lambert".

    Returns:
        (N, 3) linear RGB radiance (1 = white; not clamped).
    """
    v = _normalize(_vec(eye, position) - position)
    n = _normalize(normal)
    n = torch.where(((n * v).sum(-1, keepdim=True) < 0), -n, n)  # two-sided: open necks show their inside
    f0 = (SKIN_F0 * specular).clamp(0, 1)
    use_spec = model == "ggx"
    colour = torch.zeros_like(albedo)
    for light in rig.lights:
        if isinstance(light, AmbientLight):
            colour = colour + albedo * _vec(light.color, albedo) * light.intensity
        elif isinstance(light, EnvLight):
            colour = colour + _shade_env(light, n, v, albedo, roughness, f0, use_spec)
        else:
            for ldir, radiance in _light_samples(light, position):
                nl = (n * ldir).sum(-1, keepdim=True).clamp(min=0)
                term = albedo * nl
                if use_spec:
                    term = term + ggx_specular(n, v, ldir, roughness, f0)[:, None]
                colour = colour + term * radiance
    return colour


def _light_samples(light, position):
    """(direction (N|1, 3), radiance (N|1, 3)) pairs for a directional, point or area light."""
    colour = _vec(light.color, position) * light.intensity
    if isinstance(light, DirectionalLight):
        yield _normalize(_vec(light.direction, position))[None], colour[None]
    elif isinstance(light, PointLight):
        d = _vec(light.position, position) - position
        dist2 = (d * d).sum(-1, keepdim=True).clamp(min=1e-6)
        yield _normalize(d), colour * (light.distance_ref ** 2 / dist2)
    elif isinstance(light, AreaLight):
        pts, emit_n, weight = light.points()
        emit_n = _vec(emit_n, position)
        for p in pts:
            d = _vec(p, position) - position
            dist2 = (d * d).sum(-1, keepdim=True).clamp(min=1e-6)
            ldir = _normalize(d)
            cos_e = (-(ldir * emit_n).sum(-1, keepdim=True)).clamp(min=0)
            yield ldir, colour * weight * cos_e * (light.distance_ref ** 2 / dist2)
    else:
        raise TypeError(f"not a light: {light!r}")


def _shade_env(light: EnvLight, n, v, albedo, roughness, f0, use_spec):
    sh = _vec(light.sh, albedo) * light.intensity  # (3, 9)
    irr = (sh_basis(n) * _IRRADIANCE.to(n)) @ sh.T  # (N, 3)
    colour = albedo * irr.clamp(min=0)
    if use_spec:
        nv = (n * v).sum(-1).clamp(min=1e-4)
        r = _normalize(2 * nv[:, None] * n - v)
        blur = torch.exp(-0.25 * roughness[:, None] * (_SH_BAND * (_SH_BAND + 1)).to(n))  # (N, 9)
        radiance = ((sh_basis(r) * blur) @ sh.T).clamp(min=0)
        colour = colour + radiance * _env_brdf(roughness, nv, f0)[:, None]
    return colour


def linear_to_srgb(c: torch.Tensor) -> torch.Tensor:
    c = c.clamp(0, 1)
    return torch.where(c <= 0.0031308, 12.92 * c, 1.055 * c.clamp(min=1e-8) ** (1 / 2.4) - 0.055)


def srgb_to_linear(c: torch.Tensor) -> torch.Tensor:
    return torch.where(c <= 0.04045, c / 12.92, ((c.clamp(min=0) + 0.055) / 1.055) ** 2.4)
