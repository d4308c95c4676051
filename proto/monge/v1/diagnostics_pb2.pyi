from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SolverStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SOLVER_STATUS_UNSPECIFIED: _ClassVar[SolverStatus]
    SOLVER_STATUS_CONVERGED: _ClassVar[SolverStatus]
    SOLVER_STATUS_MAX_ITERATIONS: _ClassVar[SolverStatus]
    SOLVER_STATUS_DIVERGED: _ClassVar[SolverStatus]
    SOLVER_STATUS_CANCELLED: _ClassVar[SolverStatus]
SOLVER_STATUS_UNSPECIFIED: SolverStatus
SOLVER_STATUS_CONVERGED: SolverStatus
SOLVER_STATUS_MAX_ITERATIONS: SolverStatus
SOLVER_STATUS_DIVERGED: SolverStatus
SOLVER_STATUS_CANCELLED: SolverStatus

class SolverDiagnostics(_message.Message):
    __slots__ = ("status", "message", "converged", "iterations", "error", "solve_seconds")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CONVERGED_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SOLVE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    status: SolverStatus
    message: str
    converged: bool
    iterations: int
    error: float
    solve_seconds: float
    def __init__(self, status: _Optional[_Union[SolverStatus, str]] = ..., message: _Optional[str] = ..., converged: _Optional[bool] = ..., iterations: _Optional[int] = ..., error: _Optional[float] = ..., solve_seconds: _Optional[float] = ...) -> None: ...
