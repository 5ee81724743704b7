"""The template: the single source of topology in topos.

A template is a folder (see README "Templates"):

    template.obj    mesh with UVs, in template vertex order (cm, +Y up, face looks down +Z)
    template.json   name, units, axes, regions, landmarks, symmetry, augmentation bounds, bases index
    bases.npz       named shape bases as vertex deltas, (K, V, 3), float16 or float32
    NOTICE          licence of anything the template was derived from
    README.md       region table and how the folder is rebuilt

`load_template(name_or_dir)` returns a cached, frozen `Template`. Nothing else in topos opens
`template.obj`. The template hash covers connectivity only (vertex count and faces), so two heads with
the same topology but different shapes share it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from topos_cli.errors import TemplateMismatch, UsageError

TEMPLATES_DIR = Path(__file__).resolve().parent / "assets" / "templates"
DEFAULT_TEMPLATE = "topos-head"
TEMPLATE_FORMAT = 1


def triangulate_polys(polys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fan-triangulate -1-padded polygons.

    Args:
        polys: (P, K) int64 vertex indices, -1 padded.

    Returns:
        tris: (F, 3) int64 triangles, in polygon order.
        tri_to_poly: (F,) int64 index of the polygon each triangle came from.
    """
    polys = np.asarray(polys, dtype=np.int64)
    if polys.shape[1] == 3:
        return polys.copy(), np.arange(len(polys))
    counts = (polys >= 0).sum(1)
    tris, owner = [], []
    for k in range(2, polys.shape[1]):  # triangle (0, k-1, k) exists where the polygon has > k corners
        rows = np.flatnonzero(counts > k)
        tris.append(np.stack([polys[rows, 0], polys[rows, k - 1], polys[rows, k]], 1))
        owner.append(rows)
    tris_all, owner_all = np.concatenate(tris), np.concatenate(owner)
    order = np.argsort(owner_all, kind="stable")
    return tris_all[order], owner_all[order]


@dataclass(frozen=True, eq=False)
class Template:
    """A fixed mesh topology with its semantics.

    Attributes:
        name: template name (e.g. "topos-head").
        verts: (V, 3) float32 rest-pose vertices in centimetres.
        faces: (F, 3) int64 triangles (polygons fan-triangulated, in polygon order).
        uv: (T, 2) float32 texture coordinates, or None.
        uv_faces: (F, 3) int64 per-corner uv indices, or None.
        polys: (P, K) int64 original polygons (-1 padded), or None for an all-triangle template.
        regions: name -> (n,) int64 sorted vertex indices.
        landmarks: (L,) int64 vertex indices (68 in iBUG order for face templates; may be empty).
        symmetry: (V,) int64 index of each vertex's mirror partner (x -> -x), or None.
        meta: the rest of template.json (units, axes, augment bounds, bases index, provenance).
        root: folder it was loaded from, or None for in-memory templates.
    """

    name: str
    verts: np.ndarray
    faces: np.ndarray
    uv: np.ndarray | None = None
    uv_faces: np.ndarray | None = None
    polys: np.ndarray | None = None
    regions: dict[str, np.ndarray] = field(default_factory=dict)
    landmarks: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    symmetry: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    root: Path | None = None

    @property
    def num_verts(self) -> int:
        return int(self.verts.shape[0])

    @property
    def num_faces(self) -> int:
        return int(self.faces.shape[0])

    @cached_property
    def hash(self) -> str:
        """sha256 over vertex count and triangle connectivity (not positions)."""
        h = hashlib.sha256()
        h.update(np.int64(self.num_verts).tobytes())
        h.update(np.ascontiguousarray(self.faces, dtype="<i8").tobytes())
        return h.hexdigest()

    @cached_property
    def edges(self) -> np.ndarray:
        """(E, 2) int64 unique undirected edges, each sorted (i < j), lexicographically ordered."""
        e = np.concatenate([self.faces[:, [0, 1]], self.faces[:, [1, 2]], self.faces[:, [2, 0]]])
        e.sort(axis=1)
        return np.unique(e, axis=0)

    @cached_property
    def boundary_loops(self) -> list[np.ndarray]:
        """Ordered vertex loops of the open boundaries (edges used by exactly one triangle)."""
        return boundary_loops(self.faces)

    @cached_property
    def named_boundaries(self) -> dict[str, np.ndarray]:
        """The open boundaries `template.json` names ("boundaries": {name: [vertex ids], ...}), as int64 loops;
        entries that are not a flat list of ids are left out. Empty when the sidecar names none."""
        named = self.meta.get("boundaries") or {}
        return {name: np.asarray(ids, np.int64) for name, ids in named.items()
                if isinstance(ids, list) and ids and not isinstance(ids[0], list)}

    def inner_boundaries(self) -> list[np.ndarray]:
        """The boundary loops except the longest (the neck cut): eyes, mouth, nostrils. Named loops when the
        sidecar has them, else the computed ones."""
        named = sorted(self.named_boundaries.values(), key=len, reverse=True)
        return named[1:] if named else list(self.boundary_loops[1:])

    @cached_property
    def bases(self) -> dict[str, np.ndarray]:
        """Named shape bases (K, V, 3) float32 deltas from `bases.npz` (empty if the folder has none)."""
        if self.root is None or not (self.root / "bases.npz").exists():
            return {}
        with np.load(self.root / "bases.npz", allow_pickle=False) as npz:
            return {k: (npz[k].astype(np.float32) if npz[k].dtype.kind == "f" else npz[k]) for k in npz.files}

    def basis(self, name: str) -> np.ndarray:
        """One named basis (K, V, 3) float32; UsageError listing the available names if absent."""
        if name not in self.bases:
            raise UsageError(f"template '{self.name}' has no basis '{name}'; it has: {sorted(self.bases) or 'none'}")
        return self.bases[name]

    @cached_property
    def parts(self) -> TemplateParts | None:
        """Eye and mouth parts stored beside the skin (template.json `parts` + its npz), or None.

        The skin mesh, its vertex order and its hash do not include them; geometry/parts.py places them.
        """
        spec = self.meta.get("parts")
        if not spec or self.root is None or not (self.root / spec.get("file", "parts.npz")).is_file():
            return None
        return read_parts(self.root / spec.get("file", "parts.npz"), spec)

    def sidecar(self, filename: str) -> dict | None:
        """A JSON asset stored beside the template (e.g. `face_landmarks_mediapipe.json`), or None if absent."""
        from topos_cli.io.fs import read_json

        if self.root is None or not (self.root / filename).is_file():
            return None
        return read_json(self.root / filename)

    def region(self, name: str) -> np.ndarray:
        if name not in self.regions:
            raise UsageError(f"template '{self.name}' has no region '{name}'; it has: {sorted(self.regions)}")
        return self.regions[name]

    def vertex_labels(self) -> tuple[np.ndarray, list[str]]:
        """(V,) int64 index into the returned region names: each vertex's first listed region (-1 if none)."""
        names = list(self.regions)
        labels = np.full(self.num_verts, -1, dtype=np.int64)
        for i in reversed(range(len(names))):
            labels[self.regions[names[i]]] = i
        return labels, names

    def check_verts(self, verts: np.ndarray, what: str = "mesh") -> None:
        """Raise TemplateMismatch unless `verts` is (V, 3) for this template."""
        if verts.ndim != 2 or verts.shape != (self.num_verts, 3):
            raise TemplateMismatch(
                f"{what} has {verts.shape[0] if verts.ndim else 0} vertices but template '{self.name}' has "
                f"{self.num_verts}; retopologise it first (topos retopo) or pass the right --template")

    def check_faces(self, faces: np.ndarray, what: str = "mesh") -> None:
        """Raise TemplateMismatch unless `faces` equals this template's triangles."""
        if faces.shape != self.faces.shape or not np.array_equal(faces, self.faces):
            raise TemplateMismatch(
                f"{what} has the template's vertex count but different connectivity than template "
                f"'{self.name}'; it is not in template topology")

    def summary(self) -> dict:
        """Plain-data description (what `topos template info --json` prints)."""
        return template_summary(self)


@dataclass(frozen=True, eq=False)
class TemplateParts:
    """Fixed-topology parts beside a template's skin (eyeballs, teeth, mouth socket, ...).

    Attributes:
        verts: (P, 3) float32 rest positions (cm, the skin's frame).
        faces: (Fp, 3) int64 triangles over part vertices.
        uv, uv_faces: (T, 2) float32 the parts' own texture layout and (Fp, 3) int64 corners.
        identity, expression: (K, P, 3) float32 deltas indexed like the skin's bases of the same names.
        vertex_material: (P,) int64 index into `spec["material_order"]`.
        vertex_group: (P,) int64 index into `spec["groups"]` (what the part moves with when placed on a head).
        spec: the template.json `parts` block (part ranges, materials, eyes, gaze, anchors, uv_patch).
    """

    verts: np.ndarray
    faces: np.ndarray
    uv: np.ndarray
    uv_faces: np.ndarray
    identity: np.ndarray
    expression: np.ndarray
    vertex_material: np.ndarray
    vertex_group: np.ndarray
    spec: dict

    @property
    def num_verts(self) -> int:
        return int(len(self.verts))


def read_parts(path: Path, spec: dict) -> TemplateParts:
    """Load a parts npz (arrays `verts faces uv uv_faces identity expression vertex_material vertex_group`)."""
    with np.load(path, allow_pickle=False) as npz:
        a = {k: npz[k] for k in npz.files}
    f32 = {k: a[k].astype(np.float32) for k in ("verts", "uv", "identity", "expression")}
    i64 = {k: a[k].astype(np.int64) for k in ("faces", "uv_faces", "vertex_material", "vertex_group")}
    if i64["faces"].size and (i64["faces"].min() < 0 or i64["faces"].max() >= len(f32["verts"])):
        raise UsageError(f"{path}: part faces index out of range")
    return TemplateParts(**f32, **i64, spec=spec)


def boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """Ordered boundary vertex loops of a triangle mesh, longest first."""
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    key = np.sort(directed, axis=1)
    _, inv, counts = np.unique(key, axis=0, return_inverse=True, return_counts=True)
    border = directed[counts[inv.ravel()] == 1]
    nxt = {int(a): int(b) for a, b in border}
    loops, seen = [], set()
    for start in list(nxt):
        if start in seen:
            continue
        loop, v = [], start
        while v not in seen and v in nxt:
            seen.add(v)
            loop.append(v)
            v = nxt[v]
        loops.append(np.asarray(loop, dtype=np.int64))
    return sorted(loops, key=len, reverse=True)


def template_summary(t: Template) -> dict:
    from topos_cli.geometry.mesh_ops import mesh_quality, uv_quality  # numpy only

    quality = mesh_quality(t.verts, t.faces)
    if t.uv is not None and t.uv_faces is not None:
        quality.update(uv_quality(t.uv, t.uv_faces))
    return {
        "name": t.name,
        "root": str(t.root) if t.root else None,
        "hash": t.hash,
        "units": t.meta.get("units", "cm"),
        "axes": t.meta.get("axes", {"up": "+Y", "front": "+Z"}),
        "num_verts": t.num_verts,
        "num_faces": t.num_faces,
        "num_polys": int(len(t.polys)) if t.polys is not None else t.num_faces,
        "num_edges": int(len(t.edges)),
        "has_uv": t.uv is not None,
        "boundary_loops": [int(len(loop)) for loop in t.boundary_loops],
        "regions": {k: int(len(v)) for k, v in t.regions.items()},
        "landmarks": int(len(t.landmarks)),
        "symmetry": t.symmetry is not None,
        "bases": {k: list(v.shape) for k, v in t.bases.items() if v.ndim == 3},
        "augment_regions": {k: [v.get("lower", 0.0), v.get("upper", 1.0)]
                             for k, v in t.meta.get("augment", {}).get("regions", {}).items()},
        **quality,
    }


def _resolve(name_or_dir: str | Path | None) -> Path:
    if name_or_dir is None or name_or_dir == "":
        name_or_dir = DEFAULT_TEMPLATE
    path = Path(name_or_dir)
    if path.is_dir():
        return path.resolve()
    if path.suffix == ".json" and path.is_file():
        return path.parent.resolve()
    candidate = TEMPLATES_DIR / str(name_or_dir)
    if candidate.is_dir():
        return candidate
    known = sorted(p.name for p in TEMPLATES_DIR.iterdir() if p.is_dir()) if TEMPLATES_DIR.is_dir() else []
    raise UsageError(f"no template '{name_or_dir}': give a template folder or one of {known}")


def load_template(name_or_dir: str | Path | None = None) -> Template:
    """Load a template by bundled name or folder path (cached; the returned object is shared).

    Args:
        name_or_dir: bundled template name ("topos-head"), a template folder, or None for the default.
    """
    return _load_cached(str(_resolve(name_or_dir)))


@lru_cache(maxsize=8)
def _load_cached(root_str: str) -> Template:
    # the file readers are imported here, not at the top: io/ builds on the Template (io/mesh.py imports it),
    # so at import time the template layer must not depend on io (tests/unit/test_layering.py)
    from topos_cli.io.fs import read_json
    from topos_cli.io.obj import read_obj

    root = Path(root_str)
    meta_path = root / "template.json"
    if not meta_path.is_file():
        raise UsageError(f"{root} is not a template folder: template.json is missing")
    meta = read_json(meta_path)
    mesh_path = root / meta.get("mesh", "template.obj")
    if not mesh_path.is_file():
        raise UsageError(f"template mesh {mesh_path} is missing")
    obj = read_obj(mesh_path)
    return template_from_parts(meta, obj.verts, obj.polys, obj.uv, obj.uv_polys, root=root)


def template_from_parts(meta: dict, verts: np.ndarray, polys: np.ndarray, uv: np.ndarray | None = None,
                        uv_polys: np.ndarray | None = None, root: Path | None = None) -> Template:
    """Build a Template from a parsed template.json dict and mesh arrays (validates indices)."""
    verts = np.asarray(verts, dtype=np.float32)
    faces, _ = triangulate_polys(polys)
    uv_faces = triangulate_polys(uv_polys)[0] if uv is not None and uv_polys is not None else None
    n = len(verts)
    meta = dict(meta)
    name = meta.pop("name", root.name if root else "template")
    regions = {k: np.asarray(sorted(v), dtype=np.int64) for k, v in meta.pop("regions", {}).items()}
    lm = meta.pop("landmarks", [])
    landmarks = np.asarray(lm["indices"] if isinstance(lm, dict) else lm, dtype=np.int64)
    if isinstance(lm, dict):
        meta["landmark_scheme"] = lm.get("scheme")
    sym = meta.pop("symmetry", None)
    symmetry = np.asarray(sym, dtype=np.int64) if sym is not None else None
    for what, idx in [("regions", np.concatenate(list(regions.values())) if regions else np.zeros(0)),
                      ("landmarks", landmarks), ("symmetry", symmetry if symmetry is not None else np.zeros(0)),
                      ("faces", faces)]:
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise UsageError(f"template '{name}': {what} index out of range for {n} vertices")
    if symmetry is not None and len(symmetry) != n:
        raise UsageError(f"template '{name}': symmetry map has {len(symmetry)} entries for {n} vertices")
    keep_polys = polys if polys.shape[1] > 3 else None
    return Template(name=name, verts=verts, faces=faces, uv=None if uv is None else np.asarray(uv, np.float32),
                    uv_faces=uv_faces, polys=keep_polys, regions=regions, landmarks=landmarks,
                    symmetry=symmetry, meta=meta, root=root)
