"""mesh-vae dummy-config tests: shapes, backward, save -> load round trip, parameter count, hierarchy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from topos_cli.errors import MissingWeights, TemplateMismatch
from topos_cli.io.checkpoint import load_model, read_model_json, save_checkpoint
from topos_cli.models.hierarchy import build_hierarchy
from topos_cli.models.layers import GraphConv, graph_conv_reference
from topos_cli.models.registry import build, make_config


def _dummy(template):
    return build("mesh-vae", {}, template, preset="tiny")


def _points(template, count=300, seed=0):
    gen = np.random.default_rng(seed)
    idx = gen.integers(0, template.num_verts, count)
    pts = torch.tensor(template.verts[idx])[None]
    nrm = torch.nn.functional.normalize(pts - pts.mean(1, keepdim=True), dim=-1)
    return pts, nrm


def test_forward_shapes_and_rest_decode(tiny_template):
    model = _dummy(tiny_template)
    pts, nrm = _points(tiny_template)
    out = model(pts.expand(2, -1, -1), nrm.expand(2, -1, -1), generator=torch.Generator().manual_seed(0))
    assert out["verts"].shape == (2, tiny_template.num_verts, 3)
    assert out["mean"].shape == (2, model.num_tokens, model.config.latent_dim)
    assert model.num_tokens == len(build_hierarchy(tiny_template.verts, tiny_template.edges, 2, 3.0)[-1].positions)
    # the output head starts at zero: an untrained decoder returns the template rest shape
    np.testing.assert_allclose(out["verts"][0].detach().numpy(), tiny_template.verts, atol=1e-4)


def test_backward_reaches_encoder_and_decoder(tiny_template):
    model = _dummy(tiny_template)
    torch.nn.init.normal_(model.head[-1].weight, std=0.01)
    pts, nrm = _points(tiny_template)
    out = model(pts, nrm, generator=torch.Generator().manual_seed(0))
    (out["verts"].square().mean() + out["mean"].square().mean()).backward()
    assert model.point_in.weight.grad.abs().sum() > 0
    assert model.stages[-1][0].conv1.w1.weight.grad.abs().sum() > 0
    assert model.query_bias.grad.abs().sum() > 0


def test_parameter_count_is_stable(tiny_template):
    model = _dummy(tiny_template)
    count = sum(p.numel() for p in model.parameters())
    w, heads, depth = model.config.width, model.config.heads, model.config.depth
    local = depth * heads + (6 * w + w) + (w * w + w) + (2 * w * w + w)  # sigmas + k-NN query PointNet + mix
    assert count == 32059 + local  # recompute deliberately when the architecture changes


def test_save_load_round_trip_gives_equal_outputs(tiny_template, tmp_path):
    torch.manual_seed(0)
    model = _dummy(tiny_template).eval()
    torch.nn.init.normal_(model.head[-1].weight, std=0.01)
    model.latent_mean.fill_(0.5)
    args = model.config.to_dict()
    step_dir = save_checkpoint(tmp_path / "run", 7, "mesh-vae", args, tiny_template, model.state_dict(),
                               train_state={"step": 7}, extra={"loss": 1.0})
    assert (tmp_path / "run" / "latest").read_text().strip() == "step-000000007"
    assert read_model_json(tmp_path / "run")["template_hash"] == tiny_template.hash
    loaded = load_model(tmp_path / "run", template=tiny_template)
    pts, nrm = _points(tiny_template)
    with torch.no_grad():
        a = model(pts, nrm, sample=False)["verts"]
        b = loaded(pts, nrm, sample=False)["verts"]
    assert torch.equal(a, b)
    assert torch.equal(loaded.latent_mean, model.latent_mean)
    assert step_dir.name == "step-000000007"


def test_load_rejects_other_template_and_missing_folder(tiny_template, tmp_path):
    from topos_cli.template import template_from_parts

    model = _dummy(tiny_template)
    save_checkpoint(tmp_path / "run", 1, "mesh-vae", model.config.to_dict(), tiny_template, model.state_dict())
    other = template_from_parts({"name": "other"}, tiny_template.verts, tiny_template.faces[:, [0, 2, 1]])
    with pytest.raises(TemplateMismatch):
        load_model(tmp_path / "run", template=other)
    with pytest.raises(MissingWeights):
        load_model(tmp_path / "nothing")


def test_unknown_config_args_are_rejected():
    with pytest.raises(ValueError, match="unknown mesh-vae args"):
        make_config("mesh-vae", {"widht": 3})
    assert make_config("mesh-vae", None, "paper").depth == 8


def test_graph_conv_matches_dense_reference(tiny_template):
    torch.manual_seed(0)
    conv = GraphConv(5, 4)
    feats = torch.randn(2, tiny_template.num_verts, 5)
    edges = torch.from_numpy(tiny_template.edges)
    torch.testing.assert_close(conv(feats, edges), graph_conv_reference(feats, edges, conv.w0, conv.w1))


def test_hierarchy_levels_shrink_and_cover(tiny_template):
    levels = build_hierarchy(tiny_template.verts, tiny_template.edges, levels=2, factor=3.0)
    counts = [len(lvl.positions) for lvl in levels]
    assert counts[0] == tiny_template.num_verts
    assert counts[1] < counts[0] and counts[2] < counts[1]
    for fine, coarse in zip(levels[:-1], levels[1:], strict=True):
        assert set(np.unique(fine.parent)) == set(range(len(coarse.positions)))  # every coarse node used
        assert coarse.edges.max() < len(coarse.positions)
    assert build_hierarchy(tiny_template.verts, tiny_template.edges, levels=2, factor=3.0) is levels  # cached


def test_vae_losses_zero_for_identical_meshes_and_kl_warmup(tiny_template):
    from topos_cli.train.vae import interior_edges, signed_dihedral, vae_losses

    verts = torch.tensor(tiny_template.verts)[None]
    faces = torch.from_numpy(tiny_template.faces)
    edges = interior_edges(tiny_template.faces)
    assert len(edges.edge) == len(tiny_template.edges)  # a closed sphere: every edge is interior
    mean, logvar = torch.ones(1, 4, 2), torch.zeros(1, 4, 2)
    terms = vae_losses(verts, verts, mean, logvar, faces, edges, radius=10.0)
    for key in ("vertex", "normal", "angle", "dihedral"):
        assert float(terms[key]) == pytest.approx(0.0, abs=1e-6)
    assert float(terms["kl"]) == pytest.approx(0.5)  # 0.5 * (mu^2 + 1 - 1 - 0), mu = 1
    assert float(vae_losses(verts, verts, mean, logvar, faces, edges, 10.0, kl_scale=0.0)["total"]) < 1e-6
    assert float(signed_dihedral(verts, faces, edges).abs().max()) < 0.6  # convex, no folds


def test_loss_weight_overrides_reweight_the_total_and_reject_unknown_terms(tiny_template):
    from topos_cli.train.vae import LOSS_WEIGHTS, interior_edges, loss_weights, vae_losses

    verts = torch.tensor(tiny_template.verts)[None]
    moved = verts + torch.linspace(0.0, 1.0, verts.shape[1])[None, :, None]  # a non-rigid change: every term > 0
    faces, edges = torch.from_numpy(tiny_template.faces), interior_edges(tiny_template.faces)
    mean, logvar = torch.ones(1, 4, 2), torch.zeros(1, 4, 2)
    paper = vae_losses(moved, verts, mean, logvar, faces, edges, 10.0)
    heavy = vae_losses(moved, verts, mean, logvar, faces, edges, 10.0, weights=loss_weights({"vertex": 10}))
    assert float(paper["vertex"]) > 0.01
    assert float(heavy["total"] - paper["total"]) == pytest.approx(8.0 * float(paper["vertex"]), rel=1e-5)
    assert loss_weights(None) == LOSS_WEIGHTS and loss_weights({"kl": 0})["kl"] == 0.0
    for bad, word in (({"chamfer": 1.0}, "unknown loss term 'chamfer'"), ({"vertex": -1}, ">= 0"),
                      ({"vertex": "ten"}, ">= 0")):
        with pytest.raises(ValueError, match=word):
            loss_weights(bad)


def test_unknown_preset_is_a_value_error_naming_the_known_ones():
    import pytest

    from topos_cli.models.registry import make_config

    with pytest.raises(ValueError, match="unknown config 'nope'.*paper"):
        make_config("mesh-vae", None, preset="nope")


def test_initial_posterior_is_narrow(tiny_template):
    """Against posterior collapse: at initialisation the sampled latents stay close to the posterior mean."""
    torch.manual_seed(0)
    model = _dummy(tiny_template)
    pts, nrm = _points(tiny_template)
    with torch.no_grad():
        mean, logvar = model.encode(pts, nrm)
    assert abs(float(logvar.mean()) - model.config.init_logvar) < 1.0
    assert float(mean.std()) > 20 * float((0.5 * logvar).exp().mean())


def test_local_queries_see_only_each_anchors_nearest_points(tiny_template):
    torch.manual_seed(0)
    model = _dummy(tiny_template)
    gen = np.random.default_rng(0)
    idx = gen.choice(tiny_template.num_verts, 120, replace=False)
    # distinct, jittered points: the template is mirror-symmetric, and distance ties make top-k unstable
    pts = torch.tensor(tiny_template.verts[idx] + gen.normal(0, 0.01, (120, 3)), dtype=torch.float32)[None]
    nrm = torch.nn.functional.normalize(pts - pts.mean(1, keepdim=True), dim=-1)
    coords = model.normalize_coords(pts)
    sqdist = torch.cdist(model.anchors[None], coords).square()
    base = model._local_queries(coords, nrm, sqdist)
    k = model.config.query_knn
    used = sqdist.topk(k, dim=-1, largest=False).indices[0]  # (N, k)
    unused = sorted(set(range(pts.shape[1])) - set(used.flatten().tolist()))
    moved = coords.clone()
    moved[0, unused[0]] += 10.0  # a point nobody's neighbour, moved away: nothing changes
    sq2 = torch.cdist(model.anchors[None], moved).square()
    torch.testing.assert_close(model._local_queries(moved, nrm, sq2), base)
    moved = coords.clone()
    moved[0, used[0, 0]] += 0.01  # anchor 0's nearest point: its query changes
    sq2 = torch.cdist(model.anchors[None], moved).square()
    changed = (model._local_queries(moved, nrm, sq2) - base).abs().sum(-1)[0]
    assert changed[0] > 0
    assert (changed == 0).sum() > 0  # anchors that do not have that point among their neighbours


def test_checkpoint_from_before_new_config_fields_loads_with_its_architecture(tiny_template, tmp_path):
    import json

    old = build("mesh-vae", {"local_attention": False, "query_knn": 0}, tiny_template, preset="tiny")
    args = {k: v for k, v in old.config.to_dict().items() if k not in ("local_attention", "query_knn",
                                                                        "init_logvar", "query_scale")}
    step_dir = save_checkpoint(tmp_path / "run", 1, "mesh-vae", args, tiny_template, old.state_dict())
    loaded = load_model(tmp_path / "run", template=tiny_template)
    assert loaded.config.local_attention is False and loaded.config.query_knn == 0
    assert json.loads((step_dir / "model.json").read_text())["args"] == args


def test_weights_of_another_architecture_are_a_one_line_error(tiny_template, tmp_path):
    other = build("mesh-vae", {"local_attention": False, "query_knn": 0}, tiny_template, preset="tiny")
    args = _dummy(tiny_template).config.to_dict()  # says: the new architecture
    save_checkpoint(tmp_path / "run", 1, "mesh-vae", args, tiny_template, other.state_dict())
    with pytest.raises(MissingWeights, match="does not fit model 'mesh-vae'") as info:
        load_model(tmp_path / "run", template=tiny_template)
    assert "\n" not in str(info.value)
