import grpc
import jax
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc


def test_info_reports_backend_and_devices(client):
    info = client.info()
    assert info.backend == jax.default_backend()
    assert [d.id for d in info.devices] == [d.id for d in jax.devices()]
    assert "Sinkhorn" in info.solvers
    assert info.version and info.jax_version == jax.__version__


def test_health_and_reflection(server):
    with grpc.insecure_channel(server.target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", "monge.v1.SolverService"):
            reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        reply = next(iter(stub.ServerReflectionInfo(iter([request]), timeout=5)))
        names = {s.name for s in reply.list_services_response.service}
        assert {"monge.v1.SolverService", "grpc.health.v1.Health"} <= names
