"""Device strings: the one place that turns `--device auto|cpu|cuda[:N]` into a torch device."""

from __future__ import annotations

from topos_cli.errors import UsageError


def torch_device(device: str) -> str:
    """`auto` -> "cuda" when CUDA is available else "cpu"; other strings pass through (torch checks them)."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def render_device(device: str, backend: str) -> str:
    """The device of a render backend: "cpu" for gl (it owns its GPU context); for torch a checked device."""
    if backend not in ("gl", "torch"):
        raise UsageError(f"--backend must be gl or torch, got {backend!r}")
    if backend != "torch":
        return "cpu"
    if not (device in ("cpu", "auto") or device.startswith("cuda")):
        raise UsageError(f"--device must be cpu, cuda, cuda:N or auto, got {device!r}")
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {device}: no CUDA device here; use --device cpu (or auto)")
    return torch_device(device)
