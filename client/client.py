"""`Client`: a typed facade over the generated stub. numpy in, result dataclasses out.

    with Client("127.0.0.1:50051") as c:
        r = c.sinkhorn(x, y, epsilon=0.05)

Every call takes `timeout=` (seconds; the default is the client's `timeout`). Failed
calls raise a `MongeError` subclass carrying the status code and the field at fault.

A server with TLS and tokens:

    Client("solver.example:50051", root_certificates="ca.pem", token=os.environ["MONGE_TOKEN"])
"""

from __future__ import annotations

import copy
import os
import random
import time
from typing import Sequence

import grpc

from monge.client import errors
from monge.client.calls.jobs import JobCalls
from monge.client.calls.pfode import ProbabilityFlowCalls
from monge.client.calls.ruot import RuotCalls
from monge.client.calls.transport import TransportCalls
from monge.client.channel import open_channel
from monge.client.results import ServerInfo
from monge.v1 import jobs_pb2_grpc, service_pb2, service_pb2_grpc

DEFAULT_MAX_MESSAGE_BYTES = 512 << 20


class Client(TransportCalls, ProbabilityFlowCalls, RuotCalls, JobCalls):
    """A connection to a Monge server. Use as a context manager, or call `close()`.

    Its calls come by family from `monge.client.calls` (static OT, probability flow,
    Var-RUOT, jobs); this class holds the connection they share."""

    def __init__(
        self,
        target: str = "127.0.0.1:50051",
        *,
        timeout: float | None = 600.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, object]] = (),
        root_certificates: bytes | str | os.PathLike | None = None,
        token: str | None = None,
        priority: int = 0,
    ):
        """root_certificates: PEM bytes or a file of the CAs to trust; turns on TLS
        (`credentials` is the alternative for other channel credentials). token: the
        bearer token sent on every call, streams included. priority: the queue level of
        this client's solver calls, 1 the highest (0: the server's default, interactive);
        a background script may name a lower one. Jobs take theirs in `submit`."""
        channel_options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            *options,
        ]
        self._channel = open_channel(target, options=channel_options, credentials=credentials,
                                     root_certificates=root_certificates, token=token)
        self._stub = service_pb2_grpc.SolverServiceStub(self._channel)
        self._jobs = jobs_pb2_grpc.JobServiceStub(self._channel)
        self.target = target
        self.timeout = timeout
        self.priority = priority

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method, request, timeout, *, retry_when_busy: bool = False):
        """One call; with `retry_when_busy` (only for calls safe to repeat), a full queue
        (RESOURCE_EXHAUSTED) is retried with exponential backoff within the timeout."""
        timeout = self.timeout if timeout is None else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        if self.priority and "priority" in request.DESCRIPTOR.fields_by_name and not request.priority:
            request = copy.copy(request)  # the caller's request is left as it was
            request.priority = self.priority
        delay = 0.05
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return method(request, timeout=remaining)
            except grpc.RpcError as rpc_error:
                error = errors.from_rpc_error(rpc_error)
            if not (retry_when_busy and isinstance(error, errors.ResourceExhaustedError)):
                raise error
            delay = min(max(delay * 2, error.retry_after or 0.0), 5.0) * random.uniform(0.8, 1.2)
            if deadline is not None and time.monotonic() + delay >= deadline:
                raise error
            time.sleep(delay)

    def info(self, *, timeout: float | None = None) -> ServerInfo:
        """Version, JAX backend and devices, and the solvers offered."""
        reply = self._call(self._stub.GetServerInfo, service_pb2.GetServerInfoRequest(), timeout)
        return ServerInfo.from_proto(reply)
