"""LPIPS (Zhang et al. 2018, v0.1) on AlexNet features, in pure torch (no torchvision).

Parameter names follow torchvision's `alexnet` (`features.0.weight`, `features.3.weight`, ...), so its
ImageNet checkpoint (`alexnet-owt-7be5be79.pth`) loads as is; the five 1x1 linear heads use the names of
the `lpips` package's `weights/v0.1/alex.pth` (`lin0.model.1.weight`, ...).
"""

from __future__ import annotations

import torch
from torch import nn

CHANNELS = (64, 192, 384, 256, 256)
TAPS = (1, 4, 7, 9, 11)  # indices in `features` of the ReLUs whose outputs LPIPS compares


class AlexFeatures(nn.Module):
    """torchvision's AlexNet `features` stack, same layer indices."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),  # 0
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),  # 3
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),  # 6
            nn.ReLU(inplace=False),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),  # 8
            nn.ReLU(inplace=False),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),  # 10
            nn.ReLU(inplace=False),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) normalised images -> the five tapped ReLU activations."""
        taps, x = [], images
        for i, layer in enumerate(self.features[: TAPS[-1] + 1]):
            x = layer(x)
            if i in TAPS:
                taps.append(x)
        return taps


class _Head(nn.Module):
    """The lpips package's NetLinLayer layout: model = [Dropout, Conv1x1] (dropout is a no-op at eval)."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x):
        return self.model(x)


class LPIPSAlex(nn.Module):
    """LPIPS distance between image pairs; inputs (B, 3, H, W) in [-1, 1], output (B,)."""

    def __init__(self):
        super().__init__()
        self.net = AlexFeatures()
        self.lins = nn.ModuleList([_Head(c) for c in CHANNELS])
        self.register_buffer(
            "shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)

    def load_alexnet(self, state: dict) -> None:
        """Load torchvision AlexNet weights (classifier entries are ignored); strict on `features.*`."""
        feats = {k: v for k, v in state.items() if k.startswith("features.")}
        self.net.load_state_dict(feats, strict=True)

    def load_heads(self, state: dict) -> None:
        """Load the lpips package's v0.1 linear heads (`lin{i}.model.1.weight`)."""
        mapped = {k.replace("lin", "", 1): v for k, v in state.items()}
        self.lins.load_state_dict(mapped, strict=True)

    def forward(self, img0: torch.Tensor, img1: torch.Tensor) -> torch.Tensor:
        f0 = self.net((img0 - self.shift) / self.scale)
        f1 = self.net((img1 - self.shift) / self.scale)
        total = 0.0
        for a, b, lin in zip(f0, f1, self.lins, strict=True):
            diff = (_unit(a) - _unit(b)) ** 2  # (B, C, h, w)
            total = total + lin(diff).mean(dim=(2, 3))  # (B, 1)
        return total[:, 0]


def _unit(x: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Unit-normalise along channels (LPIPS normalize_tensor)."""
    return x / (torch.sqrt((x**2).sum(dim=1, keepdim=True)) + eps)
