"""CPU-vs-CUDA parity of the differentiable rasterizer and the renderer (skipped without CUDA)."""

import numpy as np
import pytest
import torch
import trimesh

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def test_torch_backend_matches_on_cuda():
    from topos_cli.render.lights import preset_rig
    from topos_cli.render.renderer import Material, Renderer, RenderMesh
    from topos_cli.render.views import framed_camera

    sphere = trimesh.creation.icosphere(subdivisions=4, radius=10.0)
    verts, faces = np.asarray(sphere.vertices, np.float32), np.asarray(sphere.faces)
    uv = (0.5 + 0.4 * verts[:, :2] / 10).astype(np.float32)
    tex = (np.random.default_rng(0).uniform(0, 1, (64, 64, 3)) * 255).astype(np.uint8)
    mesh = RenderMesh(verts, faces, uv=uv, uv_faces=faces)
    cam = framed_camera(verts, 30, 10, 128)
    passes = ("color", "depth", "mask", "face_id")
    cpu = Renderer("torch", "cpu").render(mesh, cam, Material(albedo_map=tex), preset_rig("studio"), passes=passes)
    gpu = Renderer("torch", "cuda").render(mesh, cam, Material(albedo_map=tex), preset_rig("studio"), passes=passes)
    assert np.array_equal(cpu["mask"], gpu["mask"])
    same = cpu["face_id"] == gpu["face_id"]
    assert same.mean() > 0.999
    assert np.abs(cpu["depth"] - gpu["depth"])[same].max() < 1e-3
    assert np.abs(cpu["color"] - gpu["color"])[same].max() < 2 / 255


def test_gradients_flow_on_cuda():
    from topos_cli.render import raster_torch as rt
    from topos_cli.render.views import framed_camera

    sphere = trimesh.creation.icosphere(subdivisions=3, radius=10.0)
    verts = torch.tensor(np.asarray(sphere.vertices), dtype=torch.float32, device="cuda", requires_grad=True)
    faces = torch.tensor(np.asarray(sphere.faces), device="cuda")
    cam = framed_camera(sphere.vertices, 0, 0, 64)
    clip = rt.to_clip(verts, cam.clip_matrix().astype(np.float32))
    frags = rt.rasterize(clip, faces, 64, 64, cam.near, cam.far)
    depth = rt.interpolate(clip[0, :, 3:4], faces, frags, rt.barycentrics(clip, faces, frags))
    depth.sum().backward()
    assert torch.isfinite(verts.grad).all() and verts.grad.abs().sum() > 0
