"""`topos run recipe.yaml`: run a recipe's steps as topos commands (or print them as a shell script)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from topos_cli.cli.common import epilog, handle_errors

EPILOG = epilog("topos run recipes/tiny-augment.yaml --dry-run\n\n"
                "topos run recipes/augment-dataset.yaml --set run=runs/exp1")


@handle_errors
def run(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML (see README, Recipes).")],
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
    if dry_run:
        for line in api.run_recipe(recipe, overrides, dry_run=True):
            emit_line(line)
        return
    api.run_recipe(recipe, overrides)
