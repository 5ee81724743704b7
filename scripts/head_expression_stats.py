"""How often sampled expressions make implausible heads: the old independent draws vs the expression prior.

    python scripts/head_expression_stats.py [--units 3] [--count 1000]

Prints, for `--count` draws of `--units` expressions on the default template: heads failing the prior's
landmark checks with independent ARKit draws (the sampler before the prior) and with the prior alone, then
`sample_coefficients` as `topos augment --identity-sigma 1 --expressions N` runs it (regions + identity +
prior + redraws): the redraws it needed and the failing heads left (the README's figures).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from topos_cli.geometry.augment import AugmentConfig, batch_deltas, sample_coefficients  # noqa: E402
from topos_cli.geometry.expressions import expression_prior, head_failures, sample_expression  # noqa: E402
from topos_cli.template import load_template  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--units", type=int, default=3)
    ap.add_argument("--count", type=int, default=1000)
    args = ap.parse_args(argv)
    tpl = load_template()
    prior = expression_prior(tpl)
    names = [str(s) for s in tpl.bases["expression_names"]]
    basis = tpl.basis("expression")
    n = args.units

    def independent(rng):
        chosen = rng.choice(len(names), n, replace=False)
        return {names[i]: float(w) for i, w in zip(chosen, rng.uniform(0, 1, n), strict=True)}

    for label, draw in (("independent", independent), ("prior", lambda rng: sample_expression(prior, n, 1.0, rng))):
        rng, fails, bad = np.random.default_rng(0), Counter(), 0
        for _ in range(args.count):
            expression = draw(rng)
            failed = head_failures(prior, tpl.verts + sum(w * basis[names.index(k)] for k, w in expression.items()))
            bad += bool(failed)
            fails.update(failed)
        print(f"{label:12s} {n} units: {bad}/{args.count} heads fail {dict(fails)}")
    config = AugmentConfig(regions=True, identity_sigma=1.0, expressions=n)
    coeffs = [sample_coefficients(tpl, config, np.random.default_rng(i)) for i in range(args.count)]
    bad = sum(bool(head_failures(prior, tpl.verts + d)) for s in range(0, len(coeffs), 250)
              for d in batch_deltas(tpl, coeffs[s:s + 250]))
    print(f"augment      {n} units: {sum(c['expression_rejections'] for c in coeffs)} redraws, "
          f"{bad}/{args.count} heads fail")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
