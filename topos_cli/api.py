"""Public Python API: one function per command, same names and parameters as the CLI.

    from topos_cli import api
    api.augment(None, "data/aug", copies=4, seed=0)     # == topos augment -o data/aug --copies 4 --seed 0

Each function validates its inputs, does the work through `geometry`/`models`/`render`/`io`, writes
its outputs atomically and returns plain data (what `--json` prints). Errors a user can cause are
`ToposError`s with an actionable message. The functions live one command per module in
`topos_cli/commands/`; batch commands run on the one batch engine (`io/batch.py`). This file only
re-exports them.
"""

from __future__ import annotations

from topos_cli.commands.align import align, image_metrics, metrics
from topos_cli.commands.animate import animate
from topos_cli.commands.augment import augment
from topos_cli.commands.export import export, template_lod
from topos_cli.commands.generate_geo import generate_geo
from topos_cli.commands.generate_tex import generate, generate_tex
from topos_cli.commands.manifest import manifest_merge
from topos_cli.commands.recipe import run_recipe
from topos_cli.commands.render import render, textures
from topos_cli.commands.retopo import retopo
from topos_cli.commands.template import template_export, template_import, template_info
from topos_cli.commands.train import train_vae
from topos_cli.commands.train_dit import train_dit
from topos_cli.commands.train_tex import train_tex
from topos_cli.io.manifest import BatchResult

__all__ = ["BatchResult", "align", "animate", "augment", "export", "generate", "generate_geo", "generate_tex", "image_metrics", "manifest_merge", "metrics",
           "render", "retopo", "run_recipe", "template_export", "template_import", "template_info", "template_lod",
           "textures", "train_dit", "train_tex", "train_vae"]
