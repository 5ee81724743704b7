"""`topos animate` with video: keyframes -> rendered .mp4 -> fitted back to a GLB; the error paths."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from topos_cli.cli.main import app

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _keys(path, frames: int = 12):
    keys = [{"frame": i, "weights": {"jawOpen": 0.8 * np.sin(np.pi * i / (frames - 1))},
             "rotations": {"head": [10.0 * i / frames, 0, 0]}} for i in range(frames)]
    path.write_text(json.dumps({"fps": 30, "keyframes": keys}))
    return path


def test_keyframes_to_mp4_and_the_mp4_fitted_back_to_glb(tmp_path):
    pytest.importorskip("mediapipe")
    import cv2

    video = tmp_path / "talk.mp4"
    res = _run("animate", "-o", video, "--from", _keys(tmp_path / "keys.json"), "--size", 160, "--json")
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout)
    assert rec["video"] == {"frames": 12, "fps": 30.0, "size": 160} and rec["tracking"] is None
    cap = cv2.VideoCapture(str(video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 160
    cap.release()
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]  # written atomically
    res = _run("animate", "-o", tmp_path / "fit.glb", "--from", video, "--identity-frames", 1, "--json")
    assert res.exit_code == 0, res.output
    rec = json.loads(res.stdout.strip().splitlines()[-1])
    assert rec["source"] == "video" and rec["frames"] == 12
    assert rec["tracking"]["no_face_frames"] == 0 and rec["tracking"]["fps"] == 30.0


def test_video_errors_are_one_line_exit_2(tmp_path):
    res = _run("animate", "-o", tmp_path / "a.glb", "--from", tmp_path / "missing.mp4")
    assert res.exit_code == 2 and "no such video file" in res.output
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all" * 10)
    res = _run("animate", "-o", tmp_path / "a.glb", "--from", tmp_path / "junk.mp4")
    assert res.exit_code == 2 and "cannot decode this video" in res.output
    (tmp_path / "empty").mkdir()
    res = _run("animate", "-o", tmp_path / "a.glb", "--from", tmp_path / "empty")
    assert res.exit_code == 2 and "holds no frames" in res.output
    res = _run("animate", "-o", tmp_path / "a.webm", "--from", tmp_path / "junk.mp4")
    assert res.exit_code == 2 and ".mp4" in res.output
    for out in ("a.glb", "a.webm"):
        assert not (tmp_path / out).exists()
    assert "Traceback" not in res.output


def test_frames_without_any_face_exit_2(tmp_path):
    pytest.importorskip("mediapipe")
    from topos_cli.io.image import write_png

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(2):
        write_png(folder / f"{i:03d}.png", np.zeros((64, 64, 3), np.uint8))
    res = _run("animate", "-o", tmp_path / "a.glb", "--from", folder)
    assert res.exit_code == 2 and "no face found in any of the 2 frames" in res.output
