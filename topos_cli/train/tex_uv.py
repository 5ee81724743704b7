"""Training of the `learned` generate-tex method's UV network (models/uv_net.py) on the generic loop.

Data: a folder of `items/*.npz` written by scripts/build_tex_uv_data.py, each one synthetic portrait's
classical unwraps (through generate-geo's head: `geo_albedo`, `geo_coverage`; through the true head:
`true_albedo`, `true_coverage`) and its true albedo `truth`, float16 sRGB at DATA_SIZE². Sample i is a pure
function of (seed, i): which sample, which unwrap (generate-geo's with probability GEO_SHARE) and whether it
is mirrored through the template's UV mirror map (a mirrored face: the same head seen from the other side).
The target is the truth at the unwrap's level: one per-channel gain in linear light, fitted on the unwrap's
photo texels (the light's level is unobservable; the benchmark fits the same gain). Loss: L1 in sRGB on the
chart texels at DATA_SIZE² of `uv_net.compose(unwrap, its low-size copy, network output)`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from topos_cli.errors import UsageError
from topos_cli.models.uv_net import compose, downsample, uv_features
from topos_cli.pipelines.tex import linear_to_srgb, srgb_to_linear, template_assets
from topos_cli.pipelines.tex_learned import UVMaps, uv_maps

DATA_SIZE = 256  # the stored maps' side (scripts/build_tex_uv_data.py UV_SIZE)
GEO_SHARE = 0.65  # share of samples drawn from generate-geo's unwrap (the case the network is for); the rest
# from the true-mesh unwrap, so a well-fitting head's texture is not degraded
MIN_GAIN_TEXELS = 100  # fewer photo texels than this: the gain is fitted on all chart texels


def template_maps(template, size: int) -> UVMaps:
    """The network's template channels at `size` (see pipelines/tex_learned.uv_maps)."""
    return uv_maps(template_assets(template, size))


def aligned_truth(truth: np.ndarray, albedo: np.ndarray, coverage: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """The true sRGB albedo (S, S, 3) at the unwrap's level: per-channel linear gain on its photo texels."""
    t_lin, a_lin = srgb_to_linear(truth), srgb_to_linear(albedo)
    mask = covered & (coverage[..., 0] > 0.5)
    if mask.sum() < MIN_GAIN_TEXELS:
        mask = covered
    gain = np.median(a_lin[mask] / np.maximum(t_lin[mask], 1e-4), axis=0)
    return linear_to_srgb(t_lin * gain).astype(np.float32)


class UVPairs(torch.utils.data.Dataset):
    """Index-addressed (unwrap, aligned truth) pairs from a scripts/build_tex_uv_data.py folder.

    Args:
        root: the data folder (with items/*.npz).
        maps: template maps at DATA_SIZE (mirror and chart mask).
        seed: data seed.
        items: which item files (default: all, sorted); a held-out split passes its own.
    """

    def __init__(self, root: str | Path, maps: UVMaps, seed: int = 0, items: list[Path] | None = None):
        files = items if items is not None else sorted(Path(root).glob("items/*.npz"))
        if not files:
            raise UsageError(f"{root}: no items/*.npz here; build them with scripts/build_tex_uv_data.py")
        self.samples = [dict(np.load(f)) for f in files]
        self.mirror, self.covered, self.seed = maps.mirror.numpy(), maps.covered.numpy(), seed

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, index])
        sample = self.samples[index % len(self.samples)]
        kind = "geo" if "geo_albedo" in sample and rng.random() < GEO_SHARE else "true"
        albedo, coverage = sample[f"{kind}_albedo"], sample[f"{kind}_coverage"]
        truth = sample["truth"]
        if rng.random() < 0.5:  # the mirrored face
            s = albedo.shape[0]
            albedo, coverage, truth = (a.reshape(s * s, 3)[self.mirror].reshape(s, s, 3) for a in (albedo, coverage, truth))
        target = aligned_truth(truth, albedo, coverage, self.covered)

        def chw(a):
            return torch.from_numpy(np.ascontiguousarray(np.asarray(a, np.float32).transpose(2, 0, 1)))

        return {"albedo": chw(albedo), "coverage": chw(coverage), "target": chw(target)}


def uv_loss(net, batch: dict, maps_low: UVMaps, covered: torch.Tensor) -> dict[str, torch.Tensor]:
    """L1 (sRGB) of the composed albedo vs the aligned truth on chart texels; also the unwrap's own L1."""
    size = maps_low.covered.shape[0]
    low = downsample(batch["albedo"], size)  # (B, 3, s, s)
    features = uv_features(low, downsample(batch["coverage"], size), maps_low.static, maps_low.mirror)
    pred = compose(batch["albedo"], low, net(features), features)  # (B, 3, S, S)
    mask = covered[None, None].expand_as(pred)
    l1 = (pred - batch["target"]).abs()[mask].mean()
    with torch.no_grad():
        base = (batch["albedo"] - batch["target"]).abs()[mask].mean()
    return {"l1": l1, "unwrap_l1": base, "total": l1}


class TexUVTask:
    """What the generic loop (train/loop.py) needs: the model, its template and the loss of one batch."""

    name = "tex-uv"

    def __init__(self, model, template, data_size: int = DATA_SIZE):
        self.model, self.template, self.step = model, template, 0
        self.maps_low = template_maps(template, model.config.size)
        self.covered = template_maps(template, data_size).covered

    def to(self, device):
        self.maps_low = UVMaps(*(t.to(device) for t in (self.maps_low.static, self.maps_low.mirror,
                                                         self.maps_low.covered)))
        self.covered = self.covered.to(device)
        return self

    def loss(self, model, batch: dict, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        return uv_loss(model, batch, self.maps_low, self.covered)


@torch.no_grad()
def evaluate(model, data: UVPairs, task: TexUVTask, batch: int = 8) -> dict:
    """Mean chart-texel L1 of the network and of the unwrap over `data` (indices 0..len-1, geo and true mixed
    as drawn by seed)."""
    sums = {"l1": 0.0, "unwrap_l1": 0.0}
    for start in range(0, len(data), batch):
        items = [data[i] for i in range(start, min(start + batch, len(data)))]
        stacked = {k: torch.stack([it[k] for it in items]) for k in items[0]}
        terms = uv_loss(model, stacked, task.maps_low, task.covered)
        for k in sums:
            sums[k] += float(terms[k]) * len(items)
    return {k: round(v / len(data), 5) for k, v in sums.items()}
