"""Every malformed request answers INVALID_ARGUMENT with a BadRequest naming the field."""

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from monge.client import InvalidArgumentError
from monge.v1.codec import encode
from monge.v1 import service_pb2_grpc, sinkhorn_pb2, tensor_pb2


@pytest.fixture
def stub(server):
    with grpc.insecure_channel(server.target) as channel:
        yield service_pb2_grpc.SolverServiceStub(channel)


def _points(rng, n=6, d=2):
    return rng.normal(size=(n, d))


def _fails_on(client, field, **kwargs):
    with pytest.raises(InvalidArgumentError) as caught:
        client.sinkhorn(**kwargs)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in [v.field for v in caught.value.violations], caught.value
    return caught.value


def test_dimension_mismatch(client, rng):
    _fails_on(client, "y", x=_points(rng, d=2), y=_points(rng, d=3))


def test_weights_length_mismatch(client, rng):
    _fails_on(client, "a", x=_points(rng), y=_points(rng), a=np.full(5, 0.2))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_points(client, rng, bad):
    x = _points(rng)
    x[2, 1] = bad
    error = _fails_on(client, "x", x=x, y=_points(rng))
    assert "NaN or infinite" in error.violations[0].description


def test_non_finite_cost_matrix(client, rng):
    cost = rng.random((4, 5))
    cost[0, 0] = np.nan
    _fails_on(client, "cost_matrix", cost_matrix=cost)


def test_negative_weights(client, rng):
    b = np.full(6, 1 / 6)
    b[3] = -0.1
    _fails_on(client, "b", x=_points(rng), y=_points(rng), b=b)


def test_zero_total_mass(client, rng):
    _fails_on(client, "a", x=_points(rng), y=_points(rng), a=np.zeros(6))


@pytest.mark.parametrize("epsilon", [0.0, -1.0, float("nan"), float("inf")])
def test_epsilon_must_be_positive(client, rng, epsilon):
    _fails_on(client, "epsilon", x=_points(rng), y=_points(rng), epsilon=epsilon)


@pytest.mark.parametrize("field,kwargs", [
    ("threshold", dict(threshold=0.0)),
    ("max_iterations", dict(max_iterations=0)),
    ("reg_m.source", dict(reg_m=(-1.0, 1.0))),
    ("reg_m.target", dict(reg_m=(1.0, 0.0))),
])
def test_impossible_parameters(client, rng, field, kwargs):
    _fails_on(client, field, x=_points(rng), y=_points(rng), **kwargs)


def test_several_bad_fields_are_all_named(client, rng):
    x = _points(rng)
    x[0, 0] = np.nan
    error = _fails_on(client, "x", x=x, y=_points(rng), epsilon=-1.0, a=-np.ones(6))
    assert {"x"} <= {v.field for v in error.violations}


def _call(stub, request):
    with pytest.raises(grpc.RpcError) as caught:
        stub.Sinkhorn(request, timeout=30)
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(error)
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    assert "Traceback" not in error.details()
    return {v.field: v.description for v in bad_request.field_violations}


@pytest.mark.parametrize("dtype", [tensor_pb2.DTYPE_UNSPECIFIED, 99])
def test_unknown_dtype(stub, rng, dtype):
    x = encode(_points(rng))
    x.dtype = dtype
    fields = _call(stub, sinkhorn_pb2.SinkhornRequest(x=x, y=encode(_points(rng))))
    assert "dtype" in fields["x"]


def test_integer_points_are_refused(stub):
    x = encode(np.arange(12, dtype=np.int64).reshape(6, 2))
    fields = _call(stub, sinkhorn_pb2.SinkhornRequest(x=x, y=x))
    assert "float32 or float64" in fields["x"]


@pytest.mark.parametrize("cut", [1, 8, -8])
def test_byte_count_disagrees_with_shape(stub, rng, cut):
    y = encode(_points(rng))
    y.data = y.data[:-cut] if cut > 0 else y.data + b"\0" * -cut
    fields = _call(stub, sinkhorn_pb2.SinkhornRequest(x=encode(_points(rng)), y=y))
    assert "bytes" in fields["y"]


def test_negative_extent(stub, rng):
    y = encode(_points(rng))
    del y.shape[:]
    y.shape.extend([-6, -2])
    fields = _call(stub, sinkhorn_pb2.SinkhornRequest(x=encode(_points(rng)), y=y))
    assert "negative" in fields["y"]


@pytest.mark.parametrize("shape,words", [
    ([0, 2**62], "too large"),  # empty, yet no array can have that shape
    ([2**40, 2**40, 0], "too large"),
    ([0] * 40, "40 dimensions"),
    ([1] * 70, "70 dimensions"),
])
def test_absurd_shapes(stub, rng, shape, words):
    y = tensor_pb2.Tensor(dtype=tensor_pb2.DTYPE_FLOAT64, shape=shape, data=b"" if 0 in shape else b"\0" * 8)
    fields = _call(stub, sinkhorn_pb2.SinkhornRequest(x=encode(_points(rng)), y=y))
    assert words in fields["y"]


def test_wrong_rank_and_empty(stub, rng):
    fields = _call(stub, sinkhorn_pb2.SinkhornRequest(x=encode(np.ones(6)), y=encode(np.ones((0, 2)))))
    assert "dimension" in fields["x"] and "empty" in fields["y"]


def test_unknown_cost_option(stub, rng):
    request = sinkhorn_pb2.SinkhornRequest(x=encode(_points(rng)), y=encode(_points(rng)), cost=42)
    assert "unknown" in _call(stub, request)["cost"]


def test_points_and_matrix_together(stub, rng):
    request = sinkhorn_pb2.SinkhornRequest(
        x=encode(_points(rng)), y=encode(_points(rng)), cost_matrix=encode(np.ones((6, 6)))
    )
    assert "not both" in _call(stub, request)["cost_matrix"]


def test_missing_points(stub, rng):
    assert "required" in _call(stub, sinkhorn_pb2.SinkhornRequest(x=encode(_points(rng))))["y"]


def test_limits_are_checked_before_any_allocation(make_server, rng):
    small = make_server(max_dense_elements=1000)
    with grpc.insecure_channel(small.target) as channel:
        stub = service_pb2_grpc.SolverServiceStub(channel)
        too_many = sinkhorn_pb2.SinkhornRequest(cost_matrix=encode(rng.random((40, 30))))
        assert "limit of 1,000" in _call(stub, too_many)["cost_matrix"]
        # Points are not refused: their cost is computed in blocks (tests/server/test_limits.py).


def test_plan_over_the_message_limit(make_server, rng):
    small = make_server(max_message_bytes=1 << 20)
    with grpc.insecure_channel(small.target) as channel:
        stub = service_pb2_grpc.SolverServiceStub(channel)
        request = sinkhorn_pb2.SinkhornRequest(
            x=encode(_points(rng, 400)), y=encode(_points(rng, 400)), return_plan=True
        )
        assert "message limit" in _call(stub, request)["return_plan"]
