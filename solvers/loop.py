"""The one loop driver shared by Monge's iterative solvers.

`lax.while_loop` over blocks of `inner_iterations` steps; the error is computed once
per block (it usually costs as much as a step), the loop stops on convergence, on the
iteration cap, on a non-finite error, or (optionally) when the error has stalled.
Everything here is jit-compatible; caps and block sizes are static, the threshold is
traced so one program serves every request.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple, TypeVar

import jax
import jax.numpy as jnp

from monge.solvers.status import Status

State = TypeVar("State")


# Stall detection. A check "improves" when its error is a new minimum by a relative
# margin: below (1 - STALL_MARGIN) x the best error so far. An error sitting at a
# precision floor fluctuates with no trend, so new records by 0.1% soon stop; a run that
# converges, even slowly (0.1% per window is a decade per ~2300 windows), keeps making them.
# A run stalls when the iterations since its best reach max(patience, the iterations it
# took to reach that best). The second term is needed: at small epsilon Sinkhorn has true
# plateaus (measured: 60 x 50 points, epsilon 0.003, squared Euclidean, float64: the L1
# error sits at 0.0800000 for ~250 iterations from iteration ~1650, then falls to 1e-5),
# and plateaus found so far were well under the run's length before them. The price is
# that a run at its floor goes on about as long again as it took to get there.
# Plateaus can still outlast that at tiny epsilon (measured: 40 points, epsilon 1e-4,
# float64: the error sits at 0.80 from iteration ~600 to past 1220), so a third
# condition: the best error must be at most `stall_ceiling`, sqrt(machine epsilon) x
# the mass (3.5e-4 in float32, 1.5e-8 in float64). Precision floors lie well below it
# (Sinkhorn in float32, epsilon 0.1 x mean cost: 1.4e-7 at n = 200, 2.5e-7 at n = 8000);
# the plateaus seen lie far above.
STALL_MARGIN = 1e-3


def improved(error, best):
    """Whether `error` is a new minimum by the stall margin (works on arrays and floats)."""
    return error < (1.0 - STALL_MARGIN) * best


def stall_ceiling(dtype, mass):
    """The largest best error a stall may have: sqrt(machine epsilon) x `mass` (the
    scale of the error, e.g. the total weight it is measured over)."""
    return math.sqrt(float(jnp.finfo(dtype).eps)) * mass


def is_stalled(done, best_at, patience, best, ceiling):
    """The stall rule, in any unit (iterations or checks; arrays or ints): `done` so
    far, `best_at` when the best error `best` was made, `patience` > 0, and the
    `stall_ceiling` that `best` must not exceed."""
    since = done - best_at
    return (since >= patience) & (since >= best_at) & (best <= ceiling)


def stall_checks(patience_iterations: int, inner_iterations: int) -> int:
    """Patience in iterations as a number of error checks (0: detection off)."""
    if patience_iterations <= 0:
        return 0
    return max(1, -(-patience_iterations // inner_iterations))


class LoopOutput(NamedTuple):
    state: Any
    iterations: jax.Array  # int32: steps taken
    error: jax.Array  # the last error computed
    status: jax.Array  # int32, a `Status`


def run_until_converged(
    step: Callable[[State], State],
    error: Callable[[State], jax.Array],
    init: State,
    *,
    threshold: jax.Array | float,
    max_iterations: int,
    inner_iterations: int = 10,
    min_iterations: int = 0,
    stall_patience: int = 0,
    stall_below: jax.Array | float = math.inf,
) -> LoopOutput:
    """Apply `step` until `error(state) <= threshold`, checking once every block.

    `max_iterations`, `inner_iterations` and `stall_patience` are static; `threshold`
    may be traced. Iterations are counted in whole blocks, so the count is a multiple
    of `inner_iterations` (or equals `max_iterations`).

    With `stall_patience` > 0 (iterations, rounded up to whole blocks) the loop also
    stops, with status STALLED, once at least that many iterations, and at least as
    many as it took to reach the best error, have passed without the error making a
    new minimum (`improved`, `is_stalled`), provided the best error is at most
    `stall_below` (traced; see `stall_ceiling`); 0 turns this off. The carry grows by
    two scalars (the best error and the block that made it).
    """
    if inner_iterations < 1 or max_iterations < 1:
        raise ValueError("max_iterations and inner_iterations must be positive")
    inner_iterations = min(inner_iterations, max_iterations)
    num_blocks = -(-max_iterations // inner_iterations)
    patience = stall_checks(stall_patience, inner_iterations)

    def stalled(block, best_at, best):
        return is_stalled(block, best_at, patience, best, stall_below) if patience else jnp.bool_(False)

    def keep_going(carry):
        block, err, best, best_at, _ = carry
        not_done = (err > threshold) | (block * inner_iterations < min_iterations)
        first = block == 0  # no error has been computed yet
        going = (block < num_blocks) & (first | (not_done & jnp.isfinite(err)))
        return going & ~stalled(block, best_at, best)

    def run_block(carry):
        block, _, best, best_at, state = carry
        state = jax.lax.fori_loop(0, inner_iterations, lambda _, s: step(s), state)
        err = error(state)
        better = improved(err, best)
        block = block + 1
        return block, err, jnp.where(better, err, best), jnp.where(better, block, best_at), state

    init_error = jnp.full((), jnp.inf, dtype=jax.eval_shape(error, init).dtype)
    blocks, err, best, best_at, state = jax.lax.while_loop(
        keep_going, run_block, (jnp.int32(0), init_error, init_error, jnp.int32(0), init)
    )
    iterations = jnp.minimum(blocks * inner_iterations, max_iterations)
    stalled = stalled(blocks, best_at, best)
    status = final_status(err, threshold, stalled)
    return LoopOutput(state, iterations.astype(jnp.int32), err, status)


def final_status(err, threshold, stalled) -> jax.Array:
    """DIVERGED, CONVERGED, STALLED or MAX_ITERATIONS, in that order of precedence."""
    return jnp.where(
        ~jnp.isfinite(err),
        Status.DIVERGED,
        jnp.where(
            err <= threshold,
            Status.CONVERGED,
            jnp.where(stalled, Status.STALLED, Status.MAX_ITERATIONS),
        ),
    ).astype(jnp.int32)
