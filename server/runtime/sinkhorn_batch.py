"""Many Sinkhorn requests of one batch key solved as one vectorised call on a worker.

The server's `DynamicBatcher` groups requests that share a `batch_key` (settings, dtype,
dimension and size bucket); the worker solves them with `solvers.sinkhorn.solve_batch`,
which pads every problem with zero-weight points to the bucket and vmaps one compiled
program over the batch on an accelerator, or solves the members in turn on CPU (where a
vmapped batch is slower than its calls one by one). Requests and replies cross the process boundary as a framed
list of serialized protobufs: only data, never code.
"""

from __future__ import annotations

import struct
import time

import numpy as np

from monge.server import limits
from monge.server.calls import sinkhorn as sinkhorn_call
from monge.server.calls.sinkhorn import SinkhornCall
from monge.v1 import sinkhorn_pb2

KIND = "sinkhorn_batch"
# Methods whose iterations can run under vmap; SNS branches on the data (not batched).
BATCHED_METHODS = ("auto", "kernel", "log")
_LENGTH = struct.Struct("<Q")
# Larger problems keep a device busy on their own; batching them only adds padding.
# Batches pad to powers of two: coarse buckets put more concurrent requests together.
MAX_BATCHED_ELEMENTS = 1024 * 1024


def frame(items: list[bytes]) -> bytes:
    """Length-prefixed concatenation: count, then (length, bytes) per item."""
    parts = [_LENGTH.pack(len(items))]
    for item in items:
        parts += [_LENGTH.pack(len(item)), item]
    return b"".join(parts)


def unframe(data: bytes) -> list[bytes]:
    (count,), offset = _LENGTH.unpack_from(data, 0), _LENGTH.size
    items = []
    for _ in range(count):
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += _LENGTH.size
        items.append(data[offset:offset + length])
        offset += length
    if offset != len(data):
        raise ValueError("framed batch has trailing bytes")
    return items


def batch_key(call: SinkhornCall) -> tuple | None:
    """Requests with the same key can share one vmapped program; None: not batchable."""
    from monge.solvers.sinkhorn import power_of_two_bucket as bucket

    n, m = call.shape
    source = call.cost_matrix if call.cost_matrix is not None else call.x
    dimension = None if call.cost_matrix is not None else call.x.shape[1]
    if (call.method not in BATCHED_METHODS or call.online
            or bucket(n) * bucket(m) > MAX_BATCHED_ELEMENTS
            or not limits.padding_is_cheap(n, m, bucket(n), bucket(m), dimension or 0, source.dtype.itemsize)):
        return None
    return call.cost, dimension, source.dtype.str, bucket(n), bucket(m), _config(call, call.max_iterations)


def _config(call: SinkhornCall, max_iterations: int, first_chunk: bool = True):
    # Batches run kernel or log iterations on dense costs: "auto" is kernel here.
    return call.solver_config(max_iterations, first_chunk=first_chunk,
                              method="log" if call.method == "log" else "kernel")


def max_batch_for_memory(key: tuple, budget: int, *, top_k: int = 0, dimension: int = 0) -> int:
    """The largest batch of this key whose padded problems, solved together, fit in
    `budget` bytes (a power of two, as batches are padded to one; at least 1).
    `top_k` and `dimension` are the largest views (top-k entries, barycentric map)
    that a problem of the batch asks for."""
    _, _, dtype, n, m, *_ = key
    # Plans are built on request; count them for every problem of the batch.
    per_problem = limits.dense_sinkhorn(n, m, np.dtype(dtype).itemsize, return_plan=True,
                                        top_k=top_k, dimension=dimension)
    fit = max(1, budget // per_problem)
    return 1 << (fit.bit_length() - 1)


def run_batch(payload: bytes, limits, stop, progress=None) -> bytes:
    """Worker side of dynamic batching: framed SinkhornRequests of one batch key in,
    framed SinkhornResponses out."""
    requests = [sinkhorn_pb2.SinkhornRequest.FromString(item) for item in unframe(payload)]
    calls = [sinkhorn_call.parse(request, limits) for request in requests]
    replies = [sinkhorn_call.encode_response(result) for result in solve_group(calls, stop, progress)]
    return frame([reply.SerializeToString() for reply in replies])


def solve_group(calls: list[SinkhornCall], stop, progress=None) -> list[tuple]:
    """Solve calls that share one batch key as one vmapped program; one `run` result
    (numbers, views, seconds) per call, in order.

    The batch runs in chunks of iterations, warm-started, so that `stop` is honoured
    between chunks as for a single call. Vmapped (accelerators), the batch is padded to
    a power-of-two count (repeating its first problem) so that a handful of programs
    serve every count; on CPU the members are solved in turn (`solve_batch`)."""
    import dataclasses

    from monge.server.runtime.chunked import chunk_for_size
    from monge.solvers.loop import improved, is_stalled, stall_ceiling
    from monge.solvers.status import Status
    from monge.solvers.sinkhorn import (
        STALL_PATIENCE, default_vectorization, make_problem, power_of_two_bucket,
        solve_batch,
    )

    keys = {batch_key(call) for call in calls}
    if len(keys) != 1 or None in keys:
        raise ValueError("a Sinkhorn batch must share one batch key")
    first = calls[0]
    problems = [make_problem(c.x, c.y, c.a, c.b, c.cost_matrix, c.cost) for c in calls]
    count = len(problems)
    vectorize = default_vectorization()
    if vectorize == "vmap":  # a loop solves no padding members
        problems += [problems[0]] * ((1 << (count - 1).bit_length()) - count)
    _, _, _, n, m, *_ = keys.pop()
    # Vmapped, a chunk's time grows with the (power-of-two) count. In a loop each member
    # runs alone, so the chunk is a member's: a count-dependent chunk (a static
    # iteration cap) compiled a new program for nearly every batch size (measured: 244
    # compiles in a 30 s window of the batching benchmark).
    chunk = chunk_for_size(n * m * (len(problems) if vectorize == "vmap" else 1))

    started = time.perf_counter()
    outputs = [None] * len(problems)
    done = np.zeros(len(problems), bool)
    iterations = np.zeros(len(problems), np.int64)
    starts = [None] * len(problems)
    # Stall detection across chunks, per member, as `chunked.run_in_chunks` does it.
    best, best_at = np.full(len(problems), np.inf), np.zeros(len(problems), np.int64)
    while True:
        budget = first.max_iterations - int(iterations[~done].max(initial=0))
        config = _config(first, min(chunk, budget), first_chunk=all(start is None for start in starts))
        if vectorize == "loop":
            # Members in turn, done ones skipped; once the stop flag is up, only members
            # without any answer yet run (one chunk), so each has a result to return.
            active, solved = [], []
            for index in np.flatnonzero(~done):
                if stop.is_set() and outputs[index] is not None:
                    continue
                active.append(index)
                solved += solve_batch([problems[index]], config, [starts[index]], vectorize="loop")
        else:  # vmap keeps the batch's shape (one program)
            active = np.arange(len(problems))
            solved = solve_batch(problems, config, starts, bucket=power_of_two_bucket,
                                 vectorize="vmap")
        for index, output in zip(active, solved):
            if done[index]:
                continue
            iterations[index] += int(output.iterations)
            outputs[index] = output
            starts[index] = (output.f, output.g, output.omega)
            error = float(output.marginal_error)
            if improved(error, best[index]):
                best[index], best_at[index] = error, iterations[index]
            status = int(output.status)
            ceiling = stall_ceiling(output.problem.a.dtype,
                                    float(np.sum(output.problem.a) + np.sum(output.problem.b)))
            if status == Status.MAX_ITERATIONS and is_stalled(iterations[index], best_at[index], STALL_PATIENCE,
                                                              best[index], ceiling):
                outputs[index] = dataclasses.replace(output, status=int(Status.STALLED))
                status = Status.STALLED
            done[index] = status != Status.MAX_ITERATIONS
        if progress is not None:
            progress(iteration=int(iterations[:count].max()), batch_size=count)
        if done[:count].all() or iterations[:count].max() >= first.max_iterations:
            break
        if stop.is_set():
            for index in np.flatnonzero(~done):
                outputs[index] = dataclasses.replace(outputs[index], status=int(Status.CANCELLED))
            break
    seconds = time.perf_counter() - started
    results = []
    for index, call in enumerate(calls):
        output = dataclasses.replace(outputs[index], iterations=int(iterations[index]))
        views = sinkhorn_call.plan_views(_padded_to(output, n, m), call, *call.shape) if call.wants_views else {}
        results.append((sinkhorn_call._to_numpy(output), views, seconds))
    return results


def _padded_to(output, n: int, m: int):
    """The output on its problem padded back to the batch's bucket, so that its plan
    views run the bucket's compiled programs rather than one per size."""
    from monge.solvers.sinkhorn import pad_problem

    return output.resized(n, m, pad_problem(output.problem, n, m))
