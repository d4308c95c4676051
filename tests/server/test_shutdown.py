"""Graceful shutdown: health goes NOT_SERVING at once and in-flight calls finish."""

import threading
import time

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from monge.client import Client


def test_in_flight_call_finishes_and_health_drains(make_server, rng):
    running = make_server(grace_seconds=30.0)
    x, y = rng.normal(size=(60, 2)), rng.normal(size=(60, 2)) + 1
    result = {}

    def long_call():
        with Client(running.target) as c:
            result["r"] = c.sinkhorn(x, y, epsilon=0.05, threshold=1e-14, max_iterations=6_000)

    caller = threading.Thread(target=long_call)
    caller.start()
    time.sleep(1.0)  # the call is in flight (compile, then thousands of iterations)
    with grpc.insecure_channel(running.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        stopping = threading.Thread(target=running.run, args=(running.running.stop(30.0),))
        stopping.start()
        time.sleep(0.3)
        try:
            status = health.Check(health_pb2.HealthCheckRequest(), timeout=2).status
            assert status == health_pb2.HealthCheckResponse.NOT_SERVING
        except grpc.RpcError as error:  # or already refusing new calls
            assert error.code() == grpc.StatusCode.UNAVAILABLE
    caller.join(60)
    stopping.join(60)
    # It ran to its iteration cap: the shutdown did not cut it short.
    assert result["r"].iterations == 6_000 and np.isfinite(result["r"].cost)
