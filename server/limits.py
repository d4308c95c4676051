"""How much memory a solver call will need on its worker, estimated from its sizes alone.

`parse` in each call module compares these estimates with the server's
`max_request_memory_bytes` before anything is allocated, so one request cannot take a
worker down with an out-of-memory. The factors are upper bounds measured on the CPU
backend (peak resident memory of a worker solving the call, minus its idle size, in
units of one n x m matrix of the call's dtype):

    dense Sinkhorn, kernel iterations     2.3   (cost, kernel, a temporary)
    dense Sinkhorn, log iterations        3.2   (cost, the log-sum-exp temporaries)
    the dense plan, on top                1.6 dense, 3.8 online
    the plan's views (top-k, barycentric) 0 (they run after the solve, within its peak)
    online Sinkhorn                       a (block, max(n, m)) block or three, no n x m

and rounded up, applied to the padded sizes a Sinkhorn call is solved at (`size_bucket`:
at most 50% more points per side). The compiler's own working memory (a few hundred MB, once per program)
is the worker's, not the request's, and is not counted.
"""

from __future__ import annotations

# The solver's own buckets: the server process loads the solvers module anyway.
from monge.solvers.sinkhorn import size_bucket  # noqa: F401 - used as limits.size_bucket

# n x m matrices of the call's dtype that a dense solve keeps alive at its peak.
DENSE_SINKHORN_MATRICES = 4
# ... and that building and returning the dense plan adds (dense, then online).
PLAN_MATRICES = 2
ONLINE_PLAN_MATRICES = 4
# SNS keeps the cost, the kernel, the plan and its sparsified Hessian.
SNS_MATRICES = 5
# The sparsity-constrained solver: the cost, the per-column top-k work, temporaries, and
# on assignment problems (n = m, equal weights) the host copy for the assignment and
# the scores that pick the other sources. Measured: 6.6 (k = 1) and 7.4 (k = 2) at
# n = m = 3000, compiler included.
SPARSITY_MATRICES = 8
# Network simplex (POT, float64 on the host): the cost it is given and the dense plan
# it returns, plus the cost built from points for p other than 1 and 2; for a large
# problem also the cost's copies on its way to the killable child (the pickled bytes,
# then the child's array), where the dense plan lives.
SIMPLEX_MATRIX_BYTES = 5 * 8
# Online Sinkhorn materialises (block, m) slices of the cost: the cost, its exponentials
# and a temporary.
ONLINE_BLOCK_COPIES = 3


def dense_sinkhorn(n: int, m: int, itemsize: int, *, return_plan: bool = False, sns: bool = False,
                   top_k: int = 0, dimension: int = 0) -> int:
    """`top_k` and `dimension` (of the barycentric map; 0: not asked) are the plan's
    views. They run after the solve has freed its matrices and build at most three
    (the cost, the log-plan, a temporary): measured at n = m = 4000 in float64, no
    higher than the solve's own peak. Only their outputs are added."""
    matrices = SNS_MATRICES if sns else DENSE_SINKHORN_MATRICES
    matrices += PLAN_MATRICES if return_plan else 0
    return matrices * n * m * itemsize + views_output(n, top_k, dimension, itemsize)


def online_sinkhorn(n: int, m: int, d: int, itemsize: int, *, block: int, return_plan: bool = False,
                    top_k: int = 0, dimension: int = 0) -> int:
    """Points and potentials, a few (block, max(n, m)) slices, the plan if asked, and
    the views' outputs (they too work a block of rows at a time)."""
    vectors = (n + m) * (d + 8) * itemsize
    blocks = ONLINE_BLOCK_COPIES * min(block, max(n, m)) * max(n, m) * itemsize
    plan = ONLINE_PLAN_MATRICES * n * m * itemsize if return_plan else 0
    return vectors + blocks + plan + views_output(n, top_k, dimension, itemsize)


# Padding a call to its size buckets buys shared compiled programs; beyond this many
# bytes of added zero-weight points (few points in a high dimension: 2 points of
# dimension 10^6 padded to 16) the copies cost more than a compile saves.
MAX_PADDING_POINT_BYTES = 32 * 1024 * 1024


def padding_is_cheap(n: int, m: int, rows: int, cols: int, d: int, itemsize: int) -> bool:
    """Whether padding n x m points of dimension `d` up to rows x cols adds at most
    `MAX_PADDING_POINT_BYTES`. `d` is 0 for a cost matrix, whose padding the n x m
    estimates already count."""
    return (rows - n + cols - m) * d * itemsize <= MAX_PADDING_POINT_BYTES


def top_k_output(n: int, k: int, itemsize: int) -> int:
    """Bytes of the top-k sparse plan: n k rows, columns (int64) and values."""
    return n * k * (16 + itemsize)


def views_output(n: int, top_k: int, dimension: int, itemsize: int) -> int:
    return top_k_output(n, top_k, itemsize) + n * dimension * itemsize


def sparsity_constrained(n: int, m: int, k: int, itemsize: int) -> int:
    return SPARSITY_MATRICES * n * m * itemsize + 3 * m * k * 8


def network_simplex(n: int, m: int, *, dense_cost: bool) -> int:
    """POT's lazy network simplex on points (p = 1, 2) keeps O(n + m); otherwise a dense
    float64 cost and a dense plan."""
    if not dense_cost:
        return (n + m) * 64
    return SIMPLEX_MATRIX_BYTES * n * m


def describe(nbytes: int) -> str:
    """A byte count as people read it (binary units)."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= size:
            return f"{nbytes / size:.1f} {unit}"
    return f"{nbytes} bytes"


def over_budget(needed: int, budget: int, what: str) -> str:
    """The message for a call whose estimate `needed` exceeds the server's budget."""
    return (f"{what} needs about {describe(needed)} of memory, over this server's limit of "
            f"{describe(budget)} per request (max_request_memory_bytes = {budget:,})")


def over_limit(what: str, limit: int | float, name: str) -> str:
    """The message for a request whose size `what` exceeds the server's limit `name`."""
    shown = f"{limit:,}" if isinstance(limit, int) else f"{limit:g}"
    return f"{what}, over this server's limit of {shown} ({name})"


def training_over_time(step: int, steps: int, elapsed: float, limit: float) -> str:
    """The message for a training run stopped past `max_training_seconds`."""
    return (f"training stopped after {step:,} of {steps:,} steps: it ran {elapsed:.1f} s, over this server's "
            f"limit of {limit:g} s (max_training_seconds); nothing was stored")
