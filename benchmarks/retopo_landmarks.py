"""Benchmark `topos retopo` on real scans with annotated landmarks (no ICT head, no known correspondence).

    nice -n 10 python benchmarks/retopo_landmarks.py SCAN [SCAN ...] [--no-baseline] [--rotations 3]

Each SCAN (a mesh or point cloud) needs its 68 iBUG landmarks beside it, as menpo LJSON (`<stem>.ljson`),
annotated on the scan. The scans of menpo3d (BSD-3: a textured laser scan of a person, "james", and a
53k-vertex mean face, "template") are such a pair; they are not in this repository:

    pip download menpo3d==0.8.6 --no-deps --no-build-isolation --no-binary :all: -d /tmp/menpo3d
    tar xzf /tmp/menpo3d/menpo3d-0.8.6.tar.gz -C /tmp/menpo3d
    python benchmarks/retopo_landmarks.py /tmp/menpo3d/menpo3d-0.8.6/menpo3d/data/{james.obj,template.ply}

The fitted head's landmark vertices (the template's iBUG-68 ids) are compared with the annotation: the error
as % of the outer-eye-corner distance (NME), on all 68 points, on the 51 inner ones (brows, nose, eyes, mouth:
the jaw line is drawn differently by every annotator and lies where a 2D silhouette put it) and per group.
Part of the error is definition, not fit: the template's landmark vertices are not the annotators' points.
Methods side by side, all from the same automatic pre-alignment: topos, its parts (VAE alone, bases fit alone),
the rigidly aligned template, and `trimesh.registration.nricp_amberg` from that template. `--rotations N`
also runs topos on N random rotations of each scan (the pre-alignment must find the same head).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

GROUPS = {"jaw": range(0, 17), "brows": range(17, 27), "nose": range(27, 36), "eyes": range(36, 48),
          "mouth": range(48, 68), "inner": range(17, 68)}


def landmark_nme(verts: np.ndarray, ids: np.ndarray, truth: np.ndarray) -> dict:
    """NME (% of the outer-eye-corner distance) of the landmark vertices: all 68 and per group."""
    from topos_cli.geometry.metrics import vertex_errors

    iod = float(np.linalg.norm(truth[36] - truth[45]))
    err = vertex_errors(verts[ids], truth, scale=iod / 100.0, regions={k: np.array(v) for k, v in GROUPS.items()})
    return {"nme": err["mean"], **{f"nme_{k}": v["mean"] for k, v in err["per_region"].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scans", nargs="+", type=Path)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--rotations", type=int, default=0, help="also fit N random rotations of each scan")
    parser.add_argument("--json", default=None, help="write all rows to this JSON file")
    args = parser.parse_args()

    import torch
    import trimesh
    from scipy.spatial.transform import Rotation

    from topos_cli.geometry import retopo as rt
    from topos_cli.io.landmarks import read_ljson
    from topos_cli.io.mesh import load_mesh
    from topos_cli.pipelines.retopo import RetopoOptions, RetopoPipeline

    torch.set_num_threads(1)
    pipe = RetopoPipeline.from_pretrained(args.checkpoint)
    tpl = pipe.template
    ids = tpl.landmarks
    variants = {"topos": RetopoOptions()}
    if pipe.vae is not None:
        variants["vae_only"] = RetopoOptions(bases=False, refine=False)
    variants["bases_only"] = RetopoOptions(vae=False, refine=False)
    variants["rigid_template"] = RetopoOptions(vae=False, bases=False, refine=False)
    rows = []
    for path in args.scans:
        scan = load_mesh(path, allow_points=True)
        truth = read_ljson(path.with_suffix(".ljson"))
        sv, sf = scan.verts.astype(np.float64), (scan.faces if len(scan.faces) else None)
        row = {"scan": path.name, "verts": len(sv), "faces": 0 if sf is None else len(sf),
               "outer_eye_distance": float(np.linalg.norm(truth[36] - truth[45]))}
        for name, opt in variants.items():
            t0 = time.perf_counter()
            res = pipe(sv, sf, options=opt, seed=0)
            row[name] = {**landmark_nme(res.verts.astype(np.float64), ids, truth),
                         "fscore": res.report["metrics"]["fscore"], "ok": res.report["ok"],
                         "seconds": time.perf_counter() - t0}
        if not args.no_baseline and sf is not None:
            t0 = time.perf_counter()
            pre, _ = rt.prealign(rt.sample_scan(sv, sf, 30000, np.random.default_rng(0)), tpl.verts.astype(float),
                                 tpl.faces)
            fitted = trimesh.registration.nricp_amberg(trimesh.Trimesh(tpl.verts.astype(np.float64), tpl.faces,
                                                                       process=False),
                                                       trimesh.Trimesh(pre.apply(sv), sf, process=False))
            row["nricp_amberg"] = {**landmark_nme(pre.inverse().apply(np.asarray(fitted)), ids, truth),
                                   "seconds": time.perf_counter() - t0}
        for k in range(args.rotations):
            rot = Rotation.random(random_state=k).as_matrix()
            shift = np.random.default_rng(k).normal(size=3) * float(np.ptp(sv, 0).max())
            res = pipe(sv @ rot.T + shift, sf, seed=0)
            back = (res.verts.astype(np.float64) - shift) @ rot
            row[f"topos_rot{k}"] = {**landmark_nme(back, ids, truth), "ok": res.report["ok"]}
        rows.append(row)
        print(json.dumps({k: ({m: round(v, 3) if isinstance(v, float) else v for m, v in val.items()}
                              if isinstance(val, dict) else val) for k, val in row.items()}), flush=True)
    keys = ["nme", "nme_inner", "nme_eyes", "nme_nose", "nme_mouth", "nme_brows", "nme_jaw", "seconds"]
    methods = list(dict.fromkeys(m for r in rows for m in r if isinstance(r[m], dict)))
    print(f"\nlandmark error, % of the outer-eye-corner distance; {len(rows)} scans, template {tpl.name}, VAE: "
          f"{'step ' + str(pipe.vae_meta.get('step')) if pipe.vae is not None else 'none'}")
    print(f"{'scan':14s} {'method':16s} " + " ".join(f"{k:>10s}" for k in keys))
    for r in rows:
        for m in methods:
            if m in r:
                print(f"{r['scan']:14s} {m:16s} " + " ".join(f"{r[m].get(k, np.nan):10.2f}" for k in keys))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
