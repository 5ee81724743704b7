"""Build the landmark refiner generate-geo ships (topos_cli/faces/refine.py): render portraits with known landmarks,
then fit the refiner in closed form.

    python scripts/train_landmark_refiner.py data --seed 400 --heads 700 --out runs/landmark-refiner/s400.npz
    python scripts/train_landmark_refiner.py fit runs/landmark-refiner/s4{00..17}.npz --out topos_cli/assets/checkpoints/landmark-refiner-small

`data` renders `--heads` held-apart identities (seeds 400..: never the generator's 0.. / 300..303, the landmark
map's 100.. nor the benchmark's 7000..) like the generator's portraits (scripts/build_geo_dit_data.py portraits:
identity + region blendshapes, one neutral and one expressive view, a pool of 48 synthesized skins, random light
rigs, yaw +-25 deg, 512²), runs mediapipe on each, and stores the grey refiner crop (faces/refine.py CROP_SIZE,
framed by mediapipe's points), mediapipe's points and the true projections of the template points the landmark map
assigns to them, both in crop pixels. `fit` solves the ridge (faces/refine.py `fit_refiner`) on the heads whose
id is not 0 mod 5 and reports the held-out error on the others.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # scripts/ as a package (the portrait renderer)

HELD_OUT_EVERY = 5  # heads with id % 5 == 0 are scored, not fitted


def cmd_data(args) -> None:
    import numpy as np

    from scripts.build_face_landmark_map import random_material, render_portrait
    from scripts.build_geo_dit_data import MAX_YAW_DEG, PORTRAIT_SIZE, VIEWS_PER_HEAD
    from topos_cli.faces.detect import detect_faces
    from topos_cli.faces.refine import refiner_crop
    from topos_cli.geometry.augment import AugmentConfig, coefficient_delta, sample_coefficients
    from topos_cli.geometry.photo_fit import landmark_model
    from topos_cli.pipelines.geo import load_landmark_map
    from topos_cli.render.parts import PartsRenderer
    from topos_cli.template import load_template
    from topos_cli.utils.log import progress

    tpl = load_template(None)
    lmap = load_landmark_map(tpl)
    renderer, tex_cache = PartsRenderer("gl", template=tpl), {}
    pool = [random_material(tpl, np.random.default_rng([args.seed, 1, k]), tex_cache) for k in range(48)]
    neutral_cfg = AugmentConfig(regions=bool(tpl.meta.get("augment")), identity_sigma=1.0, expressions=0)
    expr_cfg = AugmentConfig(regions=False, identity_sigma=0.0, expressions=2, expression_max=0.8)
    ident, expr = tpl.basis("identity"), tpl.basis("expression")
    crops, mp, truth, ids = [], [], [], []
    for i in progress(range(args.heads), description="portraits"):
        rng = np.random.default_rng([args.seed, 0, i])
        neutral = tpl.verts + coefficient_delta(tpl, sample_coefficients(tpl, neutral_cfg, rng))
        for view in range(VIEWS_PER_HEAD):
            posed = neutral
            if view:
                posed = posed + coefficient_delta(tpl, sample_coefficients(tpl, expr_cfg, rng, base_verts=neutral))
            material = pool[int(rng.integers(len(pool)))]
            p = render_portrait(renderer, tpl, posed.astype(np.float32), rng, {"atlas": tex_cache["atlas"]},
                                size=PORTRAIT_SIZE, max_yaw=MAX_YAW_DEG, max_pitch=10.0, max_roll=5.0,
                                material=material)
            faces = detect_faces(p.image)
            if not faces:
                continue
            points = landmark_model(posed, ident[:0], expr[:0], lmap.triangles, lmap.barycentrics, tpl.faces,
                                    lmap.weights).base
            pix, _ = p.camera.project(points)
            crop, mat = refiner_crop(p.image, faces[0].landmarks)
            crops.append(crop)
            mp.append(faces[0].landmarks @ mat[:, :2].T + mat[:, 2])
            truth.append(pix @ mat[:, :2].T + mat[:, 2])
            ids.append((i, view))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.npz")
    np.savez(tmp, crops=np.array(crops), mp=np.array(mp, np.float32), truth=np.array(truth, np.float32),
             ids=np.array(ids), seed=args.seed)
    tmp.replace(out)
    print(f"{len(crops)} portraits of {args.heads} heads -> {out}")


def cmd_fit(args) -> None:
    import numpy as np

    from topos_cli.faces.refine import fit_refiner
    from topos_cli.template import load_template

    parts = [np.load(p) for p in args.inputs]
    crops = np.concatenate([p["crops"] for p in parts])
    mp = np.concatenate([p["mp"] for p in parts])
    truth = np.concatenate([p["truth"] for p in parts])
    held = np.concatenate([p["ids"][:, 0] % HELD_OUT_EVERY == 0 for p in parts])
    heads = np.concatenate([p["ids"][:, 0] + 100_000 * k for k, p in enumerate(parts)])  # one group per head
    refiner, report = fit_refiner(crops[~held], mp[~held], truth[~held], rank=args.rank, lam=args.lam,
                                  stages=args.stages, groups=heads[~held], shape_gain=args.shape_gain)
    refined = refiner.refine_crop_points(crops[held], mp[held])
    first = refiner.refine_crop_points(crops[held], mp[held], stages=1)
    report.update(held_out_portraits=int(held.sum()),
                  held_out_px_before=float(np.linalg.norm(mp[held] - truth[held], axis=2).mean()),
                  held_out_px_after=float(np.linalg.norm(refined - truth[held], axis=2).mean()),
                  held_out_px_first_stage=float(np.linalg.norm(first - truth[held], axis=2).mean()),
                  data=[str(p) for p in args.inputs], template_hash=load_template(None).hash)
    refiner.save(args.out, report)
    print(json.dumps(report, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("data")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--heads", type=int, default=700)
    p.add_argument("--out", required=True)
    p = sub.add_parser("fit")
    p.add_argument("inputs", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--rank", type=int, default=80)
    p.add_argument("--lam", type=float, default=1e4)
    p.add_argument("--stages", type=int, default=2, help="descent steps (each fitted on cross-fitted outputs)")
    p.add_argument("--shape-gain", type=float, default=30.0,
                   help="weight of the points themselves among the descriptors (0: descriptors only)")
    args = parser.parse_args()
    {"data": cmd_data, "fit": cmd_fit}[args.cmd](args)


if __name__ == "__main__":
    main()
