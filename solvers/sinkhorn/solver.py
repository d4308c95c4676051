"""Entropic optimal transport (Sinkhorn), balanced and unbalanced.

Semantics are POT's (`ot.sinkhorn`, `ot.unbalanced.sinkhorn_unbalanced` with
`reg_type="kl"`): minimise over plans P

    <P, C> + epsilon KL(P | a b^T) + reg_m[0] KL(P 1 | a) + reg_m[1] KL(P^T 1 | b),

the last two terms replaced by hard marginal constraints when the problem is balanced
(reg_m infinite). `epsilon` is absolute, in cost units. The potentials f, g are those
of this KL form: P = diag(a) exp((f + g^T - C) / epsilon) diag(b). A point with zero
weight has a finite potential and an empty row or column of P.

Iterations (`SinkhornConfig.method`):
- "kernel": scaling iterations u <- a / K(b v) on a precomputed kernel, two mat-vecs
  per iteration (memory-bandwidth bound, the cheapest on CPU). Stabilised: when a
  scaling leaves a fixed range, it is absorbed into the potentials and the kernel is
  rebuilt around them by one log-domain iteration, so small epsilon cannot underflow.
- "log": log-sum-exp iterations, n m exponentials per half-iteration.
- Both over-relax their updates by default, with a factor estimated from the error's
  decay as they go (`overrelaxation`): several times fewer iterations at small epsilon.
- "auto": the kernel unless the cost range over epsilon is so large that the kernel
  would be rebuilt often, then log. Online mode always uses log iterations (an online
  kernel costs the same exponentials).

Differentiation: `objective` (the regularised OT value) is differentiable w.r.t.
points, weights, the cost matrix and epsilon by the envelope theorem: the solver's
loop runs on stopped inputs and the value carries the gradient of the dual at the
converged potentials. By default f, g, cost and the diagnostics are not
differentiated. With `SinkhornConfig(implicit_diff=True)`, f and g (hence cost and
the plan views) are differentiable too, w.r.t. points, cost matrix, weights, epsilon
and reg_m, by the implicit function theorem on the optimality conditions
(`sinkhorn_implicit`); balanced potentials then come in the gauge <a, f> = <b, g>.
Derivatives are those of the exact solution, so solve to a tight threshold.

Usage:
    problem = OTProblem(Geometry.from_points(x, y), a, b)
    out = solve(problem, SinkhornConfig(epsilon=0.05))
    out.cost, out.f, out.g, out.converged, out.plan()
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from monge.solvers.sinkhorn import overrelaxation
from monge.solvers.checks import positive_if_concrete, whole_if_concrete
from monge.solvers.problem import OTProblem, make_problem
from monge.solvers.loop import (
    Watch, final_status, improved, is_stalled, run_until_converged, stall_ceiling, start_polling, stopped,
)
from monge.solvers.status import Status, status_message
from monge.solvers.sinkhorn.implicit import gauge_shift, implicit_potentials
from monge.solvers.sinkhorn.ops import (
    CostAccess, block_rows, blocked_matvec, blocked_vecmat, kernel_rows, plan_sums,
)


METHODS = ("auto", "kernel", "log")
OVERRELAXATION = ("adaptive", "off")
STALL_PATIENCE = 200  # iterations; the default of SinkhornConfig.stall_patience


@dataclasses.dataclass(frozen=True, kw_only=True)
class SinkhornConfig:
    """Hyperparameters. Values (epsilon, threshold, reg_m, scaling_factor,
    max_iterations) are traced: changing them does not recompile. The other fields are
    static.

    epsilon: entropic weight, absolute (cost units), > 0.
    threshold: stop when the L1 marginal error (balanced) or the L1 residual of the
        marginal optimality conditions (unbalanced) is at most this, both sides
        summed. It is measured inside each iteration, for free.
    reg_m: (source, target) KL marginal penalties; `math.inf` means a hard constraint.
    method: "auto", "kernel" or "log" (see the module docstring).
    online: recompute the cost in blocks of `block_size` rows instead of storing it
        (point clouds only), so memory is O((n + m) d + block_size * max(n, m)).
    scaling_stages: epsilon scaling; solve first at epsilon / scaling_factor**k for
        k = scaling_stages .. 1, each to a loose tolerance, warm-starting the next.
        0 turns it off. Useful for small epsilon.
    implicit_diff: differentiate f, g, cost and the plan by the implicit function
        theorem (module docstring). Reverse mode then solves one (n + m) linear
        system per gradient: a direct solve for stored costs with n + m <= 2048,
        else matrix-free GMRES. Balanced potentials are returned with <a, f> = <b, g>.
    stall_patience: stop with status STALLED once the error has made no new minimum
        (by 0.1%) for this many iterations and for as many as it took to reach its
        best, that best being under sqrt(machine epsilon) x mass (`loop.is_stalled`,
        `loop.stall_ceiling`): the threshold is then out of reach at this
        precision (float32 has a floor near 2.5e-7 in L1 at n = 8000). A
        converging run, however slow, makes new minima all along and is not
        stopped. 0 turns detection off.
    overrelaxation: "adaptive" over-relaxes the updates with a factor estimated from
        the error's decay as the run goes (`overrelaxation` module): several times
        fewer iterations at small epsilon, the same answer. "off": plain Sinkhorn.
    """

    epsilon: float = 0.05
    threshold: float = 1e-6
    reg_m: tuple[float, float] = (math.inf, math.inf)
    scaling_factor: float = 0.3
    max_iterations: int = 10_000
    inner_iterations: int = dataclasses.field(default=10, metadata=dict(static=True))
    method: str = dataclasses.field(default="auto", metadata=dict(static=True))
    online: bool = dataclasses.field(default=False, metadata=dict(static=True))
    block_size: int = dataclasses.field(default=1024, metadata=dict(static=True))
    scaling_stages: int = dataclasses.field(default=0, metadata=dict(static=True))
    implicit_diff: bool = dataclasses.field(default=False, metadata=dict(static=True))
    stall_patience: int = dataclasses.field(default=STALL_PATIENCE, metadata=dict(static=True))
    overrelaxation: str = dataclasses.field(default="adaptive", metadata=dict(static=True))

    def __post_init__(self):
        reg_m = self.reg_m
        if isinstance(reg_m, (int, float)) or getattr(reg_m, "ndim", 1) == 0:
            object.__setattr__(self, "reg_m", (reg_m, reg_m))
        positive_if_concrete("epsilon", self.epsilon)
        positive_if_concrete("threshold", self.threshold)
        for value in self.reg_m:
            positive_if_concrete("reg_m", value)
        # Traced, so the loop's bounds are int32: a concrete cap is stored as an int.
        cap = whole_if_concrete("max_iterations", self.max_iterations)
        if cap is not None:
            object.__setattr__(self, "max_iterations", cap)
        if min(self.inner_iterations, self.block_size) < 1:
            raise ValueError("inner_iterations and block_size must be at least 1")
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; expected one of {METHODS}")
        if self.online and self.method == "kernel":
            raise ValueError("online mode uses log iterations; use method='auto' or 'log'")
        if self.scaling_stages < 0:
            raise ValueError("scaling_stages must be non-negative")
        if self.overrelaxation not in OVERRELAXATION:
            raise ValueError(f"unknown overrelaxation {self.overrelaxation!r}; expected one of {OVERRELAXATION}")
        if self.stall_patience < 0:
            raise ValueError("stall_patience must be non-negative (0 turns stall detection off)")
        try:
            factor = float(self.scaling_factor)
        except (TypeError, jax.errors.ConcretizationTypeError):
            return
        if not 0.0 < factor < 1.0:
            raise ValueError(f"scaling_factor must lie in (0, 1), got {factor}")


class ScaledPotentials(NamedTuple):
    """The potentials in the form the kernel iterations keep them: f = f_base + epsilon
    log u and g = g_base + epsilon log v (u = v = 1 after log-domain iterations), so
    P = diag(a u) exp((f_base + g_base^T - C) / epsilon) diag(b v).

    The views of the plan and the diagnostics are computed from this form. Rounding f
    itself to the working precision moves each plan entry by about |f| / epsilon ulps,
    the scalings by one: measured in float32, n = 8000, epsilon 0.01 x mean cost, the
    plan's L1 marginal error is 2.4e-6 from (f, g) and 6.6e-7 from this form."""

    f_base: jax.Array
    g_base: jax.Array
    u: jax.Array
    v: jax.Array

    def total(self, epsilon) -> tuple[jax.Array, jax.Array]:
        """(f, g) in the working precision."""
        return self.f_base + epsilon * jnp.log(self.u), self.g_base + epsilon * jnp.log(self.v)

    @classmethod
    def plain(cls, f, g) -> "ScaledPotentials":
        return cls(f, g, jnp.ones_like(f), jnp.ones_like(g))

    def resized(self, n: int, m: int) -> "ScaledPotentials":
        """Cut to n x m, or padded to it (padded points: base 0, scaling 1)."""
        return ScaledPotentials(_resized(self.f_base, n, 0.0), _resized(self.g_base, m, 0.0),
                                _resized(self.u, n, 1.0), _resized(self.v, m, 1.0))


def _resized(vector, size: int, fill: float):
    if vector.shape[0] >= size:
        return vector[:size]
    return jnp.pad(vector, (0, size - vector.shape[0]), constant_values=fill)


@dataclasses.dataclass(frozen=True)
class SinkhornOutput:
    """The answer and its diagnostics. Views of the plan are computed on demand.

    f, g: potentials, P = diag(a) exp((f + g^T - C) / epsilon) diag(b).
    cost: <P, C>. objective: the regularised primal objective at P (differentiable).
    marginal_error: L1 error of both marginals (balanced) or L1 residual of the
        optimality conditions P 1 = a exp(-f / reg_m) and the same for columns.
    iterations: Sinkhorn iterations taken, epsilon-scaling stages included.
    status: a `Status` code; `converged` and `message` read it.
    omega: the over-relaxation factor in force at the end (1: plain Sinkhorn); pass
        `init=(f, g, omega)` to continue a run where it stopped.
    scaled: the same potentials as `ScaledPotentials`, from which the plan's views are
        computed; None (outputs built elsewhere) means (f, g) with unit scalings.
    """

    f: jax.Array
    g: jax.Array
    cost: jax.Array
    objective: jax.Array
    marginal_error: jax.Array
    iterations: jax.Array
    status: jax.Array
    omega: jax.Array
    problem: OTProblem
    epsilon: jax.Array
    online: bool = dataclasses.field(default=False, metadata=dict(static=True))
    block_size: int = dataclasses.field(default=1024, metadata=dict(static=True))
    scaled: ScaledPotentials | None = None

    @property
    def converged(self) -> jax.Array:
        return self.status == Status.CONVERGED

    @property
    def message(self) -> str:
        return status_message(int(self.status))

    @property
    def potentials(self) -> ScaledPotentials:
        return self.scaled if self.scaled is not None else ScaledPotentials.plain(self.f, self.g)

    def resized(self, n: int, m: int, problem: OTProblem) -> "SinkhornOutput":
        """The output with its potentials cut (or padded with zero-weight points) to
        n x m, on `problem` of that shape."""
        return dataclasses.replace(self, f=_resized(self.f, n, 0.0), g=_resized(self.g, m, 0.0),
                                   scaled=self.potentials.resized(n, m), problem=problem)

    def plan(self) -> jax.Array:
        """The dense (n, m) plan. Memory n m; avoid in online mode for large sizes."""
        return _plan(self.problem, self.potentials, self.epsilon)

    def plan_topk(self, k: int) -> tuple[jax.Array, jax.Array, jax.Array]:
        """The k largest entries of each row of the plan as (rows, cols, values), each
        of length n k (row-major), computed in blocks in online mode."""
        return _plan_topk(self.problem, self.potentials, self.epsilon, k, self.online, self.block_size)

    def barycentric_map(self) -> jax.Array:
        """(n, d): for each source point, the plan's average of the target points,
        (P y)_i / (P 1)_i. Points with an empty row map to themselves."""
        return _barycentric_map(self.problem, self.potentials, self.epsilon, self.online, self.block_size)


jax.tree_util.register_dataclass(
    SinkhornOutput,
    data_fields=[
        "f", "g", "cost", "objective", "marginal_error", "iterations", "status", "omega",
        "problem", "epsilon", "scaled",
    ],
    meta_fields=["online", "block_size"],
)
jax.tree_util.register_dataclass(
    SinkhornConfig,
    data_fields=["epsilon", "threshold", "reg_m", "scaling_factor", "max_iterations"],
    meta_fields=[
        "inner_iterations", "method", "online", "block_size",
        "scaling_stages", "implicit_diff", "stall_patience", "overrelaxation",
    ],
)


def _log(w):
    # log 0 = -inf keeps zero-weight points out of every log-sum-exp.
    return jnp.where(w > 0, jnp.log(jnp.where(w > 0, w, 1.0)), -jnp.inf)


def _damping(reg_m, epsilon):
    """tau / (tau + epsilon): the exponent of the unbalanced scaling update (1 if tau = inf)."""
    return jnp.where(jnp.isinf(reg_m), 1.0, reg_m / jnp.where(jnp.isinf(reg_m), 1.0, reg_m + epsilon))


def _marginal_target(weights, potential, tau):
    """What a marginal must equal at the optimum: w exp(-f / tau), or w if tau = inf."""
    safe_tau = jnp.where(jnp.isinf(tau), 1.0, tau)
    return jnp.where(jnp.isinf(tau), weights, weights * jnp.exp(-potential / safe_tau))


def _kl(p, q):
    """Generalised KL divergence between nonnegative vectors."""
    ratio = jnp.where(p > 0, p / jnp.where(q > 0, q, 1.0), 1.0)
    return jnp.sum(jnp.where(p > 0, p * jnp.log(ratio), 0.0) - p + q)


# ---------------------------------------------------------------------------------------
# Iterations. Each engine maps (potentials in, epsilon, threshold, cap) to potentials
# out plus the loop's count, error and status, so epsilon scaling composes with both.


class _Problem(NamedTuple):
    """What the engines need: stopped weights, their logs, damping exponents."""

    a: jax.Array
    b: jax.Array
    log_a: jax.Array
    log_b: jax.Array
    tau_a: jax.Array
    tau_b: jax.Array


class _KernelState(NamedTuple):
    """Scalings relative to the potentials absorbed into the current kernel."""

    u: jax.Array  # f = fa + eps log u
    v: jax.Array
    error: jax.Array  # column residual of the last accepted iteration
    count: jax.Array  # accepted iterations
    rebuild: jax.Array  # a scaling left the safe range: absorb and rebuild the kernel
    best: jax.Array  # the smallest accepted error so far (stall detection)
    best_at: jax.Array  # the accepted-iteration count when `best` was set
    relaxation: overrelaxation.Relaxation


def _absorb_bound(dtype) -> float:
    # Kernel entries that matter start above about exp(-20) after a rebuild; letting
    # each scaling drift by exp(+-B) keeps them above exp(-20 - 2B), which must stay
    # representable: B is a quarter of the exponent range (22 in float32, 177 in float64).
    return 0.25 * math.log(float(jnp.finfo(dtype).max))


def _kernel_engine(cost, p: _Problem, f0, g0, omega0, epsilon, threshold, max_iterations, inner, patience, adaptive,
                   watch, polling):
    """Stabilised scaling iterations.

    The kernel is a constant of an inner loop (carrying it would copy n m values per
    iteration); an outer loop rebuilds it when a scaling leaves exp(+-B). The inner
    step then freezes and reports error 0 so that the shared driver returns, which
    wastes at most one block per rebuild. Rebuilds are rare: measured here, even
    epsilon = 1e-3 x mean cost in float32 needs few.

    Stall detection lives in the state, counted per accepted iteration, so that it
    carries across rebuilds (each epoch restarts the shared driver, and the driver's
    own tracking would see the 0 error that ends an epoch as a new minimum).
    """
    inv_eps = 1.0 / epsilon
    damp_a, damp_b = _damping(p.tau_a, epsilon), _damping(p.tau_b, epsilon)
    bound = _absorb_bound(cost.dtype)
    hi, lo = math.exp(bound), math.exp(-bound)
    dtype = cost.dtype
    n = cost.shape[0]
    # The error sums both marginals' residuals, so its scale is both masses.
    mass = jnp.sum(p.a) + jnp.sum(p.b)
    ceiling = stall_ceiling(dtype, mass)
    noise = overrelaxation.noise_floor(dtype, mass)

    def stalled(st):
        return is_stalled(st.count, st.best_at, patience, st.best, ceiling) if patience else jnp.bool_(False)

    def careful(f, g):
        # One log-domain iteration: potentials whose kernel rows cannot underflow.
        f = -damp_a * epsilon * logsumexp(p.log_b[None, :] + (g[None, :] - cost) * inv_eps, axis=1)
        g = -damp_b * epsilon * logsumexp(p.log_a[:, None] + (f[:, None] - cost) * inv_eps, axis=0)
        return f, g

    def epoch(carry):
        fa, ga, state, epochs, _, polling = carry
        f = fa + epsilon * jnp.log(state.u)
        g = ga + epsilon * jnp.log(state.v)
        finite = jnp.all(jnp.isfinite(f)) & jnp.all(jnp.isfinite(g)) & jnp.isfinite(state.error)
        # Absorbing finite scalings is exact: the kernel is rebuilt from C around the
        # new potentials with one exp pass. Only after a non-finite step (a kernel row
        # underflowed, e.g. on the first step at small epsilon) is the rebuild preceded
        # by a log-domain iteration, which costs two more passes. A first step that
        # fails this way costs one wasted pass, cheaper than always being careful.
        recover = ~finite & (epochs > 0)
        fa, ga = jax.lax.cond(
            recover,
            lambda: careful(jnp.where(jnp.isfinite(f), f, fa), jnp.where(jnp.isfinite(g), g, ga)),
            lambda: (f, g),
        )
        kernel = block_rows(jnp.exp((fa[:, None] + ga[None, :] - cost) * inv_eps))
        # Unbalanced updates carry a factor exp((damp - 1) fa / eps); 1 when balanced.
        ca = jnp.exp((damp_a - 1.0) * fa * inv_eps)
        cb = jnp.exp((damp_b - 1.0) * ga * inv_eps)

        def step(st: _KernelState) -> _KernelState:
            omega = st.relaxation.omega
            s = blocked_matvec(kernel, p.b * st.v, n)
            u = overrelaxation.relax_scaling(st.u, ca * s ** (-damp_a), omega)
            # (a u)^T K summed a block of rows at a time: one float32 pass over n rows
            # would floor the error near 1e-6 at n = 8000 (`sinkhorn_ops.ROW_BLOCK`).
            t = blocked_vecmat(p.a * u, kernel)
            # Both residuals of the plan (u, v_old), from the products the updates
            # need anyway (the row one is zero up to rounding when omega = 1).
            f_new = fa + epsilon * jnp.log(u)
            g_old = ga + epsilon * jnp.log(st.v)
            error = (jnp.sum(jnp.abs(p.a * u * s - _marginal_target(p.a, f_new, p.tau_a)))
                     + jnp.sum(jnp.abs(p.b * st.v * t - _marginal_target(p.b, g_old, p.tau_b))))
            v = overrelaxation.relax_scaling(st.v, cb * t ** (-damp_b), omega)
            finite = jnp.isfinite(error) & jnp.all(jnp.isfinite(u)) & jnp.all(jnp.isfinite(v))
            accept = finite & ~st.rebuild & (st.count < max_iterations) & ~stalled(st)
            in_range = jnp.all((u < hi) & (u > lo)) & jnp.all((v < hi) & (v > lo))
            better = accept & improved(error, st.best)
            count = st.count + accept.astype(jnp.int32)
            relaxation = overrelaxation.update(st.relaxation, error, st.error, count, adaptive, noise)
            return _KernelState(
                u=jnp.where(accept, u, st.u),
                v=jnp.where(accept, v, st.v),
                error=jnp.where(accept, error, st.error),
                count=count,
                rebuild=st.rebuild | ~finite | ~in_range,
                best=jnp.where(better, error, st.best),
                best_at=jnp.where(better, count, st.best_at),
                # A step that overflowed is an overshoot too: retry it unrelaxed.
                relaxation=jax.tree.map(lambda new, old: jnp.where(accept, new, old), relaxation,
                                        st.relaxation._replace(omega=jnp.where(finite, st.relaxation.omega, 1.0))),
            )

        def loop_error(st):
            stop = st.rebuild | (st.count >= max_iterations) | stalled(st)
            return jnp.where(stop, jnp.zeros((), dtype), st.error)

        start = state._replace(u=jnp.ones_like(fa), v=jnp.ones_like(ga), rebuild=jnp.bool_(False))
        loop = run_until_converged(
            step, loop_error, start,
            threshold=threshold, max_iterations=max_iterations, inner_iterations=inner,
            watch=watch, polling=polling,
        )
        # A careful rebuild after which not one step succeeds cannot be helped by
        # another: stop, and let the status say so.
        stuck = recover & (loop.state.count == state.count)
        return fa, ga, loop.state, epochs + 1, stuck, loop.polling

    def more(carry):
        _, _, state, epochs, stuck, polling = carry
        going = state.rebuild & (state.count < max_iterations) & ~stuck & (epochs <= max_iterations)
        return going & ~stalled(state) & ~stopped(polling)

    state = _KernelState(
        u=jnp.ones_like(f0), v=jnp.ones_like(g0), error=jnp.asarray(jnp.inf, dtype),
        count=jnp.int32(0), rebuild=jnp.bool_(True), best=jnp.asarray(jnp.inf, dtype),
        best_at=jnp.int32(0), relaxation=overrelaxation.start(omega0, dtype),
    )
    init = (f0, g0, state, jnp.int32(0), jnp.bool_(False), polling)
    fa, ga, state, _, _, polling = jax.lax.while_loop(more, epoch, init)
    # The status is recomputed from the last accepted error; a stall survives rebuilds
    # because `best_at` lives in the state.
    status = final_status(state.error, threshold, stalled(state), stopped(polling), started=state.count > 0)
    return ScaledPotentials(fa, ga, state.u, state.v), state.count, status, state.relaxation.omega, polling


class _LogState(NamedTuple):
    f: jax.Array
    g: jax.Array
    error: jax.Array
    count: jax.Array
    relaxation: overrelaxation.Relaxation


def _log_engine(access: CostAccess, p: _Problem, f0, g0, omega0, epsilon, threshold, max_iterations, inner,
                patience, adaptive, watch, polling):
    inv_eps = 1.0 / epsilon
    damp_a, damp_b = _damping(p.tau_a, epsilon), _damping(p.tau_b, epsilon)
    mass = jnp.sum(p.a) + jnp.sum(p.b)  # the scale of the error, as in the kernel engine
    noise = overrelaxation.noise_floor(f0.dtype, mass)

    def step(state: _LogState) -> _LogState:
        omega = state.relaxation.omega
        row_lse = access.row_lse(p.log_b + state.g * inv_eps, inv_eps)
        f = overrelaxation.relax(state.f, -damp_a * epsilon * row_lse, omega)
        lse = access.col_lse(p.log_a + f * inv_eps, inv_eps)
        # Both residuals of (f, g_old), from the reductions the updates need anyway
        # (the row one is zero up to rounding when omega = 1).
        row = jnp.exp(p.log_a + f * inv_eps + row_lse)
        column = jnp.exp(p.log_b + state.g * inv_eps + lse)
        error = (jnp.sum(jnp.abs(row - _marginal_target(p.a, f, p.tau_a)))
                 + jnp.sum(jnp.abs(column - _marginal_target(p.b, state.g, p.tau_b))))
        g = overrelaxation.relax(state.g, -damp_b * epsilon * lse, omega)
        count = state.count + 1
        relaxation = overrelaxation.update(state.relaxation, error, state.error, count, adaptive, noise)
        return _LogState(f, g, error, count, relaxation)

    dtype = f0.dtype
    init = _LogState(f0, g0, jnp.asarray(jnp.inf, dtype), jnp.int32(0), overrelaxation.start(omega0, dtype))
    loop = run_until_converged(
        step, lambda s: s.error, init,
        threshold=threshold, max_iterations=max_iterations, inner_iterations=inner,
        stall_patience=patience, stall_below=stall_ceiling(dtype, mass), watch=watch, polling=polling,
    )
    state = loop.state
    return (ScaledPotentials.plain(state.f, state.g), loop.iterations, loop.status, state.relaxation.omega,
            loop.polling)


# Measured on this machine (2 CPU cores): the stabilised kernel stays 2-4x cheaper per
# iteration than log iterations down to epsilon = 1e-3 x mean cost (cost range / eps
# about 1e4) in float32, with few rebuilds. Past this range, rebuilds may dominate.
_AUTO_KERNEL_RANGE = 1e5


def _auto_uses_kernel(cost, epsilon):
    return (jnp.max(cost) - jnp.min(cost)) / epsilon <= _AUTO_KERNEL_RANGE


def _iterate(access: CostAccess, p: _Problem, f0, g0, omega0, epsilon, threshold, config, max_iterations,
             watch, polling):
    inner = config.inner_iterations
    adaptive = config.overrelaxation == "adaptive"
    args = (p, f0, g0, omega0, epsilon, threshold, max_iterations, inner, config.stall_patience, adaptive,
            watch, polling)
    if access.online or config.method == "log":
        return _log_engine(access, *args)
    if config.method == "kernel":
        return _kernel_engine(access.matrix, *args)
    return jax.lax.cond(
        _auto_uses_kernel(access.matrix, epsilon),
        lambda: _kernel_engine(access.matrix, *args),
        lambda: _log_engine(access, *args),
    )


def _solve(problem: OTProblem, config: SinkhornConfig, init=None, watch: Watch | None = None) -> SinkhornOutput:
    sg = jax.lax.stop_gradient
    dtype = problem.geometry.dtype
    n, m = problem.shape
    epsilon_live = jnp.asarray(config.epsilon, dtype)
    epsilon = sg(epsilon_live)
    tau_a_live, tau_b_live = (jnp.asarray(t, dtype) for t in config.reg_m)
    tau_a, tau_b = sg(tau_a_live), sg(tau_b_live)
    a, b = sg(problem.a), sg(problem.b)
    p = _Problem(a, b, _log(a), _log(b), tau_a, tau_b)
    # The loop sees stopped inputs, so reverse mode never differentiates through it.
    access = CostAccess.create(sg(problem.geometry), config.online, config.block_size)
    threshold = jnp.asarray(config.threshold, dtype)

    omega = jnp.asarray(1.0, dtype)
    if init is None:
        f, g = jnp.zeros((n,), dtype), jnp.zeros((m,), dtype)
    else:
        f, g = (sg(jnp.asarray(v, dtype)) for v in init[:2])
        if len(init) > 2:
            omega = sg(jnp.asarray(init[2], dtype))
    iterations = jnp.int32(0)
    polling = start_polling(watch)
    if config.scaling_stages > 0:
        stages = config.scaling_stages
        factor = jnp.asarray(config.scaling_factor, dtype)
        # Intermediate stages only need to put the potentials near the next stage's.
        loose = jnp.maximum(threshold, 1e-3 * jnp.sum(a))
        stage_cap = jnp.maximum(config.inner_iterations, config.max_iterations // (stages + 1))

        def stage(k, carry):
            f, g, count, polling = carry
            eps_k = epsilon / factor ** (stages - k)
            # Each stage estimates its own factor: the contraction depends on epsilon.
            scaled, its, _, _, polling = _iterate(access, p, f, g, 1.0, eps_k, loose, config, stage_cap,
                                                  watch, polling)
            return (*scaled.total(eps_k), count + its, polling)

        f, g, iterations, polling = jax.lax.fori_loop(0, stages, stage, (f, g, iterations, polling))
    scaled, its, status, omega, _ = _iterate(access, p, f, g, omega, epsilon, threshold, config,
                                             config.max_iterations, watch, polling)
    iterations = iterations + its
    f, g = scaled.total(epsilon)

    f_live, g_live = f, g
    if config.implicit_diff:
        theta = (problem.a, problem.b, problem.geometry, epsilon_live, tau_a_live, tau_b_live)
        f_live, g_live = implicit_potentials(f, g, theta, access.online, config.block_size)
        shift = gauge_shift(f_live, g_live, problem.a, problem.b, tau_a_live, tau_b_live)
        f_live, g_live = f_live + shift, g_live - shift
        f, g = sg(f_live), sg(g_live)
        scaled = scaled._replace(f_base=scaled.f_base + sg(shift), g_base=scaled.g_base - sg(shift))
    scaled = _live(scaled, f_live, g_live, epsilon, epsilon_live)

    # Diagnostics in one pass over the cost, with live inputs: the stopped values are
    # reported, the live ones carry the envelope gradient (and, with implicit_diff,
    # the gradient of the potentials: the dual's derivative in f, g is zero at the
    # optimum, so the objective's gradient is the same either way).
    live_access = CostAccess.create(problem.geometry, config.online, config.block_size)
    rows_live, cols_live, cost_live = plan_sums(live_access, problem.a * scaled.u, problem.b * scaled.v,
                                                scaled.f_base, scaled.g_base, epsilon_live)
    rows, cols, transport_cost = sg(rows_live), sg(cols_live), sg(cost_live)
    if config.implicit_diff:
        transport_cost = cost_live
    target_a, target_b = _marginal_target(a, f, tau_a), _marginal_target(b, g, tau_b)
    marginal_error = jnp.sum(jnp.abs(rows - target_a)) + jnp.sum(jnp.abs(cols - target_b))
    mass_ab = jnp.sum(a) * jnp.sum(b)
    # epsilon KL(P | a b^T) = <P 1, f> + <P^T 1, g> - <P, C> - epsilon (|P| - |a||b|),
    # so the primal objective needs only the marginals.
    objective = jnp.dot(rows, f) + jnp.dot(cols, g) - epsilon * (jnp.sum(rows) - mass_ab)
    for tau, marginal, weights in ((tau_a, rows, a), (tau_b, cols, b)):
        safe_tau = jnp.where(jnp.isinf(tau), 1.0, tau)
        objective = objective + jnp.where(jnp.isinf(tau), 0.0, safe_tau * _kl(marginal, weights))
    dual = _dual(problem.a, problem.b, f_live, g_live, tau_a, tau_b, epsilon_live, jnp.sum(rows_live))
    objective = sg(objective) + (dual - sg(dual))

    finite = jnp.isfinite(transport_cost) & jnp.isfinite(objective) & jnp.all(jnp.isfinite(f)) & jnp.all(jnp.isfinite(g))
    status = jnp.where(finite | (status != Status.CONVERGED), status, Status.DIVERGED)
    status = jnp.where(finite, status, Status.DIVERGED).astype(jnp.int32)
    return SinkhornOutput(
        f=f_live,
        g=g_live,
        cost=transport_cost,
        objective=objective,
        marginal_error=marginal_error,
        iterations=iterations,
        status=status,
        omega=omega,
        problem=problem,
        epsilon=epsilon_live if config.implicit_diff else epsilon,
        online=access.online,
        block_size=config.block_size,
        scaled=scaled,
    )


def _live(scaled: ScaledPotentials, f_live, g_live, epsilon, epsilon_live) -> ScaledPotentials:
    """`scaled` with the values it has and the derivatives of (f_live, g_live, epsilon):
    the bases carry f_live's, and the scalings the epsilon-dependence of epsilon log u
    at fixed f (terms x - stop_gradient(x) are exactly 0 in value)."""
    sg = jax.lax.stop_gradient

    def scaling(w):
        exponent = sg(epsilon * jnp.log(w)) / epsilon_live
        return w * jnp.exp(exponent - sg(exponent))

    return ScaledPotentials(scaled.f_base + (f_live - sg(f_live)), scaled.g_base + (g_live - sg(g_live)),
                            scaling(scaled.u), scaling(scaled.v))


def _dual(a, b, f, g, tau_a, tau_b, epsilon, plan_mass):
    """The dual objective at stopped potentials; at the optimum it equals the optimal
    value, and its gradient in (a, b, C, epsilon) is the optimal value's (Danskin)."""

    def term(w, pot, tau):
        safe_tau = jnp.where(jnp.isinf(tau), 1.0, tau)
        soft = safe_tau * jnp.dot(w, 1.0 - jnp.exp(-pot / safe_tau))
        return jnp.where(jnp.isinf(tau), jnp.dot(w, pot), soft)

    return term(a, f, tau_a) + term(b, g, tau_b) - epsilon * (plan_mass - jnp.sum(a) * jnp.sum(b))


solve = jax.jit(_solve)
solve.__doc__ = """Solve entropic OT: `solve(problem, config, init=None) -> SinkhornOutput`.

jit-compiled, one program per shape, dtype and static config; epsilon, threshold and
reg_m are traced. `init=(f, g)` warm-starts from given potentials, `init=(f, g, omega)`
also from an over-relaxation factor (`SinkhornOutput.omega` of an earlier run).
`watch` (`monge.solvers.loop.Watch`) lets a host function stop the run between
blocks (status CANCELLED) and hear its progress; the service passes one."""


# ---------------------------------------------------------------------------------------
# On-demand views of the plan.


# Each is computed from the scaled form (see `ScaledPotentials`) as
# (a u)_i exp((f_base_i + g_base_j - C_ij) / epsilon) (b v)_j: the weights and scalings
# multiply rather than enter the exponent, where a log would cost ulps of its size.


# jit-compiled like the solve: computed op by op, the cost's cross term rounds otherwise
# than in the solve's program, and at small epsilon that alone costs the view its
# marginals (measured: float32, n = 2000, epsilon 0.01 x mean cost, L1 2.0e-6 against
# the 5.0e-7 the iterations reached).
@jax.jit
def _plan(problem, scaled, epsilon):
    kernel = kernel_rows(problem.geometry.cost_matrix(), scaled.f_base, scaled.g_base, epsilon)
    return (problem.a * scaled.u)[:, None] * kernel * (problem.b * scaled.v)[None, :]


@functools.partial(jax.jit, static_argnums=(3, 4, 5))
def _plan_topk(problem, scaled, epsilon, k, online, block):
    access = CostAccess.create(problem.geometry, online, block)
    weight_b = problem.b * scaled.v
    # Within a row, the order of the entries is that of (f_base_i + g_base_j - C_ij) /
    # epsilon + log (b v)_j; the row's own factor does not change it.
    order_b = _log(weight_b)
    n = problem.shape[0]

    def rows(c, weight_i, f_i, _x):
        # Ordered by the exponent, which still ranks entries whose exp underflows.
        exponent = (f_i[:, None] + scaled.g_base[None, :] - c) / epsilon
        _, cols = jax.lax.top_k(exponent + order_b[None, :], k)
        kept = jnp.take_along_axis(kernel_rows(c, f_i, scaled.g_base, epsilon), cols, axis=1)
        return (weight_i[:, None] * kept * weight_b[cols], cols), ()

    (values, cols), _ = access.map_rows(rows, problem.a * scaled.u, scaled.f_base)
    row_ids = jnp.repeat(jnp.arange(n, dtype=cols.dtype), k)
    return row_ids, cols.reshape(-1), values.reshape(-1)


@functools.partial(jax.jit, static_argnums=(3, 4))
def _barycentric_map(problem, scaled, epsilon, online, block):
    geometry = problem.geometry
    if geometry.x is None:
        raise ValueError("the barycentric map needs point clouds, not a cost matrix")
    access = CostAccess.create(geometry, online, block)
    weight_b = problem.b * scaled.v

    def rows(c, weight_i, f_i, _x):
        plan = weight_i[:, None] * kernel_rows(c, f_i, scaled.g_base, epsilon) * weight_b[None, :]
        return (plan @ geometry.y, plan.sum(axis=1)), ()

    (moved, mass), _ = access.map_rows(rows, problem.a * scaled.u, scaled.f_base)
    return jnp.where(mass[:, None] > 0, moved / jnp.where(mass > 0, mass, 1.0)[:, None], geometry.x)


# ---------------------------------------------------------------------------------------
# Convenience entry.


def sinkhorn(
    x=None,
    y=None,
    a=None,
    b=None,
    *,
    cost_matrix=None,
    cost: str = "sqeuclidean",
    epsilon: float = SinkhornConfig.epsilon,
    threshold: float = SinkhornConfig.threshold,
    reg_m: float | tuple[float, float] | None = None,
    max_iterations: int = SinkhornConfig.max_iterations,
    method: str = SinkhornConfig.method,
    online: bool = SinkhornConfig.online,
    scaling_stages: int = SinkhornConfig.scaling_stages,
    init: tuple | None = None,
    implicit_diff: bool = SinkhornConfig.implicit_diff,
    stall_patience: int = SinkhornConfig.stall_patience,
    overrelaxation: str = SinkhornConfig.overrelaxation,
) -> SinkhornOutput:
    """Convenience entry with the client's keywords: points or a cost matrix in."""
    problem = make_problem(x, y, a, b, cost_matrix, cost)
    config = SinkhornConfig(
        epsilon=epsilon,
        threshold=threshold,
        reg_m=(math.inf, math.inf) if reg_m is None else reg_m,
        max_iterations=max_iterations,
        method=method,
        online=online,
        scaling_stages=scaling_stages,
        implicit_diff=implicit_diff,
        stall_patience=stall_patience,
        overrelaxation=overrelaxation,
    )
    return solve(problem, config, init)
