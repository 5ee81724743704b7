"""Recipe YAML: a shell script as data (STYLE.md §3.6).

    topos: 1
    name: head-data-v1
    vars: {run: runs/head-data-v1}
    steps:
      - augment: {out: "${run}/aug", copies: 8, seed: 0}

Each step is a one-key mapping: the key is a command (a dot for a sub-command, `train.vae`), the value its
options (`input` is the positional argument). `${var}` comes only from `vars` or `--set k=v`; unknown keys
are errors; there are no import-path strings.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import yaml

from topos_cli.errors import UsageError

RECIPE_KEYS = {"topos", "name", "vars", "steps", "description"}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def load_recipe(path: str | Path, overrides: dict[str, str] | None = None) -> dict:
    """Parse, validate and resolve a recipe file; returns plain dicts with every ${var} substituted."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such recipe file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UsageError(f"{path} is not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a recipe is a mapping with keys {sorted(RECIPE_KEYS)}")
    unknown = set(data) - RECIPE_KEYS
    if unknown:
        raise UsageError(f"{path}: unknown recipe key(s) {sorted(unknown)}; allowed: {sorted(RECIPE_KEYS)}")
    if data.get("topos") != 1:
        raise UsageError(f"{path}: set 'topos: 1' (the recipe schema version)")
    variables = {str(k): str(v) for k, v in (data.get("vars") or {}).items()}
    for key, value in (overrides or {}).items():
        if key not in variables:
            raise UsageError(f"--set {key}=...: the recipe has no var '{key}' (it has {sorted(variables)})")
        variables[key] = value
    steps = data.get("steps")
    if not isinstance(steps, list) or not steps:
        raise UsageError(f"{path}: 'steps' must be a non-empty list")
    resolved = []
    for i, step in enumerate(steps, 1):
        if not isinstance(step, dict) or len(step) != 1:
            raise UsageError(f"{path}: step {i} must be a one-key mapping like '- augment: {{out: ...}}'")
        (command, options), = step.items()
        if options is not None and not isinstance(options, dict):
            raise UsageError(f"{path}: step {i} ({command}) options must be a mapping")
        resolved.append({command: _substitute(options or {}, variables, f"step {i}")})
    return {"topos": 1, "name": data.get("name", path.stem), "vars": variables, "steps": resolved}


def _substitute(value, variables: dict[str, str], where: str):
    if isinstance(value, str):
        def repl(match: re.Match) -> str:
            if match.group(1) not in variables:
                raise UsageError(f"{where}: unknown variable ${{{match.group(1)}}}; define it under 'vars'")
            return variables[match.group(1)]

        return _VAR.sub(repl, value)
    if isinstance(value, dict):
        return {k: _substitute(v, variables, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, variables, where) for v in value]
    return value


def step_argv(command: str, options: dict) -> list[str]:
    """Command-line words for one step: `input` is positional, booleans are --flag/--no-flag, lists repeat,
    mappings are passed as JSON."""
    argv = command.split(".")
    if "input" in options:
        inputs = options["input"]
        argv += [str(x) for x in inputs] if isinstance(inputs, list) else [str(inputs)]
    for key, value in options.items():
        if key == "input":
            continue
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, list):
            for item in value:
                argv += [flag, str(item)]
        elif isinstance(value, dict):
            argv += [flag, json.dumps(value, sort_keys=True)]
        elif value is not None:
            argv += [flag, str(value)]
    return argv


def shell_line(argv: list[str]) -> str:
    return "topos " + " ".join(shlex.quote(a) for a in argv)


def dump_resolved(recipe: dict) -> str:
    return yaml.safe_dump(recipe, sort_keys=False)
