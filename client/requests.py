"""Build solver requests from numpy arrays, for direct calls and for job submission.

    from monge.client import requests
    job = client.submit(requests.sinkhorn(x, y, epsilon=0.05))
"""

from __future__ import annotations

import numpy as np

from monge.client.tensors import encode
from monge.v1 import exact_pb2, sinkhorn_pb2, sparsity_constrained_pb2

_COSTS = {
    "sqeuclidean": sinkhorn_pb2.COST_FUNCTION_SQEUCLIDEAN,
    "euclidean": sinkhorn_pb2.COST_FUNCTION_EUCLIDEAN,
}
_SINKHORN_METHODS = {
    "auto": sinkhorn_pb2.SINKHORN_METHOD_AUTO,
    "kernel": sinkhorn_pb2.SINKHORN_METHOD_KERNEL,
    "log": sinkhorn_pb2.SINKHORN_METHOD_LOG,
    "sns": sinkhorn_pb2.SINKHORN_METHOD_SNS,
}
_EXACT_METHODS = {
    "auto": exact_pb2.EXACT_METHOD_AUTO,
    "network_simplex": exact_pb2.EXACT_METHOD_NETWORK_SIMPLEX,
    "sorting_1d": exact_pb2.EXACT_METHOD_SORTING_1D,
}
_FORMULATIONS = {
    "semi_dual": sparsity_constrained_pb2.SPARSITY_FORMULATION_SEMI_DUAL,
    "dual": sparsity_constrained_pb2.SPARSITY_FORMULATION_DUAL,
}


def _choice(name: str, value: str, choices: dict):
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return choices[value]


def _set_arrays(request, **arrays) -> None:
    for field, value in arrays.items():
        if value is not None:
            getattr(request, field).CopyFrom(encode(_as_float(value)))


def _as_float(value) -> np.ndarray:
    array = np.asarray(value)
    return array if array.dtype in (np.float32, np.float64) else array.astype(np.float64)


def sinkhorn(
    x=None,
    y=None,
    a=None,
    b=None,
    *,
    cost_matrix=None,
    cost: str = "sqeuclidean",
    epsilon: float = 0.05,
    threshold: float = 1e-6,
    reg_m: float | tuple[float, float] | None = None,
    max_iterations: int = 10_000,
    return_plan: bool = False,
    method: str = "auto",
) -> sinkhorn_pb2.SinkhornRequest:
    """A SinkhornRequest; see `Client.sinkhorn` for the meaning of each argument."""
    request = sinkhorn_pb2.SinkhornRequest(
        cost=_choice("cost", cost, _COSTS),
        epsilon=epsilon,
        threshold=threshold,
        max_iterations=max_iterations,
        return_plan=return_plan,
        method=_choice("method", method, _SINKHORN_METHODS),
    )
    _set_arrays(request, x=x, y=y, a=a, b=b, cost_matrix=cost_matrix)
    if reg_m is not None:
        source, target = (reg_m, reg_m) if np.isscalar(reg_m) else reg_m
        request.reg_m.source, request.reg_m.target = float(source), float(target)
    return request


def exact_transport(
    x=None,
    y=None,
    a=None,
    b=None,
    *,
    cost_matrix=None,
    cost: str | None = None,
    p: float | None = None,
    method: str = "auto",
    max_iterations: int | None = None,
) -> exact_pb2.ExactTransportRequest:
    """An ExactTransportRequest; see `Client.exact_transport`."""
    request = exact_pb2.ExactTransportRequest(method=_choice("method", method, _EXACT_METHODS))
    if cost is not None:
        request.cost = _choice("cost", cost, _COSTS)
    if p is not None:
        request.p = float(p)
    if max_iterations is not None:
        request.max_iterations = max_iterations
    _set_arrays(request, x=x, y=y, a=a, b=b, cost_matrix=cost_matrix)
    return request


def sparsity_constrained(
    x=None,
    y=None,
    a=None,
    b=None,
    *,
    cost_matrix=None,
    cost: str = "sqeuclidean",
    k: int = 2,
    gamma: float = 1.0,
    formulation: str = "semi_dual",
    threshold: float = 1e-8,
    max_iterations: int = 10_000,
) -> sparsity_constrained_pb2.SparsityConstrainedTransportRequest:
    """A SparsityConstrainedTransportRequest; see `Client.sparsity_constrained`."""
    request = sparsity_constrained_pb2.SparsityConstrainedTransportRequest(
        cost=_choice("cost", cost, _COSTS),
        k=k,
        gamma=gamma,
        formulation=_choice("formulation", formulation, _FORMULATIONS),
        threshold=threshold,
        max_iterations=max_iterations,
    )
    _set_arrays(request, x=x, y=y, a=a, b=b, cost_matrix=cost_matrix)
    return request
