"""Run the Khronos glTF-Validator (npm `gltf-validator`) on a file through node, for tests and benchmarks.

Install it once into the ignored `.node/` folder: `npm install --prefix .node gltf-validator`
(install.sh does this when npm is available). `$TOPOS_GLTF_VALIDATOR` may point at another
`node_modules/gltf-validator` folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = r"""
const fs = require('fs'), path = require('path');
const validator = require(process.argv[1]);
const file = process.argv[2];
validator.validateBytes(new Uint8Array(fs.readFileSync(file)), {
  uri: path.basename(file), maxIssues: 200,
  externalResourceFunction: (uri) => new Promise((ok, fail) =>
    fs.readFile(path.resolve(path.dirname(file), decodeURIComponent(uri)), (e, d) => e ? fail(e.toString()) : ok(new Uint8Array(d)))),
}).then((r) => { console.log(JSON.stringify(r)); }).catch((e) => { console.error(String(e)); process.exit(1); });
"""


def validator_path() -> Path | None:
    """The gltf-validator package folder, or None when node or the package is missing."""
    env = os.environ.get("TOPOS_GLTF_VALIDATOR")
    pkg = Path(env) if env else REPO / ".node" / "node_modules" / "gltf-validator"
    return pkg if shutil.which("node") and (pkg / "package.json").is_file() else None


def unavailable_reason() -> str:
    if not shutil.which("node"):
        return "node is not installed (the Khronos glTF-Validator runs on node)"
    return "gltf-validator npm package missing: npm install --prefix .node gltf-validator"


def validate(path: str | Path) -> dict:
    """The validator's report: {"issues": {"numErrors", "numWarnings", "messages": [...]}, ...}."""
    pkg = validator_path()
    if pkg is None:
        raise RuntimeError(unavailable_reason())
    out = subprocess.run(["node", "-e", SCRIPT, str(pkg), str(Path(path).resolve())], capture_output=True,
                         text=True, timeout=300, check=True)
    return json.loads(out.stdout)


def problems(report: dict) -> list[str]:
    """Errors and warnings (severity 0 and 1) as 'CODE pointer: message' lines."""
    return [f"{m['code']} {m.get('pointer', '')}: {m['message']}" for m in report["issues"]["messages"]
            if m["severity"] <= 1]
