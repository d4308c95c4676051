"""Property-based tests: random malformed tensors and random settings for every request
type, sent through the real server as raw protobufs (the client would refuse most of
them). Whatever arrives, the server answers a status in time: OK, or INVALID_ARGUMENT
with a BadRequest that names a field of the request; never INTERNAL, never a hang;
and it is still healthy afterwards. Plus the codec's own properties.

Compilation is what costs time here (seconds per program on a small CPU), so the
*static* structure of a request that can pass validation is pinned: 4 x 3 points in
two dimensions, float64, default method and cost, an iteration cap of the default or
one chunk. Everything the solver traces (values, weights, epsilon, threshold, reg_m,
gamma) is random, and so is everything that makes a request invalid: dtypes, shapes,
byte counts, ranks, enum values, iteration caps, NaN and infinities.
"""

from __future__ import annotations

import itertools
import math

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from hypothesis import HealthCheck, event, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from monge.client.tensors import TensorError, check, decode, encode
from monge.v1 import (exact_pb2, jobs_pb2, jobs_pb2_grpc, service_pb2, service_pb2_grpc, sinkhorn_pb2,
                      sparsity_constrained_pb2, tensor_pb2)

FUZZ = settings(max_examples=50, deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])
CALL_TIMEOUT = 60.0  # a hang shows up as DEADLINE_EXCEEDED, which fails the test
_REQUEST_IDS = itertools.count()
TENSOR_FIELDS = ("x", "y", "a", "b", "cost_matrix")
DTYPES = {tensor_pb2.DTYPE_FLOAT32: np.float32, tensor_pb2.DTYPE_FLOAT64: np.float64}

# -- strategies: tensors ----------------------------------------------------------------

EDGE_FLOATS = st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, -1.0, 5e-324, 1e-300,
                               1e-30, 1e30, 1e300, 1.7976931348623157e308])
EDGE_INTS = st.sampled_from([-(2**63), -(2**31), -1, 0, 1, 2**31 - 1, 2**31, 2**62, 2**63 - 1])
ENUMS = st.one_of(st.integers(0, 5), st.integers(-(2**31), 2**31 - 1))


def _values(dtype, shape, *, finite: bool):
    if finite:
        elements = st.floats(-10, 10, width=np.dtype(dtype).itemsize * 8)
    else:
        elements = st.one_of(st.floats(width=np.dtype(dtype).itemsize * 8), EDGE_FLOATS.map(_rounder(dtype)))
    return hnp.arrays(dtype, shape, elements=elements)


def _rounder(dtype):
    def rounded(value):
        with np.errstate(over="ignore"):  # 1e300 as float32 is inf, on purpose
            return dtype(value)

    return rounded


def _tensor(array) -> tensor_pb2.Tensor:
    return encode(array)


def _decodable(tensor, otherwise):
    """The float array a tensor holds, or `otherwise` (an earlier change broke it)."""
    try:
        array = decode(tensor, "tensor")
    except TensorError:
        return otherwise
    return array if array.dtype.kind == "f" and array.size else otherwise


@st.composite
def malformed(draw, base: tensor_pb2.Tensor) -> tensor_pb2.Tensor:
    """`base` broken in one of the ways a peer could break it."""
    t = tensor_pb2.Tensor()
    t.CopyFrom(base)
    how = draw(st.sampled_from(["dtype", "shape", "bytes", "garbage", "values", "empty", "integer",
                                "rank", "huge"]))
    if how == "dtype":
        t.dtype = draw(ENUMS.filter(lambda d: d != base.dtype))
    elif how == "shape":
        extents = st.one_of(st.integers(0, 6), EDGE_INTS)
        del t.shape[:]
        t.shape.extend(draw(st.lists(extents, max_size=40)))
    elif how == "bytes":
        cut = draw(st.integers(-16, 16).filter(bool))
        t.data = t.data[:-cut] if cut > 0 else t.data + b"\x7f" * -cut
    elif how == "garbage":
        t.data = draw(st.binary(max_size=64))
    elif how == "values":  # well formed, not finite (or absurdly large)
        array = _decodable(base, np.zeros((2, 2))).copy()
        if array.size:
            flat = array.reshape(-1)
            with np.errstate(over="ignore"):
                flat[draw(st.integers(0, flat.size - 1))] = draw(EDGE_FLOATS)
        t.CopyFrom(encode(array))
    elif how == "empty":
        del t.shape[:]
        t.shape.extend(draw(st.sampled_from([[0], [0, 2], [3, 0], [0, 0], [], [0, 2**62], [2**40, 2**40, 0],
                                             [0] * 40])))
        t.data = b"" if 0 in t.shape else t.data[:8]
    elif how == "integer":
        t.CopyFrom(encode(np.arange(6, dtype=draw(st.sampled_from([np.int32, np.int64]))).reshape(3, 2)))
    elif how == "rank":
        array = _decodable(base, np.zeros(4))
        t.CopyFrom(encode(array.reshape(draw(st.sampled_from([(-1,), (1, -1, 1), (1, 1, -1, 1)])))))
    else:  # huge: a header that claims far more than any message holds
        del t.shape[:]
        t.shape.extend([draw(st.sampled_from([10**7 + 1, 2**31, 2**40])), 2])
    return t


@st.composite
def problem(draw, *, matrix: bool = True) -> dict[str, tensor_pb2.Tensor]:
    """A small well-formed problem: points (or, with `matrix`, sometimes a cost matrix),
    maybe weights (of equal mass, or not), then 0-3 fields broken, removed or added."""
    n, m, d, dtype = 4, 3, 2, np.float64
    fields = {}
    if matrix and draw(st.booleans()) and draw(st.booleans()):
        fields["cost_matrix"] = _tensor(draw(_values(dtype, (n, m), finite=True)) ** 2)
    else:
        fields["x"] = _tensor(draw(_values(dtype, (n, d), finite=True)))
        fields["y"] = _tensor(draw(_values(dtype, (m, d), finite=True)))
    for name, size in (("a", n), ("b", m)):
        if draw(st.booleans()):
            w = draw(hnp.arrays(dtype, size, elements=st.floats(0.125, 1.0)))
            fields[name] = _tensor(w / w.sum() if draw(st.booleans()) else w)
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2, 3]))):
        name = draw(st.sampled_from(TENSOR_FIELDS))
        action = draw(st.sampled_from(["break", "break", "break", "drop", "add"]))
        if action == "drop":
            fields.pop(name, None)
        elif name in fields:
            fields[name] = draw(malformed(fields[name]))
        else:  # a field that does not belong (cost_matrix beside points, say) or a stray one
            shape = draw(st.sampled_from([(n, m), (n,), (m, d), (5, 5), (2, 1)]))
            fields[name] = _tensor(draw(_values(draw(st.sampled_from([np.float32, np.float64])), shape,
                                                finite=False)))
    return fields


# -- strategies: settings ---------------------------------------------------------------


def _optional(valid):
    return st.one_of(st.none(), valid, EDGE_FLOATS)


def _enum(*valid):
    """One of the `valid` numbers, or a number the server does not know."""
    unknown = st.one_of(st.integers(5, 2**31 - 1), st.integers(-(2**31), -1))
    return st.one_of(*[st.sampled_from(valid)] * 3, unknown)  # mostly known: reach further


# The default cap (10,000: chunks of 2560 and a last one of 2320 for a 4 x 3 problem)
# or exactly one chunk; the rest are refused.
ITERATIONS = st.one_of(st.none(), st.just(2560), st.integers(-5, 0),
                       st.sampled_from([-(2**63), 10**6 + 1, 2**31, 2**63 - 1]))


def _set(request, **values):
    for name, value in values.items():
        if value is not None:
            setattr(request, name, value)
    return request


@st.composite
def sinkhorn_requests(draw) -> sinkhorn_pb2.SinkhornRequest:
    request = sinkhorn_pb2.SinkhornRequest(**draw(problem()))
    _set(request, epsilon=draw(_optional(st.floats(0.05, 5.0))), threshold=draw(_optional(st.floats(1e-9, 1e-2))),
         max_iterations=draw(ITERATIONS), cost=draw(_enum(0, 1)), method=draw(_enum(0, 1)),
         return_plan=draw(st.booleans()))
    if draw(st.booleans()):
        positive = st.one_of(st.floats(0.1, 10.0), EDGE_FLOATS)
        request.reg_m.source, request.reg_m.target = draw(positive), draw(positive)
    return request


@st.composite
def exact_requests(draw) -> exact_pb2.ExactTransportRequest:
    # The network simplex runs on the host (no compilation): every method and cost.
    request = exact_pb2.ExactTransportRequest(**draw(problem()))
    return _set(request, p=draw(_optional(st.floats(1.0, 4.0))), cost=draw(_enum(0, 1, 2)),
                method=draw(_enum(0, 1, 2, 3)),
                max_iterations=draw(st.one_of(st.none(), st.integers(-5, 10**13), EDGE_INTS)))


@st.composite
def sparsity_requests(draw) -> sparsity_constrained_pb2.SparsityConstrainedTransportRequest:
    # Its program takes the longest to compile: points only, the default k.
    request = sparsity_constrained_pb2.SparsityConstrainedTransportRequest(**draw(problem(matrix=False)))
    return _set(request, gamma=draw(_optional(st.floats(0.1, 10.0))),
                k=draw(st.one_of(st.none(), st.just(2), st.sampled_from([-1, 0, 4, 5]), EDGE_INTS)),
                formulation=draw(_enum(0, 1)), threshold=draw(_optional(st.floats(1e-9, 1e-2))),
                max_iterations=draw(st.one_of(st.none(), st.integers(-5, 0), st.just(10**6 + 1))),
                cost=draw(_enum(0, 1)))


@st.composite
def job_requests(draw) -> jobs_pb2.SubmitJobRequest:
    items = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["sinkhorn", "sinkhorn", "exact_transport", "sparsity_constrained", "none"]))
        strategy = {"sinkhorn": sinkhorn_requests(), "exact_transport": exact_requests(),
                    "sparsity_constrained": sparsity_requests()}.get(kind)
        items.append(jobs_pb2.JobItem(**({kind: draw(strategy)} if strategy is not None else {})))
    request_id = draw(st.one_of(st.just(""), st.text(max_size=40)))
    if request_id:  # unique, so that the answer is this job rather than an earlier one
        request_id += f"#{next(_REQUEST_IDS)}"
    return jobs_pb2.SubmitJobRequest(items=items, request_id=request_id)


# -- what every answer must be ----------------------------------------------------------


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.target) as channel:
        yield channel
    _assert_healthy(server.target)


def _fields_of(request) -> set[str]:
    return {f.name for f in request.DESCRIPTOR.fields}


def _answer(call, request):
    """The response, or the field violations of an INVALID_ARGUMENT; anything else fails."""
    try:
        reply = call(request, timeout=CALL_TIMEOUT)
        event("OK")
        return reply, None
    except grpc.RpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
        assert "Traceback" not in error.details()
        status = rpc_status.from_call(error)
        bad_request = error_details_pb2.BadRequest()
        assert status is not None and status.details and status.details[0].Unpack(bad_request), error.details()
        violations = [(v.field, v.description) for v in bad_request.field_violations]
        assert violations and all(field and description for field, description in violations), violations
        event(f"INVALID_ARGUMENT on {violations[0][0].split('.')[-1]}")
        return None, violations


def _assert_named(violations, request, prefix=""):
    """Every violation names a field of the request (a nested one: `reg_m.source`)."""
    known = _fields_of(request)
    for field, _ in violations:
        assert field.startswith(prefix), field
        assert field[len(prefix):].split(".")[0] in known, (field, known)


def _assert_healthy(target):
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        x = encode(np.array([[0.0], [1.0]]))
        reply = service_pb2_grpc.SolverServiceStub(channel).Sinkhorn(
            sinkhorn_pb2.SinkhornRequest(x=x, y=x, epsilon=1.0), timeout=CALL_TIMEOUT)
        assert reply.diagnostics.converged


# -- the server ------------------------------------------------------------------------


@FUZZ
@given(request=sinkhorn_requests())
def test_sinkhorn_answers_every_request(channel, request):
    reply, violations = _answer(service_pb2_grpc.SolverServiceStub(channel).Sinkhorn, request)
    if violations:
        _assert_named(violations, request)
    else:
        assert reply.diagnostics.status != 0 and reply.HasField("f")


@FUZZ
@given(request=exact_requests())
def test_exact_transport_answers_every_request(channel, request):
    reply, violations = _answer(service_pb2_grpc.SolverServiceStub(channel).ExactTransport, request)
    if violations:
        _assert_named(violations, request)
    else:
        assert reply.diagnostics.status != 0 and reply.HasField("plan")


@FUZZ
@given(request=sparsity_requests())
def test_sparsity_constrained_answers_every_request(channel, request):
    reply, violations = _answer(service_pb2_grpc.SolverServiceStub(channel).SparsityConstrainedTransport, request)
    if violations:
        _assert_named(violations, request)
    else:
        assert reply.diagnostics.status != 0 and reply.HasField("plan")


@settings(FUZZ, max_examples=30)
@given(request=job_requests())
def test_job_submission_answers_every_request(channel, request):
    jobs = jobs_pb2_grpc.JobServiceStub(channel)
    reply, violations = _answer(jobs.SubmitJob, request)
    if violations:
        for field, _ in violations:
            assert field == "items" or field.startswith("items["), field
        return
    waited = jobs.WaitJob(jobs_pb2.WaitJobRequest(job_id=reply.job.job_id, timeout_seconds=CALL_TIMEOUT,
                                                  include_results=True), timeout=CALL_TIMEOUT + 5).job
    assert waited.state == jobs_pb2.JOB_STATE_SUCCEEDED, waited
    assert len(waited.results) == len(request.items)
    for index, (item, result) in enumerate(zip(request.items, waited.results)):
        assert result.status.code in (0, 3), result.status  # OK or INVALID_ARGUMENT
        if result.status.code:
            kind = item.WhichOneof("request")
            violations = [(v.field, v.description) for v in result.status.field_violations]
            assert violations, result.status
            _assert_named(violations, getattr(item, kind), prefix=f"items[{index}].{kind}.")


@settings(FUZZ, max_examples=60)
@given(job_id=st.text(max_size=64), page_size=st.integers(-(2**31), 2**31 - 1), state=ENUMS,
       page_token=st.one_of(st.just(""), st.text(max_size=20)), timeout_seconds=EDGE_FLOATS)
def test_job_queries_answer_every_request(channel, job_id, page_size, state, page_token, timeout_seconds):
    jobs = jobs_pb2_grpc.JobServiceStub(channel)
    for call, request in (
        (jobs.GetJob, jobs_pb2.GetJobRequest(job_id=job_id, include_results=True)),
        (jobs.CancelJob, jobs_pb2.CancelJobRequest(job_id=job_id)),
        (jobs.WaitJob, jobs_pb2.WaitJobRequest(job_id=job_id, timeout_seconds=timeout_seconds)),
        (jobs.ListJobs, jobs_pb2.ListJobsRequest(page_size=page_size, state=state, page_token=page_token)),
    ):
        try:
            call(request, timeout=10)
        except grpc.RpcError as error:
            assert error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT), error
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                _, violations = _answer(call, request)
                _assert_named(violations, request)
    stream = jobs.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id), timeout=10)
    with pytest.raises(grpc.RpcError) as caught:
        list(stream)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


# -- the codec -------------------------------------------------------------------------

WIRE_DTYPES = [np.float32, np.float64, np.int32, np.int64, ">f4", ">f8", ">i4", ">i8"]
WIDENED_DTYPES = [np.float16, np.bool_, np.uint8, np.uint16, np.uint32]


@settings(max_examples=200, deadline=None, database=None)
@given(array=hnp.arrays(st.sampled_from(WIRE_DTYPES + WIDENED_DTYPES),
                        hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=4)))
def test_codec_round_trip(array):
    tensor = encode(array)
    back = decode(tensor, "t")
    assert back.shape == array.shape
    assert back.dtype.isnative and back.dtype.kind == ("f" if array.dtype.kind == "f" else "i")
    assert back.dtype.itemsize >= array.dtype.itemsize
    assert len(tensor.data) == back.nbytes
    # Same values, NaN for NaN (widening is exact).
    np.testing.assert_array_equal(back, array.astype(back.dtype))
    assert decode(tensor_pb2.Tensor.FromString(tensor.SerializeToString()), "t").tobytes() == back.tobytes()


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.complex64, np.float128, object])
def test_codec_refuses_what_it_cannot_send(dtype):
    with pytest.raises(TypeError):
        encode(np.zeros(3, dtype=dtype))


@settings(max_examples=300, deadline=None, database=None)
@given(dtype=ENUMS, shape=st.lists(st.one_of(st.integers(0, 6), EDGE_INTS), max_size=70),
       data=st.binary(max_size=256))
def test_codec_decodes_or_names_the_field(dtype, shape, data):
    tensor = tensor_pb2.Tensor(dtype=dtype, shape=shape, data=data)
    try:
        array = decode(tensor, "field")
    except TensorError as error:
        assert error.field == "field" and error.description
        with pytest.raises(TensorError):
            check(tensor, "field")
        return
    assert array.shape == tuple(shape) and array.nbytes == len(data)
