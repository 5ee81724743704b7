"""Validation error of TOPOS-VAE checkpoints on held-out simulated scans (the training distribution).

    python benchmarks/vae_validation.py [CHECKPOINT ...] [--scans 32] [--seed 777]

Scans are drawn exactly as in training (`train/data.py`: heads from the template's bases, decimated,
random density, noise, front-only / holes / cropped scalp, 1536 points) but from a data seed no training
run uses (777; the shipped prior was trained on seeds 0 and 1). For each checkpoint (default: the shipped
one) it prints the decoded posterior mean's mean vertex error in template-radius units, the same for the
rest template (the baseline, measured on the same scans), and their ratio averaged per scan.
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="*", help="checkpoint or run folders (default: the shipped prior)")
    parser.add_argument("--scans", type=int, default=32)
    parser.add_argument("--seed", type=int, default=777)
    parser.add_argument("--json", action="store_true", help="one JSON record per checkpoint")
    args = parser.parse_args()

    import torch

    from topos_cli.io.checkpoint import load_checkpoint
    from topos_cli.pipelines.retopo import DEFAULT_CHECKPOINT
    from topos_cli.template import load_template
    from topos_cli.train.data import HeadSource, ScanDataset, ScanSimConfig

    torch.set_num_threads(1)
    tpl = load_template()
    data = ScanDataset(HeadSource(tpl), seed=args.seed, sim=ScanSimConfig(num_points=1536))
    items = [data[i] for i in range(args.scans)]
    batch = {k: torch.stack([it[k] for it in items]) for k in items[0]}
    for path in args.checkpoints or [str(DEFAULT_CHECKPOINT)]:
        loaded = load_checkpoint(path, tpl)
        model, meta = loaded.model, loaded.meta
        rest = model.rest * model.radius + model.center
        with torch.no_grad():
            verts = model(batch["points"], batch["normals"], sample=False)["verts"]
        err = ((verts - batch["verts"]).norm(dim=-1).mean(1) / model.radius).numpy()
        base = ((rest[None] - batch["verts"]).norm(dim=-1).mean(1) / model.radius).numpy()
        record = {"checkpoint": path, "step": meta.get("step"), "init_step": (meta.get("init") or {}).get("step"),
                  "scans": args.scans, "vae": float(err.mean()), "rest_template": float(base.mean()),
                  "ratio": float(np.mean(err / base))}
        if args.json:
            print(json.dumps(record))
        else:
            print(f"{path}: step {record['step']} (after {record['init_step'] or 0}) vae {record['vae']:.4f} "
                  f"rest template {record['rest_template']:.4f} ratio {record['ratio']:.3f}")


if __name__ == "__main__":
    main()
