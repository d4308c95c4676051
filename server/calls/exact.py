"""ExactTransportRequest -> validated call -> exact solver -> ExactTransportResponse.

Routes (`monge.solvers.exact`): sorting for one-dimensional points (the closed form,
any p >= 1), otherwise POT's network simplex on the host in float64, with the cost
|x - y|^p computed lazily for p = 1 and 2 and as a dense matrix for other p. Every
size limit is checked in `parse`, before any work: the network simplex is refused over
`ExactConfig.max_size` points rather than left to run for an unbounded time. POT's
network simplex is one C call that no stop flag reaches, so above `IN_PROCESS_ELEMENTS`
(n m) it runs in a child process that the worker kills when the call is cancelled or
its deadline passes (`monge.server.runtime.killable`): the worker is free again within a
poll (50 ms) instead of when the simplex ends. Smaller problems (under about 0.3 s)
run in the worker, and so does the 1-D sorting route (O(n log n)).
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from monge.v1.codec import encode
from monge.server.statuses import solver_status
from monge.solvers.status import Status
from monge.server import limits
from monge.server.calls import common as v
from monge.server.config import ServerConfig
from monge.solvers.exact import ExactConfig
from monge.v1 import diagnostics_pb2, exact_pb2, sinkhorn_pb2

LIMITS = ExactConfig()
MAX_PIVOT_CAP = 10**12
# Network simplex problems with at most this many n m entries run in the worker itself
# (measured here: 0.25-0.35 s at n = m = 1000, so a stop waits at most that long);
# larger ones in the killable child, whose start (about 2 s, once per worker and again
# after each kill, in the background) they would not pay for.
IN_PROCESS_ELEMENTS = 1_000_000

_METHODS = {
    exact_pb2.EXACT_METHOD_UNSPECIFIED: "auto",
    exact_pb2.EXACT_METHOD_AUTO: "auto",
    exact_pb2.EXACT_METHOD_NETWORK_SIMPLEX: "network_simplex",
    exact_pb2.EXACT_METHOD_SORTING_1D: "sorting_1d",
}
_METHOD_NUMBERS = {"network_simplex": exact_pb2.EXACT_METHOD_NETWORK_SIMPLEX,
                   "sorting_1d": exact_pb2.EXACT_METHOD_SORTING_1D}


@dataclasses.dataclass(frozen=True)
class ExactCall(v.TransportArrays):
    """A validated request. `p` is set for points (2 for squared Euclidean, 1 for
    Euclidean) and None for a cost matrix; `method` is the route that will run."""

    p: float | None
    method: str  # network_simplex or sorting_1d
    max_iterations: int | None



# -- parse, run, encode -----------------------------------------------------------


def parse(request: exact_pb2.ExactTransportRequest, config: ServerConfig) -> ExactCall:
    errors = v.Violations()
    x, y, cost_matrix, shape, dtype = v.points_or_matrix(request, errors, config)
    n, m = shape
    points_field = "x" if cost_matrix is None else "cost_matrix"

    a, b = v.both_weights(request, shape, errors, balanced=True)
    v.choice(request, "cost", v.COSTS, errors, None)
    method = v.choice(request, "method", _METHODS, errors, "auto")

    p = None
    if request.HasField("p"):
        p = request.p
        if not (math.isfinite(p) and p >= 1):
            errors.add("p", f"must be a finite number >= 1, got {p}")
        elif cost_matrix is not None:
            errors.add("p", "applies to points only; a cost matrix is used as given")
        elif request.cost != sinkhorn_pb2.COST_FUNCTION_UNSPECIFIED:
            errors.add("p", "give either p or cost, not both (squared Euclidean is p = 2, Euclidean p = 1)")
    elif cost_matrix is None:
        p = 1.0 if request.cost == sinkhorn_pb2.COST_FUNCTION_EUCLIDEAN else 2.0
    errors.raise_if_any()

    one_dimensional = cost_matrix is None and x.shape[1] == 1
    if method == "auto":
        method = "sorting_1d" if one_dimensional else "network_simplex"
    elif method == "sorting_1d" and not one_dimensional:
        errors.add("method", "EXACT_METHOD_SORTING_1D needs one-dimensional points (x and y of shape (n, 1))")

    if method == "sorting_1d":
        if max(n, m) > LIMITS.max_size_1d:
            errors.add("x" if n >= m else "y", f"{max(n, m):,} points are over the limit of "
                                               f"{LIMITS.max_size_1d:,} for sorting")
    else:
        if max(n, m) > LIMITS.max_size:
            field = points_field if cost_matrix is not None or n >= m else "y"
            errors.add(field, f"problem size {n} x {m} is over the network simplex's limit of "
                              f"{LIMITS.max_size:,} points per side (use Sinkhorn for larger problems)")
        else:
            dense_cost = cost_matrix is not None or p not in (1.0, 2.0)
            needed = limits.network_simplex(n, m, dense_cost=dense_cost)
            field = points_field if cost_matrix is not None else "p"
            if dense_cost and n * m > config.max_dense_elements:
                errors.add(field, f"n * m = {n * m:,} is over this server's limit of "
                                  f"{config.max_dense_elements:,} (max_dense_elements) for a dense cost matrix")
            elif needed > config.max_request_memory_bytes:
                errors.add(field, limits.over_budget(needed, config.max_request_memory_bytes,
                                                     f"the network simplex on a dense {n:,} x {m:,} cost"))
    # The plan has at most n + m - 1 entries: int64 row, int64 column, float64 value.
    plan_bytes = (n + m) * 24
    if plan_bytes > config.max_message_bytes:
        errors.add(points_field, f"the plan could take {plan_bytes:,} bytes, over the message limit "
                                 f"of {config.max_message_bytes:,}")
    max_iterations = None
    if request.HasField("max_iterations"):
        with errors.check():
            max_iterations = v.integer_in_range(request.max_iterations, "max_iterations", 1, MAX_PIVOT_CAP)
    if cost_matrix is None and not errors.items:
        v.check_costs_finite(x, y, p, np.float64, errors)
    errors.raise_if_any()
    return ExactCall(**v.arrays_in(np.float64, x=x, y=y, cost_matrix=cost_matrix, a=a, b=b),
                     p=p, method=method, max_iterations=max_iterations)


def run(call: ExactCall, stop, progress=None):
    """Solve on the host. The network simplex on a large problem runs in a killable
    child process and stops when `stop` is set; the rest checks `stop` before starting."""
    from monge.server.runtime import killable
    from monge.solvers import exact
    from monge.solvers.sinkhorn import OTProblem

    def cancelled():
        return {"status": int(Status.CANCELLED), "message": Status.CANCELLED.message,
                "method": call.method, "shape": call.shape}, 0.0

    if stop.is_set():
        return cancelled()
    started = time.perf_counter()
    config = dataclasses.replace(LIMITS, max_iterations=call.max_iterations)
    n, m = call.shape
    runner = killable.runner(stop) if n * m > IN_PROCESS_ELEMENTS else None
    try:
        if call.method == "sorting_1d":
            out = exact.solve_1d(call.x[:, 0], call.y[:, 0], call.a, call.b, p=call.p,
                                 config=config)
        elif call.cost_matrix is not None:
            out = exact.emd(call.cost_matrix, call.a, call.b, config=config, runner=runner)
        elif call.p in (1.0, 2.0):
            # Costs computed on the fly: no n x m matrix.
            cost = "euclidean" if call.p == 1.0 else "sqeuclidean"
            problem = OTProblem.from_points(call.x, call.y, call.a, call.b, cost=cost)
            out = exact.solve(problem, config, runner=runner)
        else:
            # Two n x m float64 arrays (no n x m x d difference), as server/limits.py counts.
            from scipy.spatial.distance import cdist

            cost = cdist(call.x, call.y)
            np.power(cost, call.p, out=cost)
            out = exact.emd(cost, call.a, call.b, config=config, runner=runner)
    except killable.Cancelled:
        return cancelled()
    distance = None if call.p is None else max(out.cost, 0.0) ** (1.0 / call.p)
    result = dict(
        cost=out.cost, distance=distance, rows=out.rows, cols=out.cols, values=out.values,
        f=out.f, g=out.g, marginal_error=out.marginal_error, status=out.status, message=out.message,
        method=out.method, shape=out.shape, pivot_cap=out.max_iterations or 0,
    )
    if progress is not None:
        progress(iteration=0, error=out.marginal_error)
    return result, time.perf_counter() - started


def encode_response(result) -> exact_pb2.ExactTransportResponse:
    out, seconds = result
    status = int(out["status"])
    diagnostics = diagnostics_pb2.SolverDiagnostics(
        status=solver_status(status),
        message=out["message"],
        converged=status == Status.CONVERGED,
        iterations=0,
        error=out.get("marginal_error", math.nan),
        solve_seconds=seconds,
    )
    response = exact_pb2.ExactTransportResponse(
        method=_METHOD_NUMBERS[out["method"]], diagnostics=diagnostics,
    )
    if "values" not in out:  # cancelled before it started
        response.cost = response.marginal_error = math.nan
        response.plan.CopyFrom(v.encode_sparse(out["shape"], [], [], np.zeros(0)))
        return response
    response.cost = out["cost"]
    response.marginal_error = out["marginal_error"]
    response.pivot_cap = out["pivot_cap"]
    if out["distance"] is not None:
        response.distance = out["distance"]
    response.plan.CopyFrom(v.encode_sparse(out["shape"], out["rows"], out["cols"], out["values"]))
    if out["f"] is not None:
        response.f.CopyFrom(encode(out["f"]))
        response.g.CopyFrom(encode(out["g"]))
    return response


__all__ = ["ExactCall", "parse", "run", "encode_response"]
