"""Mesh-to-mesh shape augmentation in template topology (TOPOS appendix B, plus identity/expression).

Region-wise blendshape sampling: for each augmentation region r, pick `pick` bases from the region's set,
draw w ~ U(lower, upper), divide by their sum only when it exceeds 1, and add M' = M + sum_r sum_i w_i B_ri.
Random identities (w ~ N(0, sigma^2 I) on the identity modes) and random ARKit expressions can be added on
top. Expressions follow the template's `expression_prior` (geometry/expressions.py: units, exclusions,
bounds, mouthClose only with jawOpen) and a head that fails the prior's landmark checks (lips in the nose,
crossed eyelids) is redrawn from the same generator; templates without a prior get independent draws
(a few blendshapes with weights ~ U(0, max)). Every function takes an explicit numpy Generator; nothing
here reads files.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from topos_cli.geometry.expressions import ExpressionPrior, expression_prior, failed_checks, sample_expression
from topos_cli.template import Template

MAX_EXPRESSION_DRAWS = 50  # a prior draw fails the checks ~1 % of the time; 50 misses in a row means the base
#                            itself is implausible with any expression, and the copy keeps a neutral face


@dataclass(frozen=True)
class AugmentConfig:
    """What to sample per augmented copy.

    Attributes:
        regions: region-wise blendshape sampling (needs the template's `augment` table and region bases).
        identity_sigma: std of identity-mode weights (0 disables; needs an `identity` basis).
        identity_modes: use only the first N identity modes (None: all).
        expressions: number of expression units active per copy (0 disables); with an expression prior a
            left/right pair or a conjugate gaze counts once, without one each blendshape counts.
        expression_max: scales the upper bound of the expression weights U(0, max).
    """

    regions: bool = True
    identity_sigma: float = 0.0
    identity_modes: int | None = None
    expressions: int = 0
    expression_max: float = 1.0


def region_table(template: Template) -> tuple[int, dict[str, dict]]:
    """The template's augmentation regions: (pick, {region: {"basis", "lower", "upper"}})."""
    table = template.meta.get("augment", {})
    return int(table.get("pick", 3)), dict(table.get("regions", {}))


def sample_coefficients(template: Template, config: AugmentConfig, rng: np.random.Generator,
                        base_verts: np.ndarray | None = None) -> dict:
    """Draw one copy's coefficients as plain data (what the manifest records).

    Args:
        template: the template (bases, augment table, expression prior).
        config: what to sample.
        rng: the item's generator.
        base_verts: (V, 3) the head the copy is made from, for the expression checks (default: the rest mesh).

    Returns:
        {"regions": {r: {"bases": [i, ...], "weights": [w, ...]}}, "identity": [...], "expression": {name: w},
        "expression_rejections": n} with only the enabled parts present (the rejection count only with an
        expression prior). Draw order is fixed, so the same rng state gives the same dict.
    """
    coeffs: dict = {}
    if config.regions:
        pick, table = region_table(template)
        regions = {}
        for name, spec in table.items():
            count = template.basis(spec["basis"]).shape[0]
            chosen = rng.choice(count, size=min(pick, count), replace=False)
            weights = rng.uniform(float(spec.get("lower", 0.0)), float(spec.get("upper", 1.0)), size=len(chosen))
            total = weights.sum()
            if total > 1.0:  # the paper normalises only when the sum exceeds one
                weights = weights / total
            regions[name] = {"bases": [int(i) for i in chosen], "weights": [float(w) for w in weights]}
        coeffs["regions"] = regions
    if config.identity_sigma > 0:
        modes = template.basis("identity").shape[0]
        n = modes if config.identity_modes is None else min(config.identity_modes, modes)
        coeffs["identity"] = [float(w) for w in rng.normal(0.0, config.identity_sigma, size=n)]
    prior = expression_prior(template) if config.expressions > 0 else None
    if prior is not None:
        base = template.verts if base_verts is None else np.asarray(base_verts, np.float32)
        coeffs["expression"], coeffs["expression_rejections"] = _plausible_expression(
            template, prior, config, rng, base[prior.vertices] + _delta_at(template, coeffs, prior.vertices))
    elif config.expressions > 0:
        names = [str(s) for s in template.bases.get("expression_names", [])]
        count = template.basis("expression").shape[0]
        names = names if len(names) == count else [f"expression_{i}" for i in range(count)]
        chosen = rng.choice(count, size=min(config.expressions, count), replace=False)
        weights = rng.uniform(0.0, config.expression_max, size=len(chosen))
        coeffs["expression"] = {names[i]: float(w) for i, w in zip(chosen, weights, strict=True)}
    return coeffs


def _plausible_expression(template: Template, prior: ExpressionPrior, config: AugmentConfig,
                          rng: np.random.Generator, points: np.ndarray) -> tuple[dict, int]:
    """An expression from the prior whose head passes the checks, and how many draws were rejected.

    `points` is the head without expression at `prior.vertices`. A head that fails before any expression
    (a base outside the checks' assumptions) is not checked, so it is never stuck redrawing.
    """
    if failed_checks(prior, points):
        return sample_expression(prior, config.expressions, config.expression_max, rng), 0
    for rejected in range(MAX_EXPRESSION_DRAWS):
        expression = sample_expression(prior, config.expressions, config.expression_max, rng)
        if not failed_checks(prior, points + _delta_at(template, {"expression": expression}, prior.vertices)):
            return expression, rejected
    return {}, MAX_EXPRESSION_DRAWS


def _delta_at(template: Template, coeffs: dict, rows: np.ndarray) -> np.ndarray:
    """(len(rows), 3) the offset `coeffs` describe, at those vertices only (cheap enough to test each draw)."""
    bank, offsets = _bank_at(template, rows.tobytes())
    weights = coefficient_matrix(template, [coeffs])[0]
    used = np.flatnonzero(weights)
    return (weights[used] @ bank[used]).reshape(len(rows), 3)


@lru_cache(maxsize=8)
def _bank_at(template: Template, rows_key: bytes) -> tuple[np.ndarray, dict[str, int]]:
    bank, offsets = basis_bank(template)
    rows = np.frombuffer(rows_key, dtype=np.int64)
    cols = (rows[:, None] * 3 + np.arange(3)).ravel()
    return np.ascontiguousarray(bank[:, cols]), offsets


def coefficient_delta(template: Template, coeffs: dict) -> np.ndarray:
    """(V, 3) float32 vertex offset that `coeffs` (from `sample_coefficients`) describe."""
    delta = np.zeros((template.num_verts, 3), dtype=np.float32)
    _, table = region_table(template)
    for name, pick in coeffs.get("regions", {}).items():
        basis = template.basis(table[name]["basis"])
        delta += np.tensordot(np.asarray(pick["weights"], np.float32), basis[pick["bases"]], axes=1)
    if "identity" in coeffs:
        w = np.asarray(coeffs["identity"], dtype=np.float32)
        delta += np.tensordot(w, template.basis("identity")[: len(w)], axes=1)
    if coeffs.get("expression"):
        basis = template.basis("expression")
        names = [str(s) for s in template.bases.get("expression_names", [])]
        index = {n: i for i, n in enumerate(names)} or {f"expression_{i}": i for i in range(len(basis))}
        for name, w in coeffs["expression"].items():
            delta += np.float32(w) * basis[index[name]]
    return delta


def apply_weights(template: Template, verts: np.ndarray | None = None, identity=None,
                  expression: dict[str, float] | None = None) -> np.ndarray:
    """Template-topology vertices with identity weights and named expression weights applied.

    Args:
        template: the template (its bases are used).
        verts: (V, 3) base vertices; default the template's rest pose.
        identity: sequence of identity-mode weights (first len(identity) modes), or None.
        expression: {ARKit name: weight}, or None.
    """
    base = template.verts if verts is None else np.asarray(verts, np.float32)
    coeffs: dict = {}
    if identity is not None and len(identity):
        coeffs["identity"] = list(identity)
    if expression:
        names = {str(s) for s in template.bases.get("expression_names", [])}
        unknown = sorted(set(expression) - names)
        if unknown:
            from topos_cli.errors import UsageError

            raise UsageError(f"unknown expression(s) {unknown}; the template has e.g. {sorted(names)[:5]}")
        coeffs["expression"] = dict(expression)
    return base + coefficient_delta(template, coeffs)


@lru_cache(maxsize=4)
def basis_bank(template: Template) -> tuple[np.ndarray, dict[str, int]]:
    """All 3-D bases of a template stacked once: ((K_total, V*3) float32, {basis name: first row}).

    Batched augmentation is then one GEMM per chunk of copies, reading the bases once per chunk instead of
    once per copy (see benchmarks/augment.py).
    """
    names = [k for k, v in template.bases.items() if v.ndim == 3]
    offsets, rows, start = {}, [], 0
    for name in names:
        basis = template.bases[name]
        offsets[name] = start
        rows.append(basis.reshape(len(basis), -1))
        start += len(basis)
    if not rows:
        return np.zeros((0, template.num_verts * 3), np.float32), {}
    return np.ascontiguousarray(np.concatenate(rows), dtype=np.float32), offsets


def coefficient_matrix(template: Template, coeffs_list: list[dict]) -> np.ndarray:
    """(B, K_total) float32 weights over `basis_bank` rows for a batch of coefficient dicts."""
    bank, offsets = basis_bank(template)
    weights = np.zeros((len(coeffs_list), len(bank)), dtype=np.float32)
    _, table = region_table(template)
    names = [str(s) for s in template.bases.get("expression_names", [])]
    index = {n: i for i, n in enumerate(names)}
    for b, coeffs in enumerate(coeffs_list):
        for name, pick in coeffs.get("regions", {}).items():
            rows = offsets[table[name]["basis"]] + np.asarray(pick["bases"], dtype=np.int64)
            np.add.at(weights[b], rows, np.asarray(pick["weights"], np.float32))
        if "identity" in coeffs:
            w = np.asarray(coeffs["identity"], np.float32)
            weights[b, offsets["identity"]: offsets["identity"] + len(w)] += w
        for name, w in coeffs.get("expression", {}).items():
            weights[b, offsets["expression"] + (index[name] if name in index else _expr_fallback(name))] += w
    return weights


def _expr_fallback(name: str) -> int:
    return int(name.rsplit("_", 1)[1])  # "expression_<i>" when the template has no names


def batch_deltas(template: Template, coeffs_list: list[dict]) -> np.ndarray:
    """(B, V, 3) float32 offsets for a batch of coefficient dicts.

    Each copy is summed on its own, basis row by basis row in bank order (no GEMM, whose rounding depends on
    the batch it runs in), so a copy's bytes do not depend on which copies share its batch: sharded, resumed
    and unsharded runs write identical files. As fast as the batched GEMM (memory-bound either way).
    """
    bank, _ = basis_bank(template)
    deltas = np.zeros((len(coeffs_list), bank.shape[1] if len(bank) else template.num_verts * 3), np.float32)
    if not coeffs_list:
        return deltas.reshape(0, template.num_verts, 3)
    scratch = np.empty(deltas.shape[1], np.float32)
    for delta, row in zip(deltas, coefficient_matrix(template, coeffs_list), strict=True):
        for k in np.flatnonzero(row):
            np.multiply(bank[k], row[k], out=scratch)
            delta += scratch
    return deltas.reshape(len(coeffs_list), template.num_verts, 3)
