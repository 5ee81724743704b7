"""TOPOS-DiT inference: portrait + face-mesh landmarks -> a plausible neutral head in template topology.

    prior = GeoPrior.from_pretrained()                        # the shipped geo-dit-small (or a run/step folder)
    out = prior(image_rgb, landmarks, generator, steps=50, cfg=3.0, samples=1)
    out.verts                                                 # (V, 3) neutral head, template frame, cm

The face crop (faces/crop.py) and the normalised landmarks are made exactly as in training; the sampler
(pipelines/sampler.py) integrates the flow with classifier-free guidance; the latent (models/geo_latent.py)
decodes the tokens to vertices. `encode`/`decode` expose the latent itself (the benchmark's latent floor).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from topos_cli.errors import MissingWeights, UsageError

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "assets" / "checkpoints" / "geo-dit-small"
DEFAULT_VAE = Path(__file__).resolve().parents[1] / "assets" / "checkpoints" / "retopo-vae-small"
DINOV2_HUB_ID = "facebook/dinov2-with-registers-large"  # the paper config's backbone (weights: a local folder)
# torch threads while sampling on a CPU: the small model's ops are tiny (11 tokens x 128 channels), and on the
# shared 2-core machine 2 threads took 5-22 s for 50 CFG steps where 1 thread took 0.35-0.5 s (oversubscription)
CPU_SAMPLE_THREADS = 1
SMALL_WIDTH = 512  # models up to this width sample single-threaded on a CPU


@dataclass
class GeoPriorOutput:
    """What the generator made for one portrait.

    Attributes:
        verts: (V, 3) float32 neutral head in the template frame (cm): the mean of the samples' heads.
        samples: (K, V, 3) float32 each sample's head.
        latents: (K, T, d) float32 each sample's latent tokens (unnormalised; `GeoPrior.decode` takes them).
        seconds: time per stage (condition, sample, decode).
    """

    verts: np.ndarray
    samples: np.ndarray
    latents: np.ndarray
    seconds: dict = field(default_factory=dict)


def load_dinov2(folder: str | Path):
    """The frozen DINOv2-with-registers backbone from a local folder (no hub access) as `Dinov2Features`."""
    from topos_cli.models.image_cond import Dinov2Features

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise MissingWeights(f"{folder}: no DINOv2 weights here (config.json missing); download "
                             f"{DINOV2_HUB_ID} on a machine with hub access and copy the folder here")
    try:
        from transformers import Dinov2WithRegistersModel

        backbone = Dinov2WithRegistersModel.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MissingWeights(f"{folder}: cannot load the DINOv2 backbone ({first})") from None
    return Dinov2Features(backbone)


class GeoPrior:
    """The image-conditioned head generator (model loaded once, called per portrait)."""

    def __init__(self, model, latent, meta: dict | None = None, backbone=None):
        self.model, self.latent, self.meta, self.backbone = model.eval(), latent, meta or {}, backbone
        self.device = next(model.parameters()).device

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, vae: str | Path | None = None,
                        image_cond: str | Path | None = None, template=None, device: str = "cpu") -> GeoPrior:
        """Load a TOPOS-DiT checkpoint (run or step folder; default: the shipped geo-dit-small).

        Args:
            vae: the TOPOS-VAE of the latent (kinds "vae"/"vae+bases"; default: the one recorded, else shipped).
            image_cond: DINOv2 folder for condition "features" (default: the one recorded in model.json).
        Raises:
            MissingWeights: no checkpoint, missing or corrupt weights (one line; exit 2).
        """
        from topos_cli.io.checkpoint import load_model, read_model_json
        from topos_cli.models.geo_latent import GeoLatent
        from topos_cli.template import load_template

        path = Path(path) if path is not None else DEFAULT_MODEL
        meta = read_model_json(path)
        if meta.get("name") != "flow-dit":
            raise UsageError(f"{path}: a '{meta.get('name')}' checkpoint, not a TOPOS-DiT (flow-dit) one")
        tpl = template if template is not None else load_template(meta["template"])
        model = _load(load_model, path, tpl, device)
        vae_model = None
        if model.config.latent != "bases":
            vae_path = Path(vae or meta.get("vae") or DEFAULT_VAE)
            vae_model = _load(load_model, vae_path, tpl, device)
        latent = GeoLatent(vae_model, tpl, kind=model.config.latent).to(device)
        if sum(latent.layout()) != model.config.num_tokens:
            raise UsageError(f"{path}: the model's {model.config.num_tokens} latent tokens do not fit its latent "
                             f"({sum(latent.layout())} tokens with this VAE and template)")
        backbone = None
        if model.config.condition == "features":
            folder = image_cond or meta.get("image_cond")
            if folder is None:
                raise MissingWeights(f"{path}: this model needs the DINOv2 backbone; pass its local folder")
            backbone = load_dinov2(folder).to(device)
        return cls(model, latent, meta, backbone)

    def condition(self, image: np.ndarray, landmarks: np.ndarray) -> dict[str, torch.Tensor]:
        """The model's condition inputs for one portrait (batch of 1)."""
        from topos_cli.faces.crop import face_crop

        pts = np.asarray(landmarks, np.float32)
        if pts.ndim != 2 or pts.shape[0] != self.model.config.landmark_count or pts.shape[1] < 2:
            raise UsageError(f"expected ({self.model.config.landmark_count}, 2) face-mesh landmarks, got {pts.shape}")
        cfg = self.model.config
        dims = max(cfg.landmark_dims if "landmarks" in cfg.condition else 2, cfg.mean_dims if cfg.mean_head != "none" else 2)
        if pts.shape[1] < dims:
            raise UsageError(f"this model reads {dims} landmark coordinates "
                             "(x, y, depth); pass the face mesh's depth as a third column")
        crop = face_crop(image, pts[:, :2], self.model.config.crop_size)
        cond = {"crop": torch.from_numpy(crop.image.astype(np.float32).transpose(2, 0, 1) / 255.0)[None],
                "landmarks": torch.from_numpy(crop.normalize_landmarks(pts))[None]}
        cond = {k: v.to(self.device) for k, v in cond.items()}
        if self.backbone is not None:
            cond["features"] = self.backbone(cond["crop"])
        return cond

    @torch.no_grad()
    def __call__(self, image: np.ndarray, landmarks: np.ndarray, generator: torch.Generator | None = None,
                 steps: int = 50, cfg: float | None = None, samples: int = 1, method: str = "euler",
                 temperature: float | None = None) -> GeoPriorOutput:
        """Generate the neutral head of the face in `image`.

        Args:
            image: (H, W, 3) uint8 RGB portrait.
            landmarks: (478, 2) face-mesh landmarks in pixels (faces/detect.py), or (478, 3) with its depth.
            generator: the sampler's noise (a torch.Generator on the model's device).
            steps / cfg / method: the ODE sampler's steps, guidance scale and method (euler, heun). cfg
                default: the checkpoint's `sampling.cfg`, else the paper's 3.0.
            samples: heads drawn; `verts` is their mean.
            temperature: scale of the initial noise (1: a sample of the learned distribution, the paper; 0: the
                deterministic head at the noise mean). Default: the checkpoint's `sampling.temperature`, else 1.
        """
        from topos_cli.pipelines.sampler import DEFAULT_CFG, SamplerConfig

        if samples < 1 or steps < 1:
            raise UsageError("--samples and --steps must be >= 1")
        with _cpu_threads(self.device, CPU_SAMPLE_THREADS if self.model.config.width <= SMALL_WIDTH else None):
            sampling = self.meta.get("sampling") or {}
            if temperature is None:
                temperature = float(sampling.get("temperature", 1.0))
            if cfg is None:
                cfg = float(sampling.get("cfg", DEFAULT_CFG))
            config = SamplerConfig(steps, cfg, method, temperature)
            return self._generate(image, landmarks, generator, config, samples)

    def _generate(self, image, landmarks, generator, config, samples: int) -> GeoPriorOutput:
        from topos_cli.pipelines.sampler import sample

        t0 = time.perf_counter()
        cond = self.condition(image, landmarks)
        tokens = self.model.encode_condition(cond)  # (1, M, W)
        t1 = time.perf_counter()
        normed = sample(self.model, tokens.expand(samples, -1, -1), generator, config)
        mean = self.model.prior_mean(cond)
        if mean is not None:  # a residual flow around the landmark regression (models/cond_mean.py)
            normed = normed + mean
        latents = self.model.denormalize(normed)  # (K, T, d)
        t2 = time.perf_counter()
        heads = self.decode(latents)
        t3 = time.perf_counter()
        return GeoPriorOutput(verts=heads.mean(0), samples=heads, latents=latents.cpu().numpy(),
                              seconds={"condition": t1 - t0, "sample": t2 - t1, "decode": t3 - t2})

    @torch.no_grad()
    def regression(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray | None:
        """(V, 3) the head of the model's landmark regression alone (no flow), None without one (benchmarks
        report it beside the generator to show what the flow adds)."""
        mean = self.model.prior_mean(self.condition(image, landmarks))
        return None if mean is None else self.decode(self.model.denormalize(mean))[0]

    def posterior_basis(self) -> np.ndarray | None:
        """(K, V, 3) where and how much the landmark regression errs on held-out renders (its residual
        covariance's scaled principal directions; geometry/shape_prior.py), or None when the model has no
        measured residual or its latent is not linear in the template's bases (a VAE part)."""
        from topos_cli.geometry.shape_prior import covariance_basis

        head = self.model.mean_head
        if head is None or self.latent.vae is not None or not self.latent.num_coeffs:
            return None
        cov = head.residual_cov.double().cpu()
        if not bool(cov.abs().sum() > 0):
            return None
        std = self.model.latent_std.double().cpu().flatten()
        cov = (cov * std[:, None] * std[None, :]).numpy()  # normalised -> latent token units
        _, count = self.latent.layout()
        k = self.latent.num_coeffs
        start = cov.shape[0] - count * self.latent.token_dim  # the coefficient tokens come last
        cov = cov[start:start + k, start:start + k]
        return covariance_basis(cov, self.latent.basis.double().cpu().numpy(), self.latent.template.num_verts)

    def encode(self, verts: np.ndarray, seed: int = 0) -> np.ndarray:
        """(B, T, d) unnormalised latent tokens of heads (B, V, 3) or (V, 3) in the template frame (cm)."""
        verts = np.asarray(verts, np.float32)
        verts = verts[None] if verts.ndim == 2 else verts
        return self.latent.pack(self.latent.encode(verts, seed=seed))

    @torch.no_grad()
    def decode(self, latents) -> np.ndarray:
        """(B, V, 3) float32 heads (cm) from unnormalised latent tokens (B, T, d)."""
        tokens = torch.as_tensor(np.asarray(latents.cpu() if torch.is_tensor(latents) else latents),
                                 dtype=torch.float32, device=self.device)
        return self.latent.decode_tokens(tokens).cpu().numpy().astype(np.float32)


@contextlib.contextmanager
def _cpu_threads(device: torch.device, threads: int | None):
    """Run with `threads` torch threads on a CPU device (None or a GPU: unchanged)."""
    if threads is None or device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _load(loader, path, template, device):
    """A checkpoint's model; a weights file that cannot be read at all is one MissingWeights line."""
    try:
        return loader(path, template, device)
    except (MissingWeights, UsageError):
        raise
    except Exception as exc:  # safetensors raises its own error type on a truncated/garbage file
        if type(exc).__name__ != "SafetensorError":
            raise
        raise MissingWeights(f"{path}: its model.safetensors is corrupt ({exc}); re-copy or retrain it") from None
