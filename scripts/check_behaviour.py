"""Behaviour check for refactors: run `retopo`, `align` and `metrics --icp` on fixed inputs, compare two runs.

    # outputs of one checkout (the checkout on PYTHONPATH is the one measured)
    PYTHONPATH=/tmp/base python scripts/check_behaviour.py run /tmp/behaviour-base
    python scripts/check_behaviour.py run /tmp/behaviour-new
    python scripts/check_behaviour.py compare /tmp/behaviour-base /tmp/behaviour-new [--tol 1e-6]

Inputs are made here from the installed template with fixed numpy seeds (no files to ship): the template head in
random poses and units, a head with random identity weights, and a cropped face shell with half its faces dropped.
`compare` reports, per output mesh, the largest vertex difference as a fraction of the reference mesh's
bounding-box diagonal, and whether the manifests / reports / metrics are equal (paths and timings left out, numbers
equal to a relative 1e-9 besides exactly). Exit status 1 when a mesh differs by more than `--tol` or a record differs.
Takes a few minutes on two cores.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

VOLATILE = {"seconds", "argv", "time", "git", "created", "started", "finished", "elapsed", "hostname", "version",
            "topos_version"}
PATH_KEYS = {"mesh", "pred", "gt", "scan", "out", "input"}
NUM_RTOL = 1e-9


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.standard_normal(4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def posed(verts: np.ndarray, seed: int, unit: float) -> np.ndarray:
    """The vertices in a random pose (uniform rotation, a shift) in `unit` scan units per cm."""
    rng = np.random.default_rng(seed)
    return (unit * verts @ random_rotation(rng).T + rng.uniform(-20, 20, 3) * unit).astype(np.float32)


def write_ply(path: Path, verts: np.ndarray, faces: np.ndarray) -> None:
    import trimesh

    path.parent.mkdir(parents=True, exist_ok=True)
    trimesh.Trimesh(verts, faces, process=False).export(path)


def make_inputs(folder: Path) -> dict:
    """scans/ (retopo inputs) and pred/ + gt/ (align and metrics pairs, paired by stem)."""
    from topos_cli.template import load_template

    tpl = load_template(None)
    verts, faces = tpl.verts.astype(np.float64), tpl.faces
    rng = np.random.default_rng(123)
    ident = tpl.bases["identity"].astype(np.float64)
    other = verts + np.einsum("k,kvc->vc", rng.standard_normal(len(ident)), ident)
    front = faces[(verts[faces][:, :, 2] > -1.0).all(1)]
    shell = front[np.random.default_rng(5).random(len(front)) < 0.5]  # cropped and decimated
    write_ply(folder / "scans" / "s_rest_mm.ply", posed(verts, 1, 10.0), faces)
    write_ply(folder / "scans" / "s_identity_m.ply", posed(other, 2, 0.01), faces)
    write_ply(folder / "scans" / "s_shell_cm.ply", posed(verts, 3, 1.0), shell)
    for stem, gt_verts, gt_faces, seed in (("p_rest", verts, faces, 11), ("p_identity", other, faces, 12),
                                           ("p_shell", verts, shell, 13)):
        write_ply(folder / "pred" / f"{stem}.ply", verts.astype(np.float32), faces)
        write_ply(folder / "gt" / f"{stem}.ply", posed(gt_verts, seed, 1.0), gt_faces)
    return {"scans": folder / "scans", "pred": folder / "pred", "gt": folder / "gt"}


def read_records(folder: Path) -> list[dict]:
    """Every manifest record of a dataset folder (one manifest or per-shard ones), sorted by id."""
    records = []
    for path in sorted(folder.glob("manifest*.jsonl")):
        records += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return sorted(records, key=lambda r: str(r.get("id")))


def run(out: Path) -> None:
    from topos_cli import api

    out.mkdir(parents=True, exist_ok=True)
    inputs = make_inputs(out / "inputs")
    api.retopo(inputs["scans"], out / "retopo", seed=0)
    align = api.align(inputs["pred"], inputs["gt"], out / "align", seed=0)
    metrics = api.metrics(inputs["pred"], inputs["gt"], icp=True, seed=0)
    dump = {"retopo_manifest": read_records(out / "retopo"), "align_manifest": read_records(out / "align"),
            "align_records": align.get("records") if isinstance(align, dict) else None, "metrics": metrics}
    (out / "records.json").write_text(json.dumps(dump, indent=1, sort_keys=True, default=str))
    print(f"wrote {out}", file=sys.stderr)


def normalise(value, key: str = ""):
    """Paths reduced to their file names, timings and provenance dropped."""
    if isinstance(value, dict):
        return {k: normalise(v, k) for k, v in sorted(value.items()) if k not in VOLATILE}
    if isinstance(value, list):
        return [normalise(v, key) for v in value]
    if key in PATH_KEYS and isinstance(value, str):
        return Path(value).name
    return value


def differences(a, b, where: str = "") -> list[str]:
    """Where two normalised records differ (numbers beyond a relative NUM_RTOL)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{where}.{k}: only in one" for k in sorted(set(a) ^ set(b))]
        for k in sorted(set(a) & set(b)):
            out += differences(a[k], b[k], f"{where}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: length {len(a)} vs {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in differences(x, y, f"{where}[{i}]")]
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        if a == b or (math.isfinite(a) and math.isclose(a, b, rel_tol=NUM_RTOL, abs_tol=1e-12)):
            return []
        return [f"{where}: {a!r} vs {b!r}"]
    return [] if a == b else [f"{where}: {a!r} vs {b!r}"]


def exact_differences(a, b) -> int:
    return int(json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True))


def mesh_difference(ref: Path, new: Path) -> float:
    """Largest vertex distance between two meshes / the reference's bounding-box diagonal."""
    import trimesh

    va = np.asarray(trimesh.load(ref, process=False, maintain_order=True).vertices, np.float64)
    vb = np.asarray(trimesh.load(new, process=False, maintain_order=True).vertices, np.float64)
    if va.shape != vb.shape:
        return math.inf
    return float(np.linalg.norm(va - vb, axis=1).max() / np.linalg.norm(va.max(0) - va.min(0)))


def compare(ref: Path, new: Path, tol: float) -> int:
    bad = 0
    for sub in ("retopo", "align"):
        for mesh in sorted((ref / sub).rglob("*.ply")):
            other = new / mesh.relative_to(ref)
            diff = mesh_difference(mesh, other) if other.exists() else math.inf
            bad += diff > tol
            print(f"{'FAIL' if diff > tol else 'ok  '} {mesh.relative_to(ref)}: max vertex diff {diff:.3g} of bbox diag")
    rec_a = json.loads((ref / "records.json").read_text())
    rec_b = json.loads((new / "records.json").read_text())
    for key in sorted(set(rec_a) | set(rec_b)):
        na, nb = normalise(rec_a.get(key)), normalise(rec_b.get(key))
        diffs = differences(na, nb, key)
        exact = "exactly equal" if not exact_differences(na, nb) else f"equal to rel {NUM_RTOL:g}"
        print(f"{'FAIL' if diffs else 'ok  '} {key}: " + (f"{len(diffs)} differences" if diffs else exact))
        for line in diffs[:20]:
            print("       " + line)
        bad += bool(diffs)
    return 1 if bad else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    sub.add_parser("run").add_argument("out", type=Path)
    cmp = sub.add_parser("compare")
    cmp.add_argument("ref", type=Path)
    cmp.add_argument("new", type=Path)
    cmp.add_argument("--tol", type=float, default=1e-6, help="largest vertex difference, fraction of bbox diagonal")
    args = parser.parse_args()
    if args.mode == "run":
        run(args.out)
        return 0
    return compare(args.ref, args.new, args.tol)


if __name__ == "__main__":
    sys.exit(main())
