"""Unwrapping a rendered picture back into UV space recovers the texture where the camera sees it."""

import numpy as np
import torch

from topos_cli.render.lights import AmbientLight, LightRig
from topos_cli.render.renderer import Material, Renderer, RenderMesh
from topos_cli.render.unwrap import unwrap
from topos_cli.render.views import framed_camera


def test_unwrap_inverts_texturing_on_visible_texels(tiny_template):
    t = tiny_template
    u = np.linspace(0, 1, 64)
    albedo = np.stack([np.tile(u, (64, 1)), np.tile(u[:, None], (1, 64)), np.full((64, 64), 0.5)], -1)
    mesh = RenderMesh(t.verts, t.faces, uv=t.uv, uv_faces=t.uv_faces)
    cam = framed_camera(t.verts, 0, 0, 128)
    flat = LightRig([AmbientLight(intensity=1.0)])  # radiance = albedo: the picture is the texture
    picture = Renderer("torch").render(mesh, cam, Material(albedo_map=albedo), flat, "lambert", ("albedo",))
    image = torch.tensor(picture["albedo"][..., :3], dtype=torch.float32)
    texture, weight = unwrap(image, t.verts, t.faces, t.uv, t.uv_faces, cam, size=32)
    seen = weight.numpy() > 0.5  # facing the camera
    assert 0.1 < seen.mean() < 0.6  # the front of the sphere, not its back
    centres = (np.arange(32) + 0.5) / 32  # texel centres: red follows columns (u), green rows (1 - v)
    expect = np.stack([np.tile(centres, (32, 1)), np.tile(centres[:, None], (1, 32))], -1)
    assert np.abs(texture.numpy()[..., :2] - expect)[seen].max() < 0.03  # the texture, back in place
    assert (texture.numpy()[weight.numpy() == 0] == 0).all()
