"""Prometheus metrics, served on their own port (`monge serve --metrics-port`).

Each server owns a registry (tests run several servers in one process). What is
measured: requests by method and status code (an interceptor), time in the queue and
on a worker by solver call, batch sizes, XLA compilations on the workers, and at
scrape time the queue depth, open job watchers and jobs by state.
"""

from __future__ import annotations

import inspect

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

_SECONDS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
_BATCH = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("monge_requests", "RPCs handled, by method and status code",
                                ["method", "code"], registry=r)
        self.queue_seconds = Histogram("monge_queue_seconds", "Time a solver call waited for a worker",
                                       ["solver"], buckets=_SECONDS, registry=r)
        self.compute_seconds = Histogram("monge_compute_seconds", "Time a solver call ran on a worker",
                                         ["solver"], buckets=_SECONDS, registry=r)
        self.batch_size = Histogram("monge_batch_size", "Sinkhorn requests merged per worker call",
                                    buckets=_BATCH, registry=r)
        self.compiles = Counter("monge_xla_compiles", "XLA compilations on the workers", ["solver"],
                                registry=r)
        self.queue_depth = Gauge("monge_queue_depth", "Solver calls waiting for a worker", registry=r)
        self.job_watchers = Gauge("monge_job_watchers", "Open WatchJob and WaitJob calls", registry=r)
        self._http = None

    def watch(self, executor, jobs) -> None:
        """Read the queue depth and job counts when Prometheus scrapes."""
        self.queue_depth.set_function(lambda: executor.queue_depth)
        self.job_watchers.set_function(lambda: jobs.watcher_count)
        self.registry.register(_JobStates(jobs))
        workers = getattr(executor, "inner", executor)  # behind the batcher, if any
        if hasattr(workers, "on_task_done"):
            workers.on_task_done = self.task_done

    def task_done(self, solver: str, queued: float, computed: float, outcome) -> None:
        self.queue_seconds.labels(solver).observe(max(queued, 0.0))
        self.compute_seconds.labels(solver).observe(max(computed, 0.0))
        if getattr(outcome, "compiles", 0):
            self.compiles.labels(solver).inc(outcome.compiles)

    def serve(self, host: str, port: int) -> int:
        """Start the HTTP endpoint; returns the bound port (0 picks a free one)."""
        self._http, _ = start_http_server(port, addr=host, registry=self.registry)
        return self._http.server_address[1]

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def interceptor(self) -> grpc.aio.ServerInterceptor:
        return _RequestCounter(self.requests)


class _JobStates:
    """A collector: jobs by state, counted in the job database at scrape time."""

    def __init__(self, jobs):
        self._jobs = jobs

    def collect(self):
        family = GaugeMetricFamily("monge_jobs", "Jobs in the database, by state", labels=["state"])
        for state, count in self._jobs.count_by_state().items():
            family.add_metric([state], count)
        yield family


class _RequestCounter(grpc.aio.ServerInterceptor):
    """Counts every RPC once it ends, with the status code it ended with."""

    def __init__(self, counter: Counter):
        self._counter = counter

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method.rsplit("/", 1)[-1]
        count = self._counter

        def record(context, failed: bool):
            code = context.code()
            if code is None:
                code = grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK
            elif isinstance(code, int):
                code = grpc.StatusCode(next(c for c in grpc.StatusCode if c.value[0] == code))
            count.labels(method, code.name).inc()

        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def unary_unary(request, context):
                try:
                    response = await inner(request, context)
                except BaseException:
                    record(context, True)
                    raise
                record(context, False)
                return response

            return grpc.unary_unary_rpc_method_handler(
                unary_unary, handler.request_deserializer, handler.response_serializer)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                _streaming(handler.unary_stream, record), handler.request_deserializer,
                handler.response_serializer)
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                _streaming(handler.stream_stream, record), handler.request_deserializer,
                handler.response_serializer)
        return handler  # stream-unary: none of ours


def _streaming(inner, record):
    if inspect.isasyncgenfunction(inner):
        async def generate(request, context):
            try:
                async for response in inner(request, context):
                    yield response
            except BaseException:
                record(context, True)
                raise
            record(context, False)

        return generate

    async def write(request, context):  # a handler that answers with context.write
        try:
            await inner(request, context)
        except BaseException:
            record(context, True)
            raise
        record(context, False)

    return write


__all__ = ["Metrics"]
