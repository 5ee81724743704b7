"""`topos run recipe.yaml`: run a recipe's steps as topos commands (or print them as a shell script)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from topos_cli.cli.common import epilog, handle_errors

EPILOG = epilog("topos run recipes/tiny-augment-dataset.yaml --dry-run\n\n"
                "topos run recipes/augment-dataset.yaml --set run=runs/exp1 --set copies=500")


@handle_errors
def run(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML (see the README section \"Recipes\").")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a recipe var: KEY=VALUE (repeatable).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the equivalent shell script and exit.")] = False,
) -> None:
    """Run every step of a recipe in order, stopping at the first failing step."""
    from topos_cli import api
    from topos_cli.errors import UsageError
    from topos_cli.utils.log import emit_line

    overrides = {}
    for item in set_ or []:
        if "=" not in item:
            raise UsageError(f"--set '{item}' must look like KEY=VALUE")
        key, value = item.split("=", 1)
        overrides[key] = value
    check_recipe_options(recipe, overrides)
    if dry_run:
        for line in api.run_recipe(recipe, overrides, dry_run=True):
            emit_line(line)
        return
    api.run_recipe(recipe, overrides)


def check_recipe_options(recipe: Path, overrides: dict[str, str]) -> None:
    """Every step's options through its command's declared checks (ranges, writable outputs) before the first
    step runs, so a bad value in step 3 fails in a second, not after steps 1 and 2 (one line, exit 2)."""
    from topos_cli.cli import align, augment, metrics, render, retopo, template, textures, train
    from topos_cli.cli.common import check_options
    from topos_cli.commands.recipe import bind_step
    from topos_cli.errors import UsageError
    from topos_cli.io.recipe import load_recipe

    commands = {"augment": augment.augment, "render": render.render, "textures": textures.textures,
                "retopo": retopo.retopo, "train.vae": train.vae, "align": align.align, "metrics": metrics.metrics,
                "template.export": template.export, "template.import": template.import_}
    steps = [(cmd, opts or {}) for step in load_recipe(recipe, overrides)["steps"] for cmd, opts in step.items()]
    for i, (command, options) in enumerate(steps, 1):
        where = f"step {i} ({command})"
        _, kwargs = bind_step(command, options, where)
        try:
            check_options(commands[command], kwargs) if command in commands else None
        except UsageError as exc:
            raise UsageError(f"{where}: {exc}") from None
