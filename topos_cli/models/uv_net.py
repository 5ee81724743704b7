"""UV-space correction network of `topos generate-tex --method learned` (registry name "tex-uv").

A small UNet on the classical unwrap at a low UV size (`config.size`, e.g. 128²). Inputs per texel: the
unwrap's sRGB albedo and coverage shares (photo, mirrored, completed), the same at the mirror texel (the other
side of the face), the face's skin colour (photo-weighted mean, broadcast), and fixed template channels (the
default skin in sRGB, the chart mask, u and v). Outputs: a colour correction (added to the low-size albedo)
and two gates in [0, 1]: b blends the low-size albedo toward the face's skin colour, k keeps the unwrap's
fine detail. `compose` applies them to the full-size unwrap:
up(low + b * (skin - low) + correction) + up(k) * (full - up(low)), so the correction is smooth, unreliable
texels can fall back to the skin colour in one multiplicative step (what the constant colour does well on
generate-geo's heads), and the fine detail is kept where the network trusts it (k ~ 1: photo texels on a
well-fitting head) and dropped where it is misregistered shading or features (k ~ 0). The last layer is
zero-initialised: an untrained network returns the half-way blend (k = b = 0.5).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

STATIC_CHANNELS = 6  # default skin sRGB (3), chart mask, u, v
PHOTO_CHANNELS = 3 + 3 + 3 + 1 + 3  # albedo, coverage; the mirror texel's albedo and photo share; the face's skin
# colour (the photo-weighted mean albedo over the charts, the same at every texel: what completed texels tend to)
DETAIL_BIAS = 0.0  # initial gate logits: both gates start at 0.5, where their sigmoid has the most gradient
BLEND_BIAS = 0.0  # (half the unwrap, half the skin colour beat both on generate-geo's heads in the training data:
# chart-texel L1 0.0148 vs 0.0190 (unwrap) and 0.0139 (the truth's median colour, an oracle) on 60 samples)
SKIN = 10  # index of the skin colour's 3 channels in the features (after albedo, coverage, mirror texel)
OUT_CHANNELS = 5  # correction (3), detail-gate logit, skin-blend logit


@dataclass
class UVNetConfig:
    """Constructor arguments of UVNet (the checkpoint's `args`)."""

    size: int = 128  # UV side the network runs at (the unwrap is area-downsampled to it)
    widths: tuple[int, ...] = (16, 32, 64, 96)  # channels per level, fine -> coarse (each level halves the side)
    groups: int = 8  # GroupNorm groups

    def to_dict(self) -> dict:
        out = asdict(self)
        out["widths"] = list(self.widths)
        return out


class ConvBlock(nn.Module):
    """Two 3x3 convolutions with GroupNorm and SiLU."""

    def __init__(self, cin: int, cout: int, groups: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(min(groups, cout), cout), nn.SiLU(),
                                  nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(min(groups, cout), cout), nn.SiLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class UVNet(nn.Module):
    """Args: config; template (unused: the UV layout enters through the static channels; kept for the registry)."""

    def __init__(self, config: UVNetConfig, template=None):
        super().__init__()
        self.config = cfg = config
        widths = list(cfg.widths)
        self.down = nn.ModuleList()
        cin = PHOTO_CHANNELS + STATIC_CHANNELS
        for w in widths:
            self.down.append(ConvBlock(cin, w, cfg.groups))
            cin = w
        self.glob = nn.Linear(widths[-1], widths[-1])  # the whole map's mean features, added at the coarsest level
        self.up = nn.ModuleList(ConvBlock(widths[i + 1] + widths[i], widths[i], cfg.groups)
                                for i in reversed(range(len(widths) - 1)))
        self.head = nn.Conv2d(widths[0], OUT_CHANNELS, 1)
        nn.init.zeros_(self.head.weight)
        with torch.no_grad():
            self.head.bias.copy_(torch.tensor([0.0, 0.0, 0.0, DETAIL_BIAS, BLEND_BIAS]))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, PHOTO_CHANNELS + STATIC_CHANNELS, S, S) features -> (B, OUT_CHANNELS, S, S) (see `compose`)."""
        skips = []
        x = features
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.avg_pool2d(x, 2))  # (B, w_i, S / 2^i, S / 2^i)
            skips.append(x)
        x = x + self.glob(x.mean((2, 3)))[:, :, None, None]  # (B, w_last, s, s): global context (lighting, skin)
        for block, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1))  # (B, w_i, ...)
        return self.head(x)


def uv_features(albedo: torch.Tensor, coverage: torch.Tensor, static: torch.Tensor,
                mirror: torch.Tensor) -> torch.Tensor:
    """The network's input at its size.

    Args:
        albedo: (B, 3, S, S) the unwrap's sRGB albedo in [0, 1].
        coverage: (B, 3, S, S) photo / mirrored / completed shares.
        static: (1 or B, STATIC_CHANNELS, S, S) template channels (`static_channels`; channel 3 the chart mask).
        mirror: (S*S,) int64 mirror texel of each texel (itself where none).
    Returns:
        (B, PHOTO_CHANNELS + STATIC_CHANNELS, S, S).
    """
    bsz, _, s, _ = albedo.shape
    mirrored = torch.cat([albedo, coverage[:, :1]], 1).flatten(2)[:, :, mirror].reshape(bsz, 4, s, s)
    seen = coverage[:, :1] * static[:, 3:4]  # (B, 1, s, s) photo share on the charts
    skin = (albedo * seen).sum((2, 3), keepdim=True) / seen.sum((2, 3), keepdim=True).clamp_min(1e-6)  # (B, 3, 1, 1)
    return torch.cat([albedo, coverage, mirrored, skin.expand(-1, -1, s, s), static.expand(bsz, -1, -1, -1)], 1)


def static_channels(prior_srgb: torch.Tensor, covered: torch.Tensor) -> torch.Tensor:
    """(1, STATIC_CHANNELS, S, S) from the default skin (S, S, 3) sRGB and the chart mask (S, S) bool."""
    s = covered.shape[0]
    v, u = torch.meshgrid(torch.linspace(1, 0, s), torch.linspace(0, 1, s), indexing="ij")  # row 0 = v 1
    return torch.cat([prior_srgb.permute(2, 0, 1).float(), covered[None].float(), u[None], v[None]], 0)[None]


def compose(full: torch.Tensor, low: torch.Tensor, out: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Apply the network's output to the full-size unwrap.

    Args:
        full: (B, 3, H, H) the unwrap's sRGB albedo at its own size.
        low: (B, 3, S, S) the same, area-downsampled to the network's size (its input).
        out: (B, OUT_CHANNELS, S, S) the network's output.
        features: (B, C, S, S) its input (`uv_features`: the skin colour).
    Returns:
        (B, 3, H, H) corrected sRGB albedo, clipped to [0, 1].
    """
    size = full.shape[-2:]

    def up(t):
        return F.interpolate(t, size=size, mode="bilinear", align_corners=False)

    detail, blend = torch.sigmoid(out[:, 3:4]), torch.sigmoid(out[:, 4:5])  # (B, 1, S, S) each
    skin = features[:, SKIN:SKIN + 3, :1, :1]  # (B, 3, 1, 1)
    return (up(low + blend * (skin - low) + out[:, :3]) + up(detail) * (full - up(low))).clamp(0, 1)


def downsample(img: torch.Tensor, size: int) -> torch.Tensor:
    """(B, C, H, H) -> (B, C, size, size) area average (H a multiple of size)."""
    return img if img.shape[-1] == size else F.adaptive_avg_pool2d(img, size)
