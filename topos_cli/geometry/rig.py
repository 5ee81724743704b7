"""A small face rig for a head in template topology: joints root, neck, head, jaw, eye_L, eye_R and skin weights.

Joint positions come from the head itself: the head joint level with the middle of the ears (the skull's
pivot on the spine), the jaw joint at the same height at the front of the ears (the jaw hinge), the eye
joints behind the centres of the eye openings, the neck joint a quarter of the way from the centre of the
neck's open end to the head joint. (A least-squares rotation axis of `jawOpen` was tried for the jaw: ICT's
jawOpen also slides the jaw forward and down, so the best-fitting axis lies above the eyes.) Skin weights: jaw = `jawOpen` displacement / its maximum (so bones and
blendshapes agree on what the jaw moves), neck = a blend down the neck region, head = the rest. The skin
has no eyeballs, so nothing is weighted to the eye joints; eyeball parts, where a template has them, bind
rigidly to them (`eye_part_weights`).
"""

from __future__ import annotations

import numpy as np

from topos_cli.geometry.asset import Skeleton

JOINT_NAMES = ["root", "neck", "head", "jaw", "eye_L", "eye_R"]
JOINT_PARENTS = np.array([-1, 0, 1, 2, 2, 2])
EYEBALL_DEPTH_CM = 1.2  # eyeball centre behind the opening of the lids (adult eyeball radius is 1.2 cm)
JAW_FULL_FRACTION = 0.9  # displacement at which a vertex is bound fully to the jaw (chin tip saturates)
MAX_INFLUENCES = 4  # glTF JOINTS_0 / WEIGHTS_0 hold four per vertex


def build_skeleton(verts: np.ndarray, boundaries: dict[str, np.ndarray],
                   ear: np.ndarray | None = None) -> Skeleton:
    """Rest-pose joints of one head.

    Args:
        verts: (V, 3) head positions (cm, template frame).
        boundaries: vertex loops by name; uses "neck", "eye_left", "eye_right".
        ear: vertex ids of the ears (head and jaw joints), or None (then 40 % up from neck to eyes).
    """
    verts = np.asarray(verts, np.float64)
    neck = verts[boundaries["neck"]].mean(0)
    eye_l = verts[boundaries["eye_left"]].mean(0) - (0.0, 0.0, EYEBALL_DEPTH_CM)
    eye_r = verts[boundaries["eye_right"]].mean(0) - (0.0, 0.0, EYEBALL_DEPTH_CM)
    if ear is not None and len(ear):
        head = np.array([0.0, verts[ear, 1].mean(), verts[ear, 2].mean()])
    else:
        head = neck + 0.4 * ((eye_l + eye_r) / 2 - neck)
        head[0] = 0.0
    root = np.array([0.0, neck[1], neck[2]])
    neck_joint = np.array([0.0, neck[1] + 0.25 * (head[1] - neck[1]), neck[2] + 0.25 * (head[2] - neck[2])])
    jaw = head.copy()
    if ear is not None and len(ear):  # the jaw hinges just in front of the ear canal (the tragus)
        jaw[2] = verts[ear, 2].max()
    return Skeleton(JOINT_NAMES.copy(), JOINT_PARENTS.copy(), np.stack([root, neck_joint, head, jaw, eye_l, eye_r]))


def skin_weights(verts: np.ndarray, skeleton: Skeleton, jaw_delta: np.ndarray,
                 neck_region: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(V, 4) int64 joint indices and (V, 4) float32 weights (rows sum to 1; unused slots weight 0).

    Args:
        verts: (V, 3) positions. skeleton: from `build_skeleton`. jaw_delta: (V, 3) `jawOpen` deltas.
        neck_region: vertex ids of the neck (blended to the neck joint downwards), or None.
    """
    mag = np.linalg.norm(jaw_delta, axis=1)
    jaw = np.clip(mag / max(JAW_FULL_FRACTION * mag.max(), 1e-12), 0.0, 1.0)
    neck = np.zeros(len(verts))
    if neck_region is not None and len(neck_region):
        y = np.asarray(verts, np.float64)[neck_region, 1]
        t = np.clip((y.max() - y) / max(y.max() - y.min(), 1e-12), 0.0, 1.0)
        neck[neck_region] = t * t * (3 - 2 * t)  # smoothstep: 0 at the jaw line, 1 at the neck's open end
    neck = np.minimum(neck, 1.0 - jaw)
    head = 1.0 - jaw - neck
    joints = np.tile([skeleton.index("head"), skeleton.index("jaw"), skeleton.index("neck"), 0], (len(verts), 1))
    weights = np.stack([head, jaw, neck, np.zeros(len(verts))], 1)
    return joints.astype(np.int64), (weights / weights.sum(1, keepdims=True)).astype(np.float32)


def eye_part_weights(count: int, skeleton: Skeleton, side: str) -> tuple[np.ndarray, np.ndarray]:
    """Rigid binding of an eyeball part's `count` vertices to eye_L or eye_R ("L" / "R")."""
    joints = np.zeros((count, MAX_INFLUENCES), np.int64)
    joints[:, 0] = skeleton.index(f"eye_{side}")
    weights = np.zeros((count, MAX_INFLUENCES), np.float32)
    weights[:, 0] = 1.0
    return joints, weights
