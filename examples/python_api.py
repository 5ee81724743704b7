"""The Python API a notebook uses: every command is one function in topos_cli.api.

    python examples/python_api.py /tmp/topos-example
"""

import sys
from pathlib import Path

import numpy as np

from topos_cli import api
from topos_cli.geometry.augment import apply_weights
from topos_cli.io.mesh import MeshData, load_mesh, save_mesh
from topos_cli.template import load_template

out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/topos-example")
tpl = load_template()  # the bundled topos-head; cached and frozen
print(tpl.name, tpl.num_verts, "vertices", sorted(tpl.regions))

# a random person with a smile, written as OBJ with the template's UVs
rng = np.random.default_rng(0)
verts = apply_weights(tpl, identity=rng.normal(size=100), expression={"mouthSmile_L": 0.8, "mouthSmile_R": 0.8})
save_mesh(out / "smile.obj", MeshData.from_template(tpl, verts))

# a small augmented dataset, then read one item back
result = api.augment(None, out / "aug", copies=4, identity_sigma=1.0, expressions=2, seed=0)
first = load_mesh(result.records[0]["mesh"])
assert np.array_equal(first.faces, tpl.faces)
print("wrote", len(result.records), "heads to", result.out)
