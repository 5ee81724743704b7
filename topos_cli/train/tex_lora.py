"""TOPOS-Texture LoRA fine-tune (paper §3.3, appendix A): Qwen-Image-Edit frozen, a rank-32 LoRA on the
transformer's attention projections, trained with the flow-matching loss to paint a head's canonical UV albedo
from a render of it under random light.

    pairs = render_pairs(Path("data/renders"))       # (render image, canonical albedo) from a render dataset
    last = train_tex_lora(parts, pairs, Path("runs/tex"), TexLoraConfig(stages=((256, 2000), (512, 2000))))

Per step: a pair at the stage's resolution; the albedo's VAE latents x0, noise e, t = sigmoid(N(0, 1)) shifted
by the stage's mu (Qwen-Image's exponential shift for that token count), x_t = (1 - t) x0 + t e, and
|v(x_t, cond) - (e - x0)|² with the render's latents as condition tokens (dropped to zeros with p = 0.2, so
inference can guide with CFG). AdamW on the LoRA only, cosine lr 5e-5 -> 3.5e-5 over all stages.
`write_tiny_weights` builds a random CPU-sized stack (the sizes diffusers' own tests use) for smoke tests.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from topos_cli.errors import UsageError

LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")
PAPER_STAGES = ((256, 2000), (384, 2000), (512, 2000), (768, 2000), (1024, 2000))  # progressive resolution
TINY_STAGES = ((32, 2), (48, 1))  # CPU smoke test: multiples of 2 * the tiny VAE's scale (4)


@dataclass
class TexLoraConfig:
    """Fine-tune settings (paper appendix A)."""

    rank: int = 32
    lr: float = 5e-5  # cosine from lr to lr_min over all steps
    lr_min: float = 3.5e-5
    cond_dropout: float = 0.2
    stages: tuple = PAPER_STAGES  # (resolution, steps) in order
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    seed: int = 0
    log_every: int = 10
    extra: dict = field(default_factory=dict)

    @property
    def total_steps(self) -> int:
        return int(sum(n for _, n in self.stages))


def lr_at(step: int, cfg: TexLoraConfig) -> float:  # cosine from cfg.lr (step 0) to cfg.lr_min (last step)
    frac = step / max(cfg.total_steps - 1, 1)
    return cfg.lr_min + 0.5 * (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * frac))


def render_pairs(data: Path) -> list[tuple[Path, Path]]:
    """(render image, canonical albedo) pairs of a `topos render --random-textures` dataset."""
    from topos_cli.io.manifest import read_manifest

    pairs = []
    for rec in read_manifest(data):
        tex = rec.get("texture") or {}
        albedo = tex.get("albedo") if isinstance(tex, dict) else None
        if rec.get("image") and albedo:
            pairs.append((Path(rec["image"]), Path(albedo)))
    if not pairs:
        raise UsageError(f"--data {data}: no records with an image and a texture albedo; make the dataset with "
                         "`topos render HEADS -o DATA --random-textures --random-lighting`")
    return pairs


def _image(path: Path, size: int):  # (1, 3, size, size) in [-1, 1]
    import cv2
    import torch

    from topos_cli.io.image import read_image

    img = read_image(path)
    img = img[..., None].repeat(3, 2) if img.ndim == 2 else img[..., :3]
    img = cv2.resize(img.astype(np.float32) / (65535.0 if img.dtype == np.uint16 else 255.0), (size, size),
                     interpolation=cv2.INTER_AREA)
    return torch.from_numpy(img).permute(2, 0, 1)[None] * 2 - 1


def add_lora(parts, cfg: TexLoraConfig) -> list:
    """Attach a fresh LoRA to the frozen transformer; returns its trainable parameters."""
    from peft import LoraConfig

    lora = LoraConfig(r=cfg.rank, lora_alpha=cfg.rank, init_lora_weights="gaussian", target_modules=list(LORA_TARGETS))
    parts.transformer.add_adapter(lora)
    params = [p for p in parts.transformer.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()
    return params


def flow_loss(parts, target_tokens, cond_tokens, prompt, mask, grid, mu: float, generator, cond_dropout: float):
    """The flow-matching loss of one batch (see the module docstring)."""
    import torch

    from topos_cli.pipelines.tex_qwen import shift_sigma, velocity

    b = target_tokens.shape[0]
    t = torch.sigmoid(torch.randn(b, generator=generator)).to(target_tokens.device)
    sigma = shift_sigma(t, mu)
    noise = torch.randn(target_tokens.shape, generator=generator).to(target_tokens)
    noisy = (1 - sigma[:, None, None]) * target_tokens + sigma[:, None, None] * noise
    drop = (torch.rand(b, generator=generator) < cond_dropout).to(cond_tokens.device)
    cond = torch.where(drop[:, None, None], torch.zeros_like(cond_tokens), cond_tokens)
    pred = velocity(parts, noisy, cond, sigma, prompt, mask, grid)
    return torch.mean((pred.float() - (noise - target_tokens).float()) ** 2)


def train_tex_lora(parts, pairs: list[tuple[Path, Path]], out: Path, cfg: TexLoraConfig, device: str = "cpu",
                   on_log=None) -> dict:
    """Fine-tune the LoRA over cfg.stages; writes OUT/lora/ (weights + topos_texture.json) and OUT/log.jsonl."""
    import torch

    from topos_cli.pipelines.tex_qwen import encode_image, encode_prompt, time_shift_mu

    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    params = add_lora(parts, cfg)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    prompt, mask = encode_prompt(parts)
    out.mkdir(parents=True, exist_ok=True)
    log_path, step, last, t0 = out / "log.jsonl", 0, {}, time.perf_counter()
    with open(log_path, "w") as log:
        for res, n in cfg.stages:
            grid = (res // parts.scale // 2, res // parts.scale // 2)
            mu = time_shift_mu(parts, grid[0] * grid[1])
            for _ in range(n):
                src, tgt = pairs[int(rng.integers(len(pairs)))]
                with torch.no_grad():
                    cond = encode_image(parts, _image(src, res).to(device))
                    target = encode_image(parts, _image(tgt, res).to(device))
                for group in opt.param_groups:
                    group["lr"] = lr_at(step, cfg)
                loss = flow_loss(parts, target, cond, prompt, mask, grid, mu, gen, cfg.cond_dropout)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
                step += 1
                last = {"step": step, "resolution": res, "loss": round(loss.item(), 6), "lr": lr_at(step - 1, cfg),
                        "mu": round(mu, 4), "seconds": round(time.perf_counter() - t0, 2)}
                if step % cfg.log_every == 0 or step == cfg.total_steps:
                    log.write(json.dumps(last) + "\n")
                    if on_log is not None:
                        on_log(last)
    save_lora(parts, out / "lora", cfg, last)
    return last


def save_lora(parts, folder: Path, cfg: TexLoraConfig, last: dict) -> None:
    """The LoRA in diffusers' format (`load_lora_weights`/`load_lora_adapter` read it) + topos_texture.json."""
    from diffusers import QwenImageEditPipeline
    from peft.utils import get_peft_model_state_dict

    from topos_cli.pipelines.tex_qwen import LORA_FILE, LORA_META

    folder.mkdir(parents=True, exist_ok=True)
    QwenImageEditPipeline.save_lora_weights(str(folder), transformer_lora_layers=get_peft_model_state_dict(
        parts.transformer), weight_name=LORA_FILE)
    meta = {"format": 1, "resolution": int(cfg.stages[-1][0]), "config": asdict(cfg), "last": last}
    (folder / LORA_META).write_text(json.dumps(meta, indent=1) + "\n")


def write_tiny_weights(folder: Path, seed: int = 0) -> Path:
    """A random Qwen-Image-Edit stack of diffusers' own test sizes, saved in the real folder layout."""
    import torch
    from diffusers import AutoencoderKLQwenImage, FlowMatchEulerDiscreteScheduler, QwenImageTransformer2DModel
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2Tokenizer

    torch.manual_seed(seed)
    folder = Path(folder)
    QwenImageTransformer2DModel(patch_size=2, in_channels=16, out_channels=4, num_layers=2, attention_head_dim=16,
                                num_attention_heads=3, joint_attention_dim=16,
                                axes_dims_rope=(8, 4, 4)).save_pretrained(folder / "transformer")
    AutoencoderKLQwenImage(base_dim=24, z_dim=4, dim_mult=[1, 2, 4], num_res_blocks=1, temperal_downsample=[False, True],
                           latents_mean=[0.0] * 4, latents_std=[1.0] * 4).save_pretrained(folder / "vae")
    vocab = {c: i for i, c in enumerate(sorted(ByteLevel.alphabet()))}
    vocab["<|endoftext|>"] = len(vocab)
    tok = Qwen2Tokenizer(vocab=vocab, merges=[])
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>", "<|vision_start|>",
                                                          "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]})
    tok.save_pretrained(folder / "tokenizer")
    text = {"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
            "num_key_value_heads": 2, "vocab_size": len(tok), "rope_theta": 1e6,
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"}}
    config = Qwen2_5_VLConfig(text_config=text, vocab_size=len(tok), bos_token_id=None, eos_token_id=None,
                              vision_config={"depth": 2, "hidden_size": 16, "intermediate_size": 16, "num_heads": 2,
                                             "out_hidden_size": 16})
    Qwen2_5_VLForConditionalGeneration(config).save_pretrained(folder / "text_encoder")
    FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_image_seq_len=256, max_image_seq_len=4096,
                                    base_shift=0.5, max_shift=1.15).save_pretrained(folder / "scheduler")
    return folder
