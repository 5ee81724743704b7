"""`topos generate-geo`: a portrait in, a head in the template topology out (generator + photo fit)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from topos_cli.cli.common import (
    COUNT,
    NON_NEGATIVE,
    DeviceOpt,
    ForceOpt,
    JsonOpt,
    Output,
    Range,
    SeedOpt,
    ShardOpt,
    epilog,
    handle_errors,
)

MAX_SAMPLER_STEPS = 1000  # rectified flow needs tens of Euler steps; thousands is a typo
MAX_CFG = 50.0  # guidance scales beyond ~10 saturate; 50 leaves room and stops nonsense

EPILOG = epilog(
    "topos generate-geo portrait.jpg -o head.obj --json --overlay\n\n"
    "topos render head.obj -o check.png --camera head.camera.json\n\n"
    "topos generate-geo photos/ -o heads/ --format glb --keep-expression --shard 0/4"
)


@handle_errors
def generate_geo(
    input: Annotated[str, typer.Argument(help="Portrait (JPG/PNG, any size; EXIF-rotated phone photos are fine), "
                                               "a folder of them, a dataset folder or '-' (JSONL with an 'image' "
                                               "path on stdin). Near-frontal, unoccluded faces work best.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Head mesh (.obj with the template's UVs, .ply, .glb) "
                                                          "or, for many photos, a folder."), Output()],
    model: Annotated[Path | None, typer.Option(help="TOPOS-DiT checkpoint folder (default: the shipped one when "
                                                    "present, else the template's mean head is the prior).")] = None,
    samples: Annotated[int, typer.Option(help="Generator draws averaged into the prior head."), COUNT] = 1,
    steps: Annotated[int, typer.Option(help="Sampler steps (rectified-flow Euler)."),
                     Range(min=1, max=MAX_SAMPLER_STEPS)] = 50,
    cfg: Annotated[float | None, typer.Option(help="Classifier-free guidance scale (default: the model's "
                                                   "`sampling.cfg`, else the paper's 3.0)."),
                   Range(min=0, max=MAX_CFG)] = None,
    keep_expression: Annotated[bool, typer.Option(
        "--keep-expression", help="Write the fitted expression instead of the neutral head.")] = False,
    refine: Annotated[bool, typer.Option(help="Fit the head's shape to the photo's landmarks (else keep the prior's).")] = True,
    shading: Annotated[bool, typer.Option(help="Then refine the shape so its shading explains the photo "
                                               "(spherical-harmonics light, constant skin albedo).")] = True,
    landmark_refiner: Annotated[bool, typer.Option(help="Move the detector's points with the shipped landmark "
                                                        "refiner before the fit (trained on topos renders).")] = True,
    overlay: Annotated[bool, typer.Option("--overlay", help="Also write the photo with the fitted mesh over it "
                                                            "(<out>_overlay.png; overlay.png per batch item).")] = False,
    face_index: Annotated[int | None, typer.Option(help="Face to use when there are several (0 = largest)."),
                          NON_NEGATIVE] = None,
    format: Annotated[str, typer.Option(help="Mesh format of batch outputs: obj, ply, glb.")] = "obj",
    seed: SeedOpt = 0,
    device: DeviceOpt = "cpu",
    shard: ShardOpt = None,
    force: ForceOpt = False,
    json: JsonOpt = False,
) -> None:
    """Make a head in the template topology from a portrait: face landmarks, the TOPOS-DiT prior, a photo fit."""
    from topos_cli import api
    from topos_cli.utils.log import console, emit_json, emit_line

    result = api.generate_geo(input, out, model=model, seed=seed, samples=samples, steps=steps, cfg=cfg,
                              keep_expression=keep_expression, refine=refine, shading=shading, overlay=overlay,
                              face_index=face_index, format=format, device=device, shard=shard, force=force,
                              landmark_refiner=landmark_refiner)
    for rec in result.records:
        emit_json(rec) if json else emit_line(rec["mesh"])
        for warning in rec.get("warnings", []):
            console.print(f"[yellow]warning:[/] {rec['id']}: {warning}", highlight=False)
    console.print(f"generate-geo: {len(result.records) - result.skipped} heads, {result.skipped} already done -> {out}")
