import numpy as np
import pytest

from topos_cli.errors import UsageError
from topos_cli.geometry.augment import AugmentConfig, apply_weights, coefficient_delta, sample_coefficients


def test_region_sampling_follows_the_paper_rule(tiny_template, generator):
    config = AugmentConfig(regions=True)
    for _ in range(50):
        coeffs = sample_coefficients(tiny_template, config, generator)
        assert set(coeffs["regions"]) == set(tiny_template.meta["augment"]["regions"])
        for pick in coeffs["regions"].values():
            w = np.asarray(pick["weights"])
            assert len(pick["bases"]) == 2 == len(set(pick["bases"]))  # pick=2 in the toy table, no repeats
            assert (w >= 0).all() and w.sum() <= 1 + 1e-12  # normalised only when the sum exceeds 1


def test_delta_is_the_weighted_sum_of_picked_bases(tiny_template):
    coeffs = {"regions": {"top_left": {"bases": [0, 4], "weights": [0.25, 0.5]}}, "identity": [1.0, -2.0],
              "expression": {"jawOpen": 0.3}}
    basis_r = tiny_template.basis("region_top_left")
    ident = tiny_template.basis("identity")
    expected = 0.25 * basis_r[0] + 0.5 * basis_r[4] + ident[0] - 2 * ident[1] + 0.3 * tiny_template.basis("expression")[0]
    np.testing.assert_allclose(coefficient_delta(tiny_template, coeffs), expected, atol=1e-6)


def test_region_delta_stays_inside_its_region(tiny_template):
    coeffs = {"regions": {"top_left": {"bases": [1, 2], "weights": [0.5, 0.5]}}}
    delta = coefficient_delta(tiny_template, coeffs)
    outside = np.setdiff1d(np.arange(tiny_template.num_verts), tiny_template.region("top_left"))
    assert np.abs(delta[outside]).max() == 0
    assert np.abs(delta).max() > 0


def test_same_rng_state_gives_same_coefficients(tiny_template):
    config = AugmentConfig(identity_sigma=1.0, expressions=2)
    a = sample_coefficients(tiny_template, config, np.random.default_rng(7))
    b = sample_coefficients(tiny_template, config, np.random.default_rng(7))
    c = sample_coefficients(tiny_template, config, np.random.default_rng(8))
    assert a == b and a != c


def test_apply_weights_and_unknown_expression(tiny_template):
    verts = apply_weights(tiny_template, identity=[0.0, 1.0])
    np.testing.assert_allclose(verts - tiny_template.verts, tiny_template.basis("identity")[1], atol=1e-6)
    with pytest.raises(UsageError, match="unknown expression"):
        apply_weights(tiny_template, expression={"notAShape": 1.0})


def test_batched_gemm_matches_the_per_copy_reference(tiny_template, generator):
    from topos_cli.geometry.augment import batch_deltas

    config = AugmentConfig(identity_sigma=1.0, expressions=2)
    coeffs = [sample_coefficients(tiny_template, config, generator) for _ in range(5)] + [{}]
    batch = batch_deltas(tiny_template, coeffs)
    for c, delta in zip(coeffs, batch, strict=True):
        np.testing.assert_allclose(delta, coefficient_delta(tiny_template, c), atol=1e-5)
