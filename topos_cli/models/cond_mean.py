"""The conditional mean of TOPOS-DiT's latent: a closed-form ridge regression from the face-mesh landmarks.

The small generator on a CPU budget learns E[latent | image] far slower than it learns the spread around it
(measured: a 3000-step flow model over 1,466 heads stayed at the mean head, while a ridge regression from the
same renders' 478 normalised landmarks (x, y, relative depth) cut the held-out face error after Procrustes by a
quarter). So the `small` config splits the job: `RidgeMean` predicts the normalised latent tokens from the
landmarks (fitted once, in closed form, on the training renders, then frozen as buffers of the checkpoint), and
the flow generates the residual around it (models/flow_dit.py `prior_mean`). Mediapipe's landmarks are biased
towards its own mean face; the regression learns that bias away, which a fit to the landmarks cannot.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

MIN_FEATURE_STD = 1e-6  # features constant over the training set (none expected) are left unscaled


class RidgeMean(nn.Module):
    """(B, L, D>=dims) landmarks -> (B, T, d) normalised latent tokens, a linear map fitted by `fit`.

    Args:
        landmark_count / dims: the landmarks it reads (the first `dims` coordinates of each).
        num_tokens / token_dim: the latent's token layout.
    """

    def __init__(self, landmark_count: int, dims: int, num_tokens: int, token_dim: int):
        super().__init__()
        self.dims, self.shape = dims, (num_tokens, token_dim)
        features, outputs = landmark_count * dims, num_tokens * token_dim
        self.register_buffer("x_mean", torch.zeros(features))
        self.register_buffer("x_std", torch.ones(features))
        self.register_buffer("weight", torch.zeros(features, outputs))
        self.register_buffer("bias", torch.zeros(outputs))
        # covariance of what the regression gets wrong on held-out renders (normalised tokens; zeros: not measured);
        # a later fit to the photo moves the head along it (geometry/shape_prior.covariance_basis)
        self.register_buffer("residual_cov", torch.zeros(outputs, outputs))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "residual_cov"  # checkpoints written before it existed: not measured
        if key not in state_dict:
            state_dict[key] = torch.zeros_like(self.residual_cov)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def features(self, landmarks: torch.Tensor) -> torch.Tensor:
        return landmarks[..., : self.dims].flatten(1)

    def forward(self, landmarks: torch.Tensor) -> torch.Tensor:
        x = (self.features(landmarks) - self.x_mean) / self.x_std
        return (x @ self.weight + self.bias).view(len(x), *self.shape)

    @torch.no_grad()
    def fit(self, landmarks: np.ndarray, tokens: np.ndarray, lam: float, held_out: tuple | None = None) -> dict:
        """Least squares with a ridge `lam` on standardised features; returns the fit's R^2 on its data.

        Args:
            landmarks: (N, L, D) training landmarks. tokens: (N, T, d) their normalised target tokens.
            held_out: (landmarks, tokens) of renders the fit does not see: their residuals' covariance is stored
                (`residual_cov`); None stores the training residuals' (optimistic: the fit has seen them).
        """
        x = np.asarray(landmarks, np.float64)[..., : self.dims].reshape(len(landmarks), -1)
        y = np.asarray(tokens, np.float64).reshape(len(tokens), -1)
        x_mean, x_std = x.mean(0), x.std(0)
        x_std = np.where(x_std < MIN_FEATURE_STD, 1.0, x_std)
        xn = (x - x_mean) / x_std
        y_mean = y.mean(0)
        gram = xn.T @ xn + lam * np.eye(xn.shape[1])
        weight = np.linalg.solve(gram, xn.T @ (y - y_mean))
        for buf, value in ((self.x_mean, x_mean), (self.x_std, x_std), (self.weight, weight), (self.bias, y_mean)):
            buf.copy_(torch.from_numpy(value.astype(np.float32)))
        resid = y - y_mean - xn @ weight
        report = {"r2": float(1.0 - resid.var(0).sum() / max(y.var(0).sum(), 1e-12)), "samples": len(x)}
        if held_out is not None and len(held_out[0]):
            resid = self.residuals(*held_out)
            report["held_out_samples"] = len(resid)
        report["residual_rms"] = self.store_residual_cov(resid)
        return report

    @torch.no_grad()
    def store_residual_cov(self, resid: np.ndarray) -> float:
        """Keep the covariance of (N, T*d) residuals (`residuals`) as `residual_cov`; returns their RMS norm."""
        self.residual_cov.copy_(torch.from_numpy((resid.T @ resid / max(len(resid), 1)).astype(np.float32)))
        return float(np.sqrt((resid ** 2).sum(1).mean()))

    @torch.no_grad()
    def residuals(self, landmarks: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        """(N, T*d) float64 target minus prediction (normalised tokens)."""
        pred = self(torch.as_tensor(np.asarray(landmarks, np.float32))).flatten(1).double().numpy()
        return np.asarray(tokens, np.float64).reshape(len(tokens), -1) - pred
