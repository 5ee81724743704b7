"""`topos retopo`: fit the template to scans of any topology, units and pose."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from topos_cli.cli.common import (
    MAX_POINTS,
    NON_NEGATIVE,
    DeviceOpt,
    ForceOpt,
    JsonOpt,
    Output,
    Range,
    SeedOpt,
    ShardOpt,
    TemplateOpt,
    epilog,
    handle_errors,
)

MIN_SCAN_POINTS = 100  # the fewest points a scan may have (commands/retopo.py); fewer samples cannot fit a head

EPILOG = epilog(
    "topos retopo scan.obj -o head.obj --json\n\n"
    "topos retopo scan_mm.ply -o head.glb --up +Z --front -Y --landmarks scan_landmarks.json\n\n"
    "topos retopo scans/ -o data/fit --shard 0/4 --json"
)


@handle_errors
def retopo(
    input: Annotated[str, typer.Argument(help="Scan file (.obj/.ply/.off/.stl/.glb), folder of scans, dataset "
                                               "folder or '-' (JSONL with a 'mesh' field on stdin).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output mesh (.obj/.ply/.glb) or, for many scans, a folder."),
                   Output()],
    template: TemplateOpt = None,
    checkpoint: Annotated[Path | None, typer.Option(help="VAE checkpoint folder (default: the shipped one).")] = None,
    landmarks: Annotated[Path | None, typer.Option(
        help="Scan landmarks: JSON, or menpo LJSON with the 68 iBUG points (optional; tightens the fit).")] = None,
    up: Annotated[str | None, typer.Option(help="Scan's up axis (+Y, -Z, 0,0,1): skips the orientation search.")] = None,
    front: Annotated[str | None, typer.Option(help="Scan's facing axis (+Z, -X, ...).")] = None,
    frame: Annotated[str, typer.Option(help="Output frame: 'scan' (on the scan) or 'template' (canonical cm).")] = "scan",
    vae: Annotated[bool, typer.Option(help="Use the VAE prior.")] = True,
    bases: Annotated[bool, typer.Option(help="Fit the template's identity/expression bases (when it has them).")] = True,
    refine: Annotated[bool, typer.Option(help="Non-rigid refinement onto the scan.")] = True,
    iters: Annotated[int, typer.Option(help="Bases-fit iterations."), NON_NEGATIVE] = 12,
    points: Annotated[int, typer.Option(help="Scan samples used by the fit."),
                      Range(min=MIN_SCAN_POINTS, max=MAX_POINTS)] = 30000,
    format: Annotated[str, typer.Option(help="Mesh format of batch outputs: ply, obj, glb.")] = "ply",
    strict: Annotated[bool, typer.Option(help="Treat a poor fit as an error (exit 2 / batch failure).")] = False,
    seed: SeedOpt = 0,
    device: DeviceOpt = "cpu",
    shard: ShardOpt = None,
    force: ForceOpt = False,
    json: JsonOpt = False,
) -> None:
    """Retopologise scans onto the template: automatic alignment, VAE prior, bases fit, refinement."""
    from topos_cli import api
    from topos_cli.utils.log import console, emit_json, emit_line

    result = api.retopo(input, out, template=template, checkpoint=checkpoint, landmarks=landmarks, up=up,
                        front=front, frame=frame, vae=vae, bases=bases, refine=refine, iters=iters, points=points,
                        format=format, seed=seed, device=device, strict=strict, shard=shard, force=force)
    for rec in result.records:
        emit_json(rec) if json else emit_line(rec["mesh"])
        for warning in rec.get("warnings", []):
            console.print(f"[yellow]warning:[/] {rec['id']}: {warning}", highlight=False)
    console.print(f"retopo: {len(result.records) - result.skipped} fitted, {result.skipped} already done -> {out}")
