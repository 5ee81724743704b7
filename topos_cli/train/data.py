"""Training data for the VAE: heads in template topology -> simulated scans (point clouds with normals).

Heads come from an augment dataset folder (manifest.jsonl; meshes in template vertex order) or, without one,
are synthesised from the template's bases (`verts + w_id @ identity + w_exp @ expression`, the same
distribution `topos augment` samples). Every sample is a fresh simulated scan, drawn from a generator seeded
by (seed, sample index) so runs are reproducible and resumable:

- a small random similarity (the pre-alignment is never perfect), applied to target and input alike;
- a different topology: the head is decimated (fast-simplification) to a random fraction of its faces, and
  points are drawn on that surface, never at template vertices;
- random density (face weights from a random smooth field), noise along the normal;
- partial coverage: front-only shells, holes, a cropped scalp.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from topos_cli.geometry.mesh_ops import face_normals, sample_surface
from topos_cli.template import Template
from topos_cli.utils.seeding import item_seed


@dataclass
class ScanSimConfig:
    """Probabilities and ranges of the scan simulation (template units, cm)."""

    num_points: int = 2048
    decimate_prob: float = 0.8
    decimate_keep: tuple[float, float] = (0.1, 0.7)  # fraction of faces kept
    front_only_prob: float = 0.25
    hole_prob: float = 0.3
    crop_scalp_prob: float = 0.2
    noise_max: float = 0.1  # cm, std along the normal
    density_max: float = 1.0  # exp(k * field) face weights, k ~ U(0, density_max)
    # the residual error of `prealign` (the pipeline re-fits the similarity after the VAE)
    jitter_deg: float = 2.0
    jitter_scale: float = 0.02
    jitter_shift: float = 0.4  # cm


class HeadSource:
    """Template-topology heads: from a dataset folder's manifest, or synthesised from the template bases."""

    def __init__(self, template: Template, data: str | Path | None = None, identity_sigma: float = 1.0,
                 expressions: int = 3, split: str | None = "train"):
        self.template = template
        self.records: list[Path] = []
        self.identity_sigma, self.expressions = identity_sigma, expressions
        if data is not None and str(data) != "synthetic":
            from topos_cli.io.manifest import read_manifest

            folder = Path(data)
            recs = read_manifest(folder)
            if split is not None and any("split" in r for r in recs):
                recs = [r for r in recs if r.get("split", "train") == split] or recs
            self.records = [folder / r["mesh"] for r in recs]
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.records) if self.records else 1 << 30

    def head(self, index: int, rng: np.random.Generator) -> np.ndarray:
        """(V, 3) float32 head number `index` (synthetic heads are drawn from `rng`)."""
        if self.records:
            index %= len(self.records)
            if index not in self._cache:
                from topos_cli.io.mesh import load_mesh

                verts = load_mesh(self.records[index]).verts
                self.template.check_verts(verts, str(self.records[index]))
                if len(self._cache) < 4096:
                    self._cache[index] = verts
                return verts
            return self._cache[index]
        return synth_head(self.template, rng, self.identity_sigma, self.expressions)


def synth_head(template: Template, rng: np.random.Generator, identity_sigma: float = 1.0,
               expressions: int = 3) -> np.ndarray:
    """A random head from the template bases: N(0, sigma^2) identity weights, a few U(0,1) expressions."""
    verts = template.verts.astype(np.float64).copy()
    bases = template.bases
    if "identity" in bases and identity_sigma > 0:
        ident = bases["identity"]
        verts += np.tensordot(rng.normal(0.0, identity_sigma, len(ident)), ident, 1)
    if "expression" in bases and expressions > 0:
        expr = bases["expression"]
        weights = np.zeros(len(expr))
        pick = rng.choice(len(expr), min(expressions, len(expr)), replace=False)
        weights[pick] = rng.uniform(0.0, 1.0, len(pick)) * (rng.random(len(pick)) < 0.7)
        verts += np.tensordot(weights, expr, 1)
    return verts.astype(np.float32)


def _random_rotation(rng: np.random.Generator, max_deg: float) -> np.ndarray:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = np.radians(rng.uniform(-max_deg, max_deg))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def simulate_scan(verts: np.ndarray, faces: np.ndarray, rng: np.random.Generator,
                  cfg: ScanSimConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A simulated scan of a template-topology head.

    Args:
        verts: (V, 3) head in the template frame (cm, +Y up, +Z front).
        faces: (F, 3) template triangles.
        rng: the only source of randomness.
        cfg: simulation settings.

    Returns:
        points (P, 3) float32, normals (P, 3) float32, target verts (V, 3) float32 (jittered like the points).
    """
    center = verts.mean(0)
    rot = _random_rotation(rng, cfg.jitter_deg)
    scale = 1.0 + rng.uniform(-cfg.jitter_scale, cfg.jitter_scale)
    verts = ((verts - center) @ rot.T * scale + center + rng.uniform(-1, 1, 3) * cfg.jitter_shift).astype(np.float64)
    scan_v, scan_f = verts, faces
    if rng.random() < cfg.decimate_prob:
        import fast_simplification

        keep = rng.uniform(*cfg.decimate_keep)
        scan_v, scan_f = fast_simplification.simplify(verts.astype(np.float32), faces.astype(np.int32), 1.0 - keep)
        scan_v, scan_f = scan_v.astype(np.float64), scan_f.astype(np.int64)
    cent = scan_v[scan_f].mean(1)
    direction = rng.normal(size=3)
    field = (cent - center) @ (direction / np.linalg.norm(direction)) / (np.abs(cent - center).max() + 1e-9)
    weights = np.exp(rng.uniform(0, cfg.density_max) * field)
    pool = 3 * cfg.num_points
    pts, fidx, _ = sample_surface(scan_v, scan_f, pool, rng, face_weights=weights)
    nrm = face_normals(scan_v, scan_f)[fidx]
    keep = np.ones(pool, bool)
    lo, hi = verts.min(0), verts.max(0)
    if rng.random() < cfg.front_only_prob:
        keep &= pts[:, 2] > lo[2] + rng.uniform(0.3, 0.6) * (hi[2] - lo[2])
    if rng.random() < cfg.crop_scalp_prob:
        keep &= pts[:, 1] < hi[1] - rng.uniform(0.05, 0.3) * (hi[1] - lo[1])
    if rng.random() < cfg.hole_prob:
        for _ in range(rng.integers(1, 4)):
            c = pts[rng.integers(pool)]
            keep &= np.linalg.norm(pts - c, axis=1) > rng.uniform(1.0, 4.0)
    if keep.sum() < 64:
        keep[:] = True
    idx = rng.choice(np.flatnonzero(keep), cfg.num_points, replace=keep.sum() < cfg.num_points)
    pts, nrm = pts[idx], nrm[idx]
    pts = pts + nrm * rng.normal(0, 1, (len(pts), 1)) * rng.uniform(0, cfg.noise_max)
    return pts.astype(np.float32), nrm.astype(np.float32), verts.astype(np.float32)


class ScanDataset:
    """Indexable simulated-scan dataset: sample i is a pure function of (seed, i); works with a DataLoader."""

    def __init__(self, source: HeadSource, seed: int = 0, sim: ScanSimConfig | None = None):
        self.source, self.seed, self.sim = source, seed, sim or ScanSimConfig()

    def __len__(self) -> int:
        return 1 << 30

    def __getitem__(self, index: int) -> dict:
        import torch

        rng = np.random.default_rng(item_seed(self.seed, f"sample-{index}"))
        head = self.source.head(int(rng.integers(len(self.source))) if self.source.records else index, rng)
        pts, nrm, target = simulate_scan(head, self.source.template.faces, rng, self.sim)
        return {"points": torch.from_numpy(pts), "normals": torch.from_numpy(nrm), "verts": torch.from_numpy(target)}


# ---- TOPOS-DiT: renders -> (face crop, landmarks, target latent), cached once per render dataset ----

DIT_CACHE = "cache"  # subfolder of the render dataset holding the arrays below
COLOR_JITTER = 0.15  # per-channel gain jitter of the crop in training (the renders' lights are random already)
KEEP_BLACK_BACKGROUND = 0.2  # fraction of training crops keeping the renders' black background; the rest get a
# random colour gradient (photos have backgrounds; generate-geo composites cut-outs over white)


@dataclass
class DitCache:
    """Arrays of a render dataset for TOPOS-DiT (see `load_dit_cache`).

    Attributes:
        crops: (R, S, S, 3) uint8 face crops (faces/crop.py), memory-mapped.
        landmarks: (R, 478, 3) float32 landmarks in the crop frame (x, y in [-1, 1]; z the mesh's depth).
        found: (R,) bool, a face was detected (the other rows are unusable).
        render_head: (R,) int64 index of each render's head in `heads`.
        heads: (H,) head ids (augment item ids); split: (H,) "train" / "val" / "test" by head id.
        neutral: (H, V, 3) float32 neutral heads (the augment coefficients without the expression).
    """

    crops: np.ndarray
    landmarks: np.ndarray
    found: np.ndarray
    render_head: np.ndarray
    heads: np.ndarray
    split: np.ndarray
    neutral: np.ndarray

    def renders(self, split: str) -> np.ndarray:
        """Indices of the usable renders whose head is in `split`."""
        return np.flatnonzero(self.found & (self.split[self.render_head] == split))


def build_dit_cache(renders: str | Path, template: Template, progress: bool = True) -> Path:
    """Detect faces in every render of a `topos render` dataset and cache crops, landmarks and neutral heads.

    Heads are split by head id (io.manifest.split_for), so all renders of one identity share a split.
    Returns the cache folder.
    """
    from topos_cli.faces.crop import CROP_SIZE
    from topos_cli.geometry.augment import coefficient_delta
    from topos_cli.io.image import read_image
    from topos_cli.io.manifest import read_manifest, split_for

    folder = Path(renders)
    cache = folder / DIT_CACHE
    cache.mkdir(exist_ok=True)
    recs = read_manifest(folder)
    heads = sorted({str(r["parent"]) for r in recs})
    index = {h: i for i, h in enumerate(heads)}
    coeffs = {str(r["parent"]): r.get("coeffs") or {} for r in recs}
    crops = np.lib.format.open_memmap(cache / "crops.tmp.npy", "w+", np.uint8, (len(recs), CROP_SIZE, CROP_SIZE, 3))
    lms = np.zeros((len(recs), 478, 3), np.float32)
    found = np.zeros(len(recs), bool)
    from topos_cli.utils.log import progress as bar

    for i, rec in enumerate(bar(recs, description="detect faces") if progress else recs):
        face = cache_face(read_image(folder / rec["image"])[..., :3])
        if face is not None:
            crops[i], lms[i] = face
            found[i] = True
    crops.flush()
    del crops
    (cache / "crops.tmp.npy").replace(cache / "crops.npy")
    neutral = np.stack([template.verts + coefficient_delta(template, {k: v for k, v in coeffs[h].items()
                                                                       if k != "expression"}) for h in heads])
    np.savez(cache / "targets.npz", ids=np.array([r["id"] for r in recs]), landmarks=lms, found=found,
             render_head=np.array([index[str(r["parent"])] for r in recs]), heads=np.array(heads),
             split=np.array([split_for(h) for h in heads]), neutral=neutral.astype(np.float32),
             template_hash=template.hash)
    return cache


def cache_face(image: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(crop (S, S, 3) uint8, landmarks (478, 3) in the crop frame) of the largest face in a render, as the DiT
    cache stores them (GeoPrior.condition makes the same from a photo); None when no face is found."""
    from topos_cli.faces.crop import face_crop
    from topos_cli.faces.detect import detect_faces

    faces = detect_faces(image)
    if not faces:
        return None
    crop = face_crop(image, faces[0].landmarks)
    return crop.image, crop.normalize_landmarks(np.concatenate([faces[0].landmarks, faces[0].depth[:, None]], 1))


def load_dit_cache(renders: str | Path) -> DitCache:
    """The cached arrays of a render dataset (built by `build_dit_cache`)."""
    cache = Path(renders) / DIT_CACHE
    arrays = np.load(cache / "targets.npz")
    return DitCache(crops=np.load(cache / "crops.npy", mmap_mode="r"), landmarks=arrays["landmarks"],
                    found=arrays["found"], render_head=arrays["render_head"], heads=arrays["heads"],
                    split=arrays["split"], neutral=arrays["neutral"])


def random_background(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(S, S, 3) float crop whose exactly-black pixels (the renders' empty background) get a random linear colour
    gradient, except in a KEEP_BLACK_BACKGROUND fraction of draws."""
    if rng.random() < KEEP_BLACK_BACKGROUND:
        return crop
    empty = crop.max(-1) == 0.0
    size = crop.shape[0]
    ramp = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    field = (np.cos(angle) * ramp[None, :] + np.sin(angle) * ramp[:, None])[..., None]  # (S, S, 1)
    color = rng.uniform(0, 1, 3).astype(np.float32) + field * rng.uniform(-0.3, 0.3, 3).astype(np.float32)
    return np.where(empty[..., None], np.clip(color, 0.0, 1.0), crop)


class RenderLatentDataset:
    """Index-addressed TOPOS-DiT samples: sample i is a pure function of (seed, i).

    Args:
        cache: the render dataset's arrays.
        tokens: (H, T, d) float32 normalised target latents per head.
        renders: indices of the renders to draw from (one split).
        condition: the model's condition kind (which inputs to return).
        seed: sample seed.
        jitter: colour-gain jitter of the crop (0 for evaluation).
    """

    def __init__(self, cache: DitCache, tokens: np.ndarray, renders: np.ndarray, condition: str, seed: int = 0,
                 jitter: float = COLOR_JITTER):
        self.cache, self.tokens, self.renders = cache, tokens, np.asarray(renders)
        self.condition, self.seed, self.jitter = condition, seed, jitter

    def __len__(self) -> int:
        return 1 << 30

    def item(self, render: int, rng: np.random.Generator | None = None) -> dict:
        import torch

        out = {"tokens": torch.from_numpy(self.tokens[self.cache.render_head[render]])}
        if "crop" in self.condition:
            crop = np.asarray(self.cache.crops[render], np.float32) / 255.0
            if rng is not None and self.jitter > 0:
                crop = random_background(np.clip(crop * rng.uniform(1 - self.jitter, 1 + self.jitter, 3), 0.0, 1.0),
                                         rng)
            out["crop"] = torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1), np.float32))
        if "landmarks" in self.condition:
            out["landmarks"] = torch.from_numpy(self.cache.landmarks[render])
        return out

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng(item_seed(self.seed, f"dit-{index}"))
        return self.item(int(self.renders[rng.integers(len(self.renders))]), rng)
