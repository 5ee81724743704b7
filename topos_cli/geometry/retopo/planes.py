"""Background planes (floor, wall, turntable, a flat cap closing a cut) found in a scan by RANSAC."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from topos_cli.geometry.similarity import PointCloud

MIN_PLANE_POINTS = 100  # fewer points left than this: no further plane is looked for
PLANE_NORMAL_COS = 0.9  # a point belongs to a plane's fit only with its normal within 26 deg of the plane's
MIN_NORMAL_LENGTH = 1e-12  # a sampled triple this close to collinear defines no plane
PLANE_REFITS = 2  # least-squares refits on the inliers (a triple spanning a slab's two faces leaves it tilted)


@dataclass
class Plane:
    """A flat piece of background in a scan: the points within `tol` of {x : x . normal = offset} (whatever
    their normals: the rim of a floor slab or a wall goes with it)."""

    normal: np.ndarray
    offset: float
    tol: float

    def holds(self, points: np.ndarray) -> np.ndarray:
        return np.abs(points @ self.normal - self.offset) < self.tol


def find_planes(cloud: PointCloud, *, max_planes: int = 3, tol: float = 0.004, min_fraction: float = 0.1,
                trials: int = 256, sample: int = 3000) -> list[Plane]:
    """Large planes in a scan (a floor, a wall, a turntable, a flat cap closing a cut): RANSAC over sampled
    triples, at most `max_planes` times, each plane kept only when more than `min_fraction` of all the scan's
    points lie within `tol` of the scan's diagonal of it with normals along it (all points that near it go).
    No part of a head is that flat; a background plane makes the head a small part of the scan and draws the
    search onto itself. Deterministic (a fixed internal seed)."""
    pts, nrm = cloud.points, cloud.normals
    dist_tol = tol * float(np.linalg.norm(pts.max(0) - pts.min(0)))
    rng = np.random.default_rng(0)
    keep = np.ones(len(pts), bool)
    planes = []
    for _ in range(max_planes):
        idx = np.flatnonzero(keep)
        if len(idx) < MIN_PLANE_POINTS:
            break
        sub = idx[rng.choice(len(idx), min(sample, len(idx)), replace=False)]
        tri = pts[sub[rng.integers(0, len(sub), (trials, 3))]]
        normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        length = np.linalg.norm(normal, axis=1)
        ok = length > MIN_NORMAL_LENGTH
        normal = normal[ok] / length[ok, None]
        offset = (tri[ok, 0] * normal).sum(1)
        near = (np.abs(pts[sub] @ normal.T - offset) < dist_tol) & (np.abs(nrm[sub] @ normal.T) > PLANE_NORMAL_COS)
        counts = near.sum(0)
        if not len(counts) or counts.max() < min_fraction * len(pts) * len(sub) / len(idx):  # of the whole scan
            break
        best = int(np.argmax(counts))
        plane = Plane(normal[best], float(offset[best]), dist_tol)
        for _ in range(PLANE_REFITS):  # least squares on its inliers
            inl = pts[idx[plane.holds(pts[idx]) & (np.abs(nrm[idx] @ plane.normal) > PLANE_NORMAL_COS)]]
            centre = inl.mean(0)
            axis = np.linalg.svd(inl - centre, full_matrices=False)[2][-1]
            plane = Plane(axis, float(centre @ axis), dist_tol)
        planes.append(plane)
        keep[idx[plane.holds(pts[idx])]] = False
    return planes


def without_planes(cloud: PointCloud, planes: list[Plane]) -> PointCloud:
    """The cloud's points that lie on none of the planes."""
    off = np.zeros(len(cloud.points), bool)
    for plane in planes:
        off |= plane.holds(cloud.points)
    return PointCloud(cloud.points[~off], cloud.normals[~off])

