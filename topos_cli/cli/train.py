"""`topos train vae|...`: training sub-commands."""

from __future__ import annotations

import json as jsonlib
from pathlib import Path
from typing import Annotated

import typer

from topos_cli.cli.common import (
    COUNT,
    MAX_POINTS,
    NON_NEGATIVE,
    DeviceOpt,
    JsonOpt,
    Output,
    Range,
    SeedOpt,
    TemplateOpt,
    epilog,
    handle_errors,
)

app = typer.Typer(no_args_is_help=True, help="Train topos models (checkpoint folders, resumable).")

MIN_SCAN_POINTS = 64  # the scan simulation keeps at least 64 points after holes and crops (train/data.py)
MAX_BATCH = 65536  # per process; far beyond any memory, so only typos hit it
LR = Range(min=0, max=1)  # 0 is allowed: a frozen fine-tune (tests use it)
EMA_DECAY = Range(min=0, max=1, max_open=True)  # 1 would never move the inference weights
WORKERS = Range(min=0, max=256)
RunOutOpt = Annotated[Path, typer.Option("--out", "-o", help="Run folder (checkpoints, log.jsonl)."), Output("folder")]
StepsOpt = Annotated[int, typer.Option(help="Total optimisation steps."), COUNT]
BatchOpt = Annotated[int, typer.Option(help="Batch size per process."), Range(min=1, max=MAX_BATCH)]
CkptEveryOpt = Annotated[int, typer.Option(help="Checkpoint every N steps."), COUNT]
LogEveryOpt = Annotated[int, typer.Option(help="Log every N steps."), COUNT]
TimeLimitOpt = Annotated[float, typer.Option(help="Stop (with a checkpoint) after this many seconds; 0: none."),
                         NON_NEGATIVE]
WorkersOpt = Annotated[int, typer.Option(help="Data-loader worker processes."), WORKERS]
EmaDecayOpt = Annotated[float, typer.Option(help="EMA decay of the inference weights."), EMA_DECAY]

VAE_EPILOG = epilog(
    "topos train vae --data data/aug --config small --out runs/vae --steps 20000\n\n"
    "topos train vae --config tiny --out runs/tiny --steps 2 && topos train vae --out runs/tiny --resume --steps 4\n\n"
    "topos train vae --init runs/vae --loss-weights '{\"vertex\": 10}' --out runs/vae-ft --steps 1500 --seed 1\n\n"
    "torchrun --nproc-per-node 8 -m topos_cli train vae --data data/aug --config paper --out runs/paper --device cuda"
)


@app.command("vae", epilog=VAE_EPILOG, no_args_is_help=True)
@handle_errors
def vae(
    out: RunOutOpt,
    data: Annotated[str | None, typer.Option(help="Augment dataset folder; default: heads drawn from the "
                                                   "template's bases on the fly ('synthetic').")] = None,
    config: Annotated[str, typer.Option(help="Named size: paper, small, tiny.")] = "small",
    args: Annotated[str | None, typer.Option(help="JSON overrides of the config fields, e.g. '{\"depth\": 4}'.")] = None,
    template: TemplateOpt = None,
    steps: StepsOpt = 1000,
    batch: BatchOpt = 8,
    lr: Annotated[float, typer.Option(help="Peak learning rate (polynomial decay, power 0.9)."), LR] = 1e-3,
    points: Annotated[int, typer.Option(help="Points per simulated scan."),
                      Range(min=MIN_SCAN_POINTS, max=MAX_POINTS)] = 2048,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out.")] = False,
    ckpt_every: CkptEveryOpt = 200,
    log_every: LogEveryOpt = 10,
    time_limit: TimeLimitOpt = 0.0,
    workers: WorkersOpt = 0,
    ema_decay: EmaDecayOpt = 0.999,
    kl_warmup: Annotated[int, typer.Option(help="Steps over which the KL weight ramps up from 0 (against posterior "
                                                "collapse)."), NON_NEGATIVE] = 1000,
    init: Annotated[Path | None, typer.Option(help="Start a new run from this checkpoint's weights (fine-tuning; "
                                                    "fresh optimizer, its architecture).")] = None,
    loss_weights: Annotated[str | None, typer.Option(help="JSON overrides of the paper's loss weights (vertex 2, normal "
                                                          "1, angle 5, dihedral 5, kl 1e-3), e.g. '{\"vertex\": 10}'.")] = None,
    warmup: Annotated[int | None, typer.Option(help="Learning-rate warm-up steps (default: min(100, steps/20))."),
                      NON_NEGATIVE] = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    json: JsonOpt = False,
) -> None:
    """Train TOPOS-VAE on simulated scans of template-topology heads."""
    from topos_cli import api
    from topos_cli.errors import UsageError
    from topos_cli.utils.log import console, emit_json

    def parse(text: str | None, flag: str) -> dict | None:
        try:
            value = jsonlib.loads(text) if text else None
        except jsonlib.JSONDecodeError as exc:
            raise UsageError(f"{flag} is not valid JSON: {exc.msg}") from None
        if value is not None and not isinstance(value, dict):
            raise UsageError(f"{flag} must be a JSON object, e.g. '{{\"vertex\": 10}}'")
        return value

    last = api.train_vae(data, out, config=config, args=parse(args, "--args"), template=template, steps=steps,
                         batch=batch, lr=lr, points=points, seed=seed, resume=resume, device=device,
                         ckpt_every=ckpt_every, log_every=log_every, time_limit=time_limit, workers=workers,
                         ema_decay=ema_decay, kl_warmup=kl_warmup, init=init,
                         loss_weights=parse(loss_weights, "--loss-weights"), warmup=warmup)
    emit_json({"out": str(out.resolve()), **last}) if json else print(out)
    console.print(f"train vae: step {last.get('step')} loss {last.get('total')} -> {out}")


# ---- topos train dit (TOPOS-DiT) ----
DIT_EPILOG = epilog(
    "topos render data/aug -o data/renders --per-mesh 3 --random-lighting --random-textures --size 256\n\n"
    "topos train dit --data data/renders --config small --out runs/dit --steps 6000\n\n"
    "topos train dit --data data/renders --out runs/dit --resume --steps 9000\n\n"
    "torchrun --nproc-per-node 8 -m topos_cli train dit --data data/renders --config paper --image-cond dinov2/ "
    "--out runs/dit-paper --device cuda"
)


@app.command("dit", epilog=DIT_EPILOG, no_args_is_help=True)
@handle_errors
def dit(
    data: Annotated[Path, typer.Option(help="Render dataset of augmented heads (`topos render AUG -o DATA "
                                            "--per-mesh N --random-lighting --random-textures`).")],
    out: RunOutOpt,
    vae: Annotated[Path | None, typer.Option(help="TOPOS-VAE checkpoint of the latent (default: the shipped "
                                                  "prior; unused by the bases-only latent).")] = None,
    config: Annotated[str, typer.Option(help="Named size: paper, small, tiny.")] = "small",
    args: Annotated[str | None, typer.Option(help="JSON overrides of the config fields, e.g. "
                                                  "'{\"condition\": \"landmarks\"}'.")] = None,
    image_cond: Annotated[Path | None, typer.Option(help="Local DINOv2-with-registers folder (paper config).")] = None,
    steps: StepsOpt = 1000,
    batch: BatchOpt = 32,
    lr: Annotated[float, typer.Option(help="Peak learning rate (AdamW; polynomial decay, power 0.9)."), LR] = 1e-4,
    warmup: Annotated[int | None, typer.Option(help="Warm-up steps (default: min(100, steps/20))."),
                      NON_NEGATIVE] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out.")] = False,
    ckpt_every: CkptEveryOpt = 200,
    log_every: LogEveryOpt = 10,
    time_limit: TimeLimitOpt = 0.0,
    workers: WorkersOpt = 0,
    ema_decay: EmaDecayOpt = 0.999,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    json: JsonOpt = False,
) -> None:
    """Train TOPOS-DiT: image-conditioned rectified flow over the head latent."""
    from topos_cli.commands.train_dit import train_dit
    from topos_cli.errors import UsageError
    from topos_cli.utils.log import console, emit_json

    try:
        overrides = jsonlib.loads(args) if args else None
    except jsonlib.JSONDecodeError as exc:
        raise UsageError(f"--args is not valid JSON: {exc.msg}") from None
    last = train_dit(data, out, vae=vae, config=config, args=overrides, steps=steps, batch=batch, lr=lr, seed=seed,
                     resume=resume, device=device, ckpt_every=ckpt_every, log_every=log_every, time_limit=time_limit,
                     workers=workers, ema_decay=ema_decay, warmup=warmup, image_cond=image_cond)
    emit_json({"out": str(out.resolve()), **last}) if json else print(out)
    console.print(f"train dit: step {last.get('step')} loss {last.get('total')} -> {out}")


TEX_EPILOG = epilog(
    "topos train tex --data data/renders --weights models/qwen-image-edit --out runs/tex\n\n"
    "topos train tex --data data/renders --config tiny --out runs/tex-tiny\n\n"
    "topos train tex --data data/renders --weights W --out runs/tex --device cuda --stages 256:2000,512:2000"
)


@app.command("tex", epilog=TEX_EPILOG, no_args_is_help=True)
@handle_errors
def tex(
    data: Annotated[Path, typer.Option(help="Render dataset with canonical textures (`topos render HEADS -o DATA "
                                            "--random-textures --random-lighting`).")],
    out: RunOutOpt,
    weights: Annotated[Path | None, typer.Option(help="Local Qwen-Image-Edit folder (transformer/, vae/, "
                                                      "text_encoder/, tokenizer/, scheduler/).")] = None,
    config: Annotated[str, typer.Option(help="paper (256->1024 progressive) or tiny (CPU smoke run).")] = "paper",
    stages: Annotated[str | None, typer.Option(help="Override stages as RES:STEPS,... e.g. 256:2000,512:2000.")] = None,
    lr: Annotated[float, typer.Option(help="Cosine schedule start (paper 5e-5)."), LR] = 5e-5,
    lr_min: Annotated[float, typer.Option(help="Cosine schedule end (paper 3.5e-5)."), LR] = 3.5e-5,
    cond_dropout: Annotated[float, typer.Option(help="Probability of dropping the reference image."),
                            Range(min=0, max=1, max_open=True)] = 0.2,
    rank: Annotated[int, typer.Option(help="LoRA rank."), COUNT] = 32,
    log_every: LogEveryOpt = 10,
    seed: SeedOpt = 0,
    device: DeviceOpt = "cpu",
    json: JsonOpt = False,
) -> None:
    """Fine-tune the TOPOS-Texture LoRA (flow matching, condition dropout, progressive resolution)."""
    from topos_cli.commands.train_tex import train_tex
    from topos_cli.utils.log import console, emit_json

    last = train_tex(data, out, weights=weights, config=config, stages=stages, lr=lr, lr_min=lr_min,
                     cond_dropout=cond_dropout, rank=rank, seed=seed, device=device, log_every=log_every)
    emit_json({"out": str(out.resolve()), "lora": str((out / "lora").resolve()), **last}) if json else print(out)
    console.print(f"train tex: step {last.get('step')} loss {last.get('loss')} -> {out / 'lora'}")
