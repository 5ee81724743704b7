"""TOPOS-Texture (paper §3.3): Qwen-Image-Edit + a rank-32 LoRA repaints a portrait's unwrap as a clean,
de-lit, complete UV albedo. GPU-sized; weights only from a local folder (no hub downloads).

Folder layout (`--weights DIR`): the diffusers components of Qwen-Image-Edit in `transformer/`, `vae/`,
`text_encoder/`, `tokenizer/`, `scheduler/` and the LoRA in `lora/` (`pytorch_lora_weights.safetensors`, as
`topos train tex` writes it). Nothing here runs at import: diffusers and transformers load on first use.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from topos_cli.errors import MissingWeights, UsageError

COMPONENTS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
LORA_DIR = "lora"
LORA_FILE = "pytorch_lora_weights.safetensors"
EXTRA_HINT = "pip install -e .[tex] (diffusers, peft)"


def check_tex_extra() -> None:
    """UsageError naming the install line when diffusers/peft/transformers are absent."""
    missing = [m for m in ("diffusers", "peft", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        raise UsageError(f"--method qwen needs {', '.join(missing)}: {EXTRA_HINT}")


def check_weights(weights) -> Path:
    """The weights folder, or MissingWeights naming what is expected where."""
    expected = f"{', '.join(c + '/' for c in COMPONENTS)} and {LORA_DIR}/{LORA_FILE}"
    if weights is None:
        raise MissingWeights(f"--method qwen needs local weights: give --weights DIR holding Qwen-Image-Edit's "
                             f"{expected}")
    root = Path(weights)
    if not root.is_dir():
        raise MissingWeights(f"--weights {root}: no such folder; it should hold Qwen-Image-Edit's {expected}")
    absent = [c + "/" for c in COMPONENTS if not (root / c).is_dir()]
    if not (root / LORA_DIR / LORA_FILE).is_file():
        absent.append(f"{LORA_DIR}/{LORA_FILE}")
    if absent:
        raise MissingWeights(f"--weights {root}: missing {', '.join(absent)} (expected {expected})")
    return root


class QwenTexturer:
    """Loads the TOPOS-Texture components from a local folder and repaints an unwrap (see module docstring)."""

    def __init__(self, parts, device: str = "cpu"):
        self.parts, self.device = parts, device

    @classmethod
    def from_pretrained(cls, weights, device: str = "cpu") -> QwenTexturer:
        root = check_weights(weights)
        check_tex_extra()
        from topos_cli.models.tex_qwen import load_parts

        return cls(load_parts(root, device), device)
