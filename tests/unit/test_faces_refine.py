"""Landmark refiner (faces/refine.py): a closed-form descent step that learns where points really are."""

from __future__ import annotations

import numpy as np
import pytest

from topos_cli.errors import MissingWeights
from topos_cli.faces.refine import (
    CROP_SIZE,
    LandmarkRefiner,
    RefinerStage,
    fit_refiner,
    orientation_channels,
    point_features,
)


def _blobs(rng, n: int, count: int = 5, jitter: float = 2.0):
    """Crops with bright spots at the true points, and "detections" off by up to a few pixels."""
    yy, xx = np.mgrid[0:CROP_SIZE, 0:CROP_SIZE] + 0.5
    base = np.array([[60, 70], [130, 70], [96, 110], [70, 140], [122, 140]], np.float64)[:count]
    crops, truth = [], []
    for _ in range(n):
        pts = base + rng.normal(0, 6, base.shape)
        img = np.zeros((CROP_SIZE, CROP_SIZE))
        for x, y in pts:
            img += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 4.0 ** 2))
        crops.append((np.clip(img, 0, 1) * 200 + 20).astype(np.uint8))
        truth.append(pts)
    truth = np.array(truth)
    return np.array(crops), truth + rng.normal(0, jitter, truth.shape), truth


def test_point_features_shape_and_unit_norm_per_point():
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 255, (CROP_SIZE, CROP_SIZE)).astype(np.uint8)
    chans = orientation_channels(crop)
    feats = point_features(chans, np.array([[50.0, 60.0], [100.0, 120.0], [-5.0, 500.0]])).reshape(3, -1)
    assert feats.shape == (3, 2 * 4 * 8)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-2)  # also clamped points far outside
    flat = point_features(orientation_channels(np.full((CROP_SIZE, CROP_SIZE), 90, np.uint8)), np.array([[50.0, 60.0]]))
    assert np.abs(flat).max() == 0.0  # no gradient, no descriptor


def test_fit_refiner_moves_held_out_points_toward_the_truth(tmp_path):
    rng = np.random.default_rng(1)
    crops, start, truth = _blobs(rng, 260)
    refiner, report = fit_refiner(crops[:200], start[:200], truth[:200], rank=10, lam=10.0, stages=2)
    assert report["portraits"] == 200 and report["train_px_after"] < report["train_px_before"]
    assert len(refiner.stages) == 2 and report["cross_fitted_px"][0] < report["train_px_before"]
    before = np.linalg.norm(start[200:] - truth[200:], axis=2).mean()
    one = np.linalg.norm(refiner.refine_crop_points(crops[200:], start[200:], stages=1) - truth[200:], axis=2).mean()
    after = np.linalg.norm(refiner.refine_crop_points(crops[200:], start[200:]) - truth[200:], axis=2).mean()
    assert one < 0.6 * before  # ~2.5 px of detector error, more than 40 % of it removed on unseen crops
    assert after < one  # the second stage, fitted on cross-fitted outputs of the first, removes more
    refiner.save(tmp_path / "ref", {"note": "test"})
    loaded = LandmarkRefiner.from_pretrained(tmp_path / "ref")
    assert loaded.report == {"note": "test"} and len(loaded.stages) == 2
    assert loaded.stages[1].weight.shape == refiner.stages[1].weight.shape
    np.testing.assert_allclose(loaded.refine_crop_points(crops[200:210], start[200:210]),
                               refiner.refine_crop_points(crops[200:210], start[200:210]), atol=0.05)  # float16


def test_missing_or_corrupt_refiner_is_one_clear_error(tmp_path):
    with pytest.raises(MissingWeights, match="no landmark refiner"):
        LandmarkRefiner.from_pretrained(tmp_path / "nothing")
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "model.json").write_text(f'{{"name": "landmark-refiner", "crop_size": {CROP_SIZE}}}')
    (folder / "model.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(MissingWeights, match="unreadable landmark refiner"):
        LandmarkRefiner.from_pretrained(folder)


def test_refiner_on_a_photo_maps_back_to_pixels():
    """An identity refiner (zero weights, zero offset) returns the detector's points to float precision, through the
    crop similarity and its inverse; a constant crop-frame offset comes back scaled to the photo."""
    count, feats = 478, 478 * 2 * 4 * 8  # two scales x 2 x 2 cells x 8 orientations per point
    zero = LandmarkRefiner([RefinerStage(np.zeros(feats), np.ones(feats), np.zeros((feats, 1)),
                                         np.zeros((1, 2 * count)), np.zeros(2 * count))])
    rng = np.random.default_rng(2)
    image = rng.integers(0, 255, (300, 400, 3)).astype(np.uint8)
    pts = np.stack([rng.uniform(120, 280, count), rng.uniform(80, 220, count)], 1)
    pts[33], pts[133], pts[362], pts[263] = (150, 120), (180, 120), (220, 120), (250, 120)  # eyes 100 px apart
    pts[61], pts[291] = (175, 190), (225, 190)
    np.testing.assert_allclose(zero(image, pts), pts, atol=1e-3)
    shift = LandmarkRefiner([RefinerStage(np.zeros(feats), np.ones(feats), np.zeros((feats, 1)),
                                          np.zeros((1, 2 * count)), np.tile([1.0, 0.0], count))])
    moved = shift(image, pts) - pts
    from topos_cli.faces.crop import crop_similarity

    scale = np.hypot(*crop_similarity(pts, CROP_SIZE)[0, :2])
    np.testing.assert_allclose(np.linalg.norm(moved, axis=1), 1.0 / scale, rtol=1e-4)
    with pytest.raises(ValueError, match="478 face-mesh points"):
        zero(image, pts[:10])


def test_single_stage_checkpoints_of_format_1_still_load(tmp_path):
    """Refiners saved before the cascade (format 1: unprefixed tensors, one step) load as a one-stage cascade."""
    import json

    from safetensors.numpy import save_file

    rng = np.random.default_rng(3)
    crops, start, truth = _blobs(rng, 40)
    refiner, _ = fit_refiner(crops[:30], start[:30], truth[:30], rank=4, lam=10.0, stages=1)
    st = refiner.stages[0]
    folder = tmp_path / "old"
    folder.mkdir()
    save_file({"x_mean": st.x_mean, "x_std": st.x_std, "weight": st.weight, "basis": st.basis, "offset": st.offset},
              str(folder / "model.safetensors"))
    (folder / "model.json").write_text(json.dumps({"format": 1, "name": "landmark-refiner", "crop_size": CROP_SIZE}))
    loaded = LandmarkRefiner.from_pretrained(folder)
    assert len(loaded.stages) == 1
    np.testing.assert_allclose(loaded.refine_crop_points(crops[30:], start[30:]),
                               refiner.refine_crop_points(crops[30:], start[30:]), atol=1e-4)


def test_shape_features_are_appended_and_survive_save_and_load(tmp_path):
    """With a shape gain each stage also reads the points themselves: 2L more inputs, applied the same after a
    save/load round trip; a pull that depends on the shape (a detector that shrinks every face toward its centre by
    10 %) is learned from the points where the crops say nothing (flat grey: no gradient, no descriptor)."""
    rng = np.random.default_rng(4)
    _, truth, _ = _blobs(rng, 120, jitter=0.0)
    crops = np.full((120, CROP_SIZE, CROP_SIZE), 90, np.uint8)
    centre = truth.mean(1, keepdims=True)
    start = centre + (truth - centre) * 0.9
    plain, _ = fit_refiner(crops[:100], start[:100], truth[:100], rank=10, lam=10.0, stages=1)
    shaped, _ = fit_refiner(crops[:100], start[:100], truth[:100], rank=10, lam=10.0, stages=1, shape_gain=10.0)
    hog = plain.stages[0].x_mean.shape[0]
    assert shaped.stages[0].x_mean.shape[0] == hog + start[0].size
    err = {k: np.linalg.norm(r.refine_crop_points(crops[100:], start[100:]) - truth[100:], axis=2).mean()
           for k, r in (("plain", plain), ("shaped", shaped))}
    assert err["shaped"] < 0.3 * err["plain"]
    shaped.save(tmp_path / "s")
    np.testing.assert_allclose(LandmarkRefiner.from_pretrained(tmp_path / "s").refine_crop_points(crops[100:], start[100:]),
                               shaped.refine_crop_points(crops[100:], start[100:]), atol=0.05)
