"""TOPOS-VAE losses (paper §3.1): vertex L2, face-normal, face-angle, signed dihedral angle, KL.

Weights 2, 1, 5, 5, 1e-3 (paper); a run may override some (`topos train vae --loss-weights`). Distances are in the
model's normalised units (template RMS radius = 1) so the loss does not depend on the template's size. Face
angles compare interior-angle cosines; the dihedral term compares signed dihedral angles on interior edges
(discrete curvature).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

LOSS_WEIGHTS = {"vertex": 2.0, "normal": 1.0, "angle": 5.0, "dihedral": 5.0, "kl": 1e-3}


@dataclass
class InteriorEdges:
    """Per interior edge: endpoints (i, j) oriented as in face f1, the two faces and their opposite corners."""

    edge: torch.Tensor  # (E, 2)
    faces: torch.Tensor  # (E, 2)


def interior_edges(faces: np.ndarray) -> InteriorEdges:
    """Edges shared by exactly two faces, with (i, j) in the first face's winding."""
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    owner = np.tile(np.arange(len(faces)), 3)
    key = np.sort(directed, 1)
    order = np.lexsort((key[:, 1], key[:, 0]))
    key, directed, owner = key[order], directed[order], owner[order]
    same = np.all(key[1:] == key[:-1], 1)
    first = np.flatnonzero(same)
    single = np.ones(len(first), bool)
    if len(first) > 1:  # drop non-manifold triples
        single = np.diff(np.concatenate([[-2], first])) > 1
    first = first[single]
    return InteriorEdges(torch.from_numpy(directed[first].copy()),
                         torch.from_numpy(np.stack([owner[first], owner[first + 1]], 1)))


def _triangles(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(B, F, 3, 3) corner positions; index_select (its backward is index_add, much faster than index_put)."""
    return verts.index_select(1, faces.reshape(-1)).view(verts.shape[0], *faces.shape, 3)


def _face_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    tri = _triangles(verts, faces)  # (B, F, 3, 3)
    return F.normalize(torch.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1), dim=-1, eps=1e-12)


def _corner_cosines(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    tri = _triangles(verts, faces)  # (B, F, 3, 3)
    a = F.normalize(tri.roll(-1, 2) - tri, dim=-1, eps=1e-12)
    b = F.normalize(tri.roll(1, 2) - tri, dim=-1, eps=1e-12)
    return (a * b).sum(-1)  # (B, F, 3)


def signed_dihedral(verts: torch.Tensor, faces: torch.Tensor, edges: InteriorEdges) -> torch.Tensor:
    """(B, E) signed angle between the normals of the two faces of each interior edge (0 = flat)."""
    normals = _face_normals(verts, faces)
    n1, n2 = normals.index_select(1, edges.faces[:, 0]), normals.index_select(1, edges.faces[:, 1])
    axis = F.normalize(verts.index_select(1, edges.edge[:, 1]) - verts.index_select(1, edges.edge[:, 0]), dim=-1,
                       eps=1e-12)
    return torch.atan2((torch.cross(n1, n2, dim=-1) * axis).sum(-1), (n1 * n2).sum(-1).clamp(-1, 1))


def loss_weights(overrides: dict | None = None) -> dict[str, float]:
    """The paper's weights with `overrides` applied; ValueError names an unknown term or a negative weight."""
    weights = dict(LOSS_WEIGHTS)
    for key, value in (overrides or {}).items():
        if key not in LOSS_WEIGHTS:
            raise ValueError(f"unknown loss term '{key}'; the terms are {', '.join(LOSS_WEIGHTS)}")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
            raise ValueError(f"loss weight '{key}' must be a number >= 0, got {value!r}")
        weights[key] = float(value)
    return weights


def vae_losses(pred: torch.Tensor, gt: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor,
               faces: torch.Tensor, edges: InteriorEdges, radius: float, kl_scale: float = 1.0,
               weights: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
    """All loss terms and their weighted sum under 'total'.

    Args:
        pred, gt: (B, V, 3) vertices in cm.
        mean, logvar: (B, N, d) posterior.
        faces: (F, 3) int64; edges: interior edges of `faces`; radius: cm per normalised unit.
        kl_scale: multiplier of the KL weight (KL warm-up against posterior collapse).
        weights: weight per term (default: the paper's, LOSS_WEIGHTS).
    """
    weights = weights or LOSS_WEIGHTS
    pred_n, gt_n = pred / radius, gt / radius
    terms = {
        "vertex": (pred_n - gt_n).norm(dim=-1).mean(),
        "normal": (1.0 - (_face_normals(pred_n, faces) * _face_normals(gt_n, faces)).sum(-1)).mean(),
        "angle": (_corner_cosines(pred_n, faces) - _corner_cosines(gt_n, faces)).abs().mean(),
        "dihedral": (signed_dihedral(pred_n, faces, edges) - signed_dihedral(gt_n, faces, edges)).abs().mean(),
        "kl": 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).mean(),
    }
    terms["total"] = sum(weights[k] * v * (kl_scale if k == "kl" else 1.0) for k, v in terms.items())
    return terms


class VaeTask:
    """What the generic loop needs: a model, a dataset and a loss for one batch."""

    name = "mesh-vae"

    def __init__(self, model, template, kl_warmup: int = 0, weights: dict[str, float] | None = None):
        self.model, self.template, self.weights = model, template, loss_weights(weights)
        self.kl_warmup, self.step = kl_warmup, 0  # the loop sets `step` before each batch
        self.faces = torch.from_numpy(template.faces)
        self.edges = interior_edges(template.faces)

    def to(self, device):
        self.faces = self.faces.to(device)
        self.edges = InteriorEdges(self.edges.edge.to(device), self.edges.faces.to(device))
        return self

    def loss(self, model, batch: dict, generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        out = model(batch["points"], batch["normals"], generator=generator)
        with torch.no_grad():  # running latent statistics (for normalising latents in generators)
            mom = 0.01
            self.model.latent_mean.lerp_(out["mean"].float().mean(0), mom)
            var = (out["mean"].float() - self.model.latent_mean).square().mean(0) + out["logvar"].float().exp().mean(0)
            self.model.latent_std.lerp_(var.sqrt(), mom)
        kl_scale = min(1.0, self.step / self.kl_warmup) if self.kl_warmup > 0 else 1.0
        return vae_losses(out["verts"].float(), batch["verts"], out["mean"].float(), out["logvar"].float(),
                          self.faces, self.edges, self.model.radius, kl_scale, self.weights)
