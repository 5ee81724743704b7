"""Image I/O used by render: 16-bit PNG round trip (Pillow cannot write RGB16), Radiance .hdr reading."""

import numpy as np
import pytest

from topos_cli.errors import UsageError
from topos_cli.io.image import read_image, write_png


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_png16_round_trip(tmp_path, channels):
    img = np.random.default_rng(channels).integers(0, 65536, (5, 7, channels)).astype(np.uint16)
    img = img[..., 0] if channels == 1 else img
    write_png(tmp_path / "x.png", img, bits=16)
    assert np.array_equal(read_image(tmp_path / "x.png"), img)


def test_hdr_flat_and_run_length(tmp_path):
    rgbe = np.zeros((3, 5, 4), np.uint8)
    rgbe[..., :3], rgbe[..., 3] = 128, 129  # (128 + 0.5) / 256 * 2^(129 - 128)
    (tmp_path / "flat.hdr").write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 3 +X 5\n" + rgbe.tobytes())
    flat = read_image(tmp_path / "flat.hdr")
    assert flat.shape == (3, 5, 3) and np.allclose(flat, 128.5 / 128)
    line = bytes([2, 2, 0, 10])
    for value in (128, 64, 32):
        line += bytes([128 + 10, value])  # one run of 10 per channel
    line += bytes([10]) + bytes([130] * 10)  # the exponent channel as a literal run
    (tmp_path / "rle.hdr").write_bytes(b"#?RADIANCE\n\n-Y 1 +X 10\n" + line)
    assert np.allclose(read_image(tmp_path / "rle.hdr")[0, 3], [128.5, 64.5, 32.5] / np.float32(64))
    (tmp_path / "bad.hdr").write_bytes(b"#?RADIANCE\n\n+Y 1 -X 10\n")
    with pytest.raises(UsageError):
        read_image(tmp_path / "bad.hdr")
