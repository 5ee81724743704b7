"""Mesh files in and out: OBJ (own reader/writer), PLY, OFF, STL, GLB/glTF (trimesh, process=False), and
ASCII point clouds (.xyz, .pts: one point per line, x y z first).

Every loader returns a `MeshData`; every error a user can cause becomes a one-line `MeshError`.
Meshes in template topology round-trip bit-exactly in vertex order through OBJ and PLY (float32).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from topos_cli.errors import MeshError, TemplateMismatch
from topos_cli.io.fs import atomic_path
from topos_cli.io.obj import ObjData, format_obj, read_obj
from topos_cli.template import Template, triangulate_polys

POINT_SUFFIXES = (".xyz", ".pts")  # ASCII point clouds: x y z [more columns], a count line is skipped
MESH_SUFFIXES = (".obj", ".ply", ".off", ".stl", ".glb", ".gltf") + POINT_SUFFIXES
WRITE_SUFFIXES = (".obj", ".ply", ".glb")
GLB_VERTEX_ID = "_VERTEX_ID"  # glTF vertex attribute: the mesh vertex each uv-seam copy was split from


@dataclass
class MeshData:
    """A mesh as arrays.

    Attributes:
        verts: (V, 3) float32 positions.
        faces: (F, 3) int64 triangles (polygons fan-triangulated, polygon order kept).
        polys: (P, K) int64 -1-padded polygons when the file had non-triangles, else None.
        uv: (T, 2) float32 texture coordinates, or None.
        uv_faces: (F, 3) int64 per-corner indices into `uv`, or None.
        normals: (V, 3) float32 per-vertex normals from the file, or None.
        colors: (V, 3|4) per-vertex colours in [0, 1], or None.
        materials: (F,) int64 material index per triangle, or None.
        material_names: material names.
        texture: path of the diffuse texture image, or None.
        source: the file it was read from.
    """

    verts: np.ndarray
    faces: np.ndarray
    polys: np.ndarray | None = None
    uv: np.ndarray | None = None
    uv_faces: np.ndarray | None = None
    normals: np.ndarray | None = None
    colors: np.ndarray | None = None
    materials: np.ndarray | None = None
    material_names: list[str] = field(default_factory=list)
    texture: Path | None = None
    source: Path | None = None

    def with_verts(self, verts: np.ndarray) -> MeshData:
        """Same connectivity/UVs/materials with new positions (normals dropped: they no longer match)."""
        return replace(self, verts=np.asarray(verts, dtype=np.float32), normals=None)

    @staticmethod
    def from_template(template: Template, verts: np.ndarray | None = None) -> MeshData:
        """A mesh in template topology (template UVs and polygons) with the given or rest-pose vertices."""
        v = template.verts if verts is None else verts
        template.check_verts(np.asarray(v))
        return MeshData(verts=np.asarray(v, dtype=np.float32), faces=template.faces, polys=template.polys,
                        uv=template.uv, uv_faces=template.uv_faces)


def load_mesh(path: str | Path, allow_points: bool = False) -> MeshData:
    """Read a mesh (or, with `allow_points`, a point cloud) and validate it.

    Raises:
        MeshError: missing, unreadable, unsupported, empty, non-finite or out-of-range content.
    """
    path = Path(path)
    if not path.exists():
        raise MeshError(f"{path}: no such file")
    if path.is_dir():
        raise MeshError(f"{path} is a folder; give a mesh file")
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise MeshError(f"{path}: unsupported mesh format '{suffix}'; use one of {', '.join(MESH_SUFFIXES)}")
    if path.stat().st_size == 0:
        raise MeshError(f"{path} is empty (0 bytes)")
    try:
        if suffix == ".obj":
            mesh = _read_obj(path)
        elif suffix in POINT_SUFFIXES:
            mesh = _read_points(path)
        elif suffix in (".glb", ".gltf") and _is_topos_gltf(path):
            mesh = _read_topos_gltf(path)
        else:
            mesh = _read_trimesh(path)
    except MeshError:
        raise
    except Exception as exc:  # any parser failure on user data is a bad file, not a bug
        raise MeshError(f"{path}: cannot read {suffix[1:].upper()} file ({type(exc).__name__}: {exc})") from None
    mesh.source = path
    validate_mesh(mesh, str(path), allow_points=allow_points)
    return mesh


def validate_mesh(mesh: MeshData, name: str = "mesh", allow_points: bool = False) -> None:
    """Raise MeshError for empty meshes, NaN/Inf coordinates or face indices out of range."""
    if len(mesh.verts) == 0:
        raise MeshError(f"{name} has no vertices")
    if not np.isfinite(mesh.verts).all():
        bad = int((~np.isfinite(mesh.verts)).any(1).sum())
        raise MeshError(f"{name} has {bad} vertices with NaN or infinite coordinates; fix or remove them")
    if len(mesh.faces) == 0:
        if not allow_points:
            raise MeshError(f"{name} has no faces (a point cloud?); this command needs a surface mesh")
        return
    if mesh.faces.min() < 0 or mesh.faces.max() >= len(mesh.verts):
        raise MeshError(f"{name} has face indices outside its {len(mesh.verts)} vertices (corrupt file)")


def check_template_topology(mesh: MeshData, template: Template, name: str = "mesh") -> None:
    """Raise TemplateMismatch unless `mesh` has the template's vertex count and connectivity."""
    template.check_verts(mesh.verts, name)
    template.check_faces(mesh.faces, name)


def _read_obj(path: Path) -> MeshData:
    obj = read_obj(path)
    if obj.polys.size and obj.polys.shape[1] >= 3:
        faces, owner = triangulate_polys(obj.polys)
    else:
        faces, owner = np.zeros((0, 3), np.int64), np.zeros(0, np.int64)
    uv_faces = None
    if obj.uv is not None and obj.uv_polys is not None and len(faces) and (obj.uv_polys[:, :3] >= 0).all():
        uv_faces = triangulate_polys(obj.uv_polys)[0]
    normals = obj.normals if obj.normals is not None and len(obj.normals) == len(obj.verts) else None
    return MeshData(
        verts=obj.verts.astype(np.float32), faces=faces,
        polys=obj.polys if obj.polys.ndim == 2 and obj.polys.shape[1] > 3 else None,
        uv=None if uv_faces is None else obj.uv.astype(np.float32), uv_faces=uv_faces,
        normals=None if normals is None else normals.astype(np.float32), colors=obj.colors,
        materials=None if obj.materials is None else obj.materials[owner],
        material_names=obj.material_names, texture=_mtl_texture(path, obj.mtllib))


def _read_points(path: Path) -> MeshData:
    """x y z per line (spaces, tabs or commas; more columns such as normals, intensity or colour are ignored);
    lines with fewer than three numbers (a point count, a header) are skipped."""
    rows = []
    with open(path, errors="replace") as fh:
        for number, line in enumerate(fh, 1):
            parts = line.replace(",", " ").split()
            if len(parts) < 3 or parts[0].startswith(("#", "//")):
                continue
            try:
                rows.append([float(v) for v in parts[:3]])
            except ValueError:
                if rows:  # text after the data started: a corrupt file, not a header
                    raise MeshError(f"{path}:{number}: expected 'x y z', got {line.strip()[:60]!r}") from None
    return MeshData(verts=np.asarray(rows, np.float32).reshape(-1, 3), faces=np.zeros((0, 3), np.int64))


def _mtl_texture(obj_path: Path, mtllib: str | None) -> Path | None:
    if not mtllib:
        return None
    mtl = obj_path.parent / mtllib
    if not mtl.is_file():
        return None
    for line in mtl.read_text(errors="replace").splitlines():
        parts = line.strip().split()
        if len(parts) >= 2 and parts[0] == "map_Kd":
            tex = obj_path.parent / parts[-1]
            return tex if tex.is_file() else None
    return None


def _is_topos_gltf(path: Path) -> bool:
    """A glTF written by `topos export` (asset.generator "topos" with `asset.extras.topos`)."""
    head = path.read_bytes()[:4096]
    return b'"generator":"topos"' in head and b'"topos":{' in head


def _read_topos_gltf(path: Path) -> MeshData:
    """LOD0's skin welded into template order, in template units (the eye/mouth parts and LODs are left out)."""
    from topos_cli.io.gltf import read_gltf_head

    head = read_gltf_head(path)
    return MeshData(verts=head.verts, faces=head.faces)


def _read_trimesh(path: Path) -> MeshData:
    import trimesh

    loaded = trimesh.load(path, process=False, maintain_order=True)
    if isinstance(loaded, trimesh.Scene):
        if not loaded.geometry:
            raise MeshError(f"{path} contains no geometry")
        loaded = loaded.to_geometry() if hasattr(loaded, "to_geometry") else loaded.dump(concatenate=True)
    if isinstance(loaded, trimesh.PointCloud):
        return MeshData(verts=np.asarray(loaded.vertices, np.float32), faces=np.zeros((0, 3), np.int64))
    if path.suffix.lower() == ".stl":  # STL stores every triangle's corners separately: weld them
        loaded.merge_vertices()
    verts = np.asarray(loaded.vertices, dtype=np.float32)
    faces = np.asarray(loaded.faces, dtype=np.int64).reshape(-1, 3)
    uv = getattr(loaded.visual, "uv", None)
    uv = None if uv is None or len(uv) != len(verts) else np.asarray(uv, np.float32)
    cached = loaded._cache.cache.get("vertex_normals") if hasattr(loaded, "_cache") else None
    normals = np.asarray(cached, np.float32) if cached is not None and len(cached) == len(verts) else None
    uv_faces = None if uv is None else faces.copy()
    source = (getattr(loaded, "vertex_attributes", None) or {}).get(GLB_VERTEX_ID)
    if source is not None and len(source) == len(verts):  # copies split at uv seams by _write_glb: weld them
        ids = np.rint(np.asarray(source, np.float64).reshape(-1)).astype(np.int64)
        if ids.min() >= 0 and np.bincount(ids).min() > 0:
            welded = np.zeros((ids.max() + 1, 3), np.float32)
            welded[ids] = verts
            verts, faces, normals = welded, ids[faces], None
    return MeshData(verts=verts, faces=faces, uv=uv, uv_faces=uv_faces, normals=normals)


def save_mesh(path: str | Path, mesh: MeshData, texture: np.ndarray | str | Path | None = None) -> Path:
    """Write a mesh atomically; the format follows the suffix (.obj + .mtl + texture, binary .ply, .glb).

    Args:
        path: output file.
        mesh: the mesh; polygons are written where the format keeps them (OBJ, PLY).
        texture: optional albedo image (H, W, 3|4) uint8 array or image path (OBJ writes `<stem>.png` + MTL).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITE_SUFFIXES:
        raise MeshError(f"cannot write '{suffix}' files; use one of {', '.join(WRITE_SUFFIXES)}")
    validate_mesh(mesh, str(path), allow_points=True)
    mesh = replace(mesh, normals=_write_normals(mesh))
    with atomic_path(path) as tmp:
        if suffix == ".obj":
            _write_obj(tmp, path, mesh, texture)
        elif suffix == ".ply":
            tmp.write_bytes(format_ply(mesh))
        else:
            _write_glb(tmp, mesh, texture)
    return path


def _write_normals(mesh: MeshData) -> np.ndarray | None:
    """Per-vertex normals to write: the mesh's own when they match its vertices, else smooth area-weighted
    normals of the welded (template-order) mesh, so a UV seam shows no crease; None for point clouds."""
    if len(mesh.faces) == 0:
        return None
    if mesh.normals is not None and len(mesh.normals) == len(mesh.verts):
        return np.asarray(mesh.normals, np.float32)
    from topos_cli.geometry.asset import smooth_normals

    return smooth_normals(mesh.verts, mesh.faces)


def _write_obj(tmp: Path, final: Path, mesh: MeshData, texture) -> None:
    polys = mesh.polys if mesh.polys is not None else mesh.faces
    uv_polys = None
    if mesh.uv is not None and mesh.uv_faces is not None:
        uv_polys = mesh.uv_faces if mesh.polys is None else _poly_uv(mesh)
    mtllib = None
    if texture is not None:
        mtllib = final.stem + ".mtl"
        tex_name = final.stem + ".png"
        _write_texture(final.parent / tex_name, texture)
        mtl = f"newmtl material0\nKd 1 1 1\nKa 0 0 0\nKs 0 0 0\nmap_Kd {tex_name}\n"
        with atomic_path(final.parent / mtllib) as mtmp:
            mtmp.write_text(mtl)
    obj = ObjData(verts=mesh.verts, polys=polys, uv=mesh.uv if uv_polys is not None else None, uv_polys=uv_polys,
                  normals=mesh.normals, mtllib=mtllib,
                  materials=np.zeros(len(polys), np.int64) if mtllib else None,
                  material_names=["material0"] if mtllib else [])
    tmp.write_text(format_obj(obj))


def _poly_uv(mesh: MeshData) -> np.ndarray | None:
    """Per-polygon uv indices rebuilt from the fan triangulation (triangle k of a polygon is (0, k+1, k+2))."""
    polys = mesh.polys
    out = np.full(polys.shape, -1, dtype=np.int64)
    _, owner = triangulate_polys(polys)
    first = np.ones(len(owner), dtype=bool)
    first[1:] = owner[1:] != owner[:-1]
    out[owner[first], 0] = mesh.uv_faces[first, 0]
    out[owner[first], 1] = mesh.uv_faces[first, 1]
    corner = np.zeros(len(owner), dtype=np.int64)
    for i in range(1, len(owner)):  # which fan triangle of its polygon each triangle is
        corner[i] = 0 if first[i] else corner[i - 1] + 1
    out[owner, corner + 2] = mesh.uv_faces[:, 2]
    return out


def format_ply(mesh: MeshData) -> bytes:
    """Binary little-endian PLY: float32 x y z [nx ny nz], triangles as uchar 3 + int32 indices.

    Triangles always (the template's own triangulation): common PLY readers, trimesh's included, re-split
    quads their own way, which would change the connectivity on the way back in.
    """
    verts = np.asarray(mesh.verts, dtype="<f4")
    props = ["x", "y", "z"]
    columns = [verts]
    if mesh.normals is not None and len(mesh.normals) == len(verts):
        props += ["nx", "ny", "nz"]
        columns.append(np.asarray(mesh.normals, "<f4"))
    vertex_block = np.ascontiguousarray(np.hstack(columns).astype("<f4")).tobytes()
    faces = mesh.faces
    header = ["ply", "format binary_little_endian 1.0", "comment written by topos",
              f"element vertex {len(verts)}", *[f"property float {p}" for p in props],
              f"element face {len(faces)}", "property list uchar int vertex_indices", "end_header"]
    chunks = [("\n".join(header) + "\n").encode("ascii"), vertex_block]
    rec = np.empty(len(faces), dtype=[("n", "u1"), ("idx", "<i4", (3,))])
    rec["n"] = 3
    rec["idx"] = faces
    chunks.append(rec.tobytes())
    return b"".join(chunks)


def _write_texture(path: Path, texture) -> None:
    if isinstance(texture, (str, Path)):
        with atomic_path(path) as tmp:
            shutil.copyfile(texture, tmp)
        return
    import imageio.v3 as iio

    with atomic_path(path) as tmp:
        iio.imwrite(tmp, np.asarray(texture, dtype=np.uint8), extension=".png")


def _write_glb(tmp: Path, mesh: MeshData, texture) -> None:
    import trimesh

    verts, faces, uv = mesh.verts, mesh.faces, None
    if mesh.uv is not None and mesh.uv_faces is not None:
        if np.array_equal(mesh.uv_faces, mesh.faces):
            uv = mesh.uv
        else:  # glTF has one uv per vertex: split vertices at uv seams (order of the first copies kept)
            pairs = np.stack([mesh.faces.ravel(), mesh.uv_faces.ravel()], 1)
            uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
            verts, uv, faces = mesh.verts[uniq[:, 0]], mesh.uv[uniq[:, 1]], inv.reshape(-1, 3)
            source = uniq[:, 0]
    normals = None if mesh.normals is None else np.asarray(mesh.normals, np.float32)[
        source if len(verts) != len(mesh.verts) else slice(None)]  # seam copies share the welded normal
    tm = trimesh.Trimesh(vertices=verts, faces=faces, vertex_normals=normals, process=False)
    if len(verts) != len(mesh.verts):  # each copy names its vertex: readers (topos too) can weld them back
        tm.vertex_attributes[GLB_VERTEX_ID] = source.astype(np.float32)  # exact up to 2^24 vertices
    if uv is not None:
        image = None
        if texture is not None:
            from PIL import Image

            image = Image.open(texture) if isinstance(texture, (str, Path)) else Image.fromarray(np.asarray(texture, np.uint8))
        material = trimesh.visual.material.PBRMaterial(baseColorTexture=image) if image is not None else None
        tm.visual = trimesh.visual.TextureVisuals(uv=uv, image=image, material=material)
    tmp.write_bytes(tm.export(file_type="glb"))


def list_meshes(folder: str | Path) -> list[Path]:
    """Mesh files directly in `folder` (sorted by name)."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in MESH_SUFFIXES)


def template_mesh(template: Template, verts: np.ndarray | None = None) -> MeshData:
    """Shortcut for MeshData.from_template."""
    return MeshData.from_template(template, verts)



def transform_gltf_scene(src: str | Path, dst: str | Path, matrix: np.ndarray) -> Path:
    """Copy a .glb/.gltf file with a 4x4 transform on its scene root (used by `topos align`).

    Every scene's root nodes are parented under one new node carrying ``matrix``; meshes, materials,
    skins, animations and the node hierarchy are kept verbatim (pygltflib, no re-export through trimesh).

    Args:
        src: input .glb or .gltf.
        dst: output path; .glb writes binary glTF, .gltf JSON glTF (buffers as in the input).
        matrix: (4, 4) column-vector transform (x' = M @ [x, 1]).
    """
    try:
        from pygltflib import GLTF2, Node
    except ImportError:
        raise MeshError("moving a glTF scene root needs pygltflib: pip install pygltflib "
                        "(or write another format, e.g. -o aligned.ply)") from None

    src, dst = Path(src), Path(dst)
    try:
        gltf = GLTF2().load(str(src))
    except Exception as exc:  # any parser failure on user data is a bad file
        raise MeshError(f"{src}: cannot read glTF ({type(exc).__name__}: {exc})") from None
    flat = [float(v) for v in np.asarray(matrix, dtype=np.float64).T.ravel()]  # glTF stores column-major
    if not gltf.scenes:
        raise MeshError(f"{src} has no scene to transform")
    for scene in gltf.scenes:
        gltf.nodes.append(Node(name="topos_align", matrix=flat, children=list(scene.nodes or [])))
        scene.nodes = [len(gltf.nodes) - 1]
    with atomic_path(dst) as tmp:
        if dst.suffix.lower() == ".glb":
            gltf.save_binary(str(tmp))
        else:
            gltf.save_json(str(tmp))
    return dst



def transform_obj_file(src: str | Path, dst: str | Path, matrix: np.ndarray) -> Path:
    """Copy an OBJ with a similarity applied to its `v` (positions) and `vn` (normals) lines only.

    Every other line (faces, `vt`, groups, `usemtl`, `mtllib`, comments) is kept byte for byte, so
    connectivity, UVs, materials and vertex order cannot change. A referenced .mtl and its relative texture
    maps are copied next to ``dst`` when it lies in another folder. Used by `topos align`.

    Args:
        src: input .obj.
        dst: output .obj.
        matrix: (4, 4) similarity (x' = M @ [x, 1]); normals are rotated by its rotation part.
    """
    src, dst = Path(src), Path(dst)
    m = np.asarray(matrix, dtype=np.float64)
    lin = m[:3, :3]
    rot = lin / np.cbrt(np.linalg.det(lin))
    out_lines, mtllibs = [], []
    for line in src.read_text(errors="replace").splitlines():
        parts = line.split()
        if parts and parts[0] in ("v", "vn") and len(parts) >= 4:
            try:
                xyz = np.array([float(p) for p in parts[1:4]])
            except ValueError:
                raise MeshError(f"{src}: bad '{parts[0]}' line: {line[:60]}") from None
            if parts[0] == "v":
                new = lin @ xyz + m[:3, 3]
            else:
                new = rot @ xyz
                new /= max(float(np.linalg.norm(new)), 1e-20)
            line = " ".join([parts[0], *(f"{c:.9g}" for c in new), *parts[4:]])
        elif parts and parts[0] == "mtllib":
            mtllibs.append(line.split(None, 1)[1].strip())
        out_lines.append(line)
    with atomic_path(dst) as tmp:
        tmp.write_text("\n".join(out_lines) + "\n")
    if dst.parent.resolve() != src.parent.resolve():
        for name in mtllibs:
            _copy_relative(src.parent, dst.parent, name)
            mtl = src.parent / name
            if mtl.is_file():
                for mline in mtl.read_text(errors="replace").splitlines():
                    mparts = mline.split()
                    if mparts and mparts[0].startswith("map_"):
                        _copy_relative(src.parent, dst.parent, mparts[-1])
    return dst


def _copy_relative(src_dir: Path, dst_dir: Path, name: str) -> None:
    """Copy src_dir/name to dst_dir/name for a relative name that exists (absolute names need no copy)."""
    if Path(name).is_absolute() or not (src_dir / name).is_file() or (dst_dir / name).exists():
        return
    with atomic_path(dst_dir / name) as tmp:
        shutil.copyfile(src_dir / name, tmp)


__all__ = ["MeshData", "load_mesh", "save_mesh", "validate_mesh", "check_template_topology", "list_meshes",
           "template_mesh", "format_ply", "MESH_SUFFIXES", "TemplateMismatch", "transform_gltf_scene",
           "transform_obj_file"]
