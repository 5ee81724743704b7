"""`topos run recipe.yaml` as a function: each recipe verb maps to its API function (no CLI in between).

A step's options are the command's option names (`identity_sigma`, `ckpt_every`); `input` is the command's
positional argument(s). Values are coerced to the API parameter's type (recipe vars are strings), the way
the command line parses them: "3" -> 3, "true" -> True, "0,90" -> [0.0, 90.0], a JSON string -> a dict,
["mouthSmile_L=1"] -> {"mouthSmile_L": 1.0}. Output-format flags (`json`, `csv`) are accepted and ignored.
"""

from __future__ import annotations

import copy
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path

from topos_cli.errors import ToposError, UsageError

OUTPUT_ONLY = ("json", "csv")  # command-line output formats; a recipe step returns data instead


@dataclass(frozen=True)
class Verb:
    """A recipe verb: the API function (module, name) and the parameters its positional `input` fills."""

    module: str
    function: str
    positional: tuple[str, ...] = ("input",)


VERBS = {
    "augment": Verb("augment", "augment"),
    "render": Verb("render", "render"),
    "textures": Verb("render", "textures", ("template",)),
    "retopo": Verb("retopo", "retopo"),
    "train.vae": Verb("train", "train_vae", ()),
    "train.dit": Verb("train_dit", "train_dit", ()),
    "align": Verb("align", "align", ("pred", "gt")),
    "metrics": Verb("align", "metrics", ("pred", "gt")),
    "metrics.images": Verb("align", "image_metrics", ("pred", "gt")),
    "template.info": Verb("template", "template_info", ("template",)),
    "template.export": Verb("template", "template_export", ("template",)),
    "template.import": Verb("template", "template_import", ("mesh",)),
}


def run_recipe(recipe: str | Path, overrides: dict[str, str] | None = None, dry_run: bool = False) -> list[str]:
    """Run a recipe's steps in order through the API (`topos run`); returns the equivalent shell lines.

    With `dry_run`, nothing runs and the equivalent `topos ...` lines are returned. Otherwise the resolved
    recipe is saved as `<vars.run>/recipe.resolved.yaml` (when the recipe has a `run` var) and each step runs
    in order; a failing step stops the recipe with its error (and exit code), prefixed by the step.
    """
    from topos_cli.io.fs import write_text
    from topos_cli.io.recipe import dump_resolved, load_recipe, shell_line, step_argv
    from topos_cli.utils.log import console

    resolved = load_recipe(recipe, overrides)
    steps = [(cmd, opts or {}) for step in resolved["steps"] for cmd, opts in step.items()]
    lines = [shell_line(step_argv(cmd, opts)) for cmd, opts in steps]
    if dry_run:
        return lines
    calls = [(i, cmd, *bind_step(cmd, opts, f"step {i} ({cmd})")) for i, (cmd, opts) in enumerate(steps, 1)]
    if "run" in resolved["vars"]:
        write_text(Path(resolved["vars"]["run"]) / "recipe.resolved.yaml", dump_resolved(resolved))
    for (i, cmd, fn, kwargs), line in zip(calls, lines, strict=True):
        console.print(f"[bold]step {i}/{len(steps)}[/] {line}", highlight=False)
        try:
            fn(**kwargs)
        except ToposError as exc:
            err = copy.copy(exc)  # same type, so the same exit code (2 usage, 3 partial failure)
            err.args = (f"step {i} ({cmd}): {exc}",)
            raise err from None
    return lines


def bind_step(command: str, options: dict, where: str) -> tuple:
    """(API function, keyword arguments) for one recipe step; UsageError for an unknown verb or option."""
    import importlib
    import inspect

    options = {k: v for k, v in options.items() if k not in OUTPUT_ONLY}
    if command == "metrics" and options.pop("images", False):
        command = "metrics.images"
    verb = VERBS.get(command)
    if verb is None:
        raise UsageError(f"{where}: unknown command; recipes can run {', '.join(sorted(VERBS))}")
    fn = getattr(importlib.import_module(f"topos_cli.commands.{verb.module}"), verb.function)
    params = inspect.signature(fn).parameters
    hints = typing.get_type_hints(fn)
    kwargs = {}
    if "input" in options:
        given = options.pop("input")
        given = given if isinstance(given, list) else [given]
        if len(given) != len(verb.positional):
            raise UsageError(f"{where}: 'input' takes {len(verb.positional)} value(s): {', '.join(verb.positional)}")
        kwargs.update(zip(verb.positional, given, strict=True))
    for name in verb.positional:  # an optional CLI argument left out (e.g. augment's INPUT: the template)
        if name not in kwargs and params[name].default is inspect.Parameter.empty and name not in ("pred", "gt"):
            kwargs[name] = None
    for key, value in options.items():
        if key not in params or key in kwargs:
            allowed = sorted(p for p in params if p not in verb.positional) + (["input"] if verb.positional else [])
            raise UsageError(f"{where}: unknown option '{key}'; it takes {', '.join(allowed)}")
        kwargs[key] = value
    return fn, {k: coerce(v, hints.get(k), f"{where} option '{k}'") for k, v in kwargs.items()}


def coerce(value, hint, where: str):
    """A recipe value (often a string from a ${var}) as the API parameter's type, parsed like the CLI does."""
    if value is None or hint is None:
        return value
    kinds = _kinds(hint)
    try:
        if isinstance(value, str) and value.lower() in ("none", "null") and type(None) in kinds:
            return None
        if bool in kinds:
            return value if isinstance(value, bool) else _boolean(value)
        if int in kinds and float not in kinds and not isinstance(value, bool):
            return int(value)
        if float in kinds and not isinstance(value, bool):
            return float(value)
        if dict in kinds:
            return _mapping(value)
        if list in kinds and not (str in kinds and isinstance(value, str)):
            return _numbers(value) if isinstance(value, str) else list(value)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{where}: cannot read {value!r} ({exc})") from None
    return str(value) if isinstance(value, int | float) and str in kinds else value


def _kinds(hint) -> set:
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    return {typing.get_origin(a) or a for a in args}


def _boolean(value) -> bool:
    text = str(value).strip().lower()
    if text not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError("expected true or false")
    return text in ("true", "1", "yes")


def _mapping(value) -> dict:
    if isinstance(value, dict):
        return value
    if isinstance(value, list):  # ["name=weight", ...] as the CLI's repeatable NAME=WEIGHT option
        return {k: float(v) for k, v in (str(item).split("=", 1) for item in value)}
    parsed = json.loads(value)
    if not isinstance(parsed, dict):
        raise ValueError("expected a JSON object")
    return parsed


def _numbers(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]
