"""Find the face on a scan: render it from candidate views, detect face landmarks, lift them onto the scan.

    found = find_face(scan_verts, scan_faces, landmark_map)   # FaceCues or None
    found.points, found.vertex_ids                            # scan points and the template vertices they match

A face shell (a structured-light or phone scan, a statue's front) holds too little of the head's shape for the
pose search; a face, though, is recognisable whatever the scan's extent. The scan (normalised to a head's size)
is rendered as shaded clay by the project's renderer from the six directions along its principal axes, each in
four in-plane rolls; mediapipe's face mesh runs on each picture; each detected 2D landmark is lifted to the scan
surface through the depth pass, and mapped through the template's landmark map (`face_landmarks_mediapipe.json`,
scripts/build_face_landmark_map.py) to a template vertex. The detection whose lifted landmarks a similarity fits
best (trimmed RMS against the template's landmark vertices, relative to the template's size) wins: the inside of a
shell (the hollow-face illusion) and a rolled face that the detector half-reads fit badly. The result seeds the
pose search as extra candidates and adds a landmark term to its score (`geometry.retopo.search.prealign`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from topos_cli.geometry.similarity import principal_axes, umeyama

RENDER_SIZE = 256  # pixels: mediapipe's face mesh works on a 192² crop, a face filling most of 256² is plenty
HEAD_RADIUS = 10.0  # cm: the scan's RMS radius is scaled to this for the render (near/far planes fit a head)
VIEW_DISTANCE = 6.0  # camera distance, in RMS radii of the scan
VIEW_FOV = 30.0  # degrees: the scan's bounding sphere at VIEW_DISTANCE fills the picture
ROLLS = 4  # in-plane rotations per view direction (the detector reads faces up to ~45 deg of roll)
MIN_WEIGHT = 0.3  # landmark map weights below this (contour points that follow the silhouette) are not used
MIN_LIFTED = 60  # fewer landmarks on the scan surface: the detection does not count
INLIER_TRIM = 0.7  # the fit's residual is the RMS of this fraction of the landmarks, the closest
MAX_RESIDUAL = 0.025  # a detection whose trimmed residual exceeds this fraction of the template's diagonal is no face
# a detection fitting within this fraction ends the search (measured: right detections on face masks 0.6-0.7 %,
# the mirrored inside of a shell and half-read rolled faces 1.5 % and more)
GOOD_RESIDUAL = 0.01
IRIS = 468  # landmark ids from here on are iris points (they follow the gaze): never used


@dataclass
class FaceCues:
    """Landmarks found on the scan.

    Attributes:
        points: (L, 3) scan-frame points on the scan surface.
        vertex_ids: (L,) template vertex each matches.
        residual: trimmed RMS of the similarity fit to the template, fraction of the template's diagonal.
        views: pictures rendered; detections: pictures where a face was found.
    """

    points: np.ndarray
    vertex_ids: np.ndarray
    residual: float
    views: int
    detections: int


def view_directions(points: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(view direction, image up) pairs: the six principal-axis directions, each with ROLLS ups; the thinnest axis
    first (a face shell's, and often a head's, front-back direction)."""
    axes = principal_axes(points)
    pairs = []
    for k in (2, 0, 1):
        for sign in (1.0, -1.0):
            d = sign * axes[k]
            a, b = axes[(k + 1) % 3], axes[(k + 2) % 3]
            for r in range(ROLLS):
                ang = 2 * np.pi * r / ROLLS
                pairs.append((d, np.cos(ang) * a + np.sin(ang) * b))
    return pairs


def _lift(depth: np.ndarray, camera, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points under pixels `xy` (L, 2) from the depth pass; (L,) bool where the scan is there."""
    h, w = depth.shape
    col = np.clip(np.floor(xy[:, 0]).astype(int), 0, w - 1)
    row = np.clip(np.floor(xy[:, 1]).astype(int), 0, h - 1)
    z = depth[row, col]
    ok = z > 0
    cam = np.stack([(xy[:, 0] - camera.cx) / camera.fx * z, (xy[:, 1] - camera.cy) / camera.fy * z, z], 1)
    world = (cam - camera.t) @ camera.R  # R^T (x - t)
    return world, ok


def _fit_residual(points: np.ndarray, targets: np.ndarray, diag: float) -> float:
    """Trimmed RMS (fraction of `diag`) of the similarity fit of points onto targets, refitted to the inliers."""
    keep = np.arange(len(points))
    for _ in range(2):
        sim = umeyama(points[keep], targets[keep])
        err = np.linalg.norm(sim.apply(points) - targets, axis=1)
        keep = np.argsort(err)[: max(3, int(INLIER_TRIM * len(err)))]
    return float(np.sqrt((err[keep] ** 2).mean()) / diag)


def find_face(verts: np.ndarray, faces: np.ndarray, template_verts: np.ndarray, landmark_map: dict,
              renderer=None) -> FaceCues | None:
    """The best face found on the scan (scan frame), or None when no view shows one that fits the template."""
    from topos_cli.faces.detect import detect_faces
    from topos_cli.render.camera import look_at
    from topos_cli.render.lights import preset_rig
    from topos_cli.render.renderer import Renderer, RenderMesh

    ids = np.asarray(landmark_map["vertices"], np.int64)
    usable = np.flatnonzero((np.asarray(landmark_map["weights"]) >= MIN_WEIGHT) & (np.arange(len(ids)) < IRIS))
    centre = verts.mean(0)
    radius = float(np.sqrt(((verts - centre) ** 2).sum(1).mean()))
    scale = HEAD_RADIUS / radius
    local = ((verts - centre) * scale).astype(np.float32)
    mesh = RenderMesh(local, np.asarray(faces, np.int64))
    renderer = renderer or Renderer("gl")
    rig = preset_rig("studio")
    diag = float(np.linalg.norm(template_verts.max(0) - template_verts.min(0)))
    best, views, detections = None, 0, 0
    for direction, up in view_directions(local):
        cam = look_at(-direction * VIEW_DISTANCE * HEAD_RADIUS, (0.0, 0.0, 0.0), up, fov=VIEW_FOV,
                      width=RENDER_SIZE)
        out = renderer.render(mesh, cam, None, rig, passes=("color", "depth"))
        views += 1
        found = detect_faces((out["color"][..., :3] * 255).astype(np.uint8))
        if not found:
            continue
        detections += 1
        world, ok = _lift(out["depth"], cam, found[0].landmarks.astype(np.float64))
        sel = usable[ok[usable]]
        if len(sel) < MIN_LIFTED:
            continue
        residual = _fit_residual(world[sel], template_verts[ids[sel]], diag)
        if best is None or residual < best.residual:
            best = FaceCues(world[sel] / scale + centre, ids[sel], residual, 0, 0)
        if best.residual < GOOD_RESIDUAL:
            break
    if best is None or best.residual > MAX_RESIDUAL:
        return None
    best.views, best.detections = views, detections
    return best
