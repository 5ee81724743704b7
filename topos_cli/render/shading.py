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


# Internally vectors are stored as (3, N) (structure of arrays): dot products become three multiply-adds
# over contiguous rows, several times faster on a CPU than reductions over a trailing dimension of 3.

def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v * torch.rsqrt(_dot(v, v).clamp(min=1e-24))


class _Surface:
    """Per-pixel terms shared by every light: normal, view vector, n.v, GGX alpha^2, Smith k and G1(v)."""

    def __init__(self, n, v, roughness, f0):
        self.n, self.v, self.f0 = n, v, f0
        self.nv = _dot(n, v).clamp(min=1e-4)
        alpha = (roughness * roughness).clamp(min=1e-3)
        self.a2 = alpha * alpha
        self.k = alpha / 2
        self.g1v = self.nv / (self.nv * (1 - self.k) + self.k)

    def specular(self, ldir, nl):
        """pi * f_spec * (n.l) for light directions (3, N|1)."""
        h = _unit(self.v + ldir)
        nh = _dot(self.n, h).clamp(min=0)
        vh = _dot(self.v, h).clamp(min=0)
        d = self.a2 / (math.pi * (nh * nh * (self.a2 - 1) + 1) ** 2)
        g = nl / (nl * (1 - self.k) + self.k) * self.g1v
        fresnel = self.f0 + (1 - self.f0) * (1 - vh) ** 5
        return (math.pi / 4) * d * g * fresnel / self.nv * (nl > 0)


def ggx_specular(n, v, light_dir, roughness, f0):
    """pi * f_spec * (n.l): specular radiance per unit light intensity. Shapes (N, 3) / (N,) -> (N,)."""
    surf = _Surface(n.T, v.T, roughness, f0)
    ldir = light_dir.T
    return surf.specular(ldir, _dot(surf.n, ldir).clamp(min=0))


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
    pos, alb = position.T, albedo.T  # (3, N)
    v = _unit(_vec(eye, pos)[:, None] - pos)
    n = _unit(normal.T)
    n = torch.where(_dot(n, v) < 0, -n, n)  # two-sided: open necks show their inside
    surf = _Surface(n, v, roughness, (SKIN_F0 * specular).clamp(0, 1))
    use_spec = model == "ggx"
    colour = torch.zeros_like(alb)
    for light in rig.lights:
        if isinstance(light, AmbientLight):
            colour = colour + alb * (_vec(light.color, alb) * light.intensity)[:, None]
        elif isinstance(light, EnvLight):
            colour = colour + _shade_env(light, surf, alb, roughness, use_spec)
        else:
            for ldir, radiance in _light_samples(light, pos):
                nl = _dot(n, ldir).clamp(min=0)
                term = alb * nl
                if use_spec:
                    term = term + surf.specular(ldir, nl)
                colour = colour + term * radiance
    return colour.T


def _light_samples(light, pos):
    """(direction (3, N|1), radiance (3, N|1)) pairs for a directional, point or area light; pos is (3, N)."""
    colour = (_vec(light.color, pos) * light.intensity)[:, None]
    if isinstance(light, DirectionalLight):
        yield _unit(_vec(light.direction, pos)[:, None]), colour
    elif isinstance(light, PointLight):
        d = _vec(light.position, pos)[:, None] - pos
        yield _unit(d), colour * (light.distance_ref ** 2 / _dot(d, d).clamp(min=1e-6))
    elif isinstance(light, AreaLight):
        pts, emit_n, weight = light.points()
        emit_n = _vec(emit_n, pos)[:, None]
        for p in pts:
            d = _vec(p, pos)[:, None] - pos
            dist2 = _dot(d, d).clamp(min=1e-6)
            ldir = d * torch.rsqrt(dist2)
            cos_e = (-_dot(ldir, emit_n)).clamp(min=0)
            yield ldir, colour * (weight * light.distance_ref ** 2) * (cos_e / dist2)
    else:
        raise TypeError(f"not a light: {light!r}")


def _shade_env(light: EnvLight, surf: _Surface, alb, roughness, use_spec):
    sh = _vec(light.sh, alb) * light.intensity  # (3, 9)
    irr = sh @ (sh_basis(surf.n.T) * _IRRADIANCE.to(alb)).T  # (3, N)
    colour = alb * irr.clamp(min=0)
    if use_spec:
        r = _unit(2 * surf.nv * surf.n - surf.v)
        blur = torch.exp(-0.25 * roughness[:, None] * (_SH_BAND * (_SH_BAND + 1)).to(alb))  # (N, 9)
        radiance = (sh @ (sh_basis(r.T) * blur).T).clamp(min=0)  # (3, N)
        colour = colour + radiance * _env_brdf(roughness, surf.nv, surf.f0)
    return colour


def linear_to_srgb(c: torch.Tensor) -> torch.Tensor:
    c = c.clamp(0, 1)
    return torch.where(c <= 0.0031308, 12.92 * c, 1.055 * c.clamp(min=1e-8) ** (1 / 2.4) - 0.055)


def srgb_to_linear(c: torch.Tensor) -> torch.Tensor:
    return torch.where(c <= 0.04045, c / 12.92, ((c.clamp(min=0) + 0.055) / 1.055) ** 2.4)
