"""Camera convention: OpenCV extrinsics, top-left pixel origin with centres at +0.5, head frame +Y up / +Z front."""

import json

import numpy as np
import pytest

from topos_cli.errors import UsageError
from topos_cli.render.camera import focal_from_fov, from_dict, look_at
from topos_cli.render.views import cameras_from_json, framed_camera, orbit, perturbed_frontal


def test_frontal_camera_sees_up_as_up_and_head_left_on_image_right():
    cam = look_at((0, 0, 100), (0, 0, 0), fov=20, width=200)
    pix, z = cam.project(np.array([[0, 0, 0], [0, 10, 0], [10, 0, 0]], float))
    assert np.allclose(pix[0], [100, 100]) and np.isclose(z[0], 100)  # target at the image centre
    assert pix[1, 1] < 100  # +Y (up) is towards row 0 (top)
    assert pix[2, 0] > 100  # +X (the head's left) is on the image's right: we look at the face
    f = focal_from_fov(20, 200)
    assert np.isclose(pix[1, 1], 100 - f * 10 / 100)  # pinhole: v = cy + fy * Y_cam / Z, Y_cam = -10
    assert np.allclose(cam.center, [0, 0, 100])


def test_clip_matrix_matches_projection_and_maps_near_far():
    cam = look_at((30, 20, 90), (1, 2, 3), fov=25, width=160, height=120, near=10, far=300)
    pts = np.random.default_rng(0).normal(0, 10, (20, 3))
    pix, z = cam.project(pts)
    clip = np.c_[pts, np.ones(20)] @ cam.clip_matrix().T
    ndc = clip[:, :3] / clip[:, 3:]
    assert np.allclose((ndc[:, 0] + 1) / 2 * 160, pix[:, 0])
    assert np.allclose((1 - ndc[:, 1]) / 2 * 120, pix[:, 1])  # NDC +1 is row 0
    assert np.allclose(clip[:, 3], z)
    for depth, expect in ((10, -1.0), (300, 1.0)):
        c = cam.projection() @ np.array([0, 0, depth, 1.0])
        assert np.isclose(c[2] / c[3], expect)


def test_dict_round_trip_opengl_conversion_and_resize(tmp_path):
    cam = look_at((10, 5, 80), fov=18, width=64)
    again = from_dict(json.loads(json.dumps(cam.to_dict())))
    assert np.allclose(again.R, cam.R) and np.allclose(again.t, cam.t) and again.fx == cam.fx
    gl = {"width": 64, "height": 64, "fx": cam.fx, "cx": 32, "cy": 32, "convention": "opengl",
          "R": (np.diag([1, -1, -1]) @ cam.R).tolist(), "t": (np.diag([1, -1, -1]) @ cam.t).tolist()}
    assert np.allclose(from_dict(gl).R, cam.R)
    integer = from_dict({**cam.to_dict(), "cx": 31.5, "cy": 31.5, "pixel_centers": "integer"})
    assert integer.cx == 32.0
    big = from_dict(cam.to_dict(), width=128, height=128)
    assert big.fx == 2 * cam.fx and big.cx == 64
    eye = cameras_from_json({"cameras": [{"eye": [0, 0, 50], "fov": 30}]}, size=32)[0]
    assert eye.width == 32 and np.allclose(eye.center, [0, 0, 50])
    # a portrait's 600x800 camera keeps its aspect: --size is the longer side, the focal scales with it
    tall = cameras_from_json({"eye": [0, 0, 50], "fov": 30, "width": 600, "height": 800}, size=400)[0]
    native = from_dict({"eye": [0, 0, 50], "fov": 30, "width": 600, "height": 800})
    assert (tall.width, tall.height) == (300, 400)
    assert np.isclose(tall.fx, native.fx / 2) and np.isclose(tall.fy, native.fy / 2) and np.isclose(tall.cx, 150)
    with pytest.raises(UsageError):
        cameras_from_json([{"width": 3}])


def test_framing_orbit_and_perturbation_are_deterministic():
    verts = np.random.default_rng(1).uniform(-10, 10, (100, 3))
    cam = framed_camera(verts, size=128)
    pix, _ = cam.project(verts)
    assert pix.min() > 0 and pix.max() < 128  # the whole mesh is in view
    cams = orbit(verts, 4, elevation=0)
    centres = np.array([c.center for c in cams])
    assert centres[1, 0] > 0 and abs(centres[2, 2]) > 0 > centres[2, 2]  # 90 deg: +X side; 180: behind
    a, pa = perturbed_frontal(verts, np.random.default_rng(3))
    b, pb = perturbed_frontal(verts, np.random.default_rng(3))
    assert pa == pb and np.array_equal(a.R, b.R)
    assert abs(pa["azimuth"]) <= 15 and abs(pa["elevation"]) <= 10
