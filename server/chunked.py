"""Run an iterative solver in chunks of iterations so cancellation reaches it.

A compiled solve cannot be interrupted, so the worker runs it for a bounded number of
iterations, warm-starts the next chunk from the state it returned, and checks a stop
flag in between. Chunk sizes are 10 * 2**k iterations (a handful of compiled programs
per shape), doubled while a chunk takes under `target_seconds`, so a stop is noticed
within about that long and short solves pay for one chunk only.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Callable, TypeVar

from monge.solvers.loop import Status

Output = TypeVar("Output")
BASE_CHUNK = 10


def chunk_size(wanted: int, remaining: int) -> int:
    """The largest 10 * 2**k not above min(wanted, remaining); `remaining` below 10 as is."""
    limit = min(wanted, remaining)
    if limit < BASE_CHUNK:
        return limit
    size = BASE_CHUNK
    while size * 2 <= limit:
        size *= 2
    return size


def run_in_chunks(
    solve_chunk: Callable[[int, object], Output],
    warm_start: Callable[[Output], object],
    *,
    max_iterations: int,
    stop: threading.Event,
    first_chunk: int = 160,
    target_seconds: float = 0.25,
    max_chunk: int = 40_960,
) -> Output:
    """`solve_chunk(iterations, init)` runs at most that many iterations from `init`
    (None the first time) and returns an output with `iterations` and `status` fields;
    `warm_start(output)` is the `init` for the next chunk. Returns the last output with
    the iterations of all chunks and status CANCELLED if `stop` was set first."""
    done, init, wanted = 0, None, first_chunk
    while True:
        size = chunk_size(wanted, max_iterations - done)
        started = time.perf_counter()
        output = solve_chunk(size, init)
        status = int(output.status)  # blocks until the device is done
        done += int(output.iterations)
        if status != Status.MAX_ITERATIONS or done >= max_iterations:
            return dataclasses.replace(output, iterations=done)
        if stop.is_set():
            return dataclasses.replace(output, iterations=done, status=int(Status.CANCELLED))
        if time.perf_counter() - started < target_seconds / 2:
            wanted = min(wanted * 2, max_chunk)
        init = warm_start(output)
