"""generate-tex benchmark: synthetic portraits with known albedo, timing, and the real-photo de-lighting test.

1. Synthetic suite: held-out heads (identity seeds 17_000.., never used elsewhere) with held-out procedural
   textures (`render/textures.synthesize`, seeds 17_000..), rendered by topos's renderer (GGX with the
   texture's roughness/specular/normal maps) at 512² under `random_rig` lights, yaw U(±25°), pitch U(±10°).
   Albedo error in the UV layout against the truth, gain-invariant (one per-channel gain per texture, fitted
   on the texels the photo saw, applied to every class), on a 0-1 sRGB scale: MAE, MAE after a 4-texel blur,
   and SSIM of the luminance, per texel class of the true-mesh unwrap (photo / mirrored / completed share
   > 0.5). Rows, same portraits: constant colour (the best constant: the truth's median); unwrap with the
   true mesh and camera; the same without de-lighting; unwrap with generate-geo's mesh and camera (with
   `FITTED_HEAD`, as `topos generate` runs it, and with the exact-head settings as an ablation); both again
   with the photo registered by the landmark warp (`texture/register.py`; mediapipe's landmarks from generate-geo);
   `--method learned` (the unwrap corrected by the shipped tex-uv-small network) on the true and generate-geo heads.
   Then the relit-render protocol and seam visibility of every row (`tex_protocol.py`).
2. Seconds per portrait of the unwrap and of `--method learned` at 1024² (warm: template assets cached), true mesh.
3. Real photos (public-domain astronaut + Grace Hopper, and ../shared/data/portraits when present; nothing
   made from the shared photos is written): generate-geo's head (exact-head settings: the test is about the
   de-lighting), then the de-lighting test — the photo
   with the half left (right) of the head's centre darkened (x0.45 in linear light, a soft ramp) must give
   nearly the same albedo as the photo itself: MAE between the two albedos on the texels both saw (one gain),
   with and without de-lighting.

    python benchmarks/generate_tex.py --portraits 12 [--json out.json] [--docs docs/]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import tex_protocol as tp  # noqa: E402

HELD_OUT_SEED = 17_000  # identities and textures no other script draws
SIZE = 512  # texture side for the error tables (the timing row uses 1024)
PHOTO = 512
BLUR_TEXELS = 4  # "MAE after a 4 px blur": forgives misplaced pores, keeps misplaced features
DARKEN = 0.45  # the relight test's darkened half
ROWS = ("constant colour", "unwrap, true mesh", "unwrap, true mesh, no de-lighting", "unwrap, generate-geo mesh",
        "unwrap, generate-geo mesh, landmark warp", "unwrap, true mesh, landmark warp", "learned, true mesh",
        "learned, generate-geo mesh", "unwrap, generate-geo mesh, exact-head settings")
LEARNED = (ROWS[6], ROWS[7])  # --method learned (the shipped tex-uv-small) on the two heads; absent without it
CLASSES = ("photo", "mirrored", "completed")


def linear_to_srgb(c):
    from topos_cli.pipelines.tex import linear_to_srgb as f

    return f(c)


@dataclass
class Case:
    """One synthetic portrait: the photo (uint8), the true head and camera, the true linear albedo and the true
    texture sample (its PBR maps, for the relit renders)."""

    photo: np.ndarray
    verts: np.ndarray
    camera: object
    truth: np.ndarray
    sample: object


def make_case(tpl, atlas, i: int, renderer) -> Case:
    """The i-th held-out portrait (the learned method's data builder draws its training ones the same way)."""
    from scripts.build_tex_uv_data import textured_portrait
    from topos_cli.pipelines.tex import srgb_to_linear

    photo, verts, cam, smp = textured_portrait(tpl, atlas, renderer, np.random.default_rng([HELD_OUT_SEED, i]))
    return Case(photo, verts, cam, srgb_to_linear(smp.albedo / 255.0), smp)


def _gain(pred_lin: np.ndarray, truth_lin: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-channel gain of a prediction to the truth, fitted on `mask` (the light's level is unobservable)."""
    return np.median(truth_lin[mask] / np.maximum(pred_lin[mask], 1e-4), axis=0)


def scores(pred_lin: np.ndarray, truth_lin: np.ndarray, classes: dict) -> dict:
    """sRGB MAE, blurred MAE and luminance SSIM per texel class (gain already applied)."""
    from scipy import ndimage
    from skimage.metrics import structural_similarity

    p, t = linear_to_srgb(pred_lin), linear_to_srgb(truth_lin)
    pb = np.stack([ndimage.gaussian_filter(p[..., c], BLUR_TEXELS / 2) for c in range(3)], -1)
    tb = np.stack([ndimage.gaussian_filter(t[..., c], BLUR_TEXELS / 2) for c in range(3)], -1)
    luma = np.array([0.2126, 0.7152, 0.0722])
    _, ssim = structural_similarity(p @ luma, t @ luma, data_range=1.0, full=True, gaussian_weights=True)
    return {name: {"mae": float(np.abs(p - t)[m].mean()), "mae_blur": float(np.abs(pb - tb)[m].mean()),
                   "ssim": float(ssim[m].mean())} for name, m in classes.items()}


@dataclass
class RowOutput:
    """One row's prediction on one portrait: linear albedo and the texture set (None: the constant colour)."""

    albedo: np.ndarray
    result: object = None


def _rows(tpl, case: Case, true, geo, i: int, covered: np.ndarray, learned=None) -> dict:
    """Every row's prediction for one portrait (the generate-geo row is missing when its face fit fails;
    `learned`: a TexturePipeline with method "learned", or None)."""
    from topos_cli.pipelines.tex import EXACT_HEAD, FITTED_HEAD, unwrap_texture

    const = np.broadcast_to(np.median(case.truth[covered], 0), case.truth.shape)
    rows = {ROWS[0]: RowOutput(const), ROWS[1]: RowOutput(_lin(true.albedo), true)}
    flat = unwrap_texture(tpl, SIZE, case.photo / 255.0, case.verts, case.camera, relight=False)
    rows[ROWS[2]] = RowOutput(_lin(flat.albedo), flat)
    if learned is not None:
        out = learned(case.photo / 255.0, case.verts, case.camera)
        rows[LEARNED[0]] = RowOutput(_lin(out.albedo), out)
    if geo is not None:
        try:
            res = geo(case.photo, source=f"case {i}")
            fitted = unwrap_texture(tpl, SIZE, case.photo / 255.0, res.posed, res.camera, head=FITTED_HEAD)
            rows[ROWS[3]] = RowOutput(_lin(fitted.albedo), fitted)
            exact = unwrap_texture(tpl, SIZE, case.photo / 255.0, res.posed, res.camera)  # ablation: trust 1
            rows[ROWS[8]] = RowOutput(_lin(exact.albedo), exact)
            if learned is not None:
                out = learned(case.photo / 255.0, res.posed, res.camera)
                rows[LEARNED[1]] = RowOutput(_lin(out.albedo), out)
            for row, verts, cam, head in ((ROWS[4], res.posed, res.camera, FITTED_HEAD),
                                          (ROWS[5], case.verts, case.camera, EXACT_HEAD)):
                warped = unwrap_texture(tpl, SIZE, case.photo / 255.0, verts, cam, landmarks=res.face.landmarks,
                                        head=head)
                rows[row] = RowOutput(_lin(warped.albedo), warped)
        except Exception as exc:  # noqa: BLE001 - a missed face is a result, reported
            print(f"case {i}: generate-geo failed: {exc}", file=sys.stderr)
    return rows


def run_synthetic(tpl, count: int, with_geo: bool, protocol: bool = True) -> dict:
    from topos_cli.pipelines.tex import unwrap_texture
    from topos_cli.render.renderer import Renderer
    from topos_cli.render.textures import build_atlas

    atlas = build_atlas(tpl.verts, tpl.faces, tpl.uv, tpl.uv_faces, tpl.regions,
                        tpl.landmarks if len(tpl.landmarks) == 68 else None, SIZE)
    renderer = Renderer("gl")
    geo = None
    if with_geo:
        from topos_cli.pipelines.geo import GeoPipeline

        geo = GeoPipeline.from_pretrained(None, template=tpl)
    learned = _learned_pipeline(tpl, SIZE)
    table = {r: [] for r in ROWS}
    relit, seams = {r: [] for r in ROWS}, {r: [] for r in ROWS}
    fractions = []
    for i in range(count):
        case = make_case(tpl, atlas, i, renderer)
        true = unwrap_texture(tpl, SIZE, case.photo / 255.0, case.verts, case.camera)
        cov = true.coverage
        classes = {"photo": cov[..., 0] > 0.5, "mirrored": cov[..., 1] > 0.5, "completed": cov[..., 2] > 0.5}
        fractions.append([float(classes[c].sum() / atlas.covered.sum()) for c in CLASSES])
        truth_renders = masks = None
        if protocol:
            truth_renders = tp.relit_renders(tpl, case.verts, tp.truth_material(case.sample), renderer, i)
            masks = tp.face_masks(tpl, case.verts, renderer)
        for name, row in _rows(tpl, case, true, geo, i, atlas.covered, learned).items():
            pred = row.albedo * _gain(row.albedo, case.truth, classes["photo"])
            table[name].append(scores(pred, case.truth, classes))
            if protocol:
                material = (tp.constant_material(pred, case.sample) if row.result is None
                            else tp.result_material(pred, row.result))
                score = tp.compare_renders(tp.relit_renders(tpl, case.verts, material, renderer, i), truth_renders,
                                           masks)
                relit[name].append(score)
                seams[name].append(_seam_scores(tpl, pred, case.truth, row.result, atlas.covered))
        print(f"case {i}: done", file=sys.stderr)
    out = {"rows": {r: _mean(v) for r, v in table.items() if v}, "counts": {r: len(v) for r, v in table.items()},
           "class_fractions": dict(zip(CLASSES, np.mean(fractions, 0).round(3).tolist(), strict=True))}
    if protocol:
        out["relit"] = {r: _relit_summary(v, relit[ROWS[0]]) for r, v in relit.items() if v}
        out["seams"] = {r: {k: _nanmean([s[k] for s in v]) for k in v[0]} for r, v in seams.items() if v}
    return out


def _learned_pipeline(tpl, size: int):
    """`--method learned` with the shipped weights, or None (the learned rows are left out) when none ship."""
    from topos_cli.errors import MissingWeights
    from topos_cli.pipelines.tex import TexturePipeline

    try:
        return TexturePipeline(tpl, size, "learned")
    except MissingWeights as exc:
        print(f"learned rows skipped: {exc}", file=sys.stderr)
        return None


def _nanmean(values: list) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return round(float(np.mean(finite)), 4) if finite else float("nan")


def _seam_scores(tpl, pred_lin, truth_lin, result, covered) -> dict:
    """Chart-seam colour jump and texel-class border gradient ratio, produced vs truth (see tex_protocol)."""
    samples = tp.seam_samples(tpl, SIZE)
    p, t = linear_to_srgb(pred_lin), linear_to_srgb(truth_lin)
    out = {"seam_jump": tp.seam_jump(p, samples), "seam_jump_truth": tp.seam_jump(t, samples)}
    if result is None:
        return {**out, "border_ratio": float("nan"), "border_ratio_truth": float("nan")}
    return {**out, "border_ratio": tp.border_ratio(p, result.coverage, covered),
            "border_ratio_truth": tp.border_ratio(t, result.coverage, covered)}


def _relit_summary(scores_: list, const: list) -> dict:
    """Mean PSNR/SSIM per view over portraits, overall means, and the views where the row beats the constant
    colour on both (portrait means; only portraits both rows have)."""
    psnr, ssim = np.mean([s.psnr for s in scores_], 0), np.mean([s.ssim for s in scores_], 0)
    n = min(len(scores_), len(const))
    beats = [bool(np.mean([s.psnr[v] - c.psnr[v] for s, c in zip(scores_[:n], const[:n], strict=True)]) > 0
                  and np.mean([s.ssim[v] - c.ssim[v] for s, c in zip(scores_[:n], const[:n], strict=True)]) > 0)
             for v in range(len(psnr))]
    return {"psnr": round(float(psnr.mean()), 3), "ssim": round(float(ssim.mean()), 4),
            "psnr_views": psnr.round(2).tolist(), "ssim_views": ssim.round(4).tolist(),
            "views_beating_constant": int(sum(beats))}


def _lin(srgb):
    from topos_cli.pipelines.tex import srgb_to_linear

    return srgb_to_linear(srgb)


def _mean(rows: list[dict]) -> dict:
    return {c: {k: round(float(np.mean([r[c][k] for r in rows])), 4) for k in rows[0][c]} for c in rows[0]}


def timing(tpl, repeats: int = 3) -> dict:
    from topos_cli.pipelines.tex import template_assets, unwrap_texture
    from topos_cli.render.renderer import Renderer
    from topos_cli.render.textures import build_atlas

    atlas = build_atlas(tpl.verts, tpl.faces, tpl.uv, tpl.uv_faces, tpl.regions, None, 256)
    case = make_case(tpl, atlas, 0, Renderer("gl"))
    photo, verts, cam = case.photo, case.verts, case.camera
    t0 = time.perf_counter()
    template_assets(tpl, 1024)
    cold = time.perf_counter() - t0
    runs, stages = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = unwrap_texture(tpl, 1024, photo / 255.0, verts, cam)
        runs.append(time.perf_counter() - t0)
        stages.append(res.stats["seconds"])
    out = {"size": 1024, "seconds_warm_median": round(float(np.median(runs)), 3),
           "seconds_template_assets_once": round(cold, 3), "stages": stages[int(np.argmin(runs))]}
    learned = _learned_pipeline(tpl, 1024)
    if learned is not None:  # the whole --method learned call: unwrap + network + re-derived PBR maps
        learned(photo / 255.0, verts, cam)  # warm: the network's template channels
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            res = learned(photo / 255.0, verts, cam)
            runs.append(time.perf_counter() - t0)
        out["learned_seconds_warm_median"] = round(float(np.median(runs)), 3)
        out["learned_stage_seconds"] = res.stats["seconds"].get("learned")
    return out


def real_photos(tpl, docs: Path | None) -> list[dict]:
    from topos_cli.pipelines.geo import GeoPipeline
    from topos_cli.pipelines.tex import unwrap_texture

    geo = GeoPipeline.from_pretrained(None, template=tpl)
    out = []
    for name, img, public in _photos():
        try:
            res = geo(img, source=name)
        except Exception as exc:  # noqa: BLE001
            out.append({"photo": name, "error": str(exc)})
            continue
        rec = {"photo": name}
        centre = float(res.camera.resized(img.shape[1], img.shape[0]).project(res.posed)[0][:, 0].mean())
        for relight in (True, False):
            albedos = []
            for side in (None, "left", "right"):
                texture = unwrap_texture(tpl, SIZE, _darken(img, side, centre) / 255.0, res.posed, res.camera,
                                         relight)
                albedos.append((_lin(texture.albedo), texture.coverage[..., 0] > 0.5))
            key = "delit" if relight else "no_delight"
            rec[key] = [round(_pair_mae(albedos[0], a), 4) for a in albedos[1:]]
        if docs is not None and public:
            _write_docs(docs, name, img, res, tpl)
        out.append(rec)
        print(f"{name}: {rec}", file=sys.stderr)
    return out


def _photos():
    import matplotlib
    from skimage import data

    from topos_cli.faces.detect import as_rgb8
    from topos_cli.io.image import read_photo

    yield "astronaut", as_rgb8(data.astronaut()), True
    yield "grace_hopper", as_rgb8(read_photo(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")), True
    shared = REPO.parent / "shared" / "data" / "portraits"
    if shared.is_dir():
        for p in sorted(shared.iterdir()):
            if p.suffix.lower() in (".jpg", ".jpeg", ".png"):
                yield p.stem, as_rgb8(read_photo(p)), False


def _darken(img: np.ndarray, side: str | None, centre: float) -> np.ndarray:
    """The photo with the part left (or right) of the head's centre column darkened (a 10 % wide ramp)."""
    if side is None:
        return img.astype(np.float64)
    w = img.shape[1]
    ramp = np.clip((np.arange(w) - centre + 0.05 * w) / (0.1 * w), 0, 1)  # 0 left of the head's centre, 1 right
    keep = ramp if side == "left" else 1 - ramp
    factor = DARKEN + (1 - DARKEN) * keep
    from topos_cli.pipelines.tex import linear_to_srgb, srgb_to_linear

    return linear_to_srgb(srgb_to_linear(img / 255.0) * factor[None, :, None]) * 255.0


def _pair_mae(a, b) -> float:
    (pa, ma), (pb, mb) = a, b
    m = ma & mb
    gain = np.median(pa[m] / np.maximum(pb[m], 1e-4), axis=0)
    return float(np.abs(linear_to_srgb(pb * gain) - linear_to_srgb(pa))[m].mean())


def _write_docs(docs: Path, name: str, img: np.ndarray, res, tpl) -> None:
    """A small figure of a public-domain portrait: the photo, the albedo, the head under 3 lights + profile."""
    import cv2

    from topos_cli.io.image import write_png
    from topos_cli.pipelines.tex import FITTED_HEAD, render_preview, unwrap_texture

    texture = unwrap_texture(tpl, 1024, img / 255.0, res.posed, res.camera, head=FITTED_HEAD)  # as `topos generate`
    tile = 192  # small figures for the README
    h, w = img.shape[:2]
    small = cv2.resize(img, (tile * w // max(h, w), tile * h // max(h, w)), interpolation=cv2.INTER_AREA) / 255.0
    photo = np.ones((tile, tile, 3))
    photo[:small.shape[0], :small.shape[1]] = small
    albedo = cv2.resize(texture.albedo.astype(np.float32), (tile, tile), interpolation=cv2.INTER_AREA)
    relit = render_preview(texture, res.posed, tpl, size=tile)
    docs.mkdir(parents=True, exist_ok=True)
    write_png(docs / f"generate_tex_{name}.png", np.concatenate([photo, albedo, relit], 1))


def print_table(result: dict) -> None:
    rows = result["synthetic"]["rows"]
    head = "".join(f"{c + ' MAE':>15}{'blur':>8}{'SSIM':>7}" for c in CLASSES)
    print(f"{'row':38}{head}")
    for row, vals in rows.items():
        cells = "".join(f"{vals[c]['mae']:>15.4f}{vals[c]['mae_blur']:>8.4f}{vals[c]['ssim']:>7.3f}" for c in CLASSES)
        print(f"{row:38}{cells}")
    if "relit" in result["synthetic"]:
        _print_protocol(result["synthetic"])
    print("texel classes (true mesh):", result["synthetic"]["class_fractions"])
    if "timing" in result:
        print("timing:", result["timing"])
    for rec in result.get("real", []):
        print("relight test:", rec)


def _print_protocol(syn: dict) -> None:
    """The relit-render and seam rows, side by side with the texel table's rows."""
    n = len(tp.VIEWS)
    print(f"\nrelit renders (true mesh; {n} views x {tp.LIGHTINGS} new lightings, face mask) and seam visibility")
    print(f"{'row':38}{'PSNR':>7}{'SSIM':>8}{'min-view PSNR':>15}{'views>const':>12}"
          f"{'seam jump':>11}{'(truth)':>9}{'border grad':>13}{'(truth)':>9}")
    for row, r in syn["relit"].items():
        sm = syn["seams"][row]
        print(f"{row:38}{r['psnr']:>7.2f}{r['ssim']:>8.4f}{min(r['psnr_views']):>15.2f}"
              f"{r['views_beating_constant']:>8d}/{n:<3d}{sm['seam_jump']:>11.4f}{sm['seam_jump_truth']:>9.4f}"
              f"{sm['border_ratio']:>13.3f}{sm['border_ratio_truth']:>9.3f}")
    print("views (azimuth, elevation):", list(tp.VIEWS))


def main(argv=None) -> int:
    from topos_cli.template import load_template

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--portraits", type=int, default=12)
    ap.add_argument("--no-geo", action="store_true", help="skip the generate-geo rows")
    ap.add_argument("--no-real", action="store_true", help="skip the real-photo relight test")
    ap.add_argument("--no-protocol", action="store_true", help="skip the relit-render and seam protocol")
    ap.add_argument("--no-timing", action="store_true", help="skip the 1024² timing")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--docs", type=Path, help="write the public-domain previews here")
    args = ap.parse_args(argv)
    tpl = load_template("topos-head")
    result = {"synthetic": run_synthetic(tpl, args.portraits, not args.no_geo, not args.no_protocol)}
    if not args.no_timing:
        result["timing"] = timing(tpl)
    if not args.no_real:
        result["real"] = real_photos(tpl, args.docs)
    print_table(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
