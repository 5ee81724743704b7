"""Shared fixtures: a toy template (icosphere, ~162 vertices) built in code, seeded generators, ICT path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def ict_path() -> Path | None:
    """The ICT FaceKit npz if present ($TOPOS_ICT_NPZ or ../shared/data), else None."""
    env = os.environ.get("TOPOS_ICT_NPZ")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared" / "data" / "ict_face_model_light.npz"]:
        if cand.is_file():
            return cand
    return None


@pytest.fixture
def ict_npz() -> Path:
    path = ict_path()
    if path is None:
        pytest.skip("ICT FaceKit npz not found (set TOPOS_ICT_NPZ or put it at ../shared/data/)")
    return path


def make_tiny_template_dir(folder: Path, subdivisions: int = 2, seed: int = 0) -> Path:
    """Write a toy template folder: icosphere 'head' (radius 10 cm), spherical UVs, 4 fake regions split
    by the sign of x and y, 68 fake landmarks, the x-mirror symmetry map, smooth random bases and an
    augmentation table. Deterministic for a given seed."""
    import trimesh

    from topos_cli.io.obj import ObjData, format_obj

    sphere = trimesh.creation.icosphere(subdivisions=subdivisions, radius=10.0)
    verts = np.asarray(sphere.vertices, dtype=np.float32)
    faces = np.asarray(sphere.faces, dtype=np.int64)
    n = len(verts)
    uv = np.stack([0.5 + np.arctan2(verts[:, 0], verts[:, 2]) / (2 * np.pi), 0.5 + verts[:, 1] / 20.0], 1)
    regions = {
        "top_left": np.flatnonzero((verts[:, 1] >= 0) & (verts[:, 0] < 0)),
        "top_right": np.flatnonzero((verts[:, 1] >= 0) & (verts[:, 0] >= 0)),
        "bottom_left": np.flatnonzero((verts[:, 1] < 0) & (verts[:, 0] < 0)),
        "bottom_right": np.flatnonzero((verts[:, 1] < 0) & (verts[:, 0] >= 0)),
    }
    from scipy.spatial import cKDTree

    sym = cKDTree(verts).query(verts * np.array([-1, 1, 1], np.float32))[1]
    rng = np.random.default_rng(seed)
    normals = verts / np.linalg.norm(verts, axis=1, keepdims=True)

    def smooth_field(k: int) -> np.ndarray:  # low-frequency radial bumps: plausible "shape modes"
        dirs = rng.normal(size=(k, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        amp = np.exp(3.0 * (normals @ dirs.T - 1.0))  # (V, k)
        return (amp.T[:, :, None] * normals[None]).astype(np.float32)  # (k, V, 3)

    bases = {"identity": smooth_field(10), "expression": 0.5 * smooth_field(4),
             "expression_names": np.array(["jawOpen", "eyeBlink_L", "eyeBlink_R", "mouthSmile_L"])}
    augment = {"pick": 2, "regions": {}}
    for name, idx in regions.items():
        mask = np.zeros(n, np.float32)
        mask[idx] = 1.0
        field = smooth_field(3) * mask[None, :, None]
        bases[f"region_{name}"] = np.concatenate([field, -field])
        augment["regions"][name] = {"basis": f"region_{name}", "lower": 0.0, "upper": 1.0}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "template.obj").write_text(format_obj(ObjData(verts=verts.astype(np.float64), polys=faces, uv=uv,
                                                            uv_polys=faces)))
    meta = {"format": 1, "name": folder.name, "mesh": "template.obj", "units": "cm",
            "axes": {"up": "+Y", "front": "+Z"},
            "regions": {k: v.tolist() for k, v in regions.items()},
            "landmarks": {"scheme": "ibug68", "indices": rng.choice(n, 68, replace=False).tolist()},
            "symmetry": sym.tolist(), "augment": augment,
            "bases": {"identity": {"count": 10}, "expression": {"count": 4}}}
    (folder / "template.json").write_text(json.dumps(meta))
    np.savez_compressed(folder / "bases.npz", **{k: (v.astype(np.float16) if v.dtype.kind == "f" else v)
                                               for k, v in bases.items()})
    return folder


@pytest.fixture(scope="session")
def tiny_template_dir(tmp_path_factory) -> Path:
    return make_tiny_template_dir(tmp_path_factory.mktemp("templates") / "tiny-head")


@pytest.fixture(scope="session")
def tiny_template(tiny_template_dir):
    from topos_cli.template import load_template

    return load_template(tiny_template_dir)


@pytest.fixture
def generator():
    return np.random.default_rng(1234)


@pytest.fixture
def tiny_dataset(tmp_path, tiny_template_dir):
    """A 4-item augment dataset of the tiny template."""
    from topos_cli import api

    api.augment(None, tmp_path / "aug", template=tiny_template_dir, copies=4, seed=0, identity_sigma=1.0)
    return tmp_path / "aug"
