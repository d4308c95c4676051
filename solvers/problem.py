"""The static OT problem every static solver takes (Sinkhorn, SNS, exact,
sparsity-constrained): two weighted measures and the cost between them, and its padding
to shape buckets so that arbitrary sizes reuse compiled programs."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from monge.solvers.geometry import Geometry


@dataclasses.dataclass(frozen=True)
class OTProblem:
    """Two weighted measures and the cost between them. Weights need not sum to one."""

    geometry: Geometry
    a: jax.Array
    b: jax.Array

    @classmethod
    def from_points(cls, x, y, a=None, b=None, cost="sqeuclidean") -> "OTProblem":
        return cls.create(Geometry.from_points(x, y, cost), a, b)

    @classmethod
    def from_matrix(cls, matrix, a=None, b=None) -> "OTProblem":
        return cls.create(Geometry.from_matrix(matrix), a, b)

    @classmethod
    def create(cls, geometry: Geometry, a=None, b=None) -> "OTProblem":
        n, m = geometry.shape
        dtype = geometry.dtype
        a = jnp.full((n,), 1.0 / n, dtype) if a is None else jnp.asarray(a, dtype)
        b = jnp.full((m,), 1.0 / m, dtype) if b is None else jnp.asarray(b, dtype)
        return cls(geometry, a, b)


    @property
    def shape(self) -> tuple[int, int]:
        return self.geometry.shape


jax.tree_util.register_dataclass(
    OTProblem, data_fields=["geometry", "a", "b"], meta_fields=[]
)


def make_problem(x, y, a, b, cost_matrix, cost="sqeuclidean") -> OTProblem:
    """The problem of the convenience entries' keywords: a cost matrix, or points."""
    if cost_matrix is not None:
        return OTProblem.from_matrix(cost_matrix, a, b)
    return OTProblem.from_points(x, y, a, b, cost=cost)


def size_bucket(size: int) -> int:
    """Round a size up to a few buckets so that arbitrary request sizes reuse a compiled
    program: 16, then 2**k and 1.5 * 2**k (at most 50% padding per side). Padded points
    carry zero weight, so they change no answer; they cost compute in proportion."""
    bucket = 16
    while bucket < size:
        half_step = bucket + bucket // 2  # 16 -> 24 -> 32 -> 48 -> 64 ...
        if bucket & (bucket - 1) == 0 and half_step >= size:
            return half_step
        bucket = half_step if bucket & (bucket - 1) == 0 else (bucket // 3) * 4
    return bucket


def power_of_two_bucket(size: int) -> int:
    """Coarser buckets (16, 32, 64, ...): fewer distinct shapes, more padding."""
    return max(16, 1 << (size - 1).bit_length())


def pad_problem(problem: OTProblem, n: int, m: int) -> OTProblem:
    """The same problem on n >= n0 by m >= m0 points: zero-weight points (at the origin,
    or zero costs) appended, which changes no answer on the original points."""
    geometry = problem.geometry
    n0, m0 = problem.shape
    if geometry.matrix is not None:
        padded = Geometry.from_matrix(jnp.pad(geometry.matrix, ((0, n - n0), (0, m - m0))))
    else:
        padded = Geometry.from_points(
            jnp.pad(geometry.x, ((0, n - n0), (0, 0))),
            jnp.pad(geometry.y, ((0, m - m0), (0, 0))),
            geometry.cost,
        )
    return OTProblem(padded, jnp.pad(problem.a, (0, n - n0)), jnp.pad(problem.b, (0, m - m0)))
