"""Seeds: one integer in, independent per-item generators out (stable under sharding and resume)."""

from __future__ import annotations

import hashlib

import numpy as np


def item_seed(seed: int, item_id: str) -> int:
    """A 63-bit seed derived from the run seed and a stable item id (not its position in the list)."""
    digest = hashlib.sha256(f"{seed}:{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def item_rng(seed: int, item_id: str) -> np.random.Generator:
    return np.random.default_rng(item_seed(seed, item_id))


def torch_generator(seed: int, device: str = "cpu"):
    import torch

    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen
