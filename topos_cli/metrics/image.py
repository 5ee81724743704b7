"""Image metrics: PSNR, SSIM, LPIPS-AlexNet, FID, KID and CSIM, with weights only from local files.

Conventions (README "Image metrics"): images are RGB floats in [0, 1] (8-bit and 16-bit files are scaled,
alpha dropped, grey expanded); pairs share a size. A mask (white = use) restricts PSNR/SSIM to its pixels.
Nothing is downloaded: a metric whose weights file is absent raises MissingWeights naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from scipy import linalg
from scipy.ndimage import gaussian_filter

from topos_cli.errors import MissingWeights, UsageError

WEIGHT_FILES = {
    "alexnet": "alexnet-owt-7be5be79.pth",  # torchvision's ImageNet AlexNet (LPIPS backbone)
    "lpips_heads": "lpips_alex_v0.1.pth",  # the lpips package's weights/v0.1/alex.pth (else taken from the package)
    "inception": "inception-2015-12-05.pt",  # TorchScript Inception-v3 of the FID reference (clean-fid/StyleGAN)
    "arcface": "arcface.onnx",  # any ArcFace ONNX: (1, 3, 112, 112) RGB in [-1, 1] -> (1, D) embedding
}
ALL_METRICS = ("psnr", "ssim", "lpips", "fid", "kid", "csim")


# ------------------------------------------------------------------------------------------------ pure maths
PSNR_CAP = 100.0  # dB reported for identical images (keeps means finite and JSON valid)


def psnr(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB over all channels (and the mask's pixels), capped at 100 dB."""
    err = (np.asarray(pred, np.float64) - np.asarray(gt, np.float64)) ** 2
    if mask is not None:
        err = err[np.asarray(mask, bool)]
    mse = float(err.mean())
    return PSNR_CAP if mse == 0 else float(min(PSNR_CAP, 10.0 * np.log10(data_range**2 / mse)))


def ssim(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None, data_range: float = 1.0) -> float:
    """Structural similarity (Wang et al. 2004): Gaussian window sigma 1.5 (truncated at 3.5 sigma, 11 x 11),
    K1 = 0.01, K2 = 0.03, population statistics; mean of the SSIM map over channels and over the pixels at
    least 5 from the border (scikit-image's `gaussian_weights=True, use_sample_covariance=False`), or over the
    mask's pixels when a mask is given.
    """
    x = np.asarray(pred, np.float64)
    y = np.asarray(gt, np.float64)
    if x.ndim == 2:
        x, y = x[..., None], y[..., None]
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    smap = np.zeros(x.shape)
    for c in range(x.shape[2]):

        def blur(img):
            return gaussian_filter(img, sigma=1.5, truncate=3.5, mode="reflect")

        mx, my = blur(x[..., c]), blur(y[..., c])
        vx = blur(x[..., c] ** 2) - mx**2
        vy = blur(y[..., c] ** 2) - my**2
        cxy = blur(x[..., c] * y[..., c]) - mx * my
        smap[..., c] = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    if mask is not None:
        return float(smap[np.asarray(mask, bool)].mean())
    pad = 5
    return float(smap[pad:-pad, pad:-pad].mean())


def frechet_distance(mu1: np.ndarray, cov1: np.ndarray, mu2: np.ndarray, cov2: np.ndarray) -> float:
    """|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) between two Gaussians."""
    covmean = linalg.sqrtm(cov1 @ cov2)  # (`disp=False` is deprecated and goes in SciPy 1.18)
    if not np.isfinite(covmean).all():  # near-singular product: regularise as pytorch-fid does
        eps = 1e-6 * np.eye(len(cov1))
        covmean = linalg.sqrtm((cov1 + eps) @ (cov2 + eps))
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * np.trace(covmean))


def fid_from_features(feats1: np.ndarray, feats2: np.ndarray) -> float:
    """FID between two (N, D) feature sets (unbiased covariance, as the reference implementations)."""
    f1, f2 = np.asarray(feats1, np.float64), np.asarray(feats2, np.float64)
    if len(f1) < 2 or len(f2) < 2:
        raise UsageError("FID needs at least 2 images per set (hundreds for a meaningful value)")
    return frechet_distance(f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0), np.cov(f2, rowvar=False))


def polynomial_mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with the cubic kernel k(a, b) = (a.b / d + 1)^3 (KID, TOPOS eq. 15).

    (1/(m(m-1))) sum_{i!=j} k(x_i, x_j) + (1/(n(n-1))) sum_{i!=j} k(y_i, y_j) - (2/(mn)) sum_ij k(x_i, y_j).
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    d = x.shape[1]
    kxx = (x @ x.T / d + 1.0) ** 3
    kyy = (y @ y.T / d + 1.0) ** 3
    kxy = (x @ y.T / d + 1.0) ** 3
    m, n = len(x), len(y)
    return float(
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2.0 * kxy.mean()
    )


def kid_from_features(
    feats1: np.ndarray,
    feats2: np.ndarray,
    rng: np.random.Generator,
    subsets: int = 100,
    subset_size: int = 1000,
) -> tuple[float, float]:
    """KID: mean and std of the unbiased cubic-kernel MMD^2 over random subsets (without replacement).

    The subset size is min(subset_size, len(feats1), len(feats2)); with that many or fewer images a single
    subset is the whole set, so the value is exact and the std is 0.
    """
    size = min(subset_size, len(feats1), len(feats2))
    if size < 2:
        raise UsageError("KID needs at least 2 images per set")
    if size == len(feats1) == len(feats2):
        return polynomial_mmd2_unbiased(feats1, feats2), 0.0
    vals = [
        polynomial_mmd2_unbiased(
            feats1[rng.choice(len(feats1), size, replace=False)],
            feats2[rng.choice(len(feats2), size, replace=False)],
        )
        for _ in range(subsets)
    ]
    return float(np.mean(vals)), float(np.std(vals))


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))


# ------------------------------------------------------------------------------------------------ weights
def weights_path(weights_dir: str | Path | None, key: str, metric: str) -> Path:
    """The local weights file for `key`, or MissingWeights naming the file and where to put it."""
    name = WEIGHT_FILES[key]
    folder = weights_dir or os.environ.get("TOPOS_WEIGHTS")
    if folder and (Path(folder) / name).is_file():
        return Path(folder) / name
    where = f"--weights-dir {folder}" if folder else "a folder passed as --weights-dir (or $TOPOS_WEIGHTS)"
    raise MissingWeights(
        f"{metric} needs the weights file '{name}' in {where}; topos downloads nothing "
        f"(see README 'Image metrics' for where each file comes from), or leave {metric} out "
        f"of --select"
    )


def lpips_heads_path(weights_dir: str | Path | None) -> Path:
    """LPIPS v0.1 linear heads: from --weights-dir, else from an installed `lpips` package (no import)."""
    try:
        return weights_path(weights_dir, "lpips_heads", "lpips")
    except MissingWeights:
        import importlib.util

        spec = importlib.util.find_spec("lpips")
        for folder in (spec.submodule_search_locations or []) if spec else []:
            path = Path(folder) / "weights" / "v0.1" / "alex.pth"
            if path.is_file():
                return path
        raise MissingWeights(
            "lpips needs its linear heads: `pip install --no-deps lpips` (ships "
            "weights/v0.1/alex.pth) or put lpips_alex_v0.1.pth in --weights-dir"
        ) from None


def load_lpips(weights_dir: str | Path | None):
    """LPIPSAlex with AlexNet and head weights from local files, eval mode."""
    import torch

    from topos_cli.models.lpips_alex import LPIPSAlex

    model = LPIPSAlex()
    model.load_alexnet(
        torch.load(weights_path(weights_dir, "alexnet", "lpips"), map_location="cpu", weights_only=True)
    )
    model.load_heads(torch.load(lpips_heads_path(weights_dir), map_location="cpu", weights_only=True))
    return model.eval()


def lpips_distance(model, pred: np.ndarray, gt: np.ndarray) -> float:
    """LPIPS of one (H, W, 3) [0, 1] image pair."""
    import torch

    def tensor(img):
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)[None], np.float32)) * 2.0 - 1.0

    with torch.no_grad():
        return float(model(tensor(pred), tensor(gt))[0])


def inception_features(model, images: list[np.ndarray]) -> np.ndarray:
    """(N, 2048) pool features of the FID TorchScript Inception (inputs 0..255 NCHW, resized inside)."""
    import torch

    feats = []
    with torch.no_grad():
        for img in images:
            x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)[None] * 255.0, np.float32))
            feats.append(model(x, return_features=True).reshape(1, -1).numpy())
    return np.concatenate(feats).astype(np.float64)


def arcface_embedding(session, img: np.ndarray) -> np.ndarray:
    """Embedding of one face crop: resized to the model's input (112 x 112), RGB in [-1, 1], NCHW."""
    from PIL import Image

    inp = session.get_inputs()[0]
    h, w = (inp.shape[2], inp.shape[3]) if isinstance(inp.shape[2], int) else (112, 112)
    resized = np.asarray(Image.fromarray((img * 255).round().astype(np.uint8)).resize((w, h), Image.BILINEAR))
    x = (resized.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None]
    return np.asarray(session.run(None, {inp.name: x})[0]).ravel()


# ------------------------------------------------------------------------------------------------ files
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def as_rgb01(img: np.ndarray) -> np.ndarray:
    """Any stored image -> (H, W, 3) float64 in [0, 1] (alpha dropped, grey repeated)."""
    img = np.asarray(img)
    if img.dtype == np.uint8:
        out = img / 255.0
    elif img.dtype == np.uint16:
        out = img / 65535.0
    else:
        out = np.clip(img.astype(np.float64), 0.0, 1.0)
    if out.ndim == 2:
        out = np.repeat(out[..., None], 3, axis=2)
    if out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    return out[..., :3].astype(np.float64)


def _image_pairs(pred: Path, gt: Path):
    """[(stem, pred, gt)], unmatched {pred, gt}: two image files, or two folders paired by stem."""
    from topos_cli.metrics.pairs import check_pair_paths

    check_pair_paths(pred, gt, "image")
    if pred.is_file():
        return [(pred.stem, pred, gt)], {"pred": [], "gt": []}

    def index(folder):
        return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}

    a, b = index(pred), index(gt)
    stems = sorted(set(a) & set(b))
    if not stems:
        raise UsageError(f"no image in '{pred}' has a partner with the same stem in '{gt}'")
    return [(s, a[s], b[s]) for s in stems], {"pred": sorted(set(a) - set(b)), "gt": sorted(set(b) - set(a))}


def run_image_metrics(
    pred, gt, *, mask=None, weights_dir=None, select=("psnr", "ssim"), seed: int = 0
) -> dict:
    """Per-pair PSNR/SSIM/LPIPS/CSIM and set-level FID/KID of two image files or folders (paired by stem)."""
    from topos_cli.io.image import read_image

    select = [m.strip().lower() for m in select if m.strip()]
    unknown = sorted(set(select) - set(ALL_METRICS))
    if unknown or not select:
        raise UsageError(
            f"--select takes a comma list of {', '.join(ALL_METRICS)}; got {', '.join(unknown) or 'none'}"
        )
    models = _load_models(select, weights_dir)  # every missing weights file fails here, before any work
    pairs, unmatched = _image_pairs(Path(pred), Path(gt))
    rows, failures, pred_imgs, gt_imgs = [], [], [], []
    for stem, p, g in pairs:
        try:
            a, b = as_rgb01(read_image(p)), as_rgb01(read_image(g))
            if a.shape != b.shape:
                raise UsageError(
                    f"{p.name} is {a.shape[1]}x{a.shape[0]} but {g.name} is {b.shape[1]}x{b.shape[0]}"
                )
            m = _mask(mask, stem, a.shape[:2])
        except UsageError as exc:
            failures.append({"id": stem, "pred": str(p), "gt": str(g), "error": str(exc)})
            continue
        rows.append(_pair_row(stem, p, g, a, b, m, select, models))
        pred_imgs.append(a)
        gt_imgs.append(b)
    report = {
        "kind": "images",
        "columns": [c for c in ("psnr", "ssim", "lpips", "csim") if c in select],
        "convention": _image_convention(select, mask),
        "pairs": rows,
        "failures": failures,
        "unmatched": unmatched,
        "count": len(rows),
    }
    report["summary"] = {
        c: {
            "mean": float(np.mean([r[c] for r in rows])),
            "std": float(np.std([r[c] for r in rows])),
            "n": len(rows),
        }
        for c in report["columns"]
        if rows
    }
    report["set"] = _set_metrics(select, models, pred_imgs, gt_imgs, seed)
    return report


def _mask(mask_dir, stem: str, shape) -> np.ndarray | None:
    from topos_cli.io.image import read_image

    if mask_dir is None:
        return None
    found = [p for p in sorted(Path(mask_dir).glob(f"{stem}.*")) if p.suffix.lower() in IMAGE_SUFFIXES]
    if not found:
        raise UsageError(f"no mask '{stem}.png' in {mask_dir}")
    m = as_rgb01(read_image(found[0]))[..., 0] > 0.5
    if m.shape != tuple(shape):
        raise UsageError(
            f"mask {found[0].name} is {m.shape[1]}x{m.shape[0]}, the images {shape[1]}x{shape[0]}"
        )
    if not m.any():
        raise UsageError(f"mask {found[0].name} is empty")
    return m


def _load_models(select, weights_dir) -> dict:
    models = {}
    if "lpips" in select:
        models["lpips"] = load_lpips(weights_dir)
    if "fid" in select or "kid" in select:
        import torch

        models["inception"] = torch.jit.load(
            str(weights_path(weights_dir, "inception", "fid/kid")), map_location="cpu"
        ).eval()
    if "csim" in select:
        path = weights_path(weights_dir, "arcface", "csim")
        try:
            import onnxruntime
        except ImportError:
            raise MissingWeights(
                "csim runs the ArcFace ONNX model with onnxruntime: pip install onnxruntime"
            ) from None
        models["arcface"] = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return models


def _pair_row(stem, p, g, a, b, m, select, models) -> dict:
    row = {"id": stem, "pred": str(p.resolve()), "gt": str(g.resolve())}
    if "psnr" in select:
        row["psnr"] = psnr(a, b, m)
    if "ssim" in select:
        row["ssim"] = ssim(a, b, m)
    if "lpips" in select:
        row["lpips"] = lpips_distance(models["lpips"], a, b)
    if "csim" in select:
        row["csim"] = cosine_similarity(
            arcface_embedding(models["arcface"], a), arcface_embedding(models["arcface"], b)
        )
    return row


def _set_metrics(select, models, pred_imgs, gt_imgs, seed) -> dict:
    out = {}
    if "inception" in models and pred_imgs:
        f_pred = inception_features(models["inception"], pred_imgs)
        f_gt = inception_features(models["inception"], gt_imgs)
        if "fid" in select:
            out["fid"] = fid_from_features(f_pred, f_gt)
        if "kid" in select:
            out["kid_mean"], out["kid_std"] = kid_from_features(f_pred, f_gt, np.random.default_rng(seed))
    return out


def _image_convention(select, mask) -> dict:
    conv = {
        "range": "RGB in [0, 1] (8/16-bit scaled, alpha dropped)",
        "mask": "white = used" if mask else None,
    }
    if "psnr" in select:
        conv["psnr"] = "10 log10(1 / MSE) dB over all channels (masked pixels only with --mask), capped at 100"
    if "ssim" in select:
        conv["ssim"] = (
            "Gaussian sigma 1.5 window, K1 0.01, K2 0.03, mean over channels, 5-pixel border cropped"
        )
    if "lpips" in select:
        conv["lpips"] = "LPIPS v0.1, AlexNet (torchvision weights), inputs in [-1, 1], no resizing"
    if "fid" in select or "kid" in select:
        conv["features"] = "inception-v3 2015-12-05 TorchScript pool3 (2048-d); KID cubic kernel, unbiased"
    if "csim" in select:
        conv["csim"] = (
            "cosine of ArcFace (user ONNX) embeddings of the whole image resized to the model input"
        )
    return conv
