"""Measure a TOPOS-DiT checkpoint's landmark-regression residual covariance on held-out renders and store it.

`topos train dit` stores it when it fits the ridge (models/cond_mean.py `residual_cov`, from the 'val' heads);
checkpoints trained before that have zeros there, so generate-geo's photometric refinement falls back to the
population prior. This script fills it in for such a checkpoint from the data it was trained on:

    python scripts/geo_dit_residual_cov.py --model topos_cli/assets/checkpoints/geo-dit-small --data runs/geo-id/m2

Only the buffer changes (the weights file is rewritten atomically with the same tensors otherwise).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="checkpoint folder (model.json + model.safetensors)")
    parser.add_argument("--data", type=Path, required=True, help="the run's --data folder (with cache/targets.npz)")
    parser.add_argument("--split", default="val", help="held-out split the residuals come from")
    args = parser.parse_args(argv)
    from safetensors.torch import save_file

    from topos_cli.io.checkpoint import resolve_checkpoint
    from topos_cli.io.fs import atomic_path
    from topos_cli.pipelines.geo_prior import GeoPrior
    from topos_cli.train.data import DIT_CACHE, load_dit_cache
    from topos_cli.train.flow import latent_targets

    prior = GeoPrior.from_pretrained(args.model)
    head = prior.model.mean_head
    if head is None:
        print(f"{args.model}: no landmark regression (mean_head none); nothing to measure", file=sys.stderr)
        return 2
    cache = load_dit_cache(args.data)
    tokens = latent_targets(prior.latent, cache.neutral, args.data / DIT_CACHE, vae_key=str(prior.meta.get("vae")))
    tokens = (tokens - prior.model.latent_mean.numpy()) / prior.model.latent_std.numpy()
    idx = cache.renders(args.split)
    resid = head.residuals(cache.landmarks[idx], tokens[cache.render_head[idx]])
    rms = head.store_residual_cov(resid)
    weights = resolve_checkpoint(args.model) / "model.safetensors"
    state = {k: v.detach().cpu().contiguous() for k, v in prior.model.state_dict().items()}
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp))
    print(f"{weights}: residual covariance of {len(resid)} '{args.split}' renders stored (rms {rms:.3f} normalised)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
