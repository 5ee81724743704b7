"""Build the TOPOS-DiT training data: augment heads -> portrait-like renders -> landmarks, crops, target latents.

Stages (each resumable; run them in order, niced, in the background):

    topos augment -o runs/geo-dit/aug --copies 2400 --identity-sigma 1 --expressions 2 --expression-max 0.8 --seed 0
    python scripts/build_geo_dit_data.py render  --aug runs/geo-dit/aug --out runs/geo-dit/renders --per-mesh 3
    python scripts/build_geo_dit_data.py cache   --renders runs/geo-dit/renders

`render` is `topos render` dataset mode (perturbed frontal cameras, random lights, random textures) with the
camera's yaw range widened from the render module's +-15 deg to +-25 deg (the range generate-geo supports).
`cache` runs the face-mesh detector on every render and caches landmarks, the similarity-normalised face crop
(topos_cli/faces/crop.py) and every head's neutral shape (the augment coefficients without the expression) in
RENDERS/cache/ (`topos train dit` builds the same cache itself when it is missing).
"""

from __future__ import annotations

import argparse
from pathlib import Path

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
    p = sub.add_parser("cache")
    p.add_argument("--renders", required=True)
    args = parser.parse_args()
    {"render": cmd_render, "subset": cmd_subset, "cache": cmd_cache}[args.cmd](args)


if __name__ == "__main__":
    main()
