"""Many Sinkhorn problems at once: padded to shape buckets and vmapped on an
accelerator, solved in turn on CPU."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import jax.numpy as jnp

from monge.solvers.problem import OTProblem, pad_problem, size_bucket
from monge.solvers.sinkhorn.solver import SinkhornConfig, SinkhornOutput, _solve, solve


_solve_vmapped = jax.jit(jax.vmap(_solve, in_axes=(0, None, 0)))


def default_vectorization() -> str:
    """How `solve_batch` solves a batch on the default device: "vmap" on an accelerator,
    "loop" on CPU (see `solve_batch`)."""
    return "loop" if jax.default_backend() == "cpu" else "vmap"


def _padded_start(start, n0: int, m0: int, n: int, m: int, dtype):
    """A warm start (None, (f, g) or (f, g, omega)) padded to n x m, always as
    (f, g, omega) so that cold and warm starts share one program."""
    if start is None:
        start = (jnp.zeros(n0, dtype), jnp.zeros(m0, dtype))
    f0, g0 = start[:2]
    omega = start[2] if len(start) > 2 else 1.0
    return (jnp.pad(jnp.asarray(f0, dtype), (0, n - n0)), jnp.pad(jnp.asarray(g0, dtype), (0, m - m0)),
            jnp.asarray(omega, dtype))


def _solve_alone(problem: OTProblem, config: SinkhornConfig, start) -> SinkhornOutput:
    n0, m0 = problem.shape
    n, m = size_bucket(n0), size_bucket(m0)
    out = solve(pad_problem(problem, n, m), config, _padded_start(start, n0, m0, n, m, problem.geometry.dtype))
    return out.resized(n0, m0, problem)


def solve_batch(
    problems: Sequence[OTProblem],
    config: SinkhornConfig,
    init: Sequence[tuple | None] | None = None,
    bucket=size_bucket,
    vectorize: str | None = None,
) -> list[SinkhornOutput]:
    """Solve many problems of different sizes; results come back in the caller's order.

    vectorize="vmap": problems are grouped by kind (cost, dimension, dtype), padded with
    zero-weight points to shape buckets and solved with one vmapped program per bucket.
    Under vmap a branch on a traced value runs both sides, so "auto" is resolved to the
    (stabilised) kernel iterations here; pass method="log" to force log iterations.
    `bucket` maps a size to its padded size (`size_bucket`, or the coarser
    `power_of_two_bucket`).
    vectorize="loop": each problem is solved alone (padded to its `size_bucket`, the
    programs single calls use). On CPU a vmapped batch touches every member's kernel in
    every iteration and streams them from memory instead of cache: measured 20x slower
    than solving the members in turn (benchmarks/RESULTS.md, "Dynamic batching").
    None: `default_vectorization()`, vmap on accelerators and loop on CPU.
    Warm starts, if given, are per problem: None (cold), (f, g) or (f, g, omega).
    """
    vectorize = vectorize or default_vectorization()
    if vectorize not in ("vmap", "loop"):
        raise ValueError(f"vectorize must be 'vmap' or 'loop', got {vectorize!r}")
    if vectorize == "loop":
        return [_solve_alone(problem, config, None if init is None else init[i])
                for i, problem in enumerate(problems)]
    if config.method == "auto" and not config.online:
        config = dataclasses.replace(config, method="kernel")
    groups: dict[tuple, list[int]] = {}
    for index, problem in enumerate(problems):
        geometry = problem.geometry
        n, m = problem.shape
        dim = None if geometry.matrix is not None else geometry.x.shape[1]
        key = (geometry.cost, dim, jnp.dtype(geometry.dtype).name, bucket(n), bucket(m))
        groups.setdefault(key, []).append(index)
    results: list[SinkhornOutput | None] = [None] * len(problems)
    for (_, _, _, n, m), indices in groups.items():
        padded = [pad_problem(problems[i], n, m) for i in indices]
        stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *padded)
        dtype = padded[0].geometry.dtype
        starts = [_padded_start(None if init is None else init[i], *problems[i].shape, n, m, dtype)
                  for i in indices]
        starts = jax.tree.map(lambda *leaves: jnp.stack(leaves), *starts)
        out = _solve_vmapped(stacked, config, starts)
        for slot, i in enumerate(indices):
            n0, m0 = problems[i].shape
            one = jax.tree.map(lambda leaf: leaf[slot], out)
            results[i] = one.resized(n0, m0, problems[i])
    return results
