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


# ----------------------------------------------------------------------------- expression prior (issue 14 §3)

@pytest.fixture(scope="module")
def head():
    from topos_cli.template import load_template

    return load_template()


def _expression_head(head, expression: dict) -> np.ndarray:
    return apply_weights(head, expression=expression)


def test_the_check_catches_mouth_close_alone_and_crossed_lids(head):
    from topos_cli.geometry.expressions import expression_prior, head_failures

    prior = expression_prior(head)
    assert head_failures(prior, head.verts) == []
    failed = head_failures(prior, _expression_head(head, {"mouthClose": 1.0}))
    assert "mouth opening below the nose base" in failed and "lips not crossed" in failed
    closed = _expression_head(head, {"eyeBlink_L": 1.0, "eyeSquint_L": 1.0, "cheekSquint_L": 1.0,
                                     "eyeLookDown_L": 1.0})
    assert head_failures(prior, closed) == ["left eyelids not crossed"]
    assert head_failures(prior, _expression_head(head, {"jawOpen": 1.0, "mouthClose": 0.7})) == []


def test_1000_sampled_expression_sets_make_0_implausible_heads(head):
    from topos_cli.geometry.augment import batch_deltas
    from topos_cli.geometry.expressions import expression_prior, head_failures

    prior = expression_prior(head)
    config = AugmentConfig(regions=True, identity_sigma=1.0, expressions=4)
    coeffs = [sample_coefficients(head, config, np.random.default_rng(i)) for i in range(1000)]
    failing = 0
    for start in range(0, len(coeffs), 250):  # whole heads, through the batched path augment writes with
        for delta in batch_deltas(head, coeffs[start:start + 250]):
            failing += bool(head_failures(prior, head.verts + delta))
    assert failing == 0
    rejections = [c["expression_rejections"] for c in coeffs]
    assert sum(rejections) < 50  # the prior itself is plausible: redraws are rare (about 1 in 200 measured)
    for c in coeffs:
        e = c["expression"]
        assert e.get("mouthClose", 0.0) <= 0.7 * e.get("jawOpen", 0.0) + 1e-9  # ARKit: a fraction of jawOpen
        assert not ({"eyeBlink_L", "eyeBlink_R"} & set(e) and {"eyeWide_L", "eyeWide_R"} & set(e))
        assert not ({"mouthSmile_L", "mouthSmile_R"} & set(e) and {"mouthFrown_L", "mouthFrown_R"} & set(e))
        assert max((w for n, w in e.items() if n.startswith("eyeLook")), default=0.0) <= 0.5


def test_pairs_move_together_mostly(head):
    from topos_cli.geometry.expressions import expression_prior, sample_expression

    prior = expression_prior(head)
    rng = np.random.default_rng(0)
    both = one = 0
    for _ in range(500):
        e = sample_expression(prior, 3, 1.0, rng)
        for stem in ("eyeBlink", "mouthSmile", "browDown", "cheekPuff"):
            sides = {f"{stem}_L", f"{stem}_R"} & set(e)
            both += len(sides) == 2
            one += len(sides) == 1
    assert both > 3 * one > 0  # 15 % one-sided in the prior


def test_augment_records_rejections_and_redraws_from_the_item_generator(head):
    from topos_cli.geometry import augment as aug

    config = AugmentConfig(regions=False, expressions=3)
    a = sample_coefficients(head, config, np.random.default_rng(5))
    b = sample_coefficients(head, config, np.random.default_rng(5))
    assert a == b and a["expression_rejections"] >= 0
    # a base whose lips already sit in the nose is not redrawn forever: it is taken as it is
    bad = _expression_head(head, {"mouthClose": 1.0})
    c = sample_coefficients(head, config, np.random.default_rng(5), base_verts=bad)
    assert c["expression_rejections"] == 0
    assert aug.MAX_EXPRESSION_DRAWS >= 10


def test_failing_draws_are_redrawn_and_counted(head):
    import dataclasses

    meta = dict(head.meta)
    meta["expression_prior"] = {**meta["expression_prior"], "dependent": [], "exclusive": [], "bounded": [],
                                "units": [{"name": "mouthClose", "targets": ["mouthClose"], "max": 1.0}]}
    only_close = dataclasses.replace(head, meta=meta)
    config = AugmentConfig(regions=False, expressions=1)
    counts = []
    for seed in range(20):
        c = sample_coefficients(only_close, config, np.random.default_rng(seed))
        counts.append(c["expression_rejections"])
        if c["expression"]:  # what was kept is a small mouthClose the checks accept
            assert c["expression"]["mouthClose"] < 0.5
    assert sum(counts) > 20
