"""`topos export` and `topos animate`: a head as a rigged, textured, multi-LOD asset (glTF, USD, OBJ)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from topos_cli.cli.common import JsonOpt, Output, Range, TemplateOpt, epilog, handle_errors

EPILOG = epilog("topos export head.ply -o head.glb\n\n"
                "topos export fit/mesh.ply -o head.usdz --texture data/tex --lod 0,1,2 --json\n\n"
                "topos export head.obj -o head_cm.glb --units cm --names template --rig none")
ANIMATE_EPILOG = epilog("topos animate head.ply -o talk.glb --from take.csv\n\n"
                        "topos animate head.ply -o blink.usda --from keys.json --json\n\n"
                        "topos animate head.ply -o talk.glb --from portrait.mp4\n\n"
                        "topos animate head.ply -o talk.mp4 --from take.csv --size 512")

HeadArg = Annotated[Path | None, typer.Argument(help="Head mesh in template topology (default: the template).")]
TextureOpt = Annotated[Path | None, typer.Option(
    help="A `topos textures` folder or *_albedo.png (default: the template's own skin maps).")]
RigOpt = Annotated[str, typer.Option(help="arkit (joints root/neck/head/jaw/eye_L/eye_R + skin weights) or none.")]
UnitsOpt = Annotated[str, typer.Option(help="m (glTF's unit; engines) or cm (the template's).")]
NamesOpt = Annotated[str, typer.Option(help="Morph target names: arkit (Apple's 52) or template (its own).")]
MAX_FPS = 1000  # capture rates top out at a few hundred frames per second; more is a typo
FpsOpt = Annotated[float | None, typer.Option(help="Frame rate of timecodes / frame-numbered keys (default: file's)."),
                   Range(min=0, max=MAX_FPS, min_open=True)]


def _lods(text: str) -> list[int]:
    from topos_cli.errors import UsageError

    try:
        lods = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--lod takes comma-separated LOD numbers like 0,1,2, got {text!r}") from None
    if not lods or min(lods) < 0:
        raise UsageError(f"--lod {text} is out of range (allowed: LOD numbers >= 0, e.g. 0,1,2)")
    return lods


def _report(result: dict, json: bool) -> None:
    from topos_cli.utils.log import console, emit_json, emit_line

    emit_json(result) if json else emit_line(result["out"])
    console.print(f"export: {result['format']} with {result['morph_targets']} morph targets "
                  f"({result['method']}), LODs {result['lods']}, {len(result['joints'])} joints, "
                  f"{result['frames']} frames -> {result['out']}")


@handle_errors
def export(
    head: HeadArg = None,
    out: Annotated[Path, typer.Option("--out", "-o", help=".glb/.gltf, .usd/.usda/.usdc/.usdz or .obj."),
                   Output("file")] = ...,
    template: TemplateOpt = None,
    texture: TextureOpt = None,
    rig: RigOpt = "arkit",
    lod: Annotated[str, typer.Option(help="LODs to include, e.g. 0,1,2 (see `topos template lod`).")] = "0",
    units: UnitsOpt = "m",
    names: NamesOpt = "arkit",
    method: Annotated[str, typer.Option(
        help="Expressions: auto, linear-model or deformation-transfer.")] = "auto",
    animation: Annotated[Path | None, typer.Option(help="Bake a Live Link Face CSV / keyframe JSON.")] = None,
    fps: FpsOpt = None,
    json: JsonOpt = False,
) -> None:
    """Write a head as a production asset: morph targets (ARKit names), rig, PBR textures, LODs."""
    from topos_cli import api

    _report(api.export(head, out, template=template, texture=texture, rig=rig, lod=_lods(lod), units=units,
                       names=names, method=method, animation=animation, fps=fps), json)


@handle_errors
def animate(
    head: HeadArg = None,
    out: Annotated[Path, typer.Option("--out", "-o", help=".glb/.gltf, .usd/.usda/.usdz or .mp4 (rendered)."),
                   Output("file")] = ...,
    source: Annotated[Path, typer.Option("--from", help=(
        "Live Link Face CSV, keyframe JSON, a portrait video (.mp4/.mov/...) or a folder of frames."))] = ...,
    template: TemplateOpt = None,
    texture: TextureOpt = None,
    rig: RigOpt = "arkit",
    units: UnitsOpt = "m",
    names: NamesOpt = "arkit",
    fps: FpsOpt = None,
    size: Annotated[int, typer.Option(help="Side in pixels of a rendered .mp4."), Range(min=16, max=4096)] = 512,
    smooth: Annotated[float | None, typer.Option(
        help="Video fit: temporal Gaussian sigma in seconds (default 0.015; 0 = off)."), Range(min=0, max=10)] = None,
    identity_frames: Annotated[int | None, typer.Option(
        help="Video fit: first face frames the identity is fitted on (default 3; 0 = the head as is)."),
        Range(min=0, max=1000)] = None,
    json: JsonOpt = False,
) -> None:
    """Bake a facial animation (morph weights, head and eye rotations) onto a head, or render it to .mp4."""
    from topos_cli import api
    from topos_cli.utils.log import console

    result = api.animate(head, out, source, template=template, texture=texture, rig=rig, units=units, names=names,
                         fps=fps, size=size, smooth=smooth, identity_frames=identity_frames)
    if result["tracking"] is not None:
        t = result["tracking"]
        console.print(f"animate: fitted {t['frames']} frames at {t['fit_fps']} frames/s, {t['no_face_frames']} "
                      f"without a face, median landmark error {t['reprojection_px_median']} px")
    _report(result, json)
