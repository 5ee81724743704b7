"""Lights and lighting rigs: ambient, directional, point, area and environment (spherical harmonics).

Units: a light's `intensity` times its `color` (linear RGB) is the irradiance it delivers at normal
incidence, normalised so that a white Lambertian surface facing a directional light of intensity 1 has
radiance 1 (i.e. displays as white). Point and area lights fall off with 1/d^2 relative to `distance_ref`.

Environment maps are equirectangular images: column x is longitude phi = 2*pi*(x+0.5)/W - pi, row y is the
polar angle from +Y theta = pi*(y+0.5)/H, and the pixel holds the light arriving *from* direction
(sin(theta) sin(phi), cos(theta), sin(theta) cos(phi)): the image centre lights the face (+Z), the top row is
the sky. They are projected onto 9 SH coefficients (order 2), enough for diffuse light (Ramamoorthi and
Hanrahan 2001) and a blurred specular reflection.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from topos_cli.errors import UsageError


@dataclass
class AmbientLight:
    color: tuple = (1.0, 1.0, 1.0)
    intensity: float = 0.1
    kind: str = "ambient"


@dataclass
class DirectionalLight:
    """Light travelling along -direction: `direction` points from the surface towards the light."""

    direction: tuple = (0.3, 0.4, 1.0)
    color: tuple = (1.0, 1.0, 1.0)
    intensity: float = 1.0
    kind: str = "directional"


@dataclass
class PointLight:
    position: tuple = (0.0, 30.0, 80.0)
    color: tuple = (1.0, 1.0, 1.0)
    intensity: float = 1.0
    distance_ref: float = 80.0  # distance (cm) at which the irradiance equals `intensity`
    kind: str = "point"


@dataclass
class AreaLight:
    """A rectangle at `center` spanned by edge vectors `u`, `v` (cm), emitting on the side of u x v.

    Evaluated as `samples` x `samples` point lights with a cosine falloff at the emitter (no shadows).
    Two (four points) keep a soft highlight at a quarter of the cost of four.
    """

    center: tuple = (40.0, 30.0, 70.0)
    u: tuple = (0.0, 30.0, 0.0)
    v: tuple = (30.0, 0.0, -17.0)  # u x v points back at the head
    color: tuple = (1.0, 1.0, 1.0)
    intensity: float = 1.0
    distance_ref: float = 80.0
    samples: int = 2
    kind: str = "area"

    def points(self) -> tuple[np.ndarray, np.ndarray, float]:
        """Sample positions (S, 3), emitter normal (3,), and per-sample weight."""
        n = max(int(self.samples), 1)
        g = (np.arange(n) + 0.5) / n - 0.5
        a, b = np.meshgrid(g, g, indexing="ij")
        pts = np.asarray(self.center) + a.reshape(-1, 1) * np.asarray(self.u) + b.reshape(-1, 1) * np.asarray(self.v)
        normal = np.cross(self.u, self.v)
        return pts, normal / max(np.linalg.norm(normal), 1e-12), 1.0 / (n * n)


@dataclass
class EnvLight:
    """Environment light as (3, 9) SH coefficients of radiance (linear RGB), with a name for manifests."""

    sh: np.ndarray = field(default_factory=lambda: np.zeros((3, 9)))
    intensity: float = 1.0
    name: str = "custom"
    kind: str = "env"


@dataclass
class LightRig:
    """Everything that lights one image."""

    lights: list = field(default_factory=list)
    name: str = "custom"

    def to_dict(self) -> dict:
        out = []
        for light in self.lights:
            d = asdict(light)
            if isinstance(light, EnvLight):
                d["sh"] = np.asarray(light.sh).round(6).tolist()
            out.append(_plain(d))
        return {"name": self.name, "lights": out}


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in np.asarray(value).tolist()] if isinstance(value, np.ndarray) else \
            [_plain(v) for v in value]
    return float(value) if isinstance(value, (np.floating, float)) else value


def rig_from_dict(data: dict) -> LightRig:
    """Inverse of `LightRig.to_dict` (also reads hand-written light JSON)."""
    kinds = {"ambient": AmbientLight, "directional": DirectionalLight, "point": PointLight, "area": AreaLight,
             "env": EnvLight}
    lights = []
    for rec in data.get("lights", []):
        rec = dict(rec)
        cls = kinds.get(rec.get("kind", ""))
        if cls is None:
            raise UsageError(f"unknown light kind {rec.get('kind')!r}; use one of {sorted(kinds)}")
        if cls is EnvLight:
            rec["sh"] = np.asarray(rec["sh"], np.float64).reshape(3, 9)
        try:
            lights.append(cls(**rec))
        except TypeError as exc:
            raise UsageError(f"bad {rec.get('kind')} light record: {exc}") from None
    return LightRig(lights, data.get("name", "custom"))


# ----------------------------------------------------------------------------- spherical harmonics

def sh_basis(dirs: np.ndarray) -> np.ndarray:
    """Real SH basis up to order 2 for unit directions (N, 3) -> (N, 9) (works on numpy or torch)."""
    x, y, z = dirs[..., 0], dirs[..., 1], dirs[..., 2]
    lib = np if isinstance(dirs, np.ndarray) else __import__("torch")
    return lib.stack([0.282095 + 0 * x, 0.488603 * y, 0.488603 * z, 0.488603 * x, 1.092548 * x * y,
                      1.092548 * y * z, 0.315392 * (3 * z * z - 1), 1.092548 * x * z, 0.546274 * (x * x - y * y)], -1)


def equirect_directions(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit directions (H, W, 3) of equirectangular pixels and their solid angles (H, W)."""
    theta = np.pi * (np.arange(height) + 0.5) / height
    phi = 2 * np.pi * (np.arange(width) + 0.5) / width - np.pi
    th, ph = np.meshgrid(theta, phi, indexing="ij")
    dirs = np.stack([np.sin(th) * np.sin(ph), np.cos(th), np.sin(th) * np.cos(ph)], -1)
    solid = np.sin(th) * (np.pi / height) * (2 * np.pi / width)
    return dirs, solid


def sh_from_equirect(image: np.ndarray) -> np.ndarray:
    """Project an equirectangular radiance map (H, W, 3) linear RGB onto (3, 9) SH coefficients."""
    img = np.asarray(image, np.float64)
    if img.ndim != 3 or img.shape[2] < 3 or img.shape[0] < 2:
        raise UsageError(f"environment map must be an (H, W, 3) image, got shape {img.shape}")
    dirs, solid = equirect_directions(*img.shape[:2])
    basis = sh_basis(dirs.reshape(-1, 3))  # (HW, 9)
    weighted = img[..., :3].reshape(-1, 3) * solid.reshape(-1, 1)
    return (weighted.T @ basis)  # (3, 9)


# ----------------------------------------------------------------------------- procedural environments

def procedural_env(name: str, height: int = 32, width: int = 64, rng: np.random.Generator | None = None,
                   sun: tuple | None = None) -> np.ndarray:
    """A small equirectangular radiance map (H, W, 3) for a preset: studio, sky, sunset, overcast, night."""
    dirs, _ = equirect_directions(height, width)
    y = dirs[..., 1]
    if name == "studio":
        img = np.full((height, width, 3), 0.05)
        for centre, size, power in [((-0.6, 0.35, 0.7), 0.35, 3.0), ((0.7, 0.2, 0.6), 0.45, 1.5),
                                    ((0.0, 0.9, 0.1), 0.4, 1.0)]:
            c = np.asarray(centre) / np.linalg.norm(centre)
            img += power * (dirs @ c > math.cos(size))[..., None]
        return img
    if name in ("sky", "sunset"):
        horizon = np.array([1.0, 0.55, 0.3]) if name == "sunset" else np.array([0.8, 0.9, 1.0])
        zenith = np.array([0.25, 0.3, 0.6]) if name == "sunset" else np.array([0.25, 0.45, 0.95])
        ground = np.array([0.2, 0.15, 0.1])
        t = np.clip(y, 0, 1)[..., None]
        img = np.where(y[..., None] > 0, horizon * (1 - t) + zenith * t, ground)
        s = np.asarray(sun if sun is not None else ((0.8, 0.12, 0.6) if name == "sunset" else (0.4, 0.8, 0.5)), float)
        s /= np.linalg.norm(s)
        colour = np.array([4.0, 1.8, 0.6]) if name == "sunset" else np.array([4.0, 3.8, 3.4])
        img = img + colour * (dirs @ s > math.cos(0.2))[..., None]
        return img
    if name == "overcast":
        return np.clip(0.7 + 0.5 * y, 0.15, None)[..., None] * np.array([0.95, 0.97, 1.0])
    if name == "night":
        return np.full((height, width, 3), 0.02) + np.array([0.3, 0.4, 0.9]) * (y > 0.3)[..., None] * 0.3
    raise UsageError(f"unknown environment preset {name!r}; use one of {ENV_PRESETS}")


ENV_PRESETS = ("studio", "sky", "sunset", "overcast", "night")
RIG_PRESETS = ("studio", "sky", "sunset", "overcast", "night", "front", "side", "top", "rim")


def env_light(name: str, intensity: float = 1.0, **kwargs) -> EnvLight:
    """An SH environment light from a procedural preset."""
    return EnvLight(sh_from_equirect(procedural_env(name, **kwargs)), intensity, name)


def env_light_from_image(image: np.ndarray, name: str, intensity: float = 1.0) -> EnvLight:
    """An SH environment light from an equirectangular image (float linear, or uint8 sRGB decoded here)."""
    img = np.asarray(image)
    if img.dtype == np.uint8:
        img = srgb_to_linear(img[..., :3] / 255.0)
    elif img.dtype == np.uint16:
        img = srgb_to_linear(img[..., :3] / 65535.0)
    return EnvLight(sh_from_equirect(img), intensity, name)


def srgb_to_linear(c):
    c = np.asarray(c, np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def preset_rig(name: str) -> LightRig:
    """A named lighting rig: environment presets plus a key light, or single-light test rigs."""
    if name == "front":
        return LightRig([AmbientLight(intensity=0.15), DirectionalLight((0, 0, 1), intensity=0.9)], name)
    if name == "side":
        return LightRig([AmbientLight(intensity=0.1), DirectionalLight((1, 0.2, 0.3), intensity=1.0)], name)
    if name == "top":
        return LightRig([AmbientLight(intensity=0.1), DirectionalLight((0, 1, 0.3), intensity=1.0)], name)
    if name == "rim":
        return LightRig([AmbientLight(intensity=0.05), DirectionalLight((-0.8, 0.3, -0.6), intensity=1.2),
                         DirectionalLight((0.2, 0.1, 1), intensity=0.25)], name)
    if name == "studio":
        return LightRig([env_light("studio", 0.45), AreaLight(intensity=1.4),
                         DirectionalLight((-0.5, 0.3, 0.8), intensity=0.3)], name)
    if name in ENV_PRESETS:
        return LightRig([env_light(name, 0.8 if name != "night" else 1.0)], name)
    raise UsageError(f"unknown lighting {name!r}: use one of {', '.join(RIG_PRESETS)}, or an image/JSON file")


def random_rig(rng: np.random.Generator) -> LightRig:
    """A random but plausible rig: an environment preset, a warm-to-cool key light in front, some ambient."""
    env = ENV_PRESETS[int(rng.integers(len(ENV_PRESETS) - 1))]  # night is too dark for training images
    az, el = rng.uniform(-70, 70), rng.uniform(-10, 60)
    a, e = math.radians(az), math.radians(el)
    direction = (math.sin(a) * math.cos(e), math.sin(e), math.cos(a) * math.cos(e))
    temp = rng.uniform(-1, 1)  # warm (-) to cool (+) white
    colour = (1.0 - 0.15 * max(temp, 0), 1.0 - 0.05 * abs(temp), 1.0 - 0.25 * max(-temp, 0))
    sun = (rng.normal(), abs(rng.normal()) + 0.2, abs(rng.normal()))
    lights = [env_light(env, float(rng.uniform(0.3, 0.8)), sun=sun),
              DirectionalLight(direction, colour, float(rng.uniform(0.4, 1.0))),
              AmbientLight(intensity=float(rng.uniform(0.02, 0.1)))]
    return LightRig(lights, f"random-{env}")
