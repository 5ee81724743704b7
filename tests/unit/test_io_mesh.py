import numpy as np
import pytest
import trimesh

from topos_cli.errors import MeshError, TemplateMismatch
from topos_cli.io.mesh import MeshData, check_template_topology, load_mesh, save_mesh
from topos_cli.template import triangulate_polys


@pytest.fixture
def sphere():
    m = trimesh.creation.icosphere(2, radius=7.3)
    rng = np.random.default_rng(0)
    verts = (m.vertices + rng.normal(scale=1e-3, size=m.vertices.shape)).astype(np.float32)
    faces = m.faces.astype(np.int64)
    return MeshData(verts=verts, faces=faces, uv=rng.random((len(verts), 2)).astype(np.float32), uv_faces=faces.copy())


@pytest.mark.parametrize("suffix", [".obj", ".ply", ".glb"])
def test_round_trip_is_bit_exact_in_vertex_order(tmp_path, sphere, suffix):
    back = load_mesh(save_mesh(tmp_path / f"m{suffix}", sphere))
    assert back.verts.dtype == np.float32
    assert np.array_equal(back.verts, sphere.verts)
    assert np.array_equal(back.faces, sphere.faces)
    if suffix != ".ply":
        assert np.allclose(back.uv[back.uv_faces], sphere.uv[sphere.uv_faces])


def test_obj_keeps_quads_uv_seams_and_materials(tmp_path):
    polys = np.array([[0, 1, 2, 3], [1, 4, 5, 2], [2, 5, 6, -1]])
    verts = np.random.default_rng(1).random((7, 3)).astype(np.float32)
    faces, _ = triangulate_polys(polys)
    uv = np.random.default_rng(2).random((9, 2)).astype(np.float32)
    uv_polys = np.array([[0, 1, 2, 3], [4, 5, 6, 7], [7, 6, 8, -1]])  # seam: vertex 1 and 2 have 2 uvs
    uv_faces, _ = triangulate_polys(uv_polys)
    mesh = MeshData(verts=verts, faces=faces, polys=polys, uv=uv, uv_faces=uv_faces)
    back = load_mesh(save_mesh(tmp_path / "q.obj", mesh, texture=np.zeros((4, 4, 3), np.uint8)))
    assert np.array_equal(back.polys, polys)
    assert np.array_equal(back.faces, faces)
    assert np.array_equal(back.uv_faces, uv_faces)
    assert back.texture is not None and back.texture.name == "q.png"
    assert (tmp_path / "q.mtl").is_file()


def test_glb_splits_uv_seams_and_welds_them_back_in_vertex_order(tmp_path):
    verts = np.random.default_rng(1).random((7, 3)).astype(np.float32)
    faces, _ = triangulate_polys(np.array([[0, 1, 2, 3], [1, 4, 5, 2], [2, 5, 6, -1]]))
    uv = np.random.default_rng(2).random((9, 2)).astype(np.float32)
    uv_faces, _ = triangulate_polys(np.array([[0, 1, 2, 3], [4, 5, 6, 7], [7, 6, 8, -1]]))  # vertices 1, 2: 2 uvs
    path = save_mesh(tmp_path / "seam.glb", MeshData(verts=verts, faces=faces, uv=uv, uv_faces=uv_faces))
    raw = next(iter(trimesh.load(path, process=False).geometry.values()))
    assert len(raw.vertices) == 9  # glTF: one uv per vertex, so the seam's two vertices are split
    back = load_mesh(path)
    assert np.array_equal(back.verts, verts) and np.array_equal(back.faces, faces)
    np.testing.assert_allclose(back.uv[back.uv_faces], uv[uv_faces], atol=1e-6)  # glTF flips v: 1 - (1 - v)


def test_atomic_write_leaves_no_partial_file(tmp_path, sphere, monkeypatch):
    import topos_cli.io.mesh as mesh_io

    def boom(_mesh):
        raise RuntimeError("disk full")

    monkeypatch.setattr(mesh_io, "format_ply", boom)
    with pytest.raises(RuntimeError):
        save_mesh(tmp_path / "out.ply", sphere)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content, message", [
    ("", "empty"),
    ("v 0 0 nan\nv 1 0 0\nv 0 1 0\nf 1 2 3\n", "NaN"),
    ("v 0 0 0\nv 1 0 0\nf 1 2 9\n", "outside"),
    ("v 0 0 0\nv 1 0 0\nv 0 1 0\n", "no faces"),
    ("# nothing\n", "no vertices"),
])
def test_bad_obj_gives_one_line_mesh_error(tmp_path, content, message):
    path = tmp_path / "bad.obj"
    path.write_text(content)
    with pytest.raises(MeshError, match=message) as info:
        load_mesh(path)
    assert "\n" not in str(info.value)


def test_missing_unsupported_and_corrupt_files(tmp_path):
    with pytest.raises(MeshError, match="no such file"):
        load_mesh(tmp_path / "nope.obj")
    (tmp_path / "x.pcd").write_text("1 2 3")
    with pytest.raises(MeshError, match="unsupported"):
        load_mesh(tmp_path / "x.pcd")
    (tmp_path / "c.ply").write_text("garbage")
    with pytest.raises(MeshError, match="cannot read PLY"):
        load_mesh(tmp_path / "c.ply")


def test_ascii_point_clouds(tmp_path):
    """.xyz / .pts: a count line skipped, extra columns ignored, commas allowed; garbage after data is an error."""
    (tmp_path / "a.pts").write_text("3\n1 2 3 0.5 255 0 0\n4,5,6,0.1,0,0,0\n-1e1 0 2.5 1 1 1 1\n")
    cloud = load_mesh(tmp_path / "a.pts", allow_points=True)
    np.testing.assert_allclose(cloud.verts, [[1, 2, 3], [4, 5, 6], [-10, 0, 2.5]])
    assert cloud.faces.shape == (0, 3)
    with pytest.raises(MeshError, match="no faces"):
        load_mesh(tmp_path / "a.pts")
    (tmp_path / "b.xyz").write_text("# x y z\n1 2 3\n1 2 oops\n")
    with pytest.raises(MeshError, match=r"b.xyz:3: expected"):
        load_mesh(tmp_path / "b.xyz", allow_points=True)
    (tmp_path / "c.xyz").write_text("just words here\n")
    with pytest.raises(MeshError, match="no vertices"):
        load_mesh(tmp_path / "c.xyz", allow_points=True)


def test_stl_is_welded(tmp_path):
    m = trimesh.creation.icosphere(1)
    m.export(tmp_path / "s.stl")
    back = load_mesh(tmp_path / "s.stl")
    assert len(back.verts) == len(m.vertices)


def test_template_topology_check(tiny_template):
    good = MeshData.from_template(tiny_template)
    check_template_topology(good, tiny_template)
    with pytest.raises(TemplateMismatch, match="vertices"):
        check_template_topology(MeshData(good.verts[:-1], good.faces[:10]), tiny_template)
    flipped = good.faces.copy()
    flipped[0] = flipped[0, ::-1]
    with pytest.raises(TemplateMismatch, match="connectivity"):
        check_template_topology(MeshData(good.verts, flipped), tiny_template)


def test_exports_carry_smooth_seam_welded_normals(tmp_path):
    """OBJ `vn` (referenced by every face corner), GLB NORMAL, PLY nx ny nz: one normal per template vertex,
    computed on the welded mesh, so the copies a GLB splits at UV seams share it (no crease)."""
    import json
    import struct

    from topos_cli.geometry.asset import smooth_normals
    from topos_cli.io.obj import read_obj
    from topos_cli.template import load_template

    t = load_template()  # the default head: its UVs are cut at seams
    mesh = MeshData.from_template(t)
    expected = smooth_normals(t.verts, t.faces)
    save_mesh(tmp_path / "h.obj", mesh)
    obj_text = (tmp_path / "h.obj").read_text()
    assert obj_text.count("\nvn ") == t.num_verts
    corner = next(line for line in obj_text.splitlines() if line.startswith("f ")).split()[1]
    assert corner.split("/")[0] == corner.split("/")[2]  # v/vt/vn with vn = v
    np.testing.assert_allclose(read_obj(tmp_path / "h.obj").normals, expected, atol=1e-6)
    assert load_mesh(save_mesh(tmp_path / "h.ply", mesh)).normals is not None
    np.testing.assert_allclose(load_mesh(tmp_path / "h.ply").normals, expected, atol=1e-6)
    data = save_mesh(tmp_path / "h.glb", mesh).read_bytes()
    header = json.loads(data[20:20 + struct.unpack("<I", data[12:16])[0]])
    assert "NORMAL" in header["meshes"][0]["primitives"][0]["attributes"]
    raw = next(iter(trimesh.load(tmp_path / "h.glb", process=False).geometry.values()))
    split = np.rint(np.asarray(raw.vertex_attributes["_VERTEX_ID"])).astype(np.int64).ravel()
    assert len(split) > t.num_verts  # seam vertices were split
    np.testing.assert_allclose(np.asarray(raw._cache.cache["vertex_normals"]), expected[split], atol=1e-5)
    back = load_mesh(tmp_path / "h.glb")  # still welds back into template order
    np.testing.assert_array_equal(back.faces, t.faces)
