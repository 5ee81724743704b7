import json

import numpy as np
import pytest

from topos_cli.errors import UsageError
from topos_cli.template import Template, boundary_loops, load_template, triangulate_polys


def test_triangulate_polys_fans_in_polygon_order():
    tris, owner = triangulate_polys(np.array([[0, 1, 2, 3, 4], [5, 6, 7, -1, -1]]))
    assert tris.tolist() == [[0, 1, 2], [0, 2, 3], [0, 3, 4], [5, 6, 7]]
    assert owner.tolist() == [0, 0, 0, 1]


def test_hash_covers_connectivity_only(tiny_template):
    moved = Template(name="x", verts=tiny_template.verts * 2, faces=tiny_template.faces)
    assert moved.hash == tiny_template.hash
    other = tiny_template.faces.copy()
    other[[0, 1]] = other[[1, 0]]
    assert Template(name="y", verts=tiny_template.verts, faces=other).hash != tiny_template.hash


def test_loader_reads_folder_and_caches(tiny_template_dir, tiny_template):
    again = load_template(tiny_template_dir)
    assert again is tiny_template
    assert tiny_template.num_verts == 162 and tiny_template.num_faces == 320
    assert len(tiny_template.edges) == 480  # Euler: V - E + F = 2 on a sphere
    assert sorted(tiny_template.regions) == ["bottom_left", "bottom_right", "top_left", "top_right"]
    assert sum(len(v) for v in tiny_template.regions.values()) == 162
    assert tiny_template.basis("identity").shape == (10, 162, 3)
    assert tiny_template.basis("identity").dtype == np.float32
    # symmetry map is an involution on a mirror-symmetric sphere
    assert np.array_equal(tiny_template.symmetry[tiny_template.symmetry], np.arange(162))


def test_boundary_loops_of_open_strip():
    # two triangles sharing an edge: one boundary loop of 4 vertices
    loops = boundary_loops(np.array([[0, 1, 2], [0, 2, 3]]))
    assert len(loops) == 1 and sorted(loops[0].tolist()) == [0, 1, 2, 3]


def test_bad_template_names_and_folders(tmp_path):
    with pytest.raises(UsageError, match="no template"):
        load_template("does-not-exist")
    (tmp_path / "t").mkdir()
    with pytest.raises(UsageError, match="template.json is missing"):
        load_template(tmp_path / "t")
    (tmp_path / "t" / "template.json").write_text("{bad json")
    with pytest.raises(UsageError, match="not valid JSON"):
        load_template(tmp_path / "t")


def test_out_of_range_region_is_rejected(tmp_path, tiny_template_dir):
    import shutil

    dst = tmp_path / "broken"
    shutil.copytree(tiny_template_dir, dst)
    meta = json.loads((dst / "template.json").read_text())
    meta["regions"]["top_left"].append(10_000)
    (dst / "template.json").write_text(json.dumps(meta))
    with pytest.raises(UsageError, match="out of range"):
        load_template(dst)


def test_uv_quality_counts_flips_and_charts():
    from topos_cli.geometry.mesh_ops import uv_quality

    uv = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [0.2, 0.2], [0.4, 0.2], [0.2, 0.4]], float)
    faces = np.array([[0, 1, 2], [1, 3, 2], [4, 6, 5]])  # last one is clockwise: flipped, own chart
    q = uv_quality(uv, faces)
    assert q["uv_flipped"] == 1 and q["uv_charts"] == 2 and q["uv_in_unit_square"]
