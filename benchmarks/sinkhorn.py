"""Sinkhorn: Monge against POT and ott-jax, one table.

    .venv/bin/python benchmarks/sinkhorn.py            # the full grid (run on an idle machine)
    .venv/bin/python benchmarks/sinkhorn.py --quick    # n=500, d=2, a smoke test
    .venv/bin/python benchmarks/sinkhorn.py --sizes 500 2000 --dims 2 --dtypes float32
    .venv/bin/python benchmarks/sinkhorn.py --online-memory --online-n 30000

Problem: x ~ N(0, I), y ~ N(1, I), n = m, uniform weights, squared Euclidean cost,
epsilon = scale x mean cost (the mean of C over all pairs, in float64), stop at L1
marginal error 1e-6. Every solver is given points and returns a plan, so every wall
time includes building the cost (POT's `ot.dist` included), except `ott_geom`, which is
given the cost matrix.

POT measures the L2 norm of the column error instead of the L1 norm, so the same
`stopThr` stops it at a larger L1 error. Two POT rows: `pot` with `stopThr` = the
threshold (its own test), and `pot_l1`, the same solver with `stopThr` divided by 3,
10, 30, ... until its plan's L1 error is at most the threshold (the time of that last
run only: what a user who knew the right `stopThr` would pay). `monge_off` is Monge
with over-relaxation off (plain Sinkhorn), to show what the factor buys.

`monge_served` is the same problem through the service, as most users reach it: a real
`monge serve` (one worker, its own data dir and compile cache) on loopback, and
`Client.sinkhorn` with the same epsilon, threshold and cap. Its wall time is the
client's, from sending the points to holding the potentials (encoding, the RPC, the
worker's queue and the solve). Its plan is not sent back (n x m would dominate the
call); its L1 error and <P, C> are the server's, computed from its plan in the
solver's dtype. The summary sets it beside the in-process solve and the peers.

The summary at the end compares Monge with the fastest peer at the same tolerance on
each row: peers whose plan's L1 error is at most 2x the threshold (float rounding of a
recomputed error) and whose own verdict is converged. Each solver runs in its own process, with a time
cap for the whole process, so a slow peer cannot stall the table. Wall time is of a
second call (compile or first-call time is reported apart); a run under 0.25 s is
repeated until 1 s adds up and the median reported, for every solver alike. Marginal error (L1, rows
plus columns) and <P, C> are recomputed in float64 from each solver's plan, so all
rows are measured the same way; "rel" is |cost - cost(Monge)| / cost(Monge).
"status" is each solver's own verdict (Monge's and ott-jax's `converged`; POT's last
error below `stopThr` before its cap, plan finite): an unconverged row says so, and a
solver stopped by `--cap` prints "timed out" instead of numbers. Rows are printed as
they finish (the whole table again at the end), so a stopped run keeps its rows.

Floors, measured in the same run on the same machine with XLA: "kernel" = two reads
of an n x m array of the dtype (the two mat-vecs of a scaling iteration at memory
bandwidth); "log" = two passes of exp over n x m values (the exponentials of one
log-domain iteration). Each solver's ms/iteration (wall / iterations, fixed costs
included) is divided by the floor of its form; for Monge, "it ms" is the marginal cost
of an iteration (two fixed-length runs, 10 and 110 iterations, subtracted), which is
what the floor bounds (n <= 2000 only: on larger problems fixed costs are a few
iterations' worth, and the runs would take minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

SOLVERS = ("monge", "monge_served", "monge_off", "pot", "pot_l1", "pot_log", "ott_pc", "ott_geom")
PEERS = ("pot", "pot_l1", "pot_log", "ott_pc", "ott_geom")
FORM = {"monge": "kernel", "monge_served": "kernel", "monge_off": "kernel", "pot": "kernel", "pot_l1": "kernel", "pot_log": "log",
        "ott_pc": "log", "ott_geom": "log"}
AT_TOLERANCE = 2.0  # a peer counts as "at the tolerance" with L1 error <= this x threshold
TIGHTENINGS = 6  # pot_l1 tries stopThr = threshold / 3**k for k = 0 .. 5
# Monge's marginal ms/iteration costs 8 fixed-length runs; past this n x m (n = 2000)
# fixed costs are a few iterations' worth and wall / iterations is close to it.
MARGINAL_MAX_ELEMENTS = 4_000_000
# Runs shorter than SHORT_RUN seconds are a few scheduler ticks on a shared machine, so
# one of them can be off by 2x: they are repeated until REPEAT_BUDGET seconds add up (at
# most MAX_REPEATS runs) and the median is reported, for every solver alike.
SHORT_RUN, REPEAT_BUDGET, MAX_REPEATS = 0.25, 1.0, 41


def _data(n: int, d: int, dtype: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = rng.normal(size=(n, d)) + 1.0
    return x.astype(dtype), y.astype(dtype)


def _sqdist64(x, y):
    x, y = x.astype(np.float64), y.astype(np.float64)
    c = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * x @ y.T
    return np.maximum(c, 0.0)


def _mean_cost(x, y) -> float:
    # Mean of |x_i - y_j|^2 over all pairs, in closed form (no n x m matrix).
    x, y = x.astype(np.float64), y.astype(np.float64)
    return float((x * x).sum(1).mean() + (y * y).sum(1).mean() - 2.0 * x.mean(0) @ y.mean(0))


def _plan_stats(plan, x, y):
    plan = np.asarray(plan, dtype=np.float64)
    n, m = plan.shape
    err = np.abs(plan.sum(1) - 1.0 / n).sum() + np.abs(plan.sum(0) - 1.0 / m).sum()
    return float(err), float((plan * _sqdist64(x, y)).sum())


# ----------------------------------------------------------------------------------------
# Worker: one solver on one problem, a JSON line on stdout.


def _seconds(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _settled(wall: float, again) -> float:
    """The wall time of a run, or for a short one the median over repeats; `again()`
    repeats the same run and returns its seconds."""
    walls = [wall]
    while walls[-1] < SHORT_RUN and sum(walls) < REPEAT_BUDGET and len(walls) < MAX_REPEATS:
        walls.append(again())
    return float(np.median(walls))


def _worker(spec: dict) -> dict:
    solver, n, d, dtype = spec["solver"], spec["n"], spec["d"], spec["dtype"]
    threshold, max_iterations = spec["threshold"], spec["max_iterations"]
    x, y = _data(n, d, dtype)
    eps = spec["eps"]
    verdict = "its own stop test"  # Monge names why it stopped
    if solver.startswith("pot"):
        import ot

        a = np.full(n, 1.0 / n, dtype)
        method = "sinkhorn_log" if solver == "pot_log" else "sinkhorn"

        def run(stop_threshold):
            start = time.perf_counter()
            cost = ot.dist(x, y)  # squared Euclidean, in the dtype
            plan, log = ot.sinkhorn(a, a, cost, eps, method=method, stopThr=stop_threshold,
                                    numItermax=max_iterations, log=True)
            wall = time.perf_counter() - start
            iterations = int(log["niter"])
            # POT's own verdict: its last error below stopThr, before the cap, no NaN.
            errors = log.get("err") or []
            converged = bool(errors) and float(errors[-1]) < stop_threshold and iterations < max_iterations - 1
            return plan, wall, iterations, converged and bool(np.all(np.isfinite(plan)))

        first = 0.0
        final = threshold
        plan, wall, iterations, converged = run(final)
        if solver == "pot_l1":
            for k in range(1, TIGHTENINGS):
                if not converged or _plan_stats(plan, x, y)[0] <= threshold:
                    break
                final = threshold / 3.0**k
                plan, wall, iterations, converged = run(final)
        wall = _settled(wall, lambda: run(final)[1])
    elif solver == "monge_served":
        wall, first, iterations, err, cost, converged, verdict = _served(x, y, eps, threshold, max_iterations)
        return dict(wall=wall, first=first, iterations=iterations, error=err, cost=cost, converged=converged,
                    marginal=None, verdict=verdict)
    else:
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        xj, yj = jnp.asarray(x), jnp.asarray(y)
        if solver.startswith("monge"):
            from monge.solvers.status import Status
            from monge.solvers.sinkhorn import OTProblem, SinkhornConfig, solve

            problem = OTProblem.from_points(xj, yj)
            overrelaxation = "off" if solver == "monge_off" else "adaptive"

            def run(thr):
                config = SinkhornConfig(epsilon=eps, threshold=thr, max_iterations=max_iterations,
                                        overrelaxation=overrelaxation)
                out = solve(problem, config)
                jax.block_until_ready(out)
                return out

            start = time.perf_counter()
            run(1e30)  # same program (the threshold is traced), stops after one block
            first = time.perf_counter() - start
            start = time.perf_counter()
            out = run(threshold)
            wall = _settled(time.perf_counter() - start, lambda: _seconds(lambda: run(threshold)))
            plan, iterations = out.plan(), int(out.iterations)
            converged = bool(out.converged)
            verdict = Status(int(out.status)).name.lower()  # e.g. "stalled"
            marginal = None
            if n * n <= MARGINAL_MAX_ELEMENTS:
                marginal = _marginal_iteration_seconds(problem, eps, overrelaxation)
        else:
            from ott.geometry import geometry, pointcloud
            from ott.problems.linear import linear_problem
            from ott.solvers.linear import sinkhorn

            if solver == "ott_pc":
                geom = pointcloud.PointCloud(xj, yj, epsilon=eps)
            else:
                geom = geometry.Geometry(cost_matrix=pointcloud.PointCloud(xj, yj).cost_matrix, epsilon=eps)
            solve_ott = jax.jit(
                sinkhorn.Sinkhorn(threshold=threshold, max_iterations=max_iterations, inner_iterations=10)
            )
            problem = linear_problem.LinearProblem(geom)
            start = time.perf_counter()
            jax.block_until_ready(solve_ott(problem))  # ott's threshold is static: a full run
            first = time.perf_counter() - start
            start = time.perf_counter()
            out = solve_ott(problem)
            jax.block_until_ready(out)
            wall = _settled(time.perf_counter() - start,
                            lambda: _seconds(lambda: jax.block_until_ready(solve_ott(problem))))
            plan, iterations = out.matrix, int(out.n_iters)
            converged = bool(out.converged)
    err, cost = _plan_stats(plan, x, y)
    return dict(wall=wall, first=first, iterations=iterations, error=err, cost=cost, converged=converged,
                marginal=marginal if solver.startswith("monge") else None,
                verdict=verdict)


def _marginal_iteration_seconds(problem, eps, overrelaxation) -> float:
    """Seconds per iteration without a solve's fixed costs (building the cost and kernel,
    the final diagnostics): the difference of two fixed-length runs, divided by the
    difference in iterations. The wall time above includes those costs."""
    import jax

    from monge.solvers.sinkhorn import SinkhornConfig, solve

    def seconds(iterations):
        config = SinkhornConfig(epsilon=eps, threshold=1e-300, max_iterations=iterations,
                                stall_patience=0, overrelaxation=overrelaxation)
        jax.block_until_ready(solve(problem, config))  # compile
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            jax.block_until_ready(solve(problem, config))
            best = min(best, time.perf_counter() - start)
        return best

    return max(seconds(110) - seconds(10), 0.0) / 100


def _online_memory(n: int, d: int, iterations: int, block: int) -> None:
    import resource

    import jax
    import jax.numpy as jnp

    from monge.solvers.sinkhorn import OTProblem, SinkhornConfig, solve

    x, y = _data(n, d, "float32")
    eps = 0.1 * _mean_cost(x, y)
    problem = OTProblem.from_points(jnp.asarray(x), jnp.asarray(y))
    config = SinkhornConfig(epsilon=eps, threshold=1e-6, online=True, block_size=block,
                            max_iterations=iterations, inner_iterations=min(10, iterations))
    start = time.perf_counter()
    out = solve(problem, config)
    jax.block_until_ready(out)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    dense = 4.0 * n * n / 2**20
    print(f"online n=m={n} d={d} float32 eps=0.1 x mean cost block={block}: "
          f"{int(out.iterations)} iterations in {wall:.1f} s (compile included), "
          f"marginal error {float(out.marginal_error):.2e}, {out.message}")
    print(f"peak RSS {peak:.0f} MiB (process, JAX runtime included); "
          f"a dense float32 cost matrix alone would be {dense:.0f} MiB")


# ----------------------------------------------------------------------------------------
# Driver.


def _floors(n: int, dtype: str) -> dict:
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    values = jnp.asarray(np.random.default_rng(1).random((n, n)), dtype)
    read = jax.jit(lambda c: jnp.sum(c))
    exp = jax.jit(lambda c: jnp.sum(jnp.exp(-c)))

    def best(fn):
        jax.block_until_ready(fn(values))
        times = []
        for _ in range(5):
            start = time.perf_counter()
            jax.block_until_ready(fn(values))
            times.append(time.perf_counter() - start)
        return min(times)

    return {"kernel": 2 * best(read), "log": 2 * best(exp)}


def _served(x, y, eps, threshold, max_iterations):
    """The solve through a real server on loopback: (wall, first, iterations, error, cost,
    converged, verdict) as `_worker` reports them."""
    from served import served_client

    with served_client() as client:
        def run():
            return client.sinkhorn(x, y, epsilon=eps, threshold=threshold, max_iterations=max_iterations)

        first = _seconds(run)  # compiles on the worker
        start = time.perf_counter()
        out = run()
        wall = _settled(time.perf_counter() - start, lambda: _seconds(run))
    return (wall, first, out.iterations, out.marginal_error, out.cost, out.converged,
            out.diagnostics.status)


def _run_worker(spec: dict, cap: float) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=cap)
    except subprocess.TimeoutExpired:
        return {"skipped": f"timed out: > {cap:.0f} s cap, no result"}
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return {"skipped": "error: " + (lines[-1][:60] if lines else "?")}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="n=500, d=2, both eps, both dtypes")
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000, 8000])
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 64])
    parser.add_argument("--eps", type=float, nargs="+", default=[0.1, 0.01], help="x mean cost")
    parser.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    parser.add_argument("--solvers", nargs="+", default=list(SOLVERS), choices=SOLVERS)
    parser.add_argument("--threshold", type=float, default=1e-6)
    parser.add_argument("--max-iterations", type=int, default=100_000)
    parser.add_argument("--cap", type=float, default=120.0,
                        help="seconds per solver process (import, compile and both runs)")
    parser.add_argument("--online-memory", action="store_true", help="only the online memory check")
    parser.add_argument("--online-n", type=int, default=30_000)
    parser.add_argument("--online-dim", type=int, default=2)
    parser.add_argument("--online-iterations", type=int, default=50)
    parser.add_argument("--online-block", type=int, default=1024)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return
    if args.online_memory:
        _online_memory(args.online_n, args.online_dim, args.online_iterations, args.online_block)
        return
    if args.quick:
        args.sizes, args.dims = [500], [2]

    header = (f"{'d':>3} {'n':>5} {'eps':>5} {'dtype':>7} {'solver':>9} {'wall s':>8} {'1st s':>7} "
              f"{'iters':>6} {'ms/it':>8} {'floor':>7} {'xfloor':>6} {'it ms':>7} {'xfloor':>6} "
              f"{'L1 err':>8} {'<P,C>':>12} {'rel':>8} status")
    print(header, flush=True)
    rows = []
    groups: dict = {}  # (d, n, scale, dtype) -> {solver: result}

    def emit(line):  # as each row finishes, so a run that is stopped keeps its rows
        rows.append(line)
        print(line, flush=True)

    for d in args.dims:
        for n in args.sizes:
            for dtype in args.dtypes:
                floors = _floors(n, dtype)
                for scale in args.eps:
                    x, y = _data(n, d, dtype)
                    eps = scale * _mean_cost(x, y)
                    reference = None
                    results = groups.setdefault((d, n, scale, dtype), {})
                    for solver in args.solvers:
                        spec = dict(solver=solver, n=n, d=d, dtype=dtype, eps=eps,
                                    threshold=args.threshold, max_iterations=args.max_iterations)
                        print(f"running {spec}", file=sys.stderr, flush=True)
                        result = _run_worker(spec, args.cap)
                        prefix = f"{d:>3} {n:>5} {scale:>5g} {dtype:>7} {solver:>9}"
                        if "skipped" in result:
                            emit(f"{prefix} {result['skipped']}")
                            continue
                        results[solver] = result
                        if solver == "monge" and result["converged"]:
                            reference = result["cost"]
                        per_it = result["wall"] / max(result["iterations"], 1)
                        floor = floors[FORM[solver]]
                        rel = abs(result["cost"] - reference) / reference if reference else float("nan")
                        status = "converged" if result["converged"] else f"NOT CONVERGED ({result['verdict']})"
                        marginal = result.get("marginal")
                        marginal_cols = (f"{marginal * 1e3:>7.3f} {marginal / floor:>6.2f}" if marginal is not None
                                         else f"{'-':>7} {'-':>6}")
                        emit(
                            f"{prefix} {result['wall']:>8.3f} {result['first']:>7.2f} "
                            f"{result['iterations']:>6d} {per_it * 1e3:>8.3f} {floor * 1e3:>7.3f} "
                            f"{per_it / floor:>6.2f} {marginal_cols} {result['error']:>8.1e} {result['cost']:>12.6g} "
                            f"{rel:>8.1e} {status}"
                        )
    print("\n" + header)  # the whole table once more, together
    print("\n".join(rows))
    _summary(groups, args.threshold)


def _summary(groups: dict, threshold: float) -> None:
    """Monge in-process and served against the fastest peer at the same tolerance, row by
    row, and the medians; the issue's target is served <= 1.1 x in-process + 5 ms."""
    print(f"\nMonge against the fastest peer at the tolerance (L1 error <= {AT_TOLERANCE:g} x {threshold:g}, "
          "converged by its own test)")
    print(f"{'d':>3} {'n':>5} {'eps':>5} {'dtype':>7} {'monge s':>8} {'L1 err':>8} {'peer':>9} "
          f"{'peer s':>8} {'ratio':>6} {'off s':>8} {'served s':>8} {'srv/in':>6} {'srv/peer':>8} {'target':>6}")
    ratios, served_ratios, served_peer = [], [], []
    for (d, n, scale, dtype), results in groups.items():
        monge = results.get("monge")
        at_tolerance = {name: r for name, r in results.items()
                        if name in PEERS and r["converged"] and r["error"] <= AT_TOLERANCE * threshold}
        off = results.get("monge_off")
        off_s = f"{off['wall']:>8.3f}" if off else f"{'-':>8}"
        prefix = f"{d:>3} {n:>5} {scale:>5g} {dtype:>7}"
        if monge is None or not monge["converged"]:
            verdict = "no result" if monge is None else monge["verdict"]
            print(f"{prefix} Monge not converged ({verdict})")
            continue
        served = results.get("monge_served")
        peer_name, peer = (min(at_tolerance.items(), key=lambda item: item[1]["wall"]) if at_tolerance
                           else ("none", None))
        served_cols = f"{'-':>8} {'-':>6} {'-':>8} {'-':>6}"
        if served is not None and served["converged"]:
            over = served["wall"] / monge["wall"]
            served_ratios.append(over)
            versus = served["wall"] / peer["wall"] if peer else float("nan")
            if peer:
                served_peer.append(versus)
            met = "met" if served["wall"] <= 1.1 * monge["wall"] + 0.005 else "MISSED"
            served_cols = f"{served['wall']:>8.3f} {over:>6.2f} {versus:>8.2f} {met:>6}"
        elif served is not None:
            served_cols = f"  served not converged ({served['verdict']})"
        if peer is None:
            print(f"{prefix} {monge['wall']:>8.3f} {monge['error']:>8.1e} {'none':>9} {'-':>8} {'-':>6} {off_s} "
                  f"{served_cols}  (no peer reached the tolerance)")
            continue
        ratio = monge["wall"] / peer["wall"]
        ratios.append(ratio)
        print(f"{prefix} {monge['wall']:>8.3f} {monge['error']:>8.1e} {peer_name:>9} {peer['wall']:>8.3f} "
              f"{ratio:>6.2f} {off_s} {served_cols}")
    if ratios:
        print(f"median Monge / fastest peer over {len(ratios)} rows with a peer at the tolerance: "
              f"{float(np.median(ratios)):.2f}; worst {max(ratios):.2f}")
    if served_ratios:
        print(f"served / in-process over {len(served_ratios)} rows: median {float(np.median(served_ratios)):.2f}, "
              f"worst {max(served_ratios):.2f}")
    if served_peer:
        print(f"served / fastest peer over {len(served_peer)} rows: median {float(np.median(served_peer)):.2f}, "
              f"worst {max(served_peer):.2f}")


if __name__ == "__main__":
    main()
