"""menpo LJSON landmarks to iBUG-68 order."""

from __future__ import annotations

import json

import numpy as np
import pytest

from topos_cli.errors import UsageError
from topos_cli.io.landmarks import IBUG68_GROUPS, ljson_to_ibug68, read_ljson


def _ljson(points: np.ndarray, labels: list[tuple[str, list[int]]]) -> dict:
    return {"groups": {"LJSON": {"landmarks": {"points": points.tolist(), "connectivity": []},
                                 "labels": [{"label": k, "mask": m} for k, m in labels]}}}


def test_groups_stored_out_of_order_come_back_in_ibug_order():
    truth = np.arange(68 * 3, dtype=float).reshape(68, 3)  # row i = iBUG point i
    # stored the way menpo3d's james.ljson stores them: chin, leye, reye, leyebrow, nose, reyebrow, mouth
    order = [("chin", "jaw"), ("leye", "left_eye"), ("reye", "right_eye"), ("leyebrow", "left_eyebrow"),
             ("nose", "nose"), ("reyebrow", "right_eyebrow"), ("mouth", "mouth")]
    stored, labels, at = [], [], 0
    for alias, group in order:
        slots = list(IBUG68_GROUPS[group])
        stored.extend(slots)
        labels.append((alias, list(range(at, at + len(slots)))))
        at += len(slots)
    data = _ljson(truth[stored], labels)
    np.testing.assert_array_equal(ljson_to_ibug68(data), truth)


def test_unlabelled_points_are_taken_in_stored_order_and_bad_files_fail(tmp_path):
    pts = np.random.default_rng(0).normal(size=(68, 3))
    path = tmp_path / "a.ljson"
    path.write_text(json.dumps({"landmarks": {"points": pts.tolist()}, "labels": []}))
    np.testing.assert_allclose(read_ljson(path), pts)
    with pytest.raises(UsageError, match="68 finite"):
        ljson_to_ibug68({"landmarks": {"points": pts[:5].tolist()}})
    with pytest.raises(UsageError, match="group 'mouth' has 19"):
        labels = [(k, list(v)) for k, v in IBUG68_GROUPS.items()]
        labels[-1] = ("mouth", list(range(48, 67)))
        ljson_to_ibug68(_ljson(pts, labels))
    with pytest.raises(UsageError, match="no such"):
        read_ljson(tmp_path / "missing.ljson")
    (tmp_path / "bad.ljson").write_text("{")
    with pytest.raises(UsageError, match="not JSON"):
        read_ljson(tmp_path / "bad.ljson")
