"""The solver calls the server offers, by name: how to parse, run and encode each.

Unary RPCs, job items and workers (local processes or Dask) all go through this table,
so a solver family is wired once. The name is the field of `JobItem.request` for calls
that are job items (but "sinkhorn_batch_rpc", the JobItem field `sinkhorn_batch`: the
short name is the dynamic batcher's worker kind; `jobs.call_name`); the others (unary
only) have names of their own.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from monge.server.auth import ANONYMOUS
from monge.v1 import exact_pb2, pfode_pb2, ruot_pb2, sinkhorn_pb2, sparsity_constrained_pb2


@dataclasses.dataclass(frozen=True)
class SolverCall:
    """`module` defines parse(request, config) -> call, run(call, stop, progress) -> result
    and encode_response(result) -> response; `rpc` is the unary method's name, or None
    for a call offered only as a job item. `owned`: the call reads or stores trained
    models, which belong to the caller that trained them, so its parse also takes the
    caller's identity (`owner=`)."""

    name: str
    rpc: str | None
    request_type: Any
    response_type: Any
    module: str
    owned: bool = False

    def load(self):
        return importlib.import_module(self.module)

    def parse(self, request, config, owner: str = ANONYMOUS):
        if self.owned:
            return self.load().parse(request, config, owner=owner)
        return self.load().parse(request, config)


CALLS: dict[str, SolverCall] = {
    call.name: call
    for call in (
        SolverCall("sinkhorn", "Sinkhorn", sinkhorn_pb2.SinkhornRequest, sinkhorn_pb2.SinkhornResponse,
                   "monge.server.calls.sinkhorn"),
        SolverCall("sinkhorn_batch_rpc", "SinkhornBatch", sinkhorn_pb2.SinkhornBatchRequest,
                   sinkhorn_pb2.SinkhornBatchResponse, "monge.server.calls.sinkhorn_batch"),
        SolverCall("sinkhorn_divergence", "SinkhornDivergence", sinkhorn_pb2.SinkhornDivergenceRequest,
                   sinkhorn_pb2.SinkhornDivergenceResponse, "monge.server.calls.divergence"),
        SolverCall("exact_transport", "ExactTransport", exact_pb2.ExactTransportRequest,
                   exact_pb2.ExactTransportResponse, "monge.server.calls.exact"),
        SolverCall("sparsity_constrained", "SparsityConstrainedTransport",
                   sparsity_constrained_pb2.SparsityConstrainedTransportRequest,
                   sparsity_constrained_pb2.SparsityConstrainedTransportResponse,
                   "monge.server.calls.sparsity"),
        SolverCall("sample_probability_flow", "SampleProbabilityFlow", pfode_pb2.SampleProbabilityFlowRequest,
                   pfode_pb2.SampleProbabilityFlowResponse, "monge.server.calls.pfode_sample", owned=True),
        SolverCall("probability_flow_log_likelihood", "ProbabilityFlowLogLikelihood",
                   pfode_pb2.ProbabilityFlowLogLikelihoodRequest, pfode_pb2.ProbabilityFlowLogLikelihoodResponse,
                   "monge.server.calls.pfode_likelihood", owned=True),
        SolverCall("train_score_model", None, pfode_pb2.TrainScoreModelRequest, pfode_pb2.TrainScoreModelResponse,
                   "monge.server.calls.pfode_train", owned=True),
        SolverCall("ruot_fit", None, ruot_pb2.RUOTFitRequest, ruot_pb2.RUOTFitResponse, "monge.server.calls.ruot_fit",
                   owned=True),
        SolverCall("ruot_query", "QueryRUOT", ruot_pb2.QueryRUOTRequest, ruot_pb2.QueryRUOTResponse,
                   "monge.server.calls.ruot_query", owned=True),
    )
}
