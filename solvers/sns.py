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
  Sinkhorn block (Newton is not yet where it converges fast).
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from monge.solvers.checks import positive_if_concrete
from monge.solvers.loop import run_until_converged
from monge.solvers.status import Status
from monge.solvers.sinkhorn import OTProblem, SinkhornOutput, make_problem


@dataclasses.dataclass(frozen=True, kw_only=True)
class SNSConfig:
    """Hyperparameters. Traced (no recompile): epsilon, threshold, switch_iterations,
    hessian_shift. Static: kept_per_row (a shape), the caps and block size.

    epsilon: entropic weight, absolute (cost units), > 0.
    threshold: stop when the L1 marginal error (rows + columns) is at most this.
    switch_iterations: switch to Newton when the observed Sinkhorn rate predicts more
        than this many remaining sweeps (twice in a row).
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
    """

    epsilon: float = 0.05
    threshold: float = 1e-6
    switch_iterations: float = 1000.0
    hessian_shift: float = 1e-10
    dropped_mass: float = 0.0
    kept_per_row: int | None = dataclasses.field(default=None, metadata=dict(static=True))
    direct_size: int = dataclasses.field(default=1024, metadata=dict(static=True))
    max_iterations: int = dataclasses.field(default=10_000, metadata=dict(static=True))
    inner_iterations: int = dataclasses.field(default=10, metadata=dict(static=True))
    max_cg_iterations: int = dataclasses.field(default=500, metadata=dict(static=True))
    max_halvings: int = dataclasses.field(default=30, metadata=dict(static=True))

    def __post_init__(self):
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
                 "max_cg_iterations", "max_halvings"],
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
    sinkhorn_iterations: jax.Array
    newton_iterations: jax.Array
    cg_iterations: jax.Array
    newton_failures: jax.Array


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

    def marginal_error(f, g):
        _, row, col = marginals(f, g)
        return jnp.sum(jnp.abs(row - a)) + jnp.sum(jnp.abs(col - b))

    # -- Sinkhorn phase ------------------------------------------------------------
    # Scaling iterations on a kernel built around the current potentials, as monge's
    # stabilised Sinkhorn: one exp pass when the phase starts, then two mat-vecs per
    # sweep, the error (one more mat-vec) once per block. The phase runs block after
    # block until the threshold, the switch rule, the iteration cap, or scalings that
    # leave exp(+-B) (then they are absorbed into the potentials and the next phase
    # rebuilds the kernel). A first block that over- or underflows (a kernel row that
    # underflowed, e.g. at f = g = 0 and small epsilon) is redone with log-domain
    # sweeps, which cannot.
    bound = 0.25 * math.log(float(jnp.finfo(dtype).max))
    hi, lo = math.exp(bound), math.exp(-bound)

    def observe(prev_error, error, slow_blocks):
        # Per-sweep contraction observed over the block, and the sweeps it predicts
        # until the threshold; a rate >= 1 (stalled) also counts as slow.
        rate = (error / prev_error) ** (1.0 / block)
        remaining = jnp.where(
            rate < 1.0, jnp.log(threshold / error) / jnp.log(jnp.maximum(rate, 1e-300)), jnp.inf
        )
        slow = jnp.isfinite(prev_error) & (remaining > config.switch_iterations)
        return jnp.where(slow, slow_blocks + 1, 0)

    def log_sweep(_, fg):
        f, g = fg
        f = -epsilon * logsumexp(log_b[None, :] + (g[None, :] - cost) / epsilon, axis=1)
        g = -epsilon * logsumexp(log_a[:, None] + (f[:, None] - cost) / epsilon, axis=0)
        return f, g

    def sinkhorn_phase(s: _State) -> _State:
        kernel = jnp.exp((s.f[:, None] + s.g[None, :] - cost) / epsilon)
        budget = config.max_iterations - s.sinkhorn_iterations - s.newton_iterations

        def sweep(_, uv):
            _, v = uv
            u = 1.0 / (kernel @ (b * v))
            # (a u)^T K, not K^T (a u): XLA on CPU transposes K for the latter.
            return u, 1.0 / ((a * u) @ kernel)

        def more(c):
            _, _, error, _, slow_blocks, sweeps, ok = c
            return ok & (error > threshold) & (slow_blocks < 2) & (sweeps < budget)

        def kernel_block(c):
            u0, v0, prev_error, row0, slow0, sweeps, _ = c
            u, v = jax.lax.fori_loop(0, block, sweep, (u0, v0))
            # The columns hold exactly after the last v-update; the rows are the error.
            row = a * u * (kernel @ (b * v))
            error = jnp.sum(jnp.abs(row - a))
            ok = (jnp.isfinite(error) & jnp.all((u > lo) & (u < hi))
                  & jnp.all((v > lo) & (v < hi)))
            slow = observe(prev_error, error, slow0)
            keep = lambda new, old: jnp.where(ok, new, old)  # noqa: E731
            return (keep(u, u0), keep(v, v0), keep(error, prev_error), keep(row, row0),
                    keep(slow, slow0), sweeps + jnp.where(ok, block, 0).astype(jnp.int32), ok)

        ones_f, ones_g = jnp.ones_like(s.f), jnp.ones_like(s.g)
        u, v, error, row, slow_blocks, sweeps, _ = jax.lax.while_loop(
            more, kernel_block,
            (ones_f, ones_g, s.error, s.row, s.slow_blocks, jnp.zeros((), jnp.int32),
             jnp.bool_(True)))
        f, g = s.f + epsilon * jnp.log(u), s.g + epsilon * jnp.log(v)

        def log_block():
            f, g = jax.lax.fori_loop(0, block, log_sweep, (s.f, s.g))
            _, row, col = marginals(f, g)
            error = jnp.sum(jnp.abs(row - a)) + jnp.sum(jnp.abs(col - b))
            return (f, g, error, row, col, observe(s.error, error, s.slow_blocks),
                    jnp.int32(block))

        f, g, error, row, col, slow_blocks, sweeps = jax.lax.cond(
            sweeps > 0, lambda: (f, g, error, row, b, slow_blocks, sweeps), log_block)
        return s._replace(
            f=f, g=g, error=error, row=row, col=col, newton=slow_blocks >= 2,
            slow_blocks=slow_blocks, sinkhorn_iterations=s.sinkhorn_iterations + sweeps,
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
        return s._replace(
            f=jnp.where(accepted, s.f + t * df, s.f),
            g=jnp.where(accepted, s.g + t * dg, s.g),
            error=jnp.where(accepted, err, s.error),
            row=jnp.where(accepted, row_t, s.row),
            col=jnp.where(accepted, col_t, s.col),
            index=index, count=count, pattern_drop=pattern_drop, kept_mean=kept_mean,
            direct=go_direct,
            # No decrease, or a short step: back to a Sinkhorn block, which re-earns the
            # switch.
            newton=stay,
            slow_blocks=jnp.where(stay, s.slow_blocks, 0),
            newton_iterations=s.newton_iterations + 1,
            cg_iterations=s.cg_iterations + cg_iterations,
            newton_failures=s.newton_failures + (~accepted).astype(jnp.int32),
        )

    def step(s: _State) -> _State:
        return jax.lax.cond(s.newton, newton_step, sinkhorn_phase, s)

    zero = jnp.zeros((), jnp.int32)
    if init is None:
        f0, g0 = jnp.zeros((n,), dtype), jnp.zeros((m,), dtype)
    else:
        f0, g0 = (jnp.asarray(v, dtype) for v in init)
    init = _State(
        f=f0, g=g0,
        error=jnp.full((), jnp.inf, dtype), row=jnp.zeros((n,), dtype),
        col=jnp.zeros((m,), dtype), index=jnp.zeros((n, kept), jnp.int32),
        count=jnp.zeros((n,), jnp.int32), pattern_drop=jnp.zeros((), dtype),
        kept_mean=jnp.zeros((), dtype), newton=jnp.zeros((), bool),
        direct=jnp.zeros((), bool), slow_blocks=zero,
        sinkhorn_iterations=zero, newton_iterations=zero, cg_iterations=zero,
        newton_failures=zero,
    )
    # One driver step is a Sinkhorn phase (many sweeps on one kernel) or a Newton step;
    # the cap counts sweeps plus Newton steps, and a spent budget reports error 0 so
    # that the driver returns (the status below is read off the true error).
    def exhausted(s):
        return s.sinkhorn_iterations + s.newton_iterations >= config.max_iterations

    loop = run_until_converged(
        step, lambda s: jnp.where(exhausted(s), jnp.zeros((), dtype), s.error), init,
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
    status = jnp.where(
        ~jnp.isfinite(s.error) | ~jnp.isfinite(transport_cost), Status.DIVERGED,
        jnp.where(s.error <= threshold, Status.CONVERGED, Status.MAX_ITERATIONS),
    ).astype(jnp.int32)
    return SNSOutput(
        f=s.f,
        g=s.g,
        cost=transport_cost,
        objective=transport_cost + epsilon * kl,
        marginal_error=error,
        iterations=s.sinkhorn_iterations + s.newton_iterations,
        status=status,
        omega=jnp.ones((), s.f.dtype),  # SNS's Sinkhorn sweeps are plain ones
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

    init: optional potentials (f, g) to start from, e.g. a previous output's f and g:
    a solve cut into chunks of `max_iterations` continues where the last one stopped
    (each chunk re-earns the switch to Newton, two Sinkhorn blocks, as the state of
    the switch rule is not carried over)."""
    if init is not None:
        n, m = problem.geometry.shape
        f, g = init
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
    switch_iterations: float = SNSConfig.switch_iterations,
    dropped_mass: float = SNSConfig.dropped_mass,
    direct_size: int = SNSConfig.direct_size,
    init=None,
) -> SNSOutput:
    """Convenience entry with `sinkhorn`'s keywords (balanced only); the service's
    `sinkhorn(..., method="sns")` maps here."""
    problem = make_problem(x, y, a, b, cost_matrix, cost)
    config = SNSConfig(
        epsilon=epsilon, threshold=threshold, max_iterations=max_iterations,
        kept_per_row=kept_per_row, switch_iterations=switch_iterations,
        dropped_mass=dropped_mass, direct_size=direct_size,
    )
    return solve(problem, config, init)
