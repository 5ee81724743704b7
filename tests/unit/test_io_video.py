"""io/video.py (frames in, atomic .mp4 out) and animate's resampling of sparse keys to a video's rate."""

from __future__ import annotations

import numpy as np
import pytest

from topos_cli.errors import UsageError
from topos_cli.io.video import VideoWriter, is_video_source, open_frames


def _frame(value: int, size=(48, 64)) -> np.ndarray:
    img = np.zeros(size + (3,), np.uint8)
    img[..., 0] = value  # red only: catches an RGB/BGR swap
    return img


def test_mp4_round_trip_keeps_count_size_and_channel_order(tmp_path):
    out = tmp_path / "clip.mp4"
    with VideoWriter(out, fps=25) as writer:
        for v in (40, 120, 200):
            writer.write(_frame(v))
    clip = open_frames(out)
    frames = list(clip.frames())
    assert clip.fps == 25 and len(frames) == 3 and frames[0].shape == (48, 64, 3)
    assert abs(float(frames[2][..., 0].mean()) - 200) < 12 and frames[2][..., 2].mean() < 12
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]


def test_writer_leaves_nothing_on_errors(tmp_path):
    out = tmp_path / "clip.mp4"
    with pytest.raises(UsageError, match="no frames"):
        with VideoWriter(out, fps=30):
            pass
    with pytest.raises(ValueError, match="differs"):
        with VideoWriter(out, fps=30) as writer:
            writer.write(_frame(10))
            writer.write(_frame(10, (32, 32)))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UsageError, match=".mp4"):
        VideoWriter(tmp_path / "clip.avi", fps=30)


def test_frame_folder_is_sorted_by_name_and_takes_the_given_rate(tmp_path):
    from topos_cli.io.image import write_png

    for name, v in (("b.png", 2), ("a.png", 1), ("c.jpg.txt", 9)):
        if name.endswith(".png"):
            write_png(tmp_path / name, _frame(v * 50))
        else:
            (tmp_path / name).write_text("not a frame")
    clip = open_frames(tmp_path, fps=12)
    assert is_video_source(tmp_path) and clip.fps == 12 and [p.name for p in clip.files] == ["a.png", "b.png"]
    assert [int(f[..., 0].mean()) for f in clip.frames()] == [50, 100]


def test_resample_interpolates_weights_and_rotations():
    from topos_cli.commands.animate import resample
    from topos_cli.io.gltf import Animation

    half = np.sin(np.pi / 8), np.cos(np.pi / 8)  # 45 deg about +Y
    anim = Animation(np.array([0.0, 0.5], np.float32), np.array([[0.0], [1.0]], np.float32),
                     {"head": np.array([[0, 0, 0, 1.0], [0, half[0], 0, half[1]]])})
    out = resample(anim, 10.0)
    assert len(out.times) == 6 and np.allclose(out.weights[:, 0], np.linspace(0, 1, 6), atol=1e-6)
    angle = 2 * np.degrees(np.arctan2(out.rotations["head"][:, 1], out.rotations["head"][:, 3]))
    assert np.allclose(angle[[0, -1]], [0, 45]) and np.all(np.diff(angle) > 0)
    assert np.allclose(np.linalg.norm(out.rotations["head"], axis=1), 1)
