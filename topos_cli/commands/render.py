"""`topos render` and `topos textures` as functions."""

from __future__ import annotations

from pathlib import Path

from topos_cli.errors import UsageError
from topos_cli.io.manifest import BatchResult
from topos_cli.template import load_template


def render(input: str | Path | None, out: str | Path, template: str | Path | None = None, backend: str = "gl",
           size: int = 512, passes: tuple[str, ...] | str = ("color",), lighting: str = "studio",
           shading: str = "ggx", texture: str | Path | None = None, normal_map: str | Path | None = None,
           camera: str | Path | None = None,
           views: int = 1, per_mesh: int = 1, random_lighting: bool = False, random_textures: bool = False,
           texture_pool: int = 32, texture_size: int = 512, turntable: bool = False, frames: int = 36,
           fps: float = 24.0, contact_sheet: bool = False, ssaa: int = 1, normal_space: str = "world",
           fov: float = 20.0, seed: int = 0, shard: str | None = None, force: bool = False,
           device: str = "cpu", parts: bool = True) -> BatchResult:
    """Render meshes (`topos render`). The mode follows OUT:

    * `head.png`: one picture (passes beside it as head_<pass>.png; `views` > 1 gives head_vNN.png);
    * `head.gif` / `head.mp4` (or `turntable`): a turntable of `frames` frames;
    * `contact_sheet` with a .png: geometry, texture and relit views side by side;
    * a folder: a render dataset (manifest.jsonl with camera, lighting and texture of every image;
      `per_mesh` perturbed frontal cameras or an orbit of `views`; resumable; `shard` "K/N").

    Args:
        input: mesh file, folder of meshes, dataset folder, '-' (JSONL on stdin) or None (the template).
        backend: "gl" (EGL rasterizer, fast) or "torch" (differentiable, CPU/CUDA; same pictures).
        passes: names or a comma list from color, albedo, normal, depth, mask, uv, face_id, region, visibility.
        lighting: preset (studio, sky, sunset, overcast, night, front, side, top, rim), an equirectangular
            image, or a JSON light rig.
        shading: "ggx" (microfacet, relightable) or "lambert".
        texture: albedo image for the mesh's UVs (default: the mesh's own texture, else clay).
        normal_map: tangent-space normal map for the mesh's UVs (OpenGL convention: green = +v).
        random_textures: synthesized skin (seeded) for meshes in template topology; in dataset mode each
            image draws from a pool of `texture_pool` textures of `texture_size` pixels.
        camera: JSON file with camera records (see README "Cameras").
        ssaa: odd supersampling factor for color/albedo (1 = off).
        normal_space: "world" or "camera" for the normal pass.
        seed: seeds random cameras, lighting and textures (bit-identical for the same seed).
        parts: draw the template's eyeballs, teeth, tongue and mouth socket with heads in its topology.
    """
    from topos_cli.io.batch import raise_failures
    from topos_cli.io.manifest import run_meta
    from topos_cli.pipelines import render as job
    from topos_cli.utils.device import render_device

    if views < 1 or per_mesh < 1 or frames < 1:
        raise UsageError("--views, --per-mesh and --frames must be >= 1")
    opts = job.make_options(size=size, backend=backend, device=render_device(device, backend), passes=passes,
                            lighting=lighting, shading=shading, ssaa=ssaa, normal_space=normal_space,
                            texture=texture, fov=fov, template=template, random_texture=random_textures, seed=seed,
                            normal_map=normal_map, parts=parts)
    out = Path(out)
    suffix = out.suffix.lower()
    result = BatchResult(out=out)
    if turntable or suffix in (".gif", ".mp4", ".webm"):
        job.check_animation_output(out)
        result.records.append(job.render_turntable(input, out, opts, frames, fps))
    elif contact_sheet:
        if suffix != ".png":
            raise UsageError(f"--contact-sheet writes one picture: give -o with .png, not {out.name}")
        result.records.append(job.render_contact_sheet(input, out, opts))
    elif suffix == ".png":
        result.records.extend(job.render_images(input, out, opts, camera, views))
    elif suffix:
        raise UsageError(f"-o {out}: give a .png, .gif/.mp4 or a folder (dataset mode)")
    else:
        meta = run_meta("render", seed=seed, template=job.MeshSource(template).try_template(), backend=backend,
                        size=size, passes=list(opts.passes), shading=shading, per_mesh=per_mesh, views=views,
                        random_lighting=random_lighting, random_textures=random_textures, texture_pool=texture_pool,
                        texture_size=texture_size, ssaa=ssaa, normal_space=normal_space, parts=parts,
                        input=None if input is None else str(input))
        result = job.render_dataset(input, out, opts, views, per_mesh, random_lighting, random_textures,
                                    texture_pool, camera, seed, shard, force, texture_size, meta=meta)
        raise_failures(result, "mesh(es)", "images written")
    return result


def textures(template: str | Path | None, out: str | Path, count: int = 16, seed: int = 0, size: int = 512,
             makeup: float = 0.5, shard: str | None = None, force: bool = False) -> BatchResult:
    """Synthesize appearance maps in the template's UV space (`topos textures`).

    Writes OUT/items/texNNN_{albedo,roughness,specular}.png (+ texNNN.json with the drawn parameters),
    OUT/manifest.jsonl and OUT/meta.json. Skin tones span 16 melanin levels; makeup, tints, pores and
    roughness/specular perturbations are drawn per texture from (seed, texture id).

    Args:
        template: template name or folder (must have UVs).
        count: number of textures. size: texture size in pixels.
        makeup: probability of each makeup element (blush, lipstick, eyeshadow, eyeliner; tattoos at 1/5).
    """
    from topos_cli.io.manifest import run_meta
    from topos_cli.pipelines.texture_pool import synthesize_textures

    if not 0 <= makeup <= 1:
        raise UsageError(f"--makeup is a probability in [0, 1], got {makeup}")
    tpl = load_template(template)
    meta = run_meta("textures", seed=seed, template=tpl, count=count, size=size, makeup=makeup)
    return synthesize_textures(tpl, Path(out), count, seed, size, makeup, shard, force, meta=meta)
