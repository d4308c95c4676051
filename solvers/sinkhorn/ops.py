"""Reductions over the cost matrix for Sinkhorn, dense or computed in row blocks.

Every quantity the Sinkhorn family needs from the cost is a reduction along one axis
of an n x m array built elementwise from C: a log-sum-exp for the log-domain updates,
and sums of the plan for the diagnostics. `CostAccess` hides whether C is stored (a
matrix, or point clouds small enough to materialise) or recomputed block by block from
the points ("online"), so that the iteration code is written once. Online mode keeps
memory at O((n + m) d) plus one (block, m) block; the price is one cost evaluation per
block per half-iteration.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from monge.solvers.geometry import Geometry, pairwise_cost


def _pad_rows(x: jax.Array, block: int, value=0) -> tuple[jax.Array, int]:
    n = x.shape[0]
    blocks = -(-n // block)
    pad = blocks * block - n
    # Padded rows are real points at the origin; callers give them weight zero
    # (log weight -inf), so they never enter a reduction over the other axis.
    pad_width = ((0, pad),) + ((0, 0),) * (x.ndim - 1)
    return jnp.pad(x, pad_width, constant_values=value), blocks


@dataclasses.dataclass(frozen=True)
class CostAccess:
    """The cost between two measures, seen through reductions.

    `matrix` is set in dense mode; otherwise `x`, `y` and `cost` give the points and
    `block` the number of rows (or columns) materialised at once.
    """

    matrix: jax.Array | None
    x: jax.Array | None
    y: jax.Array | None
    cost: str
    block: int

    @classmethod
    def create(cls, geometry: Geometry, online: bool, block: int) -> "CostAccess":
        if online and geometry.matrix is None:
            return cls(None, geometry.x, geometry.y, geometry.cost, block)
        return cls(geometry.cost_matrix(), None, None, geometry.cost, block)

    @property
    def online(self) -> bool:
        return self.matrix is None

    @property
    def shape(self) -> tuple[int, int]:
        if self.matrix is not None:
            return self.matrix.shape
        return (self.x.shape[0], self.y.shape[0])

    def transpose(self) -> "CostAccess":
        if self.matrix is not None:
            return dataclasses.replace(self, matrix=self.matrix.T)
        return dataclasses.replace(self, x=self.y, y=self.x)

    def row_lse(self, h: jax.Array, scale) -> jax.Array:
        """For each row i: log sum_j exp(h_j - C_ij * scale). `h` has length m."""
        if self.matrix is not None:
            return logsumexp(h[None, :] - self.matrix * scale, axis=1)
        n = self.x.shape[0]
        xb, blocks = _pad_rows(self.x, self.block)
        xb = xb.reshape(blocks, self.block, -1)

        def one(xi):
            return logsumexp(h[None, :] - pairwise_cost(xi, self.y, self.cost) * scale, axis=1)

        return jax.lax.map(one, xb).reshape(-1)[:n]

    def col_lse(self, h: jax.Array, scale) -> jax.Array:
        """For each column j: log sum_i exp(h_i - C_ij * scale). `h` has length n."""
        if self.matrix is not None:
            return logsumexp(h[:, None] - self.matrix * scale, axis=0)
        # Both point costs are symmetric, so a column reduction is a row reduction
        # with the clouds swapped; blocks then run over y.
        return self.transpose().row_lse(h, scale)

    def map_rows(self, fn: Callable, *row_args: jax.Array):
        """Apply fn(C_block, *row_arg_blocks, x_block) -> (per_row, total) over row blocks.

        `per_row` outputs are stacked and cut back to n rows; `total` outputs are summed
        over blocks. In dense mode the single block is the whole matrix (x_block is
        None). Row arguments are padded with zeros, so a weight passed as a row argument
        makes padded rows empty. Each block is rematerialised in reverse mode, so
        gradients also stay within one block of memory.
        """
        if self.matrix is not None:
            return fn(self.matrix, *row_args, None)
        n = self.x.shape[0]
        xb, blocks = _pad_rows(self.x, self.block)
        reshape = lambda r: r.reshape((blocks, self.block) + r.shape[1:])
        padded = [reshape(_pad_rows(r, self.block)[0]) for r in row_args]

        @jax.checkpoint
        def one(xi, rest):
            return fn(pairwise_cost(xi, self.y, self.cost), *rest, xi)

        def body(total, args):
            xi, *rest = args
            per_row, part = one(xi, rest)
            return jax.tree.map(jnp.add, total, part), per_row

        total0 = jax.tree.map(
            lambda s: jnp.zeros(s.shape, s.dtype),
            jax.eval_shape(lambda: one(xb[: self.block], [r[0] for r in padded])[1]),
        )
        total, per_row = jax.lax.scan(body, total0, (reshape(xb), *padded))
        per_row = jax.tree.map(lambda o: o.reshape((blocks * self.block,) + o.shape[2:])[:n], per_row)
        return per_row, total


# XLA on CPU sums a column of a row-major matrix in one sequential pass, and n float32
# terms summed that way carry a relative error that grows like sqrt(n) machine epsilons:
# measured 1.1e-6 at n = 8000, enough to hold Sinkhorn's L1 marginal error above a 1e-6
# threshold. Summing blocks of ROW_BLOCK rows first, then the blocks, keeps it near 5e-8,
# and on a kernel padded once to whole blocks it is also faster than the one-pass
# product (measured on 2 CPU cores, float32 and float64, n = 500 to 8000).
ROW_BLOCK = 128


def row_blocks(n: int) -> int:
    """The number of ROW_BLOCK-row blocks that hold n rows."""
    return -(-n // ROW_BLOCK)


def block_rows(matrix: jax.Array) -> jax.Array:
    """An (n, m) matrix as (blocks, ROW_BLOCK, m), padded with zero rows."""
    n, m = matrix.shape
    blocks = row_blocks(n)
    return jnp.pad(matrix, ((0, blocks * ROW_BLOCK - n), (0, 0))).reshape(blocks, ROW_BLOCK, m)


def blocked_matvec(blocked: jax.Array, v: jax.Array, n: int) -> jax.Array:
    """K v for K given by `block_rows` with n real rows."""
    return (blocked.reshape(-1, blocked.shape[-1]) @ v)[:n]


def blocked_vecmat(w: jax.Array, blocked: jax.Array) -> jax.Array:
    """w^T K for K given by `block_rows`: each block's rows summed first."""
    blocks = blocked.shape[0]
    w = jnp.pad(w, (0, blocks * ROW_BLOCK - w.shape[0])).reshape(blocks, ROW_BLOCK)
    return jnp.einsum("ki,kij->kj", w, blocked).sum(axis=0)


def column_sums(matrix: jax.Array) -> jax.Array:
    """Sums over the rows (axis 0), a block of rows at a time (see ROW_BLOCK)."""
    if matrix.shape[0] <= ROW_BLOCK:
        return matrix.sum(axis=0)
    return block_rows(matrix).sum(axis=1).sum(axis=0)


def _log(w):
    return jnp.where(w > 0, jnp.log(jnp.where(w > 0, w, 1.0)), -jnp.inf)


def kernel_rows(c, f_i, g, epsilon):
    """exp((f_i + g_j - C_ij) / epsilon) for a block of rows, the exponent clipped so that
    an empty row or column (weight 0) can never give 0 * inf. Every view of the plan and
    the diagnostics use this one expression: an exponent rounded otherwise moves each
    entry by its ulps, and the marginals the iterations reached hold for its roundings."""
    clip = 0.5 * jnp.log(jnp.finfo(c.dtype).max)
    return jnp.exp(jnp.minimum((f_i[:, None] + g[None, :] - c) * (1.0 / epsilon), clip))


def plan_sums(access: CostAccess, a, b, f, g, epsilon):
    """Row sums, column sums and <P, C> of P = diag(a) exp((f + g^T - C)/eps) diag(b).

    One pass over the cost; in online mode the column sums accumulate across blocks.
    The weights multiply (rather than enter as logs) so that the derivative with
    respect to a zero weight is the true one, not zero; the exponent is clipped so
    that an empty row or column (weight 0) can never produce 0 * inf.
    """

    def block(c, a_i, f_i, _x):
        p = a_i[:, None] * b[None, :] * kernel_rows(c, f_i, g, epsilon)
        return p.sum(axis=1), (column_sums(p), (p * c).sum(axis=1).sum())

    rows, (cols, cost) = access.map_rows(block, a, f)
    return rows, cols, cost
