"""Regions of the default template: a hard partition by landmark rules, and localised region bases.

Part of scripts/build_default_template.py (see its docstring); pure numpy/scipy.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.spatial import cKDTree

REGION_RULES = {
    "ear": "in ICT's face range, |x| > 6.6 cm, -3.5 < y < 5.5 and z < 2.2 (the auricle)",
    "eye": "inside an ellipse (x,y) around the eye landmarks 36-41 / 42-47: half-width + 0.55 cm, 0.85 cm high",
    "brow": "within 0.75 cm (x,y) of the brow landmark polyline 17-21 / 22-26",
    "nose": "between 0.35 cm below landmark 33 and 0.2 cm above 27, |x| under a width growing from 0.8 cm at 27 "
            "to 0.55 cm beyond the nostril landmarks 31/35",
    "mouth": "inside an ellipse (x,y) around the outer lip landmarks 48-59, 0.55 cm larger on each side",
    "chin": "|x| < 2.8 cm, below the mouth, above 1.2 cm under the chin landmark 8",
    "neck": "below the jaw landmark contour (8-12, flat beyond 12) minus 1.2 cm in front, or y < -6 cm behind the ears",
    "jaw": "within 1.5 cm of the jaw contour 2-14, or below the mouth corners and outside the chin",
    "cheekbone": "|x| > 2.4 cm between the nose base (landmark 33) and 0.6 cm under the eye centres, |x| < 6.6 cm",
    "forehead": "in ICT's face range above the brows + 0.4 cm, |x| < 5.5 cm",
    "temple": "the rest of the face range above the nose base and |x| > 5 cm (sideburn and temple)",
    "cheek": "the rest of ICT's face range (mid and lower cheek, nasolabial area)",
    "back_of_head": "outside the face range, z < 0 and y < 6.5 cm (occiput down to the nape)",
    "scalp": "the rest: outside the face range, above or in front of the back of the head",
}


def _polyline_dist(p: np.ndarray, line: np.ndarray) -> np.ndarray:
    """Distance (N,) from points (N,D) to a polyline (K,D)."""
    a, b = line[:-1][None], line[1:][None]
    ab = b - a
    t = np.clip(((p[:, None] - a) * ab).sum(-1) / (ab * ab).sum(-1), 0, 1)
    return np.linalg.norm(p[:, None] - (a + t[..., None] * ab), axis=-1).min(1)


def make_regions(verts: np.ndarray, faces: np.ndarray, lm: np.ndarray, face_w: np.ndarray) -> dict[str, np.ndarray]:
    """Hard partition of the template vertices by REGION_RULES (cm, template frame, mirror-symmetric);
    patches of fewer than 30 connected vertices (e.g. the ear canal) join their neighbours' region.

    Args:
        verts: (V,3) template vertices; faces: (F,3); lm: (68,3) landmark positions;
        face_w: (V,) weight on ICT's face range.
    """
    x, y, z = np.abs(verts[:, 0]), verts[:, 1], verts[:, 2]
    xy = np.stack([x, y], 1)
    L = lm * [-1, 1, 1] if lm[36, 0] > 0 else lm  # use the -x copy of paired landmarks, then |x|
    Lxy = np.stack([np.abs(L[:, 0]), L[:, 1]], 1)
    face = face_w > 0.5
    eye_c = Lxy[36:42].mean(0)
    eye_a = 0.5 * abs(Lxy[36, 0] - Lxy[39, 0]) + 0.55
    mouth_c = Lxy[48:60].mean(0) * [0, 1]
    mouth_a, mouth_b = Lxy[54, 0] + 0.55, 0.5 * (Lxy[51, 1] - Lxy[57, 1]) + 0.55
    jaw_x, jaw_y = Lxy[8:13, 0], Lxy[8:13, 1]
    jaw_line = np.interp(x, jaw_x, jaw_y)  # flat beyond landmark 12
    brow_d = _polyline_dist(xy, Lxy[17:22][::-1])
    brow_y = np.interp(x, Lxy[17:22][::-1, 0], Lxy[17:22][::-1, 1])
    t = np.clip((y - lm[27, 1]) / (lm[33, 1] - lm[27, 1]), 0, 1)
    nose_w = 0.8 + t * (Lxy[35, 0] + 0.55 - 0.8)
    rules = [
        ("ear", face & (x > 6.6) & (y > -3.5) & (y < 5.5) & (z < 2.2)),
        ("eye", face & ((((xy - eye_c) / [eye_a, 0.85]) ** 2).sum(1) < 1)),
        ("brow", face & (brow_d < 0.75)),
        ("nose", face & (y > lm[33, 1] - 0.35) & (y < lm[27, 1] + 0.2) & (x < nose_w)),
        ("mouth", face & ((((xy - mouth_c) / [mouth_a, mouth_b]) ** 2).sum(1) < 1)),
        ("neck", ((z > -2) & (y < jaw_line - 1.2)) | ((z <= -2) & (y < -6.0))),
        ("chin", face & (x < 2.8) & (y < mouth_c[1]) & (y > lm[8, 1] - 1.2)),
        ("jaw", face & ((_polyline_dist(np.stack([x, y, z], 1), np.c_[Lxy[2:9], L[2:9, 2]]) < 1.5)
                        | ((y < Lxy[54, 1]) & (x >= 2.8)))),
        ("cheekbone", face & (x > 2.4) & (x < 6.6) & (y > lm[33, 1]) & (y < eye_c[1] - 0.6)),
        ("forehead", face & (y > brow_y + 0.4) & (x < 5.5)),
        ("temple", face & (y > lm[33, 1]) & (x > 5.0)),
        ("cheek", face),
        ("back_of_head", (z < 0) & (y < 6.5)),
        ("scalp", np.ones(len(verts), bool)),
    ]
    label = np.full(len(verts), -1)
    for i, (_, sel) in enumerate(rules):
        label[(label < 0) & sel] = i
    label = _absorb_small_patches(label, faces, min_size=30)
    order = ["brow", "eye", "nose", "mouth", "ear", "forehead", "cheekbone", "jaw", "chin",
             "scalp", "neck", "back_of_head", "temple", "cheek"]
    names = [r[0] for r in rules]
    return {k: np.flatnonzero(label == names.index(k)) for k in order}


def _absorb_small_patches(label: np.ndarray, faces: np.ndarray, min_size: int) -> np.ndarray:
    """Relabel connected same-label patches smaller than min_size to their most common neighbouring label."""
    from scipy.sparse.csgraph import connected_components

    e = np.unique(np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), 1), axis=0)
    n = len(label)
    for _ in range(5):
        same = label[e[:, 0]] == label[e[:, 1]]
        g = sp.coo_matrix((np.ones(same.sum()), (e[same, 0], e[same, 1])), (n, n))
        _, comp = connected_components(g, directed=False)
        size = np.bincount(comp)
        small = size[comp] < min_size
        if not small.any():
            break
        border = e[label[e[:, 0]] != label[e[:, 1]]]
        new = label.copy()
        for c in np.unique(comp[small]):
            members = comp == c
            nb = np.r_[label[border[members[border[:, 0]], 1]], label[border[members[border[:, 1]], 0]]]
            new[members] = np.bincount(nb).argmax()
        label = new
    return label


def region_bases(verts: np.ndarray, regions: dict, identity: np.ndarray, names: list[str], modes: int,
                 sigma: float, falloff_cm: float) -> tuple[dict, dict]:
    """Localised identity modes per region: (mode - its mean translation over the mask) x smooth mask, then
    PCA, keeping `modes` directions with both signs.

    Args:
        verts: (V,3) cm; regions: name -> vertex ids; identity: (K,V,3) modes with unit-variance weights;
        names: regions to build; sigma: a coefficient of 1 moves `sigma` standard deviations;
        falloff_cm: width of the smoothstep falloff of the mask outside the region.

    Returns ({"region_<name>": (2*modes,V,3) float32}, {name: note dict}).
    """
    tree_all = verts
    out, notes = {}, {}
    k = modes
    for name in names:
        idx = regions[name]
        d, _ = cKDTree(tree_all[idx]).query(tree_all)
        s = np.clip(1.0 - d / falloff_cm, 0.0, 1.0)
        mask = s * s * (3 - 2 * s)  # 1 inside the region, smooth C1 falloff to 0 outside
        # remove each mode's mean translation over the mask first: moving a whole region against its
        # fixed surroundings (e.g. the chin down by 2 cm) would fold the skin at the mask's edge
        shift = np.einsum("kvc,v->kc", identity, mask / mask.sum())  # (K, 3)
        local = (identity - shift[:, None, :]) * mask[None, :, None]  # (K, V, 3)
        _, sv, vt = np.linalg.svd(local.reshape(len(local), -1), full_matrices=False)
        dirs = (sigma * sv[:k, None] * vt[:k]).reshape(k, -1, 3)
        out[f"region_{name}"] = np.concatenate([dirs, -dirs]).astype(np.float32)
        notes[name] = {"count": 2 * k, "explained": float((sv[:k] ** 2).sum() / (sv**2).sum()),
                       "max_cm": float(np.linalg.norm(dirs, axis=-1).max())}
    return out, notes
