"""Monge's Python client: `from monge.client import Client`.

This package needs only numpy and grpc (no JAX), so pipelines can call a remote
accelerator without installing the solvers' stack.
"""

from monge.client import requests
from monge.client.client import Client
from monge.client.jobs import ItemResult, JobInfo
from monge.client.errors import (
    AbortedError,
    CancelledError,
    DeadlineExceededError,
    FieldViolation,
    InternalError,
    InvalidArgumentError,
    MongeError,
    NotFoundError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
)
from monge.client.fedwad import FedWadParty, FedWadSessionInfo, FedWadSessions
from monge.v1.ruot_codec import RuotExport, RuotSnapshot
from monge.client.results import (
    Diagnostics,
    ExactTransportResult,
    NewtonStatistics,
    ProbabilityFlowDiagnostics,
    ProbabilityFlowLikelihood,
    ProbabilityFlowSamples,
    RuotFields,
    RuotFitResult,
    RuotHoldOut,
    RuotPopulation,
    RuotQueryResult,
    RuotTrajectories,
    ServerInfo,
    SinkhornBatchResult,
    SinkhornDivergenceResult,
    SinkhornDivergenceTerm,
    SinkhornResult,
    SparsityConstrainedResult,
    TrainedScoreModel,
)

__all__ = [
    "AbortedError",
    "CancelledError",
    "Client",
    "DeadlineExceededError",
    "Diagnostics",
    "ExactTransportResult",
    "FedWadParty",
    "FedWadSessionInfo",
    "FedWadSessions",
    "FieldViolation",
    "InternalError",
    "InvalidArgumentError",
    "ItemResult",
    "JobInfo",
    "MongeError",
    "NewtonStatistics",
    "NotFoundError",
    "ProbabilityFlowDiagnostics",
    "ProbabilityFlowLikelihood",
    "ProbabilityFlowSamples",
    "ResourceExhaustedError",
    "RuotExport",
    "RuotFields",
    "RuotFitResult",
    "RuotHoldOut",
    "RuotPopulation",
    "RuotQueryResult",
    "RuotSnapshot",
    "RuotTrajectories",
    "ServerInfo",
    "SinkhornBatchResult",
    "SinkhornDivergenceResult",
    "SinkhornDivergenceTerm",
    "SinkhornResult",
    "SparsityConstrainedResult",
    "TrainedScoreModel",
    "UnauthenticatedError",
    "UnavailableError",
    "requests",
]
