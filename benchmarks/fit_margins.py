"""The margins of the tests whose outcome depends on an optimisation reaching a target in a
fixed number of steps (Var-RUOT fits, score-model training, FedWaD rounds), over seeds.

    .venv/bin/python benchmarks/fit_margins.py                 # seeds 0-4, every fit (~4 min, 2 cores)
    .venv/bin/python benchmarks/fit_margins.py --seeds 10 --only ruot
    .venv/bin/python benchmarks/fit_margins.py --no-x64        # float64 off: other rounding

Each test module names its fits in `FITS` (name -> function of a seed returning the
test's checks, tests/fit_checks.py); seed 0 is what the test itself runs. A row is one
check: what it wants, the value on each seed, and the worst margin (the slack as a fraction
of the limit, or the plain slack for a limit of 0; 0 is on the edge, negative a failure). A fit that fails on some seeds is fragile: rounding that
differs between machines moves a few-hundred-step fit as much as a new seed does, so the
fit is what to fix, not the limit. The tests run with float64 enabled (tests/conftest.py),
and so does this script unless --no-x64; the float32 fits then round differently, a
stand-in for another machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
MODULES = [
    "tests/solvers/ruot/test_fit.py",
    "tests/solvers/pfode/test_model.py",
    "tests/server/test_pfode_rpc.py",
    "tests/solvers/test_fedwad.py",
]


def load(path: str):
    spec = importlib.util.spec_from_file_location(pathlib.Path(path).stem, REPO / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    parser.add_argument("--only", default="", help="run the fits whose name contains this")
    parser.add_argument("--no-x64", action="store_true", help="leave float64 off (the tests turn it on)")
    args = parser.parse_args(argv)

    import jax

    jax.config.update("jax_enable_x64", not args.no_x64)
    sys.path.insert(0, str(REPO / "tests"))
    fits = {name: fit for path in MODULES for name, fit in load(path).FITS.items() if args.only in name}

    print(f"seeds 0-{args.seeds - 1}, float64 {'off' if args.no_x64 else 'on'}; "
          "margin = slack / |limit| (the plain slack for a limit of 0); worst over the seeds")
    failures = 0
    for name, fit in fits.items():
        started = time.perf_counter()
        runs = [fit(seed) for seed in range(args.seeds)]
        seconds = (time.perf_counter() - started) / args.seeds
        print(f"\n{name}  ({seconds:.1f} s a fit)")
        print(f"  {'check':<46} {'wanted':>12} " + " ".join(f"{f'seed {s}':>10}" for s in range(args.seeds))
              + f" {'worst margin':>13}")
        for i, check in enumerate(runs[0]):
            values = [run[i].value for run in runs]
            worst = min(run[i].margin for run in runs)
            failed = sum(not run[i].holds for run in runs)
            failures += failed
            flag = f"  FAILS on {failed}" if failed else ""
            wanted = f"{check.sense} {check.limit:.4g}"
            print(f"  {check.name:<46} {wanted:>12} " + " ".join(f"{v:>10.4g}" for v in values)
                  + f" {worst:>13.3g}{flag}")
    print(f"\n{failures} failed checks" if failures else "\nevery check holds on every seed")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
