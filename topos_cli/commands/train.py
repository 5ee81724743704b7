"""`topos train vae` as a function."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from topos_cli.errors import UsageError
from topos_cli.io.checkpoint import latest_step_dir
from topos_cli.template import load_template


def train_vae(data: str | Path | None, out: str | Path, config: str = "small", args: dict | None = None,
              template: str | Path | None = None, steps: int = 1000, batch: int = 8, lr: float = 1e-3,
              points: int = 2048, seed: int = 0, resume: bool = False, device: str = "auto",
              ckpt_every: int = 200, log_every: int = 10, time_limit: float = 0.0, workers: int = 0,
              ema_decay: float = 0.999, kl_warmup: int = 1000, init: str | Path | None = None,
              loss_weights: dict | None = None, warmup: int | None = None, on_log=None) -> dict:
    """Train TOPOS-VAE (`topos train vae`); checkpoints in OUT (step-XXXXXXXXX/, latest, log.jsonl).

    Args:
        data: augment dataset folder (manifest.jsonl, meshes in template order) or None / "synthetic" to
            draw heads from the template's identity and expression bases on the fly.
        out: run folder. config: named size (paper, small, tiny); args: overrides of its fields.
        steps/batch/lr/points/seed: optimisation; `points` = scan samples per simulated scan.
        resume: continue from OUT/latest (required when OUT already has checkpoints).
        device: auto, cpu, cuda. ckpt_every/log_every: in steps. time_limit: seconds (0: none).
        ema_decay: decay of the EMA weights that inference loads (lower for short runs).
        kl_warmup: steps over which the KL weight ramps from 0 to its value (against posterior collapse).
        init: checkpoint folder whose (EMA) weights a new run starts from, with a fresh optimizer and its own
            step count (fine-tuning); the architecture is the checkpoint's. Ignored when resuming a run.
        loss_weights: overrides of the paper's loss weights, e.g. {"vertex": 10}; a resumed run keeps those it
            was started with unless given again.
        warmup: learning-rate warm-up steps (default: min(100, steps / 20)).

    Returns:
        The last log record.
    """
    from topos_cli.io.manifest import is_dataset, run_meta, write_meta
    from topos_cli.train.data import HeadSource, ScanDataset, ScanSimConfig
    from topos_cli.train.determinism import seed_everything
    from topos_cli.train.loop import TrainConfig, train
    from topos_cli.train.vae import VaeTask
    from topos_cli.utils.device import torch_device

    out = Path(out)
    if latest_step_dir(out) is not None and not resume:
        raise UsageError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    if data is not None and str(data) != "synthetic" and not is_dataset(data):
        raise UsageError(f"--data {data}: not a dataset folder (no manifest.jsonl); make one with `topos augment`")
    if steps < 1 or batch < 1:
        raise UsageError("--steps and --batch must be >= 1")
    tpl = load_template(template)
    seed_everything(seed)  # before the model is built: its initial weights come from the global torch RNG
    start = _starting_model(tpl, out, config, args, resume, init, loss_weights)
    model, config, loss_weights, extra = start.model, start.config, start.loss_weights, start.extra
    if "identity" not in tpl.bases and (data is None or str(data) == "synthetic"):
        raise UsageError(f"template '{tpl.name}' has no identity basis to synthesise heads; pass --data DIR")
    from topos_cli.train.vae import loss_weights as _weights

    try:
        _weights(loss_weights)
    except ValueError as exc:
        raise UsageError(f"--loss-weights: {exc}") from None
    if loss_weights:
        extra["loss_weights"] = loss_weights
    dataset = ScanDataset(HeadSource(tpl, data), seed=seed, sim=ScanSimConfig(num_points=points))
    cfg = TrainConfig(steps=steps, batch=batch, lr=lr, seed=seed, ckpt_every=ckpt_every, log_every=log_every,
                      time_limit=time_limit, workers=workers,
                      warmup=min(100, max(1, steps // 20)) if warmup is None else max(0, warmup),
                      ema_decay=ema_decay)
    out.mkdir(parents=True, exist_ok=True)
    write_meta(out, run_meta("train vae", seed=seed, template=tpl, data=str(data), config=config, args=args,
                             init=str(init) if init is not None else None, loss_weights=loss_weights))
    return train(VaeTask(model, tpl, kl_warmup, loss_weights), dataset, cfg, out, device=torch_device(device),
                 resume=resume, meta={"config": config, "data": str(data) if data else "synthetic", **extra},
                 on_log=on_log)


@dataclass
class StartingModel:
    """The model a run starts from and the run settings that come with it."""

    model: object
    config: str
    loss_weights: dict | None
    extra: dict  # model.json fields carried over: "init" (the checkpoint fine-tuned from)


def _starting_model(tpl, out: Path, config: str, args: dict | None, resume: bool, init, loss_weights):
    """A resumed run's architecture and settings, an --init checkpoint's weights, or a new model."""
    from topos_cli.io.checkpoint import load_checkpoint, read_model_json, trained_steps
    from topos_cli.models.registry import build

    if resume and latest_step_dir(out) is not None:
        meta = read_model_json(out)
        return StartingModel(build(meta["name"], meta["args"], tpl), meta.get("config", config),
                             meta.get("loss_weights") if loss_weights is None else loss_weights,
                             {"init": meta["init"]} if "init" in meta else {})
    if init is not None:
        if args:
            raise UsageError("--args cannot change the architecture of an --init checkpoint; drop one of them")
        loaded = load_checkpoint(init, tpl)
        start = loaded.meta
        return StartingModel(loaded.model.train(), start.get("config", config), loss_weights,
                             {"init": {"path": str(init), "step": trained_steps(start), "git": start.get("git")}})
    try:
        return StartingModel(build("mesh-vae", args, tpl, preset=config), config, loss_weights, {})
    except ValueError as exc:
        raise UsageError(str(exc)) from None
