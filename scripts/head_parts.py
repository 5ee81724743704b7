"""Eye and mouth parts of the default template (`parts.npz` + template.json `parts`), derived from ICT's own.

Part of scripts/build_default_template.py, which calls `build_parts` after writing template.obj and
bases.npz; also runnable alone (it then reads those files, so both ways write the same bytes):

    python scripts/head_parts.py --ict ../shared/data/ict_face_model_light.npz \
        --template topos_cli/assets/templates/topos-head

Parts (ICT `geometry_ranges`): the two eyeballs (ICT's outer sclera/cornea shell, coloured sclera / iris /
pupil by the distance from the gaze axis), the eye sockets (the conjunctiva behind the lids), teeth, gums
and tongue, and the mouth socket, each decimated by quadric collapses with every new vertex a barycentric
point of an ICT triangle (geometry/lod.py), so positions and the identity and expression bases are the
same sparse interpolation of ICT's arrays as for the skin (a resampling, not a copy of ICT's arrays). ICT's expression modes
do not move the eyeballs: gaze is a rotation about each eyeball's centre (`gaze_deg`), applied by
topos_cli/geometry/parts.py. The skin (template.obj), its vertex order and its hash are untouched.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from topos_cli.geometry.lod import build_lod_chain  # noqa: E402
from topos_cli.template import triangulate_polys  # noqa: E402

# (part name, ICT range, ICT material kept or None for all, target vertex count or None to keep all)
PARTS = [
    ("eye_left", "eyeball_left", "M_ScleraLeft", 480),  # the outer shell (sclera + cornea bulge), 770 in ICT
    ("eye_right", "eyeball_right", "M_ScleraRight", 480),
    ("eye_socket_left", "eye_socket_left", None, 150),
    ("eye_socket_right", "eye_socket_right", None, 150),
    ("teeth", "teeth", None, 600),
    ("gums_tongue", "gums_and_tongue", None, 500),
    ("mouth_socket", "mouth_socket", None, 400),
]
MATERIALS = {  # linear albedo and roughness of the flat part materials
    "sclera": {"color": [0.72, 0.68, 0.64], "roughness": 0.25},
    "iris": {"color": [0.09, 0.045, 0.02], "roughness": 0.25},
    "pupil": {"color": [0.005, 0.005, 0.005], "roughness": 0.2},
    "socket": {"color": [0.35, 0.09, 0.08], "roughness": 0.35},
    "teeth": {"color": [0.62, 0.56, 0.45], "roughness": 0.3},
    "gums": {"color": [0.42, 0.09, 0.09], "roughness": 0.4},
    "mouth": {"color": [0.05, 0.012, 0.012], "roughness": 0.6},
}
IRIS_RADIUS_CM = 0.6   # a human iris is ~12 mm across
PUPIL_RADIUS_CM = 0.2  # a 4 mm pupil (ordinary indoor light)
GAZE_DEG = {"up": 25.0, "down": 30.0, "in": 30.0, "out": 30.0}  # eyeLook* = 1: ARKit's typical range
LOWER_JAW_FRACTION = 0.5  # a mouth vertex moving more than half the lower teeth's jawOpen shift is "lower"
EYE_RING_CM = (1.9, 3.2)  # skull-rigid skin ring around each eyeball centre that places the eye on a head
RIGID_MAX_CM = 0.25    # "rigid" skin: no expression moves it more than this
UPPER_RING_CM = 7.0    # rigid skin this close to the upper teeth places the upper mouth parts
PATCH_GRID = 256       # UV grid the parts' texture patch is searched on
PATCH_FILL = 0.5       # the patch fills half the clearing, so mip levels that read its surroundings stay white


def _sphere(points: np.ndarray) -> tuple[np.ndarray, float]:
    a = np.c_[2 * points, np.ones(len(points))]
    sol = np.linalg.lstsq(a, (points ** 2).sum(1), rcond=None)[0]
    return sol[:3], float(np.sqrt(sol[3] + sol[:3] @ sol[:3]))


def _part_mesh(npz, ranges: dict, ict_range: str, material: str | None, target: int | None):
    """(corners (n,3) ICT ids, bary (n,3), faces, uv, uv_faces) of one part, decimated to `target`."""
    first, last = ranges[ict_range]
    polys, uv_polys = npz["faces"].astype(np.int64), npz["faces_uv"].astype(np.int64)
    sel = (polys[:, 0] >= first) & (polys[:, 0] <= last)
    if material is not None:
        sel &= npz["face_material"] == list(npz["materials"]).index(material)
    tris, _ = triangulate_polys(polys[sel])
    uv_tris, _ = triangulate_polys(uv_polys[sel])
    used = np.unique(tris)
    local = np.full(int(used.max()) + 1, -1)
    local[used] = np.arange(len(used))
    neutral = npz["neutral"][used].astype(np.float64)
    if target is None:
        level = build_lod_chain(neutral, local[tris], npz["uv"], uv_tris, ())[0]
    else:
        level = build_lod_chain(neutral, local[tris], npz["uv"], uv_tris, (target,))[1]
    keep_uv = np.unique(level.uv_faces)
    uv_map = np.full(len(level.uv), -1)
    uv_map[keep_uv] = np.arange(len(keep_uv))
    return used[level.corners], level.bary, level.faces, level.uv[keep_uv], uv_map[level.uv_faces]


def _eye_materials(points: np.ndarray) -> tuple[np.ndarray, dict]:
    """Per-vertex material (sclera/iris/pupil) of an eyeball shell, and its pivot and gaze axis."""
    centre, radius = _sphere(points)
    apex = points[np.argmax(np.linalg.norm(points - centre, axis=1))]  # the cornea bulges furthest
    axis = (apex - centre) / np.linalg.norm(apex - centre)
    rel = points - centre
    off_axis = np.linalg.norm(rel - np.outer(rel @ axis, axis), axis=1)
    front = rel @ axis > 0
    names = list(MATERIALS)
    mat = np.full(len(points), names.index("sclera"))
    mat[front & (off_axis < IRIS_RADIUS_CM)] = names.index("iris")
    mat[front & (off_axis < PUPIL_RADIUS_CM)] = names.index("pupil")
    return mat, {"pivot": [round(float(x), 5) for x in centre], "axis": [round(float(x), 5) for x in axis],
                 "radius_cm": round(radius, 4)}


def build_parts(npz, template_verts: np.ndarray, template_faces: np.ndarray, template_uv: np.ndarray,
                template_uv_faces: np.ndarray, skin_expression: np.ndarray,
                expression_names: list[str]) -> tuple[dict, dict]:
    """(arrays for parts.npz, the template.json `parts` block).

    Args:
        npz: the opened ICT archive.
        template_verts, template_faces: (V, 3) skin rest positions as written to template.obj, its triangles.
        template_uv, template_uv_faces: the skin's UV layout (the parts' texture patch goes in its padding).
        skin_expression: (53, V, 3) the skin expression basis as written to bases.npz.
        expression_names: the expression basis names.
    """
    ranges = json.loads(str(npz["geometry_ranges"]))
    names = list(MATERIALS)
    rows, cols, vals, faces, uvs, uv_faces, mats, block = [], [], [], [], [], [], [], {}
    n = nf = nuv = 0
    eyes = {}
    for name, ict_range, material, target in PARTS:
        corners, bary, f, uv, uvf = _part_mesh(npz, ranges, ict_range, material, target)
        rows.append(np.repeat(np.arange(n, n + len(corners)), 3))
        cols.append(corners.ravel())
        vals.append(bary.ravel())
        pts = (npz["neutral"][corners].astype(np.float64) * bary[..., None]).sum(1)
        if name.startswith("eye_") and "socket" not in name:
            m, eyes[name] = _eye_materials(pts)
        else:
            kind = {"eye_socket_left": "socket", "eye_socket_right": "socket", "teeth": "teeth",
                    "gums_tongue": "gums", "mouth_socket": "mouth"}[name]
            m = np.full(len(pts), names.index(kind))
        mats.append(m)
        faces.append(f + n)
        uvs.append(uv)
        uv_faces.append(uvf + nuv)
        block[name] = {"verts": [n, n + len(pts)], "faces": [nf, nf + len(f)], "source": ict_range}
        n, nf, nuv = n + len(pts), nf + len(f), nuv + len(uv)
    weights = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                            (n, len(npz["neutral"])))
    weights.sum_duplicates()
    verts = weights @ npz["neutral"].astype(np.float64)
    identity = np.stack([weights @ m for m in npz["identity_modes"].astype(np.float64)])
    expression = np.stack([weights @ m for m in npz["expression_modes"].astype(np.float64)])
    groups, anchors = _groups(block, verts, expression, eyes, template_verts, skin_expression, expression_names)
    arrays = {"verts": verts.astype(np.float32), "faces": np.concatenate(faces).astype(np.int32),
              "uv": np.concatenate(uvs).astype(np.float32), "uv_faces": np.concatenate(uv_faces).astype(np.int32),
              "identity": identity.astype(np.float16), "expression": expression.astype(np.float16),
              "vertex_material": np.concatenate(mats).astype(np.uint8), "vertex_group": groups.astype(np.uint8)}
    meta = {
        "format": 1, "file": "parts.npz", "num_verts": int(n), "num_faces": int(nf),
        "note": "eyeballs, eye sockets, teeth, gums/tongue and mouth socket from ICT's parts "
                "(scripts/head_parts.py); bases 'identity' and 'expression' index like the skin's",
        "parts": block, "materials": MATERIALS, "material_order": names,
        "groups": ["eye_left", "eye_right", "upper", "lower"], "anchors": anchors, "eyes": eyes,
        "gaze_deg": GAZE_DEG, "uv_patch": _uv_patch(template_verts, template_faces, template_uv, template_uv_faces),
    }
    return arrays, meta


def _groups(block, verts, expression, eyes, skin_verts, skin_expression, names):
    """Per part vertex placement group (0 eye_left, 1 eye_right, 2 upper, 3 lower) and the skin anchors."""
    groups = np.full(len(verts), 2)
    jaw = np.linalg.norm(expression[names.index("jawOpen")], axis=1)
    t0, t1 = block["teeth"]["verts"]
    lower_shift = np.percentile(jaw[t0:t1], 90)
    groups[jaw > LOWER_JAW_FRACTION * lower_shift] = 3
    for side, g in (("left", 0), ("right", 1)):
        for part in (f"eye_{side}", f"eye_socket_{side}"):
            s, e = block[part]["verts"]
            groups[s:e] = g
    skin_motion = np.linalg.norm(skin_expression, axis=2).max(0)  # (V,) most any expression moves a vertex
    rigid = skin_motion < RIGID_MAX_CM
    anchors = {}
    for side in ("left", "right"):
        d = np.linalg.norm(skin_verts - np.asarray(eyes[f"eye_{side}"]["pivot"]), axis=1)
        anchors[f"eye_{side}"] = np.flatnonzero(rigid & (d > EYE_RING_CM[0]) & (d < EYE_RING_CM[1])).tolist()
    upper_centre = verts[t0:t1][groups[t0:t1] == 2].mean(0)
    d = np.linalg.norm(skin_verts - upper_centre, axis=1)
    anchors["upper"] = np.flatnonzero(rigid & (d < UPPER_RING_CM)).tolist()
    skin_jaw = np.linalg.norm(skin_expression[names.index("jawOpen")], axis=1)
    jaw_only = np.linalg.norm(np.delete(skin_expression, [names.index(k) for k in ("jawOpen", "mouthClose",
                                                                                      "jawForward", "jawLeft",
                                                                                      "jawRight")], 0), axis=2).max(0)
    anchors["lower"] = np.flatnonzero((skin_jaw > 0.8 * lower_shift) & (jaw_only < 2 * RIGID_MAX_CM)).tolist()
    for k, v in anchors.items():
        if len(v) < 12:
            raise SystemExit(f"parts: only {len(v)} skin anchors for group {k}")
    return groups, anchors


def _uv_patch(verts: np.ndarray, faces: np.ndarray, uv: np.ndarray, uv_faces: np.ndarray) -> list[float]:
    """[u0, v0, u1, v1]: a square of the skin's UV padding far from every chart and from the texture border,
    which renderers paint white so the parts' flat colours (vertex colours x albedo) come out as they are."""
    from scipy import ndimage

    from topos_cli.render.textures import build_atlas

    blocked = build_atlas(verts, faces, uv, uv_faces, size=PATCH_GRID).covered.copy()  # row 0 = v 1
    blocked[[0, -1], :] = True
    blocked[:, [0, -1]] = True  # wrap-around filtering reads across the border
    dist = ndimage.distance_transform_edt(~blocked)
    r, c = np.unravel_index(int(np.argmax(dist)), dist.shape)
    half = PATCH_FILL * float(dist[r, c]) / np.sqrt(2) / PATCH_GRID  # the square's corners stay in the clearing
    u, v = (c + 0.5) / PATCH_GRID, 1.0 - (r + 0.5) / PATCH_GRID
    return [round(u - half, 5), round(v - half, 5), round(u + half, 5), round(v + half, 5)]


def save_npz(path: Path, arrays: dict) -> None:
    """np.savez_compressed with fixed zip timestamps, so a rebuild writes the same bytes (numpy stamps each
    member with the current time)."""
    import io
    import zipfile

    tmp = path.with_name(path.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, value in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue())
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ict", type=Path, default=REPO.parent / "shared/data/ict_face_model_light.npz")
    ap.add_argument("--template", type=Path, default=REPO / "topos_cli/assets/templates/topos-head")
    args = ap.parse_args(argv)
    write_parts(args.template, np.load(args.ict, allow_pickle=False))
    return 0


def write_parts(folder: Path, npz) -> dict:
    """Build from the written template.obj / bases.npz and write parts.npz; returns the `parts` block."""
    from topos_cli.io.obj import read_obj
    from topos_cli.template import triangulate_polys as tri

    obj = read_obj(folder / "template.obj")
    with np.load(folder / "bases.npz", allow_pickle=False) as bases:
        skin_expression = bases["expression"].astype(np.float64)
        names = [str(s) for s in bases["expression_names"]]
    arrays, meta = build_parts(npz, obj.verts, tri(obj.polys)[0], obj.uv, tri(obj.uv_polys)[0], skin_expression,
                               names)
    save_npz(folder / "parts.npz", arrays)
    meta_path = folder / "template.json"
    current = json.loads(meta_path.read_text())
    current["parts"] = meta
    tmp_json = folder / "template.json.tmp"
    tmp_json.write_text(json.dumps(current, separators=(",", ":")) + "\n")
    tmp_json.replace(meta_path)
    print(f"parts: {meta['num_verts']} vertices, {meta['num_faces']} triangles "
          f"({', '.join(f'{k} {v[1] - v[0]}' for k, v in ((k, b['verts']) for k, b in meta['parts'].items()))})")
    return meta


if __name__ == "__main__":
    raise SystemExit(main())
