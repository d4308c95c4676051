"""`Client`: a typed facade over the generated stub. numpy in, result dataclasses out.

    with Client("127.0.0.1:50051") as c:
        r = c.sinkhorn(x, y, epsilon=0.05)

Every call takes `timeout=` (seconds; the default is the client's `timeout`). Failed
calls raise a `MongeError` subclass carrying the status code and the field at fault.
"""

from __future__ import annotations

from typing import Sequence

import grpc
import numpy as np

from monge.client import errors
from monge.client.results import ServerInfo, SinkhornResult
from monge.client.tensors import encode
from monge.v1 import service_pb2, service_pb2_grpc, sinkhorn_pb2

DEFAULT_MAX_MESSAGE_BYTES = 512 << 20
_COSTS = {
    "sqeuclidean": sinkhorn_pb2.COST_FUNCTION_SQEUCLIDEAN,
    "euclidean": sinkhorn_pb2.COST_FUNCTION_EUCLIDEAN,
}


class Client:
    """A connection to a Monge server. Use as a context manager, or call `close()`."""

    def __init__(
        self,
        target: str = "127.0.0.1:50051",
        *,
        timeout: float | None = 600.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, object]] = (),
    ):
        channel_options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            *options,
        ]
        if credentials is None:
            self._channel = grpc.insecure_channel(target, options=channel_options)
        else:
            self._channel = grpc.secure_channel(target, credentials, options=channel_options)
        self._stub = service_pb2_grpc.SolverServiceStub(self._channel)
        self.target = target
        self.timeout = timeout

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method, request, timeout):
        try:
            return method(request, timeout=self.timeout if timeout is None else timeout)
        except grpc.RpcError as error:
            raise errors.from_rpc_error(error) from None

    def info(self, *, timeout: float | None = None) -> ServerInfo:
        """Version, JAX backend and devices, and the solvers offered."""
        reply = self._call(self._stub.GetServerInfo, service_pb2.GetServerInfoRequest(), timeout)
        return ServerInfo.from_proto(reply)

    def sinkhorn(
        self,
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
        timeout: float | None = None,
    ) -> SinkhornResult:
        """Entropic OT between the rows of x and y (or under a given cost matrix).

        epsilon is absolute, in cost units (POT's `reg`); a and b default to uniform;
        reg_m (one number or a (source, target) pair) makes the problem unbalanced with
        POT's KL semantics; `result.cost` is <P, C> of the returned plan.
        """
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
        return SinkhornResult.from_proto(self._call(self._stub.Sinkhorn, request, timeout))


def _as_float(value) -> np.ndarray:
    array = np.asarray(value)
    return array if array.dtype in (np.float32, np.float64) else array.astype(np.float64)


__all__ = ["Client"]
