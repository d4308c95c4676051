"""SparsityConstrainedTransportRequest -> validated call -> solver -> response.

The solver (`monge.solvers.sparsity_constrained`) runs as one watched solve
(`runtime.watch`): the program an in-process call runs, asking between L-BFGS
iterations whether `stop` is set, so a cancellation or a deadline ends it within
about a second. Its plan has exactly k entries per column, some of them zero; only
the nonzero ones are sent.
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
from monge.server.runtime.watch import watching
from monge.solvers.sparsity_constrained import SparsityConstrainedConfig
from monge.v1 import diagnostics_pb2, sinkhorn_pb2, sparsity_constrained_pb2 as pb

# Unset settings take the solver's defaults.
DEFAULTS = SparsityConstrainedConfig()

_FORMULATIONS = {
    pb.SPARSITY_FORMULATION_UNSPECIFIED: "semi_dual",
    pb.SPARSITY_FORMULATION_SEMI_DUAL: "semi_dual",
    pb.SPARSITY_FORMULATION_DUAL: "dual",
}


@dataclasses.dataclass(frozen=True)
class SparsityCall(v.TransportArrays):
    """A validated request: arrays in one float dtype, plain settings."""

    cost: str
    gamma: float
    k: int
    formulation: str
    threshold: float
    max_iterations: int



def parse(request: pb.SparsityConstrainedTransportRequest, config: ServerConfig) -> SparsityCall:
    errors = v.Violations()
    x, y, cost_matrix, shape, dtype = v.points_or_matrix(request, errors, config)
    n, m = shape
    if n * m > config.max_dense_elements:
        errors.add("cost_matrix" if cost_matrix is not None else "x",
                   f"n * m = {n * m:,} is over this server's limit of {config.max_dense_elements:,} "
                   "(max_dense_elements) for a dense solve")
    a, b = v.both_weights(request, shape, errors, balanced=True)
    v.choice(request, "cost", v.COSTS, errors, None)
    formulation = v.choice(request, "formulation", _FORMULATIONS, errors, "semi_dual")
    gamma = v.positive_setting(request, "gamma", DEFAULTS.gamma, errors)
    threshold = v.positive_setting(request, "threshold", DEFAULTS.threshold, errors)
    max_iterations = v.iteration_cap(request, DEFAULTS.max_iterations, errors, config)
    k = None
    with errors.check():
        # k is a column's number of nonzeros: at most n, the length of a column.
        k = v.integer_in_range(v.optional_value(request, "k", DEFAULTS.k), "k", 1, n)
    if k is not None:
        needed = limits.sparsity_constrained(n, m, k, np.dtype(dtype).itemsize)
        if needed > config.max_request_memory_bytes and n * m <= config.max_dense_elements:
            errors.add("cost_matrix" if cost_matrix is not None else "x",
                       limits.over_budget(needed, config.max_request_memory_bytes, f"a dense {n:,} x {m:,} solve"))
        plan_bytes = m * k * (16 + np.dtype(dtype).itemsize)
        if plan_bytes > config.max_message_bytes:
            errors.add("k", f"the plan could take {plan_bytes:,} bytes, over the message limit "
                            f"of {config.max_message_bytes:,}")
    if cost_matrix is None and not errors.items:
        v.check_costs_finite(x, y, 1.0 if request.cost == sinkhorn_pb2.COST_FUNCTION_EUCLIDEAN else 2.0,
                           dtype, errors)
    errors.raise_if_any()
    return SparsityCall(
        **v.arrays_in(dtype, x=x, y=y, cost_matrix=cost_matrix, a=a, b=b),
        cost="matrix" if cost_matrix is not None else v.COSTS[request.cost],
        gamma=gamma, k=k, formulation=formulation, threshold=threshold, max_iterations=max_iterations,
    )


def run(call: SparsityCall, stop, progress=None):
    """Solve on this process's JAX device as one watched solve; blocking."""
    from monge.solvers.sinkhorn import make_problem
    from monge.solvers.sparsity_constrained import solve

    if stop.is_set():
        return {"status": int(Status.CANCELLED), "message": Status.CANCELLED.message,
                "shape": call.shape}, 0.0
    started = time.perf_counter()
    problem = make_problem(call.x, call.y, call.a, call.b, call.cost_matrix,
                           call.cost if call.cost != "matrix" else "sqeuclidean")
    config = SparsityConstrainedConfig(gamma=call.gamma, k=call.k, threshold=call.threshold,
                                       formulation=call.formulation, max_iterations=call.max_iterations)
    with watching(stop, progress) as watch:
        out = solve(problem, config, watch)
        int(out.status)  # blocks until the device is done, while the watch is registered
    result = {
        name: np.asarray(getattr(out, name))
        for name in ("rows", "cols", "values", "alpha", "beta", "cost", "objective", "dual_objective",
                     "marginal_error", "max_nonzeros_per_column", "iterations", "support_iterations",
                     "status")
    } | {"message": out.message, "shape": out.shape}
    keep = result["values"] != 0  # k entries per column, some of them zero
    for name in ("rows", "cols", "values"):
        result[name] = result[name][keep]
    if progress is not None:
        progress(iteration=int(result["iterations"]), error=float(result["marginal_error"]))
    return result, time.perf_counter() - started


def encode_response(result) -> pb.SparsityConstrainedTransportResponse:
    out, seconds = result
    status = int(out["status"])
    response = pb.SparsityConstrainedTransportResponse(
        diagnostics=diagnostics_pb2.SolverDiagnostics(
            status=solver_status(status),
            message=out["message"],
            converged=status == Status.CONVERGED,
            iterations=int(out.get("iterations", 0)),
            error=float(out.get("marginal_error", math.nan)),
            solve_seconds=seconds,
        ),
    )
    if "values" not in out:  # cancelled before it started
        response.cost = response.objective = response.dual_objective = math.nan
        response.marginal_error = math.nan
        response.plan.CopyFrom(v.encode_sparse(out["shape"], [], [], np.zeros(0)))
        return response
    response.plan.CopyFrom(v.encode_sparse(out["shape"], out["rows"], out["cols"], out["values"]))
    response.cost = float(out["cost"])
    response.objective = float(out["objective"])
    response.dual_objective = float(out["dual_objective"])
    response.marginal_error = float(out["marginal_error"])
    response.max_nonzeros_per_column = int(out["max_nonzeros_per_column"])
    response.support_iterations = int(out["support_iterations"])
    response.alpha.CopyFrom(encode(out["alpha"]))
    response.beta.CopyFrom(encode(out["beta"]))
    return response


__all__ = ["SparsityCall", "parse", "run", "encode_response"]
