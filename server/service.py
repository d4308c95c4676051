"""The SolverService servicer: thin handlers that decode, validate, solve, encode.

Solver calls run in a thread pool so the event loop keeps serving health checks and
other calls while a device works. Exceptions become statuses in `errors.to_status`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import importlib.metadata
import threading

import grpc

from monge.server import sinkhorn_call
from monge.server.config import ServerConfig
from monge.server.errors import rpc as _rpc
from monge.v1 import service_pb2, service_pb2_grpc

SOLVERS = ("Sinkhorn", "FedWad")


class SolverServicer(service_pb2_grpc.SolverServiceServicer):
    def __init__(self, config: ServerConfig):
        self._config = config
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=config.solver_threads, thread_name_prefix="monge-solver"
        )

    async def _off_loop(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _solve(self, run, call):
        """Run a chunked solve off the loop; a cancelled or expired call stops it."""
        stop = threading.Event()
        try:
            return await self._off_loop(run, call, stop)
        except asyncio.CancelledError:
            stop.set()  # the worker thread stops at its next chunk boundary
            raise

    def shutdown(self):
        self._executor.shutdown(wait=True, cancel_futures=True)

    @_rpc
    async def GetServerInfo(self, request, context):
        import jax

        devices = [
            service_pb2.Device(id=d.id, platform=d.platform, kind=d.device_kind)
            for d in jax.devices()
        ]
        return service_pb2.GetServerInfoResponse(
            version=importlib.metadata.version("monge"),
            jax_version=jax.__version__,
            backend=jax.default_backend(),
            devices=devices,
            solvers=SOLVERS,
            max_message_bytes=self._config.max_message_bytes,
        )

    @_rpc
    async def Sinkhorn(self, request, context):
        call = sinkhorn_call.parse(request, self._config)
        result = await self._solve(sinkhorn_call.run, call)
        return sinkhorn_call.encode_response(result)
