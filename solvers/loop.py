"""The one loop driver shared by Monge's iterative solvers.

`lax.while_loop` over blocks of `inner_iterations` steps; the error is computed once
per block (it usually costs as much as a step), the loop stops on convergence, on the
iteration cap, on a non-finite error, or (optionally) when the error has stalled.
Everything here is jit-compatible; block sizes are static, the threshold and the cap
may be traced so one program serves every request.

A caller that must be able to stop a running solve (the service: cancellation,
deadlines) or hear of its progress passes a `Watch`: the loop then asks a host function
between blocks, as often as that function says, whether to go on. The solve is the same
program otherwise, so it stops where an unwatched one stops. Without a watch nothing of
this is compiled.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple, TypeVar

import jax
import jax.numpy as jnp
from jax.experimental import io_callback

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


@dataclasses.dataclass(frozen=True)
class Watch:
    """A host hook between blocks: `ask(token, iterations, error) -> int` runs on the host
    (through `io_callback`) and answers how many more iterations to run before asking
    again, or 0 to stop now (the solve then ends with status CANCELLED). `ask` is static
    (a module-level function: one program serves every call); `token` (int32, traced)
    tells the host which call is asking; the first question comes after `first`
    iterations (traced)."""

    ask: Callable[..., Any]
    token: jax.Array
    first: jax.Array


jax.tree_util.register_dataclass(Watch, data_fields=["token", "first"], meta_fields=["ask"])


class Polling(NamedTuple):
    """What a watched run carries from block to block (and from loop to loop, when a
    solver runs several: epsilon-scaling stages, kernel rebuilds)."""

    done: jax.Array  # int32: iterations run under this watch, all loops together
    next_at: jax.Array  # int32: ask when `done` reaches this
    stopped: jax.Array  # bool: the host said stop


def start_polling(watch: Watch | None) -> Polling | None:
    if watch is None:
        return None
    return Polling(jnp.int32(0), jnp.asarray(watch.first, jnp.int32), jnp.bool_(False))


def poll(watch: Watch | None, polling: Polling | None, iterations: int, error) -> Polling | None:
    """`polling` after `iterations` more, asking the host if it is time."""
    if watch is None:
        return polling
    done = polling.done + iterations

    def ask():
        answer = io_callback(watch.ask, jax.ShapeDtypeStruct((), jnp.int32), watch.token, done, error,
                             ordered=False)
        return Polling(done, done + jnp.maximum(answer, 1), answer <= 0)

    return jax.lax.cond(done >= polling.next_at, ask, lambda: polling._replace(done=done))


def stopped(polling: Polling | None) -> jax.Array:
    return jnp.bool_(False) if polling is None else polling.stopped


class LoopOutput(NamedTuple):
    state: Any
    iterations: jax.Array  # int32: steps taken
    error: jax.Array  # the last error computed
    status: jax.Array  # int32, a `Status`
    polling: Polling | None = None  # a watched run's, to pass on to a next loop


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
    watch: Watch | None = None,
    polling: Polling | None = None,
) -> LoopOutput:
    """Apply `step` until `error(state) <= threshold`, checking once every block.

    `inner_iterations` and `stall_patience` are static; `threshold` and
    `max_iterations` may be traced (one program serves every cap). Iterations are
    counted in whole blocks, so the count is a multiple of `inner_iterations` (or
    equals `max_iterations`, where the last block stops).

    With `stall_patience` > 0 (iterations, rounded up to whole blocks) the loop also
    stops, with status STALLED, once at least that many iterations, and at least as
    many as it took to reach the best error, have passed without the error making a
    new minimum (`improved`, `is_stalled`), provided the best error is at most
    `stall_below` (traced; see `stall_ceiling`); 0 turns this off. The carry grows by
    two scalars (the best error and the block that made it).

    With a `watch`, the loop asks its host function between blocks (see `Watch`) and
    stops with status CANCELLED when told to; `polling` carries on from an earlier
    loop's (`LoopOutput.polling`), or starts afresh when None.
    """
    if inner_iterations < 1 or (isinstance(max_iterations, int) and max_iterations < 1):
        raise ValueError("max_iterations and inner_iterations must be positive")
    if isinstance(max_iterations, int):
        inner_iterations = min(inner_iterations, max_iterations)
    num_blocks = (max_iterations + inner_iterations - 1) // inner_iterations
    patience = stall_checks(stall_patience, inner_iterations)

    def stalled(block, best_at, best):
        return is_stalled(block, best_at, patience, best, stall_below) if patience else jnp.bool_(False)

    if polling is None:
        polling = start_polling(watch)

    def keep_going(carry):
        block, err, best, best_at, _, polled = carry
        not_done = (err > threshold) | (block * inner_iterations < min_iterations)
        first = block == 0  # no error has been computed yet
        going = (block < num_blocks) & (first | (not_done & jnp.isfinite(err)))
        return going & ~stalled(block, best_at, best) & ~stopped(polled)

    def run_block(carry):
        block, _, best, best_at, state, polled = carry
        # The last block stops at the cap (a traced cap need not be a whole number of blocks).
        steps = jnp.minimum(inner_iterations, max_iterations - block * inner_iterations)
        state = jax.lax.fori_loop(0, steps, lambda _, s: step(s), state)
        err = error(state)
        better = improved(err, best)
        block = block + 1
        polled = poll(watch, polled, steps, err)
        return block, err, jnp.where(better, err, best), jnp.where(better, block, best_at), state, polled

    init_error = jnp.full((), jnp.inf, dtype=jax.eval_shape(error, init).dtype)
    blocks, err, best, best_at, state, polling = jax.lax.while_loop(
        keep_going, run_block, (jnp.int32(0), init_error, init_error, jnp.int32(0), init, polling)
    )
    iterations = jnp.minimum(blocks * inner_iterations, max_iterations)
    stalled = stalled(blocks, best_at, best)
    status = final_status(err, threshold, stalled, stopped(polling), started=blocks > 0)
    return LoopOutput(state, iterations.astype(jnp.int32), err, status, polling)


def final_status(err, threshold, stalled, cancelled=False, started=True) -> jax.Array:
    """DIVERGED, CONVERGED, STALLED, CANCELLED or MAX_ITERATIONS, in that order of
    precedence; CANCELLED before all when it came before the first error (`started` false:
    the error is still its initial infinity)."""
    status = jnp.where(
        ~jnp.isfinite(err),
        Status.DIVERGED,
        jnp.where(
            err <= threshold,
            Status.CONVERGED,
            jnp.where(stalled, Status.STALLED, jnp.where(cancelled, Status.CANCELLED, Status.MAX_ITERATIONS)),
        ),
    )
    return jnp.where(cancelled & ~started, Status.CANCELLED, status).astype(jnp.int32)
