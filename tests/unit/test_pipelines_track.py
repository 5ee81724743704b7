"""Video fitting (pipelines/track.py) on a synthetic clip rendered with known curves, and the talking-head poser."""

from __future__ import annotations

import numpy as np
import pytest

from topos_cli.pipelines.talking_head import TalkingHead, joint_matrices, quat_matrix
from topos_cli.pipelines.track import FaceTracker, TrackOptions, gaussian_smooth

FRAMES = 36
FPS = 30.0
SIZE = 224  # small, and still a face mediapipe finds in every frame


def _truth(frames: int = FRAMES) -> dict:
    i = np.arange(frames)
    return {"jawOpen": 0.45 - 0.45 * np.cos(2 * np.pi * i / (frames / 2)),  # two open-close cycles
            "eyeBlink": np.exp(-0.5 * ((i - 0.6 * frames) / 2.0) ** 2),  # one blink
            "yaw": np.linspace(-12.0, 12.0, frames), "pitch": 4.0 * np.sin(2 * np.pi * i / frames)}


@pytest.fixture(scope="module")
def clip():
    pytest.importorskip("mediapipe")
    from topos_cli.commands.export import asset_animation
    from topos_cli.io.animation import FaceAnimation
    from topos_cli.pipelines.head_asset import build_head_asset, texture_maps
    from topos_cli.template import load_template

    tpl = load_template()
    asset, _ = build_head_asset(tpl, tpl.verts)
    truth = _truth()
    anim = FaceAnimation(np.arange(FRAMES) / FPS,
                         {"jawOpen": truth["jawOpen"], "eyeBlinkLeft": truth["eyeBlink"],
                          "eyeBlinkRight": truth["eyeBlink"]},
                         {"head": np.radians(np.stack([truth["yaw"], truth["pitch"], np.zeros(FRAMES)], 1))})
    scene = TalkingHead.from_asset(asset, texture_maps(tpl, None)[0])
    frames = list(scene.frames(asset_animation(asset, tpl, anim, "arkit", "truth"), size=SIZE))
    return tpl, frames, truth


def test_fit_recovers_jaw_blink_and_head_turn(clip):
    tpl, frames, truth = clip
    track = FaceTracker(tpl, None, TrackOptions(identity_frames=2))(frames, FPS)
    assert track.found.all() and track.expression.shape == (FRAMES, len(track.names))
    curves = track.animation({"jawOpen": {"jawOpen": 1.0}}).weights
    jaw = curves["jawOpen"]
    assert np.corrcoef(jaw, truth["jawOpen"])[0, 1] > 0.9
    blink = 0.5 * (curves["eyeBlink_L"] + curves["eyeBlink_R"])
    assert np.corrcoef(blink, truth["eyeBlink"])[0, 1] > 0.8
    assert np.abs(track.angles[:, 0] - truth["yaw"]).max() < 3.0  # degrees
    assert np.abs(track.angles[:, 1] - truth["pitch"]).max() < 4.0
    assert track.record()["no_face_frames"] == 0


def test_frames_without_a_face_hold_the_previous_pose(clip):
    tpl, frames, _ = clip
    blank = np.zeros_like(frames[0])
    clip_with_gaps = [blank] + frames[:6] + [blank, blank] + frames[6:10]
    track = FaceTracker(tpl, None, TrackOptions(identity_frames=0, smooth_s=0.0))(clip_with_gaps, FPS)
    assert track.found.tolist() == [False] + [True] * 6 + [False, False] + [True] * 4
    assert np.array_equal(track.angles[0], track.angles[1])  # before any face: the first fit
    assert np.array_equal(track.angles[7], track.angles[6]) and np.array_equal(track.expression[8], track.expression[6])
    assert "no face in 3 of 13 frames" in track.warnings[0]


def test_no_face_anywhere_is_a_usage_error(clip):
    from topos_cli.errors import UsageError

    tpl, frames, _ = clip
    with pytest.raises(UsageError, match="no face found in any of the 2 frames"):
        FaceTracker(tpl)([np.zeros_like(frames[0])] * 2, FPS)


def test_gaussian_smooth_keeps_constants_and_lines_and_damps_noise():
    t = np.arange(50, dtype=np.float64)
    line = np.stack([np.full(50, 0.3), 0.01 * t], 1)
    assert np.allclose(gaussian_smooth(line, 1.0)[3:-3], line[3:-3])
    noise = np.random.default_rng(0).standard_normal((200, 1))
    assert gaussian_smooth(noise, 1.0).std() < 0.6 * noise.std()


def test_joint_matrices_rotate_about_the_joint_and_carry_children():
    from topos_cli.geometry.asset import Skeleton

    skel = Skeleton(["root", "head", "eye"], np.array([-1, 0, 1]), np.array([[0, 0, 0], [0, 10, 0], [0, 12, 3.0]]))
    quarter_y = np.array([0.0, np.sin(np.pi / 4), 0.0, np.cos(np.pi / 4)])  # 90 deg about +Y
    mats = joint_matrices(skel, {"head": quarter_y})
    assert np.allclose(quat_matrix(quarter_y) @ [0, 0, 1.0], [1, 0, 0])
    moved = mats[1, :, :3] @ [0, 12, 3.0] + mats[1, :, 3]  # a point bound to the head
    assert np.allclose(moved, [3, 12, 0])
    assert np.allclose(mats[2], mats[1])  # the child follows its parent
    assert np.allclose(mats[0], np.c_[np.eye(3), np.zeros(3)])
