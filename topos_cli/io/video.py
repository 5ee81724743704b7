"""Video in and out: a portrait video or a folder of frames (`topos animate --from`), and MP4 writing.

    clip = open_frames("take.mp4")               # or a folder of images, sorted by name
    for rgb in clip.frames():                     # (H, W, 3) uint8 RGB, one at a time (a video is never held whole)
        ...
    with VideoWriter("talk.mp4", fps=30) as out:  # written to a temporary sibling, renamed when complete
        out.write(rgb)

Reading and writing go through OpenCV (opencv-python-headless, already a mediapipe dependency): its bundled
FFmpeg decodes the usual containers, and its 'mp4v' (MPEG-4 part 2) encoder needs no system codec.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from topos_cli.errors import UsageError
from topos_cli.io.fs import atomic_path
from topos_cli.io.image import PHOTO_SUFFIXES

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm")
DEFAULT_FPS = 30.0  # frame folders carry no rate; a video whose container gives none is read at this rate
FOURCC = "mp4v"  # MPEG-4 part 2: OpenCV's built-in encoder, plays in browsers' and OSes' default players
# FFmpeg's own log lines ("moov atom not found") would precede our one-line error: quiet unless the user set it
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


def is_video_source(path: str | Path) -> bool:
    """True for a video file suffix or a folder (of frames): what `animate --from` fits instead of reading."""
    path = Path(path)
    return path.is_dir() or path.suffix.lower() in VIDEO_SUFFIXES


@dataclass
class FrameSource:
    """A video file or a sorted folder of frames.

    Attributes:
        path: the file or folder. fps: frames per second (the container's, `--fps`, or DEFAULT_FPS).
        count: number of frames (a container's count is an estimate; `frames()` yields what decodes).
        files: the frame files of a folder (empty for a video file).
    """

    path: Path
    fps: float
    count: int
    files: list[Path] = field(default_factory=list)

    def frames(self) -> Iterator[np.ndarray]:
        """(H, W, 3) uint8 RGB frames in order."""
        if self.files:
            from topos_cli.io.image import read_photo

            for file in self.files:
                yield _rgb(read_photo(file))
            return
        import cv2

        cap = cv2.VideoCapture(str(self.path))
        try:
            while True:
                ok, bgr = cap.read()
                if not ok:
                    return
                yield np.ascontiguousarray(bgr[..., ::-1])
        finally:
            cap.release()


def open_frames(path: str | Path, fps: float | None = None) -> FrameSource:
    """Open a video file or a folder of images (sorted by name); UsageError when missing, empty or unreadable."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"--from {path}: no such video file or frame folder")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)
        if not files:
            raise UsageError(f"--from {path}: the folder holds no frames ({', '.join(PHOTO_SUFFIXES)})")
        return FrameSource(path, float(fps or DEFAULT_FPS), len(files), files)
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        ok = cap.isOpened() and cap.grab()
        rate = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    finally:
        cap.release()
    if not ok:
        raise UsageError(f"--from {path}: cannot decode this video (not a video, or an unsupported codec); "
                         "convert it to H.264/MPEG-4 .mp4 or extract its frames to a folder")
    return FrameSource(path, float(fps or (rate if 0 < rate < 1000 else DEFAULT_FPS)), max(count, 1))


def _rgb(img: np.ndarray) -> np.ndarray:
    from topos_cli.faces.detect import as_rgb8

    return as_rgb8(img)


class VideoWriter:
    """Write RGB frames to an .mp4 ('mp4v'); the file appears only when the block ends without an error."""

    def __init__(self, path: str | Path, fps: float):
        self.path, self.fps = Path(path), float(fps)
        if self.path.suffix.lower() != ".mp4":
            raise UsageError(f"{self.path}: videos are written as .mp4")
        self._stack = contextlib.ExitStack()
        self._writer = None
        self._size: tuple[int, int] | None = None
        self.frames = 0

    def __enter__(self) -> VideoWriter:
        self._tmp = self._stack.enter_context(atomic_path(self.path))
        return self

    def write(self, rgb: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 RGB frame; every frame has the first one's size."""
        import cv2

        h, w = rgb.shape[:2]
        if self._writer is None:
            self._size = (w, h)
            self._writer = cv2.VideoWriter(str(self._tmp), cv2.VideoWriter_fourcc(*FOURCC), self.fps, (w, h))
            if not self._writer.isOpened():
                raise UsageError(f"{self.path}: OpenCV cannot open an '{FOURCC}' MP4 writer here")
        elif (w, h) != self._size:
            raise ValueError(f"frame size {(w, h)} differs from the first frame's {self._size}")
        self._writer.write(np.ascontiguousarray(rgb[..., :3][..., ::-1]))
        self.frames += 1

    def __exit__(self, kind, exc, tb) -> bool:
        if self._writer is not None:
            self._writer.release()
        if kind is None and self.frames == 0:
            error = UsageError(f"{self.path}: no frames to write")
            self._stack.__exit__(UsageError, error, None)  # removes the temporary file, renames nothing
            raise error
        return bool(self._stack.__exit__(kind, exc, tb))


__all__ = ["DEFAULT_FPS", "VIDEO_SUFFIXES", "FrameSource", "VideoWriter", "is_video_source", "open_frames"]
