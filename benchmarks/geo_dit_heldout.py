"""Held-out error of TOPOS-DiT alone (no photo fit): renders of identities never seen in training.

For every usable render of the held-out heads of a render dataset (split `test`, or `val`), the model samples
the neutral head from the cached face crop and landmarks (exactly what GeoPrior computes from the photo);
the error is the mean per-vertex distance to the true neutral head in % of its bbox diagonal, whole head and
face, in the template frame (both are neutral heads in the template frame: no alignment). Baselines on the
same renders: the mean head (the template's rest shape) and the mean of the training heads (the augment
distribution's region weights are positive, so its mean is not the rest shape).

    python benchmarks/geo_dit_heldout.py --run topos_cli/assets/checkpoints/geo-dit-small \
        --data runs/geo-dit/renders [--split test] [--steps 50] [--cfg 3.0] [--limit 200]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

FACE_REGIONS = ("eye", "nose", "mouth", "cheek", "chin", "brow", "cheekbone", "jaw")


def vertex_errors(pred: np.ndarray, truth: np.ndarray, face: np.ndarray) -> dict:
    """Mean per-vertex error (% of each truth head's bbox diagonal): head and face, mean over heads."""
    diag = np.linalg.norm(truth.max(1) - truth.min(1), axis=1)[:, None]
    err = np.linalg.norm(pred - truth, axis=2) / diag * 100
    return {"head": round(float(err.mean()), 4), "face": round(float(err[:, face].mean()), 4)}


def evaluate(prior, cache, renders: np.ndarray, steps: int, cfg: float, seed: int = 0, batch: int = 16,
             samples: int = 1, temperature: float = 1.0) -> dict:
    """Rows {model, template rest shape, mean of the training heads} over `renders` (indices into the cache),
    plus sampling seconds per portrait (batched)."""
    import torch

    from topos_cli.pipelines.sampler import SamplerConfig, sample

    tpl = prior.latent.template
    face = np.concatenate([tpl.regions[r] for r in FACE_REGIONS if r in tpl.regions])
    truth = cache.neutral[cache.render_head[renders]]
    preds, seconds = [], 0.0
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, len(renders), batch):
        idx = renders[start:start + batch]
        cond = {"crop": torch.from_numpy(np.asarray(cache.crops[idx], np.float32).transpose(0, 3, 1, 2) / 255.0),
                "landmarks": torch.from_numpy(cache.landmarks[idx])}
        t0 = time.perf_counter()
        with torch.no_grad():
            tokens = prior.model.encode_condition(cond).repeat_interleave(samples, 0)
            config = SamplerConfig(steps, cfg, temperature=temperature)
            normed = sample(prior.model, tokens, gen, config)
            mean = prior.model.prior_mean(cond)  # the landmark regression the flow's residual is added to
            if mean is not None:
                normed = normed + mean.repeat_interleave(samples, 0)
            latents = prior.model.denormalize(normed)
        seconds += time.perf_counter() - t0
        heads = prior.decode(latents)
        preds.append(heads.reshape(len(idx), samples, *heads.shape[1:]).mean(1))
    pred = np.concatenate(preds)
    return {"dit": vertex_errors(pred, truth, face),
            "mean head": vertex_errors(np.broadcast_to(tpl.verts, truth.shape), truth, face),
            "train mean": vertex_errors(np.broadcast_to(cache.neutral[cache.split == "train"].mean(0), truth.shape),
                                        truth, face),
            "renders": int(len(renders)), "heads": int(len(np.unique(cache.render_head[renders]))),
            "sample_seconds_per_portrait_batched": round(seconds / len(renders), 4)}


def single_portrait_seconds(prior, data: str, renders: np.ndarray, count: int, steps: int, cfg: float) -> dict:
    """GeoPrior end to end on `count` held-out portraits, one at a time (what generate-geo does per image):
    median seconds of the condition, the sampling (steps with CFG) and the decode."""
    import torch

    from topos_cli.faces.detect import detect_faces
    from topos_cli.io.image import read_image
    from topos_cli.io.manifest import read_manifest

    recs = read_manifest(data)
    times = []
    for render in renders[:count]:
        image = read_image(Path(data) / recs[int(render)]["image"])[..., :3]
        face = detect_faces(image)[0]
        points = np.concatenate([face.landmarks, face.depth[:, None]], 1)
        out = prior(image, points, torch.Generator().manual_seed(0), steps=steps, cfg=cfg)
        times.append(out.seconds)
    return {k: round(float(np.median([t[k] for t in times])), 4) for k in times[0]}


def main() -> None:
    import torch

    from topos_cli.pipelines.geo_prior import GeoPrior
    from topos_cli.train.data import load_dit_cache

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--cfg", type=float, default=3.0)
    parser.add_argument("--samples", type=int, default=1, help="heads averaged per portrait")
    parser.add_argument("--temperature", type=float, default=1.0, help="initial-noise scale")
    parser.add_argument("--limit", type=int, default=0, help="first N held-out renders (0: all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--time-single", type=int, default=5, help="portraits timed one at a time (0: none)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    prior = GeoPrior.from_pretrained(args.run)
    cache = load_dit_cache(args.data)
    renders = cache.renders(args.split)
    if args.limit:
        renders = renders[: args.limit]
    result = evaluate(prior, cache, renders, args.steps, args.cfg, samples=args.samples,
                      temperature=args.temperature)
    if args.time_single and (Path(args.data) / "manifest.jsonl").is_file():  # cache-only data has no images
        result["single_portrait_seconds_median"] = single_portrait_seconds(prior, args.data, renders,
                                                                           args.time_single, args.steps, args.cfg)
    result.update(run=args.run, split=args.split, steps=args.steps, cfg=args.cfg, samples=args.samples,
                  temperature=args.temperature,
                  condition=prior.model.config.condition, latent=prior.model.config.latent)
    print(json.dumps(result))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
