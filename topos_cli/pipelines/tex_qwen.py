"""TOPOS-Texture (paper §3.3): Qwen-Image-Edit + a rank-32 LoRA repaints a portrait's unwrap as a clean,
de-lit, complete UV albedo. GPU-sized; weights only from a local folder (no hub downloads).

Folder layout (`--weights DIR`): the diffusers components of Qwen-Image-Edit in `transformer/`, `vae/`,
`text_encoder/`, `tokenizer/`, `scheduler/` and the LoRA in `lora/` (`pytorch_lora_weights.safetensors`, as
`topos train tex` writes it). Nothing here runs at import: diffusers and transformers load on first use.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from topos_cli.errors import MissingWeights, UsageError

COMPONENTS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
LORA_DIR = "lora"
LORA_FILE = "pytorch_lora_weights.safetensors"
LORA_META = "topos_texture.json"  # the fine-tune's config: rank, resolutions, steps (written by train tex)
PROMPT = ("Turn the portrait into this head's UV albedo texture: evenly lit, without shadows or highlights, "
          "complete on every side.")  # TOPOS-Texture's fixed instruction; only its text hidden states condition
SYSTEM = ("<|im_start|>system\nDescribe the key features of the input image (color, shape, size, texture, objects, "
          "background), then explain how the user's text instruction should alter or modify the image. Generate a "
          "new image that meets the user's requirements while maintaining consistency with the original input "
          "where appropriate.<|im_end|>\n")  # Qwen-Image-Edit's system turn; its tokens are dropped after encoding
USER = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"  # no vision tokens: VL image tokens are unused
CFG_SCALE = 1.2  # paper appendix A: classifier-free guidance at inference
STEPS = 30  # Euler steps of the short sampler
DEFAULT_RESOLUTION = 1024  # the paper's final training resolution (overridden by the LoRA's topos_texture.json)
EXTRA_HINT = "pip install -e .[tex] (diffusers, peft)"


def check_tex_extra() -> None:
    """UsageError naming the install line when diffusers/peft/transformers are absent."""
    missing = [m for m in ("diffusers", "peft", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"--method qwen needs {', '.join(missing)}: {EXTRA_HINT}")


def check_weights(weights, lora=None) -> tuple[Path, Path]:
    """The weights folder, or MissingWeights naming what is expected where."""
    expected = f"{', '.join(c + '/' for c in COMPONENTS)} and {LORA_DIR}/{LORA_FILE}"
    if weights is None:
        raise MissingWeights(f"--method qwen needs local weights: give --weights DIR holding Qwen-Image-Edit's "
                             f"{expected}")
    root = Path(weights)
    if not root.is_dir():
        raise MissingWeights(f"--weights {root}: no such folder; it should hold Qwen-Image-Edit's {expected}")
    absent = [c + "/" for c in COMPONENTS if not (root / c).is_dir()]
    lora_dir = Path(lora) if lora is not None else root / LORA_DIR
    if not (lora_dir / LORA_FILE).is_file():
        absent.append(str(lora_dir / LORA_FILE) if lora is not None else f"{LORA_DIR}/{LORA_FILE}")
    if absent:
        raise MissingWeights(f"--weights {root}: missing {', '.join(absent)} (expected {expected})")
    return root, lora_dir




@dataclass
class QwenParts:
    """The diffusers/transformers components of Qwen-Image-Edit (frozen) and the prompt's hidden states."""

    transformer: object
    vae: object
    text_encoder: object
    tokenizer: object
    scheduler_config: dict

    @property
    def scale(self) -> int:
        """Pixels per latent cell (the VAE's spatial compression)."""
        return 2 ** len(self.vae.temperal_downsample)

    @property
    def channels(self) -> int:
        return int(self.vae.config.z_dim)


def load_parts(root: Path, device: str = "cpu", dtype=None) -> QwenParts:
    """Load the components from a local folder (no hub access); MissingWeights naming the broken part."""
    import torch
    from diffusers import AutoencoderKLQwenImage, QwenImageTransformer2DModel
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2Tokenizer

    dtype = dtype or torch.float32
    loaders = {"transformer": QwenImageTransformer2DModel, "vae": AutoencoderKLQwenImage,
               "text_encoder": Qwen2_5_VLForConditionalGeneration, "tokenizer": Qwen2Tokenizer}
    parts = {}
    for name, cls in loaders.items():
        kwargs = {} if name == "tokenizer" else {"torch_dtype": dtype}
        try:
            parts[name] = cls.from_pretrained(str(root / name), local_files_only=True, **kwargs)
        except (OSError, ValueError, KeyError) as exc:
            raise MissingWeights(f"{root / name}: cannot load {name} ({str(exc).splitlines()[0][:160]})") from None
    for name in ("transformer", "vae", "text_encoder"):
        parts[name].requires_grad_(False).eval().to(device)
    try:
        sched = json.loads((root / "scheduler" / "scheduler_config.json").read_text())
    except (OSError, ValueError) as exc:
        raise MissingWeights(f"{root / 'scheduler'}: no readable scheduler_config.json ({exc})") from None
    return QwenParts(parts["transformer"], parts["vae"], parts["text_encoder"], parts["tokenizer"], sched)


# ----------------------------------------------------------------------------- latents and prompt

def pack(latents):
    """(B, C, 1, h, w) VAE latents -> (B, h/2 * w/2, 4C) tokens (2x2 patches, as Qwen-Image)."""
    b, c, _, h, w = latents.shape
    x = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens, h: int, w: int):
    """(B, h/2 * w/2, 4C) tokens -> (B, C, 1, h, w) latents."""
    b, _, c4 = tokens.shape
    x = tokens.view(b, h // 2, w // 2, c4 // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c4 // 4, 1, h, w)


def _stats(parts: QwenParts, ref):
    import torch

    shape = (1, parts.channels, 1, 1, 1)
    mean = torch.tensor(parts.vae.config.latents_mean, dtype=ref.dtype, device=ref.device).view(shape)
    std = torch.tensor(parts.vae.config.latents_std, dtype=ref.dtype, device=ref.device).view(shape)
    return mean, std


def encode_image(parts: QwenParts, images):
    """(B, 3, H, W) images in [-1, 1] -> normalized packed latents (B, N, 4C); H, W multiples of 2 * scale."""
    lat = parts.vae.encode(images[:, :, None]).latent_dist.mode()
    mean, std = _stats(parts, lat)
    return pack((lat - mean) / std)


def decode_tokens(parts: QwenParts, tokens, height: int, width: int):
    """Packed normalized latents -> (B, 3, H, W) images in [-1, 1]."""
    lat = unpack(tokens, height // parts.scale, width // parts.scale)
    mean, std = _stats(parts, lat)
    return parts.vae.decode(lat * std + mean, return_dict=False)[0][:, :, 0]


def encode_prompt(parts: QwenParts, prompt: str = PROMPT):
    """Hidden states (1, L, D) of the prompt's user turn and its mask (1, L): the system turn is dropped."""
    import torch

    tok = parts.tokenizer
    ids = tok([SYSTEM + USER.format(prompt)], return_tensors="pt")
    drop = len(tok([SYSTEM])["input_ids"][0])
    device = next(parts.text_encoder.parameters()).device
    with torch.no_grad():
        out = parts.text_encoder(input_ids=ids["input_ids"].to(device), attention_mask=ids["attention_mask"].to(device),
                                 output_hidden_states=True)
    hidden = out.hidden_states[-1][:, drop:]
    return hidden, torch.ones(hidden.shape[:2], dtype=torch.long, device=device)


def time_shift_mu(parts: QwenParts, seq_len: int) -> float:
    """The exponential time shift mu for a token count (Qwen-Image's calculate_shift on the scheduler config)."""
    cfg = parts.scheduler_config
    base_len, max_len = cfg.get("base_image_seq_len", 256), cfg.get("max_image_seq_len", 4096)
    base_shift, max_shift = cfg.get("base_shift", 0.5), cfg.get("max_shift", 1.15)
    slope = (max_shift - base_shift) / (max_len - base_len)
    return float(seq_len * slope + base_shift - slope * base_len)


def shift_sigma(sigma, mu: float):
    """Exponential time shift of flow-matching noise levels: e^mu / (e^mu + (1 / sigma - 1))."""
    return np.exp(mu) / (np.exp(mu) + (1.0 / sigma - 1.0)) if isinstance(sigma, float | np.ndarray) else \
        sigma.new_tensor(np.exp(mu)) / (sigma.new_tensor(np.exp(mu)) + (1.0 / sigma - 1.0))


def velocity(parts: QwenParts, noisy, cond, sigma, prompt, mask, grid: tuple[int, int]):
    """The transformer's flow velocity for the noisy target tokens, with the condition tokens appended."""
    import torch

    b = noisy.shape[0]
    shapes = [[(1, grid[0], grid[1]), (1, grid[0], grid[1])]] * b
    out = parts.transformer(hidden_states=torch.cat([noisy, cond], 1), timestep=sigma.expand(b).to(noisy.dtype),
                            encoder_hidden_states=prompt.expand(b, -1, -1), encoder_hidden_states_mask=mask.expand(b, -1),
                            img_shapes=shapes, return_dict=False)[0]
    return out[:, : noisy.shape[1]]


def sample(parts: QwenParts, cond, prompt, mask, grid: tuple[int, int], generator, steps: int = STEPS,
           cfg: float = CFG_SCALE):
    """Euler flow-matching sampler (noise at sigma 1 -> data at 0) with classifier-free guidance on the
    reference image (the unconditional branch sees zero condition tokens, as the condition dropout trains)."""
    import torch

    n = grid[0] * grid[1]
    x = torch.randn((cond.shape[0], n, cond.shape[2]), generator=generator, dtype=cond.dtype).to(cond.device)
    sig = shift_sigma(np.linspace(1.0, 1.0 / steps, steps), time_shift_mu(parts, n))
    sig = np.append(sig, 0.0)
    with torch.no_grad():
        for i in range(steps):
            s = torch.tensor([sig[i]], dtype=cond.dtype, device=cond.device)
            v = velocity(parts, x, cond, s, prompt, mask, grid)
            if cfg != 1.0:
                v_u = velocity(parts, x, torch.zeros_like(cond), s, prompt, mask, grid)
                v = v_u + cfg * (v - v_u)
            x = x + (sig[i + 1] - sig[i]) * v
    return x


class QwenTexturer:
    """TOPOS-Texture inference: the portrait (cropped on the head) -> the UV albedo at the LoRA's resolution."""

    def __init__(self, parts: QwenParts, resolution: int = DEFAULT_RESOLUTION, device: str = "cpu"):
        self.parts, self.resolution, self.device = parts, int(resolution), device

    @classmethod
    def from_pretrained(cls, weights, lora=None, device: str = "cpu") -> QwenTexturer:
        root, lora_dir = check_weights(weights, lora)
        check_tex_extra()
        parts = load_parts(root, device)
        load_lora(parts, lora_dir)
        meta = lora_dir / LORA_META
        resolution = json.loads(meta.read_text()).get("resolution", DEFAULT_RESOLUTION) if meta.is_file() else \
            DEFAULT_RESOLUTION
        return cls(parts, resolution, device)

    def __call__(self, portrait: np.ndarray, seed: int = 0, steps: int = STEPS, cfg: float = CFG_SCALE) -> np.ndarray:
        """(R, R, 3) sRGB albedo in [0, 1] from a square portrait crop (H, W, 3) float sRGB in [0, 1]."""
        import cv2
        import torch

        r = self.resolution
        img = cv2.resize(np.asarray(portrait, np.float32), (r, r), interpolation=cv2.INTER_AREA)
        x = torch.from_numpy(img).permute(2, 0, 1)[None].to(self.device) * 2 - 1
        with torch.no_grad():
            cond = encode_image(self.parts, x)
            prompt, mask = encode_prompt(self.parts)
            grid = (r // self.parts.scale // 2, r // self.parts.scale // 2)
            gen = torch.Generator().manual_seed(int(seed))
            out = decode_tokens(self.parts, sample(self.parts, cond, prompt, mask, grid, gen, steps, cfg), r, r)
        return ((out[0].permute(1, 2, 0).clamp(-1, 1) + 1) / 2).cpu().numpy()


def load_lora(parts: QwenParts, lora_dir: Path) -> None:
    """Attach the TOPOS-Texture LoRA (diffusers format, `save_lora_weights`) to the transformer."""
    try:
        parts.transformer.load_lora_adapter(str(lora_dir), weight_name=LORA_FILE, prefix="transformer",
                                            adapter_name="topos_texture")
    except (OSError, ValueError, KeyError) as exc:
        raise MissingWeights(f"{lora_dir / LORA_FILE}: cannot load the LoRA ({str(exc).splitlines()[0][:160]})") \
            from None


def head_crop(photo: np.ndarray, verts: np.ndarray, camera, margin: float = 1.15) -> np.ndarray:
    """A square crop of the photo around the projected head (what TOPOS-Texture's training renders frame)."""
    pix, _ = camera.resized(photo.shape[1], photo.shape[0]).project(np.asarray(verts, np.float64))
    lo, hi = pix.min(0), pix.max(0)
    centre, half = (lo + hi) / 2, max(hi - lo) / 2 * margin
    x0, y0 = int(round(centre[0] - half)), int(round(centre[1] - half))
    side = max(int(round(2 * half)), 1)
    canvas = np.ones((side, side, 3), np.float32) * 0.5
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + side, photo.shape[1]), min(y0 + side, photo.shape[0])
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = photo[sy0:sy1, sx0:sx1, :3]
    return canvas
