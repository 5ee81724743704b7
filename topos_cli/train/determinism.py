"""Reproducible training: one seed fixes the model's initial weights, every random draw and the data order, and
the random-number states travel in each checkpoint so a resumed run continues the same trajectory.

What was measured (issue 14): `topos train vae --seed 3` twice diverged from the first step because the model was
built before the seed was set (torch's start-up seed is random), so the initial weights differed. The data
(`train/data.py`: sample i is a pure function of (seed, i), decimation included) and the per-step generator of
the loop were already seeded. On CPU with a fixed thread count the remaining kernels are deterministic; see the
README "Reproducibility" for what is and is not bit-identical (thread counts, CUDA).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch

NUMPY_SEED_RANGE = 2**32  # np.random.seed accepts [0, 2**32)


def seed_everything(seed: int) -> None:
    """Seed python's `random`, numpy's legacy global RNG and torch (CPU and CUDA) from one integer."""
    random.seed(seed)
    np.random.seed(seed % NUMPY_SEED_RANGE)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """The global random-number states as plain data and tensors (saved in train_state.pt)."""
    version, internal, gauss = random.getstate()
    state = {"python": [version, list(internal), gauss], "numpy": np.random.get_state(legacy=False),
             "torch": torch.get_rng_state()}
    state["numpy"]["state"]["key"] = state["numpy"]["state"]["key"].tolist()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore the states `rng_state` returned (a checkpoint without them leaves the current states)."""
    if not state:
        return
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = {**state["numpy"], "state": {**state["numpy"]["state"]}}
    numpy_state["state"]["key"] = np.asarray(numpy_state["state"]["key"], dtype=np.uint32)
    np.random.set_state(numpy_state)
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: seed a worker's numpy and python RNGs from the seed torch gave it, which
    derives from the loader's seeded generator (so workers draw the same numbers in every run)."""
    seed = torch.initial_seed() % NUMPY_SEED_RANGE
    np.random.seed(seed)
    random.seed(seed)


@contextlib.contextmanager
def deterministic_algorithms(device: str) -> Iterator[None]:
    """Use torch's deterministic kernels on CPU for the block (restored after; CUDA is left as it is because
    its deterministic mode needs CUBLAS_WORKSPACE_CONFIG set before start-up and disables fast kernels)."""
    if not device.startswith("cpu"):
        yield
        return
    previous = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
