"""Static OT calls: Sinkhorn (single, batch, divergence), exact and sparsity-constrained OT."""

from __future__ import annotations

from monge.client import options, requests
from monge.client.results import (
    ExactTransportResult,
    SinkhornBatchResult,
    SinkhornDivergenceResult,
    SinkhornResult,
    SparsityConstrainedResult,
)


class TransportCalls:
    """`Client` methods of the static OT family."""

    def sinkhorn(
        self,
        x=None,
        y=None,
        a=None,
        b=None,
        *,
        cost_matrix=None,
        cost: str | None = None,
        epsilon: float | None = None,
        threshold: float | None = None,
        reg_m: float | tuple[float, float] | None = None,
        max_iterations: int | None = None,
        return_plan: bool | None = None,
        method: str | None = None,
        plan_top_k: int | None = None,
        return_barycentric_map: bool | None = None,
        overrelaxation: str | None = None,
        scaling_stages: int | None = None,
        timeout: float | None = None,
    ) -> SinkhornResult:
        """Entropic OT between the rows of x and y (or under a given cost matrix).

        Settings left None take the server's defaults, those of
        `monge.solvers.SinkhornConfig` (squared Euclidean cost unless `cost` says
        otherwise). threshold bounds the L1 marginal error; epsilon is absolute, in
        cost units (POT's `reg`); a and b default to uniform; reg_m (one number or a (source, target) pair) makes the problem unbalanced with
        POT's KL semantics; `result.cost` is <P, C> of the returned plan.
        method: "auto", "kernel" or "log" Sinkhorn iterations, or "sns"
        (Sinkhorn-Newton-Sparse, balanced problems only; `result.newton` then holds
        its Newton statistics).
        overrelaxation: None (the server's default: "adaptive", for "sns" too),
        "adaptive" (a factor in [1, 2) estimated from the error's decay:
        several times fewer iterations at small epsilon) or "off" (plain Sinkhorn
        updates, as POT's and ott-jax's).
        scaling_stages=k: epsilon scaling, solving first at epsilon / 0.3**k, ...,
        epsilon / 0.3, each to a loose tolerance and warm-starting the next (0 or None:
        none; not with "sns").
        Views of the plan, on request: `return_plan` the dense (n, m) plan (small
        problems); `plan_top_k=k` its k largest entries per row as
        `result.sparse_plan` (a `scipy.sparse.coo_array`, any size: computed in blocks
        of rows); `return_barycentric_map` the (n, d) `result.barycentric_map`,
        (P y)_i / (P 1)_i (points only).
        """
        settings = options.given(locals(), requests.SINKHORN_OPTIONS)
        request = requests.sinkhorn(x, y, a, b, cost_matrix=cost_matrix, reg_m=reg_m, **settings)
        reply = self._call(self._stub.Sinkhorn, request, timeout, retry_when_busy=True)
        return SinkhornResult.from_proto(reply)

    def sinkhorn_batch(self, problems, *, timeout: float | None = None, **settings) -> SinkhornBatchResult:
        """Many Sinkhorn problems in one call; results in the order given.

        Each problem is a `requests.sinkhorn(...)` (its own settings), a tuple (x, y) or
        (x, y, a, b), or a dict of `sinkhorn`'s arguments; `settings` (epsilon=...,
        reg_m=..., plan_top_k=...) apply to the tuples and dicts. The server pads
        problems that share their settings, dtype, dimension and size bucket with
        zero-weight points and solves them together as one vectorised program (which
        changes no answer); the others one after another.
        """
        request = requests.sinkhorn_batch(problems, **settings)
        reply = self._call(self._stub.SinkhornBatch, request, timeout, retry_when_busy=True)
        return SinkhornBatchResult.from_proto(reply)

    def sinkhorn_divergence(
        self,
        x,
        y,
        a=None,
        b=None,
        *,
        cost: str | None = None,
        epsilon: float | None = None,
        threshold: float | None = None,
        max_iterations: int | None = None,
        reg_m: float | tuple[float, float] | None = None,
        timeout: float | None = None,
    ) -> SinkhornDivergenceResult:
        """The debiased Sinkhorn divergence OT(a, b) - (OT(a, a) + OT(b, b)) / 2 between
        the rows of x and y (OT the regularised objective; GeomLoss's and ott-jax's
        `sinkhorn_divergence`). Balanced: a and b (uniform by default) must have equal
        totals. epsilon is absolute, in cost units. With `reg_m` (one number or a
        (source, target) pair) it is unbalanced, with ott-jax's semantics: its tau =
        reg_m / (reg_m + epsilon), plus epsilon (|a| - |b|)^2 / 2.
        """
        settings = options.given(locals(), requests.SINKHORN_DIVERGENCE_OPTIONS)
        request = requests.sinkhorn_divergence(x, y, a, b, reg_m=reg_m, **settings)
        reply = self._call(self._stub.SinkhornDivergence, request, timeout, retry_when_busy=True)
        return SinkhornDivergenceResult.from_proto(reply)

    def exact_transport(
        self,
        x=None,
        y=None,
        a=None,
        b=None,
        *,
        cost_matrix=None,
        cost: str | None = None,
        p: float | None = None,
        method: str | None = None,
        max_iterations: int | None = None,
        timeout: float | None = None,
    ) -> ExactTransportResult:
        """Exact (unregularised) OT between the rows of x and y, or under a cost matrix.

        The cost is squared Euclidean (`cost="sqeuclidean"`, the default: `distance`
        is W_2), Euclidean (`cost="euclidean"`: W_1), or |x - y|^p for W_p with `p`
        (then leave `cost` unset). a and b default to uniform and must have equal
        totals. method: "auto" (sorting for 1-D points, else network simplex),
        "network_simplex" or "sorting_1d"; max_iterations is the network simplex's
        pivot cap. `result.plan` is a `scipy.sparse.coo_array`.
        """
        settings = options.given(locals(), requests.EXACT_OPTIONS)
        request = requests.exact_transport(x, y, a, b, cost_matrix=cost_matrix, **settings)
        reply = self._call(self._stub.ExactTransport, request, timeout, retry_when_busy=True)
        return ExactTransportResult.from_proto(reply)

    def sparsity_constrained(
        self,
        x=None,
        y=None,
        a=None,
        b=None,
        *,
        cost_matrix=None,
        cost: str | None = None,
        k: int | None = None,
        gamma: float | None = None,
        formulation: str | None = None,
        threshold: float | None = None,
        max_iterations: int | None = None,
        timeout: float | None = None,
    ) -> SparsityConstrainedResult:
        """Quadratically regularised OT with at most k nonzeros per column of the plan
        (POT's `smooth_ot_semi_dual(..., reg_type="sparsity_constrained", max_nz=k)`,
        gamma its `reg`). a and b must have equal totals; formulation: "semi_dual" or
        "dual". `result.plan` is a `scipy.sparse.coo_array`.
        """
        settings = options.given(locals(), requests.SPARSITY_CONSTRAINED_OPTIONS)
        request = requests.sparsity_constrained(x, y, a, b, cost_matrix=cost_matrix, **settings)
        reply = self._call(self._stub.SparsityConstrainedTransport, request, timeout, retry_when_busy=True)
        return SparsityConstrainedResult.from_proto(reply)
