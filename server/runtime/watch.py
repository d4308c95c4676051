"""The host side of a watched solve (`monge.solvers.loop.Watch`): stop and progress.

A served solve runs as one compiled program, the same as in-process, so it stops at the
iteration the in-process solve stops at and builds its cost once. Between blocks the
program asks `ask` (below) how many more iterations to run before asking again; the
answer is sized from the speed measured so far to about `POLL_SECONDS` of work, so a
stop (cancellation, a deadline) is seen within about that long, and asking costs well
under 1% (measured here: about 40 us a question on CPU). 0 means stop now.

Programs with a host callback are not written to JAX's persistent compile cache, so a
restarted server compiles these again on a shape's first call (`monge serve --warmup`
does it before serving).
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import threading
import time
from typing import Callable

import numpy as np

POLL_SECONDS = 0.02
PROGRESS_SECONDS = 0.25
FIRST_QUESTION = 10  # iterations: one block, before anything is known of the speed
LONGEST_WAIT = 1_000_000  # iterations between questions, at the most


@dataclasses.dataclass
class _Watched:
    stop: object  # anything with is_set()
    progress: Callable[..., None] | None
    asked_at: float
    asked_done: int = 0
    reported_at: float = 0.0


_lock = threading.Lock()
_watched: dict[int, _Watched] = {}
_tokens = itertools.count(1)


def ask(token, done, error) -> np.int32:
    """Called from the running program: iterations to run before the next question, or 0."""
    watched = _watched.get(int(token))
    if watched is None:  # not ours to stop
        return np.int32(LONGEST_WAIT)
    if watched.stop.is_set():
        return np.int32(0)
    now, done = time.perf_counter(), int(done)
    if watched.progress is not None and now - watched.reported_at >= PROGRESS_SECONDS:
        watched.reported_at = now
        watched.progress(iteration=done, error=float(error))
    per_iteration = (now - watched.asked_at) / max(done - watched.asked_done, 1)
    watched.asked_at, watched.asked_done = now, done
    wait = POLL_SECONDS / per_iteration if per_iteration > 0 else LONGEST_WAIT
    return np.int32(int(min(max(wait, 1), LONGEST_WAIT)))


@contextlib.contextmanager
def watching(stop, progress: Callable[..., None] | None = None):
    """A `Watch` for one solve: it stops when `stop.is_set()`, and `progress(iteration=,
    error=)` hears of it about every PROGRESS_SECONDS."""
    import jax.numpy as jnp

    from monge.solvers.loop import Watch

    with _lock:
        token = next(_tokens)
        # The first question reports progress at once: a job shows it has started.
        _watched[token] = _Watched(stop, progress, asked_at=time.perf_counter(), reported_at=-float("inf"))
    try:
        yield Watch(ask, jnp.int32(token), jnp.int32(FIRST_QUESTION))
    finally:
        with _lock:
            _watched.pop(token, None)
