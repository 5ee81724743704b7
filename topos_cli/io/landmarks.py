"""Face landmark files: menpo LJSON (the format of most 3D face datasets' annotations) to iBUG-68 order.

LJSON keeps the points with labelled groups ("jaw" or "chin", "left_eyebrow" or "leyebrow", ...), each with a
mask of point indices, and the points need not be stored in iBUG order: the groups say which is which. In iBUG
order, "left" is the side with the lower indices (the subject's right, the image's left: points 17-21 are that
brow, 36-41 that eye), and so it is in the menpo labellers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from topos_cli.errors import UsageError

IBUG68_GROUPS = {
    "jaw": range(0, 17), "left_eyebrow": range(17, 22), "right_eyebrow": range(22, 27), "nose": range(27, 36),
    "left_eye": range(36, 42), "right_eye": range(42, 48), "mouth": range(48, 68),
}
_ALIASES = {"chin": "jaw", "leyebrow": "left_eyebrow", "reyebrow": "right_eyebrow", "leye": "left_eye",
            "reye": "right_eye"}


def ljson_to_ibug68(data: dict, name: str = "landmarks") -> np.ndarray:
    """(68, 3) float64 points in iBUG order from parsed menpo LJSON (v2: {"landmarks", "labels"}; v3: the same
    under {"groups": {name: ...}}). Points whose labels are not the iBUG groups must already be in iBUG order."""
    group = data
    if "groups" in data:
        groups = data["groups"]
        if not isinstance(groups, dict) or not groups:
            raise UsageError(f"{name}: LJSON without landmark groups")
        group = groups.get("LJSON") or groups.get("ibug_face_68") or next(iter(groups.values()))
    try:
        pts = np.asarray(group["landmarks"]["points"], np.float64)
    except (KeyError, TypeError, ValueError):
        raise UsageError(f"{name}: LJSON needs landmarks.points") from None
    if pts.shape != (68, 3) or not np.isfinite(pts).all():
        raise UsageError(f"{name}: expected 68 finite 3D landmarks (iBUG 68), got shape {pts.shape}")
    labels = {_ALIASES.get(lab.get("label"), lab.get("label")): lab.get("mask", []) for lab in group.get("labels", [])}
    if not set(IBUG68_GROUPS) <= set(labels):
        return pts  # no (or other) labels: the stored order is taken as iBUG
    out = np.empty_like(pts)
    seen = []
    for label, slots in IBUG68_GROUPS.items():
        mask = np.asarray(labels[label], np.int64)
        if len(mask) != len(slots) or mask.min() < 0 or mask.max() >= 68:
            raise UsageError(f"{name}: LJSON group '{label}' has {len(mask)} points, iBUG 68 has {len(slots)}")
        out[list(slots)] = pts[mask]
        seen.extend(mask.tolist())
    if len(set(seen)) != 68:
        raise UsageError(f"{name}: LJSON groups do not cover the 68 points once each")
    return out


def read_ljson(path: str | Path) -> np.ndarray:
    """(68, 3) iBUG-ordered points of a menpo LJSON file."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such landmark file")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a JSON object")
    return ljson_to_ibug68(data, str(path))


def read_landmarks(path: str | Path, template) -> tuple[np.ndarray, np.ndarray]:
    """A scan's landmark file -> (points (L, 3) float64 in scan coordinates, template vertex ids (L,) int64).

    Accepts {"points": [[x, y, z], ...], "vertices": [ids]} (vertices default to the template's first
    landmarks), {"landmarks": [{"point": [...], "vertex": id | "index": i}, ...]}, or menpo LJSON (iBUG 68).
    """
    from topos_cli.io.fs import read_json

    data = read_json(path)
    if isinstance(data, dict) and ("groups" in data or isinstance(data.get("landmarks"), dict)):  # menpo LJSON
        if len(template.landmarks) != 68:
            raise UsageError(f"{path}: LJSON gives iBUG-68 points, and template {template.name} has "
                             f"{len(template.landmarks)} landmarks, not 68")
        pts, ids = ljson_to_ibug68(data, str(path)), template.landmarks
    elif isinstance(data, dict) and "landmarks" in data:
        try:
            pts = [it["point"] for it in data["landmarks"]]
            ids = [it["vertex"] if "vertex" in it else int(template.landmarks[it["index"]])
                   for it in data["landmarks"]]
        except (KeyError, TypeError, IndexError):
            raise UsageError(f"{path}: each landmark needs 'point' and 'vertex' (template vertex id) or 'index' "
                             "(position in the template's landmark list)") from None
    elif isinstance(data, dict) and "points" in data:
        pts = data["points"]
        ids = data.get("vertices", template.landmarks[: len(pts)].tolist())
    else:
        raise UsageError(f"{path}: expected {{'points': [[x,y,z],...], 'vertices': [ids]}} or {{'landmarks': [...]}}")
    return _checked(path, pts, ids, template.num_verts)


def _checked(path, pts, ids, num_verts: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        pts, ids = np.asarray(pts, np.float64), np.asarray(ids, np.int64)
    except (TypeError, ValueError):
        pts, ids = np.zeros((0, 0)), np.zeros(0, np.int64)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) != len(ids) or not np.isfinite(pts).all():
        raise UsageError(f"{path}: landmark points must be finite [x, y, z] triples, one per vertex id")
    if len(ids) and (ids.min() < 0 or ids.max() >= num_verts):
        raise UsageError(f"{path}: landmark vertex ids must be in [0, {num_verts})")
    return pts, ids
