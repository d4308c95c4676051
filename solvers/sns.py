"""Sinkhorn-Newton-Sparse (Tang, Shavlovsky, Rahmanian, Tardini, Thekumparampil, Xiao
and Ying, ICLR 2024) for balanced entropic OT.

The problem and its outputs are exactly those of `monge.solvers.sinkhorn` (POT's
semantics): min <P, C> + epsilon KL(P | a b^T) over plans with marginals a, b, with
P = diag(a) exp((f + g^T - C) / epsilon) diag(b). The potentials maximise the concave
Lyapunov function

    L(f, g) = <f, a> + <g, b> - epsilon sum_ij a_i b_j exp((f_i + g_j - C_ij) / epsilon),

whose gradient is the marginal residual (a - P 1, b - P^T 1) and whose Hessian is
-(1/epsilon) [[diag(P 1), P], [P^T, diag(P^T 1)]]. Sinkhorn is block coordinate ascent
on L; it converges linearly, slowly when epsilon is small. SNS switches to Newton
steps once Sinkhorn has reached the slow linear phase:

- the switch is automatic: after every block of Sinkhorn sweeps the observed
  contraction rate predicts how many sweeps remain; Newton starts only when that
  prediction exceeds `switch_iterations` twice in a row. Fast Sinkhorn problems never
  switch, so they cost what plain Sinkhorn costs;
- the Hessian keeps the `kept_per_row` largest entries of every row of P (P is
  nearly sparse near the optimum, the paper's observation), stored as (n, K) values
  and column indices; the diagonal keeps the exact row and column sums, which makes
  the truncated matrix diagonally dominant, hence positive semi-definite, and the
  shift (H + delta I) makes it definite;
- the Newton system is solved by Jacobi-preconditioned conjugate gradients, the
  product computed by gathers and segment sums (jit-compiled; BCOO was slower);
- the step length halves until an Armijo test on L holds or the L1 gradient norm
  (the marginal error) decreases: the Armijo test alone stalls near machine
  precision, where L no longer changes in float64 while the marginals still do. A
  Newton step that finds no such length hands back to a Sinkhorn block.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from monge.solvers.loop import Status, run_until_converged
from monge.solvers.sinkhorn import OTProblem, SinkhornOutput


@dataclasses.dataclass(frozen=True, kw_only=True)
class SNSConfig:
    """Hyperparameters. Traced (no recompile): epsilon, threshold, switch_iterations,
    hessian_shift. Static: kept_per_row (a shape), the caps and block size.

    epsilon: entropic weight, absolute (cost units), > 0.
    threshold: stop when the L1 marginal error (rows + columns) is at most this.
    switch_iterations: switch to Newton when the observed Sinkhorn rate predicts more
        than this many remaining sweeps (twice in a row).
    kept_per_row: entries of each row of P kept in the sparsified Hessian; None picks
        min(m, max(32, ceil(m / 16))).
    hessian_shift: delta in (H + delta I), relative to the largest marginal.
    max_iterations: cap on Sinkhorn sweeps plus Newton steps.
    inner_iterations: Sinkhorn sweeps per block between error checks.
    max_cg_iterations: conjugate-gradient cap per Newton step.
    max_halvings: line-search cap per Newton step.
    """

    epsilon: float = 0.05
    threshold: float = 1e-6
    switch_iterations: float = 200.0
    hessian_shift: float = 1e-10
    kept_per_row: int | None = dataclasses.field(default=None, metadata=dict(static=True))
    max_iterations: int = dataclasses.field(default=10_000, metadata=dict(static=True))
    inner_iterations: int = dataclasses.field(default=10, metadata=dict(static=True))
    max_cg_iterations: int = dataclasses.field(default=500, metadata=dict(static=True))
    max_halvings: int = dataclasses.field(default=30, metadata=dict(static=True))

    def __post_init__(self):
        for name in ("epsilon", "threshold", "switch_iterations", "hessian_shift"):
            _check_positive_if_concrete(name, getattr(self, name))
        if self.kept_per_row is not None and self.kept_per_row < 1:
            raise ValueError(f"kept_per_row must be at least 1, got {self.kept_per_row}")
        for name in ("max_iterations", "inner_iterations", "max_cg_iterations", "max_halvings"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")


def _check_positive_if_concrete(name, value):
    try:
        concrete = float(value)
    except (TypeError, jax.errors.ConcretizationTypeError):
        return  # traced: validated where it was concrete
    if not concrete > 0:  # also rejects NaN
        raise ValueError(f"{name} must be positive, got {concrete}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class SNSOutput(SinkhornOutput):
    """SinkhornOutput (f, g, cost, objective, marginal_error, iterations, status,
    converged, message, plan()) plus the split of the work. `iterations` is
    Sinkhorn sweeps plus Newton steps."""

    sinkhorn_iterations: jax.Array
    newton_iterations: jax.Array
    cg_iterations: jax.Array  # summed over Newton steps
    newton_failures: jax.Array  # Newton steps whose line search found no decrease
    kept_per_row: int = dataclasses.field(default=0, metadata=dict(static=True))


# Fields marked static (the parent's mode flags, our kept_per_row) are pytree metadata.
_SNS_META = [f.name for f in dataclasses.fields(SNSOutput)
             if f.metadata.get("static") or f.name == "kept_per_row"]
jax.tree_util.register_dataclass(
    SNSOutput,
    data_fields=[f.name for f in dataclasses.fields(SNSOutput) if f.name not in _SNS_META],
    meta_fields=_SNS_META,
)
jax.tree_util.register_dataclass(
    SNSConfig,
    data_fields=["epsilon", "threshold", "switch_iterations", "hessian_shift"],
    meta_fields=["kept_per_row", "max_iterations", "inner_iterations",
                 "max_cg_iterations", "max_halvings"],
)


def default_kept_per_row(m: int) -> int:
    return min(m, max(32, math.ceil(m / 16)))


class _State(NamedTuple):
    f: jax.Array
    g: jax.Array
    error: jax.Array  # L1 marginal error at (f, g)
    newton: jax.Array  # bool: the next step is a Newton step
    slow_blocks: jax.Array  # consecutive Sinkhorn blocks predicting a long run
    sinkhorn_iterations: jax.Array
    newton_iterations: jax.Array
    cg_iterations: jax.Array
    newton_failures: jax.Array


def _log(w):
    return jnp.where(w > 0, jnp.log(jnp.where(w > 0, w, 1.0)), -jnp.inf)


@jax.jit
def _solve(problem: OTProblem, config: SNSConfig) -> SNSOutput:
    cost = problem.geometry.cost_matrix()
    dtype = cost.dtype
    n, m = cost.shape
    kept = min(m, config.kept_per_row or default_kept_per_row(m))
    a, b = problem.a.astype(dtype), problem.b.astype(dtype)
    log_a, log_b = _log(a), _log(b)
    epsilon = jnp.asarray(config.epsilon, dtype)
    threshold = jnp.asarray(config.threshold, dtype)
    shift = jnp.asarray(config.hessian_shift, dtype) * jnp.maximum(a.max(), b.max())
    block = config.inner_iterations

    def log_plan(f, g):
        return log_a[:, None] + log_b[None, :] + (f[:, None] + g[None, :] - cost) / epsilon

    def marginals(f, g):
        plan = jnp.exp(log_plan(f, g))
        return plan, plan.sum(1), plan.sum(0)

    def marginal_error(f, g):
        _, row, col = marginals(f, g)
        return jnp.sum(jnp.abs(row - a)) + jnp.sum(jnp.abs(col - b))

    # -- Sinkhorn block ------------------------------------------------------------
    def sweep(_, fg):
        f, g = fg
        f = -epsilon * logsumexp(log_b[None, :] + (g[None, :] - cost) / epsilon, axis=1)
        g = -epsilon * logsumexp(log_a[:, None] + (f[:, None] - cost) / epsilon, axis=0)
        return f, g

    def sinkhorn_block(s: _State) -> _State:
        f, g = jax.lax.fori_loop(0, block, sweep, (s.f, s.g))
        error = marginal_error(f, g)
        # Per-sweep contraction observed over the block, and the sweeps it predicts
        # until the threshold; a rate >= 1 (stalled) also counts as slow.
        rate = (error / s.error) ** (1.0 / block)
        remaining = jnp.where(
            rate < 1.0, jnp.log(threshold / error) / jnp.log(jnp.maximum(rate, 1e-300)), jnp.inf
        )
        slow = jnp.isfinite(s.error) & (remaining > config.switch_iterations)
        slow_blocks = jnp.where(slow, s.slow_blocks + 1, 0)
        return s._replace(
            f=f, g=g, error=error, newton=slow_blocks >= 2, slow_blocks=slow_blocks,
            sinkhorn_iterations=s.sinkhorn_iterations + block,
        )

    # -- Newton step ---------------------------------------------------------------
    def newton_step(s: _State) -> _State:
        plan, row, col = marginals(s.f, s.g)
        grad_f, grad_g = a - row, b - col
        values, index = jax.lax.top_k(plan, kept)  # (n, K): the sparsified Hessian
        flat_index = index.reshape(-1)
        diag_f, diag_g = row + shift, col + shift

        def hessian(v):
            vf, vg = v
            out_f = diag_f * vf + jnp.sum(values * vg[index], axis=1)
            out_g = diag_g * vg + jax.ops.segment_sum(
                (values * vf[:, None]).reshape(-1), flat_index, num_segments=m
            )
            return out_f, out_g

        rhs = (epsilon * grad_f, epsilon * grad_g)
        # Inexact Newton: solve only as accurately as the current error warrants.
        rtol = jnp.minimum(0.1, jnp.sqrt(s.error))
        (df, dg), cg_iterations = _pcg(hessian, rhs, (diag_f, diag_g), rtol,
                                       config.max_cg_iterations)

        # The Lyapunov function up to a constant, and the slope along the direction.
        value = jnp.dot(s.f, a) + jnp.dot(s.g, b) - epsilon * jnp.sum(row)
        slope = jnp.dot(grad_f, df) + jnp.dot(grad_g, dg)

        def trial(t):
            f, g = s.f + t * df, s.g + t * dg
            _, row_t, col_t = marginals(f, g)
            err = jnp.sum(jnp.abs(row_t - a)) + jnp.sum(jnp.abs(col_t - b))
            value_t = jnp.dot(f, a) + jnp.dot(g, b) - epsilon * jnp.sum(row_t)
            # Armijo on L far from the optimum (the L1 gradient norm of a good step
            # may grow there); near machine precision L stops changing in float64,
            # and a decrease of the marginal error accepts the step instead.
            ok = (value_t >= value + 1e-4 * t * slope) | (err < s.error)
            return err, ok & jnp.isfinite(err)

        def keep_halving(carry):
            t, _, ok, tries = carry
            return ~ok & (tries < config.max_halvings)

        def halve(carry):
            t, _, _, tries = carry
            err, ok = trial(t / 2)
            return t / 2, err, ok, tries + 1

        err1, ok1 = trial(jnp.ones((), dtype))
        t, err, accepted, _ = jax.lax.while_loop(
            keep_halving, halve, (jnp.ones((), dtype), err1, ok1, 0)
        )
        return s._replace(
            f=jnp.where(accepted, s.f + t * df, s.f),
            g=jnp.where(accepted, s.g + t * dg, s.g),
            error=jnp.where(accepted, err, s.error),
            # No decrease: back to a Sinkhorn block, which re-earns the switch.
            newton=accepted,
            slow_blocks=jnp.where(accepted, s.slow_blocks, 0),
            newton_iterations=s.newton_iterations + 1,
            cg_iterations=s.cg_iterations + cg_iterations,
            newton_failures=s.newton_failures + (~accepted).astype(jnp.int32),
        )

    def step(s: _State) -> _State:
        return jax.lax.cond(s.newton, newton_step, sinkhorn_block, s)

    zero = jnp.zeros((), jnp.int32)
    init = _State(
        f=jnp.zeros((n,), dtype), g=jnp.zeros((m,), dtype),
        error=jnp.full((), jnp.inf, dtype), newton=jnp.zeros((), bool), slow_blocks=zero,
        sinkhorn_iterations=zero, newton_iterations=zero, cg_iterations=zero,
        newton_failures=zero,
    )
    # One driver step is a Sinkhorn block or a Newton step; the cap is in sweeps.
    loop = run_until_converged(
        step, lambda s: s.error, init, threshold=threshold,
        max_iterations=max(1, -(-config.max_iterations // block)), inner_iterations=1,
    )
    s = loop.state
    plan = jnp.exp(log_plan(s.f, s.g))
    transport_cost = jnp.sum(plan * cost)
    ref = a[:, None] * b[None, :]
    ratio = jnp.where(plan > 0, plan / jnp.where(ref > 0, ref, 1.0), 1.0)
    kl = jnp.sum(jnp.where(plan > 0, plan * jnp.log(ratio), 0.0) - plan + ref)
    error = jnp.sum(jnp.abs(plan.sum(1) - a)) + jnp.sum(jnp.abs(plan.sum(0) - b))
    status = jnp.where(
        jnp.isfinite(transport_cost) | (loop.status != Status.CONVERGED),
        loop.status, Status.DIVERGED,
    ).astype(jnp.int32)
    return SNSOutput(
        f=s.f,
        g=s.g,
        cost=transport_cost,
        objective=transport_cost + epsilon * kl,
        marginal_error=error,
        iterations=s.sinkhorn_iterations + s.newton_iterations,
        status=status,
        problem=problem,
        epsilon=epsilon,
        sinkhorn_iterations=s.sinkhorn_iterations,
        newton_iterations=s.newton_iterations,
        cg_iterations=s.cg_iterations,
        newton_failures=s.newton_failures,
        kept_per_row=kept,
    )


def _pcg(matvec, rhs, diagonal, rtol, max_iterations):
    """Jacobi-preconditioned conjugate gradients on a pair of vectors; returns the
    solution and the iterations used."""

    def dot(u, v):
        return jnp.sum(u[0] * v[0]) + jnp.sum(u[1] * v[1])

    def precondition(r):
        return (r[0] / diagonal[0], r[1] / diagonal[1])

    x = jax.tree_util.tree_map(jnp.zeros_like, rhs)
    r = rhs
    z = precondition(r)
    target = (rtol**2) * dot(rhs, rhs)

    def keep_going(carry):
        _, r, _, _, _, it = carry
        return (dot(r, r) > target) & (it < max_iterations)

    def iterate(carry):
        x, r, z, p, rz, it = carry
        hp = matvec(p)
        step = rz / dot(p, hp)
        x = (x[0] + step * p[0], x[1] + step * p[1])
        r = (r[0] - step * hp[0], r[1] - step * hp[1])
        z = precondition(r)
        rz_new = dot(r, z)
        p = (z[0] + (rz_new / rz) * p[0], z[1] + (rz_new / rz) * p[1])
        return x, r, z, p, rz_new, it + 1

    x, _, _, _, _, iterations = jax.lax.while_loop(
        keep_going, iterate, (x, r, z, z, dot(r, z), jnp.zeros((), jnp.int32))
    )
    return x, iterations


def solve(problem: OTProblem, config: SNSConfig) -> SNSOutput:
    """SNS for a balanced problem; jit-compiled, one program per shape, dtype and
    static config fields. Checks the problem's values first while they are concrete."""
    _check_problem(problem)
    return _solve(problem, config)


def _check_problem(problem: OTProblem):
    try:
        bad_cost = not bool(jnp.all(jnp.isfinite(problem.geometry.cost_matrix())))
        bad_a = not bool(jnp.all(jnp.isfinite(problem.a) & (problem.a >= 0)))
        bad_b = not bool(jnp.all(jnp.isfinite(problem.b) & (problem.b >= 0)))
    except jax.errors.ConcretizationTypeError:
        return
    if bad_cost:
        raise ValueError("cost_matrix contains non-finite values")
    if bad_a or bad_b:
        raise ValueError(f"{'a' if bad_a else 'b'} must be finite and nonnegative")


def sns(
    x=None,
    y=None,
    a=None,
    b=None,
    *,
    cost_matrix=None,
    cost: str = "sqeuclidean",
    epsilon: float = 0.05,
    threshold: float = 1e-6,
    max_iterations: int = 10_000,
    kept_per_row: int | None = None,
    switch_iterations: float = 200.0,
) -> SNSOutput:
    """Convenience entry with `sinkhorn`'s keywords (balanced only); the service's
    `sinkhorn(..., method="sns")` maps here."""
    if cost_matrix is not None:
        problem = OTProblem.from_matrix(cost_matrix, a, b)
    else:
        problem = OTProblem.from_points(x, y, a, b, cost=cost)
    config = SNSConfig(
        epsilon=epsilon, threshold=threshold, max_iterations=max_iterations,
        kept_per_row=kept_per_row, switch_iterations=switch_iterations,
    )
    return solve(problem, config)
