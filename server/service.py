"""The SolverService servicer: thin handlers that validate, hand the call to a worker,
and return its reply.

Validation happens here first so a bad request costs no queue slot; the worker parses
the same bytes again (cheap) and runs the solver. Exceptions become statuses in
`errors.to_status`, applied by the `errors.rpc` decorator. Each call carries the
caller's identity (from its token), so that a trained model answers only its owner.
"""

from __future__ import annotations

import asyncio
import importlib.metadata

from monge.server.auth import Authenticator
from monge.server.config import ServerConfig
from monge.server.errors import rpc
from monge.server.registry import CALLS
from monge.v1 import service_pb2, service_pb2_grpc


class SolverServicer(service_pb2_grpc.SolverServiceServicer):
    def __init__(self, config: ServerConfig, executor, authenticator: Authenticator | None = None):
        self._config = config
        self._executor = executor
        self._auth = authenticator or Authenticator({})

    async def call(self, kind: str, request, context):
        """Validate, run on a worker, decode the reply. Cancellation reaches the worker."""
        solver = CALLS[kind]
        owner = self._auth.owner(context)
        solver.parse(request, self._config, owner)
        reply = await self._executor.run(kind, request.SerializeToString(), None, owner)
        return solver.response_type.FromString(reply)

    @rpc
    async def GetServerInfo(self, request, context):
        workers = [
            service_pb2.Worker(
                index=w["index"], pid=w.get("pid") or 0, busy=w["busy"], tasks_done=w["tasks_done"],
                address=w.get("address", "local"),
                devices=[service_pb2.Device(**d) for d in w["devices"]],
            )
            for w in self._executor.describe()
        ]
        devices = [d for w in workers for d in w.devices]
        return service_pb2.GetServerInfoResponse(
            version=importlib.metadata.version("monge"),
            jax_version=importlib.metadata.version("jax"),
            backend=devices[0].platform if devices else "",
            devices=devices,
            solvers=[*(c.rpc for c in CALLS.values() if c.rpc), "FedWad"],
            max_message_bytes=self._config.max_message_bytes,
            workers=workers,
            cluster=self._config.cluster or "",
        )

    @rpc
    async def Sinkhorn(self, request, context):
        return await self.call("sinkhorn", request, context)

    @rpc
    async def SinkhornBatch(self, request, context):
        return await self.call("sinkhorn_batch_rpc", request, context)

    @rpc
    async def SinkhornDivergence(self, request, context):
        return await self.call("sinkhorn_divergence", request, context)

    @rpc
    async def ExactTransport(self, request, context):
        return await self.call("exact_transport", request, context)

    @rpc
    async def SparsityConstrainedTransport(self, request, context):
        return await self.call("sparsity_constrained", request, context)

    @rpc
    async def SampleProbabilityFlow(self, request, context):
        return await self.call("sample_probability_flow", request, context)

    @rpc
    async def ProbabilityFlowLogLikelihood(self, request, context):
        return await self.call("probability_flow_log_likelihood", request, context)

    @rpc
    async def QueryRUOT(self, request, context):
        return await self.call("ruot_query", request, context)

    @rpc
    async def ExportRUOTModel(self, request, context):
        from monge.server.calls.ruot_query import export

        return await asyncio.to_thread(export, request, self._config, self._auth.owner(context))
