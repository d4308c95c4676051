from monge.v1 import diagnostics_pb2 as _diagnostics_pb2
from monge.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class NoiseSchedule(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    NOISE_SCHEDULE_UNSPECIFIED: _ClassVar[NoiseSchedule]
    NOISE_SCHEDULE_VP: _ClassVar[NoiseSchedule]
    NOISE_SCHEDULE_VE: _ClassVar[NoiseSchedule]
    NOISE_SCHEDULE_EDM: _ClassVar[NoiseSchedule]

class TimeGrid(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIME_GRID_UNSPECIFIED: _ClassVar[TimeGrid]
    TIME_GRID_UNIFORM: _ClassVar[TimeGrid]
    TIME_GRID_LOG_SNR: _ClassVar[TimeGrid]
    TIME_GRID_KARRAS: _ClassVar[TimeGrid]

class OdeSampler(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ODE_SAMPLER_UNSPECIFIED: _ClassVar[OdeSampler]
    ODE_SAMPLER_EULER: _ClassVar[OdeSampler]
    ODE_SAMPLER_HEUN: _ClassVar[OdeSampler]
    ODE_SAMPLER_DDIM: _ClassVar[OdeSampler]
    ODE_SAMPLER_DPM_SOLVER_PP_2M: _ClassVar[OdeSampler]
    ODE_SAMPLER_DPM_SOLVER_PP_3M: _ClassVar[OdeSampler]
    ODE_SAMPLER_DOPRI5: _ClassVar[OdeSampler]

class PredictionType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PREDICTION_TYPE_UNSPECIFIED: _ClassVar[PredictionType]
    PREDICTION_TYPE_SCORE: _ClassVar[PredictionType]
    PREDICTION_TYPE_NOISE: _ClassVar[PredictionType]
    PREDICTION_TYPE_DATA: _ClassVar[PredictionType]
    PREDICTION_TYPE_VELOCITY: _ClassVar[PredictionType]

class LatentPrior(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LATENT_PRIOR_UNSPECIFIED: _ClassVar[LatentPrior]
    LATENT_PRIOR_NOISE: _ClassVar[LatentPrior]
    LATENT_PRIOR_MARGINAL: _ClassVar[LatentPrior]

class DivergenceEstimator(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DIVERGENCE_ESTIMATOR_UNSPECIFIED: _ClassVar[DivergenceEstimator]
    DIVERGENCE_ESTIMATOR_EXACT: _ClassVar[DivergenceEstimator]
    DIVERGENCE_ESTIMATOR_HUTCHINSON: _ClassVar[DivergenceEstimator]

class SampleStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SAMPLE_STATUS_UNSPECIFIED: _ClassVar[SampleStatus]
    SAMPLE_STATUS_SUCCESS: _ClassVar[SampleStatus]
    SAMPLE_STATUS_MAX_STEPS: _ClassVar[SampleStatus]
    SAMPLE_STATUS_NONFINITE: _ClassVar[SampleStatus]
    SAMPLE_STATUS_SOLVER_FAILED: _ClassVar[SampleStatus]
    SAMPLE_STATUS_CANCELLED: _ClassVar[SampleStatus]
NOISE_SCHEDULE_UNSPECIFIED: NoiseSchedule
NOISE_SCHEDULE_VP: NoiseSchedule
NOISE_SCHEDULE_VE: NoiseSchedule
NOISE_SCHEDULE_EDM: NoiseSchedule
TIME_GRID_UNSPECIFIED: TimeGrid
TIME_GRID_UNIFORM: TimeGrid
TIME_GRID_LOG_SNR: TimeGrid
TIME_GRID_KARRAS: TimeGrid
ODE_SAMPLER_UNSPECIFIED: OdeSampler
ODE_SAMPLER_EULER: OdeSampler
ODE_SAMPLER_HEUN: OdeSampler
ODE_SAMPLER_DDIM: OdeSampler
ODE_SAMPLER_DPM_SOLVER_PP_2M: OdeSampler
ODE_SAMPLER_DPM_SOLVER_PP_3M: OdeSampler
ODE_SAMPLER_DOPRI5: OdeSampler
PREDICTION_TYPE_UNSPECIFIED: PredictionType
PREDICTION_TYPE_SCORE: PredictionType
PREDICTION_TYPE_NOISE: PredictionType
PREDICTION_TYPE_DATA: PredictionType
PREDICTION_TYPE_VELOCITY: PredictionType
LATENT_PRIOR_UNSPECIFIED: LatentPrior
LATENT_PRIOR_NOISE: LatentPrior
LATENT_PRIOR_MARGINAL: LatentPrior
DIVERGENCE_ESTIMATOR_UNSPECIFIED: DivergenceEstimator
DIVERGENCE_ESTIMATOR_EXACT: DivergenceEstimator
DIVERGENCE_ESTIMATOR_HUTCHINSON: DivergenceEstimator
SAMPLE_STATUS_UNSPECIFIED: SampleStatus
SAMPLE_STATUS_SUCCESS: SampleStatus
SAMPLE_STATUS_MAX_STEPS: SampleStatus
SAMPLE_STATUS_NONFINITE: SampleStatus
SAMPLE_STATUS_SOLVER_FAILED: SampleStatus
SAMPLE_STATUS_CANCELLED: SampleStatus

class DiffusionSchedule(_message.Message):
    __slots__ = ("kind", "beta_min", "beta_max", "sigma_min", "sigma_max", "rho")
    KIND_FIELD_NUMBER: _ClassVar[int]
    BETA_MIN_FIELD_NUMBER: _ClassVar[int]
    BETA_MAX_FIELD_NUMBER: _ClassVar[int]
    SIGMA_MIN_FIELD_NUMBER: _ClassVar[int]
    SIGMA_MAX_FIELD_NUMBER: _ClassVar[int]
    RHO_FIELD_NUMBER: _ClassVar[int]
    kind: NoiseSchedule
    beta_min: float
    beta_max: float
    sigma_min: float
    sigma_max: float
    rho: float
    def __init__(self, kind: _Optional[_Union[NoiseSchedule, str]] = ..., beta_min: _Optional[float] = ..., beta_max: _Optional[float] = ..., sigma_min: _Optional[float] = ..., sigma_max: _Optional[float] = ..., rho: _Optional[float] = ...) -> None: ...

class GaussianMixture(_message.Message):
    __slots__ = ("means", "covariances", "weights")
    MEANS_FIELD_NUMBER: _ClassVar[int]
    COVARIANCES_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    means: _tensor_pb2.Tensor
    covariances: _tensor_pb2.Tensor
    weights: _tensor_pb2.Tensor
    def __init__(self, means: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., covariances: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., weights: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class MlpScoreModel(_message.Message):
    __slots__ = ("dim", "hidden", "time_embedding_dim", "prediction", "weights")
    class WeightsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: _tensor_pb2.Tensor
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...
    DIM_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_FIELD_NUMBER: _ClassVar[int]
    TIME_EMBEDDING_DIM_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    dim: int
    hidden: _containers.RepeatedScalarFieldContainer[int]
    time_embedding_dim: int
    prediction: PredictionType
    weights: _containers.MessageMap[str, _tensor_pb2.Tensor]
    def __init__(self, dim: _Optional[int] = ..., hidden: _Optional[_Iterable[int]] = ..., time_embedding_dim: _Optional[int] = ..., prediction: _Optional[_Union[PredictionType, str]] = ..., weights: _Optional[_Mapping[str, _tensor_pb2.Tensor]] = ...) -> None: ...

class ExportedModel(_message.Message):
    __slots__ = ("artifact", "prediction", "event_shape")
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    EVENT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    artifact: bytes
    prediction: PredictionType
    event_shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, artifact: _Optional[bytes] = ..., prediction: _Optional[_Union[PredictionType, str]] = ..., event_shape: _Optional[_Iterable[int]] = ...) -> None: ...

class ProbabilityFlowModel(_message.Message):
    __slots__ = ("schedule", "gaussian_mixture", "mlp", "trained_model_id", "exported", "prior", "t_start", "t_end")
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    GAUSSIAN_MIXTURE_FIELD_NUMBER: _ClassVar[int]
    MLP_FIELD_NUMBER: _ClassVar[int]
    TRAINED_MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    EXPORTED_FIELD_NUMBER: _ClassVar[int]
    PRIOR_FIELD_NUMBER: _ClassVar[int]
    T_START_FIELD_NUMBER: _ClassVar[int]
    T_END_FIELD_NUMBER: _ClassVar[int]
    schedule: DiffusionSchedule
    gaussian_mixture: GaussianMixture
    mlp: MlpScoreModel
    trained_model_id: str
    exported: ExportedModel
    prior: LatentPrior
    t_start: float
    t_end: float
    def __init__(self, schedule: _Optional[_Union[DiffusionSchedule, _Mapping]] = ..., gaussian_mixture: _Optional[_Union[GaussianMixture, _Mapping]] = ..., mlp: _Optional[_Union[MlpScoreModel, _Mapping]] = ..., trained_model_id: _Optional[str] = ..., exported: _Optional[_Union[ExportedModel, _Mapping]] = ..., prior: _Optional[_Union[LatentPrior, str]] = ..., t_start: _Optional[float] = ..., t_end: _Optional[float] = ...) -> None: ...

class LogLikelihoodOptions(_message.Message):
    __slots__ = ("divergence", "num_probes", "rtol", "atol")
    DIVERGENCE_FIELD_NUMBER: _ClassVar[int]
    NUM_PROBES_FIELD_NUMBER: _ClassVar[int]
    RTOL_FIELD_NUMBER: _ClassVar[int]
    ATOL_FIELD_NUMBER: _ClassVar[int]
    divergence: DivergenceEstimator
    num_probes: int
    rtol: float
    atol: float
    def __init__(self, divergence: _Optional[_Union[DivergenceEstimator, str]] = ..., num_probes: _Optional[int] = ..., rtol: _Optional[float] = ..., atol: _Optional[float] = ...) -> None: ...

class SampleProbabilityFlowRequest(_message.Message):
    __slots__ = ("model", "sampler", "time_grid", "steps", "nfe", "num_samples", "seed", "dtype", "rtol", "atol", "return_trajectory", "log_likelihood", "priority")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SAMPLER_FIELD_NUMBER: _ClassVar[int]
    TIME_GRID_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    NFE_FIELD_NUMBER: _ClassVar[int]
    NUM_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    RTOL_FIELD_NUMBER: _ClassVar[int]
    ATOL_FIELD_NUMBER: _ClassVar[int]
    RETURN_TRAJECTORY_FIELD_NUMBER: _ClassVar[int]
    LOG_LIKELIHOOD_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    model: ProbabilityFlowModel
    sampler: OdeSampler
    time_grid: TimeGrid
    steps: int
    nfe: int
    num_samples: int
    seed: int
    dtype: _tensor_pb2.Dtype
    rtol: float
    atol: float
    return_trajectory: bool
    log_likelihood: LogLikelihoodOptions
    priority: int
    def __init__(self, model: _Optional[_Union[ProbabilityFlowModel, _Mapping]] = ..., sampler: _Optional[_Union[OdeSampler, str]] = ..., time_grid: _Optional[_Union[TimeGrid, str]] = ..., steps: _Optional[int] = ..., nfe: _Optional[int] = ..., num_samples: _Optional[int] = ..., seed: _Optional[int] = ..., dtype: _Optional[_Union[_tensor_pb2.Dtype, str]] = ..., rtol: _Optional[float] = ..., atol: _Optional[float] = ..., return_trajectory: _Optional[bool] = ..., log_likelihood: _Optional[_Union[LogLikelihoodOptions, _Mapping]] = ..., priority: _Optional[int] = ...) -> None: ...

class ProbabilityFlowDiagnostics(_message.Message):
    __slots__ = ("status", "message", "ok", "solve_seconds")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    SOLVE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    status: SampleStatus
    message: str
    ok: bool
    solve_seconds: float
    def __init__(self, status: _Optional[_Union[SampleStatus, str]] = ..., message: _Optional[str] = ..., ok: _Optional[bool] = ..., solve_seconds: _Optional[float] = ...) -> None: ...

class SampleProbabilityFlowResponse(_message.Message):
    __slots__ = ("samples", "nfe", "steps", "times", "trajectory", "log_likelihood", "log_likelihood_standard_error", "diagnostics")
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    NFE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    TIMES_FIELD_NUMBER: _ClassVar[int]
    TRAJECTORY_FIELD_NUMBER: _ClassVar[int]
    LOG_LIKELIHOOD_FIELD_NUMBER: _ClassVar[int]
    LOG_LIKELIHOOD_STANDARD_ERROR_FIELD_NUMBER: _ClassVar[int]
    DIAGNOSTICS_FIELD_NUMBER: _ClassVar[int]
    samples: _tensor_pb2.Tensor
    nfe: int
    steps: int
    times: _tensor_pb2.Tensor
    trajectory: _tensor_pb2.Tensor
    log_likelihood: _tensor_pb2.Tensor
    log_likelihood_standard_error: _tensor_pb2.Tensor
    diagnostics: ProbabilityFlowDiagnostics
    def __init__(self, samples: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., nfe: _Optional[int] = ..., steps: _Optional[int] = ..., times: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., trajectory: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., log_likelihood: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., log_likelihood_standard_error: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., diagnostics: _Optional[_Union[ProbabilityFlowDiagnostics, _Mapping]] = ...) -> None: ...

class ProbabilityFlowLogLikelihoodRequest(_message.Message):
    __slots__ = ("model", "points", "options", "seed", "dtype", "max_steps", "priority")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    model: ProbabilityFlowModel
    points: _tensor_pb2.Tensor
    options: LogLikelihoodOptions
    seed: int
    dtype: _tensor_pb2.Dtype
    max_steps: int
    priority: int
    def __init__(self, model: _Optional[_Union[ProbabilityFlowModel, _Mapping]] = ..., points: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., options: _Optional[_Union[LogLikelihoodOptions, _Mapping]] = ..., seed: _Optional[int] = ..., dtype: _Optional[_Union[_tensor_pb2.Dtype, str]] = ..., max_steps: _Optional[int] = ..., priority: _Optional[int] = ...) -> None: ...

class ProbabilityFlowLogLikelihoodResponse(_message.Message):
    __slots__ = ("log_likelihood", "standard_error", "prior_log_likelihood", "latents", "nfe", "diagnostics")
    LOG_LIKELIHOOD_FIELD_NUMBER: _ClassVar[int]
    STANDARD_ERROR_FIELD_NUMBER: _ClassVar[int]
    PRIOR_LOG_LIKELIHOOD_FIELD_NUMBER: _ClassVar[int]
    LATENTS_FIELD_NUMBER: _ClassVar[int]
    NFE_FIELD_NUMBER: _ClassVar[int]
    DIAGNOSTICS_FIELD_NUMBER: _ClassVar[int]
    log_likelihood: _tensor_pb2.Tensor
    standard_error: _tensor_pb2.Tensor
    prior_log_likelihood: _tensor_pb2.Tensor
    latents: _tensor_pb2.Tensor
    nfe: int
    diagnostics: ProbabilityFlowDiagnostics
    def __init__(self, log_likelihood: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., standard_error: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., prior_log_likelihood: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., latents: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., nfe: _Optional[int] = ..., diagnostics: _Optional[_Union[ProbabilityFlowDiagnostics, _Mapping]] = ...) -> None: ...

class TrainScoreModelRequest(_message.Message):
    __slots__ = ("samples", "hidden", "time_embedding_dim", "prediction", "schedule", "steps", "batch_size", "learning_rate", "t_min", "t_max", "report_every", "seed")
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_FIELD_NUMBER: _ClassVar[int]
    TIME_EMBEDDING_DIM_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    T_MIN_FIELD_NUMBER: _ClassVar[int]
    T_MAX_FIELD_NUMBER: _ClassVar[int]
    REPORT_EVERY_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    samples: _tensor_pb2.Tensor
    hidden: _containers.RepeatedScalarFieldContainer[int]
    time_embedding_dim: int
    prediction: PredictionType
    schedule: DiffusionSchedule
    steps: int
    batch_size: int
    learning_rate: float
    t_min: float
    t_max: float
    report_every: int
    seed: int
    def __init__(self, samples: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., hidden: _Optional[_Iterable[int]] = ..., time_embedding_dim: _Optional[int] = ..., prediction: _Optional[_Union[PredictionType, str]] = ..., schedule: _Optional[_Union[DiffusionSchedule, _Mapping]] = ..., steps: _Optional[int] = ..., batch_size: _Optional[int] = ..., learning_rate: _Optional[float] = ..., t_min: _Optional[float] = ..., t_max: _Optional[float] = ..., report_every: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class TrainScoreModelResponse(_message.Message):
    __slots__ = ("model_id", "model", "losses", "final_loss", "diagnostics")
    MODEL_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LOSSES_FIELD_NUMBER: _ClassVar[int]
    FINAL_LOSS_FIELD_NUMBER: _ClassVar[int]
    DIAGNOSTICS_FIELD_NUMBER: _ClassVar[int]
    model_id: str
    model: MlpScoreModel
    losses: _tensor_pb2.Tensor
    final_loss: float
    diagnostics: _diagnostics_pb2.SolverDiagnostics
    def __init__(self, model_id: _Optional[str] = ..., model: _Optional[_Union[MlpScoreModel, _Mapping]] = ..., losses: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., final_loss: _Optional[float] = ..., diagnostics: _Optional[_Union[_diagnostics_pb2.SolverDiagnostics, _Mapping]] = ...) -> None: ...
