"""The conditional mean of TOPOS-DiT's latent: a closed-form ridge regression from the face-mesh landmarks.

The small generator on a CPU budget learns E[latent | image] far slower than it learns the spread around it
(measured: a 3000-step flow model over 1,466 heads stayed at the mean head, while a ridge regression from the
same renders' 478 normalised landmarks (x, y, relative depth) cut the held-out face error after Procrustes by a
quarter). So the `small` config splits the job: `RidgeMean` predicts the normalised latent tokens from the
landmarks (fitted once, in closed form, on the training renders, then frozen as buffers of the checkpoint), and
the flow generates the residual around it (models/flow_dit.py `prior_mean`). Mediapipe's landmarks are biased
towards its own mean face; the regression learns that bias away, which a fit to the landmarks cannot.

With `frontal`, each landmark set is first moved by the similarity (Umeyama: rotation, scale, translation) that
best maps it onto the training mean, so head yaw and pitch, which the crop's 2D similarity leaves in, no longer
enter a linear map as shape (measured on the 60 held-out benchmark portraits: face error after Procrustes 0.4991 ->
0.4927 %, head 0.9313 -> 0.9140 %, same data and ridge).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

MIN_FEATURE_STD = 1e-6  # features constant over the training set (none expected) are left unscaled


def frontalize(points: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """(B, L, 3) point sets, each moved by the similarity that best maps it onto `ref` (L, 3), centred.

    Least squares over rotation (no reflection), uniform scale and translation (Umeyama); `ref` must be centred.
    A degenerate set (all points equal, e.g. zeros for "no face") maps to zeros.
    """
    centred = points - points.mean(1, keepdim=True)
    u, s, vh = torch.linalg.svd(centred.transpose(1, 2) @ ref)
    sign = torch.where(torch.linalg.det(u @ vh) < 0, -1.0, 1.0).to(points.dtype)
    diag = torch.stack([torch.ones_like(sign), torch.ones_like(sign), sign], -1)  # (B, 3)
    rot = u @ (diag[..., None] * vh)
    scale = (s * diag).sum(-1) / centred.pow(2).sum((1, 2)).clamp_min(1e-12)
    return scale[:, None, None] * centred @ rot


class RidgeMean(nn.Module):
    """(B, L, D>=dims) landmarks -> (B, T, d) normalised latent tokens, a linear map fitted by `fit`.

    Args:
        landmark_count / dims: the landmarks it reads (the first `dims` coordinates of each).
        num_tokens / token_dim: the latent's token layout.
        frontal: read the landmarks after `frontalize` onto the training mean (needs dims 3).
    """

    def __init__(self, landmark_count: int, dims: int, num_tokens: int, token_dim: int, frontal: bool = False):
        super().__init__()
        if frontal and dims != 3:
            raise ValueError("frontalised ridge features need 3 landmark coordinates (x, y, depth)")
        self.dims, self.shape, self.frontal = dims, (num_tokens, token_dim), frontal
        features, outputs = landmark_count * dims, num_tokens * token_dim
        self.register_buffer("x_mean", torch.zeros(features))
        self.register_buffer("x_std", torch.ones(features))
        self.register_buffer("weight", torch.zeros(features, outputs))
        self.register_buffer("bias", torch.zeros(outputs))
        # covariance of what the regression gets wrong on held-out renders (normalised tokens; zeros: not measured);
        # a later fit to the photo moves the head along it (geometry/shape_prior.covariance_basis)
        self.register_buffer("residual_cov", torch.zeros(outputs, outputs))
        if frontal:  # the centred mean of the training landmarks (set by `fit`)
            self.register_buffer("frontal_ref", torch.zeros(landmark_count, dims))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "residual_cov"  # checkpoints written before it existed: not measured
        if key not in state_dict:
            state_dict[key] = torch.zeros_like(self.residual_cov)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def features(self, landmarks: torch.Tensor) -> torch.Tensor:
        points = landmarks[..., : self.dims]
        if self.frontal:
            points = frontalize(points, self.frontal_ref.to(points.dtype))
        return points.flatten(1)

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
        points = torch.from_numpy(np.asarray(landmarks, np.float64)[..., : self.dims])
        if self.frontal:
            ref = points.mean(0)
            self.frontal_ref.copy_(ref - ref.mean(0))
        x = self.features(points).numpy()
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
