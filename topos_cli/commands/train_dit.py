"""`topos train dit` as a function: TOPOS-DiT on a `topos render` dataset of augmented heads."""

from __future__ import annotations

from pathlib import Path

from topos_cli.errors import UsageError
from topos_cli.io.checkpoint import latest_step_dir

DEFAULT_VAE = Path(__file__).resolve().parents[1] / "assets" / "checkpoints" / "retopo-vae-small"


def train_dit(data: str | Path, out: str | Path, vae: str | Path | None = None, config: str = "small",
              args: dict | None = None, steps: int = 1000, batch: int = 32, lr: float = 1e-4, seed: int = 0,
              resume: bool = False, device: str = "auto", ckpt_every: int = 200, log_every: int = 10,
              time_limit: float = 0.0, workers: int = 0, ema_decay: float = 0.999, warmup: int | None = None,
              image_cond: str | Path | None = None, on_log=None) -> dict:
    """Train TOPOS-DiT (`topos train dit`); checkpoints in OUT (step-XXXXXXXXX/, latest, log.jsonl).

    Args:
        data: a `topos render` dataset folder of template-topology heads made by `topos augment` (its records
            carry the augment coefficients). Face crops, landmarks and neutral heads are cached once in
            DATA/cache/ (built on first use: the face detector runs on every render).
        out: run folder. config: named size (paper, small, tiny); args: overrides of its fields.
        vae: TOPOS-VAE checkpoint of the latent (kinds "vae" and "vae+bases"; default: the shipped prior).
        steps/batch/lr/seed: optimisation (AdamW, warm-up, polynomial decay power 0.9; paper lr 1e-4).
        resume: continue from OUT/latest. device: auto, cpu, cuda. ckpt_every/log_every: in steps.
        time_limit: seconds (0: none); the run checkpoints and stops. ema_decay: of the inference weights.
        warmup: learning-rate warm-up steps (default: min(100, steps / 20)).
        image_cond: local folder of the frozen DINOv2 backbone (condition "features", the paper config).

    Returns:
        The last log record.
    """
    import torch

    from topos_cli.io.manifest import run_meta, write_meta
    from topos_cli.train.data import DIT_CACHE, RenderLatentDataset, build_dit_cache, load_dit_cache
    from topos_cli.train.flow import FlowTask
    from topos_cli.train.loop import TrainConfig, train

    data, out = Path(data), Path(out)
    if latest_step_dir(out) is not None and not resume:
        raise UsageError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    cached = (data / DIT_CACHE / "targets.npz").is_file()
    if not (data / "manifest.jsonl").is_file() and not cached:
        raise UsageError(f"--data {data}: not a dataset folder (no manifest.jsonl); make one with `topos render "
                         "AUG -o DATA --per-mesh 4 --random-lighting --random-textures`")
    if steps < 1 or batch < 1:
        raise UsageError("--steps and --batch must be >= 1")
    tpl = _template_of(data)
    if not cached:
        build_dit_cache(data, tpl)
    cache = load_dit_cache(data)
    model, latent, meta = _model(out, resume, config, args, tpl, vae)
    backbone = _backbone(model.config, image_cond or meta.get("image_cond"))
    tokens = _targets(model, latent, cache, data, resume, str(meta.get("vae")))
    train_idx = cache.renders("train")
    if len(train_idx) == 0:
        raise UsageError(f"--data {data}: no usable training renders (no face detected, or no 'train' heads)")
    mean_fit = _fit_mean_head(model, cache, tokens, train_idx) if not resume else None
    device = "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    inputs = model.config.condition if backbone is None and model.mean_head is None else "crop+landmarks"
    dataset = RenderLatentDataset(cache, tokens, train_idx, inputs, seed=seed)
    cfg = TrainConfig(steps=steps, batch=batch, lr=lr, seed=seed, ckpt_every=ckpt_every, log_every=log_every,
                      time_limit=time_limit, workers=workers, ema_decay=ema_decay,
                      warmup=min(100, max(1, steps // 20)) if warmup is None else max(0, warmup))
    counts = {s: int(len(cache.renders(s))) for s in ("train", "val", "test")}
    extra = {"config": meta.get("config", config), "data": str(data), "vae": meta.get("vae"),
             "image_cond": None if image_cond is None else str(image_cond), "renders": counts,
             "heads": {s: int((cache.split == s).sum()) for s in ("train", "val", "test")}}
    if mean_fit is not None:
        extra["mean_head"] = mean_fit
    out.mkdir(parents=True, exist_ok=True)
    write_meta(out, run_meta("train dit", seed=seed, template=tpl, **extra))
    torch.manual_seed(seed)
    return train(FlowTask(model, tpl, backbone), dataset, cfg, out, device=device, resume=resume, meta=extra,
                 on_log=on_log)


def _fit_mean_head(model, cache, tokens, train_idx) -> dict | None:
    """Fit the model's landmark regression (config mean_head "ridge") on the training renders, in closed form."""
    if model.mean_head is None:
        return None
    val_idx = cache.renders("val")  # their residual covariance is the photo fit's prior (pipelines/geo.py)
    fit = model.mean_head.fit(cache.landmarks[train_idx], tokens[cache.render_head[train_idx]],
                              model.config.mean_lambda,
                              held_out=(cache.landmarks[val_idx], tokens[cache.render_head[val_idx]]))
    return {"kind": model.config.mean_head, "lambda": model.config.mean_lambda, **fit}


def _template_of(data: Path):
    from topos_cli.io.manifest import read_manifest
    from topos_cli.template import load_template
    from topos_cli.train.data import DIT_CACHE

    if not (data / "manifest.jsonl").is_file():  # a portrait cache made without a render dataset
        import numpy as np

        tpl = load_template(None)
        with np.load(data / DIT_CACHE / "targets.npz") as z:
            if str(z["template_hash"]) != tpl.hash:
                raise UsageError(f"--data {data}: its cache was made for another template than the default one")
        return tpl
    first = read_manifest(data)[:1]
    if not first or "coeffs" not in first[0]:
        raise UsageError(f"--data {data}: its records carry no augment coefficients; render a `topos augment` "
                         "dataset (the neutral target heads come from those coefficients)")
    return load_template(first[0].get("template"))


def _model(out: Path, resume: bool, config: str, args: dict | None, tpl, vae):
    """(FlowDiT, GeoLatent, meta): rebuilt from OUT on resume, else from the preset with the latent's layout."""
    from topos_cli.io.checkpoint import load_model, read_model_json
    from topos_cli.models.geo_latent import GeoLatent
    from topos_cli.models.registry import build, make_config

    meta = {}
    if resume and latest_step_dir(out) is not None:
        meta = read_model_json(out)
        args, config = meta["args"], None
        vae = vae or meta.get("vae")
    try:
        cfg = make_config("flow-dit", args, preset=config)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    vae_model = None
    if cfg.latent != "bases":
        vae = Path(vae) if vae else DEFAULT_VAE
        vae_model = load_model(vae, tpl)
    latent = GeoLatent(vae_model, tpl, kind=cfg.latent)
    n_vae, n_res = latent.layout()
    shape = {"num_tokens": n_vae + n_res, "token_dim": latent.token_dim}
    if not meta and any(getattr(cfg, k) != v for k, v in shape.items()):
        args = {**(args or {}), **shape}  # the token layout follows the latent (VAE size, bases' rank)
    # a resumed run's latent statistics are buffers of its checkpoint (the loop restores the weights after)
    model = load_model(out, tpl).train() if meta else build("flow-dit", args, tpl, preset=config)
    if any(getattr(model.config, k) != v for k, v in shape.items()):
        raise UsageError(f"{out}: the run's latent layout {model.config.num_tokens}x{model.config.token_dim} "
                         f"differs from this VAE/template's {shape['num_tokens']}x{shape['token_dim']}")
    return model, latent, {**meta, "vae": None if vae_model is None else str(vae)}


def _backbone(cfg, folder):
    if cfg.condition != "features":
        return None
    if folder is None:
        raise UsageError("condition 'features' (the paper config) needs --image-cond DIR: a local folder with "
                         "the DINOv2 ViT-L/14-with-registers weights (facebook/dinov2-with-registers-large)")
    from topos_cli.pipelines.geo_prior import load_dinov2

    return load_dinov2(folder)


def _targets(model, latent, cache, data: Path, resume: bool, vae_key: str):
    """(H, T, d) normalised target tokens; a new run sets the model's latent statistics from the train heads."""
    import torch

    from topos_cli.train.data import DIT_CACHE
    from topos_cli.train.flow import latent_targets, token_stats

    tokens = latent_targets(latent, cache.neutral, data / DIT_CACHE, vae_key=vae_key)
    if not resume:
        mean, std = token_stats(tokens[cache.split == "train"] if (cache.split == "train").any() else tokens)
        model.latent_mean.copy_(torch.from_numpy(mean))
        model.latent_std.copy_(torch.from_numpy(std))
    return ((tokens - model.latent_mean.numpy()) / model.latent_std.numpy()).astype("float32")
