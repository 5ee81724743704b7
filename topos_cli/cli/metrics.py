"""`topos metrics`: geometry (Chamfer-L1, normal consistency, F-score, per-vertex) and image metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from topos_cli.cli.align import (
    FinalItersOpt,
    ProtocolOpt,
    ScalesOpt,
    SeedItersOpt,
    TiltsOpt,
    TrimOpt,
    YawsOpt,
    float_list,
)
from topos_cli.cli.common import (
    MAX_POINTS,
    NON_NEGATIVE,
    JsonOpt,
    Range,
    SeedOpt,
    ShardOpt,
    TemplateOpt,
    WorkersOpt,
    epilog,
    handle_errors,
)

EPILOG = epilog(
    "topos metrics --icp pred.obj scan.ply --json\n\n"
    "topos metrics --icp preds/ gts/ --workers 2 --csv > metrics.csv\n\n"
    "topos metrics --images renders/pred renders/gt --weights-dir ~/weights --json"
)


@handle_errors
def metrics(
    pred: Annotated[Path, typer.Argument(help="Prediction mesh or folder (images folder with --images).")],
    gt: Annotated[Path, typer.Argument(help="Ground-truth mesh or folder, paired with PRED by file stem.")],
    icp: Annotated[
        bool, typer.Option("--icp", help="Similarity-align each prediction first (as topos align).")
    ] = False,
    images: Annotated[
        bool, typer.Option("--images", help="Image metrics: PSNR, SSIM, LPIPS, FID, KID, CSIM.")
    ] = False,
    samples: Annotated[int, typer.Option("--samples", "-n", help="Surface samples per mesh."),
                       Range(min=1, max=MAX_POINTS)] = 10000,
    threshold: Annotated[
        float, typer.Option(help="F-score threshold, fraction of the gt bbox diagonal."), Range(min=0, max=1, min_open=True)
    ] = 0.01,
    thresholds: Annotated[str | None, typer.Option(help="Extra F-score thresholds, e.g. 0.005,0.02.")] = None,
    clip: Annotated[
        bool, typer.Option(help="Clip the prediction to the gt's bounding box (+margin).")
    ] = True,
    clip_margin: Annotated[float, typer.Option(help="Box growth: 0.05 makes it 5% longer per axis."),
                           NON_NEGATIVE] = 0.05,
    protocol: ProtocolOpt = "robust",
    trim: TrimOpt = None,
    yaws: YawsOpt = None,
    tilts: TiltsOpt = None,
    scales: ScalesOpt = None,
    seed_iters: SeedItersOpt = None,
    final_iters: FinalItersOpt = None,
    template: TemplateOpt = None,
    mask: Annotated[
        Path | None, typer.Option(help="--images: folder of masks paired by stem (white = use).")
    ] = None,
    weights_dir: Annotated[
        Path | None, typer.Option(help="--images: folder with the weights files (see README).")
    ] = None,
    select: Annotated[
        str, typer.Option("--select", help="--images: comma list of metrics to compute.")
    ] = "psnr,ssim",
    seed: SeedOpt = 0,
    workers: WorkersOpt = 1,
    shard: ShardOpt = None,
    json: JsonOpt = False,
    csv: Annotated[bool, typer.Option("--csv", help="Per-pair rows and mean/std as CSV on stdout.")] = False,
) -> None:
    """Compare predictions with ground truths: one pair, or two folders paired by file stem (TOPOS app. D).

    Prints a table on stderr; --json/--csv put the per-pair rows, the mean +- std summary and the
    conventions on stdout. Exit 3 when a pair failed or a file had no partner.
    """
    from topos_cli import api

    if images:
        report = api.image_metrics(pred, gt, mask=mask, weights_dir=weights_dir, select=select.split(","), seed=seed)
    else:
        align = {"trim": trim, "yaws": float_list(yaws, "--yaws"), "tilts": float_list(tilts, "--tilts"),
                 "scales": float_list(scales, "--scales"), "seed_iters": seed_iters, "final_iters": final_iters}
        report = api.metrics(pred, gt, icp=icp, protocol=protocol, samples=samples, threshold=threshold,
                             thresholds=float_list(thresholds, "--thresholds"), clip=clip, clip_margin=clip_margin,
                             seed=seed, workers=workers, shard=shard, template=template, **align)
    _report(report, json=json, csv=csv)


def _report(report: dict, json: bool, csv: bool) -> None:
    """Table on stderr, data on stdout, exit 3 for failed or unmatched pairs."""
    from topos_cli.errors import PartialFailure
    from topos_cli.metrics.pairs import report_csv
    from topos_cli.utils.log import console, emit_json

    _print_table(report)
    if json:
        emit_json(report)
    if csv:
        import sys

        sys.stdout.write(report_csv(report))
        sys.stdout.flush()
    bad, unmatched = report["failures"], report["unmatched"]["pred"] + report["unmatched"]["gt"]
    if bad or unmatched:
        console.print(
            f"unmatched (pred): {report['unmatched']['pred']}  unmatched (gt): {report['unmatched']['gt']}"
        )
        raise PartialFailure(
            f"{len(bad)} pair(s) failed, {len(unmatched)} file(s) without a partner"
            + "".join(f"\n  {f['id']}: {f['error']}" for f in bad),
            bad,
        )


def _print_table(report: dict) -> None:
    from rich.table import Table

    from topos_cli.utils.log import console

    columns = report.get("columns") or [
        c
        for c in ("chamfer_l1", "normal_consistency", "fscore", "clip_area_kept", "v2v_mean")
        if c in report["summary"]
    ]
    table = Table(title=f"topos metrics ({report['kind']})")
    table.add_column("id")
    for col in columns:
        table.add_column(col, justify="right")
    for row in report["pairs"][:50]:
        table.add_row(row["id"], *[_fmt(row.get(c)) for c in columns])
    if len(report["pairs"]) > 50:
        table.add_row(f"... {len(report['pairs']) - 50} more", *["" for _ in columns])
    summary = report["summary"]
    table.add_row(
        "[bold]mean ± std[/]",
        *[f"{summary[c]['mean']:.4g} ± {summary[c]['std']:.2g}" if c in summary else "" for c in columns],
    )
    console.print(table)
    for key, value in report.get("set", {}).items():
        console.print(f"{key}: {value:.6g}", highlight=False)


def _fmt(value) -> str:
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)
