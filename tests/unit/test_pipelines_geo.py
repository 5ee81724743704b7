"""GeoPipeline: the generator's head is the prior the photo fit stays close to; --no-refine keeps it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from topos_cli.pipelines.geo import GeoOptions, GeoPipeline
from topos_cli.template import load_template


@dataclass
class _Out:
    verts: np.ndarray
    latents: np.ndarray


class _FakePrior:
    """Stands in for GeoPrior: always the same head, records what it was given."""

    device = "cpu"
    meta: dict = {}

    def __init__(self, verts):
        self.verts, self.calls = verts, []

    def posterior_basis(self):  # no measured residual: the photometric fit uses the population prior
        return None

    def __call__(self, image, landmarks, generator, steps, cfg, samples):
        self.calls.append({"landmarks": landmarks.shape, "steps": steps, "cfg": cfg, "samples": samples})
        return _Out(self.verts, np.zeros((samples, 4, 2), np.float32))


@pytest.fixture(scope="module")
def photo():
    pytest.importorskip("mediapipe")
    matplotlib = pytest.importorskip("matplotlib")
    from topos_cli.io.image import read_photo

    return read_photo(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")


def test_fit_stays_near_the_generators_head_and_no_refine_keeps_it(photo):
    tpl = load_template()
    head = tpl.verts + np.tensordot(np.linspace(-1.5, 1.5, 10), tpl.basis("identity")[:10], 1)
    prior = _FakePrior(head.astype(np.float32))
    pipe = GeoPipeline(tpl, prior=prior)
    res = pipe(photo, "hopper.jpg", seed=0, options=GeoOptions(steps=7, cfg=2.0, samples=2))
    assert prior.calls == [{"landmarks": (478, 3), "steps": 7, "cfg": 2.0, "samples": 2}]
    np.testing.assert_array_equal(res.prior, head.astype(np.float32))
    moved = np.linalg.norm(res.verts - head, axis=1).mean()
    assert moved < 0.5 * np.linalg.norm(head - tpl.verts, axis=1).mean()  # the fit refines, it does not undo
    rec = res.record(pipe.expression_names)
    assert rec["latent"] is not None and np.asarray(rec["latent"]).shape == (2, 4, 2)
    assert rec["shading"]["vertices"] > 1000 and rec["shading"]["directions"] > 50  # the photometric refinement ran
    kept = pipe(photo, "hopper.jpg", seed=0, options=GeoOptions(refine=False))
    np.testing.assert_allclose(kept.verts, head, atol=1e-5)  # identity untouched; pose/expression still fitted
    assert kept.fit.reprojection_px < 3.0


def test_warnings_name_large_yaw_small_faces_and_poor_fits():
    from types import SimpleNamespace

    from topos_cli.faces.detect import NUM_LANDMARKS, Face
    from topos_cli.pipelines.geo import _warnings

    pts = np.zeros((NUM_LANDMARKS, 2), np.float32)
    pts[263, 0] = 60.0  # outer eye corners 60 px apart
    big = Face(pts, np.zeros(NUM_LANDMARKS, np.float32), np.array([0, 0, 200, 220], np.float32), 0.9)
    small = Face(pts, np.zeros(NUM_LANDMARKS, np.float32), np.array([0, 0, 50, 60], np.float32), 0.9)
    assert _warnings(big, SimpleNamespace(yaw=10.0, reprojection_px=1.0)) == []
    text = " | ".join(_warnings(small, SimpleNamespace(yaw=-40.0, reprojection_px=9.0)))
    assert "turned -40 deg" in text and "small face" in text and "fit poorly" in text


class _ShiftRefiner:
    """Stands in for the landmark refiner: moves every point 2 px right."""

    def __call__(self, image, landmarks):
        return (np.asarray(landmarks)[:, :2] + np.array([2.0, 0.0])).astype(np.float32)


def test_the_refined_points_drive_the_fit_and_the_generator_sees_the_detectors(photo):
    from topos_cli.faces.detect import detect_faces
    from topos_cli.pipelines.geo import FIT_DIRECTIONS, IDENTITY_REG_PRIOR, IDENTITY_REG_REFINED

    tpl = load_template()
    prior = _FakePrior(tpl.verts.astype(np.float32))
    pipe = GeoPipeline(tpl, prior=prior, refiner=_ShiftRefiner())
    assert pipe.identity_reg == IDENTITY_REG_REFINED and GeoPipeline(tpl, prior=prior).identity_reg == IDENTITY_REG_PRIOR
    res = pipe(photo, "hopper.jpg", seed=0, options=GeoOptions(shading=False))
    raw = detect_faces(photo)[0].landmarks
    np.testing.assert_allclose(res.face.landmarks, raw + np.array([2.0, 0.0]), atol=1e-4)
    rec = res.record(pipe.expression_names)
    assert rec["landmarks"]["refined"] and "refine" in rec["seconds"]
    # refined points carry identity: the fit moves the generator's error directions (here the population's)
    assert rec["identity_basis"] == "generator-error" and len(rec["identity"]) == FIT_DIRECTIONS
    np.testing.assert_allclose(res.verts, tpl.verts + np.tensordot(res.fit.identity, pipe.fit_basis(), 1), atol=1e-4)
    plain = GeoPipeline(tpl, prior=prior)(photo, "hopper.jpg", seed=0, options=GeoOptions(shading=False))
    plain_rec = plain.record(pipe.expression_names)
    assert not plain_rec["landmarks"]["refined"] and plain_rec["identity_basis"] == "identity"
    assert len(plain_rec["identity"]) == tpl.basis("identity").shape[0]
    assert abs(res.fit.translation[0] - plain.fit.translation[0]) > 1e-3  # the head followed the shifted points
