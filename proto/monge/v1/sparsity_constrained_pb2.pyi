from monge.v1 import diagnostics_pb2 as _diagnostics_pb2
from monge.v1 import sinkhorn_pb2 as _sinkhorn_pb2
from monge.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SparsityFormulation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SPARSITY_FORMULATION_UNSPECIFIED: _ClassVar[SparsityFormulation]
    SPARSITY_FORMULATION_SEMI_DUAL: _ClassVar[SparsityFormulation]
    SPARSITY_FORMULATION_DUAL: _ClassVar[SparsityFormulation]
SPARSITY_FORMULATION_UNSPECIFIED: SparsityFormulation
SPARSITY_FORMULATION_SEMI_DUAL: SparsityFormulation
SPARSITY_FORMULATION_DUAL: SparsityFormulation

class SparsityConstrainedTransportRequest(_message.Message):
    __slots__ = ("x", "y", "a", "b", "cost_matrix", "cost", "gamma", "k", "formulation", "threshold", "max_iterations", "priority")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    COST_MATRIX_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    GAMMA_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FORMULATION_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    x: _tensor_pb2.Tensor
    y: _tensor_pb2.Tensor
    a: _tensor_pb2.Tensor
    b: _tensor_pb2.Tensor
    cost_matrix: _tensor_pb2.Tensor
    cost: _sinkhorn_pb2.CostFunction
    gamma: float
    k: int
    formulation: SparsityFormulation
    threshold: float
    max_iterations: int
    priority: int
    def __init__(self, x: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., y: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., a: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., b: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., cost_matrix: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., cost: _Optional[_Union[_sinkhorn_pb2.CostFunction, str]] = ..., gamma: _Optional[float] = ..., k: _Optional[int] = ..., formulation: _Optional[_Union[SparsityFormulation, str]] = ..., threshold: _Optional[float] = ..., max_iterations: _Optional[int] = ..., priority: _Optional[int] = ...) -> None: ...

class SparsityConstrainedTransportResponse(_message.Message):
    __slots__ = ("plan", "cost", "objective", "dual_objective", "marginal_error", "max_nonzeros_per_column", "alpha", "beta", "support_iterations", "diagnostics")
    PLAN_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    DUAL_OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    MARGINAL_ERROR_FIELD_NUMBER: _ClassVar[int]
    MAX_NONZEROS_PER_COLUMN_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    SUPPORT_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    DIAGNOSTICS_FIELD_NUMBER: _ClassVar[int]
    plan: _tensor_pb2.SparseMatrix
    cost: float
    objective: float
    dual_objective: float
    marginal_error: float
    max_nonzeros_per_column: int
    alpha: _tensor_pb2.Tensor
    beta: _tensor_pb2.Tensor
    support_iterations: int
    diagnostics: _diagnostics_pb2.SolverDiagnostics
    def __init__(self, plan: _Optional[_Union[_tensor_pb2.SparseMatrix, _Mapping]] = ..., cost: _Optional[float] = ..., objective: _Optional[float] = ..., dual_objective: _Optional[float] = ..., marginal_error: _Optional[float] = ..., max_nonzeros_per_column: _Optional[int] = ..., alpha: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., beta: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., support_iterations: _Optional[int] = ..., diagnostics: _Optional[_Union[_diagnostics_pb2.SolverDiagnostics, _Mapping]] = ...) -> None: ...
