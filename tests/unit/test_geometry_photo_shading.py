"""Photometric refinement (geometry/photo_shading.py) and its shape priors (geometry/shape_prior.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from topos_cli.geometry.photo_shading import (
    LandmarkTarget,
    ShadingConfig,
    refine_shading,
    shading_basis,
    skin_vertices,
    solve_lighting,
)
from topos_cli.geometry.shape_prior import covariance_basis
from topos_cli.render.lights import srgb_to_linear as _srgb_to_linear
from topos_cli.template import load_template


def test_shading_basis_terms_at_known_normals():
    n = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    y2 = shading_basis(n, order=2)
    assert y2.shape == (2, 9)
    np.testing.assert_allclose(y2[0].numpy(), [1, 0, 0, 1, 0, 0, 0, 0, 2])  # 3z^2 - 1 = 2 facing the camera
    np.testing.assert_allclose(y2[1].numpy(), [1, 1, 0, 0, 0, 0, 0, 1, -1])
    y3 = shading_basis(n, order=3)
    assert y3.shape == (2, 19) and float(y3[0, 9:].sum()) == 1.0  # only z^3 is non-zero at (0, 0, 1)


def test_lighting_solve_recovers_a_known_lighting_and_ignores_zero_weights():
    gen = torch.Generator().manual_seed(0)
    n = torch.nn.functional.normalize(torch.randn(500, 3, generator=gen), dim=1)
    basis = shading_basis(n, order=3)
    light = torch.randn(basis.shape[1], 3, generator=gen)
    colour = basis @ light
    weight = torch.ones(500)
    colour[:50] += 10.0  # outliers...
    weight[:50] = 0.0  # ...that carry no weight
    fitted = solve_lighting(basis.double(), colour.double(), weight.double(), ridge=1e-9)
    # the cubic monomials span the order-1 terms again on the sphere (x^3 + x y^2 + x z^2 = x): compare shadings
    np.testing.assert_allclose((basis.double() @ fitted)[50:].numpy(), (basis @ light)[50:].numpy(), atol=1e-4)


def test_covariance_basis_reproduces_the_offsets_covariance():
    rng = np.random.default_rng(1)
    rows = rng.standard_normal((6, 4 * 3))
    half = rng.standard_normal((6, 6))
    cov = half @ half.T
    dirs = covariance_basis(cov, rows, 4).reshape(-1, 12).astype(np.float64)
    np.testing.assert_allclose(dirs.T @ dirs, rows.T @ cov @ rows, rtol=1e-4, atol=1e-4)
    assert np.all(np.diff(np.linalg.norm(dirs, axis=1)) <= 1e-9)  # largest first


def srgb_to_linear(image: np.ndarray) -> np.ndarray:
    """uint8 sRGB -> float32 linear light, as GeoPipeline hands the photo to the refinement."""
    return _srgb_to_linear(np.asarray(image) / 255.0).astype(np.float32)


def test_srgb_to_linear_endpoints_and_midtone():
    out = srgb_to_linear(np.array([[[0, 128, 255]]], np.uint8))
    np.testing.assert_allclose(out[0, 0], [0.0, 0.2158605, 1.0], atol=1e-5)


@pytest.fixture(scope="module")
def scene():
    """The template with a known nose/cheek change, rendered under a side key light, and the landmark map."""
    from topos_cli.render.lights import AmbientLight, DirectionalLight, LightRig
    from topos_cli.render.renderer import Material, Renderer, RenderMesh
    from topos_cli.render.views import framed_camera

    tpl = load_template()
    lmap = tpl.sidecar("face_landmarks_mediapipe.json")
    basis = np.stack([tpl.basis("region_nose")[0], tpl.basis("region_cheekbone")[0]])
    basis = basis / np.linalg.norm(basis.reshape(2, -1), axis=1)[:, None, None] * 3.0  # ~1 mm on its region
    truth = np.array([1.5, -1.0])
    verts = (tpl.verts + np.tensordot(truth, basis, 1)).astype(np.float32)
    cam = framed_camera(verts, azimuth=15.0, elevation=5.0, size=384, fov=20.0, margin=1.6)
    rig = LightRig([AmbientLight(intensity=0.25), DirectionalLight((0.7, 0.3, 0.65), intensity=1.0)])
    img = Renderer("gl").render(RenderMesh(verts, tpl.faces), cam, Material(color=(0.7, 0.5, 0.42)), rig,
                                shading="lambert")["color"]
    photo = np.clip(np.round(np.asarray(img)[..., :3] * 255), 0, 255).astype(np.uint8)
    corners = tpl.faces[np.asarray(lmap["triangles"])]
    points = np.einsum("lk,lkc->lc", np.asarray(lmap["barycentrics"]), verts[corners])
    pix, _ = cam.project(points)
    target = LandmarkTarget(pix, np.asarray(lmap["triangles"]), np.asarray(lmap["barycentrics"]),
                            np.asarray(lmap["weights"]))
    return tpl, basis, truth, cam, photo, target


def test_refinement_recovers_a_shape_change_from_shading(scene):
    from topos_cli.texture.project import depth_map

    tpl, basis, truth, cam, photo, target = scene

    def depth(verts, rot, t):
        return depth_map(verts, tpl.faces, cam)

    fit = refine_shading(srgb_to_linear(photo), tpl.verts, basis, tpl.faces, cam.R, cam.t,
                         (cam.fx, cam.fy, cam.cx, cam.cy), skin_vertices(tpl), target, depth_fn=depth,
                         config=ShadingConfig(prior_weight=1e-5, blur_px=1.0))
    err_before = np.linalg.norm(truth)
    err_after = np.linalg.norm(fit.coefficients - truth)
    assert err_after < 0.5 * err_before, (fit.coefficients, truth)  # measured: 0.37 (the shadowed side is lost)
    assert np.all(np.sign(fit.coefficients) == np.sign(truth))
    assert fit.vertices_used > 1000 and fit.residual < 0.05
    angle = np.degrees(np.arccos(np.clip((np.trace(fit.rotation @ cam.R.T) - 1) / 2, -1, 1)))
    assert angle < 1.0, angle  # the pose stays (it was right)
    assert fit.residual_px.shape == (478, 2)


def test_skin_vertices_leave_out_eyes_brows_and_lips():
    tpl = load_template()
    skin = skin_vertices(tpl)
    assert len(skin) > 3000
    for region in ("eye", "brow", "mouth"):
        assert not np.isin(tpl.region(region), skin).any()
    assert np.isin(tpl.region("nose"), skin).mean() > 0.5


def test_a_degenerate_photo_leaves_the_landmark_fit_alone(scene):
    tpl, basis, _, cam, photo, target = scene
    bad = np.full(photo.shape, np.nan, np.float32)
    fit = refine_shading(bad, tpl.verts, basis, tpl.faces, cam.R, cam.t, (cam.fx, cam.fy, cam.cx, cam.cy),
                         skin_vertices(tpl), target, config=ShadingConfig(rounds=1, iterations=3))
    np.testing.assert_array_equal(fit.coefficients, np.zeros(len(basis)))
    np.testing.assert_allclose(fit.rotation, cam.R, atol=1e-6)


def test_skin_the_model_cannot_explain_leaves_the_shape_alone(scene):
    tpl, basis, _, cam, photo, target = scene
    noise = np.random.default_rng(3).integers(0, 256, photo.shape, dtype=np.uint8)  # no shading to explain
    fit = refine_shading(srgb_to_linear(noise), tpl.verts, basis, tpl.faces, cam.R, cam.t,
                         (cam.fx, cam.fy, cam.cx, cam.cy), skin_vertices(tpl), target,
                         config=ShadingConfig(blur_px=0.0))
    assert not fit.applied and fit.inliers < ShadingConfig().min_inliers
    np.testing.assert_array_equal(fit.coefficients, np.zeros(len(basis)))
    good = refine_shading(srgb_to_linear(photo), tpl.verts, basis, tpl.faces, cam.R, cam.t,
                          (cam.fx, cam.fy, cam.cx, cam.cy), skin_vertices(tpl), target,
                          config=ShadingConfig(rounds=1, iterations=2))
    assert good.applied and good.inliers > 0.5
