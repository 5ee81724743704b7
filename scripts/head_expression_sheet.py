"""Contact sheet of augmented heads with expressions (README figure docs/augment_expressions.png).

    python scripts/head_expression_sheet.py -o docs/augment_expressions.png [--prior|--independent]

Draws `--count` copies the way `topos augment --identity-sigma 1 --expressions 3` does (same sampler, item
generators from the seed), renders each head front-on in clay with its parts (eyes, mouth interior), and
tiles them with each head's expression weights printed under it in the terminal. `--independent` draws the
ARKit blendshapes independently (what augment did before the expression prior), for comparison.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from topos_cli.geometry.augment import AugmentConfig, coefficient_delta, sample_coefficients  # noqa: E402
from topos_cli.template import load_template  # noqa: E402

FRAME_REGIONS = ("forehead", "brow", "eye", "nose", "mouth", "chin", "cheekbone")  # the face, not the neck


def independent(tpl, count: int, rng: np.random.Generator) -> dict:
    names = [str(s) for s in tpl.bases["expression_names"]]
    chosen = rng.choice(len(names), size=count, replace=False)
    return {names[i]: float(w) for i, w in zip(chosen, rng.uniform(0, 1, count), strict=True)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--out", type=Path, default=REPO / "docs/augment_expressions.png")
    ap.add_argument("--count", type=int, default=12)
    ap.add_argument("--expressions", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--independent", action="store_true")
    ap.add_argument("--no-parts", action="store_true")
    args = ap.parse_args(argv)
    from topos_cli.io.image import write_png
    from topos_cli.pipelines.render import sheet
    from topos_cli.render.lights import preset_rig
    from topos_cli.render.parts import with_parts
    from topos_cli.render.renderer import Material, Renderer, RenderMesh
    from topos_cli.render.views import framed_camera
    from topos_cli.utils.seeding import item_rng

    tpl = load_template()
    config = AugmentConfig(regions=False, identity_sigma=1.0, expressions=args.expressions)
    renderer, rig, tiles = Renderer("gl"), preset_rig("studio"), []
    for k in range(args.count):
        rng = item_rng(args.seed, f"{tpl.name}-aug{k:03d}")
        coeffs = sample_coefficients(tpl, config, rng)
        if args.independent:
            coeffs["expression"] = independent(tpl, args.expressions, rng)
        verts = tpl.verts + coefficient_delta(tpl, coeffs)
        mesh, material = RenderMesh(verts=verts, faces=tpl.faces), Material()
        if not args.no_parts:
            mesh, material = with_parts(tpl, mesh, material, coeffs.get("identity"), coeffs.get("expression"))
        face = np.concatenate([tpl.region(r) for r in FRAME_REGIONS])
        cam = framed_camera(np.asarray(verts[face], np.float64), 20.0, 5.0, args.size, 20.0)
        tiles.append(renderer.render(mesh, cam, material, rig, "ggx", ("color",), 3)["color"])
        print(f"{k:2d} " + " ".join(f"{n}={w:.2f}" for n, w in coeffs.get("expression", {}).items()))
    cols = 6
    write_png(args.out, sheet([tiles[i:i + cols] for i in range(0, len(tiles), cols)]))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
