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

- the Sinkhorn sweeps (the warm-up, and those after a Newton step hands back) are
  over-relaxed by default exactly as `monge.solvers.sinkhorn`'s are (the same
  `overrelaxation` module; `SNSConfig.overrelaxation`, "off" for plain sweeps);
- the switch is automatic: after every block of Sinkhorn sweeps the observed
  contraction rate predicts how many sweeps remain; Newton starts only when that
  prediction exceeds `switch_iterations` twice in a row, counting only blocks over
  which the over-relaxation factor has settled. Fast Sinkhorn problems never switch,
  so they cost what the Sinkhorn solver costs;
- the Hessian keeps, per row of P, the largest entries holding all but
  `dropped_mass` of the row's mass, at most `kept_per_row` of them (P is nearly sparse
  near the optimum, the paper's observation), stored as (n, K) values and column
  indices, chosen by `lax.top_k` on float32 logs and re-chosen only when the kept
  entries lose a noticeable part of the rows' mass. The default dropped_mass is 0
  (keep the cap's K largest). The diagonal keeps the exact row and column sums, which
  makes the truncated matrix diagonally dominant, hence positive semi-definite, and
  the shift (H + delta I) makes it definite;
- the Newton system is solved by conjugate gradients on its Schur complement (the f
  block is diagonal, so eliminating it is exact), Jacobi-preconditioned, the products
  computed by gathers and segment sums (jit-compiled; BCOO was slower). On the random
  assignment problem (n = 500, epsilon = 1/1200) this took 65 CG iterations over the
  solve where Jacobi-CG on the full system took 980. When CG reaches its cap without
  the tolerance and m <= `direct_size`, this and every later step of the solve factor
  the m x m Schur complement instead (assembled from the kept entries, one Cholesky).
  Near-permutation plans (cost range / epsilon = 1e4, n = 500) are where that
  matters: full-system CG stopped at its cap at every step there and SNS crawled
  (error 4e-8 after 2,000 Newton steps, ~50 s);
- the step length halves until an Armijo test on L holds or the L1 gradient norm
  (the marginal error) decreases: the Armijo test alone stalls near machine
  precision, where L no longer changes in float64 while the marginals still do. A
  Newton step that finds no such length, or only one below 1/4, hands back to a
  Sinkhorn block (Newton is not yet where it converges fast);
- the solve stops at the threshold, at `max_iterations` sweeps plus Newton steps
  (never past it), or with status STALLED by the Sinkhorn solver's stall rule
  (`stall_patience`), counted in sweeps plus Newton steps.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from monge.solvers.checks import positive_if_concrete
from monge.solvers.loop import final_status, improved, is_stalled, run_until_converged, stall_ceiling
from monge.solvers.status import Status
from monge.solvers.sinkhorn import (
    OVERRELAXATION, STALL_PATIENCE, OTProblem, SinkhornOutput, make_problem, overrelaxation,
)


# The switch rule's threshold (predicted remaining sweeps) by kind of sweep, tuned for
# wall time on uniform points in the unit square (n = 200 to 1000, epsilon 3e-4 to
# 1e-2), Gaussian clouds and the random assignment problem, 2 CPU cores, float64.
# Plain sweeps: 1000 (200 sent an n = 400, epsilon 1e-2 solve into 88 Newton steps,
# 5x slower than its 410 sweeps). Over-relaxed sweeps: 200 (n = 400, epsilon 1e-3:
# 80 sweeps + 3 Newton steps in 18 ms, against 250 sweeps in 23 ms at 300 and above;
# 100 was no faster anywhere and switched needlessly at n = 1000, epsilon 3e-3).
SWITCH_ITERATIONS = {"adaptive": 200.0, "off": 1000.0}
# A block counts towards the switch only if the over-relaxation factor moved by at
# most this during it: rising factors give the early blocks plain-like rates (and
# growing transients), which predicted long runs and switched after 30 sweeps where
# Newton then cost 2x the sweeps it replaced (n = 400 and 1000, epsilon 3e-3).
SETTLED_OMEGA = 0.02


@dataclasses.dataclass(frozen=True, kw_only=True)
class SNSConfig:
    """Hyperparameters. Traced (no recompile): epsilon, threshold, switch_iterations,
    hessian_shift. Static: kept_per_row (a shape), the caps and block size,
    overrelaxation and stall_patience.

    epsilon: entropic weight, absolute (cost units), > 0.
    threshold: stop when the L1 marginal error (rows + columns) is at most this.
    switch_iterations: switch to Newton when the observed Sinkhorn rate predicts more
        than this many remaining sweeps (twice in a row); None: the default for the
        sweeps, `SWITCH_ITERATIONS[overrelaxation]` (200 over-relaxed, 1000 plain).
    direct_size: when CG fails (reaches max_cg_iterations) and m is at most this, the
        Newton systems of the rest of the solve are solved directly (one Cholesky of
        an m x m matrix per step); above it CG's answer is used as it is. 0: CG only.
    kept_per_row: cap on the entries of each row of P kept in the sparsified Hessian;
        None picks min(m, max(16, ceil(m / 16))).
    dropped_mass: fraction of each row's mass the sparsified Hessian may drop, in
        [0, 1); 0 keeps the kept_per_row largest entries.
    hessian_shift: delta in (H + delta I), relative to the largest marginal.
    max_iterations: cap on Sinkhorn sweeps plus Newton steps.
    inner_iterations: Sinkhorn sweeps per block between error checks.
    max_cg_iterations: conjugate-gradient cap per Newton step.
    max_halvings: line-search cap per Newton step.
    overrelaxation: "adaptive" over-relaxes the Sinkhorn sweeps (warm-up and fallback)
        exactly as `SinkhornConfig`'s does (`monge.solvers.sinkhorn.overrelaxation`);
        "off": plain sweeps.
    stall_patience: stop with status STALLED once the error has made no new minimum
        (by 0.1%) for this many iterations (sweeps plus Newton steps) and for as many
        as it took to reach its best, that best being under sqrt(machine epsilon) x
        mass: `SinkhornConfig.stall_patience`'s rule (`loop.is_stalled`). 0: off.
    """

    epsilon: float = 0.05
    threshold: float = 1e-6
    switch_iterations: float | None = None
    hessian_shift: float = 1e-10
    dropped_mass: float = 0.0
    kept_per_row: int | None = dataclasses.field(default=None, metadata=dict(static=True))
    direct_size: int = dataclasses.field(default=1024, metadata=dict(static=True))
    max_iterations: int = dataclasses.field(default=10_000, metadata=dict(static=True))
    inner_iterations: int = dataclasses.field(default=10, metadata=dict(static=True))
    max_cg_iterations: int = dataclasses.field(default=500, metadata=dict(static=True))
    max_halvings: int = dataclasses.field(default=30, metadata=dict(static=True))
    overrelaxation: str = dataclasses.field(default="adaptive", metadata=dict(static=True))
    stall_patience: int = dataclasses.field(default=STALL_PATIENCE, metadata=dict(static=True))

    def __post_init__(self):
        if self.overrelaxation not in OVERRELAXATION:
            raise ValueError(f"unknown overrelaxation {self.overrelaxation!r}; expected one of {OVERRELAXATION}")
        if self.switch_iterations is None:
            object.__setattr__(self, "switch_iterations", SWITCH_ITERATIONS[self.overrelaxation])
        for name in ("epsilon", "threshold", "switch_iterations", "hessian_shift"):
            positive_if_concrete(name, getattr(self, name))
        try:
            dropped = float(self.dropped_mass)
        except (TypeError, jax.errors.ConcretizationTypeError):
            dropped = 0.0  # traced: validated where it was concrete
        if not 0.0 <= dropped < 1.0:
            raise ValueError(f"dropped_mass must be in [0, 1), got {dropped}")
        if self.direct_size < 0:
            raise ValueError(f"direct_size must be nonnegative, got {self.direct_size}")
        if self.kept_per_row is not None and self.kept_per_row < 1:
            raise ValueError(f"kept_per_row must be at least 1, got {self.kept_per_row}")
        for name in ("max_iterations", "inner_iterations", "max_cg_iterations", "max_halvings"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.stall_patience < 0:
            raise ValueError("stall_patience must be non-negative (0 turns stall detection off)")


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
    data_fields=["epsilon", "threshold", "switch_iterations", "hessian_shift",
                 "dropped_mass"],
    meta_fields=["kept_per_row", "direct_size", "max_iterations", "inner_iterations",
                 "max_cg_iterations", "max_halvings", "overrelaxation", "stall_patience"],
)


def default_kept_per_row(m: int) -> int:
    return min(m, max(16, math.ceil(m / 16)))


class _State(NamedTuple):
    f: jax.Array
    g: jax.Array
    error: jax.Array  # L1 marginal error at (f, g)
    row: jax.Array  # P 1 at (f, g)
    col: jax.Array  # P^T 1 at (f, g)
    index: jax.Array  # (n, K) int32: the sparsity pattern of the Hessian's P block
    count: jax.Array  # (n,) int32: slots of `index` in use
    pattern_drop: jax.Array  # largest relative row mass outside the pattern when chosen
    kept_mean: jax.Array  # mean kept entries per row when the pattern was last chosen
    newton: jax.Array  # bool: the next step is a Newton step
    direct: jax.Array  # bool: Newton systems are solved directly (CG failed once)
    slow_blocks: jax.Array  # consecutive Sinkhorn blocks predicting a long run
    relaxation: overrelaxation.Relaxation  # the sweeps' factor, carried across phases
    sweep_error: jax.Array  # the last sweep's error (inf after a Newton step)
    best: jax.Array  # the smallest error so far, by the stall margin (`loop.improved`)
    best_at: jax.Array  # iterations (sweeps plus Newton steps) when `best` was made
    sinkhorn_iterations: jax.Array
    newton_iterations: jax.Array
    cg_iterations: jax.Array
    newton_failures: jax.Array


class _Sweeps(NamedTuple):
    """A Sinkhorn phase's carry: scalings u, v relative to its kernel, at a block's end."""

    u: jax.Array
    v: jax.Array
    t: jax.Array  # (a u)^T K of the last sweep: the columns are b v t
    error: jax.Array  # L1 marginal error at (u, v)
    row: jax.Array
    col: jax.Array
    sweep_error: jax.Array
    relaxation: overrelaxation.Relaxation
    slow_blocks: jax.Array
    sweeps: jax.Array  # accepted sweeps in this phase
    best: jax.Array
    best_at: jax.Array
    ok: jax.Array  # the last block stayed finite and in range


def _log(w):
    return jnp.where(w > 0, jnp.log(jnp.where(w > 0, w, 1.0)), -jnp.inf)


@jax.jit
def _solve(problem: OTProblem, config: SNSConfig, init=None) -> SNSOutput:
    cost = problem.geometry.cost_matrix()
    dtype = cost.dtype
    n, m = cost.shape
    kept = min(m, config.kept_per_row or default_kept_per_row(m))
    a, b = problem.a.astype(dtype), problem.b.astype(dtype)
    log_a, log_b = _log(a), _log(b)
    epsilon = jnp.asarray(config.epsilon, dtype)
    threshold = jnp.asarray(config.threshold, dtype)
    shift = jnp.asarray(config.hessian_shift, dtype) * jnp.maximum(a.max(), b.max())
    dropped_mass = jnp.asarray(config.dropped_mass, dtype)
    block = config.inner_iterations

    def log_plan(f, g):
        return log_a[:, None] + log_b[None, :] + (f[:, None] + g[None, :] - cost) / epsilon

    def marginals(f, g):
        plan = jnp.exp(log_plan(f, g))
        return plan, plan.sum(1), plan.sum(0)

    # -- Sinkhorn phase ------------------------------------------------------------
    # Scaling iterations on a kernel built around the current potentials, as monge's
    # stabilised Sinkhorn: one exp pass when the phase starts, then two mat-vecs per
    # sweep, the error (one more mat-vec) once per block. The phase runs block after
    # block until the threshold, the switch rule, the iteration cap, a stall, or
    # scalings that leave exp(+-B) (then they are absorbed into the potentials and the
    # next phase rebuilds the kernel). A first block that over- or underflows (a kernel
    # row that underflowed, e.g. at f = g = 0 and small epsilon) is redone with
    # log-domain sweeps, which cannot.
    #
    # Sweeps are over-relaxed as the plain solver's kernel and log engines are (the
    # same `overrelaxation` update, from the same per-sweep error: the residuals of
    # (u, v_old), free from the sweep's products); the factor lives in the state, so
    # it carries over from phase to phase. A Newton step in between moves the error by
    # other means, so it restarts the window (the factor is kept).
    bound = 0.25 * math.log(float(jnp.finfo(dtype).max))
    hi, lo = math.exp(bound), math.exp(-bound)
    adaptive = config.overrelaxation == "adaptive"
    mass = jnp.sum(a) + jnp.sum(b)  # the scale of the L1 error, both marginals
    noise = overrelaxation.noise_floor(dtype, mass)
    ceiling = stall_ceiling(dtype, mass)
    patience = config.stall_patience

    def stalled(done, best, best_at):
        if not patience:
            return jnp.bool_(False)
        return is_stalled(done, best_at, patience, best, ceiling)

    def record(error, done, best, best_at):
        better = improved(error, best)
        return jnp.where(better, error, best), jnp.where(better, done, best_at)

    def observe(prev_error, error, slow_blocks, steps, omega_before, omega_after):
        # Per-sweep contraction observed over the block, and the sweeps it predicts
        # until the threshold; a rate >= 1 (stalled) also counts as slow. While the
        # over-relaxation factor is still rising, the block's rate understates the
        # sweeps to come (and its transients may even grow the error): such a block
        # does not count, and restarts the count (`SETTLED_OMEGA`).
        rate = (error / prev_error) ** (1.0 / steps)
        remaining = jnp.where(
            rate < 1.0, jnp.log(threshold / error) / jnp.log(jnp.maximum(rate, 1e-300)), jnp.inf
        )
        settled = jnp.abs(omega_after - omega_before) <= SETTLED_OMEGA
        slow = jnp.isfinite(prev_error) & (remaining > config.switch_iterations) & settled
        return jnp.where(slow, slow_blocks + 1, 0)

    def sinkhorn_phase(s: _State) -> _State:
        kernel = jnp.exp((s.f[:, None] + s.g[None, :] - cost) / epsilon)
        done = s.sinkhorn_iterations + s.newton_iterations
        budget = config.max_iterations - done

        def more(c: _Sweeps):
            return (c.ok & (c.error > threshold) & (c.slow_blocks < 2) & (c.sweeps < budget)
                    & ~stalled(done + c.sweeps, c.best, c.best_at))

        def kernel_block(c: _Sweeps) -> _Sweeps:
            steps = jnp.minimum(block, budget - c.sweeps)  # the cap is never overrun

            def sweep(i, carry):
                u_old, v_old, _, previous, relaxation = carry
                omega = relaxation.omega
                column_sums = kernel @ (b * v_old)
                u = overrelaxation.relax_scaling(u_old, 1.0 / column_sums, omega)
                # (a u)^T K, not K^T (a u): XLA on CPU transposes K for the latter.
                t = (a * u) @ kernel
                # Both residuals of (u, v_old), as the plain solver's kernel engine
                # measures them (the row one is zero up to rounding when omega = 1).
                error = (jnp.sum(jnp.abs(a * u * column_sums - a))
                         + jnp.sum(jnp.abs(b * v_old * t - b)))
                v = overrelaxation.relax_scaling(v_old, 1.0 / t, omega)
                count = s.sinkhorn_iterations + c.sweeps + i + 1
                relaxation = overrelaxation.update(relaxation, error, previous, count, adaptive, noise)
                return u, v, t, error, relaxation

            u, v, t, sweep_error, relaxation = jax.lax.fori_loop(
                0, steps, sweep, (c.u, c.v, c.t, c.sweep_error, c.relaxation))
            # The columns are exact from the last sweep's product; the rows cost one more.
            row, col = a * u * (kernel @ (b * v)), b * v * t
            error = jnp.sum(jnp.abs(row - a)) + jnp.sum(jnp.abs(col - b))
            finite = jnp.isfinite(error) & jnp.all(jnp.isfinite(u)) & jnp.all(jnp.isfinite(v))
            ok = finite & jnp.all((u > lo) & (u < hi)) & jnp.all((v > lo) & (v < hi))
            sweeps = c.sweeps + steps
            best, best_at = record(error, done + sweeps, c.best, c.best_at)
            slow = observe(c.error, error, c.slow_blocks, steps, c.relaxation.omega, relaxation.omega)
            new = _Sweeps(u, v, t, error, row, col, sweep_error, relaxation, slow, sweeps, best,
                          best_at, ok)
            # A block that left the range is undone (the next phase absorbs the
            # scalings); one that overflowed is an overshoot too: retried unrelaxed.
            old = c._replace(ok=ok, relaxation=c.relaxation._replace(
                omega=jnp.where(finite, c.relaxation.omega, 1.0)))
            return jax.tree.map(lambda x, y: jnp.where(ok, x, y), new, old)

        ones_f, ones_g = jnp.ones_like(s.f), jnp.ones_like(s.g)
        c = jax.lax.while_loop(more, kernel_block, _Sweeps(
            ones_f, ones_g, ones_g, s.error, s.row, s.col, s.sweep_error, s.relaxation,
            s.slow_blocks, jnp.zeros((), jnp.int32), s.best, s.best_at, jnp.bool_(True)))
        f, g = s.f + epsilon * jnp.log(c.u), s.g + epsilon * jnp.log(c.v)

        def log_block():
            steps = jnp.minimum(block, budget)

            def log_sweep(i, carry):
                # The plain solver's log engine: the same update and per-sweep error.
                f_old, g_old, previous, relaxation = carry
                omega = relaxation.omega
                row_lse = logsumexp(log_b[None, :] + (g_old[None, :] - cost) / epsilon, axis=1)
                f = overrelaxation.relax(f_old, -epsilon * row_lse, omega)
                col_lse = logsumexp(log_a[:, None] + (f[:, None] - cost) / epsilon, axis=0)
                error = (jnp.sum(jnp.abs(jnp.exp(log_a + f / epsilon + row_lse) - a))
                         + jnp.sum(jnp.abs(jnp.exp(log_b + g_old / epsilon + col_lse) - b)))
                g = overrelaxation.relax(g_old, -epsilon * col_lse, omega)
                count = s.sinkhorn_iterations + i + 1
                relaxation = overrelaxation.update(relaxation, error, previous, count, adaptive, noise)
                return f, g, error, relaxation

            f, g, sweep_error, relaxation = jax.lax.fori_loop(
                0, steps, log_sweep, (s.f, s.g, s.sweep_error, c.relaxation))
            _, row, col = marginals(f, g)
            error = jnp.sum(jnp.abs(row - a)) + jnp.sum(jnp.abs(col - b))
            best, best_at = record(error, done + steps, s.best, s.best_at)
            return (f, g, error, row, col, sweep_error, relaxation,
                    observe(s.error, error, s.slow_blocks, steps, c.relaxation.omega, relaxation.omega),
                    steps, best, best_at)

        (f, g, error, row, col, sweep_error, relaxation, slow_blocks, sweeps, best,
         best_at) = jax.lax.cond(
            c.sweeps > 0,
            lambda: (f, g, c.error, c.row, c.col, c.sweep_error, c.relaxation, c.slow_blocks,
                     c.sweeps, c.best, c.best_at),
            log_block)
        return s._replace(
            f=f, g=g, error=error, row=row, col=col, newton=slow_blocks >= 2,
            slow_blocks=slow_blocks, relaxation=relaxation, sweep_error=sweep_error,
            best=best, best_at=best_at, sinkhorn_iterations=s.sinkhorn_iterations + sweeps,
        )

    # -- Newton step ---------------------------------------------------------------
    # Direct solves factor an m x m matrix: allowed when m is at most direct_size.
    direct_allowed = m <= config.direct_size

    def pattern(s: _State):
        """The sparsified P block: values on the kept (row, slot) pattern.

        The pattern is chosen by a pass over the dense plan and kept while it still
        holds the rows' mass: near the optimum P changes little between Newton steps,
        and its values on a fixed pattern are a gather (O(n K)), not a pass."""
        row_safe = jnp.where(s.row > 0, s.row, 1.0)

        def gathered():
            cost_kept = jnp.take_along_axis(cost, s.index, axis=1)
            log_kept = (log_a[:, None] + log_b[s.index]
                        + (s.f[:, None] + s.g[s.index] - cost_kept) / epsilon)
            used = jnp.arange(kept)[None, :] < s.count[:, None]
            return jnp.where(used, jnp.exp(log_kept), 0.0)

        def relative_drop(values):
            return jnp.max(jnp.where(s.row > 0, 1.0 - values.sum(1) / row_safe, 0.0))

        def choose():
            values, index, count = _sparsify(log_plan(s.f, s.g), s.row, kept, dropped_mass)
            return values, index, count, relative_drop(values), jnp.mean(count.astype(dtype))

        stale = gathered()
        # Chosen anew once the kept entries lose a noticeable part of the rows' mass:
        # twice what they dropped when chosen, plus 1e-6 (measured on 32 x 32 grid
        # densities: a pattern kept until 10x its 13% drop froze and Newton took
        # 750 steps; refreshing at every step costs a selection per step for nothing).
        refresh = relative_drop(stale) > 2.0 * jnp.maximum(s.pattern_drop, dropped_mass) + 1e-6
        return jax.lax.cond(
            refresh, choose,
            lambda: (stale, s.index, s.count, s.pattern_drop, s.kept_mean))

    def cg_solve(values, index, diagonal, rhs, error):
        # CG on the Schur complement S = diag(col + delta) - P_K^T diag(row + delta)^-1
        # P_K (the f block is diagonal, so eliminating it is exact and free), then
        # back-substitution for f. With Jacobi scaling the full system's eigenvalues
        # come in pairs 1 +- s_i, the complement's are 1 - s_i^2: a condition number
        # about 4x smaller, so about half the CG iterations at the same cost each
        # (measured on the random assignment problem, n = 500, epsilon = 1/1200:
        # 980 -> 460 CG iterations over the solve).
        diag_f, diag_g = diagonal
        rhs_f, rhs_g = rhs
        flat_index = index.reshape(-1)

        def transpose_times(w):  # P_K^T w
            return jax.ops.segment_sum((values * w[:, None]).reshape(-1), flat_index,
                                       num_segments=m)

        def times(v):  # P_K v
            return jnp.sum(values * v[index], axis=1)

        def schur(v):
            return diag_g * v - transpose_times(times(v) / diag_f)

        schur_diagonal = diag_g - jax.ops.segment_sum(
            (values * values / diag_f[:, None]).reshape(-1), flat_index, num_segments=m)
        # Kept entries of a row sum to at most its mass, so the complement's diagonal
        # is at least delta; the floor guards rounding.
        schur_diagonal = jnp.maximum(schur_diagonal, shift)
        # Inexact Newton: solve only as accurately as the current error warrants.
        rtol = jnp.minimum(0.1, jnp.sqrt(error))
        dg, iterations, solved = _pcg(
            schur, rhs_g - transpose_times(rhs_f / diag_f), schur_diagonal, rtol,
            config.max_cg_iterations)
        df = (rhs_f - times(dg)) / diag_f
        return (df, dg), iterations, solved

    def direct_solve(values, index, diagonal, rhs):
        # Eliminate the f block: the Schur complement
        #   S = diag(col + delta) - P_K^T diag(row + delta)^-1 P_K   (m x m)
        # is diagonally dominant (the kept entries of a row sum to at most its
        # mass), so its eigenvalues are at least delta. It is assembled from the kept
        # entries, n K^2 products scattered in blocks of rows (so that no more than
        # about n m of them exist at once), and factored once (Cholesky).
        diag_f, diag_g = diagonal
        scaled = values / jnp.sqrt(diag_f)[:, None]
        rows = max(1, min(n, (n * m) // (kept * kept)))
        blocks = -(-n // rows)
        pad = ((0, blocks * rows - n), (0, 0))
        scaled_blocks = jnp.pad(scaled, pad).reshape(blocks, rows, kept)
        index_blocks = jnp.pad(index, pad).reshape(blocks, rows, kept)

        def add_block(i, flat):
            w, j = scaled_blocks[i], index_blocks[i]
            pairs = (j[:, :, None] * m + j[:, None, :]).reshape(-1)
            return flat.at[pairs].add((w[:, :, None] * w[:, None, :]).reshape(-1))

        gram = jax.lax.fori_loop(0, blocks, add_block, jnp.zeros((m * m,), dtype))
        schur = jnp.diag(diag_g) - gram.reshape(m, m)
        factor = jax.scipy.linalg.cho_factor(schur, lower=True)
        rhs_f, rhs_g = rhs
        dg = jax.scipy.linalg.cho_solve(factor, rhs_g - jax.ops.segment_sum(
            (values * (rhs_f / diag_f)[:, None]).reshape(-1), index.reshape(-1),
            num_segments=m))
        df = (rhs_f - jnp.sum(values * dg[index], axis=1)) / diag_f
        return df, dg

    def direction(s: _State, values, index, diagonal, rhs):
        """The Newton direction, CG's iterations, and whether the rest of the solve
        solves directly."""
        if not direct_allowed:
            d, iterations, _ = cg_solve(values, index, diagonal, rhs, s.error)
            return d, iterations, s.direct

        def try_cg():
            d, iterations, solved = cg_solve(values, index, diagonal, rhs, s.error)
            # CG hit its cap: the system is too ill-conditioned for it (near-permutation
            # plans at large cost range / epsilon); solve it directly from now on.
            d = jax.lax.cond(
                solved, lambda: d, lambda: direct_solve(values, index, diagonal, rhs))
            return d, iterations, ~solved

        return jax.lax.cond(
            s.direct,
            lambda: (direct_solve(values, index, diagonal, rhs), jnp.zeros((), jnp.int32),
                     s.direct),
            try_cg)

    def newton_step(s: _State) -> _State:
        grad_f, grad_g = a - s.row, b - s.col
        rhs = (epsilon * grad_f, epsilon * grad_g)
        values, index, count, pattern_drop, kept_mean = pattern(s)
        (df, dg), cg_iterations, go_direct = direction(
            s, values, index, (s.row + shift, s.col + shift), rhs)

        # The Lyapunov function up to a constant, and the slope along the direction.
        value = jnp.dot(s.f, a) + jnp.dot(s.g, b) - epsilon * jnp.sum(s.row)
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
            return err, row_t, col_t, ok & jnp.isfinite(err)

        def keep_halving(carry):
            *_, ok, tries = carry
            return ~ok & (tries < config.max_halvings)

        def halve(carry):
            t, *_, tries = carry
            return (t / 2, *trial(t / 2), tries + 1)

        one = jnp.ones((), dtype)
        t, err, row_t, col_t, accepted, _ = jax.lax.while_loop(
            keep_halving, halve, (one, *trial(one), 0)
        )
        # A step cut below a quarter means Newton is not yet where it converges fast
        # (measured: the first steps after an early switch take lengths of 1e-8 to
        # 1e-2 and barely move); Sinkhorn blocks are cheaper there and must re-earn
        # the switch.
        stay = accepted & (t >= 0.25)
        error = jnp.where(accepted, err, s.error)
        best, best_at = record(error, s.sinkhorn_iterations + s.newton_iterations + 1, s.best, s.best_at)
        return s._replace(
            f=jnp.where(accepted, s.f + t * df, s.f),
            g=jnp.where(accepted, s.g + t * dg, s.g),
            error=error,
            row=jnp.where(accepted, row_t, s.row),
            col=jnp.where(accepted, col_t, s.col),
            index=index, count=count, pattern_drop=pattern_drop, kept_mean=kept_mean,
            direct=go_direct,
            # No decrease, or a short step: back to a Sinkhorn block, which re-earns the
            # switch.
            newton=stay,
            slow_blocks=jnp.where(stay, s.slow_blocks, 0),
            # The next sweeps start a new window: the error moved by other means.
            relaxation=s.relaxation._replace(anchor=jnp.full((), jnp.inf, dtype)),
            sweep_error=jnp.full((), jnp.inf, dtype),
            best=best, best_at=best_at,
            newton_iterations=s.newton_iterations + 1,
            cg_iterations=s.cg_iterations + cg_iterations,
            newton_failures=s.newton_failures + (~accepted).astype(jnp.int32),
        )

    def step(s: _State) -> _State:
        return jax.lax.cond(s.newton, newton_step, sinkhorn_phase, s)

    zero = jnp.zeros((), jnp.int32)
    inf = jnp.full((), jnp.inf, dtype)
    omega0 = 1.0
    if init is None:
        f0, g0 = jnp.zeros((n,), dtype), jnp.zeros((m,), dtype)
    else:
        f0, g0 = (jnp.asarray(v, dtype) for v in init[:2])
        if len(init) > 2 and adaptive:
            omega0 = init[2]
    init = _State(
        f=f0, g=g0,
        error=jnp.full((), jnp.inf, dtype), row=jnp.zeros((n,), dtype),
        col=jnp.zeros((m,), dtype), index=jnp.zeros((n, kept), jnp.int32),
        count=jnp.zeros((n,), jnp.int32), pattern_drop=jnp.zeros((), dtype),
        kept_mean=jnp.zeros((), dtype), newton=jnp.zeros((), bool),
        direct=jnp.zeros((), bool), slow_blocks=zero,
        relaxation=overrelaxation.start(omega0, dtype), sweep_error=inf, best=inf, best_at=zero,
        sinkhorn_iterations=zero, newton_iterations=zero, cg_iterations=zero,
        newton_failures=zero,
    )
    # One driver step is a Sinkhorn phase (many sweeps on one kernel) or a Newton step;
    # the cap counts sweeps plus Newton steps (neither phase runs past it), and a spent
    # budget or a stall reports error 0 so that the driver returns (the status below is
    # read off the true error). Stalls are tracked in the state, in iterations, because
    # a driver step may be one Newton step or a phase of thousands of sweeps.
    def done(s):
        return s.sinkhorn_iterations + s.newton_iterations

    def finished(s):
        return (done(s) >= config.max_iterations) | stalled(done(s), s.best, s.best_at)

    loop = run_until_converged(
        step, lambda s: jnp.where(finished(s), jnp.zeros((), dtype), s.error), init,
        threshold=threshold, max_iterations=config.max_iterations, inner_iterations=1,
    )
    s = loop.state
    plan = jnp.exp(log_plan(s.f, s.g))
    transport_cost = jnp.sum(plan * cost)
    # KL(P | a b^T) = sum P log(P / (a b^T)) - sum P + 1, and log(P / (a b^T)) is
    # (f_i + g_j - C_ij) / epsilon: no second pass of logarithms.
    row_mass, col_mass = plan.sum(1), plan.sum(0)
    kl = (jnp.dot(row_mass, s.f) + jnp.dot(col_mass, s.g) - transport_cost) / epsilon \
        - jnp.sum(row_mass) + jnp.sum(a) * jnp.sum(b)
    error = jnp.sum(jnp.abs(row_mass - a)) + jnp.sum(jnp.abs(col_mass - b))
    status = final_status(s.error, threshold, stalled(done(s), s.best, s.best_at))
    status = jnp.where(jnp.isfinite(transport_cost), status, Status.DIVERGED).astype(jnp.int32)
    return SNSOutput(
        f=s.f,
        g=s.g,
        cost=transport_cost,
        objective=transport_cost + epsilon * kl,
        marginal_error=error,
        iterations=done(s),
        status=status,
        omega=s.relaxation.omega,
        problem=problem,
        epsilon=epsilon,
        sinkhorn_iterations=s.sinkhorn_iterations,
        newton_iterations=s.newton_iterations,
        cg_iterations=s.cg_iterations,
        newton_failures=s.newton_failures,
        kept_per_row=kept,
    )


def _sparsify(log_plan, row, cap, dropped_mass):
    """Each row's smallest set of largest entries holding all but `dropped_mass` of the
    row's mass, at most `cap` of them, as (n, cap) values and column indices (unused
    slots have value 0), from the log of the plan.

    The selection is `lax.top_k` on float32 copies of the logs relative to each row's
    largest: measured here on CPU, top_k of a 1024 x 1024 matrix takes about 17 ms in
    float32 against 145 ms in float64 (and 110 ms for a 20-step threshold bisection);
    the ordering needs no more precision than float32 gives near the top of a row.
    The values are then read in full precision.
    """
    n, m = log_plan.shape
    peak = jnp.max(log_plan, axis=1, keepdims=True)
    relative = jnp.where(jnp.isfinite(peak), log_plan - peak, 0.0).astype(jnp.float32)
    _, index = jax.lax.top_k(relative, cap)
    values = jnp.exp(jnp.take_along_axis(log_plan, index, axis=1))  # descending
    # Keep the fewest largest entries that hold all but dropped_mass of the row.
    before = jnp.cumsum(values, axis=1) - values  # mass of the larger entries
    used = before < (1.0 - dropped_mass) * row[:, None]
    used = used.at[:, 0].set(True)
    count = jnp.sum(used, axis=1)
    return jnp.where(used, values, 0.0), index.astype(jnp.int32), count.astype(jnp.int32)


def _pcg(matvec, rhs, diagonal, rtol, max_iterations):
    """Jacobi-preconditioned conjugate gradients; returns the solution, the iterations
    used and whether the residual reached `rtol`."""

    def dot(u, v):
        return jnp.sum(u * v)

    x = jnp.zeros_like(rhs)
    r = rhs
    z = r / diagonal
    target = (rtol**2) * dot(rhs, rhs)

    def keep_going(carry):
        _, r, _, _, _, it = carry
        return (dot(r, r) > target) & (it < max_iterations)

    def iterate(carry):
        x, r, z, p, rz, it = carry
        hp = matvec(p)
        step = rz / dot(p, hp)
        x = x + step * p
        r = r - step * hp
        z = r / diagonal
        rz_new = dot(r, z)
        p = z + (rz_new / rz) * p
        return x, r, z, p, rz_new, it + 1

    x, r, _, _, _, iterations = jax.lax.while_loop(
        keep_going, iterate, (x, r, z, z, dot(r, z), jnp.zeros((), jnp.int32))
    )
    return x, iterations, dot(r, r) <= target


def solve(problem: OTProblem, config: SNSConfig, init=None) -> SNSOutput:
    """SNS for a balanced problem; jit-compiled, one program per shape, dtype and
    static config fields. Non-finite costs and negative or non-finite weights raise a
    ValueError (when the arrays are concrete, i.e. not under an outer jit).

    init: optional potentials (f, g) to start from, e.g. a previous output's f and g,
    or (f, g, omega) with its over-relaxation factor too (`SNSOutput.omega`; ignored
    with overrelaxation "off"): a solve cut into chunks of `max_iterations` continues
    where the last one stopped (each chunk re-earns the switch to Newton, two Sinkhorn
    blocks, as the state of the switch rule is not carried over)."""
    if init is not None:
        n, m = problem.geometry.shape
        if len(init) not in (2, 3):
            raise ValueError("init must be (f, g) or (f, g, omega)")
        f, g = init[:2]
        if jnp.shape(f) != (n,) or jnp.shape(g) != (m,):
            raise ValueError(f"init must be potentials of shapes ({n},) and ({m},)")
    output = _solve(problem, config, init)
    # Bad inputs cannot converge: a non-finite cost makes <P, C> non-finite (status
    # DIVERGED) and a negative weight leaves its marginal unmet. So the inputs are
    # checked only after a solve that did not converge: the check is a pass over the
    # cost (0.3-0.6 ms at n = m = 500, a tenth of a fast solve), and a converged solve
    # skips it.
    try:
        converged = int(output.status) == Status.CONVERGED
    except jax.errors.ConcretizationTypeError:
        return output  # traced: the caller's jit owns the checks
    if not converged:
        _check_problem(problem)
    return output


def _check_problem(problem: OTProblem):
    try:
        bad_cost, bad_a, bad_b = jax.device_get(_bad_inputs(
            problem.geometry.cost_matrix(), problem.a, problem.b)).tolist()
    except jax.errors.ConcretizationTypeError:
        return
    if bad_cost:
        raise ValueError("cost_matrix contains non-finite values")
    if bad_a or bad_b:
        raise ValueError(f"{'a' if bad_a else 'b'} must be finite and nonnegative")


@jax.jit
def _bad_inputs(cost, a, b):
    # One program and one transfer to the host: three eager reductions, each read
    # back on its own, cost about 1 ms at n = m = 500, a quarter of a fast solve.
    return jnp.stack([~jnp.all(jnp.isfinite(cost)),
                      ~jnp.all(jnp.isfinite(a) & (a >= 0)),
                      ~jnp.all(jnp.isfinite(b) & (b >= 0))])


def sns(
    x=None,
    y=None,
    a=None,
    b=None,
    *,
    cost_matrix=None,
    cost: str = "sqeuclidean",
    epsilon: float = SNSConfig.epsilon,
    threshold: float = SNSConfig.threshold,
    max_iterations: int = SNSConfig.max_iterations,
    kept_per_row: int | None = SNSConfig.kept_per_row,
    switch_iterations: float | None = SNSConfig.switch_iterations,
    dropped_mass: float = SNSConfig.dropped_mass,
    direct_size: int = SNSConfig.direct_size,
    overrelaxation: str = SNSConfig.overrelaxation,
    stall_patience: int = SNSConfig.stall_patience,
    init=None,
) -> SNSOutput:
    """Convenience entry with `sinkhorn`'s keywords (balanced only); the service's
    `sinkhorn(..., method="sns")` maps here."""
    problem = make_problem(x, y, a, b, cost_matrix, cost)
    config = SNSConfig(
        epsilon=epsilon, threshold=threshold, max_iterations=max_iterations,
        kept_per_row=kept_per_row, switch_iterations=switch_iterations,
        dropped_mass=dropped_mass, direct_size=direct_size, overrelaxation=overrelaxation,
        stall_patience=stall_patience,
    )
    return solve(problem, config, init)
