"""generate-geo benchmark: synthetic portraits with known heads, identity consistency, real photos.

1. Synthetic suite: held-out heads drawn like the generator's training data (`topos augment --identity-sigma 1`:
   identity + region blendshapes; seeds 7_000.. never used by the landmark map (100..) or training (0..)),
   two portraits each (the first neutral, the second with 2 expressions, so half of the portraits have one),
   rendered by topos's renderer at 512² with random synthetic textures and lights, yaw U(±25°), pitch U(±10°),
   roll U(±5°). The camera intrinsics are the true ones. Error = per-vertex distance of the *neutral* output to
   the truth's neutral head in % of the truth's bbox diagonal, whole head and face, raw (template frame) and
   after a similarity Procrustes on the face; NoW-style: 7 landmarks (iBUG 36, 39, 42, 45, 33, 48, 54), sphere
   crop of the truth at r = 1.4 x, similarity on the 7 points, truth->mesh point-to-surface median/mean in mm
   (without NoW's final rigid ICP refinement).
   Rows: mean head; landmark fit with the template's bases only (the mean head as prior); DiT only; DiT + fit;
   DiT + fit + shading (the photometric refinement, geometry/photo_shading.py: the command's default); the latent
   floor (decode(encode(truth))); the fit with the *true* landmarks (upper bound of the landmark fit).
2. Identity consistency: distance between the two portraits' neutral outputs of one identity (different pose,
   light, texture, expression) vs between outputs of different identities (face Procrustes, % of diagonal).
3. Real photos (public-domain astronaut + Grace Hopper, and ../shared/data/portraits when present): a head from
   each face; reprojection error of landmarks held out of the fit (every 4th usable map point); no shape
   truth exists for them.

    python benchmarks/generate_geo.py --identities 30 [--model DIR] [--json out.json]
    python benchmarks/generate_geo.py --docs docs        # the README figures of the public-domain portraits
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # scripts/ (the portrait renderer shared with the landmark map)

HELD_OUT_SEED = 7_000  # never used by the landmark map (100..) nor by the generator's training data (0..)
FACE_REGIONS = ("eye", "nose", "mouth", "cheek", "chin", "brow", "cheekbone", "jaw")  # as geo_latent_floor.py
NOW_LANDMARKS = (36, 39, 42, 45, 33, 48, 54)  # iBUG 68: outer/inner eye corners, nose bottom, mouth corners
NOW_RADIUS = 1.4  # NoW's crop radius factor
IOU_BROW_POINTS = [70, 63, 105, 66, 107, 336, 296, 334, 293, 300]  # mediapipe brow points: top of the IoU band
IOU_CHIN_POINT = 152  # mediapipe chin tip: bottom of the IoU band
IOU_WIDTH = 1.4  # the band's width around the face oval (the cheeks' outline with background on both sides)
TURNTABLE_FRAMES = 12  # views of the docs turntable GIFs (30 degrees apart)
TURNTABLE_SIZE = 192
HELD_OUT_EVERY = 4  # real photos: every 4th usable landmark is scored, not fitted
TRUE_LM_REG = 1e-5  # the true-landmark fit: almost no prior (noise-free points)
DOCS_TILE = 224  # pixels per tile of the README figures (small PNGs)
DOCS_CROP = 1.7  # crop side around the face box in the overlay tile
ROWS = ("mean head", "bases-only landmark fit", "bases-only fit, refined points", "DiT landmark regression",
        "DiT only", "DiT + fit", "DiT + fit + shading", "DiT + fit + shading, detector's points", "latent floor",
        "fit, true landmarks")


@dataclass
class Case:
    """One synthetic portrait and its truth."""

    identity: int
    view: int
    neutral: np.ndarray  # (V, 3) truth neutral head
    posed: np.ndarray  # (V, 3) what was rendered
    image: np.ndarray
    camera: object
    expression: bool


@dataclass
class Scores:
    rows: dict = field(default_factory=lambda: {r: [] for r in ROWS})
    outputs: dict = field(default_factory=lambda: {r: [] for r in ROWS})
    seconds: dict = field(default_factory=dict)
    shading: list = field(default_factory=list)  # per portrait: did the photometric refinement apply


def make_cases(tpl, identities: int) -> list[Case]:
    from scripts.build_face_landmark_map import render_portrait
    from topos_cli.geometry.augment import AugmentConfig, coefficient_delta, sample_coefficients
    from topos_cli.render.parts import PartsRenderer

    renderer, cache, cases = PartsRenderer("gl", template=tpl), {}, []  # with eyeballs and mouth interior
    neutral_cfg = AugmentConfig(regions=bool(tpl.meta.get("augment")), identity_sigma=1.0, expressions=0)
    expr_cfg = AugmentConfig(regions=False, identity_sigma=0.0, expressions=2, expression_max=0.8)
    for i in range(identities):
        rng = np.random.default_rng([HELD_OUT_SEED, i])
        neutral = (tpl.verts + coefficient_delta(tpl, sample_coefficients(tpl, neutral_cfg, rng))).astype(np.float32)
        for view in range(2):
            posed = neutral
            if view == 1:
                posed = neutral + coefficient_delta(tpl, sample_coefficients(tpl, expr_cfg, rng, base_verts=neutral))
            p = render_portrait(renderer, tpl, posed.astype(np.float32), rng, cache, max_yaw=25.0, max_pitch=10.0,
                                max_roll=5.0)
            cases.append(Case(i, view, neutral, posed, p.image, p.camera, view == 1))
    return cases


def load_or_make_cases(tpl, identities: int, cache: Path | None) -> list[Case]:
    """The suite's portraits, from `cache` (.npz written by an earlier run with the same count) or rendered."""
    from topos_cli.render.camera import from_dict

    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            if int(z["identities"]) == identities:
                cams = json.loads(str(z["cameras"]))
                return [Case(int(z["identity"][k]), int(z["view"][k]), z["neutral"][k], z["posed"][k], z["image"][k],
                             from_dict(cams[k]), bool(z["expression"][k])) for k in range(len(cams))]
    cases = make_cases(tpl, identities)
    if cache is not None:
        np.savez_compressed(cache, identities=identities, identity=[c.identity for c in cases],
                            view=[c.view for c in cases], neutral=np.stack([c.neutral for c in cases]),
                            posed=np.stack([c.posed for c in cases]), image=np.stack([c.image for c in cases]),
                            expression=[c.expression for c in cases],
                            cameras=json.dumps([c.camera.to_dict() for c in cases]))
    return cases


def vertex_errors(pred: np.ndarray, truth: np.ndarray, face: np.ndarray) -> dict:
    """Mean per-vertex error, % of the truth's bbox diagonal: head/face, raw and after face Procrustes."""
    from topos_cli.geometry.similarity import umeyama

    diag = float(np.linalg.norm(truth.max(0) - truth.min(0)))
    aligned = umeyama(pred[face], truth[face]).apply(pred.astype(np.float64))
    raw = np.linalg.norm(pred - truth, axis=1) / diag * 100
    ali = np.linalg.norm(aligned - truth, axis=1) / diag * 100
    return {"head_raw": raw.mean(), "face_raw": raw[face].mean(), "head": ali.mean(), "face": ali[face].mean()}


def now_score(pred: np.ndarray, truth: np.ndarray, tpl) -> dict:
    """NoW-style scan->mesh distance (mm): the truth cropped like a NoW scan, the prediction as the mesh."""
    import trimesh

    from topos_cli.geometry.similarity import umeyama

    lm = tpl.landmarks[list(NOW_LANDMARKS)]
    t = truth[lm]
    bottom, bridge = t[4], (t[1] + t[2]) / 2
    centre = bottom + 0.3 * (bridge - bottom)
    radius = NOW_RADIUS * (np.linalg.norm(t[0] - t[3]) + np.linalg.norm(bridge - bottom)) / 2
    scan = truth[np.linalg.norm(truth - centre, axis=1) < radius]
    sim = umeyama(truth[lm], pred[lm])  # scan onto the prediction, as NoW aligns the scan
    mesh = trimesh.Trimesh(pred, tpl.faces, process=False)
    _, dist, _ = trimesh.proximity.closest_point(mesh, sim.apply(scan.astype(np.float64)))
    dist = dist / sim.scale * 10.0  # cm in the truth's scale -> mm
    return {"now_median_mm": float(np.median(dist)), "now_mean_mm": float(dist.mean())}


def true_landmark_fit(tpl, case: Case, lmap) -> np.ndarray:
    """Neutral head from the landmark fit on the truth's exact projected landmarks (mean head as prior)."""
    from topos_cli.geometry.photo_fit import FitConfig, fit_landmarks, landmark_model

    ident, expr = tpl.basis("identity"), tpl.basis("expression")
    names = [str(n) for n in tpl.bases["expression_names"]]
    truth_points = landmark_model(case.posed, ident[:0], expr[:0], lmap.triangles, lmap.barycentrics,
                                  tpl.faces, lmap.weights).base
    pix, _ = case.camera.project(truth_points)
    model = landmark_model(tpl.verts, ident, expr, lmap.triangles, lmap.barycentrics, tpl.faces, lmap.weights, names)
    cam = case.camera
    fit = fit_landmarks(model, pix, (cam.fx, cam.fy, cam.cx, cam.cy),
                        FitConfig(identity_reg=TRUE_LM_REG, expression_reg=TRUE_LM_REG, max_evals=80))
    return (tpl.verts + np.tensordot(fit.identity, ident, 1)).astype(np.float32)


def run_synthetic(tpl, cases: list[Case], pipes: dict, prior, scores: Scores) -> None:
    from topos_cli.faces.detect import detect_faces
    from topos_cli.pipelines.geo import GeoOptions, load_landmark_map

    face = np.concatenate([tpl.region(r) for r in FACE_REGIONS])
    lmap = load_landmark_map(tpl)
    timing = {k: [] for k in ("detect", "landmark refiner", "bases fit", "DiT prior", "DiT fit", "DiT shading",
                              "true-landmark fit", "latent floor")}
    for n, case in enumerate(cases):
        cam = case.camera
        opts = GeoOptions(intrinsics=(cam.fx, cam.fy, cam.cx, cam.cy), steps=50, shading=False)  # the model's cfg
        preds = {"mean head": tpl.verts}
        res = pipes["bases"](case.image, f"case{n}", seed=n, options=opts)
        preds["bases-only landmark fit"] = res.verts
        if "bases_refined" in pipes:  # the same fit on the landmark refiner's points (faces/refine.py)
            preds["bases-only fit, refined points"] = pipes["bases_refined"](case.image, f"case{n}", seed=n,
                                                                             options=opts).verts
        timing["detect"].append(res.seconds["detect"])
        timing["bases fit"].append(res.seconds["fit"])
        if "dit" in pipes:
            res = pipes["dit"](case.image, f"case{n}", seed=n, options=opts)
            preds["DiT only"], preds["DiT + fit"] = res.prior, res.verts
            raw = detect_faces(case.image)[0]  # the detector's points (res.face holds the refined ones)
            points = np.concatenate([raw.landmarks, raw.depth[:, None]], 1)
            regression = prior.regression(case.image, points)
            if regression is not None:  # the flow's conditional mean alone (models/cond_mean.py)
                preds["DiT landmark regression"] = regression
            timing["DiT prior"].append(res.seconds["prior"])
            timing["DiT fit"].append(res.seconds["fit"])
            if "refine" in res.seconds:
                timing["landmark refiner"].append(res.seconds["refine"])
            opts.shading = True  # the command's default: the photometric refinement after the landmark fit
            res = pipes["dit"](case.image, f"case{n}", seed=n, options=opts)
            preds["DiT + fit + shading"] = res.verts
            if "dit_raw" in pipes:  # the same without the landmark refiner: mediapipe's points drive the fit
                preds["DiT + fit + shading, detector's points"] = pipes["dit_raw"](case.image, f"case{n}", seed=n,
                                                                                   options=opts).verts
            timing["DiT shading"].append(res.seconds["shading"])
            scores.shading.append(bool(res.shading.applied))
            t0 = time.perf_counter()
            preds["latent floor"] = prior.decode(prior.encode(case.neutral))[0]
            timing["latent floor"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        preds["fit, true landmarks"] = true_landmark_fit(tpl, case, lmap)
        timing["true-landmark fit"].append(time.perf_counter() - t0)
        for row, pred in preds.items():
            pred = np.asarray(pred, np.float32)
            scores.rows[row].append({**vertex_errors(pred, case.neutral, face), **now_score(pred, case.neutral, tpl)})
            scores.outputs[row].append(pred)
        print(f"  case {n + 1}/{len(cases)}: bases fit face {scores.rows['bases-only landmark fit'][-1]['face']:.3f} %",
              file=sys.stderr, flush=True)
    scores.seconds = {k: float(np.mean(v)) for k, v in timing.items() if v}


def identity_consistency(tpl, cases: list[Case], outputs: list[np.ndarray]) -> dict:
    """Mean face-Procrustes distance (% diag) between outputs of the same identity and of different ones."""
    face = np.concatenate([tpl.region(r) for r in FACE_REGIONS])
    same, diff = [], []
    for a in range(len(cases)):
        for b in range(a + 1, len(cases)):
            d = vertex_errors(outputs[a], outputs[b], face)["face"]
            (same if cases[a].identity == cases[b].identity else diff).append(d)
    return {"same": float(np.mean(same)), "different": float(np.mean(diff)),
            "ratio": float(np.mean(same) / max(np.mean(diff), 1e-12))}


def real_photos(tpl, pipes: dict) -> list[dict]:
    """Every face of the public-domain and shared portraits: a head, and held-out landmark reprojection."""
    import matplotlib
    from skimage import data

    from topos_cli.faces.detect import as_rgb8, detect_faces
    from topos_cli.io.image import read_photo

    photos = {"astronaut": data.astronaut(),
              "grace_hopper": read_photo(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")}
    shared = REPO.parent / "shared" / "data" / "portraits"
    for path in sorted(shared.glob("*.jp*g")) if shared.is_dir() else []:
        photos[path.stem] = read_photo(path)
    out = []
    for name, img in photos.items():
        img = as_rgb8(img)
        for idx in range(len(detect_faces(img))):
            for key, pipe in pipes.items():
                out.append({"photo": name, "face": idx, "pipeline": key, **_held_out(pipe, img, name, idx)})
    return out


def _held_out(pipe, img, name: str, idx: int) -> dict:
    from topos_cli.pipelines.geo import GeoOptions

    weights = pipe.lmap.weights
    usable = np.flatnonzero(weights > 0)
    held = usable[::HELD_OUT_EVERY]
    pipe.lmap.weights = weights.copy()
    pipe.lmap.weights[held] = 0.0
    try:
        res = pipe(img, name, options=GeoOptions(face_index=idx))
    finally:
        pipe.lmap.weights = weights
    err = np.linalg.norm(res.fit.residual_px, axis=1)
    eyes = float(np.linalg.norm(res.face.landmarks[33] - res.face.landmarks[263]))
    iou = silhouette_iou(pipe, img, res)
    return {"held_out_px": float(np.median(err[held])), "fitted_px": float(np.median(err[np.setdiff1d(usable, held)])),
            "held_out_pct_eyes": float(np.median(err[held]) / eyes * 100), "yaw": res.fit.yaw,
            "face_px": res.face.size, "seconds": res.seconds["total"], "warnings": res.warnings, "silhouette_iou": iou}


def silhouette_iou(pipe, img: np.ndarray, res) -> float:
    """IoU of the fitted head's rendered mask and the photo's person mask (mediapipe selfie segmentation) in the
    face band: rows from the brows to the chin, columns over 1.4x the face oval's width. Above the brows hair
    and below the chin neck/clothes differ from a bald head by design, so they are left out."""
    from topos_cli.faces.detect import segment_person
    from topos_cli.render.renderer import RenderMesh

    if not hasattr(pipe, "_iou_renderer"):
        from topos_cli.render.parts import PartsRenderer

        pipe._iou_renderer = PartsRenderer("gl", template=pipe.template)
    rgba = pipe._iou_renderer.render(RenderMesh(res.posed, pipe.template.faces), res.camera, passes=("color",))["color"]
    head = rgba[..., 3] > 0.5
    person = segment_person(img) > 0.5
    lm = res.face.landmarks
    top, bottom = float(lm[IOU_BROW_POINTS, 1].min()), float(lm[IOU_CHIN_POINT, 1])
    x0, x1 = float(lm[:, 0].min()), float(lm[:, 0].max())
    pad = (x1 - x0) * (IOU_WIDTH - 1.0) / 2
    h, w = head.shape
    rows = slice(max(int(top), 0), min(int(bottom) + 1, h))
    cols = slice(max(int(x0 - pad), 0), min(int(x1 + pad) + 1, w))
    a, b = head[rows, cols], person[rows, cols]
    return float((a & b).sum() / max((a | b).sum(), 1))


def docs_figures(pipe, folder: Path) -> int:
    """docs/generate_geo_<name>.png: the portrait with the fitted mesh over it, then the neutral head turned
    0, 45 and 90 degrees (clay). Public-domain portraits only (the shared photos are for measurement)."""
    import matplotlib
    from skimage import data

    from topos_cli.faces.detect import as_rgb8
    from topos_cli.io.image import read_photo, write_png
    from topos_cli.pipelines.geo import overlay
    from topos_cli.render.parts import PartsRenderer
    from topos_cli.render.renderer import RenderMesh
    from topos_cli.render.views import framed_camera

    photos = {"astronaut": data.astronaut(),
              "grace_hopper": read_photo(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")}
    renderer = PartsRenderer("gl", template=pipe.template)
    for name, img in photos.items():
        img = as_rgb8(img)
        res = pipe(img, name)
        over = overlay(img, res.posed, pipe.template, res.camera)
        x0, y0, x1, y1 = res.face.bbox
        side = int(max(x1 - x0, y1 - y0) * DOCS_CROP)
        cx, cy = int((x0 + x1) / 2), int((y0 + y1) / 2 - 0.1 * side)
        crop = _square_crop(over, cx, cy, side)
        tiles = [_resize_square(crop, DOCS_TILE)]
        for azimuth in (0.0, 45.0, 90.0):
            cam = framed_camera(res.verts, azimuth, 5.0, DOCS_TILE, 20.0, zoom=1.25)
            rgba = renderer.render(RenderMesh(res.verts, pipe.template.faces), cam, passes=("color",))["color"]
            tiles.append((np.clip(rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:]), 0, 1) * 255).astype(np.uint8))
        path = folder / f"generate_geo_{name}.png"
        write_png(path, np.concatenate(tiles, 1))
        _turntable(renderer, res.verts, pipe.template, folder / f"generate_geo_{name}_turntable.gif")
        print(f"{path}: yaw {res.fit.yaw:+.1f}, median landmark error {res.fit.reprojection_px:.2f} px")
    return 0


def _turntable(renderer, verts: np.ndarray, tpl, path: Path) -> None:
    """An animated GIF of the neutral head turning once (clay, TURNTABLE_FRAMES views)."""
    from PIL import Image

    from topos_cli.render.renderer import RenderMesh
    from topos_cli.render.views import framed_camera

    frames = []
    for k in range(TURNTABLE_FRAMES):
        cam = framed_camera(verts, 360.0 * k / TURNTABLE_FRAMES, 5.0, TURNTABLE_SIZE, 20.0, zoom=1.25)
        rgba = renderer.render(RenderMesh(verts, tpl.faces), cam, passes=("color",))["color"]
        rgb = np.clip(rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:]), 0, 1)
        frames.append(Image.fromarray((rgb * 255 + 0.5).astype(np.uint8)))
    tmp = path.with_suffix(".tmp.gif")
    frames[0].save(tmp, save_all=True, append_images=frames[1:], duration=120, loop=0, optimize=True)
    tmp.replace(path)
    print(f"{path}: turntable, {TURNTABLE_FRAMES} views")


def _square_crop(img: np.ndarray, cx: int, cy: int, side: int) -> np.ndarray:
    pad = side
    padded = np.pad(img, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    y0, x0 = cy - side // 2 + pad, cx - side // 2 + pad
    return padded[y0:y0 + side, x0:x0 + side]


def _resize_square(img: np.ndarray, size: int) -> np.ndarray:
    import cv2

    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)


def summarise(scores: Scores) -> dict:
    table = {}
    for row, vals in scores.rows.items():
        if vals:
            table[row] = {k: round(float(np.mean([v[k] for v in vals])), 4) for k in vals[0]}
            table[row]["face_sd"] = round(float(np.std([v["face"] for v in vals])), 4)
    return table


def print_table(table: dict, mean_row: dict) -> None:
    cols = ("face_raw", "face", "head_raw", "head", "now_median_mm", "now_mean_mm")
    print(f"{'row':26s} " + " ".join(f"{c:>13s}" for c in cols) + "   face/mean  head/mean")
    for row, vals in table.items():
        ratio = f"{vals['face'] / mean_row['face']:9.3f}  {vals['head'] / mean_row['head']:9.3f}"
        print(f"{row:26s} " + " ".join(f"{vals[c]:13.4f}" for c in cols) + "   " + ratio)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--identities", type=int, default=30, help="held-out identities (2 portraits each)")
    parser.add_argument("--model", default=None, help="TOPOS-DiT checkpoint (default: the shipped one if present)")
    parser.add_argument("--no-real", action="store_true", help="skip the real photos")
    parser.add_argument("--cache", type=Path, default=None, help="portraits cache (.npz): reused when it exists")
    parser.add_argument("--bases-reg", type=float, default=None, help="identity prior weight of the bases-only fit")
    parser.add_argument("--prior-reg", type=float, default=None, help="identity prior weight around the DiT head")
    parser.add_argument("--expr-reg", type=float, default=None, help="expression prior weight of both fits")
    parser.add_argument("--silhouette", type=float, default=None, help="silhouette weight of both fits")
    parser.add_argument("--json", type=Path, default=None, help="also write all numbers here")
    parser.add_argument("--docs", type=Path, default=None,
                        help="write the README figures (public-domain portraits only) into this folder and stop")
    args = parser.parse_args(argv)
    from topos_cli.pipelines.geo import GeoPipeline
    from topos_cli.template import load_template

    tpl = load_template()
    if args.docs is not None:
        return docs_figures(GeoPipeline.from_pretrained(args.model, template=tpl), args.docs)
    pipes = {"bases": GeoPipeline(tpl, identity_reg=args.bases_reg)}
    if args.expr_reg is not None:
        pipes["bases"].expression_reg = args.expr_reg
    if args.silhouette is not None:
        pipes["bases"].silhouette_weight = args.silhouette
    prior = None
    try:
        dit = GeoPipeline.from_pretrained(args.model, template=tpl)
        if dit.prior is not None:
            dit.identity_reg = args.prior_reg if args.prior_reg is not None else dit.identity_reg
            dit.expression_reg = args.expr_reg if args.expr_reg is not None else dit.expression_reg
            dit.silhouette_weight = args.silhouette if args.silhouette is not None else dit.silhouette_weight
            pipes["dit"], prior = dit, dit.prior
            if dit.refiner is not None:
                pipes["dit_raw"] = GeoPipeline(tpl, dit.prior, dit.model_dir, expression_reg=dit.expression_reg,
                                               silhouette_weight=dit.silhouette_weight)
                pipes["bases_refined"] = GeoPipeline(tpl, identity_reg=args.bases_reg, refiner=dit.refiner,
                                                     expression_reg=pipes["bases"].expression_reg)
    except Exception as exc:  # a missing or half-written checkpoint: benchmark the rest, say why
        print(f"no TOPOS-DiT rows: {exc}", file=sys.stderr)
    t0 = time.perf_counter()
    cases = load_or_make_cases(tpl, args.identities, args.cache)
    render_s = (time.perf_counter() - t0) / len(cases)
    scores = Scores()
    run_synthetic(tpl, cases, pipes, prior, scores)
    table = summarise(scores)
    print(f"synthetic suite: {len(cases)} portraits ({args.identities} held-out identities x 2; half with "
          f"expressions), 512^2, yaw +-25 deg; model: {pipes['dit'].model_dir if 'dit' in pipes else 'none'}; "
          f"expression prior weight {pipes['bases'].expression_reg:g}; silhouette weight "
          f"{pipes['bases'].silhouette_weight:g}; "
          f"identity prior weight: bases fit {pipes['bases'].identity_reg:g}"
          + (f", around the DiT head {pipes['dit'].identity_reg:g}" if "dit" in pipes else ""))
    print_table(table, table["mean head"])
    if scores.shading:
        print(f"photometric refinement applied on {sum(scores.shading)} of {len(scores.shading)} portraits "
              "(the others: too little of the skin fits its shading model)")
    consistency = {row: identity_consistency(tpl, cases, scores.outputs[row])
                   for row in ("bases-only landmark fit", "bases-only fit, refined points", "DiT landmark regression",
                               "DiT only", "DiT + fit", "DiT + fit + shading", "DiT + fit + shading, detector's points")
                   if scores.outputs[row]}
    for row, c in consistency.items():
        print(f"identity consistency, {row}: same {c['same']:.3f} % vs different {c['different']:.3f} % "
              f"(ratio {c['ratio']:.2f})")
    print("seconds per portrait: " + ", ".join(f"{k} {v:.3f}" for k, v in scores.seconds.items())
          + f", render {render_s:.2f}")
    real = [] if args.no_real else real_photos(tpl, pipes)
    for r in real:
        print(f"real {r['photo']}[{r['face']}] {r['pipeline']}: held-out landmarks {r['held_out_px']:.2f} px "
              f"({r['held_out_pct_eyes']:.2f} % of the eye distance), fitted {r['fitted_px']:.2f} px, yaw "
              f"{r['yaw']:+.1f}, silhouette IoU {r['silhouette_iou']:.3f}, {r['seconds']:.2f} s"
              f"{'; ' + '; '.join(r['warnings']) if r['warnings'] else ''}")
    if args.json:
        args.json.write_text(json.dumps({"table": table, "consistency": consistency, "seconds": scores.seconds,
                                         "render_seconds": render_s, "real": real}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
