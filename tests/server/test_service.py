"""The SolverService's handlers: bytes in, decoded and validated once, bytes out."""

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from monge.client import requests
from monge.server.calls import sinkhorn as sinkhorn_call
from monge.v1 import sinkhorn_pb2


def raw_call(target, method, payload: bytes, timeout=30):
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(f"/monge.v1.SolverService/{method}")  # bytes in, bytes out
        return call(payload, timeout=timeout)


def test_a_payload_that_is_no_message_is_invalid_argument_on_request(server):
    with pytest.raises(grpc.RpcError) as caught:
        raw_call(server.target, "Sinkhorn", b"\xff\xff\xff\xff not a protobuf")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(caught.value)
    bad_request = error_details_pb2.BadRequest()
    status.details[0].Unpack(bad_request)
    assert bad_request.field_violations[0].field == "request"
    assert "monge.v1.SinkhornRequest" in bad_request.field_violations[0].description


def test_the_server_parses_a_sinkhorn_request_once_and_answers_the_workers_bytes(server, monkeypatch):
    """The batcher keys on the servicer's parse instead of parsing again (the worker, a
    process of its own, parses the bytes once there)."""
    parses = []
    real_parse = sinkhorn_call.parse

    def counted(request, config):
        parses.append(request.ByteSize())
        return real_parse(request, config)

    monkeypatch.setattr(sinkhorn_call, "parse", counted)
    rng = np.random.default_rng(0)
    request = requests.sinkhorn(rng.normal(size=(12, 2)), rng.normal(size=(10, 2)), epsilon=0.1)
    reply = sinkhorn_pb2.SinkhornResponse.FromString(raw_call(server.target, "Sinkhorn", request.SerializeToString()))
    assert reply.diagnostics.converged
    assert len(parses) == 1
