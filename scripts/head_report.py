"""Measurements, UV packing and the README/NOTICE text of the default template.

Part of scripts/build_default_template.py; pure numpy/scipy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

from topos_cli.geometry.mesh_ops import face_angles, face_areas


def signed_areas(uv: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """(F,) signed areas of 2D triangles (positive = counter-clockwise)."""
    a, b = uv[tris[:, 1]] - uv[tris[:, 0]], uv[tris[:, 2]] - uv[tris[:, 0]]
    return 0.5 * (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0])


def point_triangle_distance(q: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Distance (N,K) from points q (N,3) to triangles tri (N,K,3,3)."""
    a, b, c = tri[..., 0, :], tri[..., 1, :], tri[..., 2, :]
    p = q[:, None, :]
    n = np.cross(b - a, c - a)
    n2 = (n * n).sum(-1)
    n2 = np.where(n2 < 1e-30, 1e-30, n2)
    h = ((p - a) * n).sum(-1) / n2
    proj = p - h[..., None] * n
    def side(u, v):
        return (np.cross(v - u, proj - u) * n).sum(-1) >= 0
    inside = side(a, b) & side(b, c) & side(c, a)
    plane = np.abs(h) * np.sqrt(n2)
    def seg(u, v):
        uv = v - u
        t = np.clip(((p - u) * uv).sum(-1) / np.maximum((uv * uv).sum(-1), 1e-30), 0, 1)
        return np.linalg.norm(p - (u + t[..., None] * uv), axis=-1)
    edge = np.minimum(np.minimum(seg(a, b), seg(b, c)), seg(c, a))
    return np.where(inside, plane, edge)


def surface_distance(points: np.ndarray, verts: np.ndarray, tris: np.ndarray, k: int = 16) -> np.ndarray:
    """(N,) distance from points to a triangle mesh (exact over the k triangles with nearest centroids)."""
    _, cand = cKDTree(verts[tris].mean(1)).query(points, k=k)
    out = np.empty(len(points))
    for s in range(0, len(points), 4096):
        sl = slice(s, s + 4096)
        out[sl] = point_triangle_distance(points[sl], verts[tris[cand[sl]]]).min(1)
    return out


def fit_error(ict_verts: np.ndarray, ict_tris: np.ndarray, ict_modes: np.ndarray, weights: sp.csr_matrix,
              faces: np.ndarray, identity16: np.ndarray, count: int, seed: int) -> dict:
    """Distances (mm) between the resampled model and ICT's skin for `count` random identities.

    Args:
        ict_verts: (N,3) ICT skin neutral; ict_tris: (G,3); ict_modes: (K,N,3) identity modes;
        weights: (V,N) resampling matrix; faces: (F,3) template; identity16: (K,V,3) stored template modes.
    """
    ict_modes = ict_modes.astype(np.float64)
    ours0 = weights @ ict_verts
    rng = np.random.default_rng(seed)
    fwd, bwd = [], []
    for _ in range(count):
        w = rng.standard_normal(len(ict_modes))
        ict = ict_verts + np.tensordot(w, ict_modes, 1)
        ours = ours0 + np.tensordot(w, identity16.astype(np.float64), 1)
        fwd.append(surface_distance(ours, ict, ict_tris))
        bwd.append(surface_distance(ict, ours, faces))
    fwd, bwd = np.concatenate(fwd) * 10, np.concatenate(bwd) * 10
    return {"identities": count, "seed": seed,
            "ours_to_ict_mm": {"mean": float(fwd.mean()), "max": float(fwd.max())},
            "ict_to_ours_mm": {"mean": float(bwd.mean()), "p99": float(np.percentile(bwd, 99)),
                               "max": float(bwd.max())}}


def pack_uv(uv: np.ndarray, chart_of_uv: np.ndarray, pad: float = 0.02, back_ratio: float = 0.4) -> tuple:
    """Place the face chart (0) and the back chart (1) in [0,1]^2 without overlap.

    Tries side-by-side and stacked layouts (back chart rotated or not) and keeps the one giving the face
    chart the largest scale while the back chart keeps at least `back_ratio` of the face's texel density.
    Returns (packed uv (T,2), {"face_scale", "back_scale", "layout"}).
    """
    face, back = uv[chart_of_uv == 0], uv[chart_of_uv == 1]
    fsize = face.max(0) - face.min(0)
    best = None
    for rot in (False, True):
        bsize = (back.max(0) - back.min(0))[::-1] if rot else back.max(0) - back.min(0)
        for axis in (0, 1):  # 0: side by side, 1: stacked
            for frac in np.linspace(0.3, 0.9, 121):
                box_f = np.array([1.0, 1.0]) - 2 * pad
                box_f[axis] = frac - 1.5 * pad
                box_b = np.array([1.0, 1.0]) - 2 * pad
                box_b[axis] = 1.0 - frac - 1.5 * pad
                sf, sb = (box_f / fsize).min(), (box_b / bsize).min()
                if sb < back_ratio * sf:
                    sf = min(sf, sb / back_ratio)
                if best is None or sf > best[0]:
                    best = (sf, min(sb, sf), rot, axis, frac)
    sf, sb, rot, axis, frac = best
    out = uv.copy()
    out[chart_of_uv == 0] = (face - face.min(0)) * sf + pad
    b = back[:, ::-1] * [-1, 1] if rot else back  # 90-degree rotation keeps orientation
    b = (b - b.min(0)) * sb + pad
    b[:, axis] += frac + 0.5 * pad - pad
    out[chart_of_uv == 1] = b
    return out, {"face_scale_per_cm": float(sf), "back_scale_per_cm": float(sb),
                 "layout": ("side-by-side" if axis == 0 else "stacked") + (", back rotated" if rot else "")}


def uv_report(uv: np.ndarray, uv_faces: np.ndarray, verts: np.ndarray, faces: np.ndarray,
              regions: dict) -> dict:
    """Flips, overlaps and distortion of the layout (area ratio normalised per chart, angle error)."""
    s = signed_areas(uv, uv_faces)
    a3 = face_areas(verts, faces)
    ang_uv = face_angles(np.c_[uv, np.zeros(len(uv))], uv_faces)
    ang_3d = face_angles(verts, faces)
    ratio = s / a3
    face_verts = np.zeros(len(verts), bool)
    for k in ["brow", "eye", "nose", "mouth", "forehead", "cheekbone", "chin", "cheek"]:
        face_verts[regions[k]] = True
    on_face = face_verts[faces].all(1)
    r_face = ratio[on_face] / np.median(ratio[on_face])
    return {"flipped": int((s <= 0).sum()), "min_signed_area": float(s.min()),
            "overlapping_boundary_crossings": int(boundary_crossings(uv, uv_faces)),
            "angle_error_deg_mean": float(np.degrees(np.abs(ang_uv - ang_3d)).mean()),
            "face_area_ratio_p5_p95": [float(np.percentile(r_face, 5)), float(np.percentile(r_face, 95))],
            "face_angle_error_deg_mean": float(np.degrees(np.abs(ang_uv - ang_3d)[on_face]).mean()),
            "uv_coverage": float(s.sum()),
            "min_texels_per_cm_at_1024": float(np.sqrt(np.maximum(ratio, 0)).min() * 1024),
            "texels_per_cm_at_1024_median": {k: float(np.median(np.sqrt(np.maximum(ratio[np.isin(faces[:, 0], v)], 0)))
                                                    * 1024) for k, v in regions.items()}}


def boundary_crossings(uv: np.ndarray, uv_faces: np.ndarray) -> int:
    """Number of pairs of UV boundary edges that properly intersect (0 for an overlap-free layout)."""
    e = np.sort(np.concatenate([uv_faces[:, [0, 1]], uv_faces[:, [1, 2]], uv_faces[:, [2, 0]]]), 1)
    uniq, cnt = np.unique(e, axis=0, return_counts=True)
    b = uniq[cnt == 1]
    p, q = uv[b[:, 0]], uv[b[:, 1]]
    def orient(a, b_, c):
        return np.sign((b_[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (b_[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0]))
    total = 0
    for s in range(0, len(b), 256):
        P, Q = p[s:s + 256, None], q[s:s + 256, None]
        o1, o2 = orient(P, Q, p[None]), orient(P, Q, q[None])
        o3, o4 = orient(p[None], q[None], P), orient(p[None], q[None], Q)
        share = (b[s:s + 256, None, :, None] == b[None, :, None, :]).any((-1, -2))
        total += int(((o1 * o2 < 0) & (o3 * o4 < 0) & ~share).sum())
    return total // 2


def notice_text(licence: str) -> str:
    return ("topos-head is derived from the ICT FaceKit \"Face Model Light\" (USC Institute for Creative\n"
            "Technologies): the template surface, its landmarks and every shape basis in bases.npz are\n"
            "linear resamplings of ICT's neutral head, identity modes and expression blendshapes onto a mesh\n"
            "produced by topos's own code (scripts/build_default_template.py). ICT's licence follows.\n\n"
            + licence.strip() + "\n")


def readme_text(rep: dict, res: dict, PARAMS: dict, REGION_RULES: dict, meta: dict) -> str:  # noqa: N803
    fit, uvq = rep["fit"], rep["uv"]
    rows = "\n".join(f"| `{k}` | {len(v)} | {REGION_RULES[k].replace('|', chr(92) + '|')} |"
                     for k, v in res["regions"].items())
    nb = {k: v.shape for k, v in res["bases"].items() if v.ndim == 3}
    loops = ", ".join(f"{k} {n}" for k, n in rep["boundary_loops"].items())
    return f"""# topos-head

The default topos template: a head (face, ears, scalp, neck) with one fixed triangle topology, derived from
the ICT FaceKit "Face Model Light" (MIT, see `NOTICE`) by `scripts/build_default_template.py`. Units are
centimetres, +Y is up and the face looks down +Z (ICT's frame). "Left" means the subject's left (+x).

## Mesh

| property | value |
|---|---|
| vertices / triangles | {rep['num_verts']} / {rep['num_faces']} |
| components | {rep['components']} |
| edge-manifold | {rep['edge_manifold']} |
| boundary loops (vertices) | {loops} |
| degenerate triangles | {rep['degenerate_faces']} |
| min / max triangle angle | {rep['min_angle_deg']:.1f}° / {rep['max_angle_deg']:.1f}° |
| symmetry map | exact by construction (the x < 0 half is the mirror of the x >= 0 half); max position mismatch {rep['symmetry_max_mismatch_mm']:.3f} mm (ICT's own asymmetry) |

Spacing: {PARAMS['h_face_cm'] * 10:.1f} mm on the face, growing over {PARAMS['h_ramp_cm']:.0f} cm to {PARAMS['h_far_cm'] * 10:.1f} mm on scalp and neck,
refined to at most {PARAMS['curv_angle']} rad of normal turn per edge (lips, nostrils, eyelids, ears; never below {PARAMS['h_min_cm'] * 10:.1f} mm).
The 68 landmarks (`template.json` → `landmarks`, iBUG order) are vertices placed exactly at ICT's landmark vertices.

## UV layout

Two charts packed in [0, 1]² ({rep['uv_layout']['layout']}): the **face chart** (ICT's face area down to
{PARAMS['chin_cut_cm']:.0f} cm under the jaw line: face, forehead up to the hairline, ears; one piece, with the eye and mouth
holes inside) and the **back chart** (scalp, back of head, under the chin, neck; cut along the front midline
of the neck). Seams: the hairline, behind the ears and under the jaw (between the two charts), and the
front midline of the neck. Both charts are least-squares conformal maps of the x >= 0 half with the midline
held straight, mirrored, so angles are preserved and the face keeps its proportions; the area scale varies
(ears and the inside of the nostrils get less space).

| check | value |
|---|---|
| flipped UV triangles | {uvq['flipped']} (min signed area {uvq['min_signed_area']:.2e}) |
| overlaps (crossing UV boundary edges) | {uvq['overlapping_boundary_crossings']} |
| texel density, face chart / back chart | {rep_scale(res['layout'])} |
| mean angle error UV vs 3D, all / face regions | {uvq['angle_error_deg_mean']:.2f}° / {uvq['face_angle_error_deg_mean']:.2f}° |
| face-region area ratio (UV/3D, per-median), 5th–95th percentile | {uvq['face_area_ratio_p5_p95'][0]:.2f} – {uvq['face_area_ratio_p5_p95'][1]:.2f} (the low end is the inside of the nostrils, down to {uvq['min_texels_per_cm_at_1024']:.1f} texels per cm at 1024²) |

Median texels per cm at 1024² by region: {", ".join(f"{k} {v:.0f}" for k, v in uvq['texels_per_cm_at_1024_median'].items())}.

## Regions

A hard partition of all vertices (`template.json` → `regions`); rules in the template frame, using the
landmarks, mirror-symmetric (|x|), first matching rule in the order ear, eye, brow, nose, mouth, neck, chin,
jaw, cheekbone, forehead, temple, cheek, back_of_head, scalp. "Face range" = ICT's `face` vertex range.

| region | vertices | rule |
|---|---|---|
{rows}

## Shape bases (`bases.npz`, float16 deltas in cm)

| basis | shape | meaning |
|---|---|---|
| `identity` | {nb['identity']} | ICT's 100 identity modes: `verts + w @ identity`, `w ~ N(0, I)` is the same person as ICT with the same `w` |
| `expression` | {nb['expression']} | ICT's 53 ARKit blendshapes (`expression_names`), weights in [0, 1] |
| `region_<name>` | {nb['region_nose']} each | for the nine augmentation regions: identity modes, less their mean translation over the region, times a smooth mask (1 in the region, smoothstep falloff over {PARAMS['region_falloff_cm']} cm, so no seam at the border), compressed to the top {PARAMS['region_modes']} PCA directions at {PARAMS['region_sigma']} standard deviations, stored with + and − signs so that weights in U(0, 1) move both ways; bounds in `template.json` → `augment` |

Every basis is the same sparse linear interpolation of ICT's arrays (each template vertex is a barycentric
point of an ICT skin triangle), so `neutral + w @ modes` commutes with the resampling.

## Fit to ICT

{fit['identities']} random identities (`w ~ N(0, I)`, seed {fit['seed']}), float16 bases as stored:

| direction | mean | max |
|---|---|---|
| template vertices → ICT skin surface | {fit['ours_to_ict_mm']['mean']:.4f} mm | {fit['ours_to_ict_mm']['max']:.4f} mm |
| ICT skin vertices → template surface | {fit['ict_to_ours_mm']['mean']:.3f} mm | {fit['ict_to_ours_mm']['max']:.3f} mm (99th percentile {fit['ict_to_ours_mm']['p99']:.3f} mm) |

The first is float16 rounding only (template vertices lie on ICT's surface by construction); the second is
the chordal error of the coarser mesh, largest in the ear folds and at the inner eye corners.

## Expression prior

`template.json` → `expression_prior` (written by `scripts/head_expressions.py`) is how `topos augment
--expressions N` combines the 53 expressions: {len(meta['expression_prior']['units'])} units drawn as one (left/right pairs mostly together,
conjugate gaze), {len(meta['expression_prior']['exclusive'])} exclusive groups, {len(meta['expression_prior']['bounded'])} bounded sums, `mouthClose` only as a fraction of
`jawOpen`, and the landmark gap checks a head is redrawn on: {"; ".join(g["name"] for g in meta['expression_prior']['checks']['gaps'])}.

## Parts (`parts.npz`)

Eyes and mouth interior beside the skin (`template.json` → `parts`; the skin mesh, its vertex order and its
hash do not include them), from ICT's own parts by `scripts/head_parts.py`, each decimated with every vertex
a barycentric point of ICT's part, so their `identity` ({meta['parts']['num_verts']} vertices x 100) and `expression` (x 53) bases index
like the skin's:

| part | vertices | from ICT |
|---|---|---|
{parts_rows(meta['parts'])}

Flat materials (linear albedo): {", ".join(meta['parts']['material_order'])}. ICT's expression modes do not move the eyeballs; gaze
rotates them about their centres ({", ".join(f"{k} {v:.0f}°" for k, v in meta['parts']['gaze_deg'].items())} at eyeLook* = 1). Renderers paint the UV square
`uv_patch` (in the skin layout's padding) white so the parts' vertex colours show as they are.

## Rebuild

```sh
python scripts/build_default_template.py --ict ../shared/data/ict_face_model_light.npz \\
    --out topos_cli/assets/templates/topos-head
```

Deterministic: two runs on one machine write the same bytes (fixed seeds; npz members carry a fixed
timestamp; measured floats in the report are rounded to 6 significant digits). About two minutes on an idle
CPU core, most of it the fit-error measurement. Another machine's BLAS/LAPACK may change the last bits of
the conformal maps and so, in principle, a printed digit of a vertex; the topology and its hash do not depend
on it. `python scripts/head_parts.py` rebuilds only the parts (from the written template.obj and bases.npz,
the same way the full build does).
"""


def parts_rows(parts: dict) -> str:
    return "\n".join(f"| `{k}` | {v['verts'][1] - v['verts'][0]} | `{v['source']}` |" for k, v in parts["parts"].items())


def rep_scale(layout: dict) -> str:
    return (f"{layout['face_scale_per_cm'] * 1024:.1f} / {layout['back_scale_per_cm'] * 1024:.1f} texels per cm "
            f"at 1024²")


REPORT_DIGITS = 6  # significant digits of measured floats in template.json: summation order changes the last
#                    bits of a mean between runs, and the rebuild should write the same bytes


def rounded_report(value):
    """Plain data with every float rounded to REPORT_DIGITS significant digits."""
    if isinstance(value, float):
        return float(f"{value:.{REPORT_DIGITS}g}")
    if isinstance(value, dict):
        return {k: rounded_report(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded_report(v) for v in value]
    return value


def keep_foreign_sections(text: str, path: Path) -> str:
    """The generated README plus any `## ` section of the existing one that the build does not write (other
    scripts document their own assets in this folder, e.g. the mediapipe landmark map)."""
    if not path.is_file():
        return text
    ours = {line for line in text.splitlines() if line.startswith("## ")}
    old = path.read_text().split("\n## ")[1:]
    extra = [sec for sec in old if "## " + sec.splitlines()[0] not in ours]
    return text + "".join("\n## " + sec.rstrip("\n") + "\n" for sec in extra)
