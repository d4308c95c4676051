"""The one loop driver shared by Monge's iterative solvers.

`lax.while_loop` over blocks of `inner_iterations` steps; the error is computed once
per block (it usually costs as much as a step), the loop stops on convergence, on the
iteration cap, or on a non-finite error. Everything here is jit-compatible; caps and
block sizes are static, the threshold is traced so one program serves every request.
"""

from __future__ import annotations

import enum
from typing import Any, Callable, NamedTuple, TypeVar

import jax
import jax.numpy as jnp

State = TypeVar("State")


class Status(enum.IntEnum):
    """Why an iterative solver stopped. Stored as an int32 array under jit."""

    CONVERGED = 0
    MAX_ITERATIONS = 1
    DIVERGED = 2  # the error became NaN or infinite
    CANCELLED = 3  # stopped from outside (deadline or cancellation), between blocks

    @property
    def message(self) -> str:
        return _MESSAGES[self]


_MESSAGES = {
    Status.CONVERGED: "converged: the error fell below the threshold",
    Status.MAX_ITERATIONS: "not converged: the iteration cap was reached before the threshold",
    Status.DIVERGED: "diverged: the error became NaN or infinite "
    "(epsilon may be too small for this precision)",
    Status.CANCELLED: "cancelled before convergence",
}


def status_message(status: int) -> str:
    """A readable sentence for a status code returned by a solver."""
    return Status(int(status)).message


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
) -> LoopOutput:
    """Apply `step` until `error(state) <= threshold`, checking once every block.

    `max_iterations` and `inner_iterations` are static; `threshold` may be traced.
    Iterations are counted in whole blocks, so the count is a multiple of
    `inner_iterations` (or equals `max_iterations`).
    """
    if inner_iterations < 1 or max_iterations < 1:
        raise ValueError("max_iterations and inner_iterations must be positive")
    inner_iterations = min(inner_iterations, max_iterations)
    num_blocks = -(-max_iterations // inner_iterations)

    def keep_going(carry):
        block, err, _ = carry
        not_done = (err > threshold) | (block * inner_iterations < min_iterations)
        first = block == 0  # no error has been computed yet
        return (block < num_blocks) & (first | (not_done & jnp.isfinite(err)))

    def run_block(carry):
        block, _, state = carry
        state = jax.lax.fori_loop(0, inner_iterations, lambda _, s: step(s), state)
        return block + 1, error(state), state

    init_error = jnp.full((), jnp.inf, dtype=jax.eval_shape(error, init).dtype)
    blocks, err, state = jax.lax.while_loop(
        keep_going, run_block, (jnp.int32(0), init_error, init)
    )
    iterations = jnp.minimum(blocks * inner_iterations, max_iterations)
    status = jnp.where(
        ~jnp.isfinite(err),
        Status.DIVERGED,
        jnp.where(err <= threshold, Status.CONVERGED, Status.MAX_ITERATIONS),
    ).astype(jnp.int32)
    return LoopOutput(state, iterations.astype(jnp.int32), err, status)
