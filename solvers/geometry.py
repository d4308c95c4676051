"""Ground costs between two measures: point clouds with a cost function, or a matrix.

A `Geometry` is a pytree: the arrays are leaves, the cost's name is static. Solvers
ask it for the cost matrix (or, later, for blocks of it) so that the way a cost is
stored never leaks into the solver.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp

CostName = Literal["sqeuclidean", "euclidean", "matrix"]
POINT_COSTS: tuple[str, ...] = ("sqeuclidean", "euclidean")


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Cost between the rows of `x` (n, d) and `y` (m, d), or a given (n, m) matrix.

    Build with `Geometry.from_points` or `Geometry.from_matrix`.
    """

    x: jax.Array | None
    y: jax.Array | None
    matrix: jax.Array | None
    cost: CostName = dataclasses.field(metadata=dict(static=True))

    @classmethod
    def from_points(cls, x, y, cost: CostName = "sqeuclidean") -> "Geometry":
        if cost not in POINT_COSTS:
            raise ValueError(f"unknown point cost {cost!r}; expected one of {POINT_COSTS}")
        return cls(x=jnp.asarray(x), y=jnp.asarray(y), matrix=None, cost=cost)

    @classmethod
    def from_matrix(cls, matrix) -> "Geometry":
        return cls(x=None, y=None, matrix=jnp.asarray(matrix), cost="matrix")

    @property
    def shape(self) -> tuple[int, int]:
        if self.matrix is not None:
            return self.matrix.shape
        return (self.x.shape[0], self.y.shape[0])

    @property
    def dtype(self):
        return (self.matrix if self.matrix is not None else self.x).dtype

    def cost_matrix(self) -> jax.Array:
        if self.matrix is not None:
            return self.matrix
        return pairwise_cost(self.x, self.y, self.cost)


def pairwise_cost(x: jax.Array, y: jax.Array, cost: CostName) -> jax.Array:
    """(n, m) costs between rows; squared norms are expanded to use one matrix product."""
    sq = (
        jnp.sum(x * x, axis=1)[:, None]
        + jnp.sum(y * y, axis=1)[None, :]
        - 2.0 * (x @ y.T)
    )
    sq = jnp.maximum(sq, 0.0)  # rounding can make tiny distances negative
    if cost == "sqeuclidean":
        return sq
    if cost == "euclidean":
        return jnp.sqrt(sq)
    raise ValueError(f"unknown point cost {cost!r}")


jax.tree_util.register_dataclass(
    Geometry, data_fields=["x", "y", "matrix"], meta_fields=["cost"]
)
