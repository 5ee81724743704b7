"""The latent space TOPOS-DiT generates in: VAE latent tokens, plus a residual in the template's shape bases.

A head (V, 3) in template topology maps to two groups:

- `vae`: the TOPOS-VAE posterior mean (N, d) of points sampled on the head (the paper's latent);
- `coeffs`: K coefficients of the residual `head - decode(vae)` in an orthonormal basis of the span of the
  template's identity and region bases (the space every ICT-derived training head lives in).

`decode(vae, coeffs) = vae.decode(vae) + coeffs @ basis`. The residual removes the VAE's reconstruction floor
for heads inside the bases' span (measured: 0.43 % of the diagonal -> ~0 on clean neutral heads) while the
VAE tokens keep the shape outside it that `retopo` relies on. Kind `bases` drops the VAE group (the residual
is then the whole offset from the template); kind `vae` drops the residual (the paper's latent alone).

For the generator both groups are packed into one (T, d) token sequence: the N VAE tokens, then the
coefficients in rows of d (zero-padded), normalised per element by statistics of the training targets
(`FlowDiT.latent_mean/latent_std` hold them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from topos_cli.template import Template

LATENT_KINDS = ("vae+bases", "vae", "bases")
RESIDUAL_BASES = ("identity", "region_")  # basis names (prefixes) whose span the residual covers
RANK_TOL = 1e-6  # relative singular value below which a direction of the stacked bases is dropped
ENCODE_POINTS = 4096  # surface samples per head for the VAE encoder (it was trained with 1536-2048)


@dataclass
class GeoLatents:
    """Latents of a batch of heads: `vae` (B, N, d) or None, `coeffs` (B, K) or None."""

    vae: np.ndarray | None
    coeffs: np.ndarray | None


def residual_basis(template: Template) -> np.ndarray:
    """(K, V*3) float32 orthonormal rows spanning the template's identity and region bases (largest first)."""
    rows = [b.reshape(len(b), -1) for name, b in template.bases.items()
            if b.ndim == 3 and any(name == p or (p.endswith("_") and name.startswith(p)) for p in RESIDUAL_BASES)]
    if not rows:
        return np.zeros((0, template.num_verts * 3), np.float32)
    stack = np.concatenate(rows).astype(np.float64)
    _, sing, vt = np.linalg.svd(stack, full_matrices=False)
    keep = sing > RANK_TOL * sing[0]
    return np.ascontiguousarray(vt[keep], dtype=np.float32)


def token_layout(kind: str, vae_tokens: int, token_dim: int, coeffs: int) -> tuple[int, int]:
    """(VAE token count, residual token count) of the packed sequence."""
    if kind not in LATENT_KINDS:
        raise ValueError(f"unknown latent kind '{kind}'; known: {', '.join(LATENT_KINDS)}")
    vae = vae_tokens if kind != "bases" else 0
    res = math.ceil(coeffs / token_dim) if kind != "vae" else 0
    return vae, res


class GeoLatent(nn.Module):
    """Encode heads to, and decode heads from, the generator's latent (see module docstring).

    Args:
        vae: a MeshVAE (eval mode) or None for kind `bases`.
        template: the template the VAE was built for.
        kind: one of LATENT_KINDS.
    """

    def __init__(self, vae: nn.Module | None, template: Template, kind: str = "vae+bases"):
        super().__init__()
        if kind != "bases" and vae is None:
            raise ValueError(f"latent kind '{kind}' needs a VAE")
        self.kind, self.vae, self.template = kind, (vae if kind != "bases" else None), template
        basis = residual_basis(template) if kind != "vae" else np.zeros((0, template.num_verts * 3), np.float32)
        self.register_buffer("basis", torch.from_numpy(basis), persistent=False)
        self.register_buffer("rest", torch.from_numpy(template.verts.astype(np.float32)), persistent=False)
        self.num_coeffs = len(basis)
        self.token_dim = vae.config.latent_dim if self.vae is not None else 16
        self.vae_tokens = self.vae.num_tokens if self.vae is not None else 0

    def layout(self) -> tuple[int, int]:
        return token_layout(self.kind, self.vae_tokens, self.token_dim, self.num_coeffs)

    @torch.no_grad()
    def encode_vae(self, verts: np.ndarray, seed: int = 0, points: int = ENCODE_POINTS) -> np.ndarray:
        """(B, N, d) VAE posterior means of points sampled on each head of (B, V, 3)."""
        from topos_cli.geometry.mesh_ops import face_normals, sample_surface

        pts, nrms = [], []
        for i, head in enumerate(np.asarray(verts, np.float64)):
            rng = np.random.default_rng([seed, i])
            sample, fidx, _ = sample_surface(head, self.template.faces, points, rng)
            pts.append(sample)
            nrms.append(face_normals(head, self.template.faces)[fidx])
        dev = self.rest.device
        mean, _ = self.vae.encode(torch.tensor(np.stack(pts), dtype=torch.float32, device=dev),
                                  torch.tensor(np.stack(nrms), dtype=torch.float32, device=dev))
        return mean.cpu().numpy()

    @torch.no_grad()
    def encode(self, verts: np.ndarray, seed: int = 0, batch: int = 16) -> GeoLatents:
        """Latents of heads (B, V, 3) cm: VAE means, then the residual's coefficients in the basis."""
        verts = np.asarray(verts, np.float32)
        vae_out, coeff_out = [], []
        for start in range(0, len(verts), batch):
            chunk = verts[start:start + batch]
            base = np.broadcast_to(self.rest.cpu().numpy(), chunk.shape)
            if self.vae is not None:
                z = self.encode_vae(chunk, seed=seed * 1_000_003 + start)
                vae_out.append(z)
                base = self.decode_vae(torch.from_numpy(z).to(self.rest.device)).cpu().numpy()
            if self.num_coeffs:
                resid = torch.from_numpy((chunk - base).reshape(len(chunk), -1)).to(self.basis)
                coeff_out.append((resid @ self.basis.T).cpu().numpy())
        return GeoLatents(vae=np.concatenate(vae_out) if vae_out else None,
                          coeffs=np.concatenate(coeff_out) if coeff_out else None)

    def decode_vae(self, vae: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(vae)

    def decode(self, vae: torch.Tensor | None, coeffs: torch.Tensor | None) -> torch.Tensor:
        """(B, V, 3) heads in cm from the latent groups (torch, differentiable)."""
        if self.vae is not None:
            verts = self.decode_vae(vae)
        else:
            verts = self.rest.expand(len(coeffs), -1, -1)
        if self.num_coeffs:
            verts = verts + (coeffs[:, : self.num_coeffs] @ self.basis).view(len(coeffs), -1, 3)
        return verts

    def pack(self, latents: GeoLatents) -> np.ndarray:
        """(B, T, d) token sequence of the latent groups (coefficients zero-padded to whole tokens)."""
        parts = []
        if self.vae is not None:
            parts.append(np.asarray(latents.vae, np.float32))
        if self.num_coeffs:
            coeffs = np.asarray(latents.coeffs, np.float32)
            _, res = self.layout()
            padded = np.zeros((len(coeffs), res * self.token_dim), np.float32)
            padded[:, : coeffs.shape[1]] = coeffs
            parts.append(padded.reshape(len(coeffs), res, self.token_dim))
        return np.concatenate(parts, 1)

    def unpack(self, tokens: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(vae (B, N, d) or None, coeffs (B, K) or None) from packed tokens (B, T, d)."""
        n_vae, _ = self.layout()
        vae = tokens[:, :n_vae] if self.vae is not None else None
        coeffs = tokens[:, n_vae:].flatten(1)[:, : self.num_coeffs] if self.num_coeffs else None
        return vae, coeffs

    def decode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, V, 3) heads from packed (unnormalised) tokens (B, T, d)."""
        vae, coeffs = self.unpack(tokens)
        return self.decode(vae, coeffs)
