"""flow-dit dummy-config tests (shapes, backward, save -> load, parameter count), its latent and its face crop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from topos_cli.io.checkpoint import load_model, save_checkpoint
from topos_cli.models.geo_latent import GeoLatent, GeoLatents, residual_basis
from topos_cli.models.registry import build


def _dummy(template, **args):
    return build("flow-dit", {"num_tokens": 3, "token_dim": 4, **args}, template, preset="tiny")


def _cond(model, batch=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    size = model.config.crop_size
    return {"crop": torch.rand(batch, 3, size, size, generator=gen),
            "landmarks": torch.rand(batch, 478, 3, generator=gen) * 2 - 1}


def _randomize_zero_layers(model):
    """adaLN-Zero starts every block as the identity and the output at zero: give them weights to test."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ada" in name or "final.proj" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


def test_forward_shape_and_zero_init(tiny_template):
    model = _dummy(tiny_template)
    latents = torch.randn(2, 3, 4)
    out = model(latents, torch.tensor([0.2, 0.9]), _cond(model))
    assert out.shape == (2, 3, 4)
    assert torch.count_nonzero(out) == 0  # zero-initialised output layer: the untrained velocity is 0
    _randomize_zero_layers(model)
    out = model(latents, torch.tensor([0.2, 0.9]), _cond(model))
    assert out.abs().sum() > 0


def test_backward_reaches_condition_branches_and_blocks(tiny_template):
    model = _dummy(tiny_template)
    _randomize_zero_layers(model)
    drop = torch.tensor([False, True])
    model(torch.randn(2, 3, 4), torch.tensor([0.3, 0.6]), _cond(model), drop).square().mean().backward()
    assert model.cond_encoder.crop.convs[0].weight.grad.abs().sum() > 0
    assert model.cond_encoder.landmarks.mlp[0].weight.grad.abs().sum() > 0
    assert model.blocks[0].attn.to_q.weight.grad.abs().sum() > 0
    assert model.null_cond.grad.abs().sum() > 0  # the dropped row trains the null condition


def test_dropped_rows_become_the_null_condition(tiny_template):
    model = _dummy(tiny_template)
    tokens = model.encode_condition(_cond(model), torch.tensor([True, False]))
    assert torch.equal(tokens[0], model.null_cond[0].expand_as(tokens[0]))
    assert not torch.equal(tokens[1], tokens[0])


def test_save_load_round_trip_gives_equal_outputs(tiny_template, tmp_path):
    torch.manual_seed(0)
    model = _dummy(tiny_template).eval()
    _randomize_zero_layers(model)
    model.latent_mean.fill_(0.5)
    save_checkpoint(tmp_path / "run", 3, "flow-dit", model.config.to_dict(), tiny_template, model.state_dict())
    loaded = load_model(tmp_path / "run", tiny_template)
    args = (torch.randn(2, 3, 4), torch.tensor([0.1, 0.7]), _cond(model))
    with torch.no_grad():
        assert torch.equal(model(*args), loaded(*args))
    assert torch.equal(loaded.latent_mean, model.latent_mean)  # normalisation statistics travel with the weights


def test_parameter_count_is_stable(tiny_template):
    count = sum(p.numel() for p in _dummy(tiny_template).parameters())
    assert count == 400_236  # recompute deliberately when the architecture changes


def test_bases_latent_round_trips_heads_in_the_span(tiny_template):
    latent = GeoLatent(None, tiny_template, kind="bases")
    rng = np.random.default_rng(0)
    ident = tiny_template.bases["identity"]
    heads = tiny_template.verts + np.tensordot(rng.normal(size=(2, len(ident))), ident, 1).astype(np.float32)
    tokens = latent.pack(latent.encode(heads))
    assert tokens.shape == (2, sum(latent.layout()), latent.token_dim)
    back = latent.decode_tokens(torch.from_numpy(tokens)).numpy()
    np.testing.assert_allclose(back, heads, atol=1e-4)
    basis = residual_basis(tiny_template)
    np.testing.assert_allclose(basis @ basis.T, np.eye(len(basis)), atol=1e-5)  # orthonormal rows


def test_vae_plus_bases_residual_removes_the_vae_error_in_the_span(tiny_template):
    vae = build("mesh-vae", {}, tiny_template, preset="tiny").eval()  # untrained: decodes the rest shape
    latent = GeoLatent(vae, tiny_template, kind="vae+bases")
    ident = tiny_template.bases["identity"]
    head = tiny_template.verts + 0.8 * ident[0] - 0.5 * ident[3]
    lat = latent.encode(head[None])
    assert lat.vae.shape == (1, vae.num_tokens, vae.config.latent_dim)
    with torch.no_grad():
        only_vae = latent.decode(torch.from_numpy(lat.vae), torch.zeros(1, latent.num_coeffs)).numpy()[0]
        both = latent.decode_tokens(torch.from_numpy(latent.pack(lat))).numpy()[0]
    assert np.abs(only_vae - head).max() > 0.1
    np.testing.assert_allclose(both, head, atol=1e-4)
    vae_tokens, coeffs = latent.unpack(torch.from_numpy(latent.pack(GeoLatents(lat.vae, lat.coeffs))))
    assert torch.equal(vae_tokens, torch.from_numpy(lat.vae)) and coeffs.shape == (1, latent.num_coeffs)


def test_face_crop_is_invariant_to_the_photo_similarity():
    from topos_cli.faces.crop import face_crop

    rng = np.random.default_rng(0)
    pts = rng.uniform(80, 160, (478, 2))
    pts[[33, 133]] = [[90, 100], [110, 100]]
    pts[[362, 263]] = [[140, 100], [160, 100]]
    pts[[61, 291]] = [[110, 160], [140, 160]]
    image = rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)
    angle, scale, shift = np.radians(20), 1.7, np.array([30.0, -12.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = pts @ rot.T + shift
    a = face_crop(image, pts).normalize_landmarks(pts)
    b = face_crop(image, moved).normalize_landmarks(moved)
    np.testing.assert_allclose(a, b, atol=1e-5)
    crop = face_crop(image, pts)
    assert crop.image.shape == (128, 128, 3) and crop.image.dtype == np.uint8


def test_dinov2_features_from_a_local_folder(tmp_path):
    transformers = pytest.importorskip("transformers")
    from topos_cli.errors import MissingWeights
    from topos_cli.pipelines.geo_prior import load_dinov2

    cfg = transformers.Dinov2WithRegistersConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                 intermediate_size=64, patch_size=14, num_register_tokens=4,
                                                 image_size=56)
    transformers.Dinov2WithRegistersModel(cfg).save_pretrained(tmp_path / "dino")
    feats = load_dinov2(tmp_path / "dino")
    feats.image_size = 56
    out = feats(torch.rand(2, 3, 128, 128))
    assert out.shape == (2, 1 + 4 + 16, 32)
    assert not any(p.requires_grad for p in feats.parameters())
    with pytest.raises(MissingWeights, match="no DINOv2 weights"):
        load_dinov2(tmp_path / "nothing")


def test_paper_config_shape_with_backbone_features(tiny_template):
    """The paper config's structure (condition = layer-normed backbone tokens) at a tiny width."""
    from topos_cli.models.registry import make_config

    paper = make_config("flow-dit", preset="paper")
    assert (paper.width, paper.depth, paper.heads, paper.head_dim, paper.mlp_ratio) == (1024, 24, 16, 64, 4.0)
    assert paper.condition == "features" and paper.feature_dim == 1024 and paper.cond_dropout == 0.1
    model = build("flow-dit", {"width": 32, "depth": 1, "heads": 2, "head_dim": 16, "num_tokens": 5,
                               "feature_dim": 24}, tiny_template, preset="paper")
    feats = torch.randn(2, 9, 24)
    out = model(torch.randn(2, 5, 16), torch.tensor([0.5, 0.5]), {"features": feats})
    assert out.shape == (2, 5, 16) and model.cond_encoder.crop is None


def test_ridge_mean_head_recovers_a_linear_map_and_round_trips(tiny_template, tmp_path):
    """The landmark regression (config mean_head "ridge") fits a known linear map in closed form, is saved with the
    checkpoint's buffers, and is what the flow's samples are offsets from."""
    model = _dummy(tiny_template, mean_head="ridge", mean_lambda=1e-6)
    rng = np.random.default_rng(0)
    lms = rng.normal(size=(3000, 478, 3)).astype(np.float32)
    true_w = rng.normal(size=(478 * 3, 12)) * 0.05
    tokens = (lms.reshape(len(lms), -1) @ true_w + 0.3).reshape(-1, 3, 4)
    fit = model.mean_head.fit(lms, tokens, model.config.mean_lambda)
    assert fit["r2"] > 0.999 and fit["samples"] == 3000
    probe = torch.from_numpy(lms[:5])
    np.testing.assert_allclose(model.prior_mean({"landmarks": probe}).numpy(), tokens[:5], atol=1e-3)
    save_checkpoint(tmp_path / "run", 0, "flow-dit", model.config.to_dict(), tiny_template, model.state_dict())
    loaded = load_model(tmp_path / "run", tiny_template)
    assert torch.equal(loaded.prior_mean({"landmarks": probe}), model.prior_mean({"landmarks": probe}))
    assert _dummy(tiny_template).prior_mean({"landmarks": probe}) is None  # the paper's flow: no offset


def test_ridge_mean_head_shrinks_with_lambda(tiny_template):
    model = _dummy(tiny_template, mean_head="ridge")
    rng = np.random.default_rng(1)
    lms = rng.normal(size=(200, 478, 3))
    tokens = rng.normal(size=(200, 3, 4))
    weak = model.mean_head.fit(lms, tokens, 1e-3)["r2"]
    strong = model.mean_head.fit(lms, tokens, 1e6)["r2"]
    assert weak > strong >= 0.0 and strong < 0.01  # a huge ridge predicts the mean


def test_ridge_mean_head_stores_the_held_out_residual_covariance(tiny_template, tmp_path):
    """fit(held_out=...) keeps the covariance of what the regression misses on renders it did not see (the photo
    fit's prior); checkpoints written before the buffer existed still load (zeros: not measured)."""
    model = _dummy(tiny_template, mean_head="ridge", mean_lambda=1e-6)
    rng = np.random.default_rng(2)
    lms = rng.normal(size=(3500, 478, 3)).astype(np.float32)
    true_w = rng.normal(size=(478 * 3, 12)) * 0.05
    clean = lms.reshape(len(lms), -1) @ true_w
    noise = rng.normal(size=(3500, 12)) * np.linspace(0.1, 1.0, 12)  # unexplained, per element
    tokens = (clean + noise).reshape(-1, 3, 4)
    fit = model.mean_head.fit(lms[:3000], tokens[:3000], 1e-6, held_out=(lms[3000:], tokens[3000:]))
    assert fit["held_out_samples"] == 500
    cov = model.mean_head.residual_cov.numpy()
    expected = model.mean_head.residuals(lms[3000:], tokens[3000:])
    np.testing.assert_allclose(cov, expected.T @ expected / 500, rtol=1e-4, atol=1e-6)
    # the noise's spread, inflated by the fit's own error on unseen renders (1434 features, 3000 renders: ~1.3x)
    np.testing.assert_allclose(np.sqrt(np.diag(cov)) / np.linspace(0.1, 1.0, 12), 1.3, rtol=0.25)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("residual_cov")}
    old = _dummy(tiny_template, mean_head="ridge")
    old.load_state_dict(state, strict=True)  # a pre-buffer checkpoint
    assert float(old.mean_head.residual_cov.abs().sum()) == 0.0


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return rz @ rx @ ry


def test_frontalize_undoes_a_similarity_and_keeps_shape():
    """A rotated, scaled, shifted copy of a point set frontalises onto the same points as the original; a
    different shape stays different; a mirror image is not rotated onto its original (no reflection)."""
    from topos_cli.models.cond_mean import frontalize

    rng = np.random.default_rng(3)
    ref = rng.normal(size=(40, 3))
    ref -= ref.mean(0)
    shape = ref + 0.1 * rng.normal(size=ref.shape)
    moved = 1.7 * shape @ _rotation(0.4, -0.2, 0.1).T + np.array([3.0, -1.0, 2.0])
    mirror = shape * np.array([-1.0, 1.0, 1.0])
    moved_ref = 0.5 * ref @ _rotation(-0.3, 0.2, 0.5).T + 7.0
    out = frontalize(torch.from_numpy(np.stack([shape, moved, mirror, moved_ref])), torch.from_numpy(ref)).numpy()
    np.testing.assert_allclose(out[1], out[0], atol=1e-9)
    np.testing.assert_allclose(out[3], ref, atol=1e-9)  # the reference itself, moved, lands back on it exactly
    assert np.abs(out[2] - out[0]).mean() > 0.05
    np.testing.assert_allclose(out[0].mean(0), 0.0, atol=1e-12)


def test_frontal_ridge_features_ignore_head_rotation(tiny_template):
    """mean_frontal: the ridge's prediction for a landmark set does not change when the set is rotated (the
    regression sees shape, not pose); without it the prediction moves."""
    rng = np.random.default_rng(4)
    base = rng.normal(size=(478, 3))
    lms = (base[None] + 0.05 * rng.normal(size=(600, 478, 3))).astype(np.float32)
    tokens = rng.normal(size=(600, 3, 4)).astype(np.float32)
    rot = _rotation(0.35, 0.15, 0.0)
    probe = lms[:3].astype(np.float64)
    turned = torch.from_numpy((probe @ rot.T).astype(np.float32))
    probe = torch.from_numpy(probe.astype(np.float32))
    moved = {}
    for frontal in (True, False):
        model = _dummy(tiny_template, mean_head="ridge", mean_frontal=frontal)
        model.mean_head.fit(lms, tokens, 1.0)
        a = model.prior_mean({"landmarks": probe})
        b = model.prior_mean({"landmarks": turned})
        moved[frontal] = float((a - b).abs().max())
    assert moved[True] < 1e-3 < moved[False]
    with pytest.raises(ValueError, match="3 landmark coordinates"):
        _dummy(tiny_template, mean_head="ridge", mean_frontal=True, mean_dims=2)
