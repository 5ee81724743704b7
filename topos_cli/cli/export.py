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
                        "topos animate head.ply -o blink.usda --from keys.json --json")

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
    out: Annotated[Path, typer.Option("--out", "-o", help=".glb/.gltf or .usd/.usda/.usdz."), Output("file")] = ...,
    source: Annotated[Path, typer.Option("--from", help="Live Link Face CSV or keyframe JSON.")] = ...,
    template: TemplateOpt = None,
    texture: TextureOpt = None,
    rig: RigOpt = "arkit",
    units: UnitsOpt = "m",
    names: NamesOpt = "arkit",
    fps: FpsOpt = None,
    json: JsonOpt = False,
) -> None:
    """Bake a facial animation (morph weights, head and eye rotations) onto a head."""
    from topos_cli import api

    _report(api.animate(head, out, source, template=template, texture=texture, rig=rig, units=units, names=names,
                        fps=fps), json)
