"""Build, start and stop the gRPC server.

`serve(config)` runs until SIGTERM/SIGINT: health turns NOT_SERVING at once, new calls
are refused, in-flight calls get `grace_seconds` to finish. Tests use `start(config)`
directly, which returns a `RunningServer` bound to an ephemeral port.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from monge.server.runtime.batching import DynamicBatcher
from monge.server.auth import Authenticator, TokenInterceptor
from monge.server.config import ServerConfig
from monge.server.data_dir import DataDirLock
from monge.server.runtime.warmup import warm_up
from monge.server.fedwad_service import FedWadLimits, FedWadServicer
from monge.server.jobs.manager import JobManager
from monge.server.metrics import Metrics
from monge.server.jobs.service import JobServicer
from monge.server.jobs.store import JobStore
from monge.server.service import SolverServicer, add_to_server
from monge.server.runtime.pool import WorkerPool
from monge.v1 import fedwad_pb2, fedwad_pb2_grpc, jobs_pb2, jobs_pb2_grpc, service_pb2

log = logging.getLogger("monge.server")
SERVICE_NAMES = (
    service_pb2.DESCRIPTOR.services_by_name["SolverService"].full_name,
    jobs_pb2.DESCRIPTOR.services_by_name["JobService"].full_name,
    fedwad_pb2.DESCRIPTOR.services_by_name["FedWadService"].full_name,
)


@dataclasses.dataclass
class RunningServer:
    server: grpc.aio.Server
    health: health.aio.HealthServicer
    servicer: SolverServicer
    executor: object
    jobs: JobManager
    port: int
    config: ServerConfig
    fedwad: FedWadServicer | None = None
    metrics: Metrics | None = None
    metrics_port: int | None = None
    data_dir_lock: DataDirLock | None = None

    @property
    def target(self) -> str:
        host = self.config.host
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    async def stop(self, grace: float | None = None):
        """NOT_SERVING first, so load balancers drain us, then let calls finish."""
        await self.health.enter_graceful_shutdown()
        if self.fedwad is not None:
            await self.fedwad.close()  # its parties get ABORTED now, not after the grace
        await self.server.stop(self.config.grace_seconds if grace is None else grace)
        await self.jobs.close()
        await self.executor.close()
        if self.metrics is not None:
            self.metrics.close()
        if self.data_dir_lock is not None:
            self.data_dir_lock.release()


def make_executor(config: ServerConfig, on_batch=None):
    """Local worker processes, or a Dask cluster when one is named; behind the dynamic
    batcher unless batching is off (max_batch_size 1)."""
    if config.cluster:
        from monge.server.runtime.dask_executor import DaskExecutor

        executor = DaskExecutor(config, cache_dir=config.cache_dir)
    else:
        executor = WorkerPool(config, workers=config.workers, queue_limit=config.queue_limit,
                              max_attempts=config.max_attempts, cache_dir=config.cache_dir)
    if config.max_batch_size == 1:
        return executor
    return DynamicBatcher(executor, config, max_batch=config.max_batch_size,
                          max_delay=config.max_batch_delay_seconds, on_batch=on_batch)


def _server_credentials(config: ServerConfig) -> grpc.ServerCredentials | None:
    if not config.tls:
        return None
    with open(config.tls_key, "rb") as key, open(config.tls_cert, "rb") as cert:
        return grpc.ssl_server_credentials([(key.read(), cert.read())])


async def start(config: ServerConfig, *, interceptors=()) -> RunningServer:
    """`interceptors`: grpc.aio server interceptors (tests use one to record requests);
    they run after the token check."""
    authenticator = Authenticator.from_config(config)  # a bad token file fails before anything starts
    credentials = _server_credentials(config)
    address = f"[{config.host}]:{config.port}" if ":" in config.host else f"{config.host}:{config.port}"
    # Before anything reads the data dir: a second server there would run its jobs too.
    lock = DataDirLock(config.data_dir).acquire(address)
    try:
        return await _start(config, interceptors, authenticator, credentials, address, lock)
    except BaseException:
        lock.release()
        raise


async def _start(config, interceptors, authenticator, credentials, address, lock) -> RunningServer:
    metrics = Metrics()
    executor = make_executor(config, on_batch=metrics.batch_size.observe)
    await executor.start()
    options = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    if authenticator.enabled:
        interceptors = (TokenInterceptor(authenticator), *interceptors)
    server = grpc.aio.server(options=options, interceptors=(metrics.interceptor(), *interceptors))
    servicer = SolverServicer(config, executor, authenticator)
    add_to_server(servicer, server)
    jobs = JobManager(JobStore(config.data_dir), executor, config,
                      retention_seconds=config.job_retention_seconds,
                      max_unfinished_jobs=config.max_unfinished_jobs,
                      max_jobs_per_owner=config.max_jobs_per_owner)
    await jobs.start()
    jobs_pb2_grpc.add_JobServiceServicer_to_server(JobServicer(jobs, authenticator), server)
    fedwad = FedWadServicer(FedWadLimits.from_config(config))
    fedwad_pb2_grpc.add_FedWadServiceServicer_to_server(fedwad, server)

    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    if credentials is None:
        port = server.add_insecure_port(address)
    else:
        port = server.add_secure_port(address, credentials)
    if port == 0:
        raise OSError(f"could not bind {address}")
    metrics.watch(executor, jobs)
    metrics_port = None
    if config.metrics_port is not None:
        metrics_port = metrics.serve(config.metrics_host, config.metrics_port)
    if config.warmup:
        await warm_up(executor, config.warmup)  # before any call is taken
    await server.start()
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    running = RunningServer(server, health_servicer, servicer, executor, jobs, port, config, fedwad=fedwad,
                            metrics=metrics, metrics_port=metrics_port, data_dir_lock=lock)
    lock.describe(running.target)
    return running


async def serve(config: ServerConfig) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    running = await start(config)
    workers = running.executor.describe()
    devices = ", ".join(f"{d['platform']}:{d['id']}" for w in workers for d in w["devices"])
    log.info("monge serving on %s with %d worker(s) on %s", running.target, len(workers), devices)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down: health NOT_SERVING, %.0f s for in-flight calls", config.grace_seconds)
    await running.stop()
    log.info("stopped")
