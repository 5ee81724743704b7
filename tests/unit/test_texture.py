"""generate-tex's pure parts on the shipped template at small sizes: UV raster round trip, mirror map,
de-lighting, the unwrap method end to end."""

from __future__ import annotations

import numpy as np
import pytest

from topos_cli.template import load_template

SIZE = 128


@pytest.fixture(scope="module")
def head():
    return load_template("topos-head")


def _smooth_texture(size: int) -> np.ndarray:
    """(S, S, 3) linear colours varying smoothly in uv (so bilinear resampling barely changes them)."""
    v, u = np.meshgrid(np.linspace(1, 0, size), np.linspace(0, 1, size), indexing="ij")
    return np.stack([0.3 + 0.2 * u, 0.25 + 0.15 * np.sin(3 * v), 0.2 + 0.1 * u * v], -1)


def _render_albedo(head, texture_linear: np.ndarray, camera):
    from topos_cli.pipelines.tex import linear_to_srgb
    from topos_cli.render.renderer import Material, Renderer, RenderMesh

    mesh = RenderMesh(head.verts, head.faces, uv=head.uv, uv_faces=head.uv_faces)
    tex8 = (linear_to_srgb(texture_linear) * 255 + 0.5).astype(np.uint8)
    out = Renderer("torch").render(mesh, camera, Material(albedo_map=tex8), passes=("albedo",))
    return out["albedo"][..., :3]


def test_uv_round_trip_returns_the_texture_on_visible_texels(head):
    from topos_cli.pipelines.tex import srgb_to_linear
    from topos_cli.render.raster_gl import _vertex_normals
    from topos_cli.render.views import framed_camera
    from topos_cli.texture.project import depth_map, project_texels
    from topos_cli.texture.uv import rasterize_uv

    texture = _smooth_texture(SIZE)
    cam = framed_camera(head.verts.astype(float), 20, 0, 256)
    photo = srgb_to_linear(_render_albedo(head, texture, cam))
    raster = rasterize_uv(head.uv, head.uv_faces, SIZE, backend="torch")
    pos = raster.interpolate(head.verts, head.faces)
    nrm = raster.interpolate(_vertex_normals(head.verts, head.faces), head.faces)
    proj = project_texels(photo, pos, nrm, cam, depth_map(head.verts, head.faces, cam, backend="torch"))
    good = proj.weight > 0.9
    assert 0.2 < good.mean() < 0.6  # one side of a head, not everything, not nothing
    truth = texture.reshape(-1, 3)[raster.pix]
    assert np.abs(proj.colour[good] - truth[good]).mean() < 0.01
    hidden = proj.weight == 0  # the far side really is rejected: its colours are not what the photo shows
    assert hidden.mean() > 0.3


def test_mirror_map_is_an_involution_onto_mirrored_positions(head):
    from topos_cli.texture.uv import template_mirror, template_raster

    raster, mirror = template_raster(head, SIZE), template_mirror(head, SIZE)
    assert (mirror.index >= 0).mean() > 0.98
    full = np.full(SIZE * SIZE, -1)
    full[raster.pix] = np.arange(len(raster.pix))
    ok = mirror.index >= 0
    back = mirror.index[full[mirror.index[ok]]]
    assert (back == raster.pix[ok]).mean() > 0.95
    pos = raster.interpolate(head.verts, head.faces)
    mirrored = pos[full[mirror.index[ok]]] * np.array([-1, 1, 1])
    texel_cm = 2 * np.ptp(head.verts, 0).max() / SIZE  # a texel spans about this much of the head
    assert np.median(np.linalg.norm(mirrored - pos[ok], axis=1)) < texel_cm


def test_mirror_corner_uv_of_a_symmetric_pair():
    from topos_cli.texture.uv import mirror_corner_uv

    # two triangles mirrored about x = 0, each in its own half of the uv square
    faces = np.array([[0, 1, 2], [3, 5, 4]])
    uv = np.array([[0.1, 0.1], [0.4, 0.1], [0.1, 0.4], [0.9, 0.1], [0.6, 0.1], [0.9, 0.4]])
    symmetry = np.array([3, 4, 5, 0, 1, 2])
    corner_uv, valid = mirror_corner_uv(faces, faces, uv, symmetry)
    assert valid.all()
    np.testing.assert_allclose(corner_uv[0], uv[[3, 4, 5]])
    np.testing.assert_allclose(corner_uv[1], uv[[0, 2, 1]])


def test_delight_recovers_albedo_under_sh_light_with_outliers():
    from topos_cli.render.lights import sh_basis
    from topos_cli.texture.delight import delight

    rng = np.random.default_rng(0)
    n = rng.normal(size=(4000, 3))
    n[:, 2] = np.abs(n[:, 2])
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    light = np.array([0.9, 0.3, 0.2, 0.5, 0.05, 0.0, 0.1, 0.0, 0.05])
    shading = np.clip(sh_basis(n) @ light, 0.05, None)
    albedo = np.array([0.5, 0.35, 0.3]) * (1 + 0.03 * rng.normal(size=(4000, 1)))
    colour = albedo * shading[:, None]
    colour[:400] = 0.02  # dark hair on 10 % of the texels
    out = delight(colour, n, np.ones(4000), np.ones(4000, bool))
    skin = np.arange(4000) >= 400
    skin &= shading > 0.3 * np.median(shading)  # deep shadow is clamped by design (SHADING_FLOOR)
    ratio = out.albedo[skin] / albedo[skin]
    assert np.std(ratio[:, 1]) / np.mean(ratio[:, 1]) < 0.03  # shading gone (the raw photo varies ~40 %)
    assert np.std(colour[skin, 1] / albedo[skin, 1]) / np.mean(colour[skin, 1] / albedo[skin, 1]) > 0.2
    assert out.inliers[:400].mean() < 0.2


def test_delight_removes_a_light_whose_colour_changes_with_the_normal():
    from topos_cli.render.lights import sh_basis
    from topos_cli.texture.delight import delight

    rng = np.random.default_rng(1)
    n = rng.normal(size=(4000, 3))
    n[:, 2] = np.abs(n[:, 2])
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    shading = np.clip(sh_basis(n) @ np.array([0.9, 0.2, 0.3, 0.4, 0, 0, 0.05, 0, 0]), 0.1, None)
    warm = np.stack([1 + 0.15 * n[:, 0], np.ones(4000), 1 - 0.2 * n[:, 0]], 1)  # warm key right, cool sky left
    albedo = np.array([0.5, 0.35, 0.3])
    out = delight(albedo * shading[:, None] * warm, n, np.ones(4000), np.ones(4000, bool))
    chroma = out.albedo[:, 2] / out.albedo[:, 0]
    raw = warm[:, 2] / warm[:, 0]
    assert np.std(chroma) / np.mean(chroma) < 0.25 * np.std(raw) / np.mean(raw)  # the tint is mostly gone


def test_unwrap_delights_and_completes_a_lit_render(head):
    from topos_cli.pipelines.tex import linear_to_srgb, srgb_to_linear, unwrap_texture
    from topos_cli.render.lights import AmbientLight, DirectionalLight, LightRig
    from topos_cli.render.renderer import Material, Renderer, RenderMesh
    from topos_cli.render.views import framed_camera

    texture = _smooth_texture(SIZE)
    cam = framed_camera(head.verts.astype(float), 15, 0, 256)
    mesh = RenderMesh(head.verts, head.faces, uv=head.uv, uv_faces=head.uv_faces)
    tex8 = (linear_to_srgb(texture) * 255 + 0.5).astype(np.uint8)
    rig = LightRig([AmbientLight(intensity=0.3), DirectionalLight((0.6, 0.3, 0.8), intensity=0.9)], "test")
    photo = Renderer("torch").render(mesh, cam, Material(albedo_map=tex8), rig, "lambert")["color"][..., :3]
    result = unwrap_texture(head, SIZE, photo, head.verts, cam)
    assert result.albedo.shape == (SIZE, SIZE, 3) and result.normal.shape == (SIZE, SIZE, 3)
    assert np.isfinite(result.albedo).all() and 0 < result.roughness.min() and result.roughness.max() <= 1
    np.testing.assert_allclose(result.coverage.sum(-1)[result.coverage.sum(-1) > 0], 1.0, atol=1e-6)
    seen = (result.coverage[..., 0] > 0.9).reshape(-1)
    pred, truth = srgb_to_linear(result.albedo).reshape(-1, 3)[seen], texture.reshape(-1, 3)[seen]
    gain = np.median(truth / pred, axis=0)
    err = np.abs(pred * gain - truth).mean()
    raw = srgb_to_linear(photo[..., :3]).reshape(-1, 3)
    assert err < 0.02 and np.isfinite(raw).all()
    assert result.stats["photo"] > 0.25 and result.stats["mirror"] > 0.05


def _landmark_scene(shift):
    """478 face-like points in front of a camera, their projections, and detections moved by `shift(pixels)`."""
    from topos_cli.render.views import framed_camera

    rng = np.random.default_rng(2)
    points = np.stack([rng.uniform(-6, 6, 478), rng.uniform(-8, 6, 478), rng.uniform(0, 3, 478)], 1)
    points[[33, 263]] = [[-4.5, 0, 2], [4.5, 0, 2]]  # the outer eye corners set the face's scale
    cam = framed_camera(points, 0, 0, 256)
    pix, z = cam.project(points)
    depth = np.full((256, 256), float(z.max()) + 10.0)
    return points, pix, pix + shift(pix), cam, depth


def test_landmark_warp_moves_projections_onto_detections():
    from topos_cli.texture.register import landmark_warp

    shift = lambda p: np.stack([6 + 0.02 * (p[:, 1] - 128), -4 + 0.0 * p[:, 0]], 1)  # noqa: E731
    points, pix, detected, cam, depth = _landmark_scene(shift)
    warp = landmark_warp(detected, points, np.ones(478), cam, depth)
    assert warp is not None and warp.used == 478
    moved = warp.apply(pix)
    assert np.median(np.linalg.norm(moved - detected, axis=1)) < 1.0  # was ~7 px


def test_landmark_warp_ignores_jitter_and_hidden_landmarks():
    from topos_cli.texture.register import landmark_warp

    rng = np.random.default_rng(3)
    points, pix, detected, cam, depth = _landmark_scene(lambda p: rng.normal(0, 0.3, p.shape))
    warp = landmark_warp(detected, points, np.ones(478), cam, depth)
    assert warp is not None and np.abs(warp.apply(pix) - pix).max() < 0.3  # jitter shrunk away
    assert landmark_warp(detected, points, np.ones(478), cam, np.full_like(depth, 1e-3)) is None  # all hidden


def test_flatten_prior_keeps_features_and_sets_skin_to_its_median():
    from topos_cli.texture.complete import flatten_prior

    prior = np.zeros((4, 4, 3))
    prior[..., 0] = np.arange(16).reshape(4, 4) / 16  # a blotchy red channel
    features = np.zeros((4, 4))
    features[0, 0] = 1.0  # one feature texel (a lip)
    features[0, 1] = 0.5  # its soft edge
    skin = np.ones((4, 4), bool)
    out = flatten_prior(prior, features, skin)
    median = np.median(prior[..., 0])  # 7.5 / 16
    assert out[0, 0, 0] == 0.0  # the feature keeps its own colour
    assert out[0, 1, 0] == pytest.approx(0.5 * (1 / 16) + 0.5 * median)
    np.testing.assert_allclose(out[1:, :, 0], median)  # the rest is one tone


def test_smooth_ratio_without_reach_is_the_median_ratio_everywhere():
    from topos_cli.texture.complete import smooth_ratio

    s = 32
    prior = np.full((s, s, 3), 0.2)
    values = np.full((s, s, 3), 0.3)
    values[:4, :4] = 0.9  # a misfit border patch (shading the head left in) does not colour the rest
    seen = np.zeros((s, s))
    seen[:16] = 1.0
    covered = np.ones((s, s), bool)
    glob = smooth_ratio(values, prior, seen, covered, reach=0.0)
    np.testing.assert_allclose(glob, 1.5)  # median of 0.3 / 0.2 over the seen half
    local = smooth_ratio(values, prior, seen, covered, reach=1 / 64)
    assert local[2, 2, 0] > 3.0  # next to the patch the local colour is followed
    assert abs(local[-1, -1, 0] - 1.5) < 0.05  # far from any observation it is the global ratio


def test_complete_trust_shrinks_photo_texels_toward_the_completion():
    from topos_cli.texture.complete import complete

    s = 16
    covered = np.ones((s, s), bool)
    prior = np.full((s, s, 3), 0.2)
    albedo = np.full((s, s, 3), 0.4)
    albedo[5, 5] = 0.8  # one texel the head's wrong shading brightened
    weight = np.zeros((s, s))
    weight[:8] = 1.0
    mirror = np.full(s * s, -1)
    full = complete(albedo, weight, covered, mirror, prior, trust=1.0, reach=0.0)
    shrunk = complete(albedo, weight, covered, mirror, prior, trust=0.25, reach=0.0)
    assert full.albedo[5, 5, 0] == pytest.approx(0.8)
    assert shrunk.albedo[5, 5, 0] == pytest.approx(0.25 * 0.8 + 0.75 * 0.4)  # 0.4: prior x median ratio 2
    assert shrunk.albedo[12, 3, 0] == pytest.approx(0.4)  # unseen texels: the completion as before
    assert shrunk.photo[5, 5] == pytest.approx(0.25) and shrunk.prior[5, 5] == pytest.approx(0.75)


def test_fitted_head_low_passes_the_photo_by_its_registration():
    from topos_cli.pipelines.tex import FITTED_HEAD, _low_pass
    from topos_cli.render.views import framed_camera

    points = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 0.0], [-1.0, -1.0, 0.0]])
    cam = framed_camera(points, 0, 0, 64)
    photo = np.zeros((64, 64, 3))
    photo[32, 32] = 1.0  # a point: its blur's spread is the registration in pixels
    out = _low_pass(photo, points, cam, FITTED_HEAD.registration_cm)
    _, z = cam.project(points)
    sigma = FITTED_HEAD.registration_cm * cam.fx / np.median(z)
    row = out[32, :, 0] / out[32, :, 0].sum()
    spread = np.sqrt((row * (np.arange(64) - 32) ** 2).sum())
    assert spread == pytest.approx(sigma, rel=0.1) and out.sum() == pytest.approx(3.0, rel=1e-3)
    assert _low_pass(photo, points, cam, 0.0) is photo  # an exact head: the photo as it is


def test_fitted_head_trusts_the_photo_on_lips_and_brows_only():
    from types import SimpleNamespace

    from topos_cli.pipelines.tex import EXACT_HEAD, FITTED_HEAD, _trust

    lips = np.zeros((4, 4))
    lips[1, 1] = 1.0
    assets = SimpleNamespace(masks={"lips": lips, "brows": np.zeros((4, 4)), "tzone": np.ones((4, 4))})
    trust = _trust(FITTED_HEAD, assets)
    assert trust[1, 1] == pytest.approx(FITTED_HEAD.feature_trust)  # the person's own lip colour
    assert trust[0, 0] == pytest.approx(FITTED_HEAD.trust) and FITTED_HEAD.trust < 1  # skin: toward completion
    assert _trust(EXACT_HEAD, assets) == 1.0
