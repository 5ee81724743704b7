"""Wavefront OBJ reader/writer that keeps vertex order, UVs, polygons and materials verbatim.

trimesh's OBJ loader re-orders or splits vertices at UV seams; a fixed-topology head must round-trip
bit-exactly, so topos owns this small format. Only geometry, texture coordinates, normals, polygons,
`usemtl` groups and `mtllib` are kept; other statements are ignored.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class ObjData:
    """Raw OBJ content. Polygons are padded with -1 to the widest polygon.

    Attributes:
        verts: (V, 3) float64 positions.
        polys: (P, K) int64 vertex indices, -1 padded.
        uv: (T, 2) float64 texture coordinates or None.
        uv_polys: (P, K) int64 uv indices (-1 padded) or None.
        normals: (N, 3) float64 or None.
        colors: (V, 3) float64 vertex colours from `v x y z r g b` lines, or None.
        materials: (P,) int64 index into `material_names` per polygon, or None.
        material_names: names from `usemtl`.
        mtllib: the `mtllib` file name, if any.
    """

    verts: np.ndarray
    polys: np.ndarray
    uv: np.ndarray | None = None
    uv_polys: np.ndarray | None = None
    normals: np.ndarray | None = None
    colors: np.ndarray | None = None
    materials: np.ndarray | None = None
    material_names: list[str] = field(default_factory=list)
    mtllib: str | None = None


def _parse_floats(lines: list[str], width: int) -> np.ndarray:
    if not lines:
        return np.zeros((0, width))
    tokens = " ".join(line[2:] for line in lines).split()
    per_line = len(tokens) // len(lines)
    if per_line * len(lines) == len(tokens):
        arr = np.asarray(tokens, dtype=np.float64).reshape(len(lines), per_line)
    else:  # ragged (e.g. optional w or colours on some lines): parse one by one
        rows = [[float(t) for t in line.split()[1:]] for line in lines]
        arr = np.asarray([r[:width] + [0.0] * (width - len(r[:width])) for r in rows])
    return arr


def read_obj(path: str | Path) -> ObjData:
    """Parse an OBJ file. Raises ValueError on malformed content (the caller turns it into MeshError)."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    v_lines, vt_lines, vn_lines, f_lines = [], [], [], []
    face_mat: list[int] = []
    mat_names: list[str] = []
    current_mat = -1
    mtllib = None
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        head = line[:2]
        if head == "v ":
            v_lines.append(line)
        elif head == "f ":
            f_lines.append(line)
            face_mat.append(current_mat)
        elif head == "vt":
            vt_lines.append(line[1:])
        elif head == "vn":
            vn_lines.append(line[1:])
        elif line.startswith("usemtl"):
            name = line[6:].strip()
            if name not in mat_names:
                mat_names.append(name)
            current_mat = mat_names.index(name)
        elif line.startswith("mtllib"):
            mtllib = line[6:].strip()
    verts_raw = _parse_floats(v_lines, 3)
    if verts_raw.shape[1] < 3:
        raise ValueError("vertex lines need 3 coordinates")
    verts = verts_raw[:, :3]
    colors = verts_raw[:, 3:6] if verts_raw.shape[1] >= 6 else None
    uv = _parse_floats(vt_lines, 2)[:, :2] if vt_lines else None
    normals = _parse_floats(vn_lines, 3)[:, :3] if vn_lines else None
    polys, uv_polys = _parse_faces(f_lines, len(verts), 0 if uv is None else len(uv))
    materials = np.asarray(face_mat, dtype=np.int64) if mat_names else None
    return ObjData(verts, polys, uv, uv_polys if uv is not None else None, normals, colors,
                   materials, mat_names, mtllib)


def _parse_faces(f_lines: list[str], n_verts: int, n_uv: int) -> tuple[np.ndarray, np.ndarray]:
    width = max((len(line.split()) - 1 for line in f_lines), default=3)
    polys = np.zeros((len(f_lines), width), dtype=np.int64)
    uv_polys = np.zeros((len(f_lines), width), dtype=np.int64)  # 0 = "no uv" (OBJ indices are never 0)
    for i, line in enumerate(f_lines):
        for j, corner in enumerate(line.split()[1:]):
            parts = corner.split("/")
            polys[i, j] = int(parts[0])
            if len(parts) > 1 and parts[1]:
                uv_polys[i, j] = int(parts[1])
    pad = polys == 0
    if np.any(pad.sum(1) > width - 3):
        raise ValueError("a face has fewer than 3 corners")
    # OBJ is 1-based; negative indices count back from the end of the list
    polys = np.where(polys > 0, polys - 1, polys + n_verts)
    uv_polys = np.where(uv_polys > 0, uv_polys - 1, uv_polys + n_uv)
    uv_polys[pad | (uv_polys == n_uv)] = -1
    polys[pad] = -1
    return polys, uv_polys


def format_obj(obj: ObjData, precision: int = 9) -> str:
    """Serialise to OBJ text. `precision` 9 significant digits round-trips float32 exactly."""
    buf = io.StringIO()
    buf.write("# written by topos\n")
    if obj.mtllib:
        buf.write(f"mtllib {obj.mtllib}\n")
    fmt = f"%.{precision}g"
    rows = obj.verts if obj.colors is None else np.hstack([obj.verts, obj.colors])
    _write_rows(buf, "v", rows, fmt)
    if obj.uv is not None:
        _write_rows(buf, "vt", obj.uv, fmt)
    if obj.normals is not None:
        _write_rows(buf, "vn", obj.normals, fmt)
    polys = obj.polys + 1
    has_uv = obj.uv is not None and obj.uv_polys is not None
    uvp = obj.uv_polys + 1 if has_uv else None
    per_vertex_normals = obj.normals is not None and len(obj.normals) == len(obj.verts)  # `vn` k is vertex k's
    mats = obj.materials if obj.materials is not None and obj.material_names else None
    current = None
    for i, row in enumerate(polys):
        if mats is not None and mats[i] != current:  # keep face order: switch material in place
            current = mats[i]
            if current >= 0:
                buf.write(f"usemtl {obj.material_names[current]}\n")
        k = int((row > 0).sum())  # padding is 0 after the +1 shift
        if has_uv and per_vertex_normals:
            buf.write("f " + " ".join(f"{row[j]}/{uvp[i, j]}/{row[j]}" for j in range(k)) + "\n")
        elif per_vertex_normals:
            buf.write("f " + " ".join(f"{row[j]}//{row[j]}" for j in range(k)) + "\n")
        elif has_uv:
            buf.write("f " + " ".join(f"{row[j]}/{uvp[i, j]}" for j in range(k)) + "\n")
        else:
            buf.write("f " + " ".join(str(row[j]) for j in range(k)) + "\n")
    return buf.getvalue()


def _write_rows(buf: io.StringIO, tag: str, rows: np.ndarray, fmt: str) -> None:
    line_fmt = tag + (" " + fmt) * rows.shape[1] + "\n"
    rows = np.asarray(rows) + 0.0  # -0.0 + 0.0 is +0.0: no "-0" whose sign depends on the arithmetic path
    buf.write("".join(line_fmt % tuple(r) for r in rows.tolist()))
