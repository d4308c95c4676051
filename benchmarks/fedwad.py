"""FedWaD against exact W2, t drawn uniformly per round versus t fixed at 0.5.

    .venv/bin/python benchmarks/fedwad.py            # d in {2, 10, 50}, n in {100, 200}
    .venv/bin/python benchmarks/fedwad.py --quick    # d in {2, 10}, n = 100, 20 rounds

Samples: x ~ N(0, I_d), y ~ N(1, 0.25 I_d), n points each, support size n (exact
interpolants). "exact" is POT's network simplex with both samples in one place.
Times are wall-clock seconds of one single-threaded run, simulation mode (no network).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import ot

from monge.solvers.fedwad import FedWadConfig, fedwad


def exact_w2(x, y):
    cost = ot.dist(x, y, metric="sqeuclidean")
    n, m = len(x), len(y)
    return float(ot.emd2(np.full(n, 1 / n), np.full(m, 1 / m), cost, numItermax=10**7)) ** 0.5


def run_case(d, n, rounds, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = 0.5 * rng.standard_normal((n, d)) + 1.0
    start = time.perf_counter()
    exact = exact_w2(x, y)
    exact_time = time.perf_counter() - start
    row = dict(d=d, n=n, rounds=rounds, exact=exact, exact_s=exact_time)
    for name, t in (("drawn", None), ("fixed", 0.5)):
        start = time.perf_counter()
        out = fedwad(x, y, config=FedWadConfig(rounds=rounds, t=t, seed=seed))
        row[name] = (out.estimate, (out.estimate - exact) / exact, out.best_round,
                     time.perf_counter() - start)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, 20 rounds")
    parser.add_argument("--rounds", type=int, default=None, help="default 100 (20 quick)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    dims, sizes = ((2, 10), (100,)) if args.quick else ((2, 10, 50), (100, 200))
    rounds = args.rounds or (20 if args.quick else 100)
    header = (f"{'d':>3} {'n':>4} {'rounds':>6} {'exact W2':>10} {'exact s':>8} | "
              f"{'drawn t':>10} {'rel err':>9} {'best':>4} {'time s':>7} | "
              f"{'t = 0.5':>10} {'rel err':>9} {'best':>4} {'time s':>7}")
    print(header)
    print("-" * len(header))
    for d in dims:
        for n in sizes:
            r = run_case(d, n, rounds, args.seed)
            cells = [f"{r['d']:>3} {r['n']:>4} {r['rounds']:>6} {r['exact']:>10.5f} "
                     f"{r['exact_s']:>8.3f}"]
            for name in ("drawn", "fixed"):
                est, rel, best, secs = r[name]
                cells.append(f"{est:>10.5f} {rel:>9.2e} {best:>4} {secs:>7.2f}")
            print(" | ".join(cells), flush=True)


if __name__ == "__main__":
    main()
