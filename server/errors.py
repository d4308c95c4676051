"""Exceptions that handlers raise, and their mapping to gRPC statuses (the only place).

Handlers raise `InvalidArgument` (with the fields at fault), `LimitExceeded`, `NotFound`,
`FailedPrecondition` or `Aborted`; anything else is a bug and becomes INTERNAL with a
generic message and an id that is logged with the traceback, so no traceback ever
reaches the caller. The `rpc` decorator applies this to every servicer's handlers.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

log = logging.getLogger("monge.server")

# The gRPC status codes the server sets itself, by name (google.rpc.Code numbers, which are
# grpc.StatusCode's): workers report these in their outcomes, `to_status` answers them.
OK = code_pb2.OK
CANCELLED = code_pb2.CANCELLED
INVALID_ARGUMENT = code_pb2.INVALID_ARGUMENT
NOT_FOUND = code_pb2.NOT_FOUND
RESOURCE_EXHAUSTED = code_pb2.RESOURCE_EXHAUSTED
INTERNAL = code_pb2.INTERNAL
UNAVAILABLE = code_pb2.UNAVAILABLE


class InvalidArgument(Exception):
    """The request is malformed; each violation is (field, description)."""

    def __init__(self, *violations: tuple[str, str]):
        self.violations = list(violations)
        super().__init__("; ".join(f"{f}: {d}" for f, d in violations))

    @classmethod
    def field(cls, field: str, description: str) -> "InvalidArgument":
        return cls((field, description))


class LimitExceeded(Exception):
    """A queue or quota is full: RESOURCE_EXHAUSTED, with a retry hint."""

    def __init__(self, message: str, retry_after_seconds: float = 1.0):
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class TaskFailed(Exception):
    """A solver call on a worker ended with an error status; `outcome` (a
    `worker.Outcome`) carries the code, message and field violations."""

    def __init__(self, outcome):
        super().__init__(outcome.message)
        self.outcome = outcome


class NotFound(Exception):
    """The named object (a session, say) does not exist: NOT_FOUND. `field`, when given,
    is the request field that named it; the message then starts with it."""

    def __init__(self, message: str, field: str | None = None):
        self.field, self.description = field, message
        super().__init__(f"{field}: {message}" if field else message)

    def within(self, prefix: str) -> "NotFound":
        """The same error for a request nested under `prefix` (a job item)."""
        return NotFound(self.description, prefix + self.field if self.field else prefix.rstrip("."))


class FailedPrecondition(Exception):
    """The request is well formed but the object's state does not allow it."""


class Aborted(Exception):
    """The operation was ended by something outside the caller (a peer left, expiry)."""


def worker_code(error: Exception) -> int:
    """The code a worker reports for an exception its call raised (see `worker.execute`)."""
    if isinstance(error, InvalidArgument):
        return INVALID_ARGUMENT
    if isinstance(error, NotFound):
        return NOT_FOUND
    if isinstance(error, LimitExceeded):  # a training run over the server's wall-time limit
        return RESOURCE_EXHAUSTED
    return INTERNAL


_PLAIN = {
    NotFound: code_pb2.NOT_FOUND,
    FailedPrecondition: code_pb2.FAILED_PRECONDITION,
    Aborted: code_pb2.ABORTED,
}


def rpc(method):
    """Decorates a servicer's handler (unary, or a stream handler using context.read and
    context.write) so that any exception it raises becomes a status, here and only here."""

    @functools.wraps(method)
    async def handler(self, request, context: grpc.aio.ServicerContext):
        try:
            return await method(self, request, context)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as error:  # noqa: BLE001 - every failure must become a status
            await context.abort_with_status(to_status(error, method.__name__))

    return handler


def _pack(message) -> any_pb2.Any:
    detail = any_pb2.Any()
    detail.Pack(message)
    return detail


def to_status(error: BaseException, method: str) -> grpc.Status:
    """The status a failed handler answers with."""
    if isinstance(error, TaskFailed) and error.outcome.violations:
        error = InvalidArgument(*error.outcome.violations)
    if isinstance(error, TaskFailed):
        # The worker already logged any internal error with its id.
        status = status_pb2.Status(code=error.outcome.code, message=error.outcome.message)
    elif isinstance(error, InvalidArgument):
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                for f, d in error.violations
            ]
        )
        status = status_pb2.Status(
            code=INVALID_ARGUMENT, message=str(error), details=[_pack(bad_request)]
        )
    elif isinstance(error, LimitExceeded):
        retry = error_details_pb2.RetryInfo(
            retry_delay=duration_pb2.Duration(
                seconds=int(error.retry_after_seconds),
                nanos=int(error.retry_after_seconds % 1 * 1e9),
            )
        )
        status = status_pb2.Status(
            code=RESOURCE_EXHAUSTED, message=str(error), details=[_pack(retry)]
        )
    elif type(error) in _PLAIN:
        status = status_pb2.Status(code=_PLAIN[type(error)], message=str(error))
    else:
        error_id = uuid.uuid4().hex[:12]
        log.error("internal error %s in %s", error_id, method, exc_info=error)
        status = status_pb2.Status(
            code=INTERNAL, message=f"internal error (id {error_id}); see the server log"
        )
    return rpc_status.to_status(status)
