"""Shading and lights: known radiances for Lambert, uniform environments, SH projection, GGX, falloff."""

import math

import numpy as np
import pytest
import torch

from topos_cli.errors import UsageError
from topos_cli.render.lights import (
    AmbientLight,
    AreaLight,
    DirectionalLight,
    EnvLight,
    LightRig,
    PointLight,
    preset_rig,
    random_rig,
    rig_from_dict,
    sh_basis,
    sh_from_equirect,
)
from topos_cli.render.shading import ggx_specular, linear_to_srgb, shade, srgb_to_linear

ALBEDO = torch.tensor([[0.5, 0.25, 0.1]])
ORIGIN = torch.zeros(1, 3)
UP = torch.tensor([[0.0, 0.0, 1.0]])


def _shade(rig, model="lambert", normal=UP, eye=(0, 0, 50), rough=0.5):
    return shade(ORIGIN, normal, ALBEDO, torch.tensor([rough]), torch.tensor([1.0]), eye, rig, model)[0]


def test_lambert_directional_ambient_and_cosine():
    assert torch.allclose(_shade(LightRig([DirectionalLight((0, 0, 1), intensity=1.0)])), ALBEDO[0])
    tilted = _shade(LightRig([DirectionalLight((0, math.sin(1.0), math.cos(1.0)), intensity=2.0)]))
    assert torch.allclose(tilted, ALBEDO[0] * 2 * math.cos(1.0), atol=1e-6)
    assert torch.allclose(_shade(LightRig([DirectionalLight((0, 0, -1))])), torch.zeros(3))  # from behind
    assert torch.allclose(_shade(LightRig([AmbientLight((1, 1, 1), 0.3)])), 0.3 * ALBEDO[0])


def test_back_faces_are_shaded_as_seen_from_the_eye():
    rig = LightRig([DirectionalLight((0, 0, 1))])
    assert torch.allclose(_shade(rig, normal=-UP), ALBEDO[0])  # open neck: the inside faces the eye


def test_point_and_area_light_falloff():
    near = _shade(LightRig([PointLight((0, 0, 40), distance_ref=40.0)]))
    far = _shade(LightRig([PointLight((0, 0, 80), distance_ref=40.0)]))
    assert torch.allclose(near, ALBEDO[0], atol=1e-6) and torch.allclose(far, ALBEDO[0] / 4, atol=1e-6)
    facing = AreaLight(center=(0, 0, 40), u=(0, 10, 0), v=(10, 0, 0), distance_ref=40.0, samples=1)  # u x v = -z
    away = AreaLight(center=(0, 0, 40), u=(10, 0, 0), v=(0, 10, 0), distance_ref=40.0, samples=1)
    assert torch.allclose(_shade(LightRig([away])), torch.zeros(3))  # emits away from the surface
    assert torch.allclose(_shade(LightRig([facing])), ALBEDO[0], atol=1e-6)


def test_uniform_environment_gives_albedo_and_sh_projection_is_exact():
    sh = sh_from_equirect(np.ones((64, 128, 3)))
    assert np.allclose(sh[:, 0], math.sqrt(4 * math.pi) * np.ones(3), atol=1e-3)  # Y00 = 1 / sqrt(4 pi)
    assert np.abs(sh[:, 1:]).max() < 1e-3
    lit = _shade(LightRig([EnvLight(sh)]))
    assert torch.allclose(lit, ALBEDO[0], atol=2e-3)  # white sky all around: radiance = albedo
    sky = np.zeros((64, 128, 3))
    sky[:32] = 1.0  # upper hemisphere only
    up = _shade(LightRig([EnvLight(sh_from_equirect(sky))]), normal=torch.tensor([[0.0, 1.0, 0.0]]))
    down = _shade(LightRig([EnvLight(sh_from_equirect(sky))]), normal=torch.tensor([[0.0, -1.0, 0.0]]))
    assert up[0] > 0.9 * ALBEDO[0, 0] and down[0] < 0.1 * ALBEDO[0, 0]


def test_ggx_peaks_at_the_mirror_direction_and_lambert_has_no_highlight():
    n = UP.repeat(3, 1)
    v = torch.tensor([[0.0, math.sin(0.5), math.cos(0.5)]]).repeat(3, 1)
    lights = torch.tensor([[0.0, -math.sin(0.5), math.cos(0.5)], [0.0, 0.0, 1.0], [0.0, math.sin(0.5), math.cos(0.5)]])
    spec = ggx_specular(n, v, lights, torch.full((3,), 0.3), torch.full((3,), 0.028))
    assert spec[0] > 3 * spec[1] > 0 and spec[0] > spec[2]
    rig = LightRig([DirectionalLight((0, 0, 1))])
    assert (_shade(rig, "ggx", rough=0.2) > _shade(rig, "lambert")).all()


def test_srgb_round_trip_and_rigs_serialise():
    c = torch.linspace(0, 1, 11)
    assert torch.allclose(srgb_to_linear(linear_to_srgb(c)), c, atol=1e-6)
    rig = random_rig(np.random.default_rng(0))
    again = rig_from_dict(rig.to_dict())
    assert [type(x) for x in again.lights] == [type(x) for x in rig.lights]
    assert rig.to_dict() == random_rig(np.random.default_rng(0)).to_dict()  # seeded
    assert preset_rig("studio").name == "studio"
    with pytest.raises(UsageError):
        preset_rig("disco")
    with pytest.raises(UsageError):
        rig_from_dict({"lights": [{"kind": "laser"}]})
    assert sh_basis(np.array([[0.0, 0.0, 1.0]])).shape == (1, 9)
