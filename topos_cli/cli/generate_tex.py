"""`topos generate-tex` (portrait -> relightable UV texture set) and `topos generate` (geometry + texture)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from topos_cli.cli.common import (
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

EPILOG = epilog(
    "topos generate-tex portrait.jpg -o tex/ --json\n\n"
    "topos generate-tex portrait.jpg -o tex/ --mesh head.obj --camera head.camera.json\n\n"
    "topos generate-geo faces/ -o geo/ --json | topos generate-tex - -o tex/"
)
GENERATE_EPILOG = epilog("topos generate portrait.jpg -o out/ --json\n\ntopos generate faces/ -o out/")
SizeOpt = Annotated[int, typer.Option("--size", help="Texture side in texels."), Range(min=64, max=4096)]
MethodOpt = Annotated[str, typer.Option("--method", help="unwrap (classical, CPU), qwen (TOPOS-Texture, local "
                                                          "weights) or learned (the unwrap corrected by a small "
                                                          "UV network; ships as tex-uv-small).")]
WeightsOpt = Annotated[Path | None, typer.Option("--weights", help="Folder with the Qwen-Image-Edit weights and "
                                                                   "the TOPOS-Texture LoRA (--method qwen), or a "
                                                                   "tex-uv checkpoint (--method learned; default: "
                                                                   "the shipped one).")]
LoraOpt = Annotated[Path | None, typer.Option("--lora", help="TOPOS-Texture LoRA folder (default: WEIGHTS/lora; "
                                                             "`topos train tex` writes RUN/lora).")]
ModelOpt = Annotated[Path | None, typer.Option("--model", help="TOPOS-DiT checkpoint for the geometry step.")]
PreviewOpt = Annotated[bool, typer.Option("--preview/--no-preview", help="Render preview.png (3 lights + profile).")]


@handle_errors
def generate_tex(
    input: Annotated[str, typer.Argument(help="Portrait (JPG/PNG), folder of portraits, dataset folder or '-' "
                                              "(JSONL, e.g. generate-geo --json records).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Texture folder (one photo) or dataset folder."),
                   Output("folder")],
    geo: Annotated[Path | None, typer.Option("--geo", help="generate-geo record (JSON): mesh, camera, "
                                                            "expression.")] = None,
    mesh: Annotated[Path | None, typer.Option("--mesh", help="Head in template topology posed as in the "
                                                              "photo.")] = None,
    camera: Annotated[Path | None, typer.Option("--camera", help="Camera JSON that reproduces the photo (README "
                                                                  "'Cameras').")] = None,
    method: MethodOpt = "unwrap",
    size: SizeOpt = 1024,
    pbr: Annotated[bool, typer.Option("--pbr/--no-pbr", help="Also write normal, roughness and specular maps.")] = True,
    preview: PreviewOpt = True,
    weights: WeightsOpt = None,
    lora: LoraOpt = None,
    model: ModelOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "cpu",
    shard: ShardOpt = None,
    force: ForceOpt = False,
    json: JsonOpt = False,
) -> None:
    """Texture a head from a portrait: unwrap, de-light, symmetry fill, completion, PBR maps, OBJ+MTL."""
    from topos_cli import api
    from topos_cli.utils.log import console, emit_json, emit_line

    result = api.generate_tex(input, out, geo=geo, mesh=mesh, camera=camera, method=method, size=size, pbr=pbr,
                              preview=preview, seed=seed, weights=weights, lora=lora, model=model, device=device,
                              shard=shard, force=force)
    for rec in result.records:
        emit_json(rec) if json else emit_line(rec["texture_dir"])
    console.print(f"generate-tex: {len(result.records) - result.skipped} textured, {result.skipped} already done "
                  f"-> {out}")


@handle_errors
def generate(
    input: Annotated[str, typer.Argument(help="Portrait, folder of portraits, dataset folder or '-' (JSONL).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (one photo) or dataset folder."),
                   Output("folder")],
    method: MethodOpt = "unwrap",
    size: SizeOpt = 1024,
    weights: WeightsOpt = None,
    lora: LoraOpt = None,
    model: ModelOpt = None,
    seed: SeedOpt = 0,
    device: DeviceOpt = "cpu",
    shard: ShardOpt = None,
    force: ForceOpt = False,
    json: JsonOpt = False,
) -> None:
    """Portrait -> head (generate-geo) + texture set + preview in one call."""
    from topos_cli import api
    from topos_cli.utils.log import console, emit_json, emit_line

    result = api.generate(input, out, method=method, size=size, seed=seed, weights=weights, lora=lora, model=model,
                          device=device, shard=shard, force=force)
    for rec in result.records:
        emit_json(rec) if json else emit_line(rec["obj"])
    console.print(f"generate: {len(result.records) - result.skipped} heads, {result.skipped} already done -> {out}")
