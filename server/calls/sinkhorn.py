"""SinkhornRequest -> validated call -> solver -> SinkhornResponse.

`parse` checks everything before any device work; `run` is the only place that calls
the solver; `encode` builds the reply. The servicer strings the three together.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from monge.v1.codec import encode, encode_into
from monge.server.statuses import solver_status
from monge.solvers.sinkhorn import SinkhornConfig
from monge.solvers.sns import SNSConfig
from monge.solvers.status import Status
from monge.server import limits
from monge.server.calls import common as v
from monge.server.runtime.chunked import run_in_chunks
from monge.server.runtime.watch import watching
from monge.server.config import ServerConfig
from monge.server.errors import InvalidArgument
from monge.v1 import diagnostics_pb2, sinkhorn_pb2

# Unset settings take the solver's defaults (SNS's own where they differ).
DEFAULTS = SinkhornConfig()
SNS_DEFAULTS = SNSConfig()
# More stages start at epsilon / 0.3**20 > 10**10 epsilon: nothing left to gain.
MAX_SCALING_STAGES = 20
# Methods that can compute the cost in blocks, and the block (rows) they use.
ONLINE_METHODS = ("auto", "log")
ONLINE_BLOCK = 1024

_METHODS = {
    sinkhorn_pb2.SINKHORN_METHOD_UNSPECIFIED: "auto",
    sinkhorn_pb2.SINKHORN_METHOD_AUTO: "auto",
    sinkhorn_pb2.SINKHORN_METHOD_KERNEL: "kernel",
    sinkhorn_pb2.SINKHORN_METHOD_LOG: "log",
    sinkhorn_pb2.SINKHORN_METHOD_SNS: "sns",
}

_METHOD_NUMBERS = {name: number for number, name in _METHODS.items() if number}

_OVERRELAXATION = {
    sinkhorn_pb2.OVERRELAXATION_UNSPECIFIED: None,  # the solver's default (adaptive)
    sinkhorn_pb2.OVERRELAXATION_ADAPTIVE: "adaptive",
    sinkhorn_pb2.OVERRELAXATION_OFF: "off",
}

@dataclasses.dataclass(frozen=True)
class SinkhornCall(v.TransportArrays):
    """A request that passed validation: arrays in one float dtype, plain settings."""

    cost: str
    epsilon: float
    threshold: float
    max_iterations: int
    reg_m: tuple[float, float] | None
    return_plan: bool
    method: str = "auto"  # auto, kernel, log (Sinkhorn iterations) or sns
    online: bool = False  # cost computed in blocks: the dense one would not fit
    top_k: int = 0  # return the plan's k largest entries per row (0: none)
    barycentric_map: bool = False  # return where each source point is sent
    overrelaxation: str = "adaptive"  # or "off" (plain updates; for SNS, its sweeps)
    scaling_stages: int = 0  # epsilon scaling before the solve at epsilon


    def solver_config(self, max_iterations: int, *, first_chunk: bool = True, **overrides) -> SinkhornConfig:
        """The solver's settings for one chunk of this call of at most `max_iterations`
        iterations (the single solve, the dynamic batch and its key all use it, so a new
        setting is added here once); `overrides` replace fields (a batch's method)."""
        settings = dict(
            epsilon=self.epsilon, threshold=self.threshold,
            reg_m=self.reg_m if self.reg_m is not None else (math.inf, math.inf),
            max_iterations=max_iterations, method=self.method, online=self.online,
            overrelaxation=self.overrelaxation,
            # Later chunks carry on from the first one's potentials, at epsilon.
            scaling_stages=self.scaling_stages if first_chunk else 0,
        )
        return SinkhornConfig(**settings | overrides)


    @property
    def wants_views(self) -> bool:
        """Whether the reply carries a view of the plan (dense, top-k or barycentric)."""
        return self.return_plan or bool(self.top_k) or self.barycentric_map

    def reply_bytes(self) -> int:
        """About how large the reply's arrays will be: potentials and the views asked for."""
        n, m = self.shape
        itemsize = self.dtype.itemsize
        dimension = self.x.shape[1] if self.barycentric_map else 0
        plan = n * m * itemsize if self.return_plan else 0
        return (n + m) * itemsize + plan + limits.views_output(n, self.top_k, dimension, itemsize)


def dense_limit_message(n: int, m: int, config: ServerConfig) -> str:
    return (f"n * m = {n * m:,} is over this server's limit of {config.max_dense_elements:,} "
            "(max_dense_elements) for a dense solve")


def _route(n, m, dtype, x, cost_matrix, method, return_plan, config, errors, *, top_k=0,
           barycentric=False) -> bool:
    """Whether the call runs online (cost computed in blocks of rows). A dense solve
    must fit both `max_dense_elements` and `max_request_memory_bytes`; a call on points
    that does not fit runs online when its method allows, and is refused otherwise,
    naming the limit. The plan's views (top-k entries, barycentric map) count with the
    solve by their outputs; what they build on the way stays within the solve's peak
    (`limits.dense_sinkhorn`)."""
    itemsize = np.dtype(dtype).itemsize
    budget = config.max_request_memory_bytes
    d = 0 if x is None else x.shape[1]
    rows, cols = (n, m) if method == "sns" else padded_shape(n, m, d, itemsize)  # what `run` solves
    views = dict(top_k=top_k, dimension=d if barycentric else 0)
    dense_bytes = limits.dense_sinkhorn(rows, cols, itemsize, return_plan=return_plan, sns=method == "sns",
                                        **views)
    too_many = n * m > config.max_dense_elements
    if not too_many and dense_bytes <= budget:
        return False
    if cost_matrix is None and method in ONLINE_METHODS:
        if return_plan and too_many:
            errors.add("return_plan", f"the dense plan has n * m = {n * m:,} entries, over this server's "
                                      f"limit of {config.max_dense_elements:,} (max_dense_elements)")
            return True
        online_bytes = limits.online_sinkhorn(rows, cols, x.shape[1], itemsize, block=ONLINE_BLOCK,
                                              return_plan=return_plan, **views)
        if online_bytes > budget:
            errors.add("x", limits.over_budget(online_bytes, budget, f"a {n:,} x {m:,} solve with the "
                                                                    "cost computed in blocks"))
        return True
    what = f"a dense {n:,} x {m:,} solve" + (f" (padded to {rows:,} x {cols:,})" if (rows, cols) != (n, m) else "")
    detail = (dense_limit_message(n, m, config) if too_many
              else limits.over_budget(dense_bytes, budget, what))
    if cost_matrix is not None:
        errors.add("cost_matrix", detail)
    else:
        name = sinkhorn_pb2.SinkhornMethod.Name(_METHOD_NUMBERS[method])
        errors.add("method", f"{name} needs the dense cost: {detail}; SINKHORN_METHOD_AUTO and "
                             "SINKHORN_METHOD_LOG compute it in blocks instead")
    return False


def parse(request: sinkhorn_pb2.SinkhornRequest, config: ServerConfig) -> SinkhornCall:
    errors = v.Violations()
    x, y, cost_matrix, shape, dtype = v.points_or_matrix(request, errors, config)

    method = v.choice(request, "method", _METHODS, errors, "auto")
    overrelaxation = v.choice(request, "overrelaxation", _OVERRELAXATION, errors, None)
    top_k = _top_k(request, shape, dtype, config, errors)
    barycentric = request.return_barycentric_map
    if barycentric and cost_matrix is not None:
        errors.add("return_barycentric_map", "needs points x and y: a cost matrix has no positions to average")
        barycentric = False
    online = _route(*shape, dtype, x, cost_matrix, method, request.return_plan, config, errors,
                    top_k=top_k, barycentric=barycentric)
    a, b = v.both_weights(request, shape, errors)
    v.choice(request, "cost", v.COSTS, errors, None)
    epsilon = v.positive_setting(request, "epsilon", DEFAULTS.epsilon, errors)
    threshold = v.positive_setting(request, "threshold", DEFAULTS.threshold, errors)
    max_iterations = v.iteration_cap(request, DEFAULTS.max_iterations, errors, config)
    scaling_stages = 0
    with errors.check():
        scaling_stages = v.integer_in_range(v.optional_value(request, "scaling_stages", DEFAULTS.scaling_stages),
                                            "scaling_stages", 0, MAX_SCALING_STAGES)
    if method == "sns" and scaling_stages:
        errors.add("scaling_stages", "SINKHORN_METHOD_SNS does not scale epsilon; leave scaling_stages unset "
                                     "or 0, or use another method")
    reg_m = None
    if request.HasField("reg_m"):
        sides = []
        for side in ("source", "target"):
            with errors.check():
                sides.append(v.positive(getattr(request.reg_m, side), f"reg_m.{side}", allow_inf=True))
        reg_m = tuple(sides) if len(sides) == 2 else None
    if (reg_m is None or all(math.isinf(r) for r in reg_m)) and not errors.items:
        # Balanced transport moves all of a onto all of b: unequal masses never converge.

        v.check_equal_mass(a, b, errors, remedy="; set reg_m (KL marginal penalties) for unbalanced transport")
    if method == "sns" and reg_m is not None and not all(math.isinf(r) for r in reg_m):
        # monge.solvers.sns solves balanced problems only (hard marginal constraints).
        errors.add("method", "SINKHORN_METHOD_SNS solves balanced problems only; "
                             "leave reg_m unset or use another method")
    if request.return_plan:
        plan_bytes = shape[0] * shape[1] * np.dtype(dtype).itemsize
        if plan_bytes > config.max_message_bytes:
            errors.add("return_plan", f"the dense plan would take {plan_bytes:,} bytes, over the "
                                      f"message limit of {config.max_message_bytes:,}")
    errors.raise_if_any()
    return SinkhornCall(
        **v.arrays_in(dtype, x=x, y=y, cost_matrix=cost_matrix, a=a, b=b),
        cost="matrix" if cost_matrix is not None else v.COSTS[request.cost],
        epsilon=epsilon, threshold=threshold, max_iterations=max_iterations,
        reg_m=reg_m, return_plan=request.return_plan, method=method, online=online,
        top_k=top_k, barycentric_map=barycentric,
        overrelaxation=overrelaxation or (SNS_DEFAULTS if method == "sns" else DEFAULTS).overrelaxation,
        scaling_stages=scaling_stages,
    )


def for_pair(call: SinkhornCall, x, a, y, b, config: ServerConfig, field: str) -> SinkhornCall:
    """The same settings between other point clouds (the Sinkhorn divergence's x-x and
    y-y solves), routed dense or online for their own shape; a refusal names `field`."""
    errors = v.Violations()
    online = _route(len(x), len(y), x.dtype, x, None, call.method, False, config, errors)
    if errors.items:
        raise InvalidArgument(*[(field, description) for _, description in errors.items])
    return dataclasses.replace(call, x=x, a=a, y=y, b=b, online=online, return_plan=False, top_k=0,
                               barycentric_map=False)


def _top_k(request, shape, dtype, config: ServerConfig, errors: v.Violations) -> int:
    """plan_top_k: 0 (none) or 1 <= k <= m, and a reply that fits the message limit."""
    n, m = shape
    k = request.plan_top_k
    if not 0 <= k <= m:
        errors.add("plan_top_k", f"must be in [0, {m}] (0: none; at most m = {m}, the plan's columns), got {k}")
        return 0
    reply_bytes = limits.top_k_output(n, k, np.dtype(dtype).itemsize)
    if reply_bytes > config.max_message_bytes:
        errors.add("plan_top_k", f"{n:,} x {k:,} entries would take {reply_bytes:,} bytes (row, column and "
                                 f"value each), over the message limit of {config.max_message_bytes:,}")
        return 0
    return k


def run(call: SinkhornCall, stop, progress=None):
    """Solve on this process's JAX device as one watched solve (`runtime.watch`): the
    program an in-process `solve` runs, which asks between blocks whether `stop`
    (anything with `is_set()`) is set and tells `progress(iteration=, error=)` how it
    goes. Blocking: run it off the event loop."""
    if call.method == "sns":
        return _run_sns(call, stop, progress)
    from monge.solvers.sinkhorn import make_problem, solve

    if stop.is_set():
        return _cancelled(call), {}, 0.0
    original_shape = call.shape
    call = padded_to_bucket(call)
    problem = make_problem(call.x, call.y, call.a, call.b, call.cost_matrix,
                           call.cost if call.cost != "matrix" else "sqeuclidean")
    started = time.perf_counter()
    with watching(stop, progress) as watch:
        output = solve(problem, call.solver_config(call.max_iterations), None, watch)
        int(output.status)  # blocks until the device is done, while the watch is registered
    if progress is not None:
        progress(iteration=int(output.iterations), error=float(output.marginal_error))
    n, m = original_shape
    views = plan_views(output, call, n, m) if call.wants_views else {}
    output = _to_numpy(output)
    output["f"], output["g"] = output["f"][:n], output["g"][:m]
    return output, views, time.perf_counter() - started


def plan_views(output, call: SinkhornCall, n: int, m: int) -> dict:
    """The outputs asked for on request ("plan", "sparse_plan", "barycentric_map"),
    computed from `output` of the problem as solved and cut back to the caller's n x m.

    `output` may be of the problem padded with zero-weight points (its bucket), so
    that these views share compiled programs across sizes as the solve does: padded
    rows are cut, and padded columns carry no mass (their log-plan entries are -inf,
    so the top k of a row are real columns; a row with fewer than k columns of
    positive weight may come back with fewer than k entries, the rest being zeros)."""
    views = {}
    if call.return_plan:
        views["plan"] = np.asarray(output.plan())[:n, :m]
    if call.top_k:
        rows, cols, values = (np.asarray(part) for part in output.plan_topk(call.top_k))
        keep = (rows < n) & (cols < m)
        views["sparse_plan"] = ((n, m), rows[keep], cols[keep], values[keep])
    if call.barycentric_map:
        views["barycentric_map"] = np.asarray(output.barycentric_map())[:n]
    return views


# Above this many padded elements a shape's compile time is small beside its solve.
MAX_PADDED_ELEMENTS = 16 * 1024 * 1024


def padded_shape(n: int, m: int, d: int, itemsize: int) -> tuple[int, int]:
    """The shape `padded_to_bucket` gives an n x m problem on points of dimension `d`
    (0: a cost matrix); memory estimates use it."""
    rows, cols = limits.size_bucket(n), limits.size_bucket(m)
    if rows * cols > MAX_PADDED_ELEMENTS or not limits.padding_is_cheap(n, m, rows, cols, d, itemsize):
        return n, m
    return rows, cols


def padded_to_bucket(call: SinkhornCall) -> SinkhornCall:
    """The same problem with zero-weight points added up to the size buckets, so that
    requests of arbitrary sizes share a handful of compiled programs. Zero-weight points
    carry no mass: potentials, cost and plan on the real points are unchanged."""
    n, m = call.shape
    dtype = call.dtype
    rows, cols = padded_shape(n, m, 0 if call.x is None else call.x.shape[1], dtype.itemsize)
    if (rows, cols) == (n, m):
        return call

    def weights(w, size, padded):
        w = np.full(size, 1.0 / size, dtype) if w is None else w
        return np.pad(w, (0, padded - size))

    def points(p, padded):
        return None if p is None else np.pad(p, ((0, padded - len(p)), (0, 0)))

    matrix = call.cost_matrix
    return dataclasses.replace(
        call, x=points(call.x, rows), y=points(call.y, cols),
        cost_matrix=None if matrix is None else np.pad(matrix, ((0, rows - n), (0, cols - m))),
        a=weights(call.a, n, rows), b=weights(call.b, m, cols),
    )


# SNS iterations per chunk: a warm-started chunk spends some Sinkhorn sweeps before its
# switch rule may choose Newton again, so chunks are long; one program per shape.
SNS_CHUNK = 2560
_NEWTON_COUNTS = ("sinkhorn_iterations", "newton_iterations", "cg_iterations", "newton_failures")


def _run_sns(call: SinkhornCall, stop, progress):
    """SNS in warm-started chunks so that `stop` is honoured between them; the Newton
    statistics are summed over the chunks."""
    from monge.solvers.sns import sns

    if stop.is_set():
        return _cancelled(call), {}, 0.0
    counts = dict.fromkeys(_NEWTON_COUNTS, 0)

    def solve_chunk(iterations, init):
        output = sns(
            call.x, call.y, call.a, call.b,
            cost_matrix=call.cost_matrix,
            cost=call.cost if call.cost != "matrix" else "sqeuclidean",
            epsilon=call.epsilon,
            threshold=call.threshold,
            max_iterations=iterations,
            overrelaxation=call.overrelaxation,
            init=init,
        )
        for name in _NEWTON_COUNTS:
            counts[name] += int(getattr(output, name))
        return output

    started = time.perf_counter()
    from monge.solvers.loop import stall_ceiling
    from monge.solvers.sinkhorn import STALL_PATIENCE

    # Each chunk is a fresh solve, so its own stall rule rarely sees enough iterations:
    # the chunks' errors give it one across chunks. The over-relaxation factor carries on.
    output = run_in_chunks(
        solve_chunk, lambda out: (out.f, out.g, out.omega), max_iterations=call.max_iterations, stop=stop,
        progress=progress, first_chunk=SNS_CHUNK, grow=False, stall_patience=STALL_PATIENCE,
        stall_below=stall_ceiling(call.dtype, _total_mass(call)),
    )
    views = plan_views(output, call, *call.shape) if call.wants_views else {}
    result = _to_numpy(output) | {"newton": counts | {"kept_per_row": int(output.kept_per_row)}}
    return result, views, time.perf_counter() - started


def _total_mass(call: SinkhornCall) -> float:
    """|a| + |b|, the scale of the L1 marginal error (uniform weights: 1 each)."""
    return sum(1.0 if w is None else float(np.sum(w)) for w in (call.a, call.b))


def _cancelled(call: SinkhornCall):

    dtype = call.dtype
    nan = np.asarray(np.nan, dtype)
    return {
        "f": np.zeros(call.shape[0], dtype), "g": np.zeros(call.shape[1], dtype),
        "cost": nan, "objective": nan, "marginal_error": nan,
        "iterations": np.asarray(0), "status": np.asarray(int(Status.CANCELLED)),
        "message": Status.CANCELLED.message,
    }


def _to_numpy(output):
    # Blocks until the device is done, inside the worker thread rather than the loop.
    return {
        name: np.asarray(getattr(output, name))
        for name in ("f", "g", "cost", "objective", "marginal_error", "iterations", "status")
    } | {"message": output.message}


def diagnostics(output: dict, seconds: float) -> diagnostics_pb2.SolverDiagnostics:
    """The diagnostics of a solve, from `run`'s numbers."""
    status = int(output["status"])
    return diagnostics_pb2.SolverDiagnostics(
        status=solver_status(status),
        message=output["message"],
        converged=status == Status.CONVERGED,
        iterations=int(output["iterations"]),
        error=float(output["marginal_error"]),
        solve_seconds=seconds,
    )


def encode_response(result) -> sinkhorn_pb2.SinkhornResponse:
    """`result` is what `run` returns: (numbers and potentials, views, seconds)."""

    output, views, seconds = result
    plan, sparse, moved = (views.get(name) for name in ("plan", "sparse_plan", "barycentric_map"))
    response = sinkhorn_pb2.SinkhornResponse(
        cost=float(output["cost"]),
        objective=float(output["objective"]),
        f=encode(output["f"]),
        g=encode(output["g"]),
        marginal_error=float(output["marginal_error"]),
        diagnostics=diagnostics(output, seconds),
        newton=sinkhorn_pb2.NewtonStatistics(**output["newton"]) if "newton" in output else None,
        sparse_plan=v.encode_sparse(*sparse) if sparse is not None else None,
        barycentric_map=encode(moved) if moved is not None else None,
    )
    if plan is not None:  # n x m values: written in place rather than copied in
        encode_into(response.plan, plan)
    return response


__all__ = ["SinkhornCall", "parse", "run", "encode_response", "plan_views", "for_pair", "InvalidArgument"]
