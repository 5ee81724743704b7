"""Benchmark `topos augment`: meshes per second on this machine, against a naive baseline in the same run.

    python benchmarks/augment.py [--copies 200] [--template topos-head]

Baseline: the obvious implementation (per-basis Python loop over float32 deltas, trimesh PLY export).
topos: tensordot over the picked bases and a vectorised binary PLY writer, through the real api.augment.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def naive(template, coeffs_list, out: Path) -> None:
    import trimesh

    from topos_cli.geometry.augment import region_table

    _, table = region_table(template)
    for i, coeffs in enumerate(coeffs_list):
        verts = template.verts.copy()
        for name, pick in coeffs.get("regions", {}).items():
            basis = template.basis(table[name]["basis"])
            for b, w in zip(pick["bases"], pick["weights"], strict=True):
                verts = verts + w * basis[b]
        for k, w in enumerate(coeffs.get("identity", [])):
            verts = verts + w * template.basis("identity")[k]
        trimesh.Trimesh(verts, template.faces, process=False).export(out / f"{i}.ply")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=200)
    parser.add_argument("--template", default=None)
    args = parser.parse_args()

    from topos_cli import api
    from topos_cli.geometry.augment import AugmentConfig, sample_coefficients
    from topos_cli.template import load_template

    tpl = load_template(args.template)
    _ = tpl.bases  # load bases once, outside the timings (both paths share it)
    sigma = 1.0 if "identity" in tpl.bases else 0.0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        api.augment(None, tmp / "topos", template=args.template, copies=args.copies, seed=0, identity_sigma=sigma)
        t_topos = time.perf_counter() - start
        config = AugmentConfig(regions=bool(tpl.meta.get("augment")), identity_sigma=sigma)
        coeffs = [sample_coefficients(tpl, config, np.random.default_rng(i)) for i in range(args.copies)]
        (tmp / "naive").mkdir()
        start = time.perf_counter()
        naive(tpl, coeffs, tmp / "naive")
        t_naive = time.perf_counter() - start
    print(f"template {tpl.name}: {tpl.num_verts} vertices, {args.copies} copies "
          f"(regions + {'identity' if sigma else 'no identity'})")
    print(f"topos augment : {args.copies / t_topos:8.1f} meshes/s  ({1000 * t_topos / args.copies:.2f} ms/mesh)")
    print(f"naive baseline: {args.copies / t_naive:8.1f} meshes/s  ({1000 * t_naive / args.copies:.2f} ms/mesh)")
    print(f"speed-up      : {t_naive / t_topos:8.2f}x")


if __name__ == "__main__":
    main()
