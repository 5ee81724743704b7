"""`topos train tex` as a function: the TOPOS-Texture LoRA on a `topos render --random-textures` dataset."""

from __future__ import annotations

import json
from pathlib import Path

from topos_cli.errors import UsageError

CONFIGS = ("paper", "tiny")  # paper: 256->1024 progressive stages; tiny: a CPU smoke run on the tiny stack


def train_tex(data: str | Path, out: str | Path, weights: str | Path | None = None, config: str = "paper",
              stages: str | None = None, lr: float = 5e-5, lr_min: float = 3.5e-5, cond_dropout: float = 0.2,
              rank: int = 32, seed: int = 0, device: str = "cpu", log_every: int = 10, on_log=None) -> dict:
    """Fine-tune the TOPOS-Texture LoRA (`topos train tex`); writes OUT/lora/ and OUT/log.jsonl.

    Args:
        data: render dataset whose records carry the render ("image") and its canonical albedo ("texture").
        out: run folder (refused when it already holds a LoRA).
        weights: local Qwen-Image-Edit folder (transformer/, vae/, text_encoder/, tokenizer/, scheduler/); with
            config "tiny" and no weights, a random tiny stack is written to OUT/tiny-base first.
        config: "paper" (256, 384, 512, 768, 1024 x 2000 steps) or "tiny" (32, 48: CPU seconds).
        stages: override as "RES:STEPS,RES:STEPS" (resolutions multiples of 16 for the real VAE).
        lr / lr_min: cosine schedule ends. cond_dropout: probability of a zeroed condition. rank: LoRA rank.
    """
    from topos_cli.io.manifest import run_meta, write_meta
    from topos_cli.pipelines.tex_qwen import LORA_FILE, check_tex_extra, load_parts
    from topos_cli.train.tex_lora import (
        PAPER_STAGES,
        TINY_STAGES,
        TexLoraConfig,
        render_pairs,
        train_tex_lora,
    )

    out = Path(out)
    if config not in CONFIGS:
        raise UsageError(f"--config must be one of {', '.join(CONFIGS)}, got {config!r}")
    if (out / "lora" / LORA_FILE).is_file():
        raise UsageError(f"{out} already holds a trained LoRA; choose another --out")
    check_tex_extra()
    if not 0 <= cond_dropout < 1 or rank < 1 or not 0 <= lr_min <= lr:
        raise UsageError("need 0 <= --cond-dropout < 1, --rank >= 1 and 0 <= --lr-min <= --lr")
    plan = _stages(stages) if stages else (TINY_STAGES if config == "tiny" else PAPER_STAGES)
    pairs = render_pairs(Path(data))
    base = _base_weights(weights, config, out)
    parts = load_parts(base, device)
    _check_resolutions(plan, parts.scale)
    cfg = TexLoraConfig(rank=rank, lr=lr, lr_min=lr_min, cond_dropout=cond_dropout, stages=tuple(plan), seed=seed,
                        log_every=log_every)
    out.mkdir(parents=True, exist_ok=True)
    write_meta(out, run_meta("train tex", seed=seed, data=str(data), weights=str(base), config=config,
                             stages=[list(s) for s in plan], pairs=len(pairs)))
    return train_tex_lora(parts, pairs, out, cfg, device=device, on_log=on_log)


def _base_weights(weights, config: str, out: Path) -> Path:
    from topos_cli.pipelines.tex_qwen import COMPONENTS
    from topos_cli.train.tex_lora import write_tiny_weights

    if weights is None:
        if config != "tiny":
            raise UsageError("--weights DIR (a local Qwen-Image-Edit folder: transformer/, vae/, text_encoder/, "
                             "tokenizer/, scheduler/) is needed; only --config tiny builds its own random stack")
        return write_tiny_weights(out / "tiny-base")
    root = Path(weights)
    absent = [c for c in COMPONENTS if not (root / c).is_dir()]
    if absent:
        from topos_cli.errors import MissingWeights

        raise MissingWeights(f"--weights {root}: missing {', '.join(a + '/' for a in absent)} (a local "
                             f"Qwen-Image-Edit folder in diffusers' layout)")
    return root


def _stages(text: str) -> list[tuple[int, int]]:
    try:
        plan = [(int(r), int(n)) for r, n in (part.split(":") for part in text.split(","))]
    except ValueError:
        raise UsageError(f"--stages {text!r}: write RES:STEPS pairs, e.g. 256:2000,512:2000") from None
    if not plan or any(r < 1 or n < 1 for r, n in plan):
        raise UsageError(f"--stages {text!r}: resolutions and steps must be >= 1")
    return plan


def _check_resolutions(plan, scale: int) -> None:
    bad = [r for r, _ in plan if r % (2 * scale)]
    if bad:
        raise UsageError(f"--stages: resolutions {bad} are not multiples of {2 * scale} (the VAE's scale x 2x2 "
                         "patches)")


def lora_summary(out: Path) -> dict:
    """What a finished run wrote (for the CLI's record)."""
    from topos_cli.pipelines.tex_qwen import LORA_META

    meta = Path(out) / "lora" / LORA_META
    return json.loads(meta.read_text()) if meta.is_file() else {}
