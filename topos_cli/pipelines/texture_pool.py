"""The random-texture pool of render datasets and the `topos textures` dataset (seeded skin in template UVs).

    OUT/items/texNNN_{albedo,roughness,specular,normal}.png + texNNN.json (drawn parameters)

Each texture is drawn from (seed, texture id) and, once written, always read back from its 8-bit files, so a
render uses the same texture whether it was drawn in this run or in an earlier (killed) one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from topos_cli.errors import UsageError
from topos_cli.io.batch import Outcome
from topos_cli.io.manifest import BatchResult


class TexturePool:
    """`count` seeded appearances for a template, written under `folder` once and reused (resumable)."""

    def __init__(self, template, folder: Path, count: int, seed: int, size: int = 512, makeup: float = 0.5):
        if count < 1:
            raise UsageError("--texture-pool must be >= 1")
        self.template, self.folder, self.count, self.seed = template, Path(folder), count, seed
        self.size, self.makeup = size, makeup
        self._atlas = self._masks = None
        self._loaded: dict[int, tuple] = {}

    def _ensure_atlas(self):
        if self._atlas is None:
            from topos_cli.render.textures import build_atlas, feature_masks

            tpl = self.template
            if tpl.uv is None or tpl.uv_faces is None:
                raise UsageError(f"template '{tpl.name}' has no UVs; textures need a UV layout")
            self._atlas = build_atlas(tpl.verts, tpl.faces, tpl.uv, tpl.uv_faces, tpl.regions,
                                      tpl.landmarks if len(tpl.landmarks) == 68 else None, self.size)
            self._masks = feature_masks(self._atlas)

    def paths(self, k: int) -> dict:
        base = self.folder.resolve() / f"tex{k:03d}"
        return {m: str(base.parent / f"{base.name}_{m}.png") for m in ("albedo", "roughness", "specular", "normal")}

    def complete(self, k: int) -> bool:
        return all(Path(p).is_file() for p in self.paths(k).values()) and self._meta_path(k).is_file()

    def _meta_path(self, k: int) -> Path:
        return self.folder / f"tex{k:03d}.json"

    def get(self, k: int, force: bool = False) -> tuple:
        """(Material, record) for texture k, synthesized and written if missing.

        The material is always built from the 8-bit files on disk, never from the synthesized floats, so an
        image is the same whether its texture was drawn in this run or by an earlier (killed) one."""
        from topos_cli.io.image import read_image
        from topos_cli.render.renderer import Material

        if k in self._loaded:
            return self._loaded[k]
        if force or not self.complete(k):
            self._write(k)
        paths = self.paths(k)
        albedo, rough, spec, normal = (read_image(paths[m]) for m in ("albedo", "roughness", "specular", "normal"))
        params = json.loads(self._meta_path(k).read_text())["params"]
        material = Material(albedo_map=albedo[..., :3], material_map=np.stack([rough, spec], -1),
                            normal_map=normal[..., :3], roughness=1.0, specular=2.0)
        record = {"id": f"tex{k:03d}", **paths, "params": params}
        self._loaded[k] = (material, record)
        return self._loaded[k]

    def _write(self, k: int) -> None:
        """Synthesize texture k from (seed, texture id) and write its maps and parameters."""
        from topos_cli.io.fs import write_json
        from topos_cli.io.image import write_png
        from topos_cli.render.textures import synthesize
        from topos_cli.utils.seeding import item_rng, item_seed

        self._ensure_atlas()
        tex_id, paths = f"tex{k:03d}", self.paths(k)
        smp = synthesize(self._atlas, item_rng(self.seed, tex_id), makeup=self.makeup, masks=self._masks)
        for name, img in (("normal", smp.normal), ("albedo", smp.albedo), ("roughness", smp.roughness),
                          ("specular", smp.specular)):
            write_png(paths[name], img)
        write_json(self._meta_path(k), {"id": tex_id, "seed": item_seed(self.seed, tex_id), "params": smp.params})


TEXTURE_ENCODINGS = {"roughness_encoding": "perceptual roughness * 255",
                     "specular_encoding": "F0 scale / 2 * 255 (F0 = 0.028 * scale)"}


def synthesize_textures(template, out: Path, count: int, seed: int, size: int = 512, makeup: float = 0.5,
                        shard: str | None = None, force: bool = False, meta: dict | None = None) -> BatchResult:
    """A texture dataset: OUT/items/texNNN_{albedo,roughness,specular,normal}.png + manifest.jsonl + meta.json."""
    from functools import partial

    from topos_cli.io.batch import BatchItem, run_batch

    if count < 1:
        raise UsageError("--count must be >= 1")
    if size < 16 or size > 8192:
        raise UsageError(f"--size must be in [16, 8192], got {size}")
    pool = TexturePool(template, Path(out) / "items", count, seed, size, makeup)
    items = [BatchItem(id=f"tex{k:03d}", payload=k) for k in range(count)]
    return run_batch(items, partial(_texture_item, pool, force), Path(out), shard=shard, force=force, meta=meta,
                     description="textures")


def _texture_item(pool: TexturePool, force: bool, item) -> Outcome:
    """One texture of the pool, written unless its files exist; its manifest record."""
    existed = pool.complete(item.payload)
    _, rec = pool.get(item.payload, force=force)
    tpl = pool.template
    record = {"id": rec["id"], "albedo": rec["albedo"], "roughness": rec["roughness"], "specular": rec["specular"],
              "normal_map": rec["normal"], "template": tpl.name, "template_hash": tpl.hash, "size": pool.size,
              "params": rec["params"], **TEXTURE_ENCODINGS}
    return Outcome([record], skipped=int(existed and not force))
