"""`topos align`: 7-DoF similarity (scale, rotation, translation) of predictions onto fixed ground truths."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from topos_cli.cli.common import (
    NON_NEGATIVE,
    ForceOpt,
    JsonOpt,
    Output,
    Range,
    SeedOpt,
    ShardOpt,
    WorkersOpt,
    epilog,
    handle_errors,
)

EPILOG = epilog(
    "topos align pred.obj scan.ply -o pred_aligned.obj --json\n\n"
    "topos align preds/ gts/ -o aligned/ --workers 2\n\n"
    "topos align pred.glb gt.obj -o pred_aligned.glb --protocol topos"
)

ProtocolOpt = Annotated[str, typer.Option(
    help="robust (default: symmetric point-to-plane multi-start ICP) or topos (the paper's trimmed ICP verbatim).")]
TrimOpt = Annotated[float | None, typer.Option(help="Kept fraction tau of the smallest residuals [default 0.5]."),
                    Range(min=0, max=1, min_open=True)]
YawsOpt = Annotated[str | None, typer.Option(
    help="Yaw grid in degrees [topos: 0,90,180,270; robust: every 45].")]
TiltsOpt = Annotated[str | None, typer.Option(
    help="Tilt grid in degrees, robust only: each nonzero value adds a pitch and a roll start [default 0,-20,20].")]
ScalesOpt = Annotated[str | None, typer.Option(
    help="Scale grid, factors of the bounding-box-diagonal ratio [topos: 0.5,0.7,1,1.4; robust: + 2].")]
SeedItersOpt = Annotated[int | None, typer.Option(help="ICP iterations from each start [topos 30; robust 25]."),
                         NON_NEGATIVE]
FinalItersOpt = Annotated[int | None, typer.Option(
    help="Max iterations of the final refinement [topos 300; robust 100]."), NON_NEGATIVE]


# allowed values of each element of a comma-list option (any other list: finite numbers)
LIST_RULES = {"--scales": Range(min=0, min_open=True), "--thresholds": Range(min=0, max=1, min_open=True)}


def float_list(text: str | None, name: str) -> list[float] | None:
    """'0,90,180' -> [0.0, 90.0, 180.0]; None stays None. Each value must be finite and within LIST_RULES."""
    from topos_cli.errors import UsageError

    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{name} takes comma-separated numbers, e.g. 0,90,180,270; got '{text}'") from None
    rule = LIST_RULES.get(name, Range())
    bad = next((v for v in values if not rule.allows(v)), None)
    if bad is not None:
        raise UsageError(f"{name} value {bad:g} is out of range (allowed: {rule.describe()})")
    return values


@handle_errors
def align(
    pred: Annotated[Path, typer.Argument(help="Prediction mesh, or a folder of them (paired by file stem).")],
    gt: Annotated[Path, typer.Argument(help="Ground-truth mesh (stays fixed), or a folder of them.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Aligned mesh file, or a folder for folder input."),
                   Output()] = ...,
    protocol: ProtocolOpt = "robust",
    trim: TrimOpt = None,
    yaws: YawsOpt = None,
    tilts: TiltsOpt = None,
    scales: ScalesOpt = None,
    seed_iters: SeedItersOpt = None,
    final_iters: FinalItersOpt = None,
    seed: SeedOpt = 0,
    workers: WorkersOpt = 1,
    shard: ShardOpt = None,
    force: ForceOpt = False,
    json: JsonOpt = False,
) -> None:
    """Fit s, R, t mapping each prediction onto its ground truth and write the moved prediction.

    Connectivity, UVs, materials and vertex order are kept; normals are rotated. GLB in and out: the
    transform goes on the scene root. --json prints s, R, t, the 4x4 matrix and the trimmed residual.
    """
    from topos_cli import api
    from topos_cli.errors import PartialFailure
    from topos_cli.utils.log import console, emit_json, emit_line

    report = api.align(pred, gt, out, protocol=protocol, trim=trim, yaws=float_list(yaws, "--yaws"),
                       tilts=float_list(tilts, "--tilts"), scales=float_list(scales, "--scales"),
                       seed_iters=seed_iters, final_iters=final_iters, seed=seed, workers=workers, shard=shard,
                       force=force)
    for rec in report["records"]:
        emit_json(rec) if json else emit_line(rec["mesh"])
        if "scale" in rec:
            console.print(f"{rec['id']}: s={rec['scale']:.6g} residual={rec['residual_rel']:.3g} x diag "
                          f"-> {rec['mesh']}", highlight=False)
    bad, unmatched = report["failures"], report["unmatched"]["pred"] + report["unmatched"]["gt"]
    if bad or unmatched:
        raise PartialFailure(f"{len(bad)} pair(s) failed, unmatched stems: {', '.join(unmatched) or 'none'}"
                             + "".join(f"\n  {f['id']}: {f['error']}" for f in bad), bad)
