"""Sidecar (template.json) for a studio's own topology: regions, landmarks, symmetry map."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from topos_cli.errors import UsageError


def mirror_map(verts: np.ndarray, tolerance: float = 1e-3) -> np.ndarray | None:
    """(V,) index of each vertex's x-mirror partner, or None if some vertex has no partner within
    `tolerance` x the bounding-box diagonal (the mesh is not symmetric about x = 0)."""
    verts = np.asarray(verts, dtype=np.float64)
    mirrored = verts * np.array([-1.0, 1.0, 1.0])
    dist, idx = cKDTree(verts).query(mirrored)
    diag = np.linalg.norm(verts.max(0) - verts.min(0))
    return idx.astype(np.int64) if dist.max() <= tolerance * diag else None


def build_template_meta(verts: np.ndarray, faces: np.ndarray, name: str, regions: dict | None,
                        landmarks, symmetry: bool) -> dict:
    """template.json content for an imported mesh; validates user-given indices."""
    n = len(verts)
    region_map = regions or {"all": list(range(n))}
    if not isinstance(region_map, dict):
        raise UsageError("regions file must be a JSON object {region name: [vertex ids]}")
    for key, ids in region_map.items():
        arr = np.asarray(ids)
        if arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "iu" or arr.min() < 0 or arr.max() >= n:
            raise UsageError(f"region '{key}' must be a non-empty list of vertex ids in [0, {n})")
    lm_ids = landmarks.get("indices", []) if isinstance(landmarks, dict) else (landmarks or [])
    lm = np.asarray(lm_ids, dtype=np.int64)
    if lm.size and (lm.min() < 0 or lm.max() >= n):
        raise UsageError(f"landmark ids must lie in [0, {n})")
    scheme = landmarks.get("scheme", "custom") if isinstance(landmarks, dict) else (
        "ibug68" if lm.size == 68 else "custom")
    meta = {"format": 1, "name": name, "mesh": "template.obj", "units": "cm", "axes": {"up": "+Y", "front": "+Z"},
            "regions": {k: sorted(int(i) for i in v) for k, v in region_map.items()},
            "landmarks": {"scheme": scheme, "indices": [int(i) for i in lm]}}
    if symmetry:
        sym = mirror_map(verts)
        if sym is not None:
            meta["symmetry"] = [int(i) for i in sym]
    return meta
