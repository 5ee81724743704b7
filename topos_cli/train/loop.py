"""The generic training loop: AdamW + warmup/polynomial decay, EMA, AMP (bf16 on CUDA), checkpoints and resume,
JSONL logs, a rich progress bar, and DDP when launched by `torchrun` (WORLD_SIZE > 1).

Data are index-addressed (sample i is a pure function of (seed, i)), so the data cursor is just the step:
resuming at step s draws exactly the samples an uninterrupted run would have drawn.
"""

from __future__ import annotations

import copy
import errno
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from topos_cli.io.fs import write_text
from topos_cli.train.determinism import deterministic_algorithms, rng_state, seed_worker, set_rng_state


@dataclass
class TrainConfig:
    """Optimisation settings (paper: AdamW (0.9, 0.999), weight decay 0.1, lr 1e-3, polynomial decay 0.9)."""

    steps: int = 1000
    batch: int = 8
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 100
    power: float = 0.9
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    log_every: int = 10
    ckpt_every: int = 200
    seed: int = 0
    workers: int = 0
    time_limit: float = 0.0  # seconds; 0 = none. The run checkpoints and stops cleanly when it is reached.


class _StepBatches(torch.utils.data.Sampler):
    """Batch indices for steps start..steps-1 on this rank: step s, rank r -> (s * world + r) * batch + [0, batch)."""

    def __init__(self, start: int, steps: int, batch: int, rank: int, world: int):
        self.start, self.steps, self.batch, self.rank, self.world = start, steps, batch, rank, world

    def __iter__(self):
        for step in range(self.start, self.steps):
            base = (step * self.world + self.rank) * self.batch
            yield list(range(base, base + self.batch))

    def __len__(self) -> int:
        return max(0, self.steps - self.start)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup:
        return (step + 1) / max(cfg.warmup, 1)
    progress = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)
    return max(0.0, 1.0 - progress) ** cfg.power


def _optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW without weight decay on biases, norms and embeddings."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "embed" in name or "query_bias" in name else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.999))


def _trim_log(path: Path, step: int) -> None:
    """Drop the log records past `step`: a run stopped after its last checkpoint logged steps that the
    resumed run does again, and the log should hold each step once."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    keep = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= step]
    if len(keep) != len(lines):
        write_text(path, "".join(keep))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters(), strict=True):
        e.lerp_(p.detach(), 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers(), strict=True):
        e.copy_(b)


def _dist_setup(device: str) -> tuple[int, int, str]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, device
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return dist.get_rank(), world, device


@dataclass
class _Run:
    """What a training run carries from step to step (and saves in each checkpoint)."""

    model: torch.nn.Module
    ema: torch.nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    start: int


def _setup(task, cfg: TrainConfig, out: Path, device: str, resume: bool, rank: int) -> _Run:
    """Model, EMA, optimizer and schedule on `device`; a resume restores them, the step and the RNG states."""
    from topos_cli.io.checkpoint import latest_step_dir, load_train_state

    model = task.model.to(device)
    task.to(device)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = _optimizer(model, cfg)
    run = _Run(model, ema, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, cfg)), 0)
    if resume and latest_step_dir(out) is not None:
        state = load_train_state(out)
        model.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        run.sched.load_state_dict(state["scheduler"])
        set_rng_state(state.get("rng"))  # older checkpoints have none: their global RNGs were not used anyway
        run.start = int(state["step"])
        _warn_if_threads_differ(state.get("cursor", {}).get("threads"))
    if rank == 0:  # a resumed run redoes the steps past its checkpoint; a new run in the folder of one killed
        _trim_log(out / "log.jsonl", run.start)  # before its first checkpoint starts a new log
    return run


def _train_step(run: _Run, net, task, batch: dict, gen: torch.Generator, cfg: TrainConfig, step: int,
                amp: bool) -> tuple[dict, torch.Tensor]:
    """One optimisation step; returns the loss terms and the gradient norm before clipping."""
    task.step = step
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp):
        terms = task.loss(net, batch, gen)
    run.opt.zero_grad(set_to_none=True)
    terms["total"].backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.grad_clip)
    run.opt.step()
    run.sched.step()
    ema_update(run.ema, run.model, min(cfg.ema_decay, (1 + step) / (10 + step)))
    return terms, grad_norm


def _checkpoint(run: _Run, task, cfg: TrainConfig, out: Path, step: int, world: int, extra: dict) -> None:
    """Save EMA weights for inference and everything a resume needs (weights, optimizer, RNG states, cursor)."""
    from topos_cli.io.checkpoint import save_checkpoint

    state = {"model": run.model.state_dict(), "ema": run.ema.state_dict(), "optimizer": run.opt.state_dict(),
             "scheduler": run.sched.state_dict(), "step": step, "config": asdict(cfg), "rng": rng_state(),
             "cursor": {"next_step": step, "batch": cfg.batch, "world": world, "threads": torch.get_num_threads()}}
    try:
        save_checkpoint(out, step, task.name, run.model.config.to_dict(), task.template, run.ema.state_dict(),
                        state, extra=extra)
    except Exception as exc:  # torch.save and safetensors report a full disk as RuntimeError / SafetensorError
        _raise_if_disk_full(exc, out, step, state)
        raise


def _raise_if_disk_full(exc: Exception, out: Path, step: int, state: dict) -> None:
    """DiskFull (one line, exit 2) when a checkpoint failed for want of space; its partial folder is removed and
    the previous checkpoint stays the one `--resume` continues from."""
    import shutil

    from topos_cli.errors import DiskFull
    from topos_cli.io.checkpoint import step_dir_name

    # train_state.pt (weights, EMA, optimizer) plus the EMA weights again as model.safetensors
    tensors = _tensors([state["model"], state["ema"], state["optimizer"], state["ema"]])
    needed = sum(t.numel() * t.element_size() for t in tensors)
    free = shutil.disk_usage(out).free
    full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if not full and free >= needed:
        return
    shutil.rmtree(out / (step_dir_name(step) + ".tmp"), ignore_errors=True)
    latest = (out / "latest").read_text().strip() if (out / "latest").is_file() else "none"
    raise DiskFull(f"no space left on the device of {out} to write checkpoint {step_dir_name(step)} (about "
                   f"{needed / 2**20:.1f} MiB needed, {free / 2**20:.1f} MiB free); free some space and rerun "
                   f"with --resume (last checkpoint: {latest})") from None


def _tensors(obj) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for value in obj.values() for t in _tensors(value)]
    if isinstance(obj, list | tuple):
        return [t for value in obj for t in _tensors(value)]
    return []


def _warn_if_threads_differ(saved: int | None) -> None:
    """CPU reductions split work by thread, so another thread count rounds differently (see README
    "Reproducibility"): say so rather than let a resume drift silently."""
    if saved is not None and saved != torch.get_num_threads():
        from topos_cli.utils.log import console

        console.print(f"[yellow]warning:[/] this run was checkpointed with {saved} CPU threads and resumes with "
                      f"{torch.get_num_threads()}; the result will not be bit-identical to an uninterrupted run "
                      f"(set OMP_NUM_THREADS={saved} to match)", highlight=False)


def _append_log(path: Path, record: dict) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def train(task, dataset, cfg: TrainConfig, out: str | Path, *, device: str = "cpu", resume: bool = False,
          meta: dict | None = None, on_log=None) -> dict:
    """Train `task.model` on `dataset`; checkpoints go to `out` (see io/checkpoint.py).

    Args:
        task: object with `.model`, `.template`, `.name`, `.to(device)` and `.loss(model, batch, generator)`.
        dataset: index-addressed dataset (sample i is deterministic).
        cfg: optimisation settings.
        out: run folder.
        device: torch device string.
        resume: continue from `out/latest` (model, EMA, optimizer, scheduler, step).
        meta: extra plain data for model.json (data source, config name).
        on_log: optional callback(record) for each log record (the CLI prints nothing per step by default).

    Returns:
        The last log record (step, losses, lr, seconds).
    """
    from topos_cli.utils.log import progress

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rank, world, device = _dist_setup(device)
    run = _setup(task, cfg, out, device, resume, rank)
    start = run.start
    net = run.model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(run.model, device_ids=[device] if "cuda" in device else None)
    # a seeded generator: the loader draws its worker base seed from it, not from the global RNG
    loader_gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + start * world + rank)
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=_StepBatches(start, cfg.steps, cfg.batch, rank, world),
                                         num_workers=cfg.workers, persistent_workers=False,
                                         worker_init_fn=seed_worker, generator=loader_gen)
    amp = device.startswith("cuda")
    last, t0, seen = {}, time.time(), 0
    extra = {"train": asdict(cfg), **(meta or {})}
    batches = progress(loader, total=len(loader.batch_sampler), description=f"train {task.name}") if rank == 0 else loader
    with deterministic_algorithms(device):
        for step, batch in enumerate(batches, start=start):
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            gen = torch.Generator(device=device).manual_seed(cfg.seed * 1_000_003 + step * world + rank)
            terms, grad_norm = _train_step(run, net, task, batch, gen, cfg, step, amp)
            seen += 1
            done = step + 1
            timeout = cfg.time_limit > 0 and time.time() - t0 > cfg.time_limit
            if done % cfg.log_every == 0 or done == cfg.steps or timeout:
                last = {"step": done, **{k: round(float(v.detach()), 6) for k, v in terms.items()},
                        "grad_norm": round(float(grad_norm), 4), "lr": run.sched.get_last_lr()[0],
                        "it_s": round(seen / (time.time() - t0), 4), "seconds": round(time.time() - t0, 1)}
                if rank == 0:
                    _append_log(out / "log.jsonl", last)
                    if on_log:
                        on_log(last)
            if rank == 0 and (done % cfg.ckpt_every == 0 or done == cfg.steps or timeout):
                _checkpoint(run, task, cfg, out, done, world, {**extra, "loss": last})
            if timeout:
                break
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    return last
