import json
import subprocess
import sys
import time

import numpy as np
from typer.testing import CliRunner

from topos_cli.cli.main import app
from topos_cli.io.mesh import load_mesh

runner = CliRunner()


def test_info_json(tiny_template_dir, tiny_template):
    res = runner.invoke(app, ["template", "info", str(tiny_template_dir), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["num_verts"] == 162 and info["hash"] == tiny_template.hash
    assert info["boundary_loops"] == [] and info["components"] == 1 and info["edge_manifold"]


def test_export_with_weights(tmp_path, tiny_template_dir, tiny_template):
    res = runner.invoke(app, ["template", "export", str(tiny_template_dir), "-o", str(tmp_path / "h.obj"),
                              "--identity", "0,2", "--expression", "jawOpen=0.5"])
    assert res.exit_code == 0, res.output
    mesh = load_mesh(tmp_path / "h.obj")
    expected = (tiny_template.verts + 2 * tiny_template.basis("identity")[1]
                + 0.5 * tiny_template.basis("expression")[0])
    np.testing.assert_allclose(mesh.verts, expected, atol=1e-5)
    assert mesh.uv is not None


def test_import_round_trip(tmp_path, tiny_template):
    from topos_cli.io.mesh import MeshData, save_mesh

    save_mesh(tmp_path / "studio.obj", MeshData.from_template(tiny_template))
    (tmp_path / "regions.json").write_text(json.dumps({"left": tiny_template.region("top_left").tolist()}))
    res = runner.invoke(app, ["template", "import", str(tmp_path / "studio.obj"), "-o", str(tmp_path / "studio"),
                              "--regions", str(tmp_path / "regions.json"), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["hash"] == tiny_template.hash and info["regions"] == {"left": 40} and info["symmetry"]
    again = runner.invoke(app, ["template", "import", str(tmp_path / "studio.obj"), "-o", str(tmp_path / "studio")])
    assert again.exit_code == 2 and "--force" in again.output


def test_help_is_fast_and_does_not_import_torch():
    code = ("import sys, time; t=time.time(); from topos_cli.cli.main import app; "
            "print(time.time()-t, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[1] == "False"
    start = time.time()
    subprocess.run([sys.executable, "-m", "topos_cli", "--help"], capture_output=True, check=True)
    assert time.time() - start < 3.0  # generous for a loaded 2-core CI box; typical ~0.3 s
