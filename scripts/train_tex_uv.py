"""Train the `learned` generate-tex network (models/uv_net.py) on scripts/build_tex_uv_data.py pairs.

    python scripts/train_tex_uv.py --data runs/tex-uv-data --out runs/tex-uv --steps 600 --batch 8 --threads 2
    python scripts/train_tex_uv.py --data runs/tex-uv-data --out runs/tex-uv --steps 900 --resume   # continue

The generic loop (train/loop.py): AdamW, warm-up + polynomial decay, EMA weights for inference, checkpoints
(`RUN/step-*/model.json + model.safetensors`) and resume, `RUN/log.jsonl`. The last HOLD_OUT items are held
out; their L1 (network vs the unwrap) is printed at the end and written to RUN/eval.json. Copy the step folder's
model.json and model.safetensors to topos_cli/assets/checkpoints/tex-uv-small/ to ship it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HOLD_OUT = 24  # items kept out of training (the benchmark's held-out heads are separate: seeds 17_000..)


def main(argv=None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("runs/tex-uv-data"))
    ap.add_argument("--out", type=Path, default=Path("runs/tex-uv"))
    ap.add_argument("--config", default="small")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--ema-decay", type=float, default=0.99)
    ap.add_argument("--time-limit", type=float, default=0.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from topos_cli.models.registry import build
    from topos_cli.template import load_template
    from topos_cli.train.loop import TrainConfig, train
    from topos_cli.train.tex_uv import DATA_SIZE, TexUVTask, UVPairs, evaluate, template_maps

    tpl = load_template("topos-head")
    files = sorted(args.data.glob("items/*.npz"))
    train_files, held = files[:-HOLD_OUT], files[-HOLD_OUT:]
    maps = template_maps(tpl, DATA_SIZE)
    data = UVPairs(args.data, maps, args.seed, train_files)
    task = TexUVTask(build("tex-uv", None, tpl, args.config), tpl)
    cfg = TrainConfig(steps=args.steps, batch=args.batch, lr=args.lr, weight_decay=0.01, warmup=30,
                      ema_decay=args.ema_decay, log_every=10, ckpt_every=50, seed=args.seed,
                      time_limit=args.time_limit)
    meta = {"data": {"folder": str(args.data), "items": len(train_files), "held_out": len(held)}}
    last = train(task, data, cfg, args.out, resume=args.resume, meta=meta,
                 on_log=lambda r: print(json.dumps(r), file=sys.stderr, flush=True))
    from topos_cli.io.checkpoint import load_model

    model = load_model(args.out, tpl)
    report = {"step": last.get("step"), "held_out": evaluate(model, UVPairs(args.data, maps, 1, held), task)}
    (args.out / "eval.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
