from monge.v1 import diagnostics_pb2 as _diagnostics_pb2
from monge.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class CostFunction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COST_FUNCTION_UNSPECIFIED: _ClassVar[CostFunction]
    COST_FUNCTION_SQEUCLIDEAN: _ClassVar[CostFunction]
    COST_FUNCTION_EUCLIDEAN: _ClassVar[CostFunction]

class SinkhornMethod(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SINKHORN_METHOD_UNSPECIFIED: _ClassVar[SinkhornMethod]
    SINKHORN_METHOD_AUTO: _ClassVar[SinkhornMethod]
    SINKHORN_METHOD_KERNEL: _ClassVar[SinkhornMethod]
    SINKHORN_METHOD_LOG: _ClassVar[SinkhornMethod]
    SINKHORN_METHOD_SNS: _ClassVar[SinkhornMethod]

class Overrelaxation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OVERRELAXATION_UNSPECIFIED: _ClassVar[Overrelaxation]
    OVERRELAXATION_ADAPTIVE: _ClassVar[Overrelaxation]
    OVERRELAXATION_OFF: _ClassVar[Overrelaxation]
COST_FUNCTION_UNSPECIFIED: CostFunction
COST_FUNCTION_SQEUCLIDEAN: CostFunction
COST_FUNCTION_EUCLIDEAN: CostFunction
SINKHORN_METHOD_UNSPECIFIED: SinkhornMethod
SINKHORN_METHOD_AUTO: SinkhornMethod
SINKHORN_METHOD_KERNEL: SinkhornMethod
SINKHORN_METHOD_LOG: SinkhornMethod
SINKHORN_METHOD_SNS: SinkhornMethod
OVERRELAXATION_UNSPECIFIED: Overrelaxation
OVERRELAXATION_ADAPTIVE: Overrelaxation
OVERRELAXATION_OFF: Overrelaxation

class MarginalPenalty(_message.Message):
    __slots__ = ("source", "target")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    source: float
    target: float
    def __init__(self, source: _Optional[float] = ..., target: _Optional[float] = ...) -> None: ...

class SinkhornRequest(_message.Message):
    __slots__ = ("x", "y", "a", "b", "cost_matrix", "cost", "epsilon", "threshold", "max_iterations", "reg_m", "return_plan", "method", "plan_top_k", "return_barycentric_map", "overrelaxation", "scaling_stages", "priority")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    COST_MATRIX_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    REG_M_FIELD_NUMBER: _ClassVar[int]
    RETURN_PLAN_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PLAN_TOP_K_FIELD_NUMBER: _ClassVar[int]
    RETURN_BARYCENTRIC_MAP_FIELD_NUMBER: _ClassVar[int]
    OVERRELAXATION_FIELD_NUMBER: _ClassVar[int]
    SCALING_STAGES_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    x: _tensor_pb2.Tensor
    y: _tensor_pb2.Tensor
    a: _tensor_pb2.Tensor
    b: _tensor_pb2.Tensor
    cost_matrix: _tensor_pb2.Tensor
    cost: CostFunction
    epsilon: float
    threshold: float
    max_iterations: int
    reg_m: MarginalPenalty
    return_plan: bool
    method: SinkhornMethod
    plan_top_k: int
    return_barycentric_map: bool
    overrelaxation: Overrelaxation
    scaling_stages: int
    priority: int
    def __init__(self, x: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., y: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., a: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., b: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., cost_matrix: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., cost: _Optional[_Union[CostFunction, str]] = ..., epsilon: _Optional[float] = ..., threshold: _Optional[float] = ..., max_iterations: _Optional[int] = ..., reg_m: _Optional[_Union[MarginalPenalty, _Mapping]] = ..., return_plan: _Optional[bool] = ..., method: _Optional[_Union[SinkhornMethod, str]] = ..., plan_top_k: _Optional[int] = ..., return_barycentric_map: _Optional[bool] = ..., overrelaxation: _Optional[_Union[Overrelaxation, str]] = ..., scaling_stages: _Optional[int] = ..., priority: _Optional[int] = ...) -> None: ...

class NewtonStatistics(_message.Message):
    __slots__ = ("sinkhorn_iterations", "newton_iterations", "cg_iterations", "newton_failures", "kept_per_row")
    SINKHORN_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    NEWTON_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    CG_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    NEWTON_FAILURES_FIELD_NUMBER: _ClassVar[int]
    KEPT_PER_ROW_FIELD_NUMBER: _ClassVar[int]
    sinkhorn_iterations: int
    newton_iterations: int
    cg_iterations: int
    newton_failures: int
    kept_per_row: int
    def __init__(self, sinkhorn_iterations: _Optional[int] = ..., newton_iterations: _Optional[int] = ..., cg_iterations: _Optional[int] = ..., newton_failures: _Optional[int] = ..., kept_per_row: _Optional[int] = ...) -> None: ...

class SinkhornResponse(_message.Message):
    __slots__ = ("cost", "objective", "f", "g", "marginal_error", "plan", "diagnostics", "newton", "sparse_plan", "barycentric_map")
    COST_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    F_FIELD_NUMBER: _ClassVar[int]
    G_FIELD_NUMBER: _ClassVar[int]
    MARGINAL_ERROR_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    DIAGNOSTICS_FIELD_NUMBER: _ClassVar[int]
    NEWTON_FIELD_NUMBER: _ClassVar[int]
    SPARSE_PLAN_FIELD_NUMBER: _ClassVar[int]
    BARYCENTRIC_MAP_FIELD_NUMBER: _ClassVar[int]
    cost: float
    objective: float
    f: _tensor_pb2.Tensor
    g: _tensor_pb2.Tensor
    marginal_error: float
    plan: _tensor_pb2.Tensor
    diagnostics: _diagnostics_pb2.SolverDiagnostics
    newton: NewtonStatistics
    sparse_plan: _tensor_pb2.SparseMatrix
    barycentric_map: _tensor_pb2.Tensor
    def __init__(self, cost: _Optional[float] = ..., objective: _Optional[float] = ..., f: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., g: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., marginal_error: _Optional[float] = ..., plan: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., diagnostics: _Optional[_Union[_diagnostics_pb2.SolverDiagnostics, _Mapping]] = ..., newton: _Optional[_Union[NewtonStatistics, _Mapping]] = ..., sparse_plan: _Optional[_Union[_tensor_pb2.SparseMatrix, _Mapping]] = ..., barycentric_map: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class SinkhornBatchRequest(_message.Message):
    __slots__ = ("problems", "priority")
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    problems: _containers.RepeatedCompositeFieldContainer[SinkhornRequest]
    priority: int
    def __init__(self, problems: _Optional[_Iterable[_Union[SinkhornRequest, _Mapping]]] = ..., priority: _Optional[int] = ...) -> None: ...

class SinkhornBatchResponse(_message.Message):
    __slots__ = ("results", "vectorized_groups", "single_solves")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    VECTORIZED_GROUPS_FIELD_NUMBER: _ClassVar[int]
    SINGLE_SOLVES_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SinkhornResponse]
    vectorized_groups: int
    single_solves: int
    def __init__(self, results: _Optional[_Iterable[_Union[SinkhornResponse, _Mapping]]] = ..., vectorized_groups: _Optional[int] = ..., single_solves: _Optional[int] = ...) -> None: ...

class SinkhornDivergenceRequest(_message.Message):
    __slots__ = ("x", "y", "a", "b", "cost", "epsilon", "threshold", "max_iterations", "reg_m", "priority")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    REG_M_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    x: _tensor_pb2.Tensor
    y: _tensor_pb2.Tensor
    a: _tensor_pb2.Tensor
    b: _tensor_pb2.Tensor
    cost: CostFunction
    epsilon: float
    threshold: float
    max_iterations: int
    reg_m: MarginalPenalty
    priority: int
    def __init__(self, x: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., y: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., a: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., b: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., cost: _Optional[_Union[CostFunction, str]] = ..., epsilon: _Optional[float] = ..., threshold: _Optional[float] = ..., max_iterations: _Optional[int] = ..., reg_m: _Optional[_Union[MarginalPenalty, _Mapping]] = ..., priority: _Optional[int] = ...) -> None: ...

class SinkhornDivergenceTerm(_message.Message):
    __slots__ = ("objective", "cost", "diagnostics")
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    DIAGNOSTICS_FIELD_NUMBER: _ClassVar[int]
    objective: float
    cost: float
    diagnostics: _diagnostics_pb2.SolverDiagnostics
    def __init__(self, objective: _Optional[float] = ..., cost: _Optional[float] = ..., diagnostics: _Optional[_Union[_diagnostics_pb2.SolverDiagnostics, _Mapping]] = ...) -> None: ...

class SinkhornDivergenceResponse(_message.Message):
    __slots__ = ("divergence", "converged", "xy", "xx", "yy")
    DIVERGENCE_FIELD_NUMBER: _ClassVar[int]
    CONVERGED_FIELD_NUMBER: _ClassVar[int]
    XY_FIELD_NUMBER: _ClassVar[int]
    XX_FIELD_NUMBER: _ClassVar[int]
    YY_FIELD_NUMBER: _ClassVar[int]
    divergence: float
    converged: bool
    xy: SinkhornDivergenceTerm
    xx: SinkhornDivergenceTerm
    yy: SinkhornDivergenceTerm
    def __init__(self, divergence: _Optional[float] = ..., converged: _Optional[bool] = ..., xy: _Optional[_Union[SinkhornDivergenceTerm, _Mapping]] = ..., xx: _Optional[_Union[SinkhornDivergenceTerm, _Mapping]] = ..., yy: _Optional[_Union[SinkhornDivergenceTerm, _Mapping]] = ...) -> None: ...
