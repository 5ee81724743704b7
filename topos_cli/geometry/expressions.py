"""Plausible expressions: sampling from a template's expression prior, and a landmark plausibility check.

A template may carry an `expression_prior` block in template.json (format 1; the default template's is
written by scripts/head_expressions.py):

    units      [{"name", "targets": [expression names], "max", "one_sided", "asymmetry"}]: drawn as one
               control (a left/right pair, a conjugate gaze); weight w ~ U(0, max * scale)
    exclusive  [[unit, ...]]: at most one unit of each list is active
    bounded    [{"units": [...], "max_sum"}]: those unit weights are scaled down to sum to max_sum at most
    dependent  [{"name", "of", "probability", "max_fraction"}]: an expression only as a fraction of a unit
    checks     {"up": [lm, lm], "gaps": [{"name", "upper", "lower", "pairwise", "min_cm"}]}: heights along
               the head's own up axis (landmark to landmark); a head fails a gap when the upper points are
               less than `min_cm` above the lower ones. Point sets are {"landmarks": [...]} (indices into the
               template's landmarks) or {"boundary": name} (a loop of template.json `boundaries`).

Pure numpy; every draw takes an explicit Generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from topos_cli.template import Template


@dataclass(frozen=True)
class Unit:
    """One control: its expression targets move together."""

    name: str
    targets: tuple[str, ...]
    max: float = 1.0
    one_sided: float = 0.0
    asymmetry: float = 0.0


@dataclass(frozen=True)
class Dependent:
    """An expression drawn only as a fraction of another unit's weight (ARKit's mouthClose of jawOpen)."""

    name: str
    of: str
    probability: float
    max_fraction: float


@dataclass(frozen=True)
class GapCheck:
    """Upper points must stay `min_cm` above lower points; indices are rows of ExpressionPrior.vertices."""

    name: str
    upper: np.ndarray
    lower: np.ndarray
    pairwise: bool
    min_cm: float


@dataclass(frozen=True)
class ExpressionPrior:
    """A template's parsed expression prior (see the module docstring)."""

    units: tuple[Unit, ...]
    exclusive: tuple[frozenset, ...]
    bounded: tuple[tuple[tuple[str, ...], float], ...]
    dependent: tuple[Dependent, ...]
    vertices: np.ndarray  # (C,) template vertices the checks read
    up: tuple[int, int]  # rows of `vertices`: the up axis runs from the first to the second
    checks: tuple[GapCheck, ...]


@lru_cache(maxsize=8)
def expression_prior(template: Template) -> ExpressionPrior | None:
    """The template's parsed `expression_prior`, or None if it declares none."""
    block = template.meta.get("expression_prior")
    if not block:
        return None
    units = tuple(Unit(u["name"], tuple(u["targets"]), float(u.get("max", 1.0)), float(u.get("one_sided", 0.0)),
                       float(u.get("asymmetry", 0.0))) for u in block.get("units", []))
    dependent = tuple(Dependent(d["name"], d["of"], float(d.get("probability", 1.0)), float(d["max_fraction"]))
                      for d in block.get("dependent", []))
    bounded = tuple((tuple(b["units"]), float(b["max_sum"])) for b in block.get("bounded", []))
    checks = block.get("checks", {})
    sets = []

    def points(spec: dict) -> np.ndarray:
        if "boundary" in spec:
            return np.asarray(template.meta["boundaries"][spec["boundary"]], np.int64)
        return template.landmarks[np.asarray(spec["landmarks"], np.int64)]

    raw = []
    for gap in checks.get("gaps", []):
        raw.append((gap, points(gap["upper"]), points(gap["lower"])))
        sets += [raw[-1][1], raw[-1][2]]
    up = template.landmarks[np.asarray(checks.get("up", [8, 27]), np.int64)] if checks else np.zeros(0, np.int64)
    vertices = np.unique(np.concatenate(sets + [up])) if sets else np.zeros(0, np.int64)
    row = {int(v): i for i, v in enumerate(vertices)}

    def rows(idx: np.ndarray) -> np.ndarray:
        return np.asarray([row[int(v)] for v in idx], np.int64)

    gaps = tuple(GapCheck(g["name"], rows(u), rows(lo), bool(g.get("pairwise", False)), float(g["min_cm"]))
                 for g, u, lo in raw)
    return ExpressionPrior(units=units, exclusive=tuple(frozenset(e) for e in block.get("exclusive", [])),
                           bounded=bounded, dependent=dependent, vertices=vertices,
                           up=(row[int(up[0])], row[int(up[1])]) if len(up) else (0, 0), checks=gaps)


def sample_expression(prior: ExpressionPrior, count: int, scale: float, rng: np.random.Generator) -> dict:
    """Draw one expression: `count` compatible units, their weights, sides and dependents.

    Args:
        prior: the template's expression prior.
        count: number of active units (a left/right pair counts once).
        scale: multiplies every unit's max weight (AugmentConfig.expression_max).
        rng: the item's generator; the number of draws depends only on its state.

    Returns:
        {expression name: weight in (0, 1]}.
    """
    active: list[Unit] = []
    for i in rng.permutation(len(prior.units)):
        unit = prior.units[int(i)]
        if len(active) == count:
            break
        if any(unit.name in group and any(a.name in group for a in active) for group in prior.exclusive):
            continue
        active.append(unit)
    weights = {u.name: float(rng.uniform(0.0, u.max * scale)) for u in active}
    for names, max_sum in prior.bounded:
        total = sum(weights.get(n, 0.0) for n in names)
        if total > max_sum:
            for n in names:
                if n in weights:
                    weights[n] *= max_sum / total
    out: dict[str, float] = {}
    for unit in active:
        targets = unit.targets
        if len(targets) > 1 and rng.random() < unit.one_sided:
            targets = (targets[int(rng.integers(len(targets)))],)
        for name in targets:
            jitter = 1.0 - unit.asymmetry * rng.random() if len(targets) > 1 else 1.0
            out[name] = min(1.0, weights[unit.name] * jitter)
    for dep in prior.dependent:
        if dep.of in weights and rng.random() < dep.probability:
            out[dep.name] = weights[dep.of] * float(rng.uniform(0.0, dep.max_fraction))
    return {k: float(v) for k, v in out.items() if v > 0.0}


def failed_checks(prior: ExpressionPrior, points: np.ndarray) -> list[str]:
    """Names of the gap checks a head fails.

    Args:
        prior: the template's expression prior.
        points: (C, 3) the head's vertices at `prior.vertices` (`head_failures` takes a whole head).
    """
    up = points[prior.up[1]] - points[prior.up[0]]
    height = points @ (up / max(float(np.linalg.norm(up)), 1e-12))
    failed = []
    for check in prior.checks:
        upper, lower = height[check.upper], height[check.lower]
        gap = (upper - lower).min() if check.pairwise else upper.min() - lower.max()
        if gap < check.min_cm:
            failed.append(check.name)
    return failed


def head_failures(prior: ExpressionPrior, verts: np.ndarray) -> list[str]:
    """`failed_checks` of a whole head (V, 3) in template order."""
    return failed_checks(prior, np.asarray(verts)[prior.vertices])
