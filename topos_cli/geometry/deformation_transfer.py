"""Deformation transfer (Sumner & Popović 2004) between two heads in the same topology.

The template's expressions are shape deltas on the template's own neutral. A head that did not come from
the template's linear model (a retopo'd scan) has a different shape, so adding those deltas unchanged puts
them in the wrong place and scale. Deformation transfer instead copies what each expression does to each
triangle: the source's per-triangle deformation gradient Q_j (3x3, from Sumner & Popović's fourth vertex
along the scaled normal, so it is defined for triangles) is applied to the target's triangle edges, and the
target's deformed vertices are solved in the least-squares sense,

    min_x  sum_j area_j * || E_j(x) - Q_j E_j(target) ||^2  +  w * sum_{static i} || x_i - target_i ||^2
           +  lambda * sum_i area_i * || (x_i - target_i) - d_i ||^2,

where E_j stacks a triangle's two edge vectors (the gradient-domain form of Botsch et al. 2006, which
fixes the translation the edges cannot see by holding the vertices the expression does not move). One
sparse LU factorisation per expression serves its three coordinates.

The last term is a displacement prior: it pulls each vertex's displacement towards the source's own delta
d_i (both heads aligned in the template frame). Without it (lambda = 0, plain deformation transfer) the
position of a vertex far from the held ones is the integral of transferred edges along the whole moving
region, so for a large, nearly rigid motion (jawOpen turns the lower face ~15 degrees about the hinge)
every difference between the heads' shapes is integrated into a low-frequency drift of the chin: the
transferred jaw follows the target's own jaw, nose and cheek geometry, which ICT's model (one delta for every
identity) does not. The prior is weak at the scale of a few triangles and strong at the scale of the jaw:
with area-normalised weights, lambda = 0.1 means the edge terms win over features narrower than ~3 edges
(about 8 mm on the face), so the local shape of an expression (lid folds, lip rolls) still comes from the
target's own triangles, while what drifts over the jaw's length is held to the source's delta. Measured on
5 model identities (benchmarks/export.py) jawOpen's error went 0.077 -> under 0.04 % of the diagonal;
eyeBlink and mouthSmile, small local motions, changed little.

Both heads are brought into the template frame first (a similarity fit), so a head in scan units and pose
gets its expressions in its own frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STATIC_EPS_CM = 1e-4  # a vertex that no expression moves more than 1 micron is held in place
ANCHOR_WEIGHT = 1e2  # soft hold of the static vertices, relative to mean-area-normalised edge terms
DISPLACEMENT_PRIOR = 0.1  # lambda: edge terms rule features under ~3 edges, the source's delta the larger ones
MODEL_RESIDUAL_CM = 1e-3  # a head within 10 microns (RMS) of the identity span came from the linear model


@dataclass(frozen=True)
class TransferResult:
    """Expression deltas for one target head.

    Attributes:
        deltas: (K, V, 3) float32 per-expression vertex deltas in the target's frame and units.
        method: "linear-model" (the head is in the template's identity span) or "deformation-transfer".
        model_residual: RMS distance (template units) of the head from the identity span.
        identity_weights: (M,) least-squares identity weights of the head (None without an identity basis).
    """

    deltas: np.ndarray
    method: str
    model_residual: float
    identity_weights: np.ndarray | None = None


def deformation_gradients(rest: np.ndarray, deformed: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F, 3, 3) per-triangle deformation gradients Q with Q @ [e1, e2, n] = [e1', e2', n'].

    Args:
        rest: (V, 3). deformed: (K, V, 3) or (V, 3). faces: (F, 3).
    """
    basis = _frames(rest, faces)  # (F, 3, 3) columns e1, e2, n
    inv = np.linalg.inv(basis)
    moved = _frames(deformed, faces)
    return moved @ inv


def _frames(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(..., F, 3, 3) columns [v1 - v0, v2 - v0, n / sqrt|n|] (Sumner & Popović's fourth vertex)."""
    tri = np.asarray(verts, np.float64)[..., faces, :]  # (..., F, 3, 3)
    e1, e2 = tri[..., 1, :] - tri[..., 0, :], tri[..., 2, :] - tri[..., 0, :]
    n = np.cross(e1, e2)
    n = n / np.sqrt(np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-30))
    return np.stack([e1, e2, n], -1)


class TransferSolver:
    """Factorised least-squares system of one target head; `transfer` maps source deltas onto it."""

    def __init__(self, target: np.ndarray, faces: np.ndarray, static: np.ndarray,
                 prior: float = DISPLACEMENT_PRIOR):
        """Args: target (V, 3) rest head in the template frame; faces (F, 3); static (V,) bool held vertices;
        prior: weight of the displacement prior (0: plain deformation transfer)."""
        from scipy import sparse  # imported here (slow): the linear-model path never needs it

        from topos_cli.geometry.mesh_ops import face_areas

        self.target, self.faces = np.asarray(target, np.float64), np.asarray(faces, np.int64)
        nv, nf = len(target), len(faces)
        rows = np.repeat(np.arange(2 * nf), 2)
        cols = np.stack([self.faces[:, 1], self.faces[:, 0], self.faces[:, 2], self.faces[:, 0]], 1).reshape(-1)
        vals = np.tile([1.0, -1.0], 2 * nf)
        self.edges_op = sparse.csr_matrix((vals, (rows, cols)), shape=(2 * nf, nv))  # (2F, V): e1, e2 per face
        area = face_areas(self.target, self.faces)
        self.weight = np.repeat(area / area.mean(), 2)
        self.static = np.asarray(static, bool)
        vertex_area = np.bincount(self.faces.reshape(-1), np.repeat(area / 3.0, 3), nv)
        self.prior = prior * vertex_area / vertex_area.mean()  # (V,) displacement-prior weights
        anchor = sparse.diags(ANCHOR_WEIGHT * self.static.astype(np.float64) + self.prior)
        system = (self.edges_op.T @ sparse.diags(self.weight) @ self.edges_op + anchor).tocsc()
        from scipy.sparse.linalg import splu

        self.lu = splu(system)
        self.target_edges = (self.edges_op @ self.target).reshape(nf, 2, 3)  # (F, 2, 3)

    def transfer(self, gradients: np.ndarray, displacement: np.ndarray | None = None) -> np.ndarray:
        """(V, 3) deformed target for (F, 3, 3) source deformation gradients and the (V, 3) source delta the
        displacement prior pulls towards (None: zero)."""
        wanted = np.einsum("fij,fkj->fki", gradients, self.target_edges).reshape(-1, 3)  # (2F, 3) Q @ e
        held = self.target if displacement is None else self.target + displacement
        rhs = self.edges_op.T @ (self.weight[:, None] * wanted) + ANCHOR_WEIGHT * self.static[:, None] * self.target \
            + self.prior[:, None] * held
        return self.lu.solve(rhs)


def similarity(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(scale, rotation, translation) of the least-squares similarity src -> dst."""
    from topos_cli.geometry.align import umeyama  # imported here: the linear-model path never needs it

    fit = umeyama(src, dst)
    if isinstance(fit, tuple):  # geometry.align's tuple form; the Similarity record once geometry/similarity lands
        return fit
    return fit.scale, fit.rotation, fit.translation


def transfer_expressions(source: np.ndarray, source_deltas: np.ndarray, target: np.ndarray,
                         faces: np.ndarray, prior: float = DISPLACEMENT_PRIOR) -> np.ndarray:
    """(K, V, 3) float32 deltas that make `target` do what `source_deltas` do to `source`.

    Args:
        source: (V, 3) source rest head (the template). source_deltas: (K, V, 3) its expression deltas.
        target: (V, 3) target rest head, same topology; any similarity frame (it is aligned first).
        faces: (F, 3) shared triangles.
        prior: weight of the displacement prior (module docstring; 0: plain deformation transfer).
    """
    source = np.asarray(source, np.float64)
    scale, rot, shift = similarity(np.asarray(target, np.float64), source)  # target -> source frame
    aligned = scale * np.asarray(target, np.float64) @ rot.T + shift
    out = np.zeros(np.shape(source_deltas), np.float32)
    for k, delta in enumerate(np.asarray(source_deltas, np.float64)):
        # each expression holds the vertices it leaves alone (one factorisation each, ~0.1 s on 10k vertices)
        solver = TransferSolver(aligned, faces, np.abs(delta).max(1) < STATIC_EPS_CM, prior)
        grads = deformation_gradients(source, source + delta, faces)
        moved = solver.transfer(grads, delta) - aligned
        out[k] = (moved @ rot) / scale  # back to the target's frame and units
    return out


def expression_deltas(template_verts: np.ndarray, faces: np.ndarray, identity: np.ndarray | None,
                      expression: np.ndarray, head: np.ndarray, method: str = "auto") -> TransferResult:
    """The template's expressions for one head: the linear model where it applies, else deformation transfer.

    Args:
        template_verts: (V, 3) template neutral. faces: (F, 3).
        identity: (M, V, 3) identity basis of the template's model, or None (no model: always transfer).
        expression: (K, V, 3) expression deltas on the template.
        head: (V, 3) the head; a head in the template's frame and units that lies in the identity span gets
            the model's own deltas, anything else (another frame, a scan) is transferred.
        method: "auto", "linear-model" or "deformation-transfer".
    """
    head = np.asarray(head, np.float64)
    residual, weights = model_fit(template_verts, identity, head)
    if method == "linear-model" or (method == "auto" and residual <= MODEL_RESIDUAL_CM):
        return TransferResult(np.asarray(expression, np.float32), "linear-model", residual, weights)
    deltas = transfer_expressions(template_verts, expression, head, faces)
    return TransferResult(deltas, "deformation-transfer", residual, weights)


_GRAM_CACHE: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _gram_inverse(identity: np.ndarray) -> np.ndarray:
    """(M, M) inverse Gram matrix of a basis, cached per basis array (templates share theirs; seconds to build)."""
    hit = _GRAM_CACHE.get(id(identity))
    if hit is not None and hit[0] is identity:
        return hit[1]
    basis = np.asarray(identity, np.float32).reshape(len(identity), -1)
    gram = (basis @ basis.T).astype(np.float64)
    inverse = np.linalg.inv(gram + 1e-9 * np.trace(gram) / len(gram) * np.eye(len(gram)))
    _GRAM_CACHE.clear()  # one basis at a time is all a run uses
    _GRAM_CACHE[id(identity)] = (identity, inverse)
    return inverse


def model_residual(template_verts: np.ndarray, identity: np.ndarray | None, head: np.ndarray) -> float:
    """RMS distance (template units) of a head from template + span(identity) (inf without a basis)."""
    return model_fit(template_verts, identity, head)[0]


def model_fit(template_verts: np.ndarray, identity: np.ndarray | None,
              head: np.ndarray) -> tuple[float, np.ndarray | None]:
    """(RMS residual, (M,) identity weights) of the least-squares fit head ~ template + w @ identity.

    Solved through the normal equations of the (3V, M) basis, whose inverse Gram matrix is cached.
    """
    if identity is None or len(identity) == 0:
        return float("inf"), None
    target = (np.asarray(head, np.float64) - np.asarray(template_verts, np.float64)).reshape(-1)
    if not target.any():
        return 0.0, np.zeros(len(identity))  # the template itself
    basis = np.asarray(identity, np.float32).reshape(len(identity), -1)  # (M, 3V)
    coef = _gram_inverse(identity) @ (basis @ target)
    return float(np.sqrt(np.sum((coef @ basis - target) ** 2) / len(template_verts))), coef
