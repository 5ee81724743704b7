"""The one alignment toolkit: a similarity type, a point-cloud type and the rotation helpers (numpy).

Shared by `geometry/align.py` (rigid/similarity alignment of two surfaces), `geometry/retopo/` (the template fit)
and the generation fit. Convention everywhere: a point x maps to ``scale * rotation @ x + translation``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from topos_cli.geometry.mesh_ops import face_normals
from topos_cli.geometry.metrics import sample_points_normals

if TYPE_CHECKING:
    from scipy.spatial import cKDTree

TINY_ANGLE = 1e-12  # radians: below this a rotation vector is the identity (its axis is undefined)
NORMAL_FLOOR = 1e-20  # length below which a normal is left unnormalised (a degenerate face)
PCA_NEIGHBOURS = 12  # k of the local PCA normals: enough for a stable plane on a scan, few enough to keep edges
SPACING_PROBES = 2000  # samples probed to estimate a cloud's spacing (the median is stable well before that)


@dataclass(frozen=True)
class Similarity:
    """x -> scale * rotation @ x + translation (7 degrees of freedom).

    Attributes:
        scale: s > 0.
        rotation: (3, 3) float64 proper rotation (det +1).
        translation: (3,) float64.
    """

    scale: float = 1.0
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Transform (N, 3) points, computed in float64, returned in the input's float dtype."""
        return apply_similarity(points, self.scale, self.rotation, self.translation)

    def apply_normals(self, normals: np.ndarray) -> np.ndarray:
        """Rotate (N, 3) normals by R and renormalise (scale does not change directions)."""
        out = np.asarray(normals, dtype=np.float64) @ self.rotation.T
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), NORMAL_FLOOR)
        return out.astype(np.asarray(normals).dtype)

    def inverse(self) -> Similarity:
        rot = self.rotation.T
        return Similarity(1.0 / self.scale, rot, -(rot @ self.translation) / self.scale)

    def compose(self, inner: Similarity) -> Similarity:
        """self after inner."""
        return Similarity(self.scale * inner.scale, self.rotation @ inner.rotation,
                          self.scale * self.rotation @ inner.translation + self.translation)

    @property
    def matrix(self) -> np.ndarray:
        """(4, 4) homogeneous matrix M with M @ [x, 1] = [s R x + t, 1] (column-vector convention)."""
        mat = np.eye(4)
        mat[:3, :3] = self.scale * np.asarray(self.rotation, dtype=np.float64)
        mat[:3, 3] = self.translation
        return mat

    def to_dict(self) -> dict:
        return {"scale": float(self.scale), "rotation": self.rotation.tolist(),
                "translation": self.translation.tolist(), "matrix": self.matrix.tolist()}


def apply_similarity(points: np.ndarray, scale: float, rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """``s * R @ p + t`` for (N, 3) points, computed in float64, returned in the input dtype."""
    pts = np.asarray(points)
    out = scale * (pts.astype(np.float64) @ np.asarray(rotation, dtype=np.float64).T) + translation
    return out.astype(pts.dtype) if np.issubdtype(pts.dtype, np.floating) else out


def umeyama(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None, with_scale: bool = True,
            rotation: np.ndarray | None = None) -> Similarity:
    """Closed-form least-squares similarity (Umeyama 1991) mapping ``src`` onto ``dst``.

    Minimises ``sum_i w_i |s R src_i + t - dst_i|^2`` over s > 0, R in SO(3), t.

    Args:
        src: (N, 3) source points.
        dst: (N, 3) corresponding target points.
        weights: optional (N,) non-negative weights.
        with_scale: if False, s is fixed to 1 (rigid Procrustes / Kabsch).
        rotation: keep this (3, 3) rotation and fit only s and t (a known orientation).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, dtype=np.float64)
    wsum = w.sum()
    if len(src) < 3 or wsum <= 0:
        raise ValueError("umeyama needs at least 3 weighted correspondences")
    mu_s = w @ src / wsum
    mu_d = w @ dst / wsum
    xs, xd = src - mu_s, dst - mu_d
    cov = (xd * w[:, None]).T @ xs / wsum
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[2] = -1.0
    rot = (u * d) @ vt
    var_s = (w * (xs**2).sum(1)).sum() / wsum
    scale = float((sig * d).sum() / var_s) if (with_scale and var_s > 0) else 1.0
    if rotation is not None:
        rot = np.asarray(rotation, dtype=np.float64)
        scale = float((w * ((xs @ rot.T) * xd).sum(1)).sum() / wsum / var_s) if (with_scale and var_s > 0) else 1.0
    return Similarity(scale, rot, mu_d - scale * rot @ mu_s)


def bbox_diagonal(points: np.ndarray) -> float:
    """Length of the axis-aligned bounding-box diagonal of (N, 3) points (computed in their own precision)."""
    pts = np.asarray(points)
    return float(np.linalg.norm(pts.max(0) - pts.min(0)))


def rotation_error_deg(r_a: np.ndarray, r_b: np.ndarray) -> float:
    """Geodesic angle in degrees between two rotations (of the rotation taking r_a to r_b)."""
    cos = (np.trace(np.asarray(r_a).T @ np.asarray(r_b)) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def rotation_from_euler(yaw_deg: float = 0.0, pitch_deg: float = 0.0, roll_deg: float = 0.0) -> np.ndarray:
    """R = Ry(yaw) @ Rx(pitch) @ Rz(roll) (+Y up, as the template convention)."""
    y, p, r = np.radians([yaw_deg, pitch_deg, roll_deg])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return ry @ rx @ rz


def axis_rotations() -> np.ndarray:
    """(24, 3, 3) the proper rotations that map coordinate axes onto coordinate axes (cube group)."""
    mats = []
    for perm in ((0, 1, 2), (1, 2, 0), (2, 0, 1), (0, 2, 1), (2, 1, 0), (1, 0, 2)):
        for signs in np.array(np.meshgrid([1, -1], [1, -1], [1, -1])).T.reshape(-1, 3):
            m = np.zeros((3, 3))
            m[np.arange(3), perm] = signs
            if np.linalg.det(m) > 0:
                mats.append(m)
    return np.stack(mats)


def principal_axes(points: np.ndarray) -> np.ndarray:
    """(3, 3) rows = principal axes of (N, 3) points, largest variance first, right-handed."""
    centred = points - points.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    if np.linalg.det(vt) < 0:
        vt[2] *= -1
    return vt


def frame_from_up_front(up: np.ndarray, front: np.ndarray) -> np.ndarray:
    """Rotation taking the vectors `up` -> +Y and `front` -> +Z (front orthogonalised against up)."""
    up = np.asarray(up, float) / np.linalg.norm(up)
    front = np.asarray(front, float) - up * float(np.dot(front, up))
    if np.linalg.norm(front) < 1e-8:
        raise ValueError("up and front directions are parallel")
    front /= np.linalg.norm(front)
    right = np.cross(up, front)
    return np.stack([right, up, front])  # rows: the directions mapped to +X, +Y, +Z


def skew(vecs: np.ndarray) -> np.ndarray:
    """(..., 3) -> (..., 3, 3) cross-product matrices [v]_x."""
    out = np.zeros(vecs.shape[:-1] + (3, 3))
    out[..., 0, 1], out[..., 0, 2], out[..., 1, 2] = -vecs[..., 2], vecs[..., 1], -vecs[..., 0]
    out[..., 1, 0], out[..., 2, 0], out[..., 2, 1] = vecs[..., 2], -vecs[..., 1], vecs[..., 0]
    return out


def rodrigues(omega: np.ndarray) -> np.ndarray:
    """Rotation matrix of the axis-angle vector ``omega`` (radians)."""
    angle = float(np.linalg.norm(omega))
    if angle < TINY_ANGLE:
        return np.eye(3)
    k = omega / angle
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx


def rodrigues_batch(omega: np.ndarray) -> np.ndarray:
    """(B, 3) axis-angle -> (B, 3, 3) rotations."""
    angle = np.linalg.norm(omega, axis=1)
    k = omega / np.maximum(angle, TINY_ANGLE)[:, None]
    kx = skew(k)
    sin, cos = np.sin(angle)[:, None, None], np.cos(angle)[:, None, None]
    return np.eye(3) + sin * kx + (1 - cos) * kx @ kx


def pca_normals(points: np.ndarray, tree: cKDTree | None = None, k: int = PCA_NEIGHBOURS,
                outward: bool = False) -> np.ndarray:
    """(N, 3) unit normals of a point cloud: the least-variance direction of each k-neighbourhood.

    Unoriented, or with ``outward`` flipped to point away from the cloud's centroid (heads, shells and busts
    are curved round it)."""
    tree = _kdtree(points) if tree is None else tree
    _, idx = tree.query(points, k=min(k, len(points)))
    nbrs = points[idx] - points[idx].mean(1, keepdims=True)  # (N, k, 3)
    _, vecs = np.linalg.eigh(np.einsum("nki,nkj->nij", nbrs, nbrs))
    normals = vecs[:, :, 0]
    if outward:
        normals[((points - points.mean(0)) * normals).sum(1) < 0] *= -1
    return normals


@dataclass
class PointCloud:
    """Points with unit normals and a k-d tree over the points (all in one frame).

    Attributes:
        points: (N, 3) float64.
        normals: (N, 3) float64 unit normals.
        tree: cKDTree over ``points`` (built when not given).
        area: total surface area of the mesh the points were sampled from (None for a point cloud).
    """

    points: np.ndarray
    normals: np.ndarray
    tree: cKDTree | None = None
    area: float | None = None

    def __post_init__(self):
        if self.tree is None:
            self.tree = _kdtree(self.points)

    @classmethod
    def sample(cls, verts: np.ndarray, faces: np.ndarray | None, count: int, rng: np.random.Generator) -> PointCloud:
        """Area-weighted samples with their faces' normals; a face-less input (point cloud) is subsampled."""
        verts = np.asarray(verts, dtype=np.float64)
        if faces is None or len(faces) == 0:
            idx = rng.choice(len(verts), size=min(count, len(verts)), replace=False)
            pts = verts[idx]
            tree = _kdtree(pts)
            return cls(pts, pca_normals(pts, tree), tree)
        normals = face_normals(verts, faces, normalize=False)
        lengths = np.linalg.norm(normals, axis=1)
        pts, nrm = sample_points_normals(verts, faces, count, rng, normals=normals, lengths=lengths)
        return cls(pts, nrm, _kdtree(pts), 0.5 * float(lengths.sum()))

    def head(self, count: int) -> PointCloud:
        """The first ``count`` samples (i.i.d., so any prefix is itself a uniform sample)."""
        if count >= len(self.points):
            return self
        return PointCloud(self.points[:count], self.normals[:count], area=self.area)

    def every(self, step: int) -> PointCloud:
        """Every ``step``-th point (a coarser cloud for searches that need coverage, not density)."""
        return self if step <= 1 else PointCloud(self.points[::step], self.normals[::step], area=self.area)

    def transformed(self, sim: Similarity) -> PointCloud:
        """The cloud moved by ``sim`` (normals rotated)."""
        return PointCloud(sim.apply(self.points), self.normals @ sim.rotation.T, area=None)

    def flipped(self) -> PointCloud:
        """The same points with every normal reversed (the tree is shared)."""
        return PointCloud(self.points, -self.normals, self.tree, self.area)

    def spacing(self, probes: int = SPACING_PROBES) -> float:
        """Median distance from a sample to its nearest other sample (over about `probes` of them)."""
        probe = self.points[:: max(1, len(self.points) // probes)]
        return float(np.median(self.tree.query(probe, k=2)[0][:, 1]))


def _kdtree(points: np.ndarray) -> cKDTree:
    """scipy's k-d tree, imported on first use: scipy.spatial costs ~1 s to import, and the export/animate
    path (geometry/parts.py's umeyama) never builds a tree."""
    from scipy.spatial import cKDTree

    return cKDTree(points)
