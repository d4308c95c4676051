"""Typed exceptions for failed calls, each carrying the status code and the field at fault.

The server attaches a `google.rpc.BadRequest` to INVALID_ARGUMENT answers; its field
violations arrive here as `MongeError.violations`, the first as `.field`.
"""

from __future__ import annotations

import dataclasses

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


@dataclasses.dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class MongeError(Exception):
    """A call that did not succeed. `code` is the gRPC status code."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, *, code=None, violations=(), retry_after: float | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.violations: tuple[FieldViolation, ...] = tuple(violations)
        self.retry_after = retry_after

    @property
    def field(self) -> str | None:
        """The first field named at fault, if the server named one."""
        return self.violations[0].field if self.violations else None

    def __str__(self) -> str:
        text = f"{self.code.name}: {self.message}"
        for violation in self.violations:
            text += f"\n  {violation.field}: {violation.description}"
        return text


def _subclass(name: str, code: grpc.StatusCode, doc: str) -> type[MongeError]:
    return type(name, (MongeError,), {"code": code, "__doc__": doc})


InvalidArgumentError = _subclass(
    "InvalidArgumentError", grpc.StatusCode.INVALID_ARGUMENT, "The request is malformed; see .field."
)
NotFoundError = _subclass("NotFoundError", grpc.StatusCode.NOT_FOUND, "No such object.")
ResourceExhaustedError = _subclass(
    "ResourceExhaustedError", grpc.StatusCode.RESOURCE_EXHAUSTED, "A queue or a limit is full; retry later."
)
DeadlineExceededError = _subclass(
    "DeadlineExceededError", grpc.StatusCode.DEADLINE_EXCEEDED, "The call ran past its timeout."
)
CancelledError = _subclass("CancelledError", grpc.StatusCode.CANCELLED, "The call was cancelled.")
UnavailableError = _subclass(
    "UnavailableError", grpc.StatusCode.UNAVAILABLE, "The server could not be reached or is shutting down."
)
UnauthenticatedError = _subclass(
    "UnauthenticatedError", grpc.StatusCode.UNAUTHENTICATED, "Missing or wrong credentials."
)
PermissionDeniedError = _subclass(
    "PermissionDeniedError", grpc.StatusCode.PERMISSION_DENIED, "Not allowed for these credentials."
)
FailedPreconditionError = _subclass(
    "FailedPreconditionError", grpc.StatusCode.FAILED_PRECONDITION, "Not possible in the current state."
)
AbortedError = _subclass(
    "AbortedError", grpc.StatusCode.ABORTED, "Ended by something outside the call (a peer left, expiry)."
)
InternalError = _subclass(
    "InternalError", grpc.StatusCode.INTERNAL, "A server-side failure; the message carries an error id."
)

_BY_CODE = {cls.code: cls for cls in MongeError.__subclasses__()}


def from_rpc_error(error: grpc.RpcError) -> MongeError:
    """The typed exception for a failed call, with any BadRequest field violations."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = error.details() if hasattr(error, "details") else str(error)
    violations: list[FieldViolation] = []
    retry_after = None
    status = rpc_status.from_call(error) if hasattr(error, "trailing_metadata") else None
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations += [FieldViolation(v.field, v.description) for v in bad_request.field_violations]
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_after = retry.retry_delay.ToTimedelta().total_seconds()
    cls = _BY_CODE.get(code, MongeError)
    return cls(message or code.name, code=code, violations=violations, retry_after=retry_after)
