"""Condition encoders of TOPOS-DiT: what the generator attends to through cross-attention.

- `CropCNN`: a small convolutional encoder trained from scratch on the face crop (faces/crop.py), its last
  feature map read as tokens (the shipped small model's image branch; no pretrained backbone ships offline).
- `LandmarkTokens`: the 478 face-mesh landmarks in the crop's normalised frame, one token per landmark.
- `FeatureTokens`: pre-computed backbone features (the paper's frozen DINOv2 ViT-L/14-with-registers tokens,
  see `Dinov2Features`), layer-normed and projected to the DiT width.
- `Dinov2Features`: a frozen transformers DINOv2-with-registers model wrapped as crop -> tokens; the model
  object comes from the caller (pipelines load it from a local folder), nothing here touches the disk.

`ConditionEncoder` combines the branches a config names ("crop", "landmarks", "crop+landmarks", "features").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

CONDITIONS = ("crop", "landmarks", "crop+landmarks", "features")
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # DINOv2's input normalisation
IMAGENET_STD = (0.229, 0.224, 0.225)


class CropCNN(nn.Module):
    """(B, 3, S, S) crop in [0, 1] -> (B, (S_in / 2^k)^2, W) tokens: k stride-2 stages of two 3x3 convs.

    Args:
        width: output token width.
        channels: channels per stage (one stride-2 stage each).
        input_size: the crop is area-resized to this side first (CPU budget; 64 keeps ~50 px of face).
    """

    def __init__(self, width: int, channels: tuple[int, ...] = (32, 64, 96, 128), input_size: int = 64):
        super().__init__()
        self.input_size = input_size
        layers, c_in = [], 3
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, 2, 1), nn.GroupNorm(8, c), nn.SiLU(),
                       nn.Conv2d(c, c, 3, 1, 1), nn.GroupNorm(8, c), nn.SiLU()]
            c_in = c
        self.convs = nn.Sequential(*layers)
        side = input_size // 2 ** len(channels)
        self.pos = nn.Parameter(torch.zeros(side * side, width))
        self.proj = nn.Linear(c_in, width)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, crop: torch.Tensor) -> torch.Tensor:
        if crop.shape[-1] != self.input_size:
            crop = F.interpolate(crop, size=(self.input_size, self.input_size), mode="area")
        feats = self.convs((crop - self.mean) / self.std)  # (B, C, s, s)
        return self.proj(feats.flatten(2).transpose(1, 2)) + self.pos  # (B, s*s, W)


class LandmarkTokens(nn.Module):
    """(B, L, D) normalised landmarks -> (B, M, W): an MLP of all coordinates at once, read out as M tokens.

    One token per landmark (478 keys in every cross-attention) cost 4-7x the training step of the crop CNN on
    this CPU; the landmarks are a rigid-ish configuration, so a joint MLP loses nothing a per-point embedding
    would keep.
    """

    def __init__(self, width: int, count: int = 478, dims: int = 2, tokens: int = 16, hidden: int = 256):
        super().__init__()
        self.dims, self.tokens, self.width = dims, tokens, width
        self.mlp = nn.Sequential(nn.Linear(count * dims, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, tokens * width))

    def forward(self, landmarks: torch.Tensor) -> torch.Tensor:
        flat = landmarks[..., : self.dims].flatten(1)  # (B, L*D)
        return self.mlp(flat).view(len(flat), self.tokens, self.width)  # (B, M, W)


class FeatureTokens(nn.Module):
    """(B, M, C) backbone tokens -> (B, M, W): LayerNorm (the paper layer-norms the DINOv2 tokens), Linear."""

    def __init__(self, width: int, feature_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(feature_dim)
        self.proj = nn.Linear(feature_dim, width)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(feats))


class ConditionEncoder(nn.Module):
    """The condition branches of one config, concatenated along the token axis.

    Args (forward):
        cond: {"crop": (B, 3, S, S) in [0, 1], "landmarks": (B, L, D)} or {"features": (B, M, C)}.
    Returns:
        (B, M_total, W) condition tokens.
    """

    def __init__(self, kind: str, width: int, *, cnn_channels: tuple[int, ...] = (32, 64, 96, 128),
                 cnn_input: int = 64, landmark_count: int = 478, landmark_dims: int = 2, landmark_tokens: int = 16,
                 feature_dim: int = 1024):
        super().__init__()
        if kind not in CONDITIONS:
            raise ValueError(f"unknown condition '{kind}'; known: {', '.join(CONDITIONS)}")
        self.kind = kind
        self.crop = CropCNN(width, cnn_channels, cnn_input) if "crop" in kind else None
        self.landmarks = LandmarkTokens(width, landmark_count, landmark_dims, landmark_tokens) if "landmarks" in kind else None
        self.features = FeatureTokens(width, feature_dim) if kind == "features" else None
        self.norm = nn.LayerNorm(width)

    def forward(self, cond: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = []
        if self.crop is not None:
            parts.append(self.crop(cond["crop"]))
        if self.landmarks is not None:
            parts.append(self.landmarks(cond["landmarks"]))
        if self.features is not None:
            parts.append(self.features(cond["features"]))
        return self.norm(torch.cat(parts, 1))  # (B, M, W)


class Dinov2Features(nn.Module):
    """Frozen DINOv2-with-registers backbone: (B, 3, S, S) crops in [0, 1] -> (B, 1 + R + P, C) last hidden states.

    Args:
        backbone: a transformers `Dinov2WithRegistersModel` (any size; the paper uses ViT-L/14, C = 1024).
        image_size: crops are resized to this side (a multiple of the patch size).
    """

    def __init__(self, backbone: nn.Module, image_size: int = 224):
        super().__init__()
        self.backbone = backbone.eval().requires_grad_(False)
        self.image_size = image_size
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def feature_dim(self) -> int:
        return int(self.backbone.config.hidden_size)

    @torch.no_grad()
    def forward(self, crop: torch.Tensor) -> torch.Tensor:
        crop = F.interpolate(crop, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return self.backbone(pixel_values=(crop - self.mean) / self.std).last_hidden_state  # (B, M, C)
