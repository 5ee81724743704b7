"""`topos generate-tex --method learned`: the classical unwrap corrected by the UV network (models/uv_net.py).

    corrector = LearnedCorrector.from_pretrained(None, template)   # the shipped tex-uv-small
    albedo = corrector(unwrap.albedo, unwrap.coverage, template_assets(template, corrector.size))

The network runs on the unwrap area-downsampled to its size (128²) and returns a smooth colour correction and a
detail gate; `uv_net.compose` applies both to the full-size albedo (the unwrap's fine detail is kept where the
network trusts it). `TexturePipeline` (pipelines/tex.py) re-derives the roughness and specular maps from the
corrected albedo; the normal map and the coverage stay the unwrap's. Weights only from a local checkpoint folder (model.json + model.safetensors).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from topos_cli.errors import MissingWeights

if TYPE_CHECKING:
    import torch

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "assets" / "checkpoints" / "tex-uv-small"


@dataclass
class UVMaps:
    """Template channels at one size, as tensors: static (1, 6, S, S), mirror (S*S,) int64 (itself where
    none), covered (S, S) bool."""

    static: torch.Tensor
    mirror: torch.Tensor
    covered: torch.Tensor


def uv_maps(assets) -> UVMaps:
    """The network's template channels from `pipelines.tex.template_assets` at the network's size: the default
    skin in sRGB, the chart mask, u, v, and the mirror map (texels without a mirror map to themselves)."""
    import torch

    from topos_cli.models.uv_net import static_channels
    from topos_cli.render.shading import linear_to_srgb

    covered = torch.from_numpy(np.asarray(assets.raster.covered, bool))
    mirror = assets.mirror.copy()
    none = mirror < 0
    mirror[none] = np.flatnonzero(none)
    prior = linear_to_srgb(torch.from_numpy(np.asarray(assets.prior, np.float32)))
    return UVMaps(static_channels(prior, covered), torch.from_numpy(mirror), covered)


class LearnedCorrector:
    """A loaded tex-uv network (eval mode): `(albedo, coverage, assets at config.size) -> corrected albedo`."""

    def __init__(self, model):
        self.model = model
        self.size = model.config.size

    @classmethod
    def from_pretrained(cls, weights: str | Path | None, template) -> LearnedCorrector:
        """Load from a checkpoint folder (default: the shipped tex-uv-small); missing or corrupt: MissingWeights."""
        from topos_cli.io.checkpoint import load_checkpoint

        path = Path(weights) if weights is not None else DEFAULT_WEIGHTS
        if not (path / "model.json").is_file() and not (path / "latest").is_file():
            raise MissingWeights(f"--method learned needs the tex-uv checkpoint (model.json + model.safetensors) in "
                                 f"{path}; train one with scripts/train_tex_uv.py or use --method unwrap")
        try:
            ckpt = load_checkpoint(path, template)
        except MissingWeights:
            raise
        except Exception as exc:  # noqa: BLE001 - an unreadable file of any kind is the same user problem
            raise MissingWeights(f"{path}: the tex-uv checkpoint cannot be read ({type(exc).__name__}); replace "
                                 "model.json / model.safetensors or use --method unwrap") from None
        if ckpt.meta.get("name") != "tex-uv":
            raise MissingWeights(f"{path} holds a '{ckpt.meta.get('name')}' checkpoint, not tex-uv")
        return cls(ckpt.model)

    def __call__(self, albedo: np.ndarray, coverage: np.ndarray, assets) -> np.ndarray:
        """The corrected albedo.

        Args:
            albedo: (S, S, 3) the unwrap's sRGB albedo in [0, 1] (any S).
            coverage: (S, S, 3) its photo / mirrored / completed shares.
            assets: `pipelines.tex.template_assets(template, self.size)`.
        Returns:
            (S, S, 3) float64 sRGB in [0, 1].
        """
        import torch

        from topos_cli.models.uv_net import compose, downsample, uv_features

        maps = uv_maps(assets)
        full = torch.from_numpy(np.ascontiguousarray(albedo.transpose(2, 0, 1), np.float32))[None]  # (1, 3, S, S)
        cover = torch.from_numpy(np.ascontiguousarray(coverage.transpose(2, 0, 1), np.float32))[None]
        low = downsample(full, self.size)  # (1, 3, s, s)
        with torch.no_grad():
            features = uv_features(low, downsample(cover, self.size), maps.static, maps.mirror)
            return compose(full, low, self.model(features), features)[0].permute(1, 2, 0).double().numpy()
