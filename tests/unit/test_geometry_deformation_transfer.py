"""Deformation transfer: exact on the source itself, equivariant to similarities, close to ICT's truth."""

from __future__ import annotations

import json

import numpy as np
import pytest

from topos_cli.geometry.deformation_transfer import expression_deltas, model_residual, transfer_expressions
from topos_cli.template import load_template, triangulate_polys

DT_TARGET_PCT = 0.05  # issue 18: mean per-vertex error of the transferred shapes, % of the bbox diagonal
CHECKED = ("jawOpen", "eyeBlink_L", "eyeBlink_R", "mouthSmile_L", "mouthSmile_R")


@pytest.fixture(scope="module")
def tpl():
    return load_template()


def _rotation(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def test_transfer_onto_the_source_is_exact(tpl):
    names = [str(n) for n in tpl.bases["expression_names"]]
    pick = [names.index(n) for n in ("jawOpen", "eyeBlink_L")]
    deltas = tpl.bases["expression"][pick]
    out = transfer_expressions(tpl.verts, deltas, tpl.verts, tpl.faces)
    assert np.abs(out - deltas).max() < 1e-3  # cm; the held static vertices move by < 1 micron in the source


def test_transfer_follows_a_similarity_of_the_target(tpl):
    names = [str(n) for n in tpl.bases["expression_names"]]
    deltas = tpl.bases["expression"][[names.index("mouthSmile_L")]]
    rot = _rotation(0.7)
    moved = 0.01 * tpl.verts @ rot.T + np.array([1.0, 2.0, 3.0])  # metres, turned, shifted
    out = transfer_expressions(tpl.verts, deltas, moved, tpl.faces)
    assert np.abs(out[0] - 0.01 * deltas[0] @ rot.T).max() < 1e-5


def test_expression_deltas_picks_the_linear_model_for_model_heads(tpl):
    rng = np.random.default_rng(0)
    head = tpl.verts + np.tensordot(rng.standard_normal(100), tpl.bases["identity"], 1)
    result = expression_deltas(tpl.verts, tpl.faces, tpl.bases["identity"], tpl.bases["expression"][:2], head)
    assert result.method == "linear-model" and np.array_equal(result.deltas, tpl.bases["expression"][:2])
    noisy = head + rng.normal(0, 0.05, head.shape)  # a scan-like head off the model: transferred instead
    assert model_residual(tpl.verts, tpl.bases["identity"], noisy) > 0.01
    result = expression_deltas(tpl.verts, tpl.faces, tpl.bases["identity"], tpl.bases["expression"][:1], noisy)
    assert result.method == "deformation-transfer"


def test_held_out_ict_identity_matches_its_true_expressions(ict_npz):
    """ICT's own skin: neutral -> a held-out identity; ICT's expressions are the truth for every identity."""
    with np.load(ict_npz, allow_pickle=False) as npz:
        ranges = json.loads(str(npz["geometry_ranges"]))
        last = ranges["head_and_neck"][1]  # the skin is face + head_and_neck, vertices 0..last
        polys = npz["faces"].astype(np.int64)
        polys = polys[(polys <= last).all(1)]
        faces = triangulate_polys(polys)[0]
        faces = faces[(faces >= 0).all(1)]
        neutral = npz["neutral"][: last + 1].astype(np.float64)
        names = [str(n) for n in npz["expression_names"]]
        expr = npz["expression_modes"][[names.index(n) for n in CHECKED], : last + 1].astype(np.float64)
        rng = np.random.default_rng(2026)  # an identity the template build never drew (it used seed 1)
        head = neutral + np.tensordot(rng.standard_normal(100), npz["identity_modes"][:, : last + 1], 1)
    out = transfer_expressions(neutral, expr, head, faces)
    diag = np.linalg.norm(head.max(0) - head.min(0))
    err = {n: 100 * np.linalg.norm(out[k] - expr[k], axis=1).mean() / diag for k, n in enumerate(CHECKED)}
    print("mean per-vertex error, % of bbox diagonal:", {k: round(v, 4) for k, v in err.items()})
    assert np.mean(list(err.values())) < DT_TARGET_PCT, err
    assert max(err[n] for n in CHECKED if n != "jawOpen") < 0.5 * DT_TARGET_PCT, err  # measured <= 0.011 %
    # jawOpen: 0.051 % on seed 2026 with the displacement prior (plain deformation transfer: 0.12 %; on the
    # template's 5 benchmark identities 0.044 %, from 0.077 %): ICT's truth adds the same jaw delta to every
    # identity, while transferred gradients follow the target's own jaw, nose and cheek shape
    assert err["jawOpen"] < 1.2 * DT_TARGET_PCT, err
    plain = transfer_expressions(neutral, expr[:1], head, faces, prior=0.0)[0]
    plain_err = 100 * np.linalg.norm(plain - expr[0], axis=1).mean() / diag
    assert err["jawOpen"] < 0.6 * plain_err, (err["jawOpen"], plain_err)
