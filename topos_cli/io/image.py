"""Images in and out (imageio): 8-bit sRGB PNG for pictures, 16-bit PNG for data passes, GIF/MP4 for turntables.

Arrays are (H, W[, C]) with row 0 at the top. Floats are taken as [0, 1] and rounded; every write is atomic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from topos_cli.errors import UsageError
from topos_cli.io.fs import atomic_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".hdr", ".npy", ".tif", ".tiff", ".bmp", ".webp")


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as stored (uint8/uint16/float32). UsageError if missing or unreadable."""
    import imageio.v3 as iio

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such image file")
    if path.suffix.lower() == ".hdr":
        return read_hdr(path)
    if path.suffix.lower() == ".npy":  # float images (e.g. linear environment maps) saved with numpy
        try:
            return np.load(path, allow_pickle=False).astype(np.float32)
        except ValueError as exc:
            raise UsageError(f"{path}: not a plain numpy array ({exc})") from None
    if path.suffix.lower() == ".png":
        img16 = decode_png16(path.read_bytes())
        if img16 is not None:  # Pillow would reduce 16-bit colour PNGs to 8 bits
            return img16
    try:
        img = np.asarray(iio.imread(path))
    except Exception as exc:  # any decoder failure on user data is a bad file
        raise UsageError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from None
    if img.ndim not in (2, 3) or img.size == 0:
        raise UsageError(f"{path}: expected a 2D image, got shape {img.shape}")
    return img


PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def read_photo(path: str | Path) -> np.ndarray:
    """Read a photo upright: EXIF orientation applied (phone pictures), as stored otherwise (H, W[, C]).

    UsageError if missing, not a picture format or undecodable; `faces.detect.as_rgb8` normalises channels.
    """
    import imageio.v3 as iio

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such image file")
    if path.suffix.lower() not in PHOTO_SUFFIXES:
        raise UsageError(f"{path}: not a photo ({path.suffix or 'no suffix'}); give one of "
                         f"{', '.join(PHOTO_SUFFIXES)}")
    try:
        img = np.asarray(iio.imread(path, rotate=True))
    except Exception as exc:  # any decoder failure on user data is a bad file
        first = (str(exc).strip().splitlines() or [""])[0]  # imageio appends plugin advice on more lines
        raise UsageError(f"{path}: cannot read image ({type(exc).__name__}: {first})") from None
    if img.ndim == 4:  # animated or multi-page: the first frame
        img = img[0]
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
        if bits == 16:
            tmp.write_bytes(encode_png16(data))  # Pillow cannot write 16-bit RGB(A)
        else:
            iio.imwrite(tmp, data, extension=".png")
    return Path(path)


def encode_png16(data: np.ndarray) -> bytes:
    """A 16-bit grey/grey+alpha/RGB/RGBA PNG (no filtering, zlib level 6) from (H, W[, C]) uint16."""
    import struct
    import zlib

    data = np.asarray(data, np.uint16)
    data = data[..., None] if data.ndim == 2 else data
    h, w, c = data.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    rows = data.astype(">u2").reshape(h, w * c).view(np.uint8).reshape(h, -1)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], 1).tobytes()  # filter byte 0 per row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + \
        chunk(b"IEND", b"")


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


def decode_png16(blob: bytes) -> np.ndarray | None:
    """Decode a 16-bit, non-interlaced, unfiltered PNG (what `encode_png16` writes); None for anything else."""
    import struct
    import zlib

    if blob[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    pos, idat, header = 8, [], None
    while pos + 8 <= len(blob):
        length, kind = struct.unpack(">I4s", blob[pos:pos + 8])
        body = blob[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    if header is None or header[2] != 16 or header[6] != 0 or header[3] not in (0, 2, 4, 6):
        return None
    w, h, channels = header[0], header[1], {0: 1, 2: 3, 4: 2, 6: 4}[header[3]]
    try:
        raw = np.frombuffer(zlib.decompress(b"".join(idat)), np.uint8).reshape(h, 1 + w * channels * 2)
    except (zlib.error, ValueError):
        return None
    if raw[:, 0].any():  # filtered rows: leave it to imageio
        return None
    img = raw[:, 1:].copy().view(">u2").astype(np.uint16).reshape(h, w, channels)
    return img[..., 0] if channels == 1 else img


def read_hdr(path: str | Path) -> np.ndarray:
    """A Radiance RGBE (.hdr) image as (H, W, 3) float32 linear radiance (flat and run-length scanlines)."""
    path = Path(path)
    data = path.read_bytes()
    try:
        header_end = data.index(b"\n\n")
        size_end = data.index(b"\n", header_end + 2)
        parts = data[header_end + 2:size_end].split()
        if not data.startswith(b"#?") or len(parts) != 4 or parts[0] != b"-Y" or parts[2] != b"+X":
            raise ValueError("unsupported header or orientation (need '-Y H +X W')")
        height, width = int(parts[1]), int(parts[3])
        rgbe = _hdr_pixels(memoryview(data)[size_end + 1:], height, width)
    except (ValueError, IndexError) as exc:
        raise UsageError(f"{path}: not a readable Radiance .hdr file ({exc})") from None
    mant, expo = rgbe[..., :3].astype(np.float32), rgbe[..., 3].astype(np.int32)
    scale = np.where(expo > 0, np.ldexp(1.0, expo - 136), 0.0).astype(np.float32)
    return (mant + 0.5 * (expo > 0)[..., None]) * scale[..., None]


def _hdr_pixels(buf: memoryview, height: int, width: int) -> np.ndarray:
    raw = np.frombuffer(buf, np.uint8)
    if width < 8 or width > 0x7FFF or raw[0] != 2 or raw[1] != 2:  # flat RGBE quadruples
        return raw[:height * width * 4].reshape(height, width, 4)
    out = np.empty((height, width, 4), np.uint8)
    pos = 0
    for row in range(height):
        if raw[pos] != 2 or raw[pos + 1] != 2 or (int(raw[pos + 2]) << 8 | int(raw[pos + 3])) != width:
            raise ValueError(f"bad run-length scanline {row}")
        pos += 4
        for ch in range(4):
            col = 0
            while col < width:
                count = int(raw[pos])
                if count > 128:
                    out[row, col:col + count - 128, ch] = raw[pos + 1]
                    col, pos = col + count - 128, pos + 2
                else:
                    out[row, col:col + count, ch] = raw[pos + 1:pos + 1 + count]
                    col, pos = col + count, pos + 1 + count
    return out
