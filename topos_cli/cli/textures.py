"""`topos textures`: synthesize skin albedo/roughness/specular maps in the template's UV space."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from topos_cli.cli.common import (
    COUNT,
    FRACTION,
    MAX_IMAGE_SIZE,
    ForceOpt,
    JsonOpt,
    Output,
    Range,
    SeedOpt,
    ShardOpt,
    epilog,
    handle_errors,
)

EPILOG = epilog("topos textures topos-head -o data/textures --count 64 --seed 0\n\n"
                "topos textures -o tex --count 4 --size 256 --makeup 0 --json")


@handle_errors
def textures(
    template: Annotated[str | None, typer.Argument(help="Template name or folder (default: topos-head).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output dataset folder."), Output("folder")] = ...,
    count: Annotated[int, typer.Option(help="Number of textures."), COUNT] = 16,
    size: Annotated[int, typer.Option(help="Texture size in pixels."), Range(min=16, max=MAX_IMAGE_SIZE)] = 512,
    makeup: Annotated[float, typer.Option(help="Probability of each makeup element (0 = none)."), FRACTION] = 0.5,
    seed: SeedOpt = 0,
    shard: ShardOpt = None,
    force: ForceOpt = False,
    json: JsonOpt = False,
) -> None:
    """Draw skin tones (16 melanin levels), pores, region tints and makeup as PNG maps plus a manifest."""
    from topos_cli import api
    from topos_cli.utils.log import console, emit_json, emit_line

    result = api.textures(template, out, count=count, seed=seed, size=size, makeup=makeup, shard=shard, force=force)
    for rec in result.records:
        emit_json(rec) if json else emit_line(rec["albedo"])
    console.print(f"textures: {len(result.records) - result.skipped} written, {result.skipped} already done "
                  f"-> {result.out}")
