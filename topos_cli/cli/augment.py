"""`topos augment`: build a dataset of augmented heads in template topology."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from topos_cli.cli.common import (
    COUNT,
    NON_NEGATIVE,
    ForceOpt,
    JsonOpt,
    Output,
    SeedOpt,
    ShardOpt,
    TemplateOpt,
    epilog,
    handle_errors,
)

EPILOG = epilog(
    "topos augment -o data/aug --copies 8 --seed 0\n\n"
    "topos augment fits/ -o data/aug --copies 4 --identity-sigma 1 --expressions 3 --json | topos render - -o views"
)


@handle_errors
def augment(
    input: Annotated[str | None, typer.Argument(
        help="Base meshes in template topology: a mesh, a folder, a dataset folder or '-' (JSONL on stdin). "
             "Default: the template itself.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output dataset folder."), Output("folder")] = ...,
    template: TemplateOpt = None,
    copies: Annotated[int, typer.Option(help="Augmented copies per base mesh."), NON_NEGATIVE] = 4,
    regions: Annotated[bool, typer.Option(help="Region-wise blendshape sampling (TOPOS appendix B).")] = True,
    identity_sigma: Annotated[float, typer.Option(help="Random identity: std of the identity weights (0: off)."),
                              NON_NEGATIVE] = 0.0,
    identity_modes: Annotated[int | None, typer.Option(help="Use only the first N identity modes."), COUNT] = None,
    expressions: Annotated[int, typer.Option(help="Random ARKit expressions per copy (0: off)."), NON_NEGATIVE] = 0,
    expression_max: Annotated[float, typer.Option(help="Expression weights ~ U(0, max)."), NON_NEGATIVE] = 1.0,
    include_base: Annotated[bool, typer.Option(help="Also write each base mesh as <id>-base.")] = False,
    seed: SeedOpt = 0,
    shard: ShardOpt = None,
    force: ForceOpt = False,
    json: JsonOpt = False,
) -> None:
    """Sample region blendshapes, identities and expressions onto base heads; write a dataset folder."""
    from topos_cli import api
    from topos_cli.utils.log import console, emit_json, emit_line

    result = api.augment(input, out, template=template, copies=copies, seed=seed, regions=regions,
                         identity_sigma=identity_sigma, identity_modes=identity_modes, expressions=expressions,
                         expression_max=expression_max, include_base=include_base, shard=shard, force=force)
    for rec in result.records:
        emit_json(rec) if json else emit_line(rec["mesh"])
    console.print(f"augment: {len(result.records) - result.skipped} written, {result.skipped} already done "
                  f"-> {result.out}")
