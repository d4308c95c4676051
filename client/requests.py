"""Build solver requests from numpy arrays, for direct calls and for job submission.

    from monge.client import requests
    job = client.submit(requests.sinkhorn(x, y, epsilon=0.05))
"""

from __future__ import annotations

import numpy as np

from monge.client.tensors import encode
from monge.v1 import sinkhorn_pb2

_COSTS = {
    "sqeuclidean": sinkhorn_pb2.COST_FUNCTION_SQEUCLIDEAN,
    "euclidean": sinkhorn_pb2.COST_FUNCTION_EUCLIDEAN,
}


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
) -> sinkhorn_pb2.SinkhornRequest:
    """A SinkhornRequest; see `Client.sinkhorn` for the meaning of each argument."""
    if cost not in _COSTS:
        raise ValueError(f"cost must be one of {sorted(_COSTS)}, got {cost!r}")
    request = sinkhorn_pb2.SinkhornRequest(
        cost=_COSTS[cost],
        epsilon=epsilon,
        threshold=threshold,
        max_iterations=max_iterations,
        return_plan=return_plan,
    )
    for field, value in (("x", x), ("y", y), ("a", a), ("b", b), ("cost_matrix", cost_matrix)):
        if value is not None:
            getattr(request, field).CopyFrom(encode(_as_float(value)))
    if reg_m is not None:
        source, target = (reg_m, reg_m) if np.isscalar(reg_m) else reg_m
        request.reg_m.source, request.reg_m.target = float(source), float(target)
    return request
