"""What the job verbs return: `JobInfo` and per-item `ItemResult`s."""

from __future__ import annotations

import dataclasses

import grpc

from monge.client import errors
from monge.client.results import (
    ExactTransportResult,
    ProbabilityFlowLikelihood,
    ProbabilityFlowSamples,
    SinkhornBatchResult,
    SinkhornDivergenceResult,
    SinkhornResult,
    SparsityConstrainedResult,
    TrainedScoreModel,
)
from monge.client.results import RuotFitResult
from monge.v1 import jobs_pb2

_RESULT_TYPES = {
    "sinkhorn": SinkhornResult,
    "exact_transport": ExactTransportResult,
    "sparsity_constrained": SparsityConstrainedResult,
    "sample_probability_flow": ProbabilityFlowSamples,
    "probability_flow_log_likelihood": ProbabilityFlowLikelihood,
    "train_score_model": TrainedScoreModel,
    "ruot_fit": RuotFitResult,
    "sinkhorn_divergence": SinkhornDivergenceResult,
    "sinkhorn_batch": SinkhornBatchResult,
}
_DONE = ("succeeded", "failed", "cancelled")


def _error(status) -> errors.MongeError:
    code = next((c for c in grpc.StatusCode if c.value[0] == status.code), grpc.StatusCode.UNKNOWN)
    cls = errors._BY_CODE.get(code, errors.MongeError)
    violations = [errors.FieldViolation(v.field, v.description) for v in status.field_violations]
    return cls(status.message or code.name, code=code, violations=violations)


@dataclasses.dataclass(frozen=True)
class ItemResult:
    """One item of a job: `value` (a result object) or `error` (a MongeError)."""

    value: object | None
    error: errors.MongeError | None

    @property
    def ok(self) -> bool:
        return self.error is None

    def unwrap(self):
        if self.error is not None:
            raise self.error
        return self.value

    @classmethod
    def from_proto(cls, result: jobs_pb2.JobItemResult) -> "ItemResult":
        if result.status.code != 0:
            return cls(None, _error(result.status))
        kind = result.WhichOneof("response")
        return cls(_RESULT_TYPES[kind].from_proto(getattr(result, kind)), None)


@dataclasses.dataclass(frozen=True)
class JobInfo:
    job_id: str
    request_id: str
    state: str  # queued, running, succeeded, failed, cancelled
    item_count: int
    failed_items: int
    attempts: int
    progress: dict
    error: errors.MongeError | None
    create_time: float | None
    start_time: float | None
    end_time: float | None
    results: tuple[ItemResult, ...] | None

    @property
    def done(self) -> bool:
        return self.state in _DONE

    @classmethod
    def from_proto(cls, job: jobs_pb2.Job) -> "JobInfo":
        def seconds(field):
            return getattr(job, field).ToNanoseconds() / 1e9 if job.HasField(field) else None

        progress = {f.name: getattr(job.progress, f.name) for f in job.progress.DESCRIPTOR.fields}
        progress["loss_terms"] = dict(job.progress.loss_terms)  # a plain dict, not the proto map
        return cls(
            job_id=job.job_id,
            request_id=job.request_id,
            state=jobs_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_").lower(),
            item_count=job.item_count,
            failed_items=job.failed_items,
            attempts=job.attempts,
            progress=progress,
            error=_error(job.error) if job.HasField("error") and job.error.code else None,
            create_time=seconds("create_time"),
            start_time=seconds("start_time"),
            end_time=seconds("end_time"),
            results=tuple(ItemResult.from_proto(r) for r in job.results) if job.results else None,
        )
