"""Benchmark `topos retopo` against `trimesh.registration.nricp_amberg` on held-out ICT heads.

    nice -n 10 python benchmarks/retopo.py [--scans 12] [--ids 4,5] [--template topos-head|ict-skin] [--no-baseline]

Test set (no training run draws these: training seeds come from `item_seed(seed, "sample-i")`, these from
numpy seeds 7000+i): ICT FaceKit skin (face + head_and_neck) with random identity weights w ~ N(0, I) and
three random expressions U(0, 1), then each scan is re-tessellated differently (decimated to 15-60 % of its
faces, or subdivided then decimated: near-isotropic and denser), some get normal noise, some are cut to the
front half (a face-only shell), and every one is put in a random pose (uniform rotation) and unit (mm, cm or
m). The true template-topology head is the template's own rest shape moved by the same weights through the
template's (resampled ICT) bases, so the per-vertex correspondence error against it is measurable.
Two kinds leave the ICT model's comfort zone: "warped" heads get a smooth random displacement field (six
Gaussian bumps, sigma 4 cm, ~0.5 cm amplitude) that no combination of the bases reproduces (the truth is the
template moved by the same field: it lies on the ICT surface), and "bust" scans carry shoulders and a chest
(an ellipsoid under the neck), so the scan's size and principal axes are not the head's.
`--kind hair` (not in the default set) puts 1-3 cm of hair on every scan: the truth is the skin under it, so
the per-vertex error is also reported on the face alone (`v2v_face_mean`: eyes, nose, mouth, cheeks, chin,
brows, jaw), where no hair grows. `--kind hairy-bust` puts that hair on a bust (shoulders and chest).
`--face` cycles through the face shells of FACE_MASKS (issue 19; the 7th is a statue's front shell), `--real SCAN
[--sheet PNG]` fits a real scan whole and cropped by the same masks (and draws a contact sheet).

Reported per method, per scan and on average: per-vertex error mean / p95 as % of the true head's
bounding-box diagonal, Chamfer-L1 / normal consistency / F-score@1% to the scan surface (distances / scan
diagonal), and seconds. The "floor" row is the same surface metrics for the true head itself (sampling floor).
Methods: topos (VAE prior when a checkpoint is present, bases fit, refinement), VAE alone, bases fit alone,
the rigidly aligned template (no deformation), and nricp_amberg started from the template after the same
rigid alignment (run in the template frame, default parameters).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

ICT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ict_face_model_light.npz"
SKIN = 11248  # ICT vertices [0, 11247]: face + head_and_neck
KINDS = ["decimate", "isotropic", "decimate+noise", "front-only", "warped", "bust"]
# face shells as face scanners crop them (issue 19), cut from the head in its ICT frame (cm, +Y up, +Z front; chin
# bottom y -8.7, mouth -4, eyes 3, brows 5, hairline ~10, ears at z -2..2): (front: keep z above this; half width:
# |x| below this; bottom: keep y above this; top: keep y below this). `--face` cycles through them
FACE_MASKS = {
    "mask-ears-neck": (0.5, 99.0, -10.5, 99.0),  # in front of the ears, above the neck, forehead and crown front
    "mask-ears-chin": (0.5, 99.0, -6.5, 99.0),  # in front of the ears, above mid-chin
    "mask-inner-neck": (4.0, 6.5, -10.5, 6.0),  # the inner face down to under the chin, no forehead
    "mask-inner-chin": (4.0, 6.5, -6.5, 6.0),  # the inner face above mid-chin, no forehead
    "mask-ears-nobrow": (0.5, 99.0, -10.5, 6.0),  # ear to ear, above the neck, no forehead
    "mask-hair": (0.5, 99.0, -10.5, 99.0),  # as mask-ears-neck with carved hair over the forehead and temples
    # a statue's front shell (issue 19): from behind the ears forward, cut under the chin (no neck), carved hair over
    # the scalp, forehead and temples, the stone smoothed (no fine skin or eyelid detail), no holes
    "statue": (-1.0, 99.0, -9.0, 99.0),
}
STATUE_SMOOTHING = 10  # Taubin smoothing iterations of the statue's surface (rounds lips, lids and nostrils by ~1 mm)
FACE_NOISE = 0.03  # cm (0.3 mm) normal noise on every face shell
FACE_HOLES = (2, 4)  # holes (a missing eyebrow, a specular patch) per face shell, radius 0.8-1.5 cm


def load_ict(path: Path) -> dict:
    from topos_cli.template import triangulate_polys

    d = np.load(path)
    polys = d["faces"].astype(np.int64)
    keep = (polys.max(1) < SKIN)
    tris, _ = triangulate_polys(polys[keep])
    return {"neutral": d["neutral"][:SKIN].astype(np.float64), "faces": tris,
            "identity": d["identity_modes"][:, :SKIN].astype(np.float64),
            "expression": d["expression_modes"][:, :SKIN].astype(np.float64)}


def ict_skin_template(ict: dict, folder: Path) -> Path:
    """A temporary template folder made of the ICT skin itself (for development without topos-head)."""
    from topos_cli.io.obj import ObjData, format_obj

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "template.obj").write_text(format_obj(ObjData(verts=ict["neutral"], polys=ict["faces"])))
    (folder / "template.json").write_text(json.dumps({"format": 1, "name": "ict-skin", "units": "cm"}))
    np.savez(folder / "bases.npz", identity=ict["identity"].astype(np.float32),
             expression=ict["expression"].astype(np.float32))
    return folder


def make_scan(ict: dict, i: int, kind: str | None = None) -> dict:
    """Scan i of the held-out set: weights, the re-tessellated posed scan, and what was done to it.

    kind: force this kind (one of KINDS, FACE_MASKS, "hair" or "hairy-bust") instead of KINDS[i % len(KINDS)].
    """
    import fast_simplification
    import trimesh
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(7000 + i)
    w_id = rng.standard_normal(len(ict["identity"]))
    w_ex = np.zeros(len(ict["expression"]))
    pick = rng.choice(len(w_ex), 3, replace=False)
    w_ex[pick] = rng.uniform(0, 1, 3)
    verts = ict["neutral"] + np.tensordot(w_id, ict["identity"], 1) + np.tensordot(w_ex, ict["expression"], 1)
    kind = kind or KINDS[i % len(KINDS)]
    warp = None
    if kind in ("hair", "hairy-bust"):  # 1-3 cm of hair: scalp, back, sides, a hairline across the forehead
        top, front, back = verts[:, 1].max(), verts[:, 2].max(), verts[:, 2].min()
        hairline = top - rng.uniform(4.0, 6.5) - rng.uniform(9.0, 10.5) * (front - verts[:, 2]) / (front - back)
        cap = np.clip((verts[:, 1] - hairline) / 2.0, 0.0, 1.0)
        thick = rng.uniform(1.0, 3.0) + rng.normal(0.0, 0.15, len(verts))  # cm, uneven strands
        verts = verts + trimesh.Trimesh(verts, ict["faces"], process=False).vertex_normals * (cap * thick)[:, None]
    if kind == "warped":  # out of the bases' span: a smooth random displacement field (a different person)
        centers = verts[rng.choice(len(verts), 6, replace=False)]
        amps = rng.normal(0.0, 0.5, (6, 3))  # cm

        def warp(x, centers=centers, amps=amps):
            w = np.exp(-((x[:, None] - centers[None]) ** 2).sum(-1) / (2 * 4.0 ** 2))  # sigma 4 cm
            return x + w @ amps

        verts = warp(verts)
    keep = [0.5, 0.3, 0.15, 0.6][(i // 4) % 4]
    sv, sf = verts, ict["faces"]
    if kind == "isotropic":
        sv, sf = trimesh.remesh.subdivide_to_size(sv, sf, max_edge=0.4)
        keep = keep * len(ict["faces"]) / len(sf)
    sv, sf = fast_simplification.simplify(sv.astype(np.float32), sf.astype(np.int32), 1.0 - keep)
    sv, sf = sv.astype(np.float64), sf.astype(np.int64)
    if kind == "decimate+noise":
        nrm = trimesh.Trimesh(sv, sf, process=False).vertex_normals
        sv = sv + nrm * rng.normal(0, 0.05, (len(sv), 1))  # 0.5 mm
    if kind == "front-only":
        cent = sv[sf].mean(1)
        sf = sf[cent[:, 2] > np.percentile(sv[:, 2], 45)]
    if kind in FACE_MASKS:
        sv, sf = face_shell(sv, sf, kind, rng)
    if kind in ("bust", "hairy-bust"):  # shoulders and chest under the neck: the scan is mostly not head
        torso = trimesh.creation.icosphere(subdivisions=4)
        tv = np.asarray(torso.vertices) * rng.uniform([18, 11, 9], [24, 15, 12]) + [0, -16 - rng.uniform(12, 16), -2]
        tf = np.asarray(torso.faces)[(tv[torso.faces][:, :, 1] > -40).all(1)] + len(sv)
        sv, sf = np.concatenate([sv, tv]), np.concatenate([sf, tf])
    unit = [10.0, 1.0, 0.01][i % 3]
    rot = Rotation.random(random_state=7000 + i).as_matrix()
    shift = rng.normal(0, 30.0, 3) * unit
    pose = lambda x: unit * x @ rot.T + shift  # noqa: E731
    return {"id": f"h{i:02d}", "kind": kind, "faces_kept": round(float(keep), 3), "unit": unit,
            "scan_verts": pose(sv), "scan_faces": sf, "w_id": w_id, "w_ex": w_ex, "pose": pose, "warp": warp}


def face_shell(sv: np.ndarray, sf: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Cut a FACE_MASKS shell out of a head (ICT frame, cm): the mask's box, holes, noise, carved hair."""
    import trimesh

    front, half, bottom, top = FACE_MASKS[kind]
    cent = sv[sf].mean(1)
    keep = (cent[:, 2] > front) & (np.abs(cent[:, 0]) < half) & (cent[:, 1] > bottom) & (cent[:, 1] < top)
    for _ in range(0 if kind == "statue" else rng.integers(*FACE_HOLES, endpoint=True)):  # holes on the shell
        at = cent[keep][rng.integers(keep.sum())]
        keep &= np.linalg.norm(cent - at, axis=1) > rng.uniform(0.8, 1.5)
    used, sf = np.unique(sf[keep], return_inverse=True)
    sv, sf = sv[used], sf.reshape(-1, 3)
    nrm = trimesh.Trimesh(sv, sf, process=False).vertex_normals
    if kind in ("mask-hair", "statue"):
        sv = carved_hair(sv, nrm, rng, thick=(0.5, 1.2) if kind == "mask-hair" else (0.8, 1.8))
    if kind == "statue":  # the stone smoothed; the rim stays where the scan was cut (Taubin curls open borders)
        shell = trimesh.Trimesh(sv.copy(), sf, process=False)
        edges, count = np.unique(np.sort(shell.edges, axis=1), axis=0, return_counts=True)
        rim = np.unique(edges[count == 1])
        trimesh.smoothing.filter_taubin(shell, iterations=STATUE_SMOOTHING)
        smooth = np.asarray(shell.vertices).copy()
        smooth[rim] = sv[rim]
        sv = smooth
        nrm = trimesh.Trimesh(sv, sf, process=False).vertex_normals
    return sv + nrm * rng.normal(0, FACE_NOISE, (len(sv), 1)), sf


def carved_hair(sv: np.ndarray, nrm: np.ndarray, rng: np.random.Generator, thick: tuple[float, float]) -> np.ndarray:
    """Carved hair (ICT frame, cm): grooved locks `thick` cm high over the skin above a fringe that comes down
    over the upper forehead (its edge 6.5-8 cm up at the midline, higher at the sides) and over the temples
    (|x| > 5.5 cm above the eyes); the skin under it is the truth, so any pull outward is a fit error."""
    hairline = rng.uniform(6.5, 8.0) + 0.35 * np.abs(sv[:, 0])
    cap = np.clip((sv[:, 1] - hairline) / 1.0, 0.0, 1.0)
    cap = np.maximum(cap, np.clip((np.abs(sv[:, 0]) - 5.5) / 1.0, 0, 1) * np.clip(sv[:, 1] - 2.0, 0, 1))
    phase = rng.uniform(0, 2 * np.pi)
    grooves = 0.7 + 0.3 * np.sin(2.2 * sv[:, 0] + 0.7 * sv[:, 1] + phase)  # carved strands
    return sv + nrm * (cap * rng.uniform(*thick) * grooves)[:, None]


def shell_errors(res, truth: np.ndarray, tpl, sv: np.ndarray, sf: np.ndarray, face: np.ndarray) -> dict:
    """Face-shell figures: the error on the face regions the scan supports, the supported fraction per template
    region (truth vertices within 1 % of the diagonal of the scan), and how far the unsupported vertices moved
    from where the fit's prior (bases/VAE head before the surface refinement) put them, in % of the diagonal."""
    from scipy.spatial import cKDTree

    from topos_cli.geometry.retopo import sample_scan

    diag = float(np.linalg.norm(truth.max(0) - truth.min(0)))
    pts = sample_scan(sv, sf, 60000, np.random.default_rng(0)).points
    near = cKDTree(pts).query(truth)[0] < 0.01 * diag
    err = np.linalg.norm(res.verts.astype(np.float64) - truth, axis=1) / diag * 100
    sup_face = np.intersect1d(face, np.flatnonzero(near))
    out = {"v2v_face_supported": float(err[sup_face].mean()) if len(sup_face) else float("nan"),
           "v2v_unsupported": float(err[~near].mean()) if (~near).any() else 0.0,
           "truth_coverage": {r: round(float(near[ids].mean()), 3) for r, ids in tpl.regions.items()}}
    hairy = np.concatenate([tpl.regions[r] for r in ("forehead", "temple") if r in tpl.regions])
    out["v2v_forehead_temple_max"] = float(err[hairy].max())  # carved hair must not pull this skin out
    out.update(hair_offsets(res, tpl, hairy))
    prior = getattr(res, "verts_prior", None)
    if prior is not None and (~near).any():
        shift = np.linalg.norm(res.verts.astype(np.float64) - prior, axis=1)[~near] / diag * 100
        out["unsupported_shift_max"] = float(shift.max())
    if "coverage" in res.report:
        out["coverage"] = res.report["coverage"]
    return out


def hair_offsets(res, tpl, hairy: np.ndarray) -> dict:
    """How far the fit moved the forehead/temple skin outward of its prior (along the prior's normals, template
    frame, % of the template's diagonal: the unit of `hair_offset`), at most and over the 99th percentile, and how
    many vertices the hair bound moved (`hair_capped`)."""
    from topos_cli.geometry.mesh_ops import vertex_normals

    if getattr(res, "verts_prior", None) is None:
        return {}
    prior = res.similarity.apply(res.verts_prior.astype(np.float64))
    out = ((res.verts_template.astype(np.float64) - prior) * vertex_normals(prior, tpl.faces)).sum(1)[hairy]
    diag = float(np.linalg.norm(tpl.verts.max(0) - tpl.verts.min(0)))
    return {"hair_out_max": float(out.max() / diag * 100), "hair_out_p99": float(np.percentile(out, 99) / diag * 100),
            "hair_capped": int(res.report.get("hair_capped", 0))}


def per_vertex(pred: np.ndarray, truth: np.ndarray, face: np.ndarray | None = None) -> dict:
    diag = float(np.linalg.norm(truth.max(0) - truth.min(0)))
    err = np.linalg.norm(pred - truth, axis=1) / diag * 100
    out = {"v2v_mean": float(err.mean()), "v2v_p95": float(np.percentile(err, 95))}
    if face is not None:
        out["v2v_face_mean"] = float(err[face].mean())
    return out


def surface(pred, faces, scan_v, scan_f, seed) -> dict:
    """Paper-protocol surface metrics of `pred` against the scan (geometry/metrics.py), flattened."""
    from topos_cli.geometry.metrics import surface_metrics

    m = surface_metrics(pred, faces, scan_v, scan_f, n=10000, rng=np.random.default_rng(seed))
    return {"chamfer_l1": m["chamfer_l1"], "normal_consistency": m["normal_consistency"], "fscore": m["fscore"]["f"]}


SHEET_TILE = 320  # pixels per picture of the contact sheet
SHEET_YAW = 25.0  # degrees: the sheet's camera turns this far to the head's left (the nose and the shell's depth show)
SHEET_DISTANCE = 85.0  # cm from the face (template frame, SHEET_AIM), vertical field of view SHEET_FOV
SHEET_FOV = 22.0
SHEET_AIM = (0.0, 1.0, 2.0)  # cm, template frame: between the eyes and the mouth, a little behind the face
SHEET_FONT = 15  # label size, pixels
SHEET_LABEL = 22  # pixels of label band above each row


def render_tile(verts: np.ndarray, faces: np.ndarray, centre: np.ndarray, renderer) -> np.ndarray:
    """(SHEET_TILE, SHEET_TILE, 3) uint8: a template-frame mesh (cm, +Y up, +Z front) as grey clay on white, seen
    from the front turned SHEET_YAW to the side (the project's renderer, studio lights)."""
    from topos_cli.render.camera import look_at
    from topos_cli.render.lights import preset_rig
    from topos_cli.render.renderer import RenderMesh

    yaw = np.radians(SHEET_YAW)
    eye = centre + SHEET_DISTANCE * np.array([np.sin(yaw), 0.0, np.cos(yaw)])
    cam = look_at(eye, centre, (0.0, 1.0, 0.0), fov=SHEET_FOV, width=SHEET_TILE)
    out = renderer.render(RenderMesh(verts.astype(np.float32), np.asarray(faces, np.int64)), cam, None,
                          preset_rig("studio"), passes=("color", "mask"))
    rgb, alpha = out["color"][..., :3], out["mask"].reshape(SHEET_TILE, SHEET_TILE, 1).astype(np.float64)
    return (np.clip(rgb * alpha + (1.0 - alpha), 0, 1) * 255).astype(np.uint8)


def contact_sheet(tiles: list[dict], path: Path) -> None:
    """One row per crop: the cropped scan (left) and the retopo output (right), the row's label above them."""
    from PIL import Image, ImageDraw, ImageFont

    band = SHEET_TILE + SHEET_LABEL
    sheet = Image.new("RGB", (2 * SHEET_TILE, band * len(tiles)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=SHEET_FONT)
    for r, tile in enumerate(tiles):
        draw.text((6, r * band + 3), tile["label"], fill=(0, 0, 0), font=font)
        for c, key in enumerate(("scan", "output")):
            sheet.paste(Image.fromarray(tile[key]), (c * SHEET_TILE, r * band + SHEET_LABEL))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def real_crops(path: Path, pipe, sheet: Path | None = None) -> None:
    """A real scan with its iBUG-68 LJSON beside it, whole and cropped by each FACE_MASKS box (cut in the frame of
    the whole scan's fit, no holes, noise or hair added): ok, F@1% and the fraction of the scan within 1 % of the
    fit (`scan_covered`), landmark NME (% of the outer-eye-corner distance, inner 51 points), seconds. `sheet`:
    write a contact sheet there (per crop, the cropped scan and the output, in the frame of the whole fit)."""
    from retopo_landmarks import landmark_nme

    from topos_cli.io.landmarks import read_ljson
    from topos_cli.io.mesh import load_mesh

    scan = load_mesh(path)
    truth = read_ljson(path.with_suffix(".ljson"))
    sv, sf = scan.verts.astype(np.float64), scan.faces
    whole = pipe(sv, sf, seed=0)
    local = whole.similarity.apply(sv)
    tiles, renderer = [], None
    for kind in ["whole", *[k for k in FACE_MASKS if k not in ("mask-hair", "statue")]]:
        faces = sf
        if kind != "whole":
            front, half, bottom, top = FACE_MASKS[kind]
            cent = local[sf].mean(1)
            faces = sf[(cent[:, 2] > front) & (np.abs(cent[:, 0]) < half) & (cent[:, 1] > bottom) & (cent[:, 1] < top)]
        t0 = time.perf_counter()
        res = whole if kind == "whole" else pipe(sv, faces, seed=0)
        m, r = res.report["metrics"], res.report
        nme = landmark_nme(res.verts.astype(np.float64), pipe.template.landmarks, truth)
        sec = time.perf_counter() - t0
        print(json.dumps({"scan": path.name, "kind": kind, "faces": int(len(faces)), "ok": r["ok"],
                          "method": r["alignment"]["method"], "fscore": round(m["fscore"], 4),
                          "scan_covered": round(m["scan_covered"], 4), "nme_inner": round(nme["nme_inner"], 2),
                          "seconds": round(sec, 2), "warnings": r["warnings"][:1]}), flush=True)
        if sheet is not None:
            if renderer is None:
                from topos_cli.render.renderer import Renderer

                renderer, centre = Renderer("gl"), np.asarray(SHEET_AIM)
            used = np.unique(faces)
            remap = np.zeros(len(sv), np.int64)
            remap[used] = np.arange(len(used))
            label = (f"{path.stem}, {kind}: {'ok' if r['ok'] else 'NOT ok'}, F@1% {m['fscore']:.2f}, "
                     f"NME {nme['nme_inner']:.2f} %" + ("   (left: the cropped scan, right: retopo)" if not tiles else ""))
            tiles.append({"label": label, "scan": render_tile(local[used], remap[faces], centre, renderer),
                          "output": render_tile(whole.similarity.apply(res.verts.astype(np.float64)),
                                                pipe.template.faces, centre, renderer)})
    if sheet is not None:
        contact_sheet(tiles, sheet)
        print(f"contact sheet: {sheet}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=12)
    parser.add_argument("--ids", default=None, help="comma list of scan numbers to run instead of 0..scans-1")
    parser.add_argument("--template", default=None, help="template name/folder, or 'ict-skin'")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--no-vae", action="store_true")
    parser.add_argument("--json", default=None, help="write all rows to this JSON file")
    parser.add_argument("--kind", default=None, choices=KINDS + list(FACE_MASKS) + ["hair", "hairy-bust"],
                        help="make every scan of this kind")
    parser.add_argument("--face", action="store_true", help="face shells: scan i is of kind FACE_MASKS[i %% 7] (the 7th: a statue)")
    parser.add_argument("--methods", default=None, help="comma list of topos variants to run (default: all)")
    parser.add_argument("--real", type=Path, default=None,
                        help="a real scan with its iBUG-68 .ljson beside it: fit it whole and cropped by FACE_MASKS")
    parser.add_argument("--sheet", type=Path, default=None,
                        help="with --real: write a contact sheet (cropped scan | retopo output per crop) to this PNG")
    args = parser.parse_args()

    import torch
    import trimesh

    from topos_cli.geometry import retopo as rt
    from topos_cli.pipelines.retopo import RetopoOptions, RetopoPipeline

    torch.set_num_threads(1)
    ict = load_ict(ICT)
    tmp = tempfile.TemporaryDirectory()
    template = args.template
    if template == "ict-skin":
        template = str(ict_skin_template(ict, Path(tmp.name) / "ict-skin"))
    pipe = RetopoPipeline.from_pretrained(args.checkpoint, template, use_vae=not args.no_vae)
    if args.real is not None:
        return real_crops(args.real, pipe, args.sheet)
    tpl = pipe.template
    tb = tpl.bases
    face = None
    if args.kind in ("hair", "hairy-bust") or args.face or args.kind in FACE_MASKS:
        names = [r for r in ("eye", "nose", "mouth", "cheek", "chin", "brow", "cheekbone", "jaw") if r in tpl.regions]
        face = np.concatenate([tpl.regions[r] for r in names]) if names else None
    rows = []
    for i in ([int(x) for x in args.ids.split(",")] if args.ids else range(args.scans)):
        kind = list(FACE_MASKS)[i % len(FACE_MASKS)] if args.face else args.kind
        scan = make_scan(ict, i, kind)
        truth_t = (tpl.verts + np.tensordot(scan["w_id"][: len(tb["identity"])], tb["identity"], 1)
                   + np.tensordot(scan["w_ex"][: len(tb["expression"])], tb["expression"], 1))
        if scan["warp"] is not None:  # the template lies on the ICT surface: the same field moves it along
            truth_t = scan["warp"](truth_t.astype(np.float64))
        truth = scan["pose"](truth_t.astype(np.float64))
        sv, sf = scan["scan_verts"], scan["scan_faces"]
        row = {"id": scan["id"], "kind": scan["kind"], "faces_kept": scan["faces_kept"], "unit": scan["unit"],
               "scan_verts": len(sv)}
        row["floor"] = surface(truth, tpl.faces, sv, sf, i)
        variants = {"topos": RetopoOptions()}
        if pipe.vae is not None:
            variants["vae_only"] = RetopoOptions(bases=False, refine=False)
        variants["bases_only"] = RetopoOptions(vae=False, refine=False)
        variants["rigid_template"] = RetopoOptions(vae=False, bases=False, refine=False)
        if args.methods and "no_hair_cap" in args.methods.split(","):  # the same fit without the hair bound
            variants["no_hair_cap"] = RetopoOptions(hair_offset=None)
        if args.methods:
            variants = {k: v for k, v in variants.items() if k in args.methods.split(",")}
        for name, opt in variants.items():
            t0, c0 = time.perf_counter(), time.process_time()
            res = pipe(sv, sf, options=opt, seed=0)
            sec, cpu = time.perf_counter() - t0, time.process_time() - c0
            row[name] = {**per_vertex(res.verts.astype(np.float64), truth, face),
                         **surface(res.verts.astype(np.float64), tpl.faces, sv, sf, i), "seconds": sec,
                         "cpu_seconds": cpu, "ok": res.report["ok"]}
            if scan["kind"] in FACE_MASKS:
                row[name].update(shell_errors(res, truth, tpl, sv, sf, face))
                if not res.report["ok"]:
                    row[name]["reason"] = "; ".join(res.report["warnings"])[:160]
        if not args.no_baseline:
            # the same rigid start as topos: its final similarity, template frame (cm), default parameters
            t0, c0 = time.perf_counter(), time.process_time()
            pre, _ = rt.prealign(rt.sample_scan(sv, sf, 30000, np.random.default_rng(0)), tpl.verts.astype(float),
                                 tpl.faces)
            source = trimesh.Trimesh(tpl.verts.astype(np.float64), tpl.faces, process=False)
            target = trimesh.Trimesh(pre.apply(sv), sf, process=False)
            fitted = trimesh.registration.nricp_amberg(source, target)
            sec, cpu = time.perf_counter() - t0, time.process_time() - c0
            out = pre.inverse().apply(np.asarray(fitted))
            row["nricp_amberg"] = {**per_vertex(out, truth, face), **surface(out, tpl.faces, sv, sf, i), "seconds": sec,
                                   "cpu_seconds": cpu}
        rows.append(row)
        print(json.dumps({k: ({m: round(v, 4) if isinstance(v, float) else v for m, v in val.items()}
                              if isinstance(val, dict) else val) for k, val in row.items()}), flush=True)
    methods = [k for k in rows[0] if isinstance(rows[0][k], dict)]
    keys = ["v2v_mean", "v2v_p95"] + (["v2v_face_mean"] if face is not None else [])
    if any(r["kind"] in FACE_MASKS for r in rows):
        keys += ["v2v_face_supported", "v2v_unsupported", "unsupported_shift_max", "v2v_forehead_temple_max",
                 "hair_out_max", "hair_capped"]
    keys += ["chamfer_l1", "normal_consistency", "fscore", "seconds", "cpu_seconds"]
    worst_key = "v2v_face_mean" if face is not None else "v2v_mean"
    print(f"\n{len(rows)} scans, template {tpl.name} ({tpl.num_verts} verts), VAE: "
          f"{'step ' + str(pipe.vae_meta.get('step')) if pipe.vae is not None else 'none'}")
    print(f"{'method':16s} " + " ".join(f"{k:>12s}" for k in keys) + f"  worst_{worst_key}")
    for m in methods:
        vals = [np.mean([r[m][k] for r in rows if k in r[m]]) if any(k in r[m] for r in rows) else np.nan
                for k in keys]
        worst = max(r[m].get(worst_key, np.nan) for r in rows)
        oks = [r[m]["ok"] for r in rows if "ok" in r[m]]
        print(f"{m:16s} " + " ".join(f"{v:12.4f}" for v in vals) + f"  {worst:.4f}"
              + (f"  ok {sum(oks)}/{len(oks)}" if oks else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
