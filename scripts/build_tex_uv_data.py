"""Build the `learned` generate-tex method's training pairs (topos_cli/train/tex_uv.py) from topos's own renders.

Each sample: a head (identity seed TRAIN_SEED + i; the benchmark's held-out heads are 17_000..) with a
synthesized skin (`render/textures.synthesize`), rendered at 512² by the GGX renderer under a `random_rig`
light, yaw U(±25°), pitch U(±10°) (benchmarks/generate_tex.py's make_case, other seeds); then generate-geo
(the shipped TOPOS-DiT + fit) on the render, and the classical unwrap at 512² through ITS mesh and camera and
through the true ones. Stored at UV_SIZE² (float16, sRGB): the two unwraps' albedo and coverage (photo,
mirrored, completed shares) and the true albedo. Nothing here is committed (runs/ is ignored).

    nice -n 10 python scripts/build_tex_uv_data.py --out runs/tex-uv-data --count 400

Resumable: samples whose file exists are skipped. A sample whose face generate-geo misses keeps only the
true-mesh unwrap (geo_* arrays absent).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

TRAIN_SEED = 20_000  # training identities and textures (the benchmark draws 17_000..)
UNWRAP_SIZE = 512  # the unwrap's size (the benchmark's): the stored maps are its area-downsampled copy
UV_SIZE = 256  # stored side; training may downsample again
PHOTO = 512
MAX_YAW_DEG = 25.0
MAX_PITCH_DEG = 10.0


def textured_portrait(tpl, atlas, renderer, rng: np.random.Generator):
    """(photo uint8, true verts, camera, texture sample) of one synthetic textured portrait drawn from `rng`: a head
    with identity σ 1, a synthesized skin, a GGX render at PHOTO² under a random rig, yaw U(±25°), pitch U(±10°).
    benchmarks/generate_tex.py draws its held-out cases with it (other seeds)."""
    from topos_cli.geometry.augment import AugmentConfig, coefficient_delta, sample_coefficients
    from topos_cli.render.lights import random_rig
    from topos_cli.render.renderer import Material, RenderMesh
    from topos_cli.render.textures import synthesize
    from topos_cli.render.views import framed_camera

    cfg = AugmentConfig(regions=bool(tpl.meta.get("augment")), identity_sigma=1.0, expressions=0)
    verts = (tpl.verts + coefficient_delta(tpl, sample_coefficients(tpl, cfg, rng))).astype(np.float32)
    smp = synthesize(atlas, rng)
    mat = Material(albedo_map=smp.albedo, material_map=np.stack([smp.roughness, smp.specular], -1) / 255.0,
                   normal_map=smp.normal, roughness=1.0, specular=2.0)
    cam = framed_camera(verts, float(rng.uniform(-MAX_YAW_DEG, MAX_YAW_DEG)),
                        float(rng.uniform(-MAX_PITCH_DEG, MAX_PITCH_DEG)), PHOTO, zoom=float(rng.uniform(1.3, 1.6)),
                        shift=tuple((verts[tpl.regions["nose"]].mean(0) - verts.mean(0)) * [1, 1, 0]))
    out = renderer.render(RenderMesh(verts, tpl.faces, uv=tpl.uv, uv_faces=tpl.uv_faces), cam, mat,
                          random_rig(rng), passes=("color",))["color"]
    rgb = out[..., :3] * out[..., 3:] + 0.5 * (1 - out[..., 3:])
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8), verts, cam, smp


def render_case(tpl, atlas, renderer, index: int):
    """(photo uint8, true verts, camera, true sRGB albedo in [0, 1]) of training head `index`."""
    photo, verts, cam, smp = textured_portrait(tpl, atlas, renderer, np.random.default_rng([TRAIN_SEED, index]))
    return photo, verts, cam, smp.albedo / 255.0


def small(img: np.ndarray) -> np.ndarray:
    """Area-downsample a UV map to UV_SIZE² as float16."""
    import cv2

    return cv2.resize(np.asarray(img, np.float32), (UV_SIZE, UV_SIZE), interpolation=cv2.INTER_AREA).astype(np.float16)


def build_sample(tpl, atlas, renderer, geo, index: int) -> dict:
    from topos_cli.pipelines.tex import linear_to_srgb, srgb_to_linear, unwrap_texture

    photo, verts, cam, truth = render_case(tpl, atlas, renderer, index)
    true = unwrap_texture(tpl, UNWRAP_SIZE, photo / 255.0, verts, cam)
    # the truth is averaged in linear light, as the unwraps' downsampled copies are compared in the benchmark
    sample = {"truth": small(linear_to_srgb(small(srgb_to_linear(truth)).astype(np.float64))),
              "true_albedo": small(true.albedo), "true_coverage": small(true.coverage)}
    try:
        res = geo(photo, source=f"sample {index}")
    except Exception as exc:  # noqa: BLE001 - a missed face is recorded, the true-mesh pair is still useful
        print(f"sample {index}: generate-geo failed: {exc}", file=sys.stderr)
        return sample
    fitted = unwrap_texture(tpl, UNWRAP_SIZE, photo / 255.0, res.posed, res.camera)
    return {**sample, "geo_albedo": small(fitted.albedo), "geo_coverage": small(fitted.coverage)}


def main(argv=None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("runs/tex-uv-data"))
    ap.add_argument("--count", type=int, default=400)
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from topos_cli.pipelines.geo import GeoPipeline
    from topos_cli.render.renderer import Renderer
    from topos_cli.render.textures import build_atlas
    from topos_cli.template import load_template

    tpl = load_template("topos-head")
    atlas = build_atlas(tpl.verts, tpl.faces, tpl.uv, tpl.uv_faces, tpl.regions,
                        tpl.landmarks if len(tpl.landmarks) == 68 else None, UNWRAP_SIZE)
    renderer, geo = Renderer("gl"), GeoPipeline.from_pretrained(None, template=tpl)
    items = args.out / "items"
    items.mkdir(parents=True, exist_ok=True)
    for index in range(args.start, args.start + args.count):
        path = items / f"s{index:05d}.npz"
        if path.is_file():
            continue
        t0 = time.perf_counter()
        sample = build_sample(tpl, atlas, renderer, geo, index)
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **sample)
        tmp.rename(path)
        print(f"sample {index}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
