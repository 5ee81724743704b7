"""TOPOS-DiT training task (paper §3.2): rectified-flow loss on normalised latent tokens.

x_t = t x_data + (1 - t) noise with t = sigmoid(N(0, 1)) (logit-normal: most steps near t = 0.5, where the
velocity is hardest to predict); target velocity x_data - noise; mean squared error. The condition is replaced
by the learned null condition with probability `cond_dropout` (classifier-free guidance). Optimisation is the
generic loop's (train/loop.py): AdamW, warm-up then the VAE's polynomial decay, EMA weights for inference.
"""

from __future__ import annotations

import torch


def logit_normal(count: int, generator: torch.Generator | None, device, mean: float = 0.0,
                 std: float = 1.0) -> torch.Tensor:
    """(count,) times t = sigmoid(N(mean, std^2)) in (0, 1)."""
    return torch.sigmoid(mean + std * torch.randn(count, generator=generator, device=device))


def flow_loss(net, tokens: torch.Tensor, cond: dict[str, torch.Tensor], generator: torch.Generator | None,
              cond_dropout: float) -> dict[str, torch.Tensor]:
    """Rectified-flow loss of one batch.

    Args:
        net: FlowDiT (or its DDP wrapper): net(latents, t, cond, drop) -> velocity.
        tokens: (B, T, d) normalised target latents.
        cond: condition inputs (see FlowDiT.encode_condition).
        generator: source of noise, times and condition dropout.
        cond_dropout: probability of the null condition per sample.
    Returns:
        {"flow": mse, "total": mse}.
    """
    bsz = len(tokens)
    noise = torch.randn(tokens.shape, generator=generator, device=tokens.device, dtype=tokens.dtype)
    t = logit_normal(bsz, generator, tokens.device).to(tokens.dtype)
    drop = torch.rand(bsz, generator=generator, device=tokens.device) < cond_dropout
    x_t = t[:, None, None] * tokens + (1 - t[:, None, None]) * noise  # (B, T, d)
    pred = net(x_t, t, cond, drop)
    mse = (pred.float() - (tokens - noise).float()).square().mean()
    return {"flow": mse, "total": mse}


class FlowTask:
    """What the generic loop needs for TOPOS-DiT: the model, its template and the loss of one batch.

    Batches hold "tokens" (B, T, d) normalised latents plus the condition inputs ("crop" (B, 3, S, S) in
    [0, 1], "landmarks" (B, L, D)). With a frozen `backbone` (models/image_cond.Dinov2Features; the paper
    config) the crop is turned into its "features" tokens here, without gradients.
    """

    name = "flow-dit"

    def __init__(self, model, template, backbone=None):
        self.model, self.template, self.backbone, self.step = model, template, backbone, 0

    def to(self, device):
        if self.backbone is not None:
            self.backbone.to(device)
        return self

    def loss(self, model, batch: dict, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        cond = {k: v for k, v in batch.items() if k != "tokens"}
        tokens, mean = batch["tokens"], self.model.prior_mean(cond)
        if mean is not None:  # the flow learns the residual around the landmark regression
            tokens = tokens - mean.to(tokens.dtype)
        if self.backbone is not None:
            cond = {"features": self.backbone(cond.pop("crop")), **cond}
        return flow_loss(model, tokens, cond, generator, self.model.config.cond_dropout)


def latent_targets(latent, neutral, cache_dir=None, vae_key: str = "", seed: int = 0):
    """(H, T, d) float32 packed (unnormalised) target latents of neutral heads (H, V, 3).

    VAE encodings are the slow part: with `cache_dir` they are stored once per VAE (`vae_key` names it).
    """
    import hashlib
    from pathlib import Path

    import numpy as np

    neutral = np.asarray(neutral, np.float32)
    path = None
    if cache_dir is not None and latent.vae is not None:  # the bases-only latent is one matrix product
        tag = hashlib.sha256(f"{vae_key}:{latent.kind}:{len(neutral)}:{seed}".encode()).hexdigest()[:12]
        path = Path(cache_dir) / f"latents-{tag}.npy"
        if path.is_file():
            return np.load(path)
    tokens = latent.pack(latent.encode(neutral, seed=seed))
    if path is not None:
        np.save(path, tokens)
    return tokens


def token_stats(tokens, min_std: float = 1e-4):
    """Per-element mean and std (T, d) of training tokens (B, T, d); constant elements (padding) get std 1."""
    import numpy as np

    mean, std = tokens.mean(0), tokens.std(0)
    return mean.astype(np.float32), np.where(std < min_std, 1.0, std).astype(np.float32)
