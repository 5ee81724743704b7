"""Checkpoint folders (STYLE §3.7): the one checkpoint writer and reader.

    RUN/
      log.jsonl
      step-000000500/
        model.json          {"format":1,"name":"mesh-vae","args":{...},"template":..,"template_hash":..,"step":..}
        model.safetensors   EMA weights (what inference loads)
        train_state.pt      raw weights, optimizer, scheduler, RNG, data cursor (resume only)
      latest                "step-000000500"

`load_checkpoint(dir)` accepts a run folder (follows `latest`) or a step folder, rebuilds the model through the
registry and loads with strict=True; a template whose hash differs from the recorded one is TemplateMismatch.
It returns the model with its model.json (`Checkpoint`); `load_model(dir)` is the model alone.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from topos_cli.errors import MissingWeights, TemplateMismatch, UsageError
from topos_cli.io.fs import read_json, write_json, write_text

CHECKPOINT_FORMAT = 1


def step_dir_name(step: int) -> str:
    return f"step-{step:09d}"


def latest_step_dir(run_dir: str | Path) -> Path | None:
    """The newest complete step folder of a run, or None.

    Step folders appear by an atomic rename, so every `step-*` folder with a model.json is complete; a run
    killed between that rename and rewriting `latest` leaves `latest` one checkpoint behind (or missing),
    so the folders, not `latest`, decide.
    """
    run_dir = Path(run_dir)
    steps = sorted(p for p in run_dir.glob("step-*")
                   if p.is_dir() and not p.name.endswith(".tmp") and (p / "model.json").is_file())
    return steps[-1] if steps else None


def resolve_checkpoint(path: str | Path) -> Path:
    """The step folder for a run folder (its newest complete step) or a step folder itself."""
    path = Path(path)
    if (path / "model.json").is_file():
        return path
    step = latest_step_dir(path)
    if step is not None:
        return step
    raise MissingWeights(f"{path}: no checkpoint here (expected model.json or a 'latest' file); "
                         "train one with `topos train vae` or give the checkpoint folder")


def save_checkpoint(run_dir: str | Path, step: int, name: str, args: dict, template, ema_state: dict,
                    train_state: dict | None = None, extra: dict | None = None, keep: int = 3) -> Path:
    """Write RUN/step-XXXXXXXXX atomically (temp folder + rename), then point `latest` at it.

    Args:
        run_dir: run folder.
        step: optimisation step.
        name: registry name of the model.
        args: config dataclass fields (plain data).
        template: the Template the model was built for (name and hash are recorded).
        ema_state: state dict saved as model.safetensors.
        train_state: resume-only dict saved with torch.save, or None.
        extra: more plain-data fields for model.json (loss, data, notes).
        keep: number of step folders kept (older ones are removed).
    """
    import torch
    from safetensors.torch import save_file

    from topos_cli import __version__
    from topos_cli.io.manifest import git_sha

    run_dir = Path(run_dir)
    final = run_dir / step_dir_name(step)
    tmp = run_dir / (step_dir_name(step) + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    meta = {"format": CHECKPOINT_FORMAT, "name": name, "args": args, "template": template.name,
            "template_hash": template.hash, "step": int(step), "topos_version": __version__, "git": git_sha()}
    meta.update(extra or {})
    write_json(tmp / "model.json", meta)
    save_file({k: v.detach().contiguous().cpu() for k, v in ema_state.items()}, str(tmp / "model.safetensors"))
    if train_state is not None:
        torch.save(train_state, tmp / "train_state.pt")
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    write_text(run_dir / "latest", final.name + "\n")
    steps = sorted(p for p in run_dir.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp"))
    for old in steps[:-keep] if keep > 0 else []:
        shutil.rmtree(old)
    return final


def read_model_json(path: str | Path) -> dict:
    step_dir = resolve_checkpoint(path)
    meta = read_json(step_dir / "model.json", "checkpoint model.json")
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise UsageError(f"{step_dir}: unsupported checkpoint format {meta.get('format')!r}")
    return meta


def trained_steps(meta: dict | None) -> int | None:
    """Optimisation steps behind a checkpoint's model.json: its own plus those of the checkpoint it was
    fine-tuned from (`init.step`, itself cumulative)."""
    if not meta or meta.get("step") is None:
        return None
    return int(meta["step"]) + int((meta.get("init") or {}).get("step") or 0)


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (EMA weights, eval mode) and its model.json."""

    model: object
    meta: dict


def load_model(path: str | Path, template=None, device: str = "cpu"):
    """The model of a checkpoint folder (see `load_checkpoint`), in eval mode."""
    return load_checkpoint(path, template, device).model


def load_checkpoint(path: str | Path, template=None, device: str = "cpu") -> Checkpoint:
    """Build the model recorded in a checkpoint folder and load its EMA weights (strict), in eval mode.

    Args:
        path: run folder (follows `latest`) or step folder.
        template: Template to build for; default: the template named in model.json.
        device: torch device string.

    Raises:
        TemplateMismatch: the template's connectivity hash differs from the checkpoint's.
        MissingWeights: no checkpoint at `path`.
    """
    from safetensors.torch import load_file

    from topos_cli.models.registry import build
    from topos_cli.template import load_template

    step_dir = resolve_checkpoint(path)
    meta = read_model_json(step_dir)
    if template is None:
        template = load_template(meta["template"])
    if template.hash != meta["template_hash"]:
        raise TemplateMismatch(
            f"checkpoint {step_dir} was trained for template '{meta['template']}' (hash {meta['template_hash'][:12]}) "
            f"but template '{template.name}' has hash {template.hash[:12]}; use the matching template or retrain")
    from topos_cli.models.registry import LEGACY_ARGS

    # config fields added after a checkpoint was written take the values that reproduce its architecture
    model = build(meta["name"], {**LEGACY_ARGS.get(meta["name"], {}), **meta["args"]}, template)
    weights = step_dir / "model.safetensors"
    if not weights.is_file():
        raise MissingWeights(f"{weights} is missing")
    try:
        model.load_state_dict(load_file(str(weights)), strict=True)
    except (RuntimeError, ValueError) as exc:  # mismatched or corrupt tensors: the file is not this model's
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MissingWeights(f"{weights} does not fit model '{meta['name']}' with the recorded args ({first}); "
                             "retrain it or use the topos version that wrote it") from None
    return Checkpoint(model.to(device).eval(), meta)


def load_train_state(path: str | Path) -> dict:
    """The resume-only train_state.pt of a run or step folder."""
    import torch

    state_path = resolve_checkpoint(path) / "train_state.pt"
    if not state_path.is_file():
        raise MissingWeights(f"{state_path} is missing; this checkpoint cannot be resumed")
    return torch.load(state_path, map_location="cpu", weights_only=False)
