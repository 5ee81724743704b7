"""metrics/image and models/lpips_alex: PSNR/SSIM by hand, FID/KID properties, LPIPS and the weights paths."""

from __future__ import annotations

import numpy as np
import pytest

from topos_cli.errors import MissingWeights
from topos_cli.metrics.image import (
    fid_from_features,
    frechet_distance,
    kid_from_features,
    polynomial_mmd2_unbiased,
    psnr,
    run_image_metrics,
    ssim,
)


def test_psnr_by_hand_and_with_mask():
    gt = np.zeros((8, 8, 3))
    pred = np.full((8, 8, 3), 0.1)
    assert psnr(pred, gt) == pytest.approx(20.0)  # MSE 0.01
    pred[:4] = 0.0
    mask = np.zeros((8, 8), bool)
    mask[4:] = True
    assert psnr(pred, gt, mask) == pytest.approx(20.0)  # only the wrong half counts
    assert psnr(pred, gt) == pytest.approx(10 * np.log10(1 / 0.005))
    assert psnr(gt, gt) == 100.0  # capped: identical images


def test_ssim_identical_and_constant_images():
    rng = np.random.default_rng(0)
    img = rng.random((32, 32, 3))
    assert ssim(img, img) == pytest.approx(1.0)
    a, b = np.full((32, 32, 3), 0.2), np.full((32, 32, 3), 0.6)
    c1 = 0.01**2
    assert ssim(a, b) == pytest.approx((2 * 0.2 * 0.6 + c1) / (0.2**2 + 0.6**2 + c1))
    assert ssim(img, 1 - img) < ssim(img, np.clip(img + 0.05, 0, 1))


def test_ssim_matches_scikit_image_when_installed():
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(1)
    a = rng.random((40, 48, 3))
    b = np.clip(a + 0.1 * rng.normal(size=a.shape), 0, 1)
    ref = metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                        data_range=1.0, channel_axis=-1)
    assert ssim(a, b) == pytest.approx(ref, abs=1e-9)


def test_frechet_distance_closed_form_and_self():
    mu1, mu2 = np.array([0.0, 1.0]), np.array([3.0, -1.0])
    c1, c2 = np.diag([4.0, 1.0]), np.diag([1.0, 9.0])
    # commuting covariances: Tr(C1 + C2 - 2 sqrt(C1 C2)) = sum (sqrt(l1) - sqrt(l2))^2
    expected = 9 + 4 + (2 - 1) ** 2 + (1 - 3) ** 2
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(expected)
    feats = np.random.default_rng(0).normal(size=(200, 16))
    assert abs(fid_from_features(feats, feats)) < 1e-6


def test_kid_kernel_by_brute_force_and_unbiasedness():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(4, 3))

    def k(a, b):
        return (a @ b / 3 + 1) ** 3

    xx = sum(k(x[i], x[j]) for i in range(5) for j in range(5) if i != j) / 20
    yy = sum(k(y[i], y[j]) for i in range(4) for j in range(4) if i != j) / 12
    xy = sum(k(a, b) for a in x for b in y) / 20
    assert polynomial_mmd2_unbiased(x, y) == pytest.approx(xx + yy - 2 * xy)
    # same distribution: the unbiased estimate averages to 0 (a biased one would stay clearly positive)
    vals = [polynomial_mmd2_unbiased(rng.normal(size=(10, 4)), rng.normal(size=(10, 4))) for _ in range(400)]
    assert abs(np.mean(vals)) < 3 * np.std(vals) / np.sqrt(len(vals))
    shifted = [polynomial_mmd2_unbiased(rng.normal(size=(10, 4)), rng.normal(1.0, 1, size=(10, 4)))
               for _ in range(50)]
    assert np.mean(shifted) > 10 * np.std(vals) / np.sqrt(len(vals))
    mean, std = kid_from_features(rng.normal(size=(30, 4)), rng.normal(size=(40, 4)), rng, subsets=10, subset_size=20)
    assert std > 0 and abs(mean) < 1.0


def test_lpips_alexnet_names_and_properties():
    import torch

    from topos_cli.models.lpips_alex import LPIPSAlex

    torch.manual_seed(0)
    model = LPIPSAlex().eval()
    names = [k for k in model.state_dict() if k.startswith("net.")]
    assert names == [f"net.features.{i}.{p}" for i in (0, 3, 6, 8, 10) for p in ("weight", "bias")]
    # torchvision-format state dicts load (classifier entries ignored), lpips-package head names too
    tv = {k[len("net."):]: torch.randn_like(v) for k, v in model.state_dict().items() if k.startswith("net.")}
    tv["classifier.1.weight"] = torch.zeros(2, 2)  # any classifier entry is ignored
    model.load_alexnet(tv)
    assert torch.equal(model.net.features[0].weight, tv["features.0.weight"])
    model.load_heads({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 192, 384, 256, 256))})
    a, b = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        same, ab, ba = model(a, a), model(a, b), model(b, a)
    assert torch.allclose(same, torch.zeros(2)) and (ab > 0).all() and torch.allclose(ab, ba)


def test_lpips_heads_from_the_lpips_package_when_installed():
    import importlib.util

    import torch

    if importlib.util.find_spec("lpips") is None:
        pytest.skip("lpips not installed (pip install --no-deps lpips)")
    from topos_cli.metrics.image import lpips_heads_path
    from topos_cli.models.lpips_alex import LPIPSAlex

    LPIPSAlex().load_heads(torch.load(lpips_heads_path(None), map_location="cpu", weights_only=True))


def _write_images(folder, count, seed, size=24):
    from topos_cli.io.image import write_png

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        write_png(folder / f"im{i}.png", (rng.random((size, size, 3)) * 255).astype(np.uint8))


def test_missing_weights_name_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv("TOPOS_WEIGHTS", raising=False)
    _write_images(tmp_path / "a", 2, 0)
    for metric, name in (("lpips", "alexnet-owt-7be5be79.pth"), ("fid", "inception-2015-12-05.pt"),
                         ("csim", "arcface.onnx")):
        with pytest.raises(MissingWeights, match=name):
            run_image_metrics(tmp_path / "a", tmp_path / "a", weights_dir=tmp_path, select=[metric])


def test_fid_kid_with_a_tiny_torchscript_extractor(tmp_path):
    import torch

    class Tiny(torch.nn.Module):  # stands in for the Inception TorchScript: same call signature
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3)

        def forward(self, x: torch.Tensor, return_features: bool = True) -> torch.Tensor:
            return self.conv(x / 255.0).mean(dim=(2, 3))

    torch.manual_seed(0)
    torch.jit.script(Tiny()).save(str(tmp_path / "inception-2015-12-05.pt"))
    _write_images(tmp_path / "a", 12, 0)
    _write_images(tmp_path / "b", 12, 1)
    same = run_image_metrics(tmp_path / "a", tmp_path / "a", weights_dir=tmp_path, select=["fid", "kid", "psnr"])
    assert abs(same["set"]["fid"]) < 1e-6 and same["set"]["kid_std"] == 0.0
    assert same["summary"]["psnr"]["mean"] == 100.0
    diff = run_image_metrics(tmp_path / "a", tmp_path / "b", weights_dir=tmp_path, select=["fid"])
    assert diff["set"]["fid"] > 0


def test_csim_with_a_tiny_onnx_model(tmp_path):
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 5, stride=4), torch.nn.Flatten(), torch.nn.LazyLinear(16))
    net(torch.zeros(1, 3, 112, 112))
    torch.onnx.export(net, torch.zeros(1, 3, 112, 112), str(tmp_path / "arcface.onnx"), input_names=["x"],
                      dynamo=False)
    _write_images(tmp_path / "a", 2, 0, size=112)
    _write_images(tmp_path / "b", 2, 1, size=112)
    same = run_image_metrics(tmp_path / "a", tmp_path / "a", weights_dir=tmp_path, select=["csim"])
    assert same["summary"]["csim"]["mean"] == pytest.approx(1.0)
    other = run_image_metrics(tmp_path / "a", tmp_path / "b", weights_dir=tmp_path, select=["csim"])
    assert other["summary"]["csim"]["mean"] < 1.0
