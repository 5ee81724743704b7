"""`topos align` and `topos metrics` as functions."""

from __future__ import annotations

from pathlib import Path

from topos_cli.errors import UsageError


def align(pred: str | Path, gt: str | Path, out: str | Path, protocol: str = "robust", trim: float | None = None,
          yaws: list[float] | None = None, tilts: list[float] | None = None, scales: list[float] | None = None,
          seed_iters: int | None = None, final_iters: int | None = None, seed: int = 0, workers: int = 1,
          shard: str | None = None, force: bool = False) -> dict:
    """Similarity-align predictions onto ground truths (`topos align`); the ground truth stays fixed.

    Args:
        pred, gt: two mesh files, or two folders paired by file stem.
        out: the moved prediction (a mesh file; its suffix picks the format) or a folder (one file per pair,
            named like the prediction, plus manifest.jsonl with each transform, meta.json, failures.jsonl).
        protocol: "robust" (default) or "topos" (the paper's trimmed ICP verbatim; see README "Alignment").
        trim / yaws / tilts / scales / seed_iters / final_iters: protocol options; None keeps the default.
        seed: surface-sampling seed (robust protocol); every pair uses this stream (file names do not matter).
        workers: pairs aligned in parallel processes.
        shard: "K/N" to process only that shard of the pairs (folders).
        force: redo pairs whose output exists (folders; a single pair always runs).

    Returns:
        {"out", "records": [{id, mesh, scale, rotation, translation, matrix, residual, ...}], "skipped",
        "failures", "unmatched": {"pred": [...], "gt": [...]}}. Failed pairs are reported, not raised.
    """
    from topos_cli.metrics.pairs import align_options, run_align

    options = align_options(protocol, trim=trim, yaws=yaws, tilts=tilts, scales=scales, seed_iters=seed_iters,
                            final_iters=final_iters)
    if workers < 1:
        raise UsageError("--workers must be >= 1")
    return run_align(pred, gt, out, protocol=protocol, options=options, seed=seed, workers=workers, shard=shard,
                     force=force)


def metrics(pred: str | Path, gt: str | Path, icp: bool = False, protocol: str = "robust", samples: int = 10000,
            threshold: float = 0.01, thresholds: list[float] | None = None, clip: bool = True,
            clip_margin: float = 0.05, seed: int = 0, workers: int = 1, shard: str | None = None,
            template: str | Path | None = None, trim: float | None = None, yaws: list[float] | None = None,
            tilts: list[float] | None = None, scales: list[float] | None = None, seed_iters: int | None = None,
            final_iters: int | None = None) -> dict:
    """Geometry metrics of predictions against ground truths (`topos metrics`), TOPOS appendix D.

    Args:
        pred, gt: two mesh files, or two folders paired by file stem.
        icp: similarity-align each prediction onto its ground truth first (see `align`).
        protocol and trim ... final_iters: alignment options, as in `align`.
        samples: area-weighted samples per surface.
        threshold: F-score threshold relative to the gt's bounding-box diagonal; `thresholds` adds more.
        clip / clip_margin: clip the prediction to the gt's bounding box grown by `clip_margin` (5%).
        seed: sampling seed; every pair uses these streams (file names do not matter).
        workers: pairs evaluated in parallel processes.
        shard: "K/N" to evaluate only that shard of the pairs.
        template: template whose regions give per-region vertex errors for meshes in its topology.

    Returns:
        {"kind": "geometry", "convention", "pairs": [rows], "summary": {metric: {mean, std, n}}, "count",
        "failures", "unmatched"}. Failed or unmatched pairs are reported here, not raised.
    """
    from topos_cli.metrics.pairs import align_options, run_metrics

    if samples < 1 or threshold <= 0 or clip_margin < 0 or workers < 1:
        raise UsageError("need --samples >= 1, --threshold > 0, --clip-margin >= 0 and --workers >= 1")
    opts = align_options(protocol, trim=trim, yaws=yaws, tilts=tilts, scales=scales, seed_iters=seed_iters,
                         final_iters=final_iters)
    metric_options = {"n": samples, "threshold": threshold, "thresholds": tuple(thresholds or ()), "clip": clip,
                      "clip_margin": clip_margin}
    return run_metrics(pred, gt, icp=icp, protocol=protocol, align_opts=opts, metric_options=metric_options,
                       seed=seed, workers=workers, shard=shard, template=template)


def image_metrics(pred: str | Path, gt: str | Path, mask: str | Path | None = None,
                  weights_dir: str | Path | None = None, select: list[str] | tuple = ("psnr", "ssim"),
                  seed: int = 0) -> dict:
    """Texture and identity metrics of rendered images (`topos metrics --images`): PSNR, SSIM, LPIPS, FID, KID, CSIM.

    Args:
        pred, gt: two image files, or two folders paired by file stem.
        mask: folder of masks paired by stem (white = used) restricting PSNR and SSIM.
        weights_dir: folder with the weights files (README "Image metrics"); also $TOPOS_WEIGHTS.
        select: metrics to compute; a selected metric whose weights file is missing is a MissingWeights error.
        seed: KID subset sampling seed.

    Returns:
        {"kind": "images", "convention", "pairs", "summary", "set": {fid, kid_mean, kid_std}, "failures",
        "unmatched"}.
    """
    from topos_cli.metrics.image import run_image_metrics

    return run_image_metrics(pred, gt, mask=mask, weights_dir=weights_dir, select=select, seed=seed)
