"""The bad inputs we try, and what a real server answers to each: docs/bad-input.md.

    .venv/bin/python benchmarks/bad_input.py > docs/bad-input-table.md   # or paste it

Starts four servers in this process on 127.0.0.1 (default limits; small point and
dense limits; a small memory budget; small probability-flow, Var-RUOT and job limits), sends every request below as a raw protobuf
(the client would refuse most of them before sending), and prints one Markdown table
per server: the request, what is wrong with it, and the status code, field and
message of the answer. tests/server/test_bad_input_doc.py checks that the rows for
the default server still match the document.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
import tempfile
from typing import Callable

import grpc
import numpy as np
from google.rpc import error_details_pb2, status_pb2

from monge.v1.codec import encode
from monge.v1 import (exact_pb2, fedwad_pb2, fedwad_pb2_grpc, jobs_pb2, jobs_pb2_grpc, pfode_pb2, ruot_pb2,
                      service_pb2_grpc, sinkhorn_pb2, sparsity_constrained_pb2 as sparsity_pb2, tensor_pb2)

MIB = 1 << 20


@dataclasses.dataclass(frozen=True)
class Case:
    rpc: str  # Sinkhorn, ExactTransport, SparsityConstrainedTransport, SubmitJob, ...
    what: str  # what is wrong (or, for OK rows, what is being shown)
    request: object


@dataclasses.dataclass(frozen=True)
class Section:
    title: str
    settings: dict  # ServerConfig fields
    cases: list[Case]


def _points(n, d=2, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(dtype)


def _tensor(array=None, **fields) -> tensor_pb2.Tensor:
    tensor = encode(_points(6) if array is None else array)
    for name, value in fields.items():
        if name == "shape":
            del tensor.shape[:]
            tensor.shape.extend(value)
        else:
            setattr(tensor, name, value)
    return tensor


def _with(array, index, value):
    array = array.copy()
    array.reshape(-1)[index] = value
    return array


def _sinkhorn(**fields):
    fields.setdefault("x", encode(_points(6, seed=1)))
    fields.setdefault("y", encode(_points(6, seed=2)))
    return sinkhorn_pb2.SinkhornRequest(**{k: v for k, v in fields.items() if v is not None})


def _divergence(**fields):
    fields.setdefault("x", encode(_points(6, seed=1)))
    fields.setdefault("y", encode(_points(6, seed=2)))
    return sinkhorn_pb2.SinkhornDivergenceRequest(**{k: v for k, v in fields.items() if v is not None})


def _exact(**fields):
    fields.setdefault("x", encode(_points(6, seed=1)))
    fields.setdefault("y", encode(_points(6, seed=2)))
    return exact_pb2.ExactTransportRequest(**{k: v for k, v in fields.items() if v is not None})


def _sparsity(**fields):
    fields.setdefault("x", encode(_points(6, seed=1)))
    fields.setdefault("y", encode(_points(6, seed=2)))
    return sparsity_pb2.SparsityConstrainedTransportRequest(**{k: v for k, v in fields.items() if v is not None})


def _gaussian(means=None, covariances=None) -> pfode_pb2.ProbabilityFlowModel:
    mixture = pfode_pb2.GaussianMixture(means=encode(np.zeros((1, 2)) if means is None else means),
                                        covariances=encode(np.eye(2)[None] if covariances is None else covariances))
    return pfode_pb2.ProbabilityFlowModel(gaussian_mixture=mixture)


def _sample(**fields):
    fields.setdefault("model", _gaussian())
    fields.setdefault("num_samples", 8)
    return pfode_pb2.SampleProbabilityFlowRequest(**fields)


def _likelihood(**fields):
    fields.setdefault("model", _gaussian())
    fields.setdefault("points", encode(_points(4)))
    return pfode_pb2.ProbabilityFlowLogLikelihoodRequest(**fields)


def _job(**item):
    return jobs_pb2.SubmitJobRequest(items=[jobs_pb2.JobItem(**item)])


def _train(**fields):
    fields.setdefault("samples", encode(_points(16)))
    return _job(train_score_model=pfode_pb2.TrainScoreModelRequest(**fields))


def _fit(times=(0.0, 1.0), **settings):
    snapshots = [ruot_pb2.RUOTSnapshot(time=t, points=encode(_points(8, seed=k))) for k, t in enumerate(times)]
    return _job(ruot_fit=ruot_pb2.RUOTFitRequest(snapshots=snapshots, settings=ruot_pb2.RUOTFitSettings(**settings)))


def _untrained_ruot() -> ruot_pb2.RUOTModel:
    """An exported Var-RUOT model (2-D, width 8, dt 0.25, snapshots at t = 0 and 1),
    untrained: enough for the server to check a query against it."""
    import jax

    from monge.client import RuotExport
    from monge.solvers.ruot.config import ExactLaplacian, QuadraticGrowth
    from monge.solvers.ruot.model import RuotSettings, init_params

    arrays = {f"params/{k}": np.asarray(v) for k, v in init_params(jax.random.key(0), 2, 8, 0).items()}
    arrays.update({"norm.x_shift": np.zeros(2), "norm.x_scale": np.array(1.0), "norm.t_shift": np.array(0.0),
                   "norm.t_scale": np.array(1.0), "times": np.array([0.0, 1.0]), "relative_mass": np.ones(2),
                   "initial_points": _points(6), "history": np.zeros((0, 5))})
    settings = RuotSettings(dim=2, width=8, residual_blocks=0, sigma=0.1, dt=0.25, alpha=1.0,
                            growth=QuadraticGrowth(), laplacian=ExactLaplacian())
    return RuotExport(arrays, settings.to_dict()).to_proto()


def _query(model_id=None, **queries):
    request = ruot_pb2.QueryRUOTRequest(**queries)
    if model_id is None:
        request.inline_model.CopyFrom(_untrained_ruot())
    else:
        request.model_id = model_id
    return request


def _create(parties=("alice", "bob"), **config):
    return fedwad_pb2.CreateSessionRequest(parties=list(parties), config=fedwad_pb2.FedWadConfig(**config))


def model_cases() -> list[Case]:
    """Probability flow, Var-RUOT and FedWaD requests, with the default limits."""
    P, L, Q = "SampleProbabilityFlow", "ProbabilityFlowLogLikelihood", "QueryRUOT"
    unknown = "0" * 32
    far = ruot_pb2.RUOTTrajectoriesQuery(times=[1e6])
    return [
        Case(P, "no source", _sample(model=pfode_pb2.ProbabilityFlowModel())),
        Case(P, "covariance not positive definite", _sample(model=_gaussian(
            covariances=np.array([[[1.0, 2.0], [2.0, 1.0]]])))),
        Case(P, "means: one NaN", _sample(model=_gaussian(means=np.array([[np.nan, 0.0]])))),
        Case(P, "num_samples = 0", _sample(num_samples=0)),
        Case(P, "num_samples = 10^7 + 1", _sample(num_samples=10**7 + 1)),
        Case(P, "steps = 2^40", _sample(steps=2**40)),
        Case(P, "sampler = 42 (no such enum value)", _sample(sampler=42)),
        Case(P, "a trajectory of 10^6 steps x 100 samples", _sample(num_samples=100, steps=10**6 - 1,
                                                                   return_trajectory=True)),
        Case(P, "a trained model id that is not one", _sample(model=pfode_pb2.ProbabilityFlowModel(
            trained_model_id="../../etc/passwd"))),
        Case(P, "an unknown (or another token's) trained model", _sample(model=pfode_pb2.ProbabilityFlowModel(
            trained_model_id=unknown))),
        Case(L, "points: dimension 3 for a 2-D model", _likelihood(points=encode(_points(4, d=3)))),
        Case(L, "max_steps = 0", _likelihood(max_steps=0)),
        Case("SubmitJob", "training: steps = 0", _train(steps=0)),
        Case("SubmitJob", "training: steps = 10^6 + 1", _train(steps=10**6 + 1)),
        Case("SubmitJob", "training: hidden = [8192, 8192]", _train(hidden=[8192, 8192])),
        Case("SubmitJob", "Var-RUOT fit: one snapshot", _fit(times=(0.0,))),
        Case("SubmitJob", "Var-RUOT fit: times not increasing", _fit(times=(1.0, 0.5))),
        Case("SubmitJob", "Var-RUOT fit: dt = 1e-5 (10^5 steps)", _fit(dt=1e-5)),
        Case("SubmitJob", "Var-RUOT fit: steps = 10^6 + 1", _fit(steps=10**6 + 1)),
        Case("SubmitJob", "10,001 items", jobs_pb2.SubmitJobRequest(items=[jobs_pb2.JobItem()] * 10_001)),
        Case(Q, "an unknown (or another token's) model id", _query(unknown, action=ruot_pb2.RUOTActionQuery())),
        Case(Q, "no query", _query()),
        Case(Q, "trajectories to t = 10^6 (dt 0.25)", _query(trajectories=far)),
        Case(Q, "trajectories to t = 1e308", _query(trajectories=ruot_pb2.RUOTTrajectoriesQuery(times=[1e308]))),
        Case("ExportRUOTModel", "an unknown model id", ruot_pb2.ExportRUOTModelRequest(model_id=unknown)),
        Case("CreateSession", "one party", _create(parties=("alice",))),
        Case("CreateSession", "rounds = 10^6", _create(rounds=10**6)),
        Case("GetSession", "an unknown session id", fedwad_pb2.GetSessionRequest(session_id="no-such-session")),
    ]


def default_cases() -> list[Case]:
    x = _points(6, seed=1)
    y_bytes = encode(_points(6, seed=2)).data
    uniform = np.full(6, 1 / 6)
    S, E, K = "Sinkhorn", "ExactTransport", "SparsityConstrainedTransport"
    B, D = "SinkhornBatch", "SinkhornDivergence"
    return [
        # Tensors: the codec and the float checks, the same for every field and call.
        Case(S, "x: dtype DTYPE_UNSPECIFIED", _sinkhorn(x=_tensor(x, dtype=0))),
        Case(S, "x: dtype 99 (no such enum value)", _sinkhorn(x=_tensor(x, dtype=99))),
        Case(S, "x: int64 points", _sinkhorn(x=encode(np.arange(12).reshape(6, 2)))),
        Case(S, "y: one byte short", _sinkhorn(y=_tensor(data=y_bytes[:-1]))),
        Case(S, "y: 8 bytes too many", _sinkhorn(y=_tensor(data=y_bytes + bytes(8)))),
        Case(S, "y: shape [-6, -2]", _sinkhorn(y=_tensor(shape=[-6, -2]))),
        Case(S, "y: shape [0, 2^62], no data", _sinkhorn(y=_tensor(shape=[0, 2**62], data=b""))),
        Case(S, "y: 40 dimensions", _sinkhorn(y=_tensor(shape=[0] * 40, data=b""))),
        Case(S, "y: claims 10^9 points, carries 6", _sinkhorn(y=_tensor(shape=[10**9, 2]))),
        Case(S, "x: rank 1", _sinkhorn(x=encode(np.ones(6)))),
        Case(S, "y: empty, shape [0, 2]", _sinkhorn(y=encode(np.ones((0, 2))))),
        Case(S, "x: one NaN", _sinkhorn(x=encode(_with(x, 3, np.nan)))),
        Case(S, "x: one +inf", _sinkhorn(x=encode(_with(x, 3, np.inf)))),
        Case(S, "cost_matrix: one NaN", _sinkhorn(x=None, y=None, cost_matrix=encode(_with(np.ones((4, 5)), 0, np.nan)))),
        # Fields together.
        Case(S, "y: dimension 3, x: dimension 2", _sinkhorn(y=encode(_points(6, d=3)))),
        Case(S, "x, y and cost_matrix together", _sinkhorn(cost_matrix=encode(np.ones((6, 6))))),
        Case(S, "y missing", _sinkhorn(y=None)),
        Case(S, "an empty request", sinkhorn_pb2.SinkhornRequest()),
        Case(S, "a: 5 weights for 6 points", _sinkhorn(a=encode(np.full(5, 0.2)))),
        Case(S, "b: a negative weight", _sinkhorn(b=encode(_with(uniform, 3, -0.1)))),
        Case(S, "a: all zero", _sinkhorn(a=encode(np.zeros(6)))),
        Case(S, "b: total 2, a: total 1 (balanced)", _sinkhorn(b=encode(2 * uniform))),
        # Settings.
        Case(S, "epsilon = 0", _sinkhorn(epsilon=0.0)),
        Case(S, "epsilon = NaN", _sinkhorn(epsilon=float("nan"))),
        Case(S, "epsilon = inf", _sinkhorn(epsilon=float("inf"))),
        Case(S, "threshold = -1", _sinkhorn(threshold=-1.0)),
        Case(S, "max_iterations = 0", _sinkhorn(max_iterations=0)),
        Case(S, "max_iterations = 2^40", _sinkhorn(max_iterations=2**40)),
        Case(S, "reg_m = (-1, 0)", _sinkhorn(reg_m=sinkhorn_pb2.MarginalPenalty(source=-1.0, target=0.0))),
        Case(S, "cost = 42 (no such enum value)", _sinkhorn(cost=42)),
        Case(S, "method = 9 (no such enum value)", _sinkhorn(method=9)),
        Case(S, "method SNS with reg_m", _sinkhorn(method=sinkhorn_pb2.SINKHORN_METHOD_SNS,
                                                   reg_m=sinkhorn_pb2.MarginalPenalty(source=1.0, target=1.0))),
        Case(S, "method SNS with adaptive over-relaxation",
             _sinkhorn(method=sinkhorn_pb2.SINKHORN_METHOD_SNS, overrelaxation=sinkhorn_pb2.OVERRELAXATION_ADAPTIVE)),
        Case(S, "unknown overrelaxation 7", _sinkhorn(overrelaxation=7)),
        Case(S, "scaling_stages -1", _sinkhorn(scaling_stages=-1)),
        Case(S, "method SNS with epsilon scaling", _sinkhorn(method=sinkhorn_pb2.SINKHORN_METHOD_SNS, scaling_stages=2)),
        # Views of the plan.
        Case(S, "plan_top_k = 7 > m = 6", _sinkhorn(plan_top_k=7)),
        Case(S, "plan_top_k = -1", _sinkhorn(plan_top_k=-1)),
        Case(S, "return_barycentric_map with a cost matrix",
             _sinkhorn(x=None, y=None, cost_matrix=encode(np.ones((6, 6))), return_barycentric_map=True)),
        Case(S, "top 6 per row, barycentric map and dense plan",
             _sinkhorn(plan_top_k=6, return_barycentric_map=True, return_plan=True, epsilon=1.0)),
        # Batches and divergences.
        Case(B, "no problems", sinkhorn_pb2.SinkhornBatchRequest()),
        Case(B, "problems[1]: epsilon = 0, problems[2]: plan_top_k = 9",
             sinkhorn_pb2.SinkhornBatchRequest(problems=[_sinkhorn(), _sinkhorn(epsilon=0.0),
                                                         _sinkhorn(plan_top_k=9)])),
        Case(D, "y missing", _divergence(y=None)),
        Case(D, "b: total 2, a: total 1", _divergence(b=encode(2 * uniform))),
        Case(D, "y: dimension 3, x: dimension 2", _divergence(y=encode(_points(6, d=3)))),
        Case(E, "p = 0.5", _exact(p=0.5)),
        Case(E, "p with a cost matrix", _exact(x=None, y=None, cost_matrix=encode(np.ones((6, 6))), p=2.0)),
        Case(E, "p and cost together", _exact(p=2.0, cost=sinkhorn_pb2.COST_FUNCTION_EUCLIDEAN)),
        Case(E, "method SORTING_1D on 2-D points", _exact(method=exact_pb2.EXACT_METHOD_SORTING_1D)),
        Case(E, "10,001 x 6 points (network simplex)", _exact(x=encode(_points(10_001)))),
        Case(E, "points near 1e200 (costs overflow)", _exact(x=encode(x * 1e200))),
        Case(E, "max_iterations = 0", _exact(max_iterations=0)),
        Case(K, "k = 0", _sparsity(k=0)),
        Case(K, "k = 7 > n = 6", _sparsity(k=7)),
        Case(K, "gamma = -1", _sparsity(gamma=-1.0)),
        Case(K, "formulation = 7 (no such enum value)", _sparsity(formulation=7)),
        Case(K, "b: total 2, a: total 1", _sparsity(b=encode(2 * uniform))),
        # Jobs.
        Case("SubmitJob", "no items", jobs_pb2.SubmitJobRequest()),
        Case("SubmitJob", "an item with no request", jobs_pb2.SubmitJobRequest(items=[jobs_pb2.JobItem()])),
        Case("SubmitJob", "one item, epsilon = 0", jobs_pb2.SubmitJobRequest(
            items=[jobs_pb2.JobItem(sinkhorn=_sinkhorn(epsilon=0.0))])),
        Case("ListJobs", "page_size = -1", jobs_pb2.ListJobsRequest(page_size=-1)),
        Case("ListJobs", "state = 17 (no such enum value)", jobs_pb2.ListJobsRequest(state=17)),
        Case("ListJobs", "page_token = \"abc\"", jobs_pb2.ListJobsRequest(page_token="abc")),
        Case("GetJob", "an unknown job id", jobs_pb2.GetJobRequest(job_id="no-such-job")),
    ]


def counted_cases() -> list[Case]:
    S, E, K = "Sinkhorn", "ExactTransport", "SparsityConstrainedTransport"
    x, y = encode(_points(200, seed=1)), encode(_points(150, seed=2))
    return [
        Case(S, "x: 1,001 points", _sinkhorn(x=encode(_points(1001)))),
        Case(K, "cost_matrix: 10 x 1,001", _sparsity(x=None, y=None, cost_matrix=encode(np.ones((10, 1001))))),
        Case(S, "200 x 150 points (30,000 > 10,000): runs online", _sinkhorn(x=x, y=y, epsilon=0.5)),
        Case(S, "the same, method KERNEL", _sinkhorn(x=x, y=y, method=sinkhorn_pb2.SINKHORN_METHOD_KERNEL)),
        Case(S, "the same, method SNS", _sinkhorn(x=x, y=y, method=sinkhorn_pb2.SINKHORN_METHOD_SNS)),
        Case(S, "the same, return_plan", _sinkhorn(x=x, y=y, return_plan=True)),
        Case(S, "the same, top 5 per row and barycentric map: online",
             _sinkhorn(x=x, y=y, epsilon=0.5, plan_top_k=5, return_barycentric_map=True)),
        Case(S, "cost_matrix: 200 x 150", _sinkhorn(x=None, y=None, cost_matrix=encode(np.ones((200, 150))))),
        Case(K, "200 x 150 points", _sparsity(x=x, y=y)),
        Case(E, "200 x 150 points, p = 3 (dense cost)", _exact(x=x, y=y, p=3.0)),
        Case(E, "200 x 150 points, p = 2 (costs computed lazily)", _exact(x=x, y=y)),
    ]


def budget_cases() -> list[Case]:
    S, E, K = "Sinkhorn", "ExactTransport", "SparsityConstrainedTransport"
    cost = encode(np.random.default_rng(0).random((200, 200)))
    line = encode(np.linspace(0, 1, 20_000)[:, None])
    return [
        Case(S, "cost_matrix: 200 x 200 float64", _sinkhorn(x=None, y=None, cost_matrix=cost)),
        Case(K, "cost_matrix: 200 x 200 float64", _sparsity(x=None, y=None, cost_matrix=cost)),
        Case(E, "cost_matrix: 250 x 250 float64", _exact(
            x=None, y=None, cost_matrix=encode(np.random.default_rng(0).random((250, 250))))),
        Case(S, "20,000 x 20,000 points (too large even online)", _sinkhorn(x=line, y=line)),
        Case(S, "20 x 20 points", _sinkhorn(x=encode(_points(20)), y=encode(_points(20, seed=3)), epsilon=1.0)),
    ]


def small_cases() -> list[Case]:
    P, L, Q = "SampleProbabilityFlow", "ProbabilityFlowLogLikelihood", "QueryRUOT"
    return [
        Case(P, "num_samples = 101", _sample(num_samples=101)),
        Case(P, "steps = 51", _sample(steps=51)),
        Case(P, "a trajectory of 41 times x 30 samples x 2", _sample(num_samples=30, steps=40,
                                                                     return_trajectory=True)),
        Case(L, "points: 101", _likelihood(points=encode(_points(101)))),
        Case("SubmitJob", "training: steps = 101", _train(steps=101)),
        Case("SubmitJob", "Var-RUOT fit: report_every = 101", _fit(report_every=101)),
        Case("SubmitJob", "4 items", jobs_pb2.SubmitJobRequest(items=[jobs_pb2.JobItem(sinkhorn=_sinkhorn())] * 4)),
        Case("SinkhornBatch", "4 problems", sinkhorn_pb2.SinkhornBatchRequest(problems=[_sinkhorn()] * 4)),
        Case(Q, "trajectories to t = 20 (81 steps of dt 0.25)", _query(
            trajectories=ruot_pb2.RUOTTrajectoriesQuery(times=[20.0]))),
        Case(Q, "mass of 100 particles to t = 5 (21 steps)", _query(mass=ruot_pb2.RUOTMassQuery(
            times=[5.0], initial_points=encode(_points(100))))),
        Case("CreateSession", "rounds = 51", _create(rounds=51)),
    ]


SMALL = dict(max_samples=100, max_iterations=50, max_training_steps=100, max_trajectory_steps=40,
             max_trajectory_elements=2_000, max_job_items=3)

SECTIONS = [
    Section("Default limits", {}, default_cases() + model_cases()),
    Section("max_points = 1,000 and max_dense_elements = 10,000",
            dict(max_points=1000, max_dense_elements=10_000), counted_cases()),
    Section("max_request_memory_bytes = 1 MiB", dict(max_request_memory_bytes=1 * MIB), budget_cases()),
    Section("max_samples = 100, max_iterations = 50, max_training_steps = 100, max_trajectory_steps = 40, "
            "max_trajectory_elements = 2,000, max_job_items = 3", SMALL, small_cases()),
]

SOLVER_RPCS = ("Sinkhorn", "SinkhornBatch", "SinkhornDivergence", "ExactTransport", "SparsityConstrainedTransport",
               "SampleProbabilityFlow", "ProbabilityFlowLogLikelihood", "QueryRUOT", "ExportRUOTModel")
FEDWAD_RPCS = ("CreateSession", "GetSession", "CancelSession")


def method(channel, rpc: str) -> Callable:
    """The stub method for `rpc` on a channel (sync or aio)."""
    if rpc in SOLVER_RPCS:
        stub = service_pb2_grpc.SolverServiceStub(channel)
    elif rpc in FEDWAD_RPCS:
        stub = fedwad_pb2_grpc.FedWadServiceStub(channel)
    else:
        stub = jobs_pb2_grpc.JobServiceStub(channel)
    return getattr(stub, rpc)


def row(case: Case, code: str, field: str, message: str) -> str:
    def cell(text):
        return text.replace("|", "\\|").replace("\n", " ")

    return f"| {case.rpc} | {cell(case.what)} | {code} | {cell(field)} | {cell(message)} |"


def _views(reply) -> str:
    """The plan's views in a Sinkhorn reply, by their shapes."""
    shown = []
    for name in ("plan", "sparse_plan", "barycentric_map"):
        if reply.DESCRIPTOR.name == "SinkhornResponse" and reply.HasField(name):
            value = getattr(reply, name)
            if name == "sparse_plan":
                shown.append(f"sparse_plan {list(value.values.shape)[0]} entries of {list(value.shape)}")
            else:
                shown.append(f"{name} {list(value.shape)}")
    return "; " + ", ".join(shown) if shown else ""


def summarize_ok(reply) -> str:
    diagnostics = getattr(reply, "diagnostics", None)
    if diagnostics is not None and diagnostics.ByteSize():
        iterations = f" ({diagnostics.iterations} iterations)" if diagnostics.iterations else ""
        return diagnostics.message + iterations + _views(reply)
    return "accepted"


def answer_row(case: Case, reply=None, error=None) -> str:
    """`error`: (code name, details string, trailing metadata) of a failed call."""
    if error is None:
        return row(case, "OK", "", summarize_ok(reply))
    code, details, trailing = error
    fields = []
    for key, value in trailing or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                bad_request = error_details_pb2.BadRequest()
                if detail.Unpack(bad_request):
                    fields = [(v.field, v.description) for v in bad_request.field_violations]
    if fields:
        return row(case, code, ", ".join(f for f, _ in fields), "; ".join(d for _, d in fields))
    return row(case, code, "", details)


HEADER = ["| call | bad input | code | field | message |", "| --- | --- | --- | --- | --- |"]


def ask_sync(channel, case: Case) -> str:
    """One row, asked through a synchronous channel (the doc test uses this)."""
    try:
        reply = method(channel, case.rpc)(case.request, timeout=60)
    except grpc.RpcError as error:
        return answer_row(case, error=(error.code().name, error.details(), error.trailing_metadata()))
    return answer_row(case, reply)


async def _ask(channel, case: Case) -> str:
    try:
        reply = await method(channel, case.rpc)(case.request, timeout=120)
    except grpc.aio.AioRpcError as error:
        return answer_row(case, error=(error.code().name, error.details(), tuple(error.trailing_metadata())))
    return answer_row(case, reply)


async def _section(section: Section) -> list[str]:
    from monge.server.app import start
    from monge.server.config import ServerConfig

    with tempfile.TemporaryDirectory(prefix="monge-bad-input-") as data_dir:
        config = ServerConfig(host="127.0.0.1", port=0, workers=1, data_dir=data_dir, grace_seconds=1.0,
                              **section.settings)
        running = await start(config)
        try:
            async with grpc.aio.insecure_channel(running.target) as channel:
                return [await _ask(channel, case) for case in section.cases]
        finally:
            await running.stop(1.0)


def main() -> int:
    logging.basicConfig(level=logging.WARNING)
    for section in SECTIONS:
        rows = asyncio.run(_section(section))
        print(f"### {section.title}\n")
        print("\n".join(HEADER + rows))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
