"""The latent floor of TOPOS-DiT: how far a head is from decode(encode(head)) in each latent kind.

Held-out heads as `topos augment --identity-sigma 1` makes them (region blendshapes + identity, no expression;
a seed the training data never used), encoded from points sampled on the clean head (VAE posterior mean) and
decoded. Error = mean per-vertex distance in % of the head's bbox diagonal, whole head and face.

    python benchmarks/geo_latent_floor.py --heads 32 [--vae topos_cli/assets/checkpoints/retopo-vae-small]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

FACE_REGIONS = ("eye", "nose", "mouth", "cheek", "chin", "brow", "cheekbone", "jaw")
HELD_OUT_SEED = 9_000  # augment seeds of the training data are 0..; this one is never used for training


def held_out_heads(template, count: int, seed: int = HELD_OUT_SEED) -> np.ndarray:
    """(count, V, 3) neutral heads drawn like `topos augment --identity-sigma 1` (regions on, no expression)."""
    from topos_cli.geometry.augment import AugmentConfig, coefficient_delta, sample_coefficients

    cfg = AugmentConfig(regions=bool(template.meta.get("augment")), identity_sigma=1.0, expressions=0)
    heads = []
    for i in range(count):
        coeffs = sample_coefficients(template, cfg, np.random.default_rng([seed, i]))
        heads.append(template.verts + coefficient_delta(template, coeffs))
    return np.stack(heads).astype(np.float32)


def errors(pred: np.ndarray, truth: np.ndarray, face: np.ndarray) -> dict:
    """Mean per-vertex error in % of each truth head's bbox diagonal: head and face."""
    diag = np.linalg.norm(truth.max(1) - truth.min(1), axis=1)[:, None]
    err = np.linalg.norm(pred - truth, axis=2) / diag * 100
    return {"head": round(float(err.mean()), 4), "face": round(float(err[:, face].mean()), 4)}


def main() -> None:
    import torch

    from topos_cli.io.checkpoint import load_model
    from topos_cli.models.geo_latent import LATENT_KINDS, GeoLatent
    from topos_cli.template import load_template

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--heads", type=int, default=32)
    parser.add_argument("--vae", default="topos_cli/assets/checkpoints/retopo-vae-small")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tpl = load_template(None)
    face = np.concatenate([tpl.regions[r] for r in FACE_REGIONS if r in tpl.regions])
    truth = held_out_heads(tpl, args.heads)
    vae = load_model(args.vae, tpl)
    rows = {"mean head": errors(np.broadcast_to(tpl.verts, truth.shape), truth, face)}
    for kind in LATENT_KINDS:
        latent = GeoLatent(vae, tpl, kind=kind)
        t0 = time.time()
        lat = latent.encode(truth)
        with torch.no_grad():
            tokens = torch.from_numpy(latent.pack(lat))
            pred = latent.decode_tokens(tokens).numpy()
        rows[kind] = {**errors(pred, truth, face), "tokens": list(tokens.shape[1:]),
                      "seconds_per_head": round((time.time() - t0) / len(truth), 3)}
    for name, row in rows.items():
        print(f"{name:>10}: head {row['head']:.4f} %  face {row['face']:.4f} %  {row.get('tokens', '')}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"heads": args.heads, "seed": HELD_OUT_SEED, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
