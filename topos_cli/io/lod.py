"""The LOD chain cache: `<cache>/lod/<template name>-<hash12>-<targets>.npz`, rebuilt when missing.

The cache folder is `$TOPOS_CACHE_DIR` or `~/.cache/topos`; nothing in it is committed (the chain rebuilds
deterministically in a few seconds from the template, `topos template lod`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from topos_cli.geometry.lod import LodLevel
from topos_cli.io.fs import atomic_path

LOD_CACHE_FORMAT = 1  # bump when LodLevel's fields or the build change meaning


def cache_dir() -> Path:
    return Path(os.environ.get("TOPOS_CACHE_DIR") or Path.home() / ".cache" / "topos")


def lod_cache_path(template_name: str, template_hash: str, targets: tuple[int, ...]) -> Path:
    tag = "-".join(str(t) for t in targets) or "none"
    return cache_dir() / "lod" / f"{template_name}-{template_hash[:12]}-{tag}-v{LOD_CACHE_FORMAT}.npz"


def save_lod_chain(path: Path, levels: list[LodLevel]) -> Path:
    arrays = {}
    for k, lvl in enumerate(levels):
        arrays.update({f"lod{k}_corners": lvl.corners.astype(np.int32), f"lod{k}_bary": lvl.bary,
                       f"lod{k}_faces": lvl.faces.astype(np.int32), f"lod{k}_uv": lvl.uv,
                       f"lod{k}_uv_faces": lvl.uv_faces.astype(np.int32)})
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, count=np.int64(len(levels)), **arrays)
    return path


def load_lod_chain(path: Path) -> list[LodLevel] | None:
    """The cached chain, or None when the file is missing or unreadable (the caller rebuilds it)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            return [LodLevel(npz[f"lod{k}_corners"].astype(np.int64), npz[f"lod{k}_bary"],
                             npz[f"lod{k}_faces"].astype(np.int64), npz[f"lod{k}_uv"],
                             npz[f"lod{k}_uv_faces"].astype(np.int64)) for k in range(int(npz["count"]))]
    except (OSError, KeyError, ValueError):
        return None
