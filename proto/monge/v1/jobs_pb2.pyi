import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from monge.v1 import diagnostics_pb2 as _diagnostics_pb2
from monge.v1 import exact_pb2 as _exact_pb2
from monge.v1 import pfode_pb2 as _pfode_pb2
from monge.v1 import ruot_pb2 as _ruot_pb2
from monge.v1 import sinkhorn_pb2 as _sinkhorn_pb2
from monge.v1 import sparsity_constrained_pb2 as _sparsity_constrained_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class JobState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    JOB_STATE_UNSPECIFIED: _ClassVar[JobState]
    JOB_STATE_QUEUED: _ClassVar[JobState]
    JOB_STATE_RUNNING: _ClassVar[JobState]
    JOB_STATE_SUCCEEDED: _ClassVar[JobState]
    JOB_STATE_FAILED: _ClassVar[JobState]
    JOB_STATE_CANCELLED: _ClassVar[JobState]
JOB_STATE_UNSPECIFIED: JobState
JOB_STATE_QUEUED: JobState
JOB_STATE_RUNNING: JobState
JOB_STATE_SUCCEEDED: JobState
JOB_STATE_FAILED: JobState
JOB_STATE_CANCELLED: JobState

class JobItem(_message.Message):
    __slots__ = ("sinkhorn", "exact_transport", "sparsity_constrained", "sample_probability_flow", "probability_flow_log_likelihood", "train_score_model", "ruot_fit", "sinkhorn_divergence", "sinkhorn_batch")
    SINKHORN_FIELD_NUMBER: _ClassVar[int]
    EXACT_TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    SPARSITY_CONSTRAINED_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_PROBABILITY_FLOW_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FLOW_LOG_LIKELIHOOD_FIELD_NUMBER: _ClassVar[int]
    TRAIN_SCORE_MODEL_FIELD_NUMBER: _ClassVar[int]
    RUOT_FIT_FIELD_NUMBER: _ClassVar[int]
    SINKHORN_DIVERGENCE_FIELD_NUMBER: _ClassVar[int]
    SINKHORN_BATCH_FIELD_NUMBER: _ClassVar[int]
    sinkhorn: _sinkhorn_pb2.SinkhornRequest
    exact_transport: _exact_pb2.ExactTransportRequest
    sparsity_constrained: _sparsity_constrained_pb2.SparsityConstrainedTransportRequest
    sample_probability_flow: _pfode_pb2.SampleProbabilityFlowRequest
    probability_flow_log_likelihood: _pfode_pb2.ProbabilityFlowLogLikelihoodRequest
    train_score_model: _pfode_pb2.TrainScoreModelRequest
    ruot_fit: _ruot_pb2.RUOTFitRequest
    sinkhorn_divergence: _sinkhorn_pb2.SinkhornDivergenceRequest
    sinkhorn_batch: _sinkhorn_pb2.SinkhornBatchRequest
    def __init__(self, sinkhorn: _Optional[_Union[_sinkhorn_pb2.SinkhornRequest, _Mapping]] = ..., exact_transport: _Optional[_Union[_exact_pb2.ExactTransportRequest, _Mapping]] = ..., sparsity_constrained: _Optional[_Union[_sparsity_constrained_pb2.SparsityConstrainedTransportRequest, _Mapping]] = ..., sample_probability_flow: _Optional[_Union[_pfode_pb2.SampleProbabilityFlowRequest, _Mapping]] = ..., probability_flow_log_likelihood: _Optional[_Union[_pfode_pb2.ProbabilityFlowLogLikelihoodRequest, _Mapping]] = ..., train_score_model: _Optional[_Union[_pfode_pb2.TrainScoreModelRequest, _Mapping]] = ..., ruot_fit: _Optional[_Union[_ruot_pb2.RUOTFitRequest, _Mapping]] = ..., sinkhorn_divergence: _Optional[_Union[_sinkhorn_pb2.SinkhornDivergenceRequest, _Mapping]] = ..., sinkhorn_batch: _Optional[_Union[_sinkhorn_pb2.SinkhornBatchRequest, _Mapping]] = ...) -> None: ...

class JobItemResult(_message.Message):
    __slots__ = ("status", "sinkhorn", "exact_transport", "sparsity_constrained", "sample_probability_flow", "probability_flow_log_likelihood", "train_score_model", "ruot_fit", "sinkhorn_divergence", "sinkhorn_batch")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SINKHORN_FIELD_NUMBER: _ClassVar[int]
    EXACT_TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    SPARSITY_CONSTRAINED_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_PROBABILITY_FLOW_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FLOW_LOG_LIKELIHOOD_FIELD_NUMBER: _ClassVar[int]
    TRAIN_SCORE_MODEL_FIELD_NUMBER: _ClassVar[int]
    RUOT_FIT_FIELD_NUMBER: _ClassVar[int]
    SINKHORN_DIVERGENCE_FIELD_NUMBER: _ClassVar[int]
    SINKHORN_BATCH_FIELD_NUMBER: _ClassVar[int]
    status: _diagnostics_pb2.ErrorStatus
    sinkhorn: _sinkhorn_pb2.SinkhornResponse
    exact_transport: _exact_pb2.ExactTransportResponse
    sparsity_constrained: _sparsity_constrained_pb2.SparsityConstrainedTransportResponse
    sample_probability_flow: _pfode_pb2.SampleProbabilityFlowResponse
    probability_flow_log_likelihood: _pfode_pb2.ProbabilityFlowLogLikelihoodResponse
    train_score_model: _pfode_pb2.TrainScoreModelResponse
    ruot_fit: _ruot_pb2.RUOTFitResponse
    sinkhorn_divergence: _sinkhorn_pb2.SinkhornDivergenceResponse
    sinkhorn_batch: _sinkhorn_pb2.SinkhornBatchResponse
    def __init__(self, status: _Optional[_Union[_diagnostics_pb2.ErrorStatus, _Mapping]] = ..., sinkhorn: _Optional[_Union[_sinkhorn_pb2.SinkhornResponse, _Mapping]] = ..., exact_transport: _Optional[_Union[_exact_pb2.ExactTransportResponse, _Mapping]] = ..., sparsity_constrained: _Optional[_Union[_sparsity_constrained_pb2.SparsityConstrainedTransportResponse, _Mapping]] = ..., sample_probability_flow: _Optional[_Union[_pfode_pb2.SampleProbabilityFlowResponse, _Mapping]] = ..., probability_flow_log_likelihood: _Optional[_Union[_pfode_pb2.ProbabilityFlowLogLikelihoodResponse, _Mapping]] = ..., train_score_model: _Optional[_Union[_pfode_pb2.TrainScoreModelResponse, _Mapping]] = ..., ruot_fit: _Optional[_Union[_ruot_pb2.RUOTFitResponse, _Mapping]] = ..., sinkhorn_divergence: _Optional[_Union[_sinkhorn_pb2.SinkhornDivergenceResponse, _Mapping]] = ..., sinkhorn_batch: _Optional[_Union[_sinkhorn_pb2.SinkhornBatchResponse, _Mapping]] = ...) -> None: ...

class JobProgress(_message.Message):
    __slots__ = ("item", "iteration", "error", "loss", "elapsed_seconds", "items_done", "loss_terms", "yielded_seconds")
    class LossTermsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ITEM_FIELD_NUMBER: _ClassVar[int]
    ITERATION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LOSS_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ITEMS_DONE_FIELD_NUMBER: _ClassVar[int]
    LOSS_TERMS_FIELD_NUMBER: _ClassVar[int]
    YIELDED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    item: int
    iteration: int
    error: float
    loss: float
    elapsed_seconds: float
    items_done: int
    loss_terms: _containers.ScalarMap[str, float]
    yielded_seconds: float
    def __init__(self, item: _Optional[int] = ..., iteration: _Optional[int] = ..., error: _Optional[float] = ..., loss: _Optional[float] = ..., elapsed_seconds: _Optional[float] = ..., items_done: _Optional[int] = ..., loss_terms: _Optional[_Mapping[str, float]] = ..., yielded_seconds: _Optional[float] = ...) -> None: ...

class Job(_message.Message):
    __slots__ = ("job_id", "request_id", "state", "item_count", "failed_items", "progress", "error", "attempts", "create_time", "start_time", "end_time", "results")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    ITEM_COUNT_FIELD_NUMBER: _ClassVar[int]
    FAILED_ITEMS_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    request_id: str
    state: JobState
    item_count: int
    failed_items: int
    progress: JobProgress
    error: _diagnostics_pb2.ErrorStatus
    attempts: int
    create_time: _timestamp_pb2.Timestamp
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    results: _containers.RepeatedCompositeFieldContainer[JobItemResult]
    def __init__(self, job_id: _Optional[str] = ..., request_id: _Optional[str] = ..., state: _Optional[_Union[JobState, str]] = ..., item_count: _Optional[int] = ..., failed_items: _Optional[int] = ..., progress: _Optional[_Union[JobProgress, _Mapping]] = ..., error: _Optional[_Union[_diagnostics_pb2.ErrorStatus, _Mapping]] = ..., attempts: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., results: _Optional[_Iterable[_Union[JobItemResult, _Mapping]]] = ...) -> None: ...

class SubmitJobRequest(_message.Message):
    __slots__ = ("request_id", "items", "priority")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    items: _containers.RepeatedCompositeFieldContainer[JobItem]
    priority: int
    def __init__(self, request_id: _Optional[str] = ..., items: _Optional[_Iterable[_Union[JobItem, _Mapping]]] = ..., priority: _Optional[int] = ...) -> None: ...

class SubmitJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class GetJobRequest(_message.Message):
    __slots__ = ("job_id", "include_results")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_RESULTS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    include_results: bool
    def __init__(self, job_id: _Optional[str] = ..., include_results: _Optional[bool] = ...) -> None: ...

class GetJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("state", "page_size", "page_token")
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    state: JobState
    page_size: int
    page_token: str
    def __init__(self, state: _Optional[_Union[JobState, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs", "next_page_token")
    JOBS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[Job]
    next_page_token: str
    def __init__(self, jobs: _Optional[_Iterable[_Union[Job, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class CancelJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class WaitJobRequest(_message.Message):
    __slots__ = ("job_id", "timeout_seconds", "include_results")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_RESULTS_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    timeout_seconds: float
    include_results: bool
    def __init__(self, job_id: _Optional[str] = ..., timeout_seconds: _Optional[float] = ..., include_results: _Optional[bool] = ...) -> None: ...

class WaitJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...

class WatchJobRequest(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    def __init__(self, job_id: _Optional[str] = ...) -> None: ...

class WatchJobResponse(_message.Message):
    __slots__ = ("job",)
    JOB_FIELD_NUMBER: _ClassVar[int]
    job: Job
    def __init__(self, job: _Optional[_Union[Job, _Mapping]] = ...) -> None: ...
