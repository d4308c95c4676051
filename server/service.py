"""The SolverService servicer: thin handlers that validate, hand the call to a worker,
and return its reply.

Solver RPCs are registered bytes in, bytes out (`add_to_server`): the handler decodes
and validates the request once, here, so a bad request costs no queue slot; the parsed
call goes to the dynamic batcher, the request's bytes to the worker process (which parses
them once there), and the worker's reply bytes go back to the caller untouched. The
other RPCs use the generated (de)serialisers. Exceptions become statuses in
`errors.to_status`, applied by the `errors.rpc` decorator. Each call carries the
caller's identity (from its token), so that a trained model answers only its owner.
"""

from __future__ import annotations

import asyncio
import importlib.metadata

import grpc
from google.protobuf.message import DecodeError

from monge.server import priority
from monge.server.auth import Authenticator
from monge.server.config import ServerConfig
from monge.server.errors import InvalidArgument, rpc
from monge.server.registry import CALLS
from monge.v1 import ruot_pb2, service_pb2, service_pb2_grpc

SERVICE = "monge.v1.SolverService"


class SolverServicer(service_pb2_grpc.SolverServiceServicer):
    def __init__(self, config: ServerConfig, executor, authenticator: Authenticator | None = None):
        self._config = config
        self._executor = executor
        self._auth = authenticator or Authenticator({})

    async def call(self, kind: str, payload: bytes, context) -> bytes:
        """Decode and validate once, run on a worker, answer its reply bytes as they are.
        Cancellation reaches the worker."""
        solver = CALLS[kind]
        try:
            request = solver.request_type.FromString(payload)
        except DecodeError as error:
            raise InvalidArgument.field(
                "request", f"is not a valid {solver.request_type.DESCRIPTOR.full_name} message ({error})") from None
        owner = self._auth.owner(context)
        parsed = solver.parse(request, self._config, owner)
        level = priority.level(request.priority, self._config, default=priority.INTERACTIVE)
        return await self._executor.run(kind, payload, None, owner, parsed=parsed, priority=level)

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


def add_to_server(servicer: SolverServicer, server) -> None:
    """Register the SolverService: solver RPCs bytes in, bytes out (see the module's
    docstring), the others with the generated (de)serialisers."""
    handlers = {call.rpc: grpc.unary_unary_rpc_method_handler(getattr(servicer, call.rpc))
                for call in CALLS.values() if call.rpc}
    handlers["GetServerInfo"] = grpc.unary_unary_rpc_method_handler(
        servicer.GetServerInfo, request_deserializer=service_pb2.GetServerInfoRequest.FromString,
        response_serializer=service_pb2.GetServerInfoResponse.SerializeToString)
    handlers["ExportRUOTModel"] = grpc.unary_unary_rpc_method_handler(
        servicer.ExportRUOTModel, request_deserializer=ruot_pb2.ExportRUOTModelRequest.FromString,
        response_serializer=ruot_pb2.ExportRUOTModelResponse.SerializeToString)
    methods = set(service_pb2.DESCRIPTOR.services_by_name["SolverService"].methods_by_name)
    if set(handlers) != methods:  # a new RPC in the schema needs a handler here
        raise RuntimeError(f"SolverService handlers {sorted(handlers)} differ from the schema's {sorted(methods)}")
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_registered_method_handlers(SERVICE, handlers)
