"""A head as a production asset, in arrays: LOD meshes with morph targets and skin, plus a skeleton.

The writers (`io/gltf.py`, `io/usd.py`) take a `HeadAsset`; `api.export` builds one. Everything here is in
template units (cm) and the template frame (+Y up, face along +Z); writers scale to the file's units.

Surface frames for writers: `split_at_seams` cuts a template-order mesh open where the UV layout is cut
(one UV per vertex, as glTF and real-time engines need), with the same convention as the GLB writer in
io/mesh.py (unique (vertex, uv) pairs in sorted order, each copy remembering its template vertex), and
`tangent_frames` gives per-copy tangents from normals computed on the welded mesh, so shading is smooth
across seams.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NORMAL_DELTA_EPS = 1e-5  # normal changes below this are float noise of unmoved regions (1e-5 rad)
NORMAL_BATCH = 8  # morph targets whose normals are computed together (memory: 8 x F x 3 x 3 floats)


@dataclass(frozen=True)
class Skeleton:
    """Joints in their rest pose.

    Attributes:
        names: joint names, parents before children.
        parents: (J,) int64 parent index (-1 for the root).
        positions: (J, 3) float64 rest positions in the head's frame (cm); joints carry no rest rotation.
    """

    names: list[str]
    parents: np.ndarray
    positions: np.ndarray

    def index(self, name: str) -> int:
        return self.names.index(name)


@dataclass
class AssetMesh:
    """One level of detail of the head.

    Attributes:
        verts: (V, 3) float32 rest positions (cm), template (or LOD) vertex order.
        faces: (F, 3) int64 triangles. uv: (T, 2) float32 (v up) or None. uv_faces: (F, 3) int64 or None.
        morphs: (K, V, 3) float32 position deltas (cm), one per `HeadAsset.morph_names`.
        joints: (V, 4) int64 joint indices, or None without a rig. weights: (V, 4) float32 rows summing to 1.
        colors: (V, 3) float32 linear RGB per vertex (the eye and mouth parts' materials), or None.
    """

    verts: np.ndarray
    faces: np.ndarray
    uv: np.ndarray | None
    uv_faces: np.ndarray | None
    morphs: np.ndarray
    joints: np.ndarray | None = None
    weights: np.ndarray | None = None
    colors: np.ndarray | None = None


@dataclass
class HeadAsset:
    """LOD meshes (LOD0 first) sharing morph names and one skeleton.

    Attributes:
        name: asset name (mesh and node names derive from it).
        lods: [LOD0, LOD1, ...].
        morph_names: K target names (ARKit names by default).
        skeleton: the rig, or None.
        template: template name and hash, recorded in the file so topos can check it on the way back.
        parts: eyeballs, eye sockets, teeth, gums and tongue, mouth socket (one mesh with vertex colours and
            the same morph targets; every LOD shows the same parts), or None.
    """

    name: str
    lods: list[AssetMesh]
    morph_names: list[str]
    skeleton: Skeleton | None = None
    template: dict = field(default_factory=dict)
    parts: AssetMesh | None = None


@dataclass(frozen=True)
class SeamSplit:
    """A mesh cut open at UV seams.

    Attributes:
        source: (S,) int64 welded vertex of each copy. uv_index: (S,) int64 its uv. faces: (F, 3) over copies.
    """

    source: np.ndarray
    uv_index: np.ndarray
    faces: np.ndarray


def split_at_seams(faces: np.ndarray, uv_faces: np.ndarray) -> SeamSplit:
    """One copy per (vertex, uv) pair, sorted by vertex then uv (io/mesh.py's GLB convention)."""
    pairs, inverse = np.unique(np.stack([np.ravel(faces), np.ravel(uv_faces)], 1), axis=0, return_inverse=True)
    return SeamSplit(pairs[:, 0], pairs[:, 1], inverse.reshape(-1, 3))


def smooth_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) float32 unit area-weighted normals of the welded mesh (smooth across UV seams)."""
    return _normals_batch(np.asarray(verts, np.float64)[None], faces)[0]


def _normals_batch(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(B, V, 3) float32 unit area-weighted normals of a batch of (B, V, 3) positions."""
    tri = verts[:, faces]  # (B, F, 3, 3)
    fn = np.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0])  # (B, F, 3), length 2 * area
    corners = np.asarray(faces, np.int64).reshape(-1)
    num = verts.shape[1]
    vn = np.stack([np.stack([np.bincount(corners, np.repeat(f[:, c], 3), num) for c in range(3)], 1)
                   for f in fn])  # (B, V, 3): each face normal summed onto its three corners
    length = np.linalg.norm(vn, axis=2, keepdims=True)
    vn = np.where(length > 1e-20, vn / np.maximum(length, 1e-20), (0.0, 0.0, 1.0))  # isolated: any unit vector
    return vn.astype(np.float32)


def tangent_frames(verts: np.ndarray, normals: np.ndarray, uv: np.ndarray, split: SeamSplit) -> np.ndarray:
    """(S, 4) float32 tangents per seam copy: xyz along +u, w = handedness (bitangent = w * n x t, along +v).

    Args:
        verts: (V, 3) welded positions. normals: (V, 3) welded unit normals. uv: (T, 2) (v up).
        split: the seam split the tangents are for.
    """
    pos = np.asarray(verts, np.float64)[split.source]
    tex = np.asarray(uv, np.float64)[split.uv_index]
    f = split.faces
    e1, e2 = pos[f[:, 1]] - pos[f[:, 0]], pos[f[:, 2]] - pos[f[:, 0]]
    t1, t2 = tex[f[:, 1]] - tex[f[:, 0]], tex[f[:, 2]] - tex[f[:, 0]]
    det = t1[:, 0] * t2[:, 1] - t2[:, 0] * t1[:, 1]
    det = np.where(np.abs(det) < 1e-20, 1e-20, det)
    du = (e1 * t2[:, 1:] - e2 * t1[:, 1:]) / det[:, None]  # dP/du per triangle
    dv = (e2 * t1[:, :1] - e1 * t2[:, :1]) / det[:, None]  # dP/dv
    area = np.linalg.norm(np.cross(e1, e2), axis=1, keepdims=True)  # twice the area: only ratios matter
    scale = area / np.maximum(np.linalg.norm(du, axis=1, keepdims=True), 1e-20)
    tan, bit = np.zeros_like(pos), np.zeros_like(pos)
    for k in range(3):
        np.add.at(tan, f[:, k], du * scale)
        np.add.at(bit, f[:, k], dv * scale)
    n = np.asarray(normals, np.float64)[split.source]
    tan -= n * np.einsum("ij,ij->i", tan, n)[:, None]  # Gram-Schmidt against the smooth normal
    length = np.linalg.norm(tan, axis=1)
    fallback = np.cross(n, np.where(np.abs(n[:, :1]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]]))
    tan = np.where((length < 1e-12)[:, None], fallback, tan)
    tan /= np.linalg.norm(tan, axis=1, keepdims=True)
    w = np.where(np.einsum("ij,ij->i", np.cross(n, tan), bit) < 0, -1.0, 1.0)
    return np.concatenate([tan, w[:, None]], 1).astype(np.float32)


def morph_normal_deltas(verts: np.ndarray, faces: np.ndarray, morphs: np.ndarray,
                        normals: np.ndarray) -> np.ndarray:
    """(K, V, 3) float32 change of the smooth normal under each full-weight morph target."""
    out = np.zeros(np.shape(morphs), np.float32)
    base = np.asarray(verts, np.float64)
    for start in range(0, len(morphs), NORMAL_BATCH):
        chunk = np.asarray(morphs[start:start + NORMAL_BATCH], np.float64)
        out[start:start + len(chunk)] = _normals_batch(base[None] + chunk, faces) - normals
    out[np.abs(out) < NORMAL_DELTA_EPS] = 0.0  # float noise of unmoved regions: keeps sparse storage sparse
    return out
