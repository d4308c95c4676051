"""Run an iterative solver in chunks of iterations so cancellation reaches it.

A compiled solve cannot be interrupted, so the worker runs it for a bounded number of
iterations, warm-starts the next chunk from the state it returned, and checks a stop
flag in between. Chunk sizes are 10 * 2**k iterations (a handful of compiled programs
per shape), doubled while a chunk takes under `target_seconds`, so a stop is noticed
within about that long and short solves pay for one chunk only.

Each chunk is a fresh solve, so a solver's own stall detection (`loop.is_stalled`)
rarely fires inside one (a chunk may be 10 iterations); `run_in_chunks` applies the
same rule across chunks, in iterations, on the chunks' `marginal_error`.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, TypeVar

from monge.solvers.loop import improved, is_stalled
from monge.server.priority import give_way
from monge.solvers.status import Status

Output = TypeVar("Output")
BASE_CHUNK = 10


def chunk_size(wanted: int, remaining: int) -> int:
    """The largest 10 * 2**k not above `wanted`, or all of a smaller `remaining` (one
    program for the last chunk, rather than one per power of two)."""
    if remaining <= wanted:
        return remaining
    limit = wanted
    if limit < BASE_CHUNK:
        return limit
    size = BASE_CHUNK
    while size * 2 <= limit:
        size *= 2
    return size


def chunk_for_size(work_per_iteration: float, target_seconds: float = 0.25,
                   seconds_per_unit: float = 5e-9, largest: int = 2560) -> int:
    """A fixed chunk for a problem: about `target_seconds` of work at a conservative
    speed (`work_per_iteration` units, e.g. n * m), as 10 * 2**k iterations, so each
    problem shape compiles one chunk program and a stop is noticed quickly."""
    wanted = target_seconds / max(work_per_iteration * seconds_per_unit, 1e-12)
    return chunk_size(int(min(max(wanted, BASE_CHUNK), largest)), largest + 1)


def run_in_chunks(
    solve_chunk: Callable[[int, object], Output],
    warm_start: Callable[[Output], object],
    *,
    max_iterations: int,
    stop,
    first_chunk: int = 160,
    target_seconds: float = 0.25,
    max_chunk: int = 40_960,
    grow: bool = True,
    progress: Callable[..., None] | None = None,
    stall_patience: int = 0,
    stall_below: float = float("inf"),
) -> Output:
    """`solve_chunk(iterations, init)` runs at most that many iterations from `init`
    (None the first time) and returns an output with `iterations` and `status` fields;
    `stop` is anything with `is_set()`; `progress(iteration=, error=)` hears of each chunk;
    `warm_start(output)` is the `init` for the next chunk. Returns the last output with
    the iterations of all chunks and status CANCELLED if `stop` was set first.

    `stall_patience` > 0 (iterations): stop with status STALLED when the outputs'
    `marginal_error` has made no new minimum for that many iterations and for as many
    as it took to reach its best, that best being at most `stall_below`
    (`loop.is_stalled`, the solvers' own rule; `loop.stall_ceiling` gives the bound)."""
    done, init, wanted = 0, None, first_chunk
    best, best_at = float("inf"), 0
    while True:
        if done:
            give_way(stop)  # between chunks: the state is on the host side of the loop
        size = chunk_size(wanted, max_iterations - done)
        started = time.perf_counter()
        output = solve_chunk(size, init)
        status = int(output.status)  # blocks until the device is done
        done += int(output.iterations)
        error = float(getattr(output, "marginal_error", float("nan")))
        if progress is not None:
            progress(iteration=done, error=error)
        if improved(error, best):
            best, best_at = error, done
        if status == Status.MAX_ITERATIONS and stall_patience > 0 and is_stalled(
                done, best_at, stall_patience, best, stall_below):
            return dataclasses.replace(output, iterations=done, status=int(Status.STALLED))
        if status != Status.MAX_ITERATIONS or done >= max_iterations:
            return dataclasses.replace(output, iterations=done)
        if stop.is_set():
            return dataclasses.replace(output, iterations=done, status=int(Status.CANCELLED))
        if grow and time.perf_counter() - started < target_seconds / 2:
            wanted = min(wanted * 2, max_chunk)
        init = warm_start(output)
