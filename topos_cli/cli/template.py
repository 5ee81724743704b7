"""`topos template info|export|import`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from topos_cli.cli.common import JsonOpt, Output, epilog, handle_errors

app = typer.Typer(no_args_is_help=True, help="Inspect, export and import templates (the fixed topology).")

TemplateArg = Annotated[str | None, typer.Argument(help="Template name or folder (default: topos-head).")]


@app.command("info", epilog=epilog("topos template info\n\ntopos template info topos-head --json"))
@handle_errors
def info(template: TemplateArg = None, json: JsonOpt = False) -> None:
    """Counts, regions, landmarks, bases, boundary loops, mesh quality and topology hash."""
    from topos_cli import api
    from topos_cli.utils.log import console, emit_json

    summary = api.template_info(template)
    if json:
        emit_json(summary)
        return
    from rich.table import Table

    table = Table(title=f"template {summary['name']}  (hash {summary['hash'][:12]})", show_header=False)
    for key in ("num_verts", "num_faces", "num_edges", "boundary_loops", "components", "edge_manifold",
                "degenerate_faces", "min_angle_deg", "landmarks", "symmetry", "has_uv", "units"):
        table.add_row(key, str(summary[key]))
    table.add_row("regions", ", ".join(f"{k} ({v})" for k, v in summary["regions"].items()))
    table.add_row("bases", ", ".join(f"{k} {v[0]}" for k, v in summary["bases"].items()) or "none")
    console.print(table)


@app.command("export", no_args_is_help=True,
             epilog=epilog("topos template export topos-head -o head.obj\n\n"
                           "topos template export -o smile.ply --expression mouthSmile_L=1 --expression mouthSmile_R=1"))
@handle_errors
def export(
    template: TemplateArg = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output mesh (.obj keeps UVs, .ply, .glb)."),
                   Output("file")] = ...,
    identity: Annotated[str | None, typer.Option(help="Comma-separated identity weights, e.g. 1.5,-0.7,0.2.")] = None,
    expression: Annotated[list[str] | None, typer.Option(help="NAME=WEIGHT ARKit expression (repeatable).")] = None,
    weights: Annotated[Path | None, typer.Option(help='JSON {"identity": [...], "expression": {name: w}}.')] = None,
) -> None:
    """Write the template mesh, optionally with identity/expression weights applied."""
    from topos_cli import api
    from topos_cli.errors import UsageError
    from topos_cli.utils.log import emit_line

    try:
        ids = [float(w) for w in identity.split(",")] if identity else None
        exprs = {k: float(v) for k, v in (e.split("=", 1) for e in expression or [])}
    except ValueError:
        raise UsageError("--identity takes numbers like 1.5,-0.7 and --expression takes NAME=WEIGHT") from None
    emit_line(str(api.template_export(template, out, identity=ids, expression=exprs, weights=weights)))


@app.command("import", no_args_is_help=True,
             epilog=epilog("topos template import studio_head.obj -o templates/studio "
                           "--regions regions.json --landmarks lmk68.json"))
@handle_errors
def import_(
    mesh: Annotated[Path, typer.Argument(help="Your topology's mesh in its rest pose (OBJ keeps UVs/quads).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Template folder to create."), Output("folder")] = ...,
    name: Annotated[str | None, typer.Option(help="Template name (default: the folder name).")] = None,
    regions: Annotated[Path | None, typer.Option(help="JSON {region: [vertex ids]}.")] = None,
    landmarks: Annotated[Path | None, typer.Option(help="JSON list of landmark vertex ids (68 = iBUG).")] = None,
    symmetry: Annotated[bool, typer.Option(help="Compute a left/right map by mirroring x.")] = True,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing template folder.")] = False,
    json: JsonOpt = False,
) -> None:
    """Turn a studio's own topology (MetaHuman, FLAME, in-house OBJ) into a template folder."""
    from topos_cli import api
    from topos_cli.utils.log import emit_json, emit_line

    summary = api.template_import(mesh, out, name=name, regions=regions, landmarks=landmarks,
                                  symmetry=symmetry, force=force)
    emit_json(summary) if json else emit_line(str(out))


@app.command("lod", epilog=epilog("topos template lod\n\ntopos template lod topos-head -o lods/ --json"))
@handle_errors
def lod(
    template: TemplateArg = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Also write LOD<k>.obj files here."),
                   Output("folder")] = None,
    rebuild: Annotated[bool, typer.Option("--rebuild", help="Rebuild even when the cache has the chain.")] = False,
    json: JsonOpt = False,
) -> None:
    """Build the template's LOD chain (~10k -> 5k -> 2.5k -> 1.2k vertices, UVs kept), cached for `topos export`."""
    from topos_cli import api
    from topos_cli.utils.log import console, emit_json, emit_line

    result = api.template_lod(template, out=out, rebuild=rebuild)
    if json:
        emit_json(result)
        return
    emit_line(result["out"] or result["cache"])
    console.print("LODs: " + ", ".join(f"LOD{r['lod']} {r['verts']} verts / {r['faces']} tris" for r in result["lods"]))
