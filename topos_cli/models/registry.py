"""Model registry: name -> (config dataclass, module class), and named size configs."""

from __future__ import annotations

from dataclasses import fields

from topos_cli.models.flow_dit import FlowDiT, FlowDiTConfig
from topos_cli.models.mesh_vae import MeshVAE, MeshVAEConfig
from topos_cli.models.uv_net import UVNet, UVNetConfig

MODELS = {"mesh-vae": (MeshVAEConfig, MeshVAE), "flow-dit": (FlowDiTConfig, FlowDiT), "tex-uv": (UVNetConfig, UVNet)}

# Values of config fields added later that reproduce the architecture of checkpoints written before them
# (a checkpoint's `args` lists every field that existed when it was written).
LEGACY_ARGS = {"mesh-vae": {"local_attention": False, "query_knn": 0}}

# Named configurations (args of the config dataclass). `paper` follows TOPOS §3.1 / appendix A;
# `small` trains on a laptop CPU and is the shipped default; `tiny` is for tests and tiny recipes.
CONFIGS = {
    "mesh-vae": {
        "paper": {},
        "small": {"depth": 3, "width": 96, "heads": 4, "head_dim": 32, "mlp_ratio": 2.0, "latent_dim": 16,
                  "decoder_channels": [96, 64, 48, 32, 24]},
        "tiny": {"depth": 1, "width": 32, "heads": 2, "head_dim": 16, "mlp_ratio": 2.0, "latent_dim": 8,
                 "levels": 2, "decoder_channels": [32, 24, 16], "fourier_freqs": 3},
    },
    # TOPOS-DiT. `paper`: appendix A (width 1024, 24 blocks, 16 heads x 64, MLP 4) over the VAE latent with a
    # shape-basis residual, conditioned on frozen DINOv2 ViT-L/14-with-registers tokens (1024 wide, layer-normed).
    # `small`: the shipped CPU model: the shape-basis latent (11 tokens; floor 0 on ICT-span heads, see
    # benchmarks/geo_latent_floor.py) and a from-scratch CNN on the face crop (the condition ablation in the
    # geo-dit-small README: crop, landmarks and both were level at 400 steps; the crop is the one branch that
    # can carry identity cues), generating the residual around a closed-form landmark regression (models/cond_mean.py:
    # the flow alone stayed at the mean head on this data; the regression cuts the held-out face error by a quarter).
    # `tiny`: tests and the tiny recipe.
    "flow-dit": {
        "paper": {},
        "small": {"latent": "bases", "num_tokens": 11, "width": 128, "depth": 4, "heads": 4, "head_dim": 32,
                  "mlp_ratio": 4.0, "condition": "crop", "mean_head": "ridge", "mean_dims": 3, "mean_lambda": 0.3,
                  "mean_frontal": True},
        "tiny": {"latent": "bases", "num_tokens": 11, "width": 32, "depth": 2, "heads": 2, "head_dim": 16,
                 "mlp_ratio": 2.0, "condition": "crop+landmarks", "cnn_channels": [8, 16], "cnn_input": 32,
                 "landmark_tokens": 4},
    },
    # generate-tex --method learned: the UV correction network (models/uv_net.py) on the unwrap at 128².
    "tex-uv": {"small": {}, "tiny": {"size": 32, "widths": [8, 16], "groups": 4}},
}


def make_config(name: str, args: dict | None = None, preset: str | None = None):
    """The config dataclass of model `name`, from a named preset updated by `args` (unknown keys: ValueError)."""
    if name not in MODELS:
        raise ValueError(f"unknown model '{name}'; known: {sorted(MODELS)}")
    config_cls, _ = MODELS[name]
    if preset and preset not in CONFIGS[name]:
        raise ValueError(f"unknown config '{preset}' for {name}; known: {sorted(CONFIGS[name])}")
    merged = dict(CONFIGS[name][preset]) if preset else {}
    merged.update(args or {})
    known = {f.name for f in fields(config_cls)}
    unknown = sorted(set(merged) - known)
    if unknown:
        raise ValueError(f"unknown {name} args {unknown}; known: {sorted(known)}")
    for key in ("decoder_channels", "cnn_channels", "widths"):  # tuple fields arrive as JSON/YAML lists
        if key in merged:
            merged[key] = tuple(merged[key])
    return config_cls(**merged)


def build(name: str, args: dict | None, template, preset: str | None = None):
    """Instantiate model `name` for `template` from a preset and/or explicit args."""
    _, model_cls = MODELS[name]
    return model_cls(make_config(name, args, preset), template)
