"""Placing a template's eye and mouth parts (eyeballs, eye sockets, teeth, gums and tongue, mouth socket).

The parts (`Template.parts`, built beside the skin by scripts/head_parts.py) carry identity and expression
bases indexed like the skin's, so for a head made from the bases they follow the same weights:

    parts = part_verts(template, identity=w_id, expression={"jawOpen": 0.7, "eyeLookUp_L": 0.4})

Expression modes move teeth, tongue and mouth socket (jawOpen, jawLeft, ...); they do not move the eyeballs,
so gaze is a rotation of each eyeball (and its socket) about the eyeball centre by `gaze_deg` x the eyeLook*
weights. For a head that did not come from the bases (a retopo output, an edited mesh), `fit_parts` places
them from the skin alone: a similarity of the whole skin onto the template, a ridge fit of the template's
identity + expression bases to the skin, the parts at those weights, then per placement group (each eye,
the skull-rigid upper mouth, the jaw) a similarity from the fitted skin's anchor ring to the head's.
Pure numpy; nothing here reads files.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from topos_cli.geometry.similarity import Similarity, umeyama
from topos_cli.template import Template, TemplateParts

RIDGE = 1e-6  # relative ridge on the bases fit: keeps the solve well-posed; 1e-3 already biased weights by 0.4
POSED_RMS_CM = 0.3  # a bases fit in the template frame worse than this means the head is posed (or not a head
#                     from the bases at all): its frame is then estimated too. Retopo fits of scans: ~0.1 cm
FRAME_ITERS = 5  # pose <-> bases alternations for a posed head (the per-group similarities absorb the rest)
GAZE_SIGNS = {  # (ARKit name stem, rotation axis in the head frame, sign) per eye; +x is the subject's left
    "eye_left": (("eyeLookUp_L", "x", -1.0), ("eyeLookDown_L", "x", 1.0), ("eyeLookIn_L", "y", -1.0),
                 ("eyeLookOut_L", "y", 1.0)),
    "eye_right": (("eyeLookUp_R", "x", -1.0), ("eyeLookDown_R", "x", 1.0), ("eyeLookIn_R", "y", 1.0),
                  ("eyeLookOut_R", "y", -1.0)),
}
GAZE_KEY = {"Up": "up", "Down": "down", "In": "in", "Out": "out"}


def _parts(template: Template) -> TemplateParts:
    parts = template.parts
    if parts is None:
        raise ValueError(f"template '{template.name}' has no parts")
    return parts


def part_verts(template: Template, identity=None, expression: dict[str, float] | None = None) -> np.ndarray:
    """(P, 3) float32 part vertices for identity weights and named expression weights (the skin's bases).

    Args:
        template: a template with parts.
        identity: sequence of identity-mode weights (first len(identity) modes), or None.
        expression: {expression name: weight}; eyeLook* also rotate the eyeballs. Unknown names are ignored.
    """
    parts = _parts(template)
    verts = parts.verts.astype(np.float64)
    if identity is not None and len(identity):
        w = np.asarray(identity, np.float64)
        verts = verts + np.tensordot(w, parts.identity[: len(w)], axes=1)
    expression = dict(expression or {})
    names = [str(s) for s in template.bases.get("expression_names", [])]
    for name, weight in expression.items():
        if name in names and names.index(name) < len(parts.expression):
            verts = verts + float(weight) * parts.expression[names.index(name)]
    return _apply_gaze(parts, verts, expression).astype(np.float32)


def _apply_gaze(parts: TemplateParts, verts: np.ndarray, expression: dict[str, float]) -> np.ndarray:
    """Rotate each eyeball (and its socket group) about its current centre by the eyeLook* weights."""
    groups = parts.spec["groups"]
    for eye, terms in GAZE_SIGNS.items():
        if eye not in parts.spec.get("eyes", {}):
            continue
        angles = {"x": 0.0, "y": 0.0}
        for name, axis, sign in terms:
            key = GAZE_KEY[name[len("eyeLook"):-2]]
            angles[axis] += sign * np.radians(parts.spec["gaze_deg"][key]) * float(np.clip(expression.get(name, 0.0), 0, 1))
        if not any(angles.values()):
            continue
        start, stop = parts.spec["parts"][eye]["verts"]
        rest = np.asarray(parts.spec["eyes"][eye]["pivot"], np.float64)
        pivot = rest + (verts[start:stop] - parts.verts[start:stop]).mean(0)  # the ball moved with identity
        rot = _rotation(angles["x"], angles["y"])
        ball = np.zeros(len(verts), bool)
        ball[start:stop] = True
        ball &= parts.vertex_group == groups.index(eye)
        verts[ball] = (verts[ball] - pivot) @ rot.T + pivot
    return verts


def _rotation(pitch: float, yaw: float) -> np.ndarray:
    """Rotation by `yaw` about +y after `pitch` about +x (radians)."""
    cx, sx, cy, sy = np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    return ry @ rx


@lru_cache(maxsize=4)
def _fit_operator(template: Template) -> np.ndarray:
    """(K, 3V) ridge pseudo-inverse of the skin's identity + expression bases (what `fit_weights` applies)."""
    basis = np.concatenate([template.basis("identity"), template.basis("expression")]).reshape(
        -1, template.num_verts * 3)  # (K, 3V) float32: the Gram product is the one costly step
    gram = (basis @ basis.T).astype(np.float64)
    gram[np.diag_indices_from(gram)] += RIDGE * np.trace(gram) / len(gram)
    return np.linalg.solve(gram, basis.astype(np.float64))


def fit_weights(template: Template, verts: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """Identity weights (100,) and expression weights {name: w} whose skin best matches `verts` (template frame)."""
    delta = (np.asarray(verts, np.float64) - template.verts).reshape(-1)
    coeffs = _fit_operator(template) @ delta
    n_id = len(template.basis("identity"))
    names = [str(s) for s in template.bases.get("expression_names", [])]
    return coeffs[:n_id], {n: float(w) for n, w in zip(names, coeffs[n_id:], strict=True)}


def fit_parts(template: Template, verts: np.ndarray) -> np.ndarray:
    """(P, 3) float32 parts placed on a head in template topology that need not come from the bases.

    Args:
        template: a template with parts and identity/expression bases.
        verts: (V, 3) the head's skin, in any pose and scale (a similarity of the template frame).
    """
    parts = _parts(template)
    verts = np.asarray(verts, np.float64)
    frame, local = Similarity(), verts  # heads in template topology are usually in the template frame
    identity, expression = fit_weights(template, local)
    skin = template.verts + _skin_delta(template, identity, expression)
    if np.sqrt(((skin - local) ** 2).sum(1).mean()) > POSED_RMS_CM:
        skin = template.verts.astype(np.float64)
        for _ in range(FRAME_ITERS):  # posed: the pose and the shape explain each other, alternate them
            frame = umeyama(skin, verts)  # template frame -> head frame
            local = frame.inverse().apply(verts)
            identity, expression = fit_weights(template, local)
            skin = template.verts + _skin_delta(template, identity, expression)
    placed = part_verts(template, identity, expression).astype(np.float64)
    for g, name in enumerate(parts.spec["groups"]):
        anchors = np.asarray(parts.spec["anchors"][name], np.int64)
        rows = parts.vertex_group == g
        if rows.any() and len(anchors) >= 3:
            placed[rows] = umeyama(skin[anchors], local[anchors]).apply(placed[rows])
    return frame.apply(placed).astype(np.float32)


def _skin_delta(template: Template, identity: np.ndarray, expression: dict[str, float]) -> np.ndarray:
    names = [str(s) for s in template.bases.get("expression_names", [])]
    w = np.asarray([expression[n] for n in names], np.float64)
    return (np.tensordot(identity, template.basis("identity"), axes=1)
            + np.tensordot(w, template.basis("expression"), axes=1))
