"""Build the TOPOS-DiT training data: augment heads -> portrait-like renders -> landmarks, crops, target latents.

Stages (each resumable; run them in order, niced, in the background):

    topos augment -o runs/geo-dit/aug --copies 2400 --identity-sigma 1 --expressions 2 --expression-max 0.8 --seed 0
    python scripts/build_geo_dit_data.py render  --aug runs/geo-dit/aug --out runs/geo-dit/renders --per-mesh 3
    python scripts/build_geo_dit_data.py cache   --renders runs/geo-dit/renders

`render` is `topos render` dataset mode (perturbed frontal cameras, random lights, random textures) with the
camera's yaw range widened from the render module's +-15 deg to +-25 deg (the range generate-geo supports).
`portraits` is the fast path to many more heads: it renders portraits straight into the cache format with
the landmark-map script's portrait renderer (eyes and mouth parts, a pool of synthesized textures, random
light rigs, yaw +-25 deg), two views per head (one neutral, one with expressions), no PNGs written:

    python scripts/build_geo_dit_data.py portraits --out runs/geo-id/portraits --heads 6000 --seed 100

`cache` runs the face-mesh detector on every render and caches landmarks, the similarity-normalised face crop
(topos_cli/faces/crop.py) and every head's neutral shape (the augment coefficients without the expression) in
RENDERS/cache/ (`topos train dit` builds the same cache itself when it is missing).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/ as a package (the portrait renderer)

MAX_YAW_DEG = 25.0  # the yaw range of the portraits generate-geo supports (issue 16)


def cmd_render(args) -> None:
    from topos_cli import api
    from topos_cli.render import views

    base = views.perturbed_frontal

    def wide(verts, rng, size=512, fov=20.0, **kw):
        return base(verts, rng, size=size, fov=fov, max_azimuth=MAX_YAW_DEG, **kw)

    views.perturbed_frontal = wide  # the dataset mode draws its cameras through this module attribute
    api.render(args.aug, args.out, size=args.size, per_mesh=args.per_mesh, random_lighting=True,
               random_textures=True, texture_pool=args.texture_pool, texture_size=args.texture_size,
               seed=args.seed, shard=args.shard)


def cmd_subset(args) -> None:
    """An augment manifest of the heads whose `per_mesh` renders all exist (to stop a long render early and
    re-run `render` on it: existing images are skipped, the dataset manifest is written)."""
    import json

    from topos_cli.io.manifest import read_manifest

    aug, renders = Path(args.aug).resolve(), Path(args.renders)
    done = []
    for rec in read_manifest(aug):
        folder = renders / "items" / rec["id"]
        if all((folder / f"{rec['id']}-r{k:02d}.png").is_file() for k in range(args.per_mesh)):
            done.append({**rec, "mesh": str(aug / rec["mesh"])})
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in done))
    print(f"{len(done)} complete heads -> {out}")


PORTRAIT_SIZE = 512  # as the benchmark's portraits (benchmarks/generate_geo.py)
VIEWS_PER_HEAD = 2  # view 0 neutral, view 1 with expressions (the benchmark's mix)


def cmd_portraits(args) -> None:
    """Render `--heads` random identities, 2 views each, detect faces, write RENDERS/cache/ as `cache` does."""
    import numpy as np

    from scripts.build_face_landmark_map import random_material, render_portrait
    from topos_cli.faces.crop import CROP_SIZE
    from topos_cli.geometry.augment import AugmentConfig, coefficient_delta, sample_coefficients
    from topos_cli.io.manifest import split_for
    from topos_cli.render.parts import PartsRenderer
    from topos_cli.template import load_template
    from topos_cli.train.data import DIT_CACHE, cache_face
    from topos_cli.utils.log import progress

    tpl = load_template(None)
    renderer, tex_cache = PartsRenderer("gl", template=tpl), {}
    pool = [random_material(tpl, np.random.default_rng([args.seed, 1, k]), tex_cache) for k in range(args.texture_pool)]
    neutral_cfg = AugmentConfig(regions=bool(tpl.meta.get("augment")), identity_sigma=1.0, expressions=0)
    expr_cfg = AugmentConfig(regions=False, identity_sigma=0.0, expressions=2, expression_max=0.8)
    cache = Path(args.out) / DIT_CACHE
    cache.mkdir(parents=True, exist_ok=True)
    rows = args.heads * VIEWS_PER_HEAD
    crops = np.lib.format.open_memmap(cache / "crops.tmp.npy", "w+", np.uint8, (rows, CROP_SIZE, CROP_SIZE, 3))
    lms, found = np.zeros((rows, 478, 3), np.float32), np.zeros(rows, bool)
    neutral = np.zeros((args.heads, tpl.num_verts, 3), np.float32)
    heads = [f"s{args.seed}-h{i:06d}" for i in range(args.heads)]
    for i in progress(range(args.heads), description="portraits"):
        rng = np.random.default_rng([args.seed, 0, i])
        neutral[i] = tpl.verts + coefficient_delta(tpl, sample_coefficients(tpl, neutral_cfg, rng))
        for view in range(VIEWS_PER_HEAD):
            posed = neutral[i]
            if view:
                posed = posed + coefficient_delta(tpl, sample_coefficients(tpl, expr_cfg, rng, base_verts=neutral[i]))
            mats = {"atlas": tex_cache["atlas"]}
            material = pool[int(rng.integers(len(pool)))]
            portrait = render_portrait(renderer, tpl, posed.astype(np.float32), rng, mats, size=PORTRAIT_SIZE,
                                       max_yaw=MAX_YAW_DEG, max_pitch=10.0, max_roll=5.0, material=material)
            face = cache_face(portrait.image)
            row = i * VIEWS_PER_HEAD + view
            if face is not None:
                crops[row], lms[row] = face
                found[row] = True
    crops.flush()
    del crops
    (cache / "crops.tmp.npy").replace(cache / "crops.npy")
    np.savez(cache / "targets.tmp.npz", ids=np.array([f"{h}-v{v}" for h in heads for v in range(VIEWS_PER_HEAD)]),
             landmarks=lms, found=found, render_head=np.repeat(np.arange(args.heads), VIEWS_PER_HEAD),
             heads=np.array(heads), split=np.array([split_for(h) for h in heads]), neutral=neutral,
             template_hash=tpl.hash)
    (cache / "targets.tmp.npz").replace(cache / "targets.npz")
    print(f"{int(found.sum())}/{rows} portraits with a face -> {cache}")


def cmd_merge(args) -> None:
    """Concatenate the caches of several `portraits` runs (distinct seeds) into one dataset folder."""
    import numpy as np

    from topos_cli.train.data import DIT_CACHE

    parts = [np.load(Path(p) / DIT_CACHE / "targets.npz") for p in args.inputs]
    crops = [np.load(Path(p) / DIT_CACHE / "crops.npy", mmap_mode="r") for p in args.inputs]
    out = Path(args.out) / DIT_CACHE
    out.mkdir(parents=True, exist_ok=True)
    rows = sum(len(c) for c in crops)
    merged = np.lib.format.open_memmap(out / "crops.tmp.npy", "w+", np.uint8, (rows,) + crops[0].shape[1:])
    start, heads = 0, 0
    render_head = []
    for part, crop in zip(parts, crops, strict=True):
        merged[start:start + len(crop)] = crop
        render_head.append(part["render_head"] + heads)
        start, heads = start + len(crop), heads + len(part["heads"])
    merged.flush()
    del merged
    (out / "crops.tmp.npy").replace(out / "crops.npy")
    cat = {k: np.concatenate([p[k] for p in parts]) for k in ("ids", "landmarks", "found", "heads", "split", "neutral")}
    np.savez(out / "targets.tmp.npz", render_head=np.concatenate(render_head), template_hash=parts[0]["template_hash"],
             **cat)
    (out / "targets.tmp.npz").replace(out / "targets.npz")
    print(f"{rows} portraits of {heads} heads -> {out}")


def cmd_cache(args) -> None:
    from topos_cli.io.manifest import read_manifest
    from topos_cli.template import load_template
    from topos_cli.train.data import build_dit_cache

    first = read_manifest(Path(args.renders))[0]
    print(build_dit_cache(args.renders, load_template(first.get("template"))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("render")
    p.add_argument("--aug", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--per-mesh", type=int, default=3)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--texture-pool", type=int, default=48)
    p.add_argument("--texture-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shard", default=None)
    p = sub.add_parser("subset")
    p.add_argument("--aug", required=True)
    p.add_argument("--renders", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--per-mesh", type=int, default=3)
    p = sub.add_parser("portraits")
    p.add_argument("--out", required=True)
    p.add_argument("--heads", type=int, default=6000)
    p.add_argument("--texture-pool", type=int, default=64)
    p.add_argument("--seed", type=int, default=100)
    p = sub.add_parser("merge")
    p.add_argument("inputs", nargs="+")
    p.add_argument("--out", required=True)
    p = sub.add_parser("cache")
    p.add_argument("--renders", required=True)
    args = parser.parse_args()
    {"render": cmd_render, "subset": cmd_subset, "portraits": cmd_portraits, "merge": cmd_merge,
     "cache": cmd_cache}[args.cmd](args)


if __name__ == "__main__":
    main()
