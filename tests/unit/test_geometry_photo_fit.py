"""The landmark fit recovers a known camera, expression and identity from projected template landmarks."""

from __future__ import annotations

import numpy as np
import pytest

from topos_cli.geometry.photo_fit import (
    FitConfig,
    _left_jacobian,
    _Problem,
    fit_landmarks,
    head_pose_degrees,
    landmark_model,
    rotation_matrix,
)
from topos_cli.render.views import framed_camera
from topos_cli.template import load_template

MODES = 20  # identity modes in the test (the real fit uses all 100): keeps it well under a second


@pytest.fixture(scope="module")
def head_model():
    tpl = load_template()
    lmap = tpl.sidecar("face_landmarks_mediapipe.json")
    assert lmap is not None and len(lmap["triangles"]) == 478
    ident, expr = tpl.basis("identity")[:MODES], tpl.basis("expression")
    model = landmark_model(tpl.verts, ident, expr, np.array(lmap["triangles"]), np.array(lmap["barycentrics"]),
                           tpl.faces, np.array(lmap["weights"]), tpl.bases["expression_names"])
    return tpl, model


def _synthetic(model, alpha, beta, azimuth, elevation):
    pts = model.base + np.tensordot(alpha, model.identity, 1) + np.tensordot(beta, model.expression, 1)
    cam = framed_camera(pts, azimuth=azimuth, elevation=elevation, size=512, fov=20.0, margin=2.0)
    pix, _ = cam.project(pts)
    return cam, pix


def test_fit_recovers_camera_expression_and_identity(head_model):
    _, model = head_model
    rng = np.random.default_rng(3)
    alpha = rng.normal(0, 1, MODES)
    beta = np.zeros(model.expression.shape[0])
    jaw, smile_l = model.expression_names.index("jawOpen"), model.expression_names.index("mouthSmile_L")
    beta[[jaw, smile_l]] = [0.35, 0.6]
    cam, pix = _synthetic(model, alpha, beta, azimuth=18.0, elevation=-6.0)
    fit = fit_landmarks(model, pix, (cam.fx, cam.fy, cam.cx, cam.cy),
                        FitConfig(identity_reg=1e-7, expression_reg=1e-7, max_evals=80))
    angle = np.degrees(np.arccos(np.clip((np.trace(fit.rotation.T @ cam.R) - 1) / 2, -1, 1)))
    assert angle < 0.5
    assert np.linalg.norm(fit.translation - cam.t) < 0.5  # cm, at ~60 cm from the head
    assert abs(fit.expression[jaw] - 0.35) < 0.05 and abs(fit.expression[smile_l] - 0.6) < 0.05
    assert fit.reprojection_px < 0.2
    assert np.abs(fit.identity - alpha).mean() < 0.3
    assert fit.yaw == pytest.approx(-18.0, abs=1.0) and fit.pitch == pytest.approx(-6.0, abs=1.0)


def test_expression_weights_stay_in_bounds_and_gaze_is_capped(head_model):
    _, model = head_model
    beta = np.zeros(model.expression.shape[0])
    look = model.expression_names.index("eyeLookUp_L")
    beta[look] = 0.9  # pushes the lids like glasses do; the fit may explain it only up to the cap
    cam, pix = _synthetic(model, np.zeros(MODES), beta, azimuth=0.0, elevation=0.0)
    fit = fit_landmarks(model, pix, (cam.fx, cam.fy, cam.cx, cam.cy))
    assert fit.expression.min() >= 0.0 and fit.expression.max() <= 1.0
    assert fit.expression[look] <= 0.25 + 1e-9


def test_analytic_jacobian_matches_central_differences(head_model):
    _, model = head_model
    cam, pix = _synthetic(model, np.zeros(MODES), np.zeros(model.expression.shape[0]), 10.0, 5.0)
    problem = _Problem(model, pix, (cam.fx, cam.fy, cam.cx, cam.cy), FitConfig(), pose_only=False)
    rng = np.random.default_rng(0)
    x = np.concatenate([[2.9, 0.3, -0.2], [1.0, -2.0, 60.0], rng.normal(0, 0.5, problem.k), rng.uniform(0, 0.5, problem.e)])
    jac = problem.jac(x)
    eps = 1e-6
    cols = [0, 1, 2, 5, 6, 6 + problem.k + 3]
    for c in cols:
        dx = np.zeros_like(x)
        dx[c] = eps
        numeric = (problem.fun(x + dx) - problem.fun(x - dx)) / (2 * eps)
        assert np.allclose(jac[:, c], numeric, atol=1e-5 * np.abs(numeric).max() + 1e-9)


def test_rotation_helpers():
    omega = np.array([0.3, -1.1, 0.4])
    rot = rotation_matrix(omega)
    assert np.allclose(rot @ rot.T, np.eye(3), atol=1e-12) and np.isclose(np.linalg.det(rot), 1.0)
    assert np.allclose(rotation_matrix(np.zeros(3)), np.eye(3))
    p = np.array([1.0, 2.0, -0.5])  # d(R(w) p)/dw = -[R p]x J_l(w)
    eps = 1e-7
    numeric = np.stack([(rotation_matrix(omega + eps * e) @ p - rotation_matrix(omega - eps * e) @ p) / (2 * eps)
                        for e in np.eye(3)], 1)
    rp = rot @ p
    skew = np.array([[0, -rp[2], rp[1]], [rp[2], 0, -rp[0]], [-rp[1], rp[0], 0]])
    assert np.allclose(-skew @ _left_jacobian(omega), numeric, atol=1e-6)
    frontal = np.diag([1.0, -1.0, -1.0])
    assert np.allclose(head_pose_degrees(frontal), (0.0, 0.0, 0.0), atol=1e-9)


def test_silhouette_distance_field_and_contour_selection():
    from topos_cli.geometry.photo_silhouette import contour_points, sample, silhouette_target

    yy, xx = np.mgrid[0:64, 0:64] + 0.5
    disc = (xx - 32) ** 2 + (yy - 32) ** 2 < 20**2  # a disc of radius 20 px around (32, 32)
    sil = silhouette_target(disc)
    pts = np.array([[32.0, 32.0], [52.0, 32.0], [60.0, 32.0]])
    d = sample(sil.distance, pts)
    assert d[0] < -15 and abs(d[1]) < 1.5 and 6 < d[2] < 9  # inside, on the outline, outside
    assert sample(sil.grad_x, pts[2:])[0] > 0.5  # distance grows outwards
    # a sphere of radius 20 at depth 100 seen by fx = 100: its grazing points lie on a circle of ~20 px
    theta = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    ring = np.sqrt(1 - 0.2**2)  # grazing: n . (C + r n) = 0 with C = (0, 0, 100), r = 20 -> n_z = -0.2
    normals = np.stack([ring * np.cos(theta), ring * np.sin(theta), np.full_like(theta, -0.2)], 1)
    cam = np.array([0.0, 0.0, 100.0]) + 20.0 * normals
    pix = cam[:, :2] / cam[:, 2:] * 100.0 + 32.0
    assert len(contour_points(cam, normals, pix, sil, unit=60.0)) == 72
    assert len(contour_points(cam, -normals, pix, sil, unit=60.0)) == 0  # normals pointing into the mask


def _mask(cam, verts, faces):
    """The mesh's exact silhouette: the union of its projected triangles (pixel centres at +0.5)."""
    import cv2

    pix, _ = cam.project(verts)
    mask = np.zeros((cam.height, cam.width), np.uint8)
    tris = np.round((pix[faces] - 0.5) * 16).astype(np.int32)  # 4 fractional bits
    cv2.fillPoly(mask, list(tris), 1, lineType=cv2.LINE_8, shift=4)
    return mask.astype(bool)


def test_the_neck_outline_recovers_a_width_the_landmarks_cannot_see(head_model):
    """A wider neck leaves every face landmark where it was; the pipeline's silhouette term (its regions, stride and
    weight) finds it from the mask's outline, and without it the fit keeps the base's neck."""
    from topos_cli.geometry.mesh_ops import vertex_normals
    from topos_cli.geometry.photo_fit import ContourModel
    from topos_cli.geometry.photo_silhouette import silhouette_target
    from topos_cli.pipelines.geo import SILHOUETTE_REGIONS, SILHOUETTE_STRIDE, SILHOUETTE_WEIGHT

    tpl, _ = head_model
    lmap = tpl.sidecar("face_landmarks_mediapipe.json")
    neck = tpl.region("neck")
    wider = np.zeros_like(tpl.verts, dtype=np.float64)
    wider[neck, 0] = (tpl.verts[neck, 0] - tpl.verts[neck, 0].mean()) * 0.06  # 6 % wider: ~0.35 cm each side
    truth = tpl.verts + 1.0 * wider
    none = tpl.basis("expression")[:0]  # the neck's width is the only unknown besides the camera
    model = landmark_model(tpl.verts, wider[None], none, np.array(lmap["triangles"]),
                           np.array(lmap["barycentrics"]), tpl.faces, np.array(lmap["weights"]))
    cam = framed_camera(truth, azimuth=10.0, elevation=-4.0, size=512, fov=20.0, margin=1.3)
    target, _ = cam.project(model.base)  # the face points do not move with the neck
    intrinsics = (cam.fx, cam.fy, cam.cx, cam.cy)
    idx = np.unique(np.concatenate([tpl.region(r) for r in SILHOUETTE_REGIONS]))[::SILHOUETTE_STRIDE]
    normals = vertex_normals(np.asarray(tpl.verts, np.float64), tpl.faces)[idx]
    contour = ContourModel(np.asarray(tpl.verts, np.float64)[idx], wider[None][:, idx], none[:, idx],
                           normals)
    sil = silhouette_target(_mask(cam, truth, tpl.faces))
    config = FitConfig(identity_reg=1e-4, silhouette_weight=SILHOUETTE_WEIGHT)
    fit = fit_landmarks(model, target, intrinsics, config, silhouette=(contour, sil))
    assert fit.identity[0] == pytest.approx(1.0, abs=0.25)
    assert fit.reprojection_px < 0.2  # the outline did not pull the face off its landmarks
    assert fit.contour_points > 20  # both sides of the neck
    blind = fit_landmarks(model, target, intrinsics, FitConfig(identity_reg=1e-4))
    assert abs(blind.identity[0]) < 0.05 and blind.contour_points == 0
