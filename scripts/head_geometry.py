"""Small 2D/3D triangulation helpers for scripts/build_default_template.py (pure numpy)."""

from __future__ import annotations

import numpy as np
from head_report import signed_areas

from topos_cli.geometry.mesh_ops import face_angles


def ear_clip(xy: np.ndarray) -> np.ndarray:
    """Triangulate a simple polygon (n,2) without new points, clipping the best-shaped ear first. (n-2,3)."""
    idx = list(range(len(xy)))
    if _polygon_area(xy) < 0:
        idx = idx[::-1]
    out = []
    while len(idx) > 3:
        best, best_q = None, -1.0
        for k in range(len(idx)):
            a, b, c = idx[k - 1], idx[k], idx[(k + 1) % len(idx)]
            tri = np.array([[a, b, c]])
            if signed_areas(xy, tri)[0] <= 0:
                continue  # reflex corner
            others = [i for i in idx if i not in (a, b, c)]
            if others and _inside_triangle(xy[others], xy[a], xy[b], xy[c]).any():
                continue
            q = face_angles(np.c_[xy, np.zeros(len(xy))], tri).min()
            if q > best_q:
                best, best_q = k, q
        if best is None:
            raise SystemExit("could not fill a hole for flattening (self-intersecting loop)")
        out.append([idx[best - 1], idx[best], idx[(best + 1) % len(idx)]])
        idx.pop(best)
    out.append(idx)
    return np.asarray(out, dtype=np.int64)


def _polygon_area(xy: np.ndarray) -> float:
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def _inside_triangle(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    def cross(u, v, w):
        return (v[0] - u[0]) * (w[..., 1] - u[1]) - (v[1] - u[1]) * (w[..., 0] - u[0])
    return (cross(a, b, p) >= 0) & (cross(b, c, p) >= 0) & (cross(c, a, p) >= 0)


def even_odd(q: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(Q,) True where points q lie inside the segment soup a->b by the even-odd rule (horizontal rays)."""
    inside = np.zeros(len(q), bool)
    for s in range(0, len(a), 512):
        pa, pb = a[None, s:s + 512], b[None, s:s + 512]
        qy, qx = q[:, None, 1], q[:, None, 0]
        straddle = (pa[..., 1] > qy) != (pb[..., 1] > qy)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = pa[..., 0] + (qy - pa[..., 1]) * (pb[..., 0] - pa[..., 0]) / (pb[..., 1] - pa[..., 1])
        inside ^= (straddle & (x_at > qx)).sum(1) % 2 == 1
    return inside


def flip_for_quality(faces: np.ndarray, uv: np.ndarray, xyz: np.ndarray, passes: int = 10) -> np.ndarray:
    """Flip interior edges where that raises the smaller 3D minimum angle of the two triangles and both new
    triangles stay counter-clockwise in UV (removes slivers along nearly straight boundary runs)."""
    faces = faces.copy()

    def min_angle(tris):
        return face_angles(xyz, tris).min(1)

    for _ in range(passes):
        e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
        owner = np.tile(np.arange(len(faces)), 3)
        key = np.sort(e, 1)
        order = np.lexsort((key[:, 1], key[:, 0]))
        same = np.all(key[order][1:] == key[order][:-1], axis=1)
        pairs = np.stack([owner[order][:-1][same], owner[order][1:][same]], 1)
        touched = np.zeros(len(faces), bool)
        flips = 0
        for f0, f1 in pairs.tolist():
            if touched[f0] or touched[f1]:
                continue
            a, b = set(faces[f0].tolist()), set(faces[f1].tolist())
            shared = a & b
            if len(shared) != 2:
                continue
            p = (a - shared).pop()
            q = (b - shared).pop()
            k = faces[f0].tolist().index(p)
            s0, s1 = faces[f0][(k + 1) % 3], faces[f0][(k + 2) % 3]  # f0 = (p, s0, s1), counter-clockwise
            new = np.array([[p, s0, q], [p, q, s1]])
            if (signed_areas(uv, new) <= 1e-15).any():
                continue
            if min_angle(new).min() > min_angle(faces[[f0, f1]]).min() + 1e-6:
                faces[f0], faces[f1] = new
                touched[[f0, f1]] = True
                flips += 1
        if not flips:
            break
    return faces
