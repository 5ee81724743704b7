"""Eye and mouth parts beside the default template's skin: they follow identity, jawOpen and gaze, can be
placed on heads that did not come from the bases, and leave the skin (and its hash) untouched."""

import json

import numpy as np
import pytest

from topos_cli.geometry.augment import apply_weights
from topos_cli.geometry.parts import fit_parts, part_verts
from topos_cli.geometry.similarity import Similarity
from topos_cli.template import load_template


@pytest.fixture(scope="module")
def head():
    return load_template()


def _range(head, name):
    start, stop = head.parts.spec["parts"][name]["verts"]
    return slice(start, stop)


def _inside(point, polygon):
    """Even-odd test of a 2-D point against a closed (N, 2) polygon."""
    x, y = point
    inside = False
    for (x0, y0), (x1, y1) in zip(polygon, np.roll(polygon, -1, 0), strict=True):
        if (y0 > y) != (y1 > y) and x < x0 + (y - y0) * (x1 - x0) / (y1 - y0):
            inside = not inside
    return inside


def test_parts_sit_beside_an_unchanged_skin(head):
    shipped = json.loads((head.root.parents[1] / "checkpoints" / "retopo-vae-small" / "model.json").read_text())
    assert head.hash == shipped["template_hash"]  # the shipped checkpoint (and every dataset) stays valid
    parts = head.parts
    assert 2000 <= parts.num_verts <= 5000
    assert parts.identity.shape == (len(head.basis("identity")), parts.num_verts, 3)
    assert parts.expression.shape == (len(head.basis("expression")), parts.num_verts, 3)
    assert set(parts.spec["parts"]) >= {"eye_left", "eye_right", "teeth", "gums_tongue", "mouth_socket"}
    assert (head.root / "parts.npz").stat().st_size < 3_000_000


def test_eyeball_centres_stay_in_their_sockets_over_random_identities(head):
    rng = np.random.default_rng(0)
    spec = head.parts.spec
    for _ in range(30):
        w = rng.normal(size=len(head.basis("identity")))
        skin = apply_weights(head, identity=w)
        parts = part_verts(head, identity=w)
        for side in ("left", "right"):
            eye = f"eye_{side}"
            centre = np.asarray(spec["eyes"][eye]["pivot"]) + (parts[_range(head, eye)] - head.parts.verts[
                _range(head, eye)]).mean(0)
            loop = skin[head.meta["boundaries"][eye]]
            assert _inside(centre[:2], loop[:, :2])  # in front view the centre is inside the eye opening
            depth = loop[:, 2].mean() - centre[2]
            assert 0.3 < depth < 3.0  # and behind it, inside the head


def test_jaw_open_moves_the_lower_teeth_only(head):
    teeth = _range(head, "teeth")
    lower = head.parts.vertex_group[teeth] == head.parts.spec["groups"].index("lower")
    rest = part_verts(head)[teeth]
    opened = part_verts(head, expression={"jawOpen": 1.0})[teeth]
    shift = np.linalg.norm(opened - rest, axis=1)
    assert np.median(shift[lower]) > 1.5  # cm: the lower teeth drop with the jaw
    assert shift[~lower].max() < 0.05  # the upper teeth stay with the skull
    assert opened[lower, 1].mean() < rest[lower, 1].mean() - 1.0


def test_gaze_rotates_the_eyeballs_about_their_centres(head):
    eye = _range(head, "eye_left")
    pivot = np.asarray(head.parts.spec["eyes"]["eye_left"]["pivot"])
    axis = np.asarray(head.parts.spec["eyes"]["eye_left"]["axis"])
    rest = part_verts(head)[eye]
    apex = np.argmax((rest - pivot) @ axis)
    up = part_verts(head, expression={"eyeLookUp_L": 1.0})[eye]
    out = part_verts(head, expression={"eyeLookOut_L": 1.0})[eye]
    assert up[apex, 1] > rest[apex, 1] + 0.3 and out[apex, 0] > rest[apex, 0] + 0.3  # +x: the subject's left
    np.testing.assert_allclose(np.linalg.norm(up - pivot, axis=1), np.linalg.norm(rest - pivot, axis=1), atol=1e-4)
    right = part_verts(head, expression={"eyeLookUp_L": 1.0})[_range(head, "eye_right")]
    np.testing.assert_allclose(right, part_verts(head)[_range(head, "eye_right")], atol=1e-6)


def test_parts_placed_on_heads_that_did_not_come_from_the_bases(head):
    rng = np.random.default_rng(1)
    w = rng.normal(size=len(head.basis("identity")))
    expression = {"jawOpen": 0.6, "mouthSmile_L": 0.4}
    skin = apply_weights(head, identity=w, expression=expression)
    truth = part_verts(head, identity=w, expression=expression)
    np.testing.assert_allclose(fit_parts(head, skin), truth, atol=2e-3)  # a head of the bases: recovered
    noisy = skin + rng.normal(scale=0.05, size=skin.shape).astype(np.float32)  # a retopo-like 0.5 mm residual
    assert np.linalg.norm(fit_parts(head, noisy) - truth, axis=1).mean() < 0.15
    rotation = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    pose = Similarity(1.3, rotation * np.sign(np.linalg.det(rotation)), np.array([3.0, -20.0, 5.0]))
    placed = pose.inverse().apply(fit_parts(head, pose.apply(skin)))  # a head in another frame and scale
    assert np.linalg.norm(placed - truth, axis=1).mean() < 0.4


def test_parts_renderer_shows_a_dark_mouth_and_keeps_template_passes(head):
    from topos_cli.render.lights import preset_rig
    from topos_cli.render.parts import PartsRenderer
    from topos_cli.render.renderer import Renderer, RenderMesh
    from topos_cli.render.views import framed_camera

    skin = apply_weights(head, expression={"jawOpen": 1.0})
    mesh = RenderMesh(skin, head.faces, uv=head.uv, uv_faces=head.uv_faces)
    cam = framed_camera(skin.astype(np.float64), 0.0, 0.0, 96, 20.0)
    passes = ("color", "mask", "face_id", "visibility")
    plain = Renderer("torch").render(mesh, cam, None, preset_rig("studio"), passes=passes)
    full = PartsRenderer("torch", template=head).render(mesh, cam, None, preset_rig("studio"), passes=passes)
    mouth = np.zeros(head.num_verts, bool)
    mouth[head.meta["boundaries"]["mouth"]] = True
    px = np.round(cam.project(skin[mouth])[0]).astype(int).mean(0).astype(int)  # the centre of the open mouth
    window = (slice(px[1] - 2, px[1] + 3), slice(px[0] - 2, px[0] + 3))
    assert full["color"][window][..., :3].mean() < plain["color"][window][..., :3].mean() - 0.1
    assert len(full["visibility"]) == head.num_verts
    assert full["face_id"].max() < head.num_faces and (full["mask"] >= plain["mask"]).all()
