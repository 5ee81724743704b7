"""Images in and out (imageio): 8-bit sRGB PNG for pictures, 16-bit PNG for data passes, GIF/MP4 for turntables.

Arrays are (H, W[, C]) with row 0 at the top. Floats are taken as [0, 1] and rounded; every write is atomic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from topos_cli.errors import UsageError
from topos_cli.io.fs import atomic_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".exr", ".hdr", ".tif", ".tiff", ".bmp", ".webp")


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as stored (uint8/uint16/float32). UsageError if missing or unreadable."""
    import imageio.v3 as iio

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such image file")
    try:
        img = np.asarray(iio.imread(path))
    except Exception as exc:  # any decoder failure on user data is a bad file
        raise UsageError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from None
    if img.ndim not in (2, 3) or img.size == 0:
        raise UsageError(f"{path}: expected a 2D image, got shape {img.shape}")
    return img


def to_uint8(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img
    if img.dtype == bool:
        return img.astype(np.uint8) * 255
    return (np.clip(np.nan_to_num(img), 0, 1) * 255 + 0.5).astype(np.uint8)


def to_uint16(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype == np.uint16:
        return img
    return (np.clip(np.nan_to_num(img), 0, 1) * 65535 + 0.5).astype(np.uint16)


def write_png(path: str | Path, img: np.ndarray, bits: int = 8) -> Path:
    """Write an 8-bit (default) or 16-bit PNG atomically; floats in [0, 1] are scaled."""
    import imageio.v3 as iio

    data = to_uint16(img) if bits == 16 else to_uint8(img)
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, data, extension=".png")
    return Path(path)


def write_animation(path: str | Path, frames: list[np.ndarray], fps: float = 24.0) -> Path:
    """Write frames (H, W, 3|4) as GIF (looping) or MP4 (needs imageio-ffmpeg), atomically."""
    import imageio.v3 as iio

    path = Path(path)
    suffix = path.suffix.lower()
    frames = [to_uint8(f)[..., :3] for f in frames]
    with atomic_path(path) as tmp:
        if suffix == ".gif":
            iio.imwrite(tmp, np.stack(frames), extension=".gif", duration=1000.0 / fps, loop=0)
        elif suffix in (".mp4", ".webm"):
            try:
                iio.imwrite(tmp, np.stack(frames), extension=suffix, fps=fps)
            except Exception as exc:  # missing ffmpeg plugin is the usual cause
                raise UsageError(f"cannot write {suffix} ({type(exc).__name__}: {exc}); "
                                 "pip install imageio-ffmpeg, or write a .gif") from None
        else:
            raise UsageError(f"{path}: animations are written as .gif or .mp4")
    return path
