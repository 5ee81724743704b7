"""TOPOS-DiT (paper §3.2, appendix A): a rectified-flow transformer over the geometry latent's tokens.

Tokens (B, T, d) of the latent (models/geo_latent.py: VAE tokens and/or shape-basis coefficients, normalised
per element) get a linear embedding plus a learned positional embedding, then `depth` adaLN-Zero blocks
(timestep through adaptive LayerNorm with gates, condition through cross-attention as keys and values), then a
zero-initialised output layer: the velocity (B, T, d).

Flow convention: x_t = t * x_data + (1 - t) * noise, t in [0, 1] (0 = noise, 1 = data); the model predicts
v = x_data - noise. Training draws t = sigmoid(N(0, 1)) (logit-normal) and replaces the condition by a learned
null condition with probability `cond_dropout`, for classifier-free guidance. The sampler lives in
pipelines/sampler.py, the loss in train/flow.py.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from topos_cli.models.cond_mean import RidgeMean
from topos_cli.models.image_cond import ConditionEncoder
from topos_cli.models.layers import DiTBlock, DiTFinalLayer, TimestepEmbed
from topos_cli.template import Template


@dataclass
class FlowDiTConfig:
    """Constructor arguments of FlowDiT (the checkpoint's `args`)."""

    latent: str = "vae+bases"  # latent kind (models/geo_latent.py LATENT_KINDS)
    num_tokens: int = 130  # T: latent tokens (VAE tokens + residual tokens for the shipped VAE)
    token_dim: int = 16  # d: channels per latent token (the VAE's latent_dim)
    width: int = 1024
    depth: int = 24
    heads: int = 16
    head_dim: int = 64
    mlp_ratio: float = 4.0
    condition: str = "features"  # models/image_cond.py CONDITIONS
    feature_dim: int = 1024  # width of pre-computed backbone tokens (DINOv2 ViT-L/14: 1024)
    crop_size: int = 128  # face crop side the pipeline makes (faces/crop.py); the CNN resizes it to cnn_input
    cnn_channels: tuple[int, ...] = (32, 64, 96, 128)
    cnn_input: int = 64
    landmark_count: int = 478
    landmark_dims: int = 2  # x, y in the crop frame (3 adds the face mesh's relative depth)
    landmark_tokens: int = 16  # condition tokens the landmark MLP emits
    cond_dropout: float = 0.1  # probability of the null condition in training (classifier-free guidance)
    mean_head: str = "none"  # "ridge": the flow generates the residual around a landmark regression (cond_mean.py)
    mean_dims: int = 3  # landmark coordinates the ridge reads (x, y, relative depth)
    mean_lambda: float = 1.0  # its ridge on standardised landmarks (chosen on held-out heads)
    mean_frontal: bool = False  # the ridge reads the landmarks frontalised onto their training mean (cond_mean.py)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["cnn_channels"] = list(self.cnn_channels)
        return out


class FlowDiT(nn.Module):
    """Velocity of the latent flow given tokens, time and condition.

    Args:
        config: FlowDiTConfig.
        template: the template of the latent's heads (recorded by the checkpoint writer).
    """

    def __init__(self, config: FlowDiTConfig, template: Template):
        super().__init__()
        cfg = self.config = config
        self.template_name, self.template_hash = template.name, template.hash
        self.token_in = nn.Linear(cfg.token_dim, cfg.width)
        self.pos_embed = nn.Parameter(torch.randn(cfg.num_tokens, cfg.width) * 0.02)
        self.time_embed = TimestepEmbed(cfg.width)
        self.cond_encoder = ConditionEncoder(cfg.condition, cfg.width, cnn_channels=tuple(cfg.cnn_channels),
                                             cnn_input=cfg.cnn_input, landmark_count=cfg.landmark_count,
                                             landmark_dims=cfg.landmark_dims,
                                             landmark_tokens=cfg.landmark_tokens, feature_dim=cfg.feature_dim)
        self.null_cond = nn.Parameter(torch.randn(1, 1, cfg.width) * 0.02)  # the learned "no image" condition
        self.blocks = nn.ModuleList([DiTBlock(cfg.width, cfg.heads, cfg.head_dim, cfg.mlp_ratio)
                                     for _ in range(cfg.depth)])
        self.final = DiTFinalLayer(cfg.width, cfg.token_dim)
        # per-element statistics of the training targets: the flow runs on (latent - mean) / std
        self.register_buffer("latent_mean", torch.zeros(cfg.num_tokens, cfg.token_dim))
        self.register_buffer("latent_std", torch.ones(cfg.num_tokens, cfg.token_dim))
        if cfg.mean_head not in ("none", "ridge"):
            raise ValueError(f"unknown mean_head '{cfg.mean_head}'; known: none, ridge")
        self.mean_head = (RidgeMean(cfg.landmark_count, cfg.mean_dims, cfg.num_tokens, cfg.token_dim,
                                    frontal=cfg.mean_frontal)
                          if cfg.mean_head == "ridge" else None)

    def prior_mean(self, cond: dict[str, torch.Tensor]) -> torch.Tensor | None:
        """(B, T, d) normalised tokens the flow's samples are offsets from (None: zero, the paper's flow)."""
        return None if self.mean_head is None else self.mean_head(cond["landmarks"])

    def normalize(self, tokens: torch.Tensor) -> torch.Tensor:
        return (tokens - self.latent_mean) / self.latent_std

    def denormalize(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens * self.latent_std + self.latent_mean

    def encode_condition(self, cond: dict[str, torch.Tensor], drop: torch.Tensor | None = None) -> torch.Tensor:
        """(B, M, W) condition tokens; rows where `drop` (B,) bool is set become the null condition."""
        tokens = self.cond_encoder(cond)  # (B, M, W)
        if drop is not None:
            tokens = torch.where(drop[:, None, None], self.null_cond.to(tokens.dtype), tokens)
        return tokens

    def null_condition(self, like: torch.Tensor) -> torch.Tensor:
        """Null condition tokens shaped like `like` (B, M, W): what guidance contrasts against."""
        return self.null_cond.to(like.dtype).expand_as(like)

    def velocity(self, latents: torch.Tensor, t: torch.Tensor, cond_tokens: torch.Tensor) -> torch.Tensor:
        """Args: latents (B, T, d) normalised; t (B,) in [0, 1]; cond_tokens (B, M, W). Returns (B, T, d)."""
        tokens = self.token_in(latents) + self.pos_embed  # (B, T, W)
        temb = self.time_embed(t)  # (B, W)
        for block in self.blocks:
            tokens = block(tokens, cond_tokens, temb)
        return self.final(tokens, temb)  # (B, T, d)

    def forward(self, latents: torch.Tensor, t: torch.Tensor, cond: dict[str, torch.Tensor],
                drop: torch.Tensor | None = None) -> torch.Tensor:
        """Velocity (B, T, d) from the raw condition inputs (training path; DDP wraps this)."""
        return self.velocity(latents, t, self.encode_condition(cond, drop))
