"""Entropic optimal transport (Sinkhorn), balanced and unbalanced.

Semantics are POT's (`ot.sinkhorn`, `ot.unbalanced.sinkhorn_unbalanced` with
`reg_type="kl"`): minimise over plans P

    <P, C> + epsilon KL(P | a b^T) + reg_m[0] KL(P 1 | a) + reg_m[1] KL(P^T 1 | b),

the last two terms replaced by hard marginal constraints when the problem is balanced
(reg_m infinite). `epsilon` is absolute, in cost units. The potentials f, g are those
of this KL form: P = diag(a) exp((f + g^T - C) / epsilon) diag(b). A point with zero
weight has a finite potential and an empty row or column of P.

Usage:
    problem = OTProblem(Geometry.from_points(x, y), a, b)
    out = solve(problem, SinkhornConfig(epsilon=0.05))
    out.cost, out.f, out.g, out.converged, out.plan()
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from monge.solvers.geometry import Geometry
from monge.solvers.loop import Status, run_until_converged, status_message


@dataclasses.dataclass(frozen=True)
class OTProblem:
    """Two weighted measures and the cost between them. Weights need not sum to one."""

    geometry: Geometry
    a: jax.Array
    b: jax.Array

    @classmethod
    def from_points(cls, x, y, a=None, b=None, cost="sqeuclidean") -> "OTProblem":
        return cls.create(Geometry.from_points(x, y, cost), a, b)

    @classmethod
    def from_matrix(cls, matrix, a=None, b=None) -> "OTProblem":
        return cls.create(Geometry.from_matrix(matrix), a, b)

    @classmethod
    def create(cls, geometry: Geometry, a=None, b=None) -> "OTProblem":
        n, m = geometry.shape
        dtype = geometry.dtype
        a = jnp.full((n,), 1.0 / n, dtype) if a is None else jnp.asarray(a, dtype)
        b = jnp.full((m,), 1.0 / m, dtype) if b is None else jnp.asarray(b, dtype)
        return cls(geometry, a, b)


@dataclasses.dataclass(frozen=True, kw_only=True)
class SinkhornConfig:
    """Hyperparameters. Values (epsilon, threshold, reg_m) are traced: changing them
    does not recompile. `max_iterations` and `inner_iterations` are static.

    epsilon: entropic weight, absolute (cost units), > 0.
    threshold: stop when the L1 marginal error (balanced) or the L1 residual of the
        marginal optimality conditions (unbalanced) is at most this.
    reg_m: (source, target) KL marginal penalties; `math.inf` means a hard constraint.
    """

    epsilon: float = 0.05
    threshold: float = 1e-6
    reg_m: tuple[float, float] = (math.inf, math.inf)
    max_iterations: int = dataclasses.field(default=10_000, metadata=dict(static=True))
    inner_iterations: int = dataclasses.field(default=10, metadata=dict(static=True))

    def __post_init__(self):
        reg_m = self.reg_m
        if isinstance(reg_m, (int, float)):
            object.__setattr__(self, "reg_m", (reg_m, reg_m))
        _check_positive_if_concrete("epsilon", self.epsilon)
        _check_positive_if_concrete("threshold", self.threshold)
        if isinstance(self.reg_m, (tuple, list)):
            for value in self.reg_m:
                _check_positive_if_concrete("reg_m", value)
        if min(self.max_iterations, self.inner_iterations) < 1:
            raise ValueError("max_iterations and inner_iterations must be at least 1")


def _check_positive_if_concrete(name, value):
    try:
        concrete = float(value)
    except (TypeError, jax.errors.ConcretizationTypeError):
        return  # traced under jit: validation happened where it was concrete
    if not concrete > 0:
        raise ValueError(f"{name} must be positive, got {concrete}")


@dataclasses.dataclass(frozen=True)
class SinkhornOutput:
    """The answer and its diagnostics. `plan()` is computed on demand."""

    f: jax.Array
    g: jax.Array
    cost: jax.Array  # <P, C>, the linear transport cost of the returned plan
    objective: jax.Array  # the regularised primal objective at the returned plan
    marginal_error: jax.Array
    iterations: jax.Array
    status: jax.Array
    problem: OTProblem
    epsilon: jax.Array

    @property
    def converged(self) -> jax.Array:
        return self.status == Status.CONVERGED

    @property
    def message(self) -> str:
        return status_message(int(self.status))

    def plan(self) -> jax.Array:
        return _plan(self.problem, self.f, self.g, self.epsilon)


for _cls, _static in ((OTProblem, []), (SinkhornOutput, [])):
    _fields = [f.name for f in dataclasses.fields(_cls)]
    jax.tree_util.register_dataclass(_cls, data_fields=_fields, meta_fields=_static)
jax.tree_util.register_dataclass(
    SinkhornConfig,
    data_fields=["epsilon", "threshold", "reg_m"],
    meta_fields=["max_iterations", "inner_iterations"],
)


def _log(w):
    # log 0 = -inf keeps zero-weight points out of every log-sum-exp.
    return jnp.where(w > 0, jnp.log(jnp.where(w > 0, w, 1.0)), -jnp.inf)


def _damping(reg_m, epsilon):
    """tau / (tau + epsilon): the exponent of the unbalanced scaling update (1 if tau = inf)."""
    return jnp.where(jnp.isinf(reg_m), 1.0, reg_m / (reg_m + epsilon))


def _log_plan(problem: OTProblem, cost, f, g, epsilon):
    return (
        _log(problem.a)[:, None]
        + _log(problem.b)[None, :]
        + (f[:, None] + g[None, :] - cost) / epsilon
    )


def _plan(problem, f, g, epsilon):
    return jnp.exp(_log_plan(problem, problem.geometry.cost_matrix(), f, g, epsilon))


def _marginal_targets(problem, f, g, reg_m):
    """What P 1 and P^T 1 must equal at the optimum: a exp(-f/tau1), b exp(-g/tau2)."""
    tau_a, tau_b = reg_m
    target_a = jnp.where(jnp.isinf(tau_a), problem.a, problem.a * jnp.exp(-f / tau_a))
    target_b = jnp.where(jnp.isinf(tau_b), problem.b, problem.b * jnp.exp(-g / tau_b))
    return target_a, target_b


def _kl(p, q):
    """Generalised KL divergence between nonnegative vectors or matrices."""
    ratio = jnp.where(p > 0, p / jnp.where(q > 0, q, 1.0), 1.0)
    return jnp.sum(jnp.where(p > 0, p * jnp.log(ratio), 0.0) - p + q)


@functools.partial(jax.jit)
def solve(problem: OTProblem, config: SinkhornConfig) -> SinkhornOutput:
    """Log-domain Sinkhorn iterations; jit-compiled, one program per shape and dtype."""
    cost = problem.geometry.cost_matrix()
    dtype = cost.dtype
    epsilon = jnp.asarray(config.epsilon, dtype)
    reg_m = tuple(jnp.asarray(t, dtype) for t in config.reg_m)
    damp_a, damp_b = (_damping(t, epsilon) for t in reg_m)
    log_a, log_b = _log(problem.a), _log(problem.b)

    def update_f(g):
        return -damp_a * epsilon * logsumexp(log_b[None, :] + (g[None, :] - cost) / epsilon, axis=1)

    def update_g(f):
        return -damp_b * epsilon * logsumexp(log_a[:, None] + (f[:, None] - cost) / epsilon, axis=0)

    def step(state):
        f, g = state
        f = update_f(g)
        return f, update_g(f)

    def error(state):
        # After a g-update the column conditions hold exactly; the rows carry the error.
        f, g = state
        row_mass = jnp.exp(log_a + f / epsilon) * jnp.exp(
            logsumexp(log_b[None, :] + (g[None, :] - cost) / epsilon, axis=1)
        )
        target_a, _ = _marginal_targets(problem, f, g, reg_m)
        return jnp.sum(jnp.abs(row_mass - target_a))

    n, m = cost.shape
    init = (jnp.zeros((n,), dtype), jnp.zeros((m,), dtype))
    loop = run_until_converged(
        step,
        error,
        init,
        threshold=jnp.asarray(config.threshold, dtype),
        max_iterations=config.max_iterations,
        inner_iterations=config.inner_iterations,
    )
    f, g = loop.state
    plan = jnp.exp(_log_plan(problem, cost, f, g, epsilon))
    transport_cost = jnp.sum(plan * cost)
    row, col = plan.sum(axis=1), plan.sum(axis=0)
    target_a, target_b = _marginal_targets(problem, f, g, reg_m)
    marginal_error = jnp.sum(jnp.abs(row - target_a)) + jnp.sum(jnp.abs(col - target_b))
    objective = transport_cost + epsilon * _kl(plan, problem.a[:, None] * problem.b[None, :])
    for tau, marginal, weights in ((reg_m[0], row, problem.a), (reg_m[1], col, problem.b)):
        objective = objective + jnp.where(jnp.isinf(tau), 0.0, tau * _kl(marginal, weights))
    status = jnp.where(
        jnp.isfinite(transport_cost) | (loop.status != Status.CONVERGED),
        loop.status,
        Status.DIVERGED,
    ).astype(jnp.int32)
    return SinkhornOutput(
        f=f,
        g=g,
        cost=transport_cost,
        objective=objective,
        marginal_error=marginal_error,
        iterations=loop.iterations,
        status=status,
        problem=problem,
        epsilon=epsilon,
    )


def sinkhorn(
    x=None,
    y=None,
    a=None,
    b=None,
    *,
    cost_matrix=None,
    cost: str = "sqeuclidean",
    epsilon: float = 0.05,
    threshold: float = 1e-6,
    reg_m: float | tuple[float, float] | None = None,
    max_iterations: int = 10_000,
) -> SinkhornOutput:
    """Convenience entry with the client's keywords: points or a cost matrix in."""
    if cost_matrix is not None:
        problem = OTProblem.from_matrix(cost_matrix, a, b)
    else:
        problem = OTProblem.from_points(x, y, a, b, cost=cost)
    config = SinkhornConfig(
        epsilon=epsilon,
        threshold=threshold,
        reg_m=(math.inf, math.inf) if reg_m is None else reg_m,
        max_iterations=max_iterations,
    )
    return solve(problem, config)
