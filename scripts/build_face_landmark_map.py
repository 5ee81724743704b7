"""Derive the mediapipe-478 landmark <-> template surface correspondence by rendering the template.

Random identities of the template (identity weights 0.8 N(0, 1), neutral expression) are rendered with topos's
renderer (random synthetic textures and lights, near-frontal cameras); mediapipe's face mesh runs on each render.
Each detected point is traced back through the render's triangle id to the surface point it landed on,
expressed on the *mean* template (same triangle, same barycentrics), so every render votes in one frame. Per
landmark, the coordinate-wise median of the votes is snapped to the template surface (triangle + barycentrics);
the spread of the votes (median distance to that point, cm) says how well the point is defined on this
template: a weight 1 / (1 + (spread / SPREAD_SCALE)^2). Points over the eye or mouth openings (lower eyelid
margins) move to the nearest skin pixel; the 10 iris points, which follow the gaze, get weight 0.

    python scripts/build_face_landmark_map.py --renders 48 --seed 100 \
        --out topos_cli/assets/templates/topos-head/face_landmarks_mediapipe.json

The seeds 100.. are kept out of the generate-geo benchmark (benchmarks/generate_geo.py uses 7_000..).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IDENTITY_SIGMA = 0.8  # a bit inside the identity prior: typical faces, not caricatures
MAX_YAW, MAX_PITCH, MAX_ROLL = 12.0, 8.0, 3.0  # degrees: near-frontal, where the face mesh is most accurate
ZOOM = (1.5, 1.8)  # framing: the face spans ~45 % of a 512 render, like a portrait crop
MIN_HIT_FRACTION = 0.5  # a landmark that lands on the visible skin in fewer renders than this is unusable
SPREAD_SCALE = 0.3  # cm: spread at which a landmark's weight halves (0.17 cm is the median spread)
MIN_WEIGHT = 0.05  # usable landmarks keep at least this weight
SNAP_PIXELS = 8.0  # a point over an opening moves to skin at most this far (lid margins sit ~1-4 px inside)
IRIS = range(468, 478)  # iris points follow the gaze, not the head's shape: never used for the shape


@dataclass
class Portrait:
    """A synthetic portrait: the render and what made it."""

    image: np.ndarray  # (H, W, 3) uint8 sRGB
    face_id: np.ndarray  # (H, W) int64 triangle per pixel, -1 background
    camera: object  # render.camera.Camera
    verts: np.ndarray  # (V, 3) the rendered head (cm)


def random_material(tpl, rng: np.random.Generator, cache: dict, size: int = 512):
    """A synthetic skin/hair/makeup texture in the template's UV space (atlas built once per template)."""
    from topos_cli.render.renderer import Material
    from topos_cli.render.textures import build_atlas, feature_masks, synthesize

    if "atlas" not in cache:
        lms = tpl.landmarks if len(tpl.landmarks) == 68 else None
        cache["atlas"] = build_atlas(tpl.verts, tpl.faces, tpl.uv, tpl.uv_faces, tpl.regions, lms, size)
        cache["masks"] = feature_masks(cache["atlas"])
    smp = synthesize(cache["atlas"], rng, masks=cache["masks"])
    return Material(albedo_map=smp.albedo[..., :3], material_map=np.stack([smp.roughness, smp.specular], -1),
                    normal_map=smp.normal[..., :3], roughness=1.0, specular=2.0)


def render_portrait(renderer, tpl, verts: np.ndarray, rng: np.random.Generator, cache: dict, size: int = 512,
                    max_yaw: float = MAX_YAW, max_pitch: float = MAX_PITCH, max_roll: float = MAX_ROLL,
                    zoom=ZOOM, fov: float = 20.0, material=None):
    """Render `verts` (template topology) as a portrait with a random texture (or `material`), light and
    near-frontal camera."""
    from topos_cli.render.lights import random_rig
    from topos_cli.render.renderer import RenderMesh
    from topos_cli.render.views import framed_camera

    face = verts[tpl.regions["nose"]].mean(0) if "nose" in tpl.regions else verts.mean(0)
    centre = (verts.min(0) + verts.max(0)) / 2
    shift = (face - centre) * np.array([1.0, 1.0, 0.0]) + rng.normal(0, 0.5, 3)  # aim at the face
    cam = framed_camera(verts, float(rng.uniform(-max_yaw, max_yaw)), float(rng.uniform(-max_pitch, max_pitch)),
                        size, fov, roll=float(rng.uniform(-max_roll, max_roll)),
                        zoom=float(rng.uniform(*zoom)), shift=tuple(shift))
    mesh = RenderMesh(verts, tpl.faces, uv=tpl.uv, uv_faces=tpl.uv_faces)
    out = renderer.render(mesh, cam, material or random_material(tpl, rng, cache), random_rig(rng), passes=("color", "face_id"))
    rgb = out["color"][..., :3] * out["color"][..., 3:] + 0.5 * (1 - out["color"][..., 3:])  # grey background
    return Portrait((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8), out["face_id"], cam, verts)


def surface_hits(portrait: Portrait, faces: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Triangle (-1 for a miss) and barycentrics of the visible front-facing surface under each pixel point.

    A point over an opening (the inside of the head seen through the eye or mouth hole) or just off the
    silhouette moves to the nearest pixel of front-facing skin within SNAP_PIXELS: for the eyelid and lip
    contours that is the lid or lip margin, which is what the landmark means."""
    from scipy import ndimage

    h, w = portrait.face_id.shape
    centres = portrait.verts[faces].mean(1)
    normals = np.cross(portrait.verts[faces[:, 1]] - portrait.verts[faces[:, 0]],
                       portrait.verts[faces[:, 2]] - portrait.verts[faces[:, 0]])
    front_tri = np.einsum("fc,fc->f", normals, portrait.camera.center - centres) > 0
    fid = portrait.face_id
    front = (fid >= 0) & front_tri[np.maximum(fid, 0)]
    dist, (near_r, near_c) = ndimage.distance_transform_edt(~front, return_indices=True)
    col = np.clip(np.floor(points[:, 0]).astype(int), 0, w - 1)
    row = np.clip(np.floor(points[:, 1]).astype(int), 0, h - 1)
    pts = points.copy()
    moved = ~front[row, col]
    row2, col2 = near_r[row, col], near_c[row, col]
    pts[moved] = np.stack([col2[moved] + 0.5, row2[moved] + 0.5], 1)
    tri = np.where(dist[row, col] <= SNAP_PIXELS, fid[row2, col2], -1)
    pix, _ = portrait.camera.project(portrait.verts)
    bary = np.zeros((len(points), 3))
    for i in np.flatnonzero(tri >= 0):
        a, b, c = pix[faces[tri[i]]]
        m = np.array([[b[0] - a[0], c[0] - a[0]], [b[1] - a[1], c[1] - a[1]]])
        if abs(np.linalg.det(m)) < 1e-9:
            tri[i] = -1
            continue
        uv = np.linalg.solve(m, pts[i] - a)
        bary[i] = np.clip([1 - uv.sum(), uv[0], uv[1]], 0, 1)
        bary[i] /= bary[i].sum()
    return tri, bary


def collect(tpl, renders: int, seed: int) -> tuple[np.ndarray, int]:
    """(renders, 478, 3) mean-template positions of each landmark's surface point (NaN: missed); detections."""
    from topos_cli.faces.detect import NUM_LANDMARKS, detect_faces
    from topos_cli.render.parts import PartsRenderer

    renderer, cache = PartsRenderer("gl", template=tpl), {}  # eyeballs and mouth interior, as in photos
    identity = tpl.basis("identity")
    votes = np.full((renders, NUM_LANDMARKS, 3), np.nan)
    detected = 0
    for i in range(renders):
        rng = np.random.default_rng([seed, i])
        verts = tpl.verts + np.tensordot(rng.normal(0, IDENTITY_SIGMA, len(identity)), identity, 1)
        portrait = render_portrait(renderer, tpl, verts.astype(np.float32), rng, cache)
        faces = detect_faces(portrait.image)
        if not faces:
            continue
        detected += 1
        tri, bary = surface_hits(portrait, tpl.faces, faces[0].landmarks.astype(np.float64))
        ok = tri >= 0
        votes[i, ok] = np.einsum("nk,nkc->nc", bary[ok], tpl.verts[tpl.faces[tri[ok]]].astype(np.float64))
    return votes, detected


def summarise(tpl, votes: np.ndarray) -> dict:
    """Per landmark: surface point (triangle, barycentrics, nearest vertex), spread (cm), hit count, weight."""
    import trimesh

    hits = np.isfinite(votes[..., 0]).sum(0)
    median = np.nanmedian(np.where(hits[None, :, None] > 0, votes, 0.0), axis=0)
    spread = np.array([np.nanmedian(np.linalg.norm(votes[:, k] - median[k], axis=1)) if hits[k] else np.inf
                       for k in range(votes.shape[1])])
    mesh = trimesh.Trimesh(tpl.verts, tpl.faces, process=False)
    closest, _, tri = mesh.nearest.on_surface(median)
    bary = trimesh.triangles.points_to_barycentric(mesh.triangles[tri], closest)
    bary = np.clip(bary, 0, 1) / np.clip(bary, 0, 1).sum(1, keepdims=True)
    nearest = tpl.faces[tri, np.argmax(bary, 1)]
    usable = hits >= MIN_HIT_FRACTION * max(int(hits.max()), 1)
    usable[list(IRIS)] = False
    weight = np.where(usable, np.maximum(1 / (1 + (spread / SPREAD_SCALE) ** 2), MIN_WEIGHT), 0.0)
    return {"triangles": tri.astype(int).tolist(), "barycentrics": np.round(bary, 5).tolist(),
            "vertices": nearest.astype(int).tolist(), "weights": np.round(weight, 4).tolist(),
            "spread_cm": [round(float(s), 4) if math.isfinite(s) else None for s in spread],
            "hits": hits.astype(int).tolist()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", default=None, help="template name or folder (default: topos-head)")
    parser.add_argument("--renders", type=int, default=48)
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    from topos_cli.template import load_template

    tpl = load_template(args.template)
    start = time.time()
    votes, detected = collect(tpl, args.renders, args.seed)
    if detected == 0:
        print("no render was detected as a face", file=sys.stderr)
        return 1
    record = {"format": 1, "scheme": "mediapipe-face-mesh-478", "template": tpl.name, "template_hash": tpl.hash,
              "renders": args.renders, "detected": detected, "seed": args.seed,
              "command": f"python scripts/build_face_landmark_map.py --renders {args.renders} --seed {args.seed} "
                         f"--out {args.out.name}", **summarise(tpl, votes)}
    args.out.write_text(json.dumps(record, separators=(",", ":")) + "\n")
    spread = np.array([s for s in record["spread_cm"] if s is not None])
    usable = int((np.asarray(record["weights"]) > 0).sum())
    print(f"{detected}/{args.renders} renders detected; {usable}/478 landmarks usable; spread median "
          f"{np.median(spread):.3f} cm, 90th pct {np.percentile(spread, 90):.3f} cm; "
          f"{len(set(record['vertices']))} distinct vertices; {time.time() - start:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
