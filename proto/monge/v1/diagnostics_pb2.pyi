from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SolverStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SOLVER_STATUS_UNSPECIFIED: _ClassVar[SolverStatus]
    SOLVER_STATUS_CONVERGED: _ClassVar[SolverStatus]
    SOLVER_STATUS_MAX_ITERATIONS: _ClassVar[SolverStatus]
    SOLVER_STATUS_DIVERGED: _ClassVar[SolverStatus]
    SOLVER_STATUS_CANCELLED: _ClassVar[SolverStatus]
    SOLVER_STATUS_STALLED: _ClassVar[SolverStatus]
SOLVER_STATUS_UNSPECIFIED: SolverStatus
SOLVER_STATUS_CONVERGED: SolverStatus
SOLVER_STATUS_MAX_ITERATIONS: SolverStatus
SOLVER_STATUS_DIVERGED: SolverStatus
SOLVER_STATUS_CANCELLED: SolverStatus
SOLVER_STATUS_STALLED: SolverStatus

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

class FieldViolation(_message.Message):
    __slots__ = ("field", "description")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    field: str
    description: str
    def __init__(self, field: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class ErrorStatus(_message.Message):
    __slots__ = ("code", "message", "field_violations")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIELD_VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    field_violations: _containers.RepeatedCompositeFieldContainer[FieldViolation]
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., field_violations: _Optional[_Iterable[_Union[FieldViolation, _Mapping]]] = ...) -> None: ...
