"""Run augment, render (dataset mode, with and without random textures) and textures with two checkouts on the
same inputs and compare their outputs: bytes of every file, mesh vertices, manifests (paths resolved).

    git worktree add /tmp/before <commit>
    python scripts/check_batch_behaviour.py /tmp/before . --work /tmp/batch-check

Render inputs are the meshes the first checkout's augment wrote, so a render difference is the renderer's.
Only the comparison is rerun with `--compare-only` (the outputs in --work are kept).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

STEPS = [
    ["augment", "-o", "aug", "--copies", "40", "--seed", "0", "--identity-sigma", "1", "--expressions", "3",
     "--include-base"],
    ["augment", "aug", "-o", "aug2", "--copies", "2", "--seed", "5"],
    ["render", "{aug}", "-o", "rend", "--per-mesh", "2", "--random-lighting", "--seed", "1", "--size", "64",
     "--passes", "color,normal,depth"],
    ["render", "{aug}", "-o", "rendtex", "--per-mesh", "1", "--random-lighting", "--random-textures", "--seed", "1",
     "--size", "64", "--texture-size", "64", "--texture-pool", "8"],
    ["textures", "-o", "tex", "--count", "3", "--size", "64", "--seed", "2"],
]


def run(code: Path, out: Path, aug: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(code.resolve())}
    for step in STEPS:
        argv = [a.replace("{aug}", str(aug)) for a in step]
        subprocess.run([sys.executable, "-m", "topos_cli", *argv], cwd=out, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _resolved(record: dict, root: Path):
    """The record with its paths absolute, the dataset's own folder written as OWN."""
    def fix(value):
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        if isinstance(value, str) and ("/" in value or value.endswith((".ply", ".png"))):
            path = Path(value) if Path(value).is_absolute() else root / value
            return str(path.resolve()).replace(str(root.resolve()), "OWN")
        return value
    return fix(record)


def compare(a: Path, b: Path, name: str) -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from topos_cli.io.mesh import load_mesh

    def files(root):
        return {p.relative_to(root) for p in root.rglob("*") if p.is_file()
                and not p.name.startswith(("manifest", "meta", "failures", "."))}

    common = files(a / name) & files(b / name)
    same = sum((a / name / f).read_bytes() == (b / name / f).read_bytes() for f in common)
    line = f"{name}: {len(files(a / name))} vs {len(files(b / name))} files, byte-identical {same}/{len(common)}"
    plys = [f for f in common if f.suffix == ".ply"]
    if plys:
        rel = []
        for f in plys:
            va, vb = load_mesh(a / name / f).verts, load_mesh(b / name / f).verts
            rel.append(np.abs(va - vb).max() / np.linalg.norm(va.max(0) - va.min(0)))
        line += f", max vertex difference {max(rel):.2e} x bbox diagonal"
    ra, rb = ([json.loads(x) for x in (r / name / "manifest.jsonl").read_text().splitlines()] for r in (a, b))
    na, nb = [_resolved(r, a / name) for r in ra], [_resolved(r, b / name) for r in rb]
    text = (a / name / "manifest.jsonl").read_text() == (b / name / "manifest.jsonl").read_text()
    line += f"; manifest {len(ra)} vs {len(rb)} records, text-identical {text}, equal with paths resolved {na == nb}"
    if na != nb:
        keys = {k for x, y in zip(na, nb, strict=False) for k in {*x, *y} if x.get(k) != y.get(k)}
        line += f" (keys differing: {sorted(keys)})"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before", type=Path, help="checkout (worktree) of the code before the change")
    parser.add_argument("after", type=Path, help="checkout of the code after the change")
    parser.add_argument("--work", type=Path, default=Path("batch-check"), help="output folder")
    parser.add_argument("--compare-only", action="store_true", help="compare the outputs already in --work")
    args = parser.parse_args()
    if not args.compare_only:
        run(args.before, args.work / "before", (args.work / "before" / "aug").resolve())
        run(args.after, args.work / "after", (args.work / "before" / "aug").resolve())
    for name in ("aug", "aug2", "rend", "rendtex", "tex"):
        print(compare(args.work / "before", args.work / "after", name))


if __name__ == "__main__":
    main()
