"""Facial animation files in: Live Link Face CSV and a JSON of keyframes (`topos animate --from ANIM`).

Live Link Face CSV (Epic's iPhone ARKit capture app): a header `Timecode,BlendShapeCount,EyeBlinkLeft,...`
(the 52 ARKit names with a capital first letter), then one row per frame; `Timecode` is
`HH:MM:SS:FF.fff` (frames at the recording rate, with a sub-frame fraction). Optional trailing columns
`HeadYaw, HeadPitch, HeadRoll, LeftEyeYaw, LeftEyePitch, LeftEyeRoll, RightEyeYaw, RightEyePitch,
RightEyeRoll` are read as radians.

JSON keyframes:

    {"fps": 30,                                   # only used when keys give "frame" instead of "time"
     "keyframes": [{"time": 0.0, "weights": {"jawOpen": 0.0}, "rotations": {"head": [0, 0, 0]}},
                   {"time": 0.5, "weights": {"jawOpen": 1.0, "eyeBlinkLeft": 1.0},
                    "rotations": {"head": [10, 0, 0], "eye_L": [0, -5, 0]}}]}

weights use ARKit names (or the template's own), in [0, 1], missing ones are 0; rotations are
[yaw, pitch, roll] in degrees for the joints head, neck, jaw, eye_L, eye_R.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from topos_cli.errors import UsageError

LLF_ROTATIONS = {"head": ("HeadYaw", "HeadPitch", "HeadRoll"), "eye_L": ("LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll"),
                 "eye_R": ("RightEyeYaw", "RightEyePitch", "RightEyeRoll")}
LLF_DEFAULT_FPS = 60.0  # Live Link Face records at 60 fps unless the timecode says otherwise
ROTATION_JOINTS = ("head", "neck", "jaw", "eye_L", "eye_R")


@dataclass
class FaceAnimation:
    """Curves over time.

    Attributes:
        times: (T,) seconds from 0, strictly increasing.
        weights: name -> (T,) weights in [0, 1] (ARKit names from a capture).
        rotations: joint -> (T, 3) yaw, pitch, roll in radians.
    """

    times: np.ndarray
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    rotations: dict[str, np.ndarray] = field(default_factory=dict)


def read_animation(path: str | Path, fps: float | None = None) -> FaceAnimation:
    """Read a Live Link Face .csv or a keyframe .json (UsageError with the line on bad content)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"--from {path}: no such file")
    if path.suffix.lower() == ".csv":
        return _read_llf_csv(path, fps)
    if path.suffix.lower() == ".json":
        return _read_keyframes(path, fps)
    raise UsageError(f"--from {path}: give a Live Link Face .csv or a keyframe .json")


def _timecode_seconds(code: str, fps: float) -> float:
    parts = code.strip().split(":")
    if len(parts) != 4:
        raise ValueError(f"timecode {code!r} is not HH:MM:SS:FF.fff")
    hours, minutes, seconds, frames = (float(p) for p in parts)
    return hours * 3600 + minutes * 60 + seconds + frames / fps


def _read_llf_csv(path: Path, fps: float | None) -> FaceAnimation:
    rate = fps or LLF_DEFAULT_FPS
    with open(path, newline="", errors="replace") as fh:
        rows = list(csv.reader(fh))
    if not rows or not rows[0] or rows[0][0].strip() != "Timecode":
        raise UsageError(f"{path}: not a Live Link Face CSV (the header starts with 'Timecode')")
    header = [h.strip() for h in rows[0]]
    body = [r for r in rows[1:] if any(c.strip() for c in r)]
    if not body:
        raise UsageError(f"{path}: no frames")
    try:
        times = np.array([_timecode_seconds(r[0], rate) for r in body])
        values = np.array([[float(c) for c in r[1:len(header)]] for r in body])
    except (ValueError, IndexError) as exc:
        raise UsageError(f"{path}: bad frame row ({exc})") from None
    columns = {name: values[:, i] for i, name in enumerate(header[1:])}
    times = times - times[0]
    keep = np.r_[True, np.diff(times) > 0]  # repeated timecodes (sub-frame rounding) keep their first row
    rotation_columns = {c for cols in LLF_ROTATIONS.values() for c in cols}
    weights = {name[0].lower() + name[1:]: np.clip(col[keep], 0.0, 1.0) for name, col in columns.items()
               if name not in rotation_columns and name != "BlendShapeCount"}
    rotations = {joint: np.stack([columns[c][keep] for c in cols], 1) for joint, cols in LLF_ROTATIONS.items()
                 if all(c in columns for c in cols)}
    return FaceAnimation(times[keep], weights, rotations)


def _read_keyframes(path: Path, fps: float | None) -> FaceAnimation:
    try:
        doc = json.loads(path.read_text())
        keys = doc["keyframes"]
        rate = fps or float(doc.get("fps", 30.0))
        times = np.array([float(k["time"]) if "time" in k else float(k["frame"]) / rate for k in keys])
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path}: not a keyframe JSON ({{'keyframes': [{{'time', 'weights', 'rotations'}}]}}): "
                         f"{exc}") from None
    if len(times) == 0 or (np.diff(times) <= 0).any():
        raise UsageError(f"{path}: keyframe times must be strictly increasing")
    names = sorted({n for k in keys for n in k.get("weights", {})})
    weights = {n: np.array([float(k.get("weights", {}).get(n, 0.0)) for k in keys]) for n in names}
    joints = sorted({j for k in keys for j in k.get("rotations", {})})
    bad = [j for j in joints if j not in ROTATION_JOINTS]
    if bad:
        raise UsageError(f"{path}: unknown joints {bad}; rotations name one of {list(ROTATION_JOINTS)}")
    rotations = {j: np.radians(np.array([k.get("rotations", {}).get(j, [0.0, 0.0, 0.0]) for k in keys], float))
                 for j in joints}
    return FaceAnimation(times - times[0], weights, rotations)


def euler_to_quat(ypr: np.ndarray) -> np.ndarray:
    """(T, 3) yaw (about +Y), pitch (+X), roll (+Z) radians -> (T, 4) quaternions (x, y, z, w), R = Ry Rx Rz."""
    half = np.asarray(ypr, np.float64) / 2
    cy, sy = np.cos(half[:, 0]), np.sin(half[:, 0])
    cp, sp = np.cos(half[:, 1]), np.sin(half[:, 1])
    cr, sr = np.cos(half[:, 2]), np.sin(half[:, 2])
    qy = np.stack([0 * cy, sy, 0 * cy, cy], 1)
    qx = np.stack([sp, 0 * cp, 0 * cp, cp], 1)
    qz = np.stack([0 * cr, 0 * cr, sr, cr], 1)
    return _qmul(_qmul(qy, qx), qz)


def _qmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ax, ay, az, aw = a.T
    bx, by, bz, bw = b.T
    return np.stack([aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz], 1)


__all__ = ["FaceAnimation", "read_animation", "euler_to_quat"]
