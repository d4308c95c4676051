from monge.v1 import diagnostics_pb2 as _diagnostics_pb2
from monge.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RUOTGrowthPenalty(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUOT_GROWTH_PENALTY_UNSPECIFIED: _ClassVar[RUOTGrowthPenalty]
    RUOT_GROWTH_PENALTY_NONE: _ClassVar[RUOTGrowthPenalty]
    RUOT_GROWTH_PENALTY_QUADRATIC: _ClassVar[RUOTGrowthPenalty]
    RUOT_GROWTH_PENALTY_PAPER: _ClassVar[RUOTGrowthPenalty]

class RUOTReconstruction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUOT_RECONSTRUCTION_UNSPECIFIED: _ClassVar[RUOTReconstruction]
    RUOT_RECONSTRUCTION_ENERGY_DISTANCE: _ClassVar[RUOTReconstruction]
    RUOT_RECONSTRUCTION_SINKHORN_DIVERGENCE: _ClassVar[RUOTReconstruction]

class RUOTLaplacian(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUOT_LAPLACIAN_UNSPECIFIED: _ClassVar[RUOTLaplacian]
    RUOT_LAPLACIAN_AUTO: _ClassVar[RUOTLaplacian]
    RUOT_LAPLACIAN_EXACT: _ClassVar[RUOTLaplacian]
    RUOT_LAPLACIAN_HUTCHINSON: _ClassVar[RUOTLaplacian]

class RUOTTrainingStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUOT_TRAINING_STATUS_UNSPECIFIED: _ClassVar[RUOTTrainingStatus]
    RUOT_TRAINING_STATUS_UNTRAINED: _ClassVar[RUOTTrainingStatus]
    RUOT_TRAINING_STATUS_COMPLETED: _ClassVar[RUOTTrainingStatus]
    RUOT_TRAINING_STATUS_CANCELLED: _ClassVar[RUOTTrainingStatus]
    RUOT_TRAINING_STATUS_DIVERGED: _ClassVar[RUOTTrainingStatus]
RUOT_GROWTH_PENALTY_UNSPECIFIED: RUOTGrowthPenalty
RUOT_GROWTH_PENALTY_NONE: RUOTGrowthPenalty
RUOT_GROWTH_PENALTY_QUADRATIC: RUOTGrowthPenalty
RUOT_GROWTH_PENALTY_PAPER: RUOTGrowthPenalty
RUOT_RECONSTRUCTION_UNSPECIFIED: RUOTReconstruction
RUOT_RECONSTRUCTION_ENERGY_DISTANCE: RUOTReconstruction
RUOT_RECONSTRUCTION_SINKHORN_DIVERGENCE: RUOTReconstruction
RUOT_LAPLACIAN_UNSPECIFIED: RUOTLaplacian
RUOT_LAPLACIAN_AUTO: RUOTLaplacian
RUOT_LAPLACIAN_EXACT: RUOTLaplacian
RUOT_LAPLACIAN_HUTCHINSON: RUOTLaplacian
RUOT_TRAINING_STATUS_UNSPECIFIED: RUOTTrainingStatus
RUOT_TRAINING_STATUS_UNTRAINED: RUOTTrainingStatus
RUOT_TRAINING_STATUS_COMPLETED: RUOTTrainingStatus
RUOT_TRAINING_STATUS_CANCELLED: RUOTTrainingStatus
RUOT_TRAINING_STATUS_DIVERGED: RUOTTrainingStatus

class RUOTSnapshot(_message.Message):
    __slots__ = ("time", "points", "mass")
    TIME_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    MASS_FIELD_NUMBER: _ClassVar[int]
    time: float
    points: _tensor_pb2.Tensor
    mass: float
    def __init__(self, time: _Optional[float] = ..., points: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., mass: _Optional[float] = ...) -> None: ...

class RUOTFitSettings(_message.Message):
    __slots__ = ("growth_penalty", "growth_linear_below", "alpha", "sigma", "dt", "gamma_hjb", "gamma_action", "gamma_mass", "ot_epsilon", "width", "residual_blocks", "steps", "report_every", "particles", "learning_rate", "weight_decay", "clip_norm", "seed", "laplacian", "laplacian_probes", "laplacian_max_exact_dim", "reconstruction")
    GROWTH_PENALTY_FIELD_NUMBER: _ClassVar[int]
    GROWTH_LINEAR_BELOW_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    SIGMA_FIELD_NUMBER: _ClassVar[int]
    DT_FIELD_NUMBER: _ClassVar[int]
    GAMMA_HJB_FIELD_NUMBER: _ClassVar[int]
    GAMMA_ACTION_FIELD_NUMBER: _ClassVar[int]
    GAMMA_MASS_FIELD_NUMBER: _ClassVar[int]
    OT_EPSILON_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    RESIDUAL_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    REPORT_EVERY_FIELD_NUMBER: _ClassVar[int]
    PARTICLES_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DECAY_FIELD_NUMBER: _ClassVar[int]
    CLIP_NORM_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    LAPLACIAN_FIELD_NUMBER: _ClassVar[int]
    LAPLACIAN_PROBES_FIELD_NUMBER: _ClassVar[int]
    LAPLACIAN_MAX_EXACT_DIM_FIELD_NUMBER: _ClassVar[int]
    RECONSTRUCTION_FIELD_NUMBER: _ClassVar[int]
    growth_penalty: RUOTGrowthPenalty
    growth_linear_below: float
    alpha: float
    sigma: float
    dt: float
    gamma_hjb: float
    gamma_action: float
    gamma_mass: float
    ot_epsilon: float
    width: int
    residual_blocks: int
    steps: int
    report_every: int
    particles: int
    learning_rate: float
    weight_decay: float
    clip_norm: float
    seed: int
    laplacian: RUOTLaplacian
    laplacian_probes: int
    laplacian_max_exact_dim: int
    reconstruction: RUOTReconstruction
    def __init__(self, growth_penalty: _Optional[_Union[RUOTGrowthPenalty, str]] = ..., growth_linear_below: _Optional[float] = ..., alpha: _Optional[float] = ..., sigma: _Optional[float] = ..., dt: _Optional[float] = ..., gamma_hjb: _Optional[float] = ..., gamma_action: _Optional[float] = ..., gamma_mass: _Optional[float] = ..., ot_epsilon: _Optional[float] = ..., width: _Optional[int] = ..., residual_blocks: _Optional[int] = ..., steps: _Optional[int] = ..., report_every: _Optional[int] = ..., particles: _Optional[int] = ..., learning_rate: _Optional[float] = ..., weight_decay: _Optional[float] = ..., clip_norm: _Optional[float] = ..., seed: _Optional[int] = ..., laplacian: _Optional[_Union[RUOTLaplacian, str]] = ..., laplacian_probes: _Optional[int] = ..., laplacian_max_exact_dim: _Optional[int] = ..., reconstruction: _Optional[_Union[RUOTReconstruction, str]] = ...) -> None: ...

class RUOTFitRequest(_message.Message):
    __slots__ = ("snapshots", "settings", "hold_out")
    SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    HOLD_OUT_FIELD_NUMBER: _ClassVar[int]
    snapshots: _containers.RepeatedCompositeFieldContainer[RUOTSnapshot]
    settings: RUOTFitSettings
    hold_out: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, snapshots: _Optional[_Iterable[_Union[RUOTSnapshot, _Mapping]]] = ..., settings: _Optional[_Union[RUOTFitSettings, _Mapping]] = ..., hold_out: _Optional[_Iterable[float]] = ...) -> None: ...

class RUOTHoldOutReport(_message.Message):
    __slots__ = ("time", "w1", "noise_floor", "interpolation_w1", "predicted_mass", "observed_mass")
    TIME_FIELD_NUMBER: _ClassVar[int]
    W1_FIELD_NUMBER: _ClassVar[int]
    NOISE_FLOOR_FIELD_NUMBER: _ClassVar[int]
    INTERPOLATION_W1_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_MASS_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_MASS_FIELD_NUMBER: _ClassVar[int]
    time: float
    w1: float
    noise_floor: float
    interpolation_w1: float
    predicted_mass: float
    observed_mass: float
    def __init__(self, time: _Optional[float] = ..., w1: _Optional[float] = ..., noise_floor: _Optional[float] = ..., interpolation_w1: _Optional[float] = ..., predicted_mass: _Optional[float] = ..., observed_mass: _Optional[float] = ...) -> None: ...

class RUOTModelSettings(_message.Message):
    __slots__ = ("format_version", "dim", "width", "residual_blocks", "sigma", "dt", "alpha", "growth_penalty", "growth_linear_below", "laplacian", "laplacian_probes", "laplacian_max_exact_dim", "steps_trained", "status", "loss_names")
    FORMAT_VERSION_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    RESIDUAL_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    SIGMA_FIELD_NUMBER: _ClassVar[int]
    DT_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    GROWTH_PENALTY_FIELD_NUMBER: _ClassVar[int]
    GROWTH_LINEAR_BELOW_FIELD_NUMBER: _ClassVar[int]
    LAPLACIAN_FIELD_NUMBER: _ClassVar[int]
    LAPLACIAN_PROBES_FIELD_NUMBER: _ClassVar[int]
    LAPLACIAN_MAX_EXACT_DIM_FIELD_NUMBER: _ClassVar[int]
    STEPS_TRAINED_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LOSS_NAMES_FIELD_NUMBER: _ClassVar[int]
    format_version: int
    dim: int
    width: int
    residual_blocks: int
    sigma: float
    dt: float
    alpha: float
    growth_penalty: RUOTGrowthPenalty
    growth_linear_below: float
    laplacian: RUOTLaplacian
    laplacian_probes: int
    laplacian_max_exact_dim: int
    steps_trained: int
    status: RUOTTrainingStatus
    loss_names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, format_version: _Optional[int] = ..., dim: _Optional[int] = ..., width: _Optional[int] = ..., residual_blocks: _Optional[int] = ..., sigma: _Optional[float] = ..., dt: _Optional[float] = ..., alpha: _Optional[float] = ..., growth_penalty: _Optional[_Union[RUOTGrowthPenalty, str]] = ..., growth_linear_below: _Optional[float] = ..., laplacian: _Optional[_Union[RUOTLaplacian, str]] = ..., laplacian_probes: _Optional[int] = ..., laplacian_max_exact_dim: _Optional[int] = ..., steps_trained: _Optional[int] = ..., status: _Optional[_Union[RUOTTrainingStatus, str]] = ..., loss_names: _Optional[_Iterable[str]] = ...) -> None: ...

class RUOTModel(_message.Message):
    __slots__ = ("settings", "arrays")
    class ArraysEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _tensor_pb2.Tensor
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...
    SETTINGS_FIELD_NUMBER: _ClassVar[int]
    ARRAYS_FIELD_NUMBER: _ClassVar[int]
    settings: RUOTModelSettings
    arrays: _containers.MessageMap[str, _tensor_pb2.Tensor]
    def __init__(self, settings: _Optional[_Union[RUOTModelSettings, _Mapping]] = ..., arrays: _Optional[_Mapping[str, _tensor_pb2.Tensor]] = ...) -> None: ...

class RUOTFitResponse(_message.Message):
    __slots__ = ("model_id", "model", "loss_history", "loss_names", "final_losses", "diagnostics", "hold_out")
    class FinalLossesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LOSS_HISTORY_FIELD_NUMBER: _ClassVar[int]
    LOSS_NAMES_FIELD_NUMBER: _ClassVar[int]
    FINAL_LOSSES_FIELD_NUMBER: _ClassVar[int]
    DIAGNOSTICS_FIELD_NUMBER: _ClassVar[int]
    HOLD_OUT_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    model: RUOTModel
    loss_history: _tensor_pb2.Tensor
    loss_names: _containers.RepeatedScalarFieldContainer[str]
    final_losses: _containers.ScalarMap[str, float]
    diagnostics: _diagnostics_pb2.SolverDiagnostics
    hold_out: _containers.RepeatedCompositeFieldContainer[RUOTHoldOutReport]
    def __init__(self, model_id: _Optional[str] = ..., model: _Optional[_Union[RUOTModel, _Mapping]] = ..., loss_history: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., loss_names: _Optional[_Iterable[str]] = ..., final_losses: _Optional[_Mapping[str, float]] = ..., diagnostics: _Optional[_Union[_diagnostics_pb2.SolverDiagnostics, _Mapping]] = ..., hold_out: _Optional[_Iterable[_Union[RUOTHoldOutReport, _Mapping]]] = ...) -> None: ...

class RUOTTrajectoriesQuery(_message.Message):
    __slots__ = ("times", "initial_points")
    TIMES_FIELD_NUMBER: _ClassVar[int]
    INITIAL_POINTS_FIELD_NUMBER: _ClassVar[int]
    times: _containers.RepeatedScalarFieldContainer[float]
    initial_points: _tensor_pb2.Tensor
    def __init__(self, times: _Optional[_Iterable[float]] = ..., initial_points: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class RUOTFieldsQuery(_message.Message):
    __slots__ = ("points", "times", "hjb_residual")
    POINTS_FIELD_NUMBER: _ClassVar[int]
    TIMES_FIELD_NUMBER: _ClassVar[int]
    HJB_RESIDUAL_FIELD_NUMBER: _ClassVar[int]
    points: _tensor_pb2.Tensor
    times: _tensor_pb2.Tensor
    hjb_residual: bool
    def __init__(self, points: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., times: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., hjb_residual: _Optional[bool] = ...) -> None: ...

class RUOTMassQuery(_message.Message):
    __slots__ = ("times", "initial_points")
    TIMES_FIELD_NUMBER: _ClassVar[int]
    INITIAL_POINTS_FIELD_NUMBER: _ClassVar[int]
    times: _containers.RepeatedScalarFieldContainer[float]
    initial_points: _tensor_pb2.Tensor
    def __init__(self, times: _Optional[_Iterable[float]] = ..., initial_points: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class RUOTActionQuery(_message.Message):
    __slots__ = ("until", "initial_points")
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    INITIAL_POINTS_FIELD_NUMBER: _ClassVar[int]
    until: float
    initial_points: _tensor_pb2.Tensor
    def __init__(self, until: _Optional[float] = ..., initial_points: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class RUOTPopulationQuery(_message.Message):
    __slots__ = ("time", "initial_points")
    TIME_FIELD_NUMBER: _ClassVar[int]
    INITIAL_POINTS_FIELD_NUMBER: _ClassVar[int]
    time: float
    initial_points: _tensor_pb2.Tensor
    def __init__(self, time: _Optional[float] = ..., initial_points: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class QueryRUOTRequest(_message.Message):
    __slots__ = ("model_id", "inline_model", "trajectories", "fields", "mass", "action", "population", "seed", "priority")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    INLINE_MODEL_FIELD_NUMBER: _ClassVar[int]
    TRAJECTORIES_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    MASS_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    POPULATION_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    inline_model: RUOTModel
    trajectories: RUOTTrajectoriesQuery
    fields: RUOTFieldsQuery
    mass: RUOTMassQuery
    action: RUOTActionQuery
    population: RUOTPopulationQuery
    seed: int
    priority: int
    def __init__(self, model_id: _Optional[str] = ..., inline_model: _Optional[_Union[RUOTModel, _Mapping]] = ..., trajectories: _Optional[_Union[RUOTTrajectoriesQuery, _Mapping]] = ..., fields: _Optional[_Union[RUOTFieldsQuery, _Mapping]] = ..., mass: _Optional[_Union[RUOTMassQuery, _Mapping]] = ..., action: _Optional[_Union[RUOTActionQuery, _Mapping]] = ..., population: _Optional[_Union[RUOTPopulationQuery, _Mapping]] = ..., seed: _Optional[int] = ..., priority: _Optional[int] = ...) -> None: ...

class RUOTTrajectories(_message.Message):
    __slots__ = ("times", "points", "weights", "mass", "growth", "action")
    TIMES_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    MASS_FIELD_NUMBER: _ClassVar[int]
    GROWTH_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    times: _tensor_pb2.Tensor
    points: _tensor_pb2.Tensor
    weights: _tensor_pb2.Tensor
    mass: _tensor_pb2.Tensor
    growth: _tensor_pb2.Tensor
    action: float
    def __init__(self, times: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., points: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., weights: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., mass: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., growth: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., action: _Optional[float] = ...) -> None: ...

class RUOTFields(_message.Message):
    __slots__ = ("potential", "velocity", "growth", "hjb_residual")
    POTENTIAL_FIELD_NUMBER: _ClassVar[int]
    VELOCITY_FIELD_NUMBER: _ClassVar[int]
    GROWTH_FIELD_NUMBER: _ClassVar[int]
    HJB_RESIDUAL_FIELD_NUMBER: _ClassVar[int]
    potential: _tensor_pb2.Tensor
    velocity: _tensor_pb2.Tensor
    growth: _tensor_pb2.Tensor
    hjb_residual: _tensor_pb2.Tensor
    def __init__(self, potential: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., velocity: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., growth: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., hjb_residual: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class RUOTMassOverTime(_message.Message):
    __slots__ = ("times", "mass")
    TIMES_FIELD_NUMBER: _ClassVar[int]
    MASS_FIELD_NUMBER: _ClassVar[int]
    times: _tensor_pb2.Tensor
    mass: _tensor_pb2.Tensor
    def __init__(self, times: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., mass: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class RUOTAction(_message.Message):
    __slots__ = ("until", "action")
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    until: float
    action: float
    def __init__(self, until: _Optional[float] = ..., action: _Optional[float] = ...) -> None: ...

class RUOTPopulation(_message.Message):
    __slots__ = ("time", "points", "weights", "mass")
    TIME_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    MASS_FIELD_NUMBER: _ClassVar[int]
    time: float
    points: _tensor_pb2.Tensor
    weights: _tensor_pb2.Tensor
    mass: float
    def __init__(self, time: _Optional[float] = ..., points: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., weights: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., mass: _Optional[float] = ...) -> None: ...

class QueryRUOTResponse(_message.Message):
    __slots__ = ("trajectories", "fields", "mass", "action", "population", "snapshot_times", "snapshot_relative_mass", "query_seconds")
    TRAJECTORIES_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    MASS_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    POPULATION_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_TIMES_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_RELATIVE_MASS_FIELD_NUMBER: _ClassVar[int]
    QUERY_SECONDS_FIELD_NUMBER: _ClassVar[int]
    trajectories: RUOTTrajectories
    fields: RUOTFields
    mass: RUOTMassOverTime
    action: RUOTAction
    population: RUOTPopulation
    snapshot_times: _tensor_pb2.Tensor
    snapshot_relative_mass: _tensor_pb2.Tensor
    query_seconds: float
    def __init__(self, trajectories: _Optional[_Union[RUOTTrajectories, _Mapping]] = ..., fields: _Optional[_Union[RUOTFields, _Mapping]] = ..., mass: _Optional[_Union[RUOTMassOverTime, _Mapping]] = ..., action: _Optional[_Union[RUOTAction, _Mapping]] = ..., population: _Optional[_Union[RUOTPopulation, _Mapping]] = ..., snapshot_times: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., snapshot_relative_mass: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., query_seconds: _Optional[float] = ...) -> None: ...

class ExportRUOTModelRequest(_message.Message):
    __slots__ = ("model_id", "include_snapshots")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    include_snapshots: bool
    def __init__(self, model_id: _Optional[str] = ..., include_snapshots: _Optional[bool] = ...) -> None: ...

class ExportRUOTModelResponse(_message.Message):
    __slots__ = ("model", "snapshots")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOTS_FIELD_NUMBER: _ClassVar[int]
    model: RUOTModel
    snapshots: _containers.RepeatedCompositeFieldContainer[RUOTSnapshot]
    def __init__(self, model: _Optional[_Union[RUOTModel, _Mapping]] = ..., snapshots: _Optional[_Iterable[_Union[RUOTSnapshot, _Mapping]]] = ...) -> None: ...
