"""`topos render`: pictures, turntables, contact sheets and render datasets of heads."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from topos_cli.cli.common import (
    COUNT,
    MAX_IMAGE_SIZE,
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

MAX_RENDER_SIZE = 4096  # the render pipeline's limit (pipelines/render.py)
MAX_FRAMES = 3600  # a 2.5-minute turntable at 24 fps; more is a typo
MAX_SSAA = 7  # 7x7 supersampling of a 4096 image is already 28672 px a side

EPILOG = epilog(
    "topos render head.obj -o head.png --passes color,normal,depth,mask --lighting studio\n\n"
    "topos render head.obj -o head.gif --turntable --size 256\n\n"
    "topos render head.obj -o sheet.png --contact-sheet\n\n"
    "topos render -o relit.png --random-textures --lighting studio,side,rim,sunset --ssaa 3\n\n"
    "topos render data/aug -o data/renders --per-mesh 8 --random-lighting --random-textures --seed 0 --json"
)


@handle_errors
def render(
    input: Annotated[str | None, typer.Argument(
        help="A mesh, a folder of meshes, a dataset folder or '-' (JSONL on stdin). Default: the template.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="head.png, head.gif/.mp4, or a folder (dataset)."),
                   Output()] = ...,
    template: TemplateOpt = None,
    backend: Annotated[str, typer.Option(help="gl (headless EGL, fast) or torch (differentiable).")] = "gl",
    size: Annotated[int, typer.Option(help="Image size in pixels (square)."), Range(min=16, max=MAX_RENDER_SIZE)] = 512,
    passes: Annotated[str, typer.Option(
        help="Comma list: color, albedo, normal, depth, mask, uv, face_id, region, visibility.")] = "color",
    lighting: Annotated[str, typer.Option(
        help="Preset (studio, sky, sunset, overcast, night, front, side, top, rim), an equirectangular "
             "image, or a JSON light rig; a comma list renders the head under each, side by side.")] = "studio",
    shading: Annotated[str, typer.Option(help="ggx (microfacet) or lambert.")] = "ggx",
    texture: Annotated[Path | None, typer.Option(help="Albedo image for the mesh's UVs.")] = None,
    normal_map: Annotated[Path | None, typer.Option(help="Tangent-space normal map (green = +v).")] = None,
    camera: Annotated[Path | None, typer.Option(help="JSON file with camera records.")] = None,
    views: Annotated[int, typer.Option(help="Orbit of N views around the head."), COUNT] = 1,
    per_mesh: Annotated[int, typer.Option(help="Dataset mode: N perturbed frontal views per mesh."), COUNT] = 1,
    random_lighting: Annotated[bool, typer.Option(help="Dataset mode: random light rig per image.")] = False,
    random_textures: Annotated[bool, typer.Option(help="Dataset mode: random synthesized skin per image.")] = False,
    texture_pool: Annotated[int, typer.Option(help="Random textures drawn from a pool of N (OUT/textures)."),
                            COUNT] = 32,
    texture_size: Annotated[int, typer.Option(help="Size of the random textures in pixels."),
                            Range(min=16, max=MAX_IMAGE_SIZE)] = 512,
    turntable: Annotated[bool, typer.Option(help="Write a turntable animation (.gif/.mp4).")] = False,
    frames: Annotated[int, typer.Option(help="Turntable frames."), Range(min=1, max=MAX_FRAMES)] = 36,
    fps: Annotated[float, typer.Option(help="Turntable frames per second."), Range(min=0, max=240, min_open=True)] = 24.0,
    contact_sheet: Annotated[bool, typer.Option(help="One PNG: geometry, texture and relit views.")] = False,
    ssaa: Annotated[int, typer.Option(help="Supersampling (odd: 1, 3, 5) for smooth color edges."),
                    Range(min=1, max=MAX_SSAA)] = 1,
    normal_space: Annotated[str, typer.Option(help="world or camera normals in the normal pass.")] = "world",
    fov: Annotated[float, typer.Option(help="Vertical field of view in degrees."),
                   Range(min=0, max=180, min_open=True, max_open=True)] = 20.0,
    device: Annotated[str, typer.Option(help="torch backend device: cpu, cuda, auto.")] = "cpu",
    parts: Annotated[bool, typer.Option(help="Draw the template's eyes and mouth interior with its heads.")] = True,
    seed: SeedOpt = 0,
    shard: ShardOpt = None,
    force: ForceOpt = False,
    json: JsonOpt = False,
) -> None:
    """Render heads: colour under relightable GGX shading plus data passes, turntables, contact sheets and
    render datasets with a manifest of every camera, light and texture."""
    from topos_cli import api
    from topos_cli.utils.log import console, emit_json, emit_line

    result = api.render(input, out, template=template, backend=backend, size=size, passes=passes,
                        lighting=lighting, shading=shading, texture=texture, normal_map=normal_map, camera=camera,
                        views=views,
                        per_mesh=per_mesh, random_lighting=random_lighting, random_textures=random_textures,
                        texture_pool=texture_pool, texture_size=texture_size, turntable=turntable, frames=frames,
                        fps=fps,
                        contact_sheet=contact_sheet, ssaa=ssaa, normal_space=normal_space, fov=fov, seed=seed,
                        shard=shard, force=force, device=device, parts=parts)
    for rec in result.records:
        emit_json(rec) if json else emit_line(str(rec["image"]))
    console.print(f"render: {len(result.records) - result.skipped} written, {result.skipped} already done "
                  f"-> {result.out}")
