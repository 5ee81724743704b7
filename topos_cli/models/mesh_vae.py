"""TOPOS-VAE: point cloud (with normals) -> N latent tokens (N = coarsest graph level) -> template vertices.

Encoder: a Perceiver Resampler whose queries are anchored at the coarsest nodes of the template's pooling
hierarchy (Fourier embedding of the node position + a learned vector), so each latent token is a semantic
anchor on the head. Posterior: diagonal Gaussian per token (mean, log-variance).
Decoder: graph network on the template: tokens -> coarsest graph, graph res-blocks, unpool by the cached
hierarchy map, ... -> template graph -> MLP -> vertex offsets from the template rest shape.

Coordinates inside the model are normalised: (x - center) / radius, center/radius from the template.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from topos_cli.models.hierarchy import build_hierarchy
from topos_cli.models.layers import FourierEmbed, GraphResBlock, PerceiverResampler
from topos_cli.template import Template


@dataclass
class MeshVAEConfig:
    """Constructor arguments of MeshVAE (the checkpoint's `args`)."""

    depth: int = 8  # resampler blocks
    width: int = 128
    heads: int = 8
    head_dim: int = 64
    mlp_ratio: float = 4.0
    latent_dim: int = 32
    levels: int = 4  # pooling levels of the decoder hierarchy
    pool_factor: float = 3.0  # node-count reduction per level
    decoder_channels: tuple[int, ...] = (128, 96, 64, 48, 32)  # coarse -> fine, levels + 1 entries
    blocks_per_level: int = 1
    fourier_freqs: int = 6
    local_attention: bool = True  # Gaussian anchor-distance bias on the cross-attention (see layers.py)
    init_logvar: float = -8.0  # initial posterior log-variance
    query_knn: int = 16  # nearest input points per anchor that seed its query (0: learned queries only)
    query_scale: float = 0.1  # anchor-relative offsets are divided by this (normalised units, ~1.2 cm)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["decoder_channels"] = list(self.decoder_channels)
        return out


class MeshVAE(nn.Module):
    """Args: config, template (its hash is recorded by the checkpoint writer)."""

    def __init__(self, config: MeshVAEConfig, template: Template):
        super().__init__()
        cfg = self.config = config
        if len(cfg.decoder_channels) != cfg.levels + 1:
            raise ValueError(f"decoder_channels needs {cfg.levels + 1} entries (levels + 1)")
        self.template_name, self.template_hash = template.name, template.hash
        verts = template.verts.astype(np.float64)
        center = (verts.max(0) + verts.min(0)) / 2
        radius = float(np.sqrt(((verts - center) ** 2).sum(1).mean()))
        self.register_buffer("center", torch.tensor(center, dtype=torch.float32), persistent=False)
        self.radius = radius
        self.register_buffer("rest", torch.tensor((verts - center) / radius, dtype=torch.float32), persistent=False)
        levels = build_hierarchy(template.verts, template.edges, cfg.levels, cfg.pool_factor)
        for i, lvl in enumerate(levels):
            self.register_buffer(f"edges_{i}", torch.from_numpy(lvl.edges), persistent=False)
            if lvl.parent is not None:
                self.register_buffer(f"parent_{i}", torch.from_numpy(lvl.parent), persistent=False)
        anchors = (levels[-1].positions - center) / radius
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32), persistent=False)
        self.num_tokens = len(anchors)
        # encoder
        self.embed = FourierEmbed(cfg.fourier_freqs)
        self.point_in = nn.Linear(self.embed.out_dim + 3, cfg.width)
        self.query_in = nn.Linear(self.embed.out_dim, cfg.width)
        self.query_bias = nn.Parameter(torch.zeros(self.num_tokens, cfg.width))
        if cfg.query_knn > 0:  # a small PointNet over each anchor's nearest points (anchor-relative, amplified)
            self.query_local = nn.Sequential(nn.Linear(6, cfg.width), nn.GELU(), nn.Linear(cfg.width, cfg.width))
            self.query_mix = nn.Linear(2 * cfg.width, cfg.width)
        self.resampler = PerceiverResampler(cfg.width, cfg.depth, cfg.heads, cfg.head_dim, cfg.mlp_ratio,
                                            cfg.local_attention)
        self.to_posterior = nn.Linear(cfg.width, 2 * cfg.latent_dim)
        # start with a narrow posterior (std ~0.02): with the default log-variance of 0 the sampled latents
        # are unit noise that swamps the encoder's signal, and the decoder learns to ignore them (collapse)
        with torch.no_grad():
            self.to_posterior.weight[cfg.latent_dim:].mul_(0.1)
            self.to_posterior.bias[cfg.latent_dim:].fill_(cfg.init_logvar)
        # decoder (coarse -> fine)
        chans = list(cfg.decoder_channels)
        c_ins = [chans[0]] + chans[:-1]  # each stage's input width (after unpooling the previous stage)
        self.latent_in = nn.Linear(cfg.latent_dim, chans[0])
        self.node_embed = nn.ParameterList(
            [nn.Parameter(torch.zeros(len(lvl.positions), c)) for lvl, c in zip(levels[::-1], c_ins, strict=True)])
        self.stages = nn.ModuleList()
        for c_in, c in zip(c_ins, chans, strict=True):
            blocks = [GraphResBlock(c_in if b == 0 else c, c) for b in range(cfg.blocks_per_level)]
            self.stages.append(nn.ModuleList(blocks))
        self.head = nn.Sequential(nn.LayerNorm(chans[-1]), nn.Linear(chans[-1], chans[-1]), nn.SiLU(),
                                  nn.Linear(chans[-1], 3))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        # latent statistics over the training data, for normalising latents in downstream generators
        self.register_buffer("latent_mean", torch.zeros(self.num_tokens, cfg.latent_dim))
        self.register_buffer("latent_std", torch.ones(self.num_tokens, cfg.latent_dim))

    def normalize_coords(self, coords: torch.Tensor) -> torch.Tensor:
        return (coords - self.center) / self.radius

    def encode(self, points: torch.Tensor, normals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior of a point cloud in the template frame (cm).

        Args:
            points: (B, P, 3) float positions; normals: (B, P, 3) unit normals.
        Returns:
            mean, logvar: (B, N, d) each, N = self.num_tokens.
        """
        coords = self.normalize_coords(points)
        feats = torch.cat([self.embed(coords), normals], -1)  # (B, P, E+3)
        tokens = self.point_in(feats)  # (B, P, W)
        queries = (self.query_in(self.embed(self.anchors)) + self.query_bias).expand(len(points), -1, -1)
        sqdist = None
        if self.config.local_attention or self.config.query_knn > 0:
            sqdist = torch.cdist(self.anchors.expand(len(points), -1, -1), coords).square()  # (B, N, P)
        if self.config.query_knn > 0:
            queries = queries + self._local_queries(coords, normals, sqdist)
        if not self.config.local_attention:
            sqdist = None
        latent = self.to_posterior(self.resampler(queries, tokens, sqdist))  # (B, N, 2d)
        mean, logvar = latent.chunk(2, -1)
        return mean, logvar.clamp(-12.0, 6.0)

    def _local_queries(self, coords: torch.Tensor, normals: torch.Tensor, sqdist: torch.Tensor) -> torch.Tensor:
        """(B, N, W) query features from each anchor's k nearest points: offsets to the anchor and normals."""
        k = min(self.config.query_knn, coords.shape[1])
        idx = sqdist.topk(k, dim=-1, largest=False).indices  # (B, N, k)
        gather = idx.flatten(1)[..., None].expand(-1, -1, 3)  # (B, N*k, 3)
        near = coords.gather(1, gather).view(*idx.shape, 3)
        nrm = normals.gather(1, gather).view(*idx.shape, 3)
        rel = (near - self.anchors[:, None]) / self.config.query_scale
        feats = self.query_local(torch.cat([rel, nrm], -1))  # (B, N, k, W)
        return self.query_mix(torch.cat([feats.mean(2), feats.amax(2)], -1))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Template vertices (B, V, 3) in cm from latent tokens (B, N, d)."""
        feats = self.latent_in(latents) + self.node_embed[0]  # (B, N, C0)
        num = self.config.levels
        for i, stage in enumerate(self.stages):
            level = num - i
            if i:
                feats = feats.index_select(1, getattr(self, f"parent_{level}")) + self.node_embed[i]  # unpool (B, n_l, C)
            for block in stage:
                feats = block(feats, getattr(self, f"edges_{level}"))
        offsets = self.head(feats)  # (B, V, 3)
        return (self.rest + offsets) * self.radius + self.center

    def forward(self, points: torch.Tensor, normals: torch.Tensor, generator: torch.Generator | None = None,
                sample: bool = True) -> dict[str, torch.Tensor]:
        """Encode, sample the posterior (or take its mean), decode: {'verts', 'mean', 'logvar', 'latents'}."""
        mean, logvar = self.encode(points, normals)
        latents = mean
        if sample:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            latents = mean + noise * (0.5 * logvar).exp()
        return {"verts": self.decode(latents), "mean": mean, "logvar": logvar, "latents": latents}
