"""Exact (unregularised) optimal transport: network simplex and 1-D sorting.

Two routes to the same problem, min <P, C> over plans with marginals a and b:

- `solve(problem, config)`: POT's network simplex (`ot.emd`; `ot.lp.emd2_lazy` for
  point clouds, which computes costs on the fly so that no n x m matrix is stored).
  It runs on the host, in float64. Its pivot cap is scaled with the problem size:
  POT's default (100,000) stops early from about n = 4000, silently returning a
  non-optimal plan. A problem larger than `config.max_size` is refused up front with
  a ValueError instead of running for an unbounded time.
- `solve_1d(x, y, a, b, p=...)`: the closed form on the line. Both measures are
  sorted, and the optimal plan couples equal quantiles (the north-west corner rule
  on the sorted supports), which is optimal for every cost |x - y|^p with p >= 1.
  jit-compiled; the plan has at most n + m - 1 entries.

`wasserstein(x, y, a, b, p=...)` picks the route (1-D points: sorting) and also
returns W_p = cost^(1/p).

Plans always come back sparse, as (rows, cols, values) with values > 0.
Outputs hold NumPy arrays: these solvers run on the host anyway, and the service
encodes NumPy arrays directly.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from monge.solvers.status import Status
from monge.solvers.sinkhorn import OTProblem

_POT_RESULT_OPTIMAL = 1
_POT_RESULT_MAX_ITER = 3


@dataclasses.dataclass(frozen=True, kw_only=True)
class ExactConfig:
    """Limits for the exact solvers.

    max_size: largest n or m accepted by the network simplex; a larger problem is a
        ValueError, never a long run (it is O(n^3)-ish in time and, for a cost matrix,
        O(n m) in memory).
    max_size_1d: largest n or m for the sorting route (O((n + m) log(n + m))).
    max_iterations: network simplex pivot cap; None scales it with the problem
        (`default_pivot_cap`), so that the cap is a guard against a hang rather
        than a silent early stop.
    mass_tolerance: largest relative difference of the total masses accepted.
    """

    max_size: int = 10_000
    max_size_1d: int = 10_000_000
    max_iterations: int | None = None
    mass_tolerance: float = 1e-6

    def __post_init__(self):
        if self.max_size < 1 or self.max_size_1d < 1:
            raise ValueError("max_size and max_size_1d must be at least 1")
        if self.max_iterations is not None and self.max_iterations < 1:
            raise ValueError(f"max_iterations must be positive, got {self.max_iterations}")
        if not self.mass_tolerance >= 0:
            raise ValueError(f"mass_tolerance must be >= 0, got {self.mass_tolerance}")


def default_pivot_cap(n: int, m: int) -> int:
    """Network simplex pivot cap: generous in n * m (pivots grow faster than n + m;
    100,000 is already too few at n = m = 4000)."""
    return max(100_000, 50 * n * m)


@dataclasses.dataclass(frozen=True)
class ExactOutput:
    """An exact transport plan, sparse, with diagnostics.

    cost: <P, C>.
    rows, cols, values: the plan's nonzero entries (int64, int64, float64).
    f, g: dual potentials (network simplex, POT's centring), None for the 1-D route.
    distance: W_p = cost^(1/p) when the cost is |x - y|^p (`wasserstein`), else None.
    marginal_error: L1 error of both marginals of the returned plan.
    max_iterations: the pivot cap used (None for the 1-D route).
    status: a `Status` (CONVERGED: optimal; MAX_ITERATIONS: the pivot cap was hit and
        the plan is feasible but may not be optimal; DIVERGED: POT reported an
        infeasible or unbounded problem).
    method: "network_simplex" or "sorting_1d".
    """

    cost: float
    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    f: np.ndarray | None
    g: np.ndarray | None
    distance: float | None
    p: float | None
    marginal_error: float
    max_iterations: int | None
    status: int
    message: str
    method: str
    shape: tuple[int, int]

    @property
    def converged(self) -> bool:
        return self.status == Status.CONVERGED

    @property
    def nnz(self) -> int:
        return int(self.values.shape[0])

    def plan(self) -> np.ndarray:
        """The dense plan; n x m memory, for small problems and tests only."""
        dense = np.zeros(self.shape, dtype=self.values.dtype)
        np.add.at(dense, (self.rows, self.cols), self.values)
        return dense


# -- validation ---------------------------------------------------------------------


def _weights(name: str, w, size: int) -> np.ndarray:
    if w is None:
        return np.full(size, 1.0 / size)
    w = np.asarray(w, dtype=np.float64)
    if w.shape != (size,):
        raise ValueError(f"{name} must have shape ({size},), got {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"{name} must be finite and nonnegative")
    if not w.sum() > 0:
        raise ValueError(f"{name} must have positive total mass")
    return w


def _check_masses(a, b, tolerance):
    sa, sb = a.sum(), b.sum()
    if abs(sa - sb) > tolerance * max(sa, sb):
        raise ValueError(
            f"a and b must have the same total mass (balanced OT), got {sa!r} and {sb!r}"
        )


def _check_size(n, m, limit, route):
    if max(n, m) > limit:
        raise ValueError(
            f"problem size {n} x {m} exceeds the configured maximum {limit} for {route}; "
            "use an entropic solver (sinkhorn) or raise max_size"
        )


def _check_finite(name, array):
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains non-finite values")


# -- network simplex ----------------------------------------------------------------


def solve(problem: OTProblem, config: ExactConfig = ExactConfig(), *,
          runner=None) -> ExactOutput:
    """Exact OT by network simplex (POT), on the host, in float64.

    runner: how to call the network simplex, `runner(function, *args)`; None calls it
    here. POT's network simplex is one C call that nothing can interrupt, so the
    service passes a runner that executes it in a child process it can kill
    (`monge.server.runtime.killable`). `function` and its arguments are picklable and the
    function imports only NumPy and POT."""
    n, m = problem.geometry.shape
    _check_size(n, m, config.max_size, "the network simplex")
    a = _weights("a", problem.a, n)
    b = _weights("b", problem.b, m)
    _check_masses(a, b, config.mass_tolerance)
    cap = config.max_iterations or default_pivot_cap(n, m)
    runner = runner or (lambda function, *args: function(*args))
    geometry = problem.geometry
    if geometry.matrix is None:
        x = np.asarray(geometry.x, dtype=np.float64)
        y = np.asarray(geometry.y, dtype=np.float64)
        _check_finite("x", x)
        _check_finite("y", y)
        raw = runner(network_simplex_points, x, y, a, b, geometry.cost, cap)
        shape = (x.shape[0], y.shape[0])
    else:
        cost = np.asarray(geometry.matrix, dtype=np.float64)
        _check_finite("cost_matrix", cost)
        raw = runner(network_simplex_matrix, cost, a, b, cap)
        shape = cost.shape
    return _network_simplex_output(*raw, a, b, cap, shape)


def network_simplex_matrix(cost, a, b, cap):
    """POT's network simplex on a cost matrix: (rows, cols, values, <P, C>, log), the
    plan's nonzero entries only (the dense plan stays where this runs)."""
    import ot

    with warnings.catch_warnings():
        # The result code is reported through `status`, not as a warning.
        warnings.simplefilter("ignore", UserWarning)
        plan, log = ot.emd(a, b, cost, numItermax=cap, log=True)
    rows, cols = np.nonzero(plan)
    values = plan[rows, cols]
    return rows, cols, values, float(np.sum(values * cost[rows, cols])), _log_fields(log)


def network_simplex_points(x, y, a, b, cost_name, cap):
    """POT's network simplex on point clouds, costs computed on the fly (no n x m
    matrix): as `network_simplex_matrix`."""
    import ot

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        _, log = ot.lp.emd2_lazy(
            x, y, a, b, metric=cost_name, numItermax=cap, log=True, return_matrix=True
        )
    coo = log["G"].tocoo()
    keep = coo.data > 0
    rows = coo.row[keep].astype(np.int64)
    cols = coo.col[keep].astype(np.int64)
    values = np.asarray(coo.data[keep], dtype=np.float64)
    diff = x[rows] - y[cols]
    sq = np.sum(diff * diff, axis=1)
    entry_cost = sq if cost_name == "sqeuclidean" else np.sqrt(sq)
    return rows, cols, values, float(np.sum(values * entry_cost)), _log_fields(log)


def _log_fields(log):
    return {"result_code": int(log["result_code"]), "warning": log["warning"],
            "u": np.asarray(log["u"], dtype=np.float64),
            "v": np.asarray(log["v"], dtype=np.float64)}


def _network_simplex_output(rows, cols, values, cost, log, a, b, cap, shape):
    code = int(log["result_code"])
    if code == _POT_RESULT_OPTIMAL:
        status, message = Status.CONVERGED, "optimal: the network simplex converged"
    elif code == _POT_RESULT_MAX_ITER:
        status = Status.MAX_ITERATIONS
        message = (
            f"not optimal: the network simplex hit its pivot cap ({cap}); "
            "raise max_iterations"
        )
    else:
        status = Status.DIVERGED
        message = f"failed: POT reports {log['warning']!r}"
    return ExactOutput(
        cost=cost,
        rows=rows.astype(np.int64),
        cols=cols.astype(np.int64),
        values=values,
        f=np.asarray(log["u"], dtype=np.float64),
        g=np.asarray(log["v"], dtype=np.float64),
        distance=None,
        p=None,
        marginal_error=_marginal_error(rows, cols, values, a, b),
        max_iterations=cap,
        status=int(status),
        message=message,
        method="network_simplex",
        shape=tuple(int(s) for s in shape),
    )


def _marginal_error(rows, cols, values, a, b) -> float:
    row = np.bincount(rows, weights=values, minlength=a.shape[0])
    col = np.bincount(cols, weights=values, minlength=b.shape[0])
    return float(np.abs(row - a).sum() + np.abs(col - b).sum())


# -- 1-D closed form ----------------------------------------------------------------


@jax.jit
def _sorted_coupling(x, y, a, b, p):
    """Quantile coupling of two weighted 1-D measures.

    The breakpoints of both cumulative distribution functions cut [0, total] into
    n + m intervals; on each, the quantile functions are constant, equal to one atom
    of x and one of y, which are coupled with the interval's length as mass. So
    W_p^p = sum over intervals of length * |x_i - y_j|^p. Intervals of length zero
    (shared breakpoints, zero-weight atoms) carry no mass.
    """
    ix, iy = jnp.argsort(x), jnp.argsort(y)
    cu, cv = jnp.cumsum(a[ix]), jnp.cumsum(b[iy])
    cv = cv * (cu[-1] / cv[-1])  # equal totals exactly, as the masses were checked
    ends = jnp.sort(jnp.concatenate([cu, cv]))
    starts = jnp.concatenate([jnp.zeros((1,), ends.dtype), ends[:-1]])
    mass = jnp.maximum(ends - starts, 0.0)
    # The atom whose quantile interval contains (start, end]: the first with cdf > start.
    i = jnp.minimum(jnp.searchsorted(cu, starts, side="right"), x.shape[0] - 1)
    j = jnp.minimum(jnp.searchsorted(cv, starts, side="right"), y.shape[0] - 1)
    rows, cols = ix[i], iy[j]
    cost = jnp.sum(mass * jnp.abs(x[rows] - y[cols]) ** p)
    return rows, cols, mass, cost


def solve_1d(x, y, a=None, b=None, *, p: float = 2.0,
             config: ExactConfig = ExactConfig()) -> ExactOutput:
    """Exact OT on the line for the cost |x - y|^p (p >= 1), by sorting.

    `x` (n,) and `y` (m,) (or (n, 1) and (m, 1)); weights default to uniform and
    may differ in number and value. `cost` is W_p^p, `distance` is W_p.
    """
    x = _points_1d("x", x)
    y = _points_1d("y", y)
    n, m = x.shape[0], y.shape[0]
    _check_size(n, m, config.max_size_1d, "the 1-D sorting solver")
    if not (math.isfinite(p) and p >= 1):
        raise ValueError(f"p must be a finite number >= 1, got {p}")
    a = _weights("a", a, n)
    b = _weights("b", b, m)
    _check_masses(a, b, config.mass_tolerance)
    with jax.enable_x64(True):
        rows, cols, mass, cost = _sorted_coupling(
            jnp.asarray(x), jnp.asarray(y), jnp.asarray(a), jnp.asarray(b),
            jnp.asarray(p, jnp.float64),
        )
        rows, cols, mass, cost = (np.asarray(v) for v in (rows, cols, mass, cost))
    keep = mass > 0
    rows, cols, values = rows[keep].astype(np.int64), cols[keep].astype(np.int64), mass[keep]
    cost = float(cost)
    return ExactOutput(
        cost=cost,
        rows=rows,
        cols=cols,
        values=values,
        f=None,
        g=None,
        distance=cost ** (1.0 / p),
        p=float(p),
        marginal_error=_marginal_error(rows, cols, values, a, b),
        max_iterations=None,
        status=int(Status.CONVERGED),
        message="optimal: closed form by sorting",
        method="sorting_1d",
        shape=(n, m),
    )


def _points_1d(name, x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim != 1 or x.shape[0] < 1:
        raise ValueError(f"{name} must be a nonempty 1-D array, got shape {x.shape}")
    _check_finite(name, x)
    return x


# -- Wasserstein distances ----------------------------------------------------------


def wasserstein(x, y, a=None, b=None, *, p: float = 2.0,
                config: ExactConfig = ExactConfig()) -> ExactOutput:
    """W_p between two weighted point clouds, with the Euclidean ground metric.

    1-D points go through the sorting closed form (any size up to `max_size_1d`);
    others through the network simplex with cost ||x - y||^p (point clouds with
    p = 1 or 2 never build the n x m matrix). `distance` is W_p, `cost` is W_p^p.
    """
    if not (math.isfinite(p) and p >= 1):
        raise ValueError(f"p must be a finite number >= 1, got {p}")
    x_arr, y_arr = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x_arr.ndim == 1 or (x_arr.ndim == 2 and x_arr.shape[1] == 1):
        return solve_1d(x_arr, y_arr, a, b, p=p, config=config)
    if x_arr.ndim != 2 or y_arr.ndim != 2 or x_arr.shape[1] != y_arr.shape[1]:
        raise ValueError(f"x and y must be (n, d) and (m, d), got {x_arr.shape}, {y_arr.shape}")
    _check_finite("x", x_arr)
    _check_finite("y", y_arr)
    if p == 1.0:
        problem = _host_problem(x_arr, y_arr, a, b, "euclidean")
    elif p == 2.0:
        problem = _host_problem(x_arr, y_arr, a, b, "sqeuclidean")
    else:
        _check_size(x_arr.shape[0], y_arr.shape[0], config.max_size, "the network simplex")
        diff = x_arr[:, None, :] - y_arr[None, :, :]
        matrix = np.sqrt(np.sum(diff * diff, axis=-1)) ** p
        problem = _host_problem_matrix(matrix, a, b)
    out = solve(problem, config)
    return dataclasses.replace(out, distance=max(out.cost, 0.0) ** (1.0 / p), p=float(p))


@dataclasses.dataclass(frozen=True)
class _HostGeometry:
    """The parts of `Geometry` that `solve` reads, kept as NumPy float64 so that the
    host route does not depend on JAX's x64 flag."""

    x: np.ndarray | None
    y: np.ndarray | None
    matrix: np.ndarray | None
    cost: str

    @property
    def shape(self):
        if self.matrix is not None:
            return self.matrix.shape
        return (self.x.shape[0], self.y.shape[0])


@dataclasses.dataclass(frozen=True)
class _HostProblem:
    geometry: _HostGeometry
    a: np.ndarray | None
    b: np.ndarray | None


def _host_problem(x, y, a, b, cost):
    return _HostProblem(_HostGeometry(x, y, None, cost), a, b)


def _host_problem_matrix(matrix, a, b):
    return _HostProblem(_HostGeometry(None, None, matrix, "matrix"), a, b)


def emd(cost_matrix, a=None, b=None, *, config: ExactConfig = ExactConfig(),
        runner=None) -> ExactOutput:
    """Exact OT for a given cost matrix (NumPy in, float64 throughout)."""
    matrix = np.asarray(cost_matrix, dtype=np.float64)
    if matrix.ndim != 2:
        raise ValueError(f"cost_matrix must be 2-D, got shape {matrix.shape}")
    return solve(_host_problem_matrix(matrix, a, b), config, runner=runner)
