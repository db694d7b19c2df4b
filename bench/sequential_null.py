"""The family-wise error of `seeds=auto`'s verdicts, measured by simulating whole studies: the project's own decision
function (`peftbench.stats.decide`, which `studies/protocol.py` calls after every round) on simulated scores, not a copy.

One simulated study is one task of a select=holdout study: full FT and K other methods, each with final seeds
1..max_seeds. A run's dev score is its method's true mean plus N(0, sd) noise per seed, and every comparison is paired
with full FT's score at the same seed, so the K comparisons share the baseline's noise (correlation 1/2), as a study's
do. `decide` sees the deltas in seed order and, look by look, settles each comparison or asks for its next seed; the
deltas past a comparison's stop are never read (a look depends only on the seeds up to it), which
tests/test_sequential_null.py checks against round-by-round calls on partial data, as the planner makes them.

Under the global null every verdict a study states can be wrong, and a study errs when any one is:
  at the margin  every method's true Δ = -margin: "better", "non-inferior" and "inferior" are all wrong claims
                 (the least favourable null: each one-sided test sits on its boundary);
  at zero        every true Δ = 0: "better" and "inferior" are wrong ("non-inferior" is right).
Power: at a stated true Δ for every method, the share of comparisons that settle on the right verdict, and the mean
seeds a comparison took.

    OMP_NUM_THREADS=1 python bench/sequential_null.py                 # 20,000 studies per setting, a few minutes
    OMP_NUM_THREADS=1 python bench/sequential_null.py --studies 2000  # quicker, wider Monte Carlo error

The last line is the largest family-wise error measured over the settings, e.g.
`family-wise error 0.043 at alpha 0.05 (20000 studies)`.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from peftbench.stats import decide  # noqa: E402  (after the path: this checkout's peftbench)

WRONG = {"margin": {"better", "non-inferior", "inferior"}, "zero": {"better", "inferior"}}


def right(verdict: str, delta: float, margin: float) -> bool:
    """Whether a settled verdict is true of a method whose true difference is `delta`."""
    return {"better": delta > 0, "non-inferior": delta > -margin, "inferior": delta < -margin}.get(verdict, True)


def simulate(studies: int, methods: int, min_seeds: int, max_seeds: int, delta: float, margin: float = 1.0,
             alpha: float = 0.05, sd: float = 1.0, seed: int = 0) -> dict:
    """`studies` simulated studies, every method at true difference `delta`: the share of studies with at least one
    wrong verdict, its Monte Carlo standard error, the share of comparisons settled right, and mean seeds used."""
    rng = np.random.default_rng(seed)
    wrong_studies, right_settled, seeds_used = 0, 0, 0
    for _ in range(studies):
        full = rng.normal(0.0, sd, max_seeds)
        others = rng.normal(delta, sd, (methods, max_seeds))
        out = decide({f"m{k}": list(others[k] - full) for k in range(methods)}, margin, alpha, min_seeds, max_seeds)
        wrong_studies += any(d["settled"] and not right(d["verdict"], delta, margin) for d in out.values())
        right_settled += sum(d["settled"] and right(d["verdict"], delta, margin) for d in out.values())
        seeds_used += sum(d["n"] for d in out.values())
    fwer = wrong_studies / studies
    return {"fwer": fwer, "se": math.sqrt(max(fwer * (1 - fwer), 1e-12) / studies),
            "power": right_settled / (studies * methods), "seeds": seeds_used / (studies * methods)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--studies", type=int, default=20000, help="simulated studies per null setting (default 20000)")
    ap.add_argument("--power-studies", type=int, default=2000, help="simulated studies per power setting")
    ap.add_argument("--methods", type=int, default=6, help="methods compared with full FT (the presets: 6)")
    ap.add_argument("--margin", type=float, default=1.0)
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--sd", type=float, default=1.0, help="per-run seed noise in points (power only: the null at "
                    "the margin is scale-free)")
    args = ap.parse_args()
    settings = [(3, 10, "defaults"), (3, 20, "max_seeds=20"), (3, 4, "protocol_minilm")]
    t0, worst = time.perf_counter(), 0.0
    print(f"{args.methods} methods vs full FT, margin {args.margin:g}, alpha {args.alpha:g}, paired by seed "
          "(shared baseline)")
    for lo, hi, name in settings:
        for null, delta in (("margin", -args.margin), ("zero", 0.0)):
            r = simulate(args.studies, args.methods, lo, hi, delta, args.margin, args.alpha, args.sd, seed=hi)
            worst = max(worst, r["fwer"])
            print(f"null at {null:6s} seeds {lo}..{hi:<2d} ({name:15s}): family-wise error {r['fwer']:.4f} "
                  f"± {r['se']:.4f} (Monte Carlo se), mean seeds {r['seeds']:.2f}", flush=True)
    for lo, hi, name in settings[:2]:
        for delta in (0.0, 3.0, -3.0):
            r = simulate(args.power_studies, args.methods, lo, hi, delta, args.margin, args.alpha, args.sd, seed=7)
            goal = "better" if delta > 0 else "inferior" if delta < -args.margin else "non-inferior"
            print(f"power at true Δ {delta:+.1f} (sd {args.sd:g} per run) seeds {lo}..{hi}: {r['power']:.3f} of "
                  f"comparisons settle {goal}, mean seeds {r['seeds']:.2f}", flush=True)
    print(f"({time.perf_counter() - t0:.0f} s)")
    print(f"family-wise error {worst:.3f} at alpha {args.alpha:g} ({args.studies} studies)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
