"""`monge serve --warmup N`: compile, before the server serves, the Sinkhorn programs that
a call with the default settings on n = m <= N points of dimension 2 runs, in float32
and float64, on every worker, so that such a first call does not pay the compile.

Each program is compiled by solving a small problem of its size bucket through the
executor, as a call would be; with the persistent compilation cache, later starts load
them instead of compiling.
"""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np

from monge.solvers.problem import size_bucket
from monge.v1 import sinkhorn_pb2
from monge.v1.codec import encode

log = logging.getLogger("monge.server")

WARMUP_DIMENSION = 2


def warmup_sizes(max_points: int) -> list[int]:
    """The size buckets up to the one that holds `max_points`."""
    sizes, size = [], size_bucket(1)
    while size <= size_bucket(max_points):
        sizes.append(size)
        size = size_bucket(size + 1)
    return sizes


def warmup_request(n: int, dtype) -> bytes:
    rng = np.random.default_rng(n)
    x = rng.normal(size=(n, WARMUP_DIMENSION)).astype(dtype)
    # The threshold is a traced value (the same program for any): a loose one ends the solve
    # in its first chunk, whose program is the one a default call starts with.
    return sinkhorn_pb2.SinkhornRequest(x=encode(x), y=encode(x + np.asarray(0.5, dtype)),
                                        threshold=1e-2).SerializeToString()


async def warm_up(executor, max_points: int) -> int:
    """Solve one problem per size bucket and dtype on each worker; the number of programs."""
    started = time.perf_counter()
    workers = max(1, len(executor.describe()))
    programs = 0
    for dtype in (np.float32, np.float64):
        for n in warmup_sizes(max_points):
            payload = warmup_request(n, dtype)
            # As many at once as there are workers: each idle worker takes one.
            await asyncio.gather(*(executor.run("sinkhorn", payload) for _ in range(workers)))
            programs += 1
    log.info("warmed up %d Sinkhorn programs (n = m up to %d, d = %d, float32 and float64) in %.1f s",
             programs, max_points, WARMUP_DIMENSION, time.perf_counter() - started)
    return programs
