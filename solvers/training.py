"""Host-side driving of compiled training blocks, shared by the trainers (Var-RUOT, score
models).

Without a stop check a block of steps is one compiled call. With one, the steps run one
compiled call each and the check is asked before every step, the host waiting for each
step so that it is never ahead of a stop. (A host callback inside the compiled block
could ask instead, but JAX keeps no program with a host callback in its persistent
compilation cache, so every server process would compile the trainer again.)
"""

from __future__ import annotations

from typing import Any, Callable

import jax

StepBlock = Callable[[Any, int, int], tuple[Any, jax.Array]]


def run_block(step_block: StepBlock, state, first: int, count: int,
              should_stop: Callable[[], bool] | None):
    """`count` steps from step `first`. `step_block(state, first, steps)` runs `steps`
    compiled steps and returns the new state and the steps' losses summed. Returns
    (state, losses summed over the steps taken or None if none was, steps taken)."""
    if should_stop is None:
        state, total = step_block(state, first, count)
        return state, total, count
    total, taken = None, 0
    for step in range(first, first + count):
        if should_stop():
            break
        state, losses = step_block(state, step, 1)
        total = jax.block_until_ready(losses if total is None else total + losses)
        taken += 1
    return state, total, taken
