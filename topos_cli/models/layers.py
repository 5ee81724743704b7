"""Shared blocks: Fourier point embedding, attention, the Perceiver Resampler and graph convolution."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn


class FourierEmbed(nn.Module):
    """Sin/cos features of 3D coordinates at octave frequencies, concatenated with the input."""

    def __init__(self, num_freqs: int = 6, in_dim: int = 3):
        super().__init__()
        self.register_buffer("freqs", (2.0 ** torch.arange(num_freqs)) * math.pi, persistent=False)
        self.out_dim = in_dim * (1 + 2 * num_freqs)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        angles = coords[..., None] * self.freqs  # (..., C, nf)
        feats = torch.cat([angles.sin(), angles.cos()], -1).flatten(-2)  # (..., C*2nf)
        return torch.cat([coords, feats], -1)  # (..., out_dim)


class Attention(nn.Module):
    """Multi-head attention with separate query and key/value inputs (self-attention when they match)."""

    def __init__(self, width: int, heads: int, head_dim: int):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        inner = heads * head_dim
        self.to_q = nn.Linear(width, inner, bias=False)
        self.to_kv = nn.Linear(width, 2 * inner, bias=False)
        self.out = nn.Linear(inner, width)

    def forward(self, queries: torch.Tensor, context: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        """bias: optional additive attention logits, broadcastable to (B, H, Nq, Nctx)."""
        bsz, nq, _ = queries.shape
        q = self.to_q(queries).view(bsz, nq, self.heads, self.head_dim).transpose(1, 2)  # (B, H, Nq, Dh)
        k, v = self.to_kv(context).view(bsz, context.shape[1], 2, self.heads, self.head_dim).unbind(2)
        out = F.scaled_dot_product_attention(q, k.transpose(1, 2), v.transpose(1, 2), attn_mask=bias)  # (B, H, Nq, Dh)
        return self.out(out.transpose(1, 2).reshape(bsz, nq, -1))  # (B, Nq, W)


def mlp(width: int, ratio: float) -> nn.Sequential:
    hidden = int(width * ratio)
    return nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))


class ResamplerBlock(nn.Module):
    """Queries attend to the points, then to one another, then an MLP (pre-norm residual).

    With `local` the cross-attention logits get a per-head Gaussian locality bias -d^2 / (2 sigma_h^2), d being
    the distance from the query's anchor to the point; sigma_h is learned, initialised log-spaced over
    [sigma_min, sigma_max] so some heads start local and others near-global.
    """

    def __init__(self, width: int, heads: int, head_dim: int, mlp_ratio: float, local: bool = False,
                 sigma_range: tuple[float, float] = (0.15, 1.5)):
        super().__init__()
        self.log_sigma = None
        if local:
            self.log_sigma = nn.Parameter(torch.linspace(math.log(sigma_range[0]), math.log(sigma_range[1]), heads))
        self.norm_q, self.norm_ctx = nn.LayerNorm(width), nn.LayerNorm(width)
        self.cross = Attention(width, heads, head_dim)
        self.norm_self = nn.LayerNorm(width)
        self.self_attn = Attention(width, heads, head_dim)
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = mlp(width, mlp_ratio)

    def forward(self, queries: torch.Tensor, points: torch.Tensor, sqdist: torch.Tensor | None = None) -> torch.Tensor:
        """sqdist: (B, Nq, P) squared anchor-to-point distances, used when the block is local."""
        bias = None
        if self.log_sigma is not None and sqdist is not None:
            bias = -0.5 * sqdist[:, None] * torch.exp(-2.0 * self.log_sigma)[None, :, None, None]  # (B, H, Nq, P)
            bias = bias.to(queries.dtype)
        queries = queries + self.cross(self.norm_q(queries), self.norm_ctx(points), bias)  # (B, Nq, W)
        normed = self.norm_self(queries)
        queries = queries + self.self_attn(normed, normed)
        return queries + self.mlp(self.norm_mlp(queries))


class PerceiverResampler(nn.Module):
    """A fixed set of learned queries refined over `depth` blocks that attend to a variable-size point set.

    Args (forward):
        queries: (B, Nq, W) initial query tokens.
        points: (B, P, W) embedded point features.
        sqdist: optional (B, Nq, P) squared anchor-to-point distances (local cross-attention).
    Returns:
        (B, Nq, W) refined tokens.
    """

    def __init__(self, width: int, depth: int, heads: int, head_dim: int, mlp_ratio: float, local: bool = False):
        super().__init__()
        self.blocks = nn.ModuleList([ResamplerBlock(width, heads, head_dim, mlp_ratio, local) for _ in range(depth)])
        self.norm = nn.LayerNorm(width)

    def forward(self, queries: torch.Tensor, points: torch.Tensor, sqdist: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.blocks:
            queries = block(queries, points, sqdist)
        return self.norm(queries)


def graph_conv_reference(feats: torch.Tensor, edges: torch.Tensor, w0: nn.Linear, w1: nn.Linear) -> torch.Tensor:
    """Slow dense reference of `GraphConv` (mean over neighbours) for tests: (B, V, C) -> (B, V, C')."""
    num_v = feats.shape[1]
    adj = torch.zeros(num_v, num_v, dtype=feats.dtype)
    adj[edges[:, 0], edges[:, 1]] = 1.0
    adj[edges[:, 1], edges[:, 0]] = 1.0
    adj = adj / adj.sum(1, keepdim=True).clamp(min=1)
    return w0(feats) + w1(adj @ feats)


class GraphConv(nn.Module):
    """F'_i = W0 F_i + W1 mean_{j in N(i)} F_j on a fixed graph.

    The paper writes a sum over neighbours; the mean makes the layer independent of vertex valence
    (pooled levels have irregular degrees), which is the same operator up to a per-vertex scale.

    Args (forward):
        feats: (B, V, C) vertex features.
        edges: (E, 2) int64 undirected edges (each listed once).
    """

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.w0 = nn.Linear(in_dim, out_dim)
        self.w1 = nn.Linear(in_dim, out_dim, bias=False)

    def forward(self, feats: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        src = torch.cat([edges[:, 0], edges[:, 1]])  # (2E,)
        dst = torch.cat([edges[:, 1], edges[:, 0]])
        nbr = self.w1(feats)  # (B, V, C') project first: cheaper when C' < C
        agg = torch.zeros_like(nbr).index_add_(1, dst, nbr.index_select(1, src))  # (B, V, C')
        deg = torch.zeros(feats.shape[1], dtype=nbr.dtype, device=nbr.device).index_add_(
            0, dst, torch.ones_like(dst, dtype=nbr.dtype))
        return self.w0(feats) + agg / deg.clamp(min=1)[None, :, None]


class GraphResBlock(nn.Module):
    """Two graph convolutions with GroupNorm-free LayerNorm/SiLU and a residual (projected if widths differ)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(in_dim)
        self.conv1 = GraphConv(in_dim, out_dim)
        self.norm2 = nn.LayerNorm(out_dim)
        self.conv2 = GraphConv(out_dim, out_dim)
        self.skip = nn.Linear(in_dim, out_dim) if in_dim != out_dim else nn.Identity()

    def forward(self, feats: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        hidden = self.conv1(F.silu(self.norm1(feats)), edges)  # (B, V, out)
        hidden = self.conv2(F.silu(self.norm2(hidden)), edges)
        return self.skip(feats) + hidden


# ---- diffusion-transformer blocks (TOPOS-DiT) ----


class TimestepEmbed(nn.Module):
    """Flow time t in [0, 1] -> (B, W): sinusoidal features of 1000 t, then an MLP (DiT)."""

    def __init__(self, width: int, freq_dim: int = 256, max_period: float = 10_000.0):
        super().__init__()
        half = freq_dim // 2
        self.register_buffer("freqs", torch.exp(-math.log(max_period) * torch.arange(half) / half), persistent=False)
        self.mlp = nn.Sequential(nn.Linear(2 * half, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = (1000.0 * t.float())[:, None] * self.freqs  # (B, half)
        return self.mlp(torch.cat([angles.cos(), angles.sin()], -1))  # (B, W)


def modulate(feats: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """AdaLN: (B, N, W) features shifted and scaled per sample by (B, W) vectors."""
    return feats * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    """adaLN-Zero transformer block with cross-attention to condition tokens (DiT + PixArt-style cross-attention).

    Self-attention and MLP are modulated by the timestep embedding (shift, scale) and gated (zero-initialised
    gates: every block starts as the identity); the cross-attention to the condition is a plain pre-norm residual.

    Args (forward):
        tokens: (B, N, W) latent tokens.
        cond: (B, M, W) condition tokens.
        temb: (B, W) timestep embedding.
    """

    def __init__(self, width: int, heads: int, head_dim: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(width, heads, head_dim)
        self.norm_cross = nn.LayerNorm(width, eps=1e-6)
        self.cross = Attention(width, heads, head_dim)
        self.norm2 = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.mlp = mlp(width, mlp_ratio)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 6 * width))
        nn.init.zeros_(self.ada[-1].weight)
        nn.init.zeros_(self.ada[-1].bias)

    def forward(self, tokens: torch.Tensor, cond: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(temb).chunk(6, -1)  # 6 x (B, W)
        normed = modulate(self.norm1(tokens), shift1, scale1)
        tokens = tokens + gate1[:, None] * self.attn(normed, normed)  # (B, N, W)
        tokens = tokens + self.cross(self.norm_cross(tokens), cond)
        return tokens + gate2[:, None] * self.mlp(modulate(self.norm2(tokens), shift2, scale2))


class DiTFinalLayer(nn.Module):
    """adaLN (shift, scale) then a zero-initialised projection to the token channels: (B, N, W) -> (B, N, C)."""

    def __init__(self, width: int, out_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))
        self.proj = nn.Linear(width, out_dim)
        for layer in (self.ada[-1], self.proj):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, tokens: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        shift, scale = self.ada(temb).chunk(2, -1)
        return self.proj(modulate(self.norm(tokens), shift, scale))
