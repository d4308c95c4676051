from monge.v1 import diagnostics_pb2 as _diagnostics_pb2
from monge.v1 import sinkhorn_pb2 as _sinkhorn_pb2
from monge.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ExactMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EXACT_METHOD_UNSPECIFIED: _ClassVar[ExactMethod]
    EXACT_METHOD_AUTO: _ClassVar[ExactMethod]
    EXACT_METHOD_NETWORK_SIMPLEX: _ClassVar[ExactMethod]
    EXACT_METHOD_SORTING_1D: _ClassVar[ExactMethod]
EXACT_METHOD_UNSPECIFIED: ExactMethod
EXACT_METHOD_AUTO: ExactMethod
EXACT_METHOD_NETWORK_SIMPLEX: ExactMethod
EXACT_METHOD_SORTING_1D: ExactMethod

class ExactTransportRequest(_message.Message):
    __slots__ = ("x", "y", "a", "b", "cost_matrix", "cost", "p", "method", "max_iterations", "priority")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    COST_MATRIX_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    P_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    MAX_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    x: _tensor_pb2.Tensor
    y: _tensor_pb2.Tensor
    a: _tensor_pb2.Tensor
    b: _tensor_pb2.Tensor
    cost_matrix: _tensor_pb2.Tensor
    cost: _sinkhorn_pb2.CostFunction
    p: float
    method: ExactMethod
    max_iterations: int
    priority: int
    def __init__(self, x: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., y: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., a: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., b: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., cost_matrix: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., cost: _Optional[_Union[_sinkhorn_pb2.CostFunction, str]] = ..., p: _Optional[float] = ..., method: _Optional[_Union[ExactMethod, str]] = ..., max_iterations: _Optional[int] = ..., priority: _Optional[int] = ...) -> None: ...

class ExactTransportResponse(_message.Message):
    __slots__ = ("cost", "distance", "plan", "f", "g", "marginal_error", "method", "diagnostics", "pivot_cap")
    COST_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    F_FIELD_NUMBER: _ClassVar[int]
    G_FIELD_NUMBER: _ClassVar[int]
    MARGINAL_ERROR_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    DIAGNOSTICS_FIELD_NUMBER: _ClassVar[int]
    PIVOT_CAP_FIELD_NUMBER: _ClassVar[int]
    cost: float
    distance: float
    plan: _tensor_pb2.SparseMatrix
    f: _tensor_pb2.Tensor
    g: _tensor_pb2.Tensor
    marginal_error: float
    method: ExactMethod
    diagnostics: _diagnostics_pb2.SolverDiagnostics
    pivot_cap: int
    def __init__(self, cost: _Optional[float] = ..., distance: _Optional[float] = ..., plan: _Optional[_Union[_tensor_pb2.SparseMatrix, _Mapping]] = ..., f: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., g: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., marginal_error: _Optional[float] = ..., method: _Optional[_Union[ExactMethod, str]] = ..., diagnostics: _Optional[_Union[_diagnostics_pb2.SolverDiagnostics, _Mapping]] = ..., pivot_cap: _Optional[int] = ...) -> None: ...
