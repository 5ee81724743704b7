"""Build a template's export defaults: default skin maps (maps/*.png) and the ARKit name map (arkit_map.json).

    python scripts/build_template_maps.py [--template topos_cli/assets/templates/topos-head] [--size 512]

maps/{albedo,normal,roughness,specular}.png: one procedural skin appearance (render/textures.py, a
mid skin tone, no makeup, fixed seed) in the template's UV layout, in the encodings `topos textures` writes;
`topos export` attaches them when no `--texture` folder is given. Deterministic: the same seed and size give
the same PNGs.

arkit_map.json: how the template's expression basis maps onto Apple ARKit's 52 blendshape names. Each ARKit
name lists the template expressions (with weights) whose deltas sum to it. ICT FaceKit (the source of
topos-head's expressions) splits `browInnerUp` and `cheekPuff` into _L/_R halves: ARKit's single shape is
their sum (the two halves touch only along the midline). ICT has no tongue, so `tongueOut` maps to nothing
and is exported as a zero target (clients that drive it see no motion). Every other name is one-to-one, with
ICT's `_L`/`_R` (the subject's left and right, +x and -x) becoming ARKit's `Left`/`Right`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

ARKIT_52 = [
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff",
    "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight",
    "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight",
    "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight",
    "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel",
    "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker",
    "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft",
    "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight", "tongueOut",
]
SEED = 20261203  # the default appearance's generator seed
TONE = 6  # of 16 (0 very light ... 15 very dark): a mid tone
SIZE = 512  # pixels; four PNGs stay under ~1.5 MB together


def arkit_map(template_names: list[str]) -> dict:
    """{ARKit name: {template name: weight}} for ICT-style names (`eyeBlink_L`, `jawOpen`)."""
    names = set(template_names)
    out = {}
    for arkit in ARKIT_52:
        base, side = (arkit[:-4], "_L") if arkit.endswith("Left") else (arkit[:-5], "_R") if arkit.endswith("Right") \
            else (arkit, "")
        if side and base + side in names:
            out[arkit] = {base + side: 1.0}
        elif arkit in names:
            out[arkit] = {arkit: 1.0}
        elif arkit + "_L" in names and arkit + "_R" in names:  # ICT splits it: ARKit's shape is both halves
            out[arkit] = {arkit + "_L": 1.0, arkit + "_R": 1.0}
        else:
            out[arkit] = {}
    used = {n for parts in out.values() for n in parts}
    missing = sorted(names - used)
    if missing:
        raise SystemExit(f"template expressions with no ARKit name: {missing}")
    return out


def write_maps(template_dir: Path, size: int) -> None:
    from topos_cli.io.image import write_png
    from topos_cli.render.textures import build_atlas, feature_masks, synthesize
    from topos_cli.template import load_template

    tpl = load_template(template_dir)
    atlas = build_atlas(tpl.verts, tpl.faces, tpl.uv, tpl.uv_faces, tpl.regions,
                        tpl.landmarks if len(tpl.landmarks) == 68 else None, size)
    sample = synthesize(atlas, np.random.default_rng(SEED), tone=TONE, makeup=0.0, masks=feature_masks(atlas))
    out = template_dir / "maps"
    out.mkdir(exist_ok=True)
    for name, image in [("albedo", sample.albedo[..., :3]), ("normal", sample.normal[..., :3]),
                        ("roughness", sample.roughness), ("specular", sample.specular)]:
        write_png(out / f"{name}.png", image)
    (out / "params.json").write_text(json.dumps({"seed": SEED, "tone": TONE, "size": size, "makeup": 0.0,
                                                 "params": sample.params}, indent=1, default=float) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", type=Path, default=Path("topos_cli/assets/templates/topos-head"))
    parser.add_argument("--size", type=int, default=SIZE)
    parser.add_argument("--no-maps", action="store_true", help="only write arkit_map.json")
    args = parser.parse_args()
    with np.load(args.template / "bases.npz") as npz:
        names = [str(n) for n in npz["expression_names"]]
    doc = {"format": 1, "basis": "expression", "names": arkit_map(names),
           "notes": {"browInnerUp": "sum of the template's browInnerUp_L and browInnerUp_R",
                     "cheekPuff": "sum of the template's cheekPuff_L and cheekPuff_R",
                     "tongueOut": "no tongue shape in the template: exported as an empty (zero) target",
                     "sides": "template _L/_R are the subject's left/right (+x/-x), as ARKit's Left/Right"}}
    (args.template / "arkit_map.json").write_text(json.dumps(doc, indent=1) + "\n")
    if not args.no_maps:
        write_maps(args.template, args.size)


if __name__ == "__main__":
    main()
