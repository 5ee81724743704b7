"""Face detection + landmarks (mediapipe face mesh) and robust photo reading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from topos_cli.errors import UsageError
from topos_cli.faces.detect import NUM_LANDMARKS, Face, as_rgb8, pick_face
from topos_cli.io.image import read_photo


def _grace_hopper() -> np.ndarray:
    matplotlib = pytest.importorskip("matplotlib")
    return read_photo(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")


@pytest.fixture(scope="module")
def detect():
    pytest.importorskip("mediapipe")
    from topos_cli.faces.detect import detect_faces

    return detect_faces


def test_one_face_with_478_landmarks_inside_its_box(detect):
    img = _grace_hopper()
    faces = detect(img)
    assert len(faces) == 1
    face = faces[0]
    assert face.landmarks.shape == (NUM_LANDMARKS, 2) and face.depth.shape == (NUM_LANDMARKS,)
    h, w = img.shape[:2]
    assert (face.landmarks >= 0).all() and (face.landmarks[:, 0] < w).all() and (face.landmarks[:, 1] < h).all()
    assert 0.5 < face.score <= 1.0
    assert 120 < face.size < 300  # her face is about 180 px across in the 512x600 photo
    left_eye, right_eye = face.landmarks[33], face.landmarks[263]  # outer eye corners, image left then right
    assert left_eye[0] < right_eye[0] and abs(left_eye[1] - right_eye[1]) < 20


def test_grey_rgba_and_uint16_give_the_same_landmarks(detect):
    img = _grace_hopper()
    ref = detect(img)[0].landmarks
    grey = img.mean(2).astype(np.uint8)
    rgba = np.concatenate([img, np.full(img.shape[:2] + (1,), 255, np.uint8)], 2)
    wide = img.astype(np.uint16) * 257
    for variant in (grey, rgba, wide):
        faces = detect(variant)
        assert len(faces) == 1
        assert np.median(np.linalg.norm(faces[0].landmarks - ref, axis=1)) < 3.0


def test_no_face_in_a_blank_image(detect):
    assert detect(np.full((64, 96, 3), 128, np.uint8)) == []


def test_exif_rotated_photo_is_read_upright(tmp_path):
    from PIL import Image

    img = np.zeros((40, 60, 3), np.uint8)
    img[:10, :] = 255  # bright band at the top of the stored pixels
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    Image.fromarray(img).save(tmp_path / "phone.jpg", exif=exif)
    upright = read_photo(tmp_path / "phone.jpg")
    assert upright.shape[:2] == (60, 40)
    assert upright[:, -10:].mean() > 200 and upright[:, :10].mean() < 50  # the band is now on the right


def test_unreadable_and_unknown_photos_are_usage_errors(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(UsageError, match="cannot read image"):
        read_photo(bad)
    with pytest.raises(UsageError, match="no such image"):
        read_photo(tmp_path / "missing.png")
    (tmp_path / "scan.ply").write_text("ply")
    with pytest.raises(UsageError, match="not a photo"):
        read_photo(tmp_path / "scan.ply")


def test_as_rgb8_composites_alpha_over_white():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (0, 0, 0, 255)
    out = as_rgb8(rgba)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == [0, 0, 0] and out[1, 1].tolist() == [255, 255, 255]
    assert as_rgb8(np.ones((3, 3), np.float32)).max() == 255


def test_pick_face_warns_on_several_and_checks_the_index():
    def face(size):
        return Face(np.zeros((NUM_LANDMARKS, 2), np.float32), np.zeros(NUM_LANDMARKS, np.float32),
                    np.array([0, 0, size, size], np.float32), 0.9)

    faces = [face(100), face(50)]
    chosen, warnings = pick_face(faces, None, "x.jpg")
    assert chosen is faces[0] and "2 faces" in warnings[0] and "--face-index" in warnings[0]
    assert pick_face(faces, 1, "x.jpg") == (faces[1], [])
    with pytest.raises(UsageError, match="out of range"):
        pick_face(faces, 2, "x.jpg")
    with pytest.raises(UsageError, match="no face found in x.jpg"):
        pick_face([], None, "x.jpg")
