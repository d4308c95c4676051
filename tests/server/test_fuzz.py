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

The second half does the same for the probability-flow, Var-RUOT and FedWaD requests
(see the comment there), where NOT_FOUND, naming the field, answers ids of models and
sessions that do not exist.
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

from monge.v1.codec import TensorError, check, decode, encode
from monge.v1 import (exact_pb2, fedwad_pb2, fedwad_pb2_grpc, jobs_pb2, jobs_pb2_grpc, pfode_pb2, ruot_pb2,
                      service_pb2_grpc, sinkhorn_pb2, sparsity_constrained_pb2, tensor_pb2)

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
         overrelaxation=draw(_enum(0, 1, 2)),
         return_plan=draw(st.booleans()), return_barycentric_map=draw(st.booleans()),
         plan_top_k=draw(st.one_of(st.none(), st.sampled_from([0, 2, -1, 4]), EDGE_INTS)))  # m = 3
    if draw(st.booleans()):
        positive = st.one_of(st.floats(0.1, 10.0), EDGE_FLOATS)
        request.reg_m.source, request.reg_m.target = draw(positive), draw(positive)
    return request


@st.composite
def sinkhorn_batch_requests(draw) -> sinkhorn_pb2.SinkhornBatchRequest:
    return sinkhorn_pb2.SinkhornBatchRequest(problems=draw(st.lists(sinkhorn_requests(), max_size=3)))


@st.composite
def divergence_requests(draw) -> sinkhorn_pb2.SinkhornDivergenceRequest:
    fields = {name: t for name, t in draw(problem(matrix=False)).items() if name in ("x", "y", "a", "b")}
    request = sinkhorn_pb2.SinkhornDivergenceRequest(**fields)
    return _set(request, epsilon=draw(_optional(st.floats(0.05, 5.0))),
                threshold=draw(_optional(st.floats(1e-9, 1e-2))), max_iterations=draw(ITERATIONS),
                cost=draw(_enum(0, 1)))


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


_ONE_REPLY = {  # rpc: (its requests, a field every answered reply has)
    "Sinkhorn": (sinkhorn_requests, "f"),
    "ExactTransport": (exact_requests, "plan"),
    "SparsityConstrainedTransport": (sparsity_requests, "plan"),
}


@pytest.mark.parametrize("rpc", list(_ONE_REPLY))
@FUZZ
@given(data=st.data())
def test_transport_rpc_answers_every_request(channel, rpc, data):
    requests, answered_field = _ONE_REPLY[rpc]
    request = data.draw(requests(), label="request")
    reply, violations = _answer(getattr(service_pb2_grpc.SolverServiceStub(channel), rpc), request)
    if violations:
        _assert_named(violations, request)
    else:
        assert reply.diagnostics.status != 0 and reply.HasField(answered_field)


@settings(FUZZ, max_examples=20)
@given(request=sinkhorn_batch_requests())
def test_sinkhorn_batch_answers_every_request(channel, request):
    reply, violations = _answer(service_pb2_grpc.SolverServiceStub(channel).SinkhornBatch, request)
    if violations:
        for field, _ in violations:
            if field != "problems":
                index = int(field.removeprefix("problems[").split("]")[0])
                _assert_named([(field, "")], request.problems[index], prefix=f"problems[{index}].")
    else:
        assert len(reply.results) == len(request.problems)
        assert all(r.diagnostics.status != 0 and r.HasField("f") for r in reply.results)


@settings(FUZZ, max_examples=20)
@given(request=divergence_requests())
def test_sinkhorn_divergence_answers_every_request(channel, request):
    reply, violations = _answer(service_pb2_grpc.SolverServiceStub(channel).SinkhornDivergence, request)
    if violations:
        _assert_named(violations, request)
    else:
        assert all(getattr(reply, name).diagnostics.status != 0 for name in ("xy", "xx", "yy"))


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


# == probability flow, Var-RUOT and FedWaD ===============================================
#
# The same property for the other request types: an answer in time, OK or a refusal
# that names a field of the request (INVALID_ARGUMENT with a BadRequest; NOT_FOUND whose
# message starts with the field that named the missing object), never INTERNAL.
#
# Each request is a small valid skeleton plus random changes. "Defects" are changes that
# make any request invalid (a NaN, an unknown enum value, a count of zero, a size over a
# limit): a request with one must be refused. Other changes move only traced values, so
# a request that passes runs one of a few compiled programs (a 1-component Gaussian or a
# [4]-unit MLP, Euler, 2 steps, 4 samples; Var-RUOT fields at 3 points). Programs that
# cost tens of seconds to compile (likelihood solves, training, Var-RUOT simulations)
# are only ever asked for with a defect, so the fuzzer exercises their validation and
# limits, and tests/server/test_pfode_rpc.py and test_ruot_rpc.py their runs.

MODEL_FUZZ = settings(FUZZ, max_examples=20)
HEX_IDS = st.text("0123456789abcdef", min_size=32, max_size=32)
MODEL_IDS = st.one_of(HEX_IDS, st.text(max_size=40), st.just("../../etc/passwd"))
_FLOAT_DTYPES = (tensor_pb2.DTYPE_FLOAT32, tensor_pb2.DTYPE_FLOAT64)


@st.composite
def broken(draw, base: tensor_pb2.Tensor) -> tensor_pb2.Tensor:
    """`base` (a non-empty float tensor) broken so that no float field accepts it."""
    t = tensor_pb2.Tensor()
    t.CopyFrom(base)
    array = _decodable(base, None)  # None: broken already (a second defect in one field)
    ways = ["dtype", "bytes", "rank", "empty", "huge"] + (["integer", "nonfinite"] if array is not None else [])
    how = draw(st.sampled_from(ways))
    if how == "dtype":
        t.dtype = draw(st.one_of(st.just(0), st.integers(9, 2**31 - 1), st.integers(-(2**31), -1)))
    elif how == "integer":
        t.CopyFrom(encode(np.zeros(array.shape, draw(st.sampled_from([np.int32, np.int64])))))
    elif how == "bytes":
        cut = draw(st.integers(-16, 16).filter(bool))
        t.data = t.data[:-cut] if cut > 0 else t.data + b"\x7f" * -cut
    elif how == "rank":
        del t.shape[:]
        t.shape.extend([*base.shape, 1] if draw(st.booleans()) or len(base.shape) < 2 else
                       [base.shape[0] * base.shape[1], *base.shape[2:]])
    elif how == "nonfinite":
        array = array.copy()
        array.reshape(-1)[draw(st.integers(0, array.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        t.CopyFrom(encode(array))
    elif how == "empty":
        del t.shape[:]
        t.shape.extend([0, *base.shape[1:]])
        t.data = b""
    else:
        del t.shape[:]
        t.shape.extend([draw(st.sampled_from([10**7 + 1, 2**31, 2**40])), *base.shape[1:]])
    return t


def _floats(low, high):
    return st.floats(low, high, allow_nan=False, allow_infinity=False)


def _spd(draw, d):
    a = draw(hnp.arrays(np.float64, (d, d), elements=_floats(-1, 1)))
    return a @ a.T + draw(_floats(0.05, 2.0)) * np.eye(d)


def _refusal(call, request, *, prefix="", known=None, codes=(grpc.StatusCode.INVALID_ARGUMENT,
                                                                 grpc.StatusCode.NOT_FOUND)):
    """The reply (None when refused) and the fields the refusal named; fails on any
    other answer. `known`: the request's own top-level fields (default: its message's)."""
    known = _fields_of(request) if known is None else known
    try:
        reply = call(request, timeout=CALL_TIMEOUT)
        event("OK")
        return reply, []
    except grpc.RpcError as error:
        return None, _named(error, prefix, known, codes)


def _named(error, prefix, known, codes):
    assert error.code() in codes, (error.code(), error.details())
    assert "Traceback" not in (error.details() or "")
    if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
        status = rpc_status.from_call(error)
        bad_request = error_details_pb2.BadRequest()
        assert status is not None and status.details and status.details[0].Unpack(bad_request), error.details()
        fields = [v.field for v in bad_request.field_violations]
        assert fields and all(v.description for v in bad_request.field_violations), bad_request
    elif error.code() == grpc.StatusCode.NOT_FOUND:
        fields = [error.details().split(":", 1)[0]]  # "<field>: no ... on this server"
    else:
        event(error.code().name)
        return [error.code().name]
    for field in fields:
        assert field.startswith(prefix), (field, error.details())
        assert field[len(prefix):].split(".")[0].split("[")[0] in known, (field, known)
    event(f"{error.code().name} on {fields[0].split('.')[-1].split('[')[0]}")
    return fields


# -- probability flow: models -------------------------------------------------------------

MLP_HIDDEN, MLP_EMBEDDING = [4], 2


def _mlp_weights(draw):
    from monge.solvers.pfode import MLPArchitecture

    shapes = MLPArchitecture(dim=2, hidden=tuple(MLP_HIDDEN), time_embedding_dim=MLP_EMBEDDING).weight_shapes()
    return {name: encode(draw(hnp.arrays(np.float64, shape, elements=_floats(-1, 1)))) for name, shape in shapes.items()}


@st.composite
def pfode_models(draw, defects: list, *, trained=True) -> pfode_pb2.ProbabilityFlowModel:
    """A VP model with a 1-component Gaussian or a small MLP; appends what it broke to
    `defects` (the field, or "NOT_FOUND" for a model id that cannot exist)."""
    model = pfode_pb2.ProbabilityFlowModel()
    kind = draw(st.sampled_from(["gaussian"] * 3 + ["mlp"] * 2 + ["trained", "none"] if trained else
                                ["gaussian"] * 3 + ["mlp"] * 2 + ["none"]))
    if kind == "gaussian":
        g = model.gaussian_mixture
        g.means.CopyFrom(encode(draw(hnp.arrays(np.float64, (1, 2), elements=_floats(-5, 5)))))
        g.covariances.CopyFrom(encode(_spd(draw, 2)[None]))
        for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
            name = draw(st.sampled_from(["means", "covariances", "weights", "asymmetric", "indefinite"]))
            if name == "asymmetric":
                g.covariances.CopyFrom(encode(np.array([[[1.0, 0.5], [0.0, 1.0]]])))
            elif name == "indefinite":
                g.covariances.CopyFrom(encode(np.array([[[1.0, 2.0], [2.0, 1.0]]])))
            elif name == "weights":
                g.weights.CopyFrom(encode(draw(st.sampled_from([np.array([0.5]), np.array([-1.0]),
                                                                np.array([0.5, 0.5])]))))
            else:
                getattr(g, name).CopyFrom(draw(broken(getattr(g, name))))
            defects.append(f"gaussian_mixture.{name}")
    elif kind == "mlp":
        m = model.mlp
        m.dim, m.time_embedding_dim, m.prediction = 2, MLP_EMBEDDING, pfode_pb2.PREDICTION_TYPE_NOISE
        m.hidden.extend(MLP_HIDDEN)
        for name, tensor in _mlp_weights(draw).items():
            m.weights[name].CopyFrom(tensor)
        for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
            how = draw(st.sampled_from(["weight", "drop", "extra", "dim", "hidden", "embedding", "prediction"]))
            if how == "weight":
                name = draw(st.sampled_from(sorted(m.weights)))
                m.weights[name].CopyFrom(draw(broken(m.weights[name])))
            elif how == "drop" and m.weights:
                del m.weights[draw(st.sampled_from(sorted(m.weights)))]
            elif how == "extra":
                m.weights[draw(st.text(max_size=12)) + "#extra"].CopyFrom(encode(np.zeros(2)))
            elif how == "dim":
                m.dim = draw(st.one_of(st.integers(-5, 1), st.integers(3, 5000), EDGE_INTS).filter(lambda d: d != 2))
            elif how == "hidden":
                del m.hidden[:]
                m.hidden.extend(draw(st.sampled_from([[], [0], [-1], [10**6], [4] * 17, [5]])))
            elif how == "embedding":
                m.time_embedding_dim = draw(st.sampled_from([0, 1, 3, 4, 2048, -2, 2**62]))
            else:
                m.prediction = draw(st.sampled_from([0, 9, -1]))
            defects.append(f"mlp.{how}")
    elif kind == "trained":
        model.trained_model_id = draw(MODEL_IDS)
        defects.append("trained_model_id")  # unknown (NOT_FOUND) or malformed (INVALID_ARGUMENT)
    else:
        defects.append("source")
    if draw(st.booleans()):
        schedule = model.schedule
        schedule.kind = draw(st.sampled_from([0, 1]))
        if draw(st.booleans()):
            schedule.beta_min = draw(_floats(0.0, 1.0))
        if draw(st.booleans()):
            schedule.beta_max = draw(_floats(1.0, 30.0))
        if draw(st.integers(0, 3)) == 0:
            how = draw(st.sampled_from(["kind", "foreign", "negative", "nonfinite", "ve_order"]))
            if how == "kind":
                schedule.kind = draw(st.one_of(st.integers(4, 2**31 - 1), st.integers(-(2**31), -1)))
            elif how == "foreign":
                setattr(schedule, draw(st.sampled_from(["sigma_min", "sigma_max", "rho"])), 1.0)
            elif how == "negative":
                schedule.beta_max = draw(st.sampled_from([-1.0, 0.0, -1e300]))
            elif how == "nonfinite":
                schedule.beta_min = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
            else:
                schedule.ClearField("beta_min"), schedule.ClearField("beta_max")
                schedule.kind, schedule.sigma_min, schedule.sigma_max = pfode_pb2.NOISE_SCHEDULE_VE, 2.0, 1.0
            defects.append(f"schedule.{how}")
    prior = draw(st.sampled_from([0, 1, 0, 2, 7]))
    if prior == 2 and kind == "gaussian":
        prior = 1  # valid, but another program to compile
    model.prior = prior
    if prior in (2, 7):
        defects.append("prior")
    start, end = 1.0, 1e-3  # VP's default interval
    if draw(st.booleans()):
        start = model.t_start = draw(st.one_of(_floats(0.5, 1.0), _floats(0.5, 1.0), EDGE_FLOATS))
    if draw(st.booleans()):
        end = model.t_end = draw(st.one_of(_floats(1e-3, 0.1), _floats(1e-3, 0.1), EDGE_FLOATS))
    if not (math.isfinite(start) and math.isfinite(end) and end >= 0 and start > end):
        defects.append("interval")
    return model


# -- probability flow: requests -----------------------------------------------------------


@st.composite
def sample_requests(draw):
    defects = []
    request = pfode_pb2.SampleProbabilityFlowRequest(
        model=draw(pfode_models(defects)), sampler=pfode_pb2.ODE_SAMPLER_EULER, steps=2, num_samples=4,
        seed=draw(st.integers(0, 2**63 - 1)))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        how = draw(st.sampled_from(["sampler", "time_grid", "steps", "nfe", "num_samples", "seed", "dtype", "rtol",
                                    "trajectory", "likelihood", "probes"]))
        if how == "sampler":
            request.sampler = draw(st.one_of(st.integers(7, 2**31 - 1), st.integers(-(2**31), -1)))
        elif how == "time_grid":
            request.time_grid = draw(st.one_of(st.integers(4, 2**31 - 1), st.integers(-(2**31), -1)))
        elif how == "steps":
            request.steps = draw(st.one_of(st.integers(-5, 0), st.sampled_from([10**6 + 1, 2**62, -(2**63)])))
        elif how == "nfe":
            request.nfe = draw(st.one_of(st.integers(-5, 0), st.sampled_from([10**6 + 1, 2**63 - 1])))
        elif how == "num_samples":
            request.num_samples = draw(st.one_of(st.integers(-5, 0), st.sampled_from([10**7 + 1, 2**63 - 1])))
        elif how == "seed":
            request.seed = draw(st.integers(-(2**63), -1))
        elif how == "dtype":
            request.dtype = draw(st.sampled_from([tensor_pb2.DTYPE_INT32, tensor_pb2.DTYPE_INT64, 5, 99, -1]))
        elif how == "rtol":  # Euler takes fixed steps: tolerances do not apply
            request.rtol = draw(st.one_of(_floats(1e-6, 1.0), EDGE_FLOATS))
        elif how == "trajectory":  # 10^6 times x 100 samples x 2: over max_trajectory_elements
            request.return_trajectory, request.num_samples, request.steps = True, 100, 10**6 - 1
        elif how == "likelihood":
            request.log_likelihood.divergence = draw(st.sampled_from([3, 9, -1]))
        else:
            request.log_likelihood.divergence = draw(st.sampled_from([0, 1]))
            request.log_likelihood.num_probes = draw(st.integers(-5, 2**40))
        defects.append(how)
    return request, defects


@st.composite
def likelihood_requests(draw):
    defects = ["always"]  # see the section comment: no likelihood solve is run
    request = pfode_pb2.ProbabilityFlowLogLikelihoodRequest(
        model=draw(pfode_models(defects)), points=encode(draw(hnp.arrays(np.float64, (4, 2),
                                                                         elements=_floats(-3, 3)))),
        seed=draw(st.integers(0, 2**63 - 1)))
    hows = draw(st.lists(st.sampled_from(["points", "dimension", "missing", "divergence", "probes", "tolerance",
                                          "seed", "dtype", "max_steps", "no_noise", "too_many"]),
                         min_size=1, max_size=3))
    for how in hows:
        if how == "points":
            request.points.CopyFrom(draw(broken(request.points)))
        elif how == "dimension":
            request.points.CopyFrom(encode(np.zeros((4, 3))))
        elif how == "missing":
            request.ClearField("points")
        elif how == "divergence":
            request.options.divergence = draw(st.sampled_from([3, 9, -1]))
        elif how == "probes":
            request.options.divergence = pfode_pb2.DIVERGENCE_ESTIMATOR_HUTCHINSON
            request.options.num_probes = draw(st.one_of(st.integers(-5, 1), st.integers(1025, 2**62)))
        elif how == "tolerance":
            setattr(request.options, draw(st.sampled_from(["rtol", "atol"])),
                    draw(st.sampled_from([0.0, -1.0, math.nan, math.inf])))
        elif how == "seed":
            request.seed = draw(st.integers(-(2**63), -1))
        elif how == "dtype":
            request.dtype = draw(st.sampled_from([tensor_pb2.DTYPE_INT32, 5, 99]))
        elif how == "max_steps":
            request.max_steps = draw(st.one_of(st.integers(-5, 0), st.integers(100_001, 2**63 - 1)))
        elif how == "no_noise":  # EDM has sigma(0) = 0: no log-density at t_end = 0
            request.model.schedule.kind, request.model.t_end = pfode_pb2.NOISE_SCHEDULE_EDM, 0.0
            request.model.schedule.ClearField("beta_min"), request.model.schedule.ClearField("beta_max")
        else:  # over max_samples, said by the header alone
            del request.points.shape[:]
            request.points.shape.extend([10**7 + 1, 2])
    return request, defects


@st.composite
def train_requests(draw):
    """A TrainScoreModelRequest with at least one defect (training is never run here)."""
    request = pfode_pb2.TrainScoreModelRequest(
        samples=encode(draw(hnp.arrays(np.float64, (8, 2), elements=_floats(-3, 3)))), steps=2, batch_size=4,
        report_every=1, time_embedding_dim=2, seed=draw(st.integers(0, 2**63 - 1)))
    request.hidden.extend([4])
    hows = draw(st.lists(st.sampled_from(["samples", "missing", "hidden", "parameters", "embedding", "prediction",
                                          "schedule", "steps", "batch_size", "report_every", "learning_rate",
                                          "seed", "t_min", "t_order", "too_many"]), min_size=1, max_size=3))
    for how in hows:
        if how == "samples":
            request.samples.CopyFrom(draw(broken(request.samples)))
        elif how == "missing":
            request.ClearField("samples")
        elif how == "hidden":
            del request.hidden[:]
            request.hidden.extend(draw(st.sampled_from([[0], [-3], [8193], [2] * 17])))
        elif how == "parameters":  # over 50 million weights
            del request.hidden[:]
            request.hidden.extend([8192, 8192])
        elif how == "embedding":
            request.time_embedding_dim = draw(st.sampled_from([0, 1, 3, 1026, -4, 2**62]))
        elif how == "prediction":
            request.prediction = draw(st.one_of(st.integers(5, 2**31 - 1), st.integers(-(2**31), -1)))
        elif how == "schedule":
            request.schedule.kind = draw(st.sampled_from([9, -1]))
        elif how in ("steps", "report_every"):  # over max_training_steps, or none
            setattr(request, how, draw(st.sampled_from([0, -1, 10**6 + 1, 2**63 - 1])))
        elif how == "batch_size":
            request.batch_size = draw(st.sampled_from([0, -1, 65_537, 2**62]))
        elif how == "learning_rate":
            request.learning_rate = draw(st.sampled_from([0.0, -1.0, math.nan, math.inf]))
        elif how == "seed":
            request.seed = draw(st.integers(-(2**63), -1))
        elif how == "t_min":
            request.t_min = draw(st.sampled_from([-1.0, math.nan, -math.inf]))
        elif how == "t_order":
            request.t_min, request.t_max = 0.5, draw(st.sampled_from([0.5, 0.1, 0.0]))
        else:
            del request.samples.shape[:]
            request.samples.shape.extend([10**7 + 1, 2])
    return request


@MODEL_FUZZ
@given(case=sample_requests())
def test_probability_flow_sampling_answers_every_request(channel, case):
    request, defects = case
    reply, fields = _refusal(service_pb2_grpc.SolverServiceStub(channel).SampleProbabilityFlow, request)
    assert not (defects and reply is not None), (defects, reply)
    if reply is not None:
        assert reply.diagnostics.status != 0 and reply.HasField("samples")


@MODEL_FUZZ
@given(case=likelihood_requests())
def test_probability_flow_likelihood_refuses_every_bad_request(channel, case):
    request, _ = case
    reply, _ = _refusal(service_pb2_grpc.SolverServiceStub(channel).ProbabilityFlowLogLikelihood, request)
    assert reply is None


@MODEL_FUZZ
@given(request=train_requests(), request_id=st.text(max_size=20))
def test_training_job_items_refuse_every_bad_request(channel, request, request_id):
    submit = jobs_pb2.SubmitJobRequest(items=[jobs_pb2.JobItem(train_score_model=request)],
                                       request_id=f"{request_id}#{next(_REQUEST_IDS)}" if request_id else "")
    reply, _ = _refusal(jobs_pb2_grpc.JobServiceStub(channel).SubmitJob, submit,
                        prefix="items[0].train_score_model.", known=_fields_of(request))
    assert reply is None


# -- Var-RUOT ------------------------------------------------------------------------------

RUOT_DT = 0.25


def _untrained_ruot_model() -> ruot_pb2.RUOTModel:
    """A valid exported model without training (2-D, width 8): what queries run on."""
    import jax

    from monge.client import RuotExport
    from monge.solvers.ruot.config import ExactLaplacian, QuadraticGrowth
    from monge.solvers.ruot.model import RuotSettings, init_params

    arrays = {f"params/{name}": np.asarray(value) for name, value in init_params(jax.random.key(0), 2, 8, 0).items()}
    arrays.update({"norm.x_shift": np.zeros(2), "norm.x_scale": np.array(1.0), "norm.t_shift": np.array(0.0),
                   "norm.t_scale": np.array(1.0), "times": np.array([0.0, 1.0]), "relative_mass": np.array([1.0, 1.5]),
                   "initial_points": np.random.default_rng(0).normal(size=(6, 2)), "history": np.zeros((0, 5))})
    settings = RuotSettings(dim=2, width=8, residual_blocks=0, sigma=0.1, dt=RUOT_DT, alpha=1.0,
                            growth=QuadraticGrowth(), laplacian=ExactLaplacian())
    return RuotExport(arrays, settings.to_dict()).to_proto()


UNTRAINED_RUOT = _untrained_ruot_model()
SIMULATIONS = ("trajectories", "mass", "action", "population")


def _simulation(request, kind, time):
    """Ask for a simulation of `kind` up to `time`."""
    if kind == "trajectories":
        request.trajectories.times.extend([time])
    elif kind == "mass":
        request.mass.times.extend([time])
    elif kind == "action":
        request.action.until = time
    else:
        request.population.time = time
    return getattr(request, kind)


@st.composite
def ruot_query_requests(draw):
    """Fields at 3 points of an inline untrained model (or a model id that cannot be
    found), then changes; simulations are asked for only with a defect."""
    defects = []
    request = ruot_pb2.QueryRUOTRequest(seed=draw(st.integers(0, 2**63 - 1)))
    if draw(st.integers(0, 4)) == 0:
        request.model_id = draw(MODEL_IDS)
        defects.append("model_id")
    else:
        request.inline_model.CopyFrom(UNTRAINED_RUOT)
    request.fields.points.CopyFrom(encode(draw(hnp.arrays(np.float64, (3, 2), elements=_floats(-3, 3)))))
    request.fields.times.CopyFrom(encode(np.float64(draw(_floats(0.0, 2.0)))))
    model = request.inline_model
    for _ in range(draw(st.sampled_from([0, 0, 1, 1, 2]))):
        how = draw(st.sampled_from(["points", "times", "time_shape", "no_fields", "seed", "simulation_far",
                                    "simulation_nonfinite", "simulation_early", "simulation_points", "tiny_dt",
                                    "setting", "enum", "array", "drop_array", "decreasing_times", "initial_points"]))
        if how == "points":
            request.fields.points.CopyFrom(draw(broken(request.fields.points)))
        elif how == "times":
            request.fields.times.CopyFrom(draw(st.sampled_from([encode(np.float64(np.nan)), encode(np.int64(1)),
                                                                 tensor_pb2.Tensor(dtype=99)])))
        elif how == "time_shape":
            request.fields.times.CopyFrom(encode(np.zeros(draw(st.sampled_from([(2,), (4,), (3, 1)])))))
        elif how == "no_fields":
            request.ClearField("fields")
        elif how == "seed":
            request.seed = draw(st.integers(-(2**63), -1))
        elif how == "simulation_far":  # over max_trajectory_steps (dt 0.25)
            _simulation(request, draw(st.sampled_from(SIMULATIONS)), draw(st.sampled_from([1e6, 1e30, 1.7e308])))
        elif how == "simulation_nonfinite":
            _simulation(request, draw(st.sampled_from(SIMULATIONS)), draw(st.sampled_from([math.nan, math.inf])))
        elif how == "simulation_early":  # before the first snapshot, t = 0
            _simulation(request, draw(st.sampled_from(SIMULATIONS)), draw(st.sampled_from([-1.0, -1e300])))
        elif how == "simulation_points":
            query = _simulation(request, draw(st.sampled_from(SIMULATIONS)), 0.5)
            query.initial_points.CopyFrom(draw(st.one_of(broken(encode(np.zeros((4, 2)))),
                                                         st.just(encode(np.zeros((4, 3)))))))
        elif how == "tiny_dt":  # a simulation to t = 1 in steps of 1e-300
            if request.HasField("inline_model"):
                model.settings.dt = draw(st.sampled_from([1e-300, 5e-324, 1e-9]))
            _simulation(request, draw(st.sampled_from(SIMULATIONS)), 1.0)
        elif how == "setting" and request.HasField("inline_model"):
            name, value = draw(st.sampled_from([("format_version", 2), ("dim", 0), ("width", -1),
                                                ("residual_blocks", -1), ("sigma", -1.0), ("sigma", math.nan),
                                                ("dt", 0.0), ("dt", math.inf), ("alpha", 0.0), ("alpha", math.nan)]))
            setattr(model.settings, name, value)
        elif how == "enum" and request.HasField("inline_model"):
            setattr(model.settings, draw(st.sampled_from(["growth_penalty", "laplacian", "status"])),
                    draw(st.sampled_from([0, 9, -1])))
        elif how == "array" and request.HasField("inline_model"):
            name = draw(st.sampled_from(["norm.x_shift", "norm.x_scale", "times", "relative_mass", "initial_points"]))
            model.arrays[name].CopyFrom(draw(st.one_of(broken(model.arrays[name]) if name in (
                "times", "relative_mass", "initial_points", "norm.x_shift") else st.nothing(),
                st.just(encode(np.array([np.nan]))), st.just(encode(np.arange(2))))))
        elif how == "drop_array" and request.HasField("inline_model"):
            del model.arrays[draw(st.sampled_from(["times", "relative_mass", "initial_points", "history",
                                                   "norm.t_scale"]))]
        elif how == "decreasing_times" and request.HasField("inline_model"):
            model.arrays["times"].CopyFrom(encode(np.array([1.0, 0.0])))
        elif how == "initial_points" and request.HasField("inline_model"):
            model.arrays["initial_points"].CopyFrom(encode(np.zeros((6, 3))))
        else:
            continue
        defects.append(how)
    return request, defects


@st.composite
def ruot_models_with_values(draw):
    """The untrained model with other values: its network, normaliser, masses, starts
    (valid or not: no defect is claimed)."""
    model = ruot_pb2.RUOTModel()
    model.CopyFrom(UNTRAINED_RUOT)
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(sorted(model.arrays)))
        model.arrays[name].CopyFrom(draw(malformed(model.arrays[name])))
    return model


@st.composite
def ruot_fit_requests(draw):
    """A RUOTFitRequest with at least one defect (training is never run here)."""
    snapshots = [ruot_pb2.RUOTSnapshot(time=t, points=encode(draw(hnp.arrays(np.float64, (4, 2),
                                                                             elements=_floats(-3, 3)))))
                 for t in (0.0, 1.0)]
    request = ruot_pb2.RUOTFitRequest(snapshots=snapshots)
    s = request.settings
    s.width, s.residual_blocks, s.particles, s.steps, s.report_every, s.dt = 4, 0, 4, 2, 1, 0.5
    for name in ("alpha", "sigma", "gamma_hjb", "gamma_mass", "learning_rate"):
        if draw(st.booleans()):
            setattr(s, name, draw(_floats(0.01, 10.0)))
    s.growth_penalty = draw(st.sampled_from([0, 1, 2, 3]))
    s.laplacian = draw(st.sampled_from([0, 1, 2, 3]))
    bad = {"alpha": [0.0, -1.0, math.nan], "sigma": [-1.0, math.inf], "dt": [0.0, -0.5, math.nan],
           "gamma_hjb": [-1.0, math.nan], "gamma_action": [-1e-9], "gamma_mass": [math.inf], "ot_epsilon": [0.0],
           "width": [0, 4097, -(2**63)], "residual_blocks": [-1, 33], "steps": [0, 10**6 + 1, 2**63 - 1],
           "report_every": [0, -5], "particles": [0, 100_001], "learning_rate": [0.0, math.nan],
           "weight_decay": [-1.0], "clip_norm": [-0.5], "seed": [-1], "laplacian_probes": [0, 1025],
           "laplacian_max_exact_dim": [-1, 4097]}
    hows = draw(st.lists(st.sampled_from([*bad, "growth_penalty", "laplacian", "linear_below", "probes_exact",
                                          "one_snapshot", "time_order", "time_nonfinite", "points", "no_points",
                                          "dimensions", "mass", "grid"]), min_size=1, max_size=3))
    for how in hows:
        if how in bad:
            setattr(s, how, draw(st.sampled_from(bad[how])))
        elif how in ("growth_penalty", "laplacian"):
            setattr(s, how, draw(st.sampled_from([4, 99, -1])))
        elif how == "linear_below":  # a setting of the paper's growth penalty only
            s.growth_penalty, s.growth_linear_below = draw(st.sampled_from([1, 2])), 1.0
        elif how == "probes_exact":
            s.laplacian, s.laplacian_probes = ruot_pb2.RUOT_LAPLACIAN_EXACT, 4
        elif how == "one_snapshot":
            del request.snapshots[1:]
        elif how == "time_order":
            request.snapshots[-1].time = draw(st.sampled_from([0.0, -1.0, request.snapshots[0].time]))
        elif how == "time_nonfinite":
            request.snapshots[draw(st.integers(0, len(request.snapshots) - 1))].time = draw(
                st.sampled_from([math.nan, math.inf, -math.inf]))
        elif how == "points":
            snap = request.snapshots[draw(st.integers(0, len(request.snapshots) - 1))]
            snap.points.CopyFrom(draw(broken(snap.points)))
        elif how == "no_points":
            request.snapshots[0].ClearField("points")
        elif how == "dimensions":
            request.snapshots[-1].points.CopyFrom(encode(np.zeros((4, 3))))
        elif how == "mass":
            request.snapshots[0].mass = draw(st.sampled_from([0.0, -1.0, math.nan, math.inf]))
        else:  # from t = 0 to t = 10^6 in steps of dt: over the fit's 10,000 grid steps
            request.snapshots[-1].time = 1e6
            if s.HasField("dt") and not s.dt > 0:
                s.dt = 0.5
    return request


@MODEL_FUZZ
@given(case=ruot_query_requests())
def test_ruot_queries_answer_every_request(channel, case):
    request, defects = case
    reply, fields = _refusal(service_pb2_grpc.SolverServiceStub(channel).QueryRUOT, request)
    assert not (defects and reply is not None), (defects, reply)
    if reply is not None:
        assert reply.fields.potential.shape == [3] and reply.fields.velocity.shape == [3, 2]


@settings(FUZZ, max_examples=8)
@given(model=ruot_models_with_values())
def test_ruot_queries_on_damaged_inline_models_never_fail_inside(channel, model):
    request = ruot_pb2.QueryRUOTRequest(inline_model=model)
    request.fields.points.CopyFrom(encode(np.zeros((3, 2))))
    request.fields.times.CopyFrom(encode(np.float64(0.5)))
    _refusal(service_pb2_grpc.SolverServiceStub(channel).QueryRUOT, request)


@MODEL_FUZZ
@given(request=ruot_fit_requests())
def test_ruot_fit_job_items_refuse_every_bad_request(channel, request):
    submit = jobs_pb2.SubmitJobRequest(items=[jobs_pb2.JobItem(ruot_fit=request)])
    reply, _ = _refusal(jobs_pb2_grpc.JobServiceStub(channel).SubmitJob, submit, prefix="items[0].ruot_fit.",
                        known=_fields_of(request))
    assert reply is None


@settings(FUZZ, max_examples=20)
@given(model_id=MODEL_IDS, include_snapshots=st.booleans())
def test_ruot_export_answers_every_request(channel, model_id, include_snapshots):
    request = ruot_pb2.ExportRUOTModelRequest(model_id=model_id, include_snapshots=include_snapshots)
    reply, fields = _refusal(service_pb2_grpc.SolverServiceStub(channel).ExportRUOTModel, request)
    assert reply is None and fields == ["model_id"]  # no model was stored by this test


# -- FedWaD --------------------------------------------------------------------------------

_NAMES = st.one_of(st.sampled_from(["alice", "bob", "carol", "a.b-c_d"]), st.text(max_size=70))


@st.composite
def fedwad_create_requests(draw):
    names = st.one_of(st.lists(st.sampled_from(["alice", "bob", "carol", "a.b-c_d"]), min_size=2, max_size=4,
                               unique=True), st.lists(_NAMES, max_size=5))
    request = fedwad_pb2.CreateSessionRequest(parties=draw(names))
    config = request.config
    for name, values in (("support_size", st.one_of(st.integers(-3, 30), EDGE_INTS)),
                         ("rounds", st.one_of(st.integers(-3, 30), EDGE_INTS, st.just(10**6 + 1))),
                         ("t", st.one_of(_floats(0.0, 1.0), EDGE_FLOATS)), ("p", st.one_of(_floats(1.0, 3.0), EDGE_FLOATS))):
        if draw(st.booleans()):
            setattr(config, name, draw(values))
    config.seed = draw(st.integers(0, 2**64 - 1))
    if draw(st.booleans()):
        request.dimension = draw(st.one_of(st.integers(-3, 10), EDGE_INTS))
    if draw(st.booleans()):
        request.inactivity_timeout_seconds = draw(st.one_of(_floats(1.0, 1e6), EDGE_FLOATS))
    return request


@settings(FUZZ, max_examples=25)
@given(request=fedwad_create_requests(), other_id=st.text(max_size=40))
def test_fedwad_sessions_answer_every_request(channel, request, other_id):
    stub = fedwad_pb2_grpc.FedWadServiceStub(channel)
    reply, _ = _refusal(stub.CreateSession, request)
    if reply is not None:  # a session was created: end it, so that the server's quota is not used up
        stub.CancelSession(fedwad_pb2.CancelSessionRequest(session_id=reply.session.session_id), timeout=10)
    for call, message in ((stub.GetSession, fedwad_pb2.GetSessionRequest(session_id=other_id)),
                          (stub.CancelSession, fedwad_pb2.CancelSessionRequest(session_id=other_id))):
        reply, fields = _refusal(call, message)
        assert reply is None and fields == ["session_id"]


class _Stream:
    """A hand-driven Participate call."""

    def __init__(self, stub):
        self._outbox = __import__("queue").Queue()
        self.call = stub.Participate(iter(self._outbox.get, None), timeout=CALL_TIMEOUT)

    def send(self, **message):
        self._outbox.put(fedwad_pb2.ParticipateRequest(**message))

    def receive(self):
        return next(self.call)

    def close(self):
        self._outbox.put(None)
        self.call.cancel()


@st.composite
def fedwad_first_messages(draw, session_id):
    """What a second party sends first: a join (good, or bad in its own way) or not a join."""
    how = draw(st.sampled_from(["good"] * 6 + ["session", "party", "taken", "dimension", "sample_size", "answer",
                                               "empty"]))
    join = fedwad_pb2.FedWadJoin(session_id=session_id, party=draw(st.sampled_from(["bob", ""])), dimension=2,
                                 sample_size=draw(st.integers(1, 10**12)))
    if how == "session":
        join.session_id = draw(st.text(max_size=40))
    elif how == "party":
        join.party = draw(st.text(min_size=1, max_size=20).filter(lambda n: n not in ("alice", "bob")))
    elif how == "taken":
        join.party = "alice"
    elif how == "dimension":
        join.dimension = draw(st.one_of(st.integers(-3, 1), st.integers(3, 10), EDGE_INTS).filter(lambda d: d != 2))
    elif how == "sample_size":
        join.sample_size = draw(st.one_of(st.integers(-3, 0), st.sampled_from([-(2**63)])))
    if how == "answer":
        return how, {"answer": fedwad_pb2.FedWadAnswer()}
    if how == "empty":
        return how, {}
    return how, {"join": join}


@st.composite
def fedwad_answers(draw):
    """An answer to round 0 of pair 0 on xi's 3 atoms, then changes (no defect claimed
    for those that a peer's protocol cannot tell from a good answer)."""
    points, weights = encode(draw(hnp.arrays(np.float64, (3, 2), elements=_floats(-3, 3)))), encode(np.full(3, 1 / 3))
    answer = fedwad_pb2.FedWadAnswer(pair_index=0, round=0, points=points, weights=weights,
                                     distance=draw(_floats(0.0, 10.0)), optimal=draw(st.booleans()))
    defects = []
    for _ in range(draw(st.sampled_from([0, 1, 1, 2]))):
        how = draw(st.sampled_from(["points", "weights", "size", "negative", "zero", "distance", "round", "pair",
                                    "dimension", "missing"]))
        if how == "points":
            answer.points.CopyFrom(draw(broken(answer.points)))
        elif how == "weights":
            answer.weights.CopyFrom(draw(broken(answer.weights)))
        elif how == "size":  # not xi's support size: 10^6 atoms (header only) or 5
            answer.points.CopyFrom(draw(st.sampled_from([encode(np.zeros((5, 2))),
                                                         tensor_pb2.Tensor(dtype=tensor_pb2.DTYPE_FLOAT64,
                                                                           shape=[10**6, 2])])))
        elif how == "negative":
            answer.weights.CopyFrom(encode(np.array([0.5, 0.7, -0.2])))
        elif how == "zero":
            answer.weights.CopyFrom(encode(np.zeros(3)))
        elif how == "distance":
            answer.distance = draw(st.sampled_from([-1.0, math.nan, math.inf]))
        elif how == "round":
            answer.round = draw(st.one_of(st.integers(1, 5), EDGE_INTS.filter(bool)))
        elif how == "pair":
            answer.pair_index = draw(EDGE_INTS.filter(bool))
        elif how == "dimension":
            answer.points.CopyFrom(encode(np.zeros((3, 3))))
        else:
            answer.ClearField(draw(st.sampled_from(["points", "weights"])))
        defects.append(how)
    return answer, defects


@settings(FUZZ, max_examples=12)
@given(data=st.data())
def test_fedwad_parties_answer_every_message(channel, data):
    """Alice joins a two-party session properly; bob sends what the fuzzer draws: a join
    or not, then an answer to the first round. A bad message ends bob's call with a
    status naming the field (the session fails, and alice is told so); nothing hangs."""
    stub = fedwad_pb2_grpc.FedWadServiceStub(channel)
    session = stub.CreateSession(fedwad_pb2.CreateSessionRequest(
        parties=["alice", "bob"], config=fedwad_pb2.FedWadConfig(support_size=3, rounds=2, t=0.5, seed=1),
        inactivity_timeout_seconds=30), timeout=10).session
    codes = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION)
    known = {"join", "parties"} | _fields_of(fedwad_pb2.ParticipateRequest())
    alice, bob = _Stream(stub), _Stream(stub)
    try:
        alice.send(join=fedwad_pb2.FedWadJoin(session_id=session.session_id, party="alice", dimension=2,
                                              sample_size=3))
        assert alice.receive().WhichOneof("message") == "joined"
        how, first = data.draw(fedwad_first_messages(session.session_id))
        bob.send(**first)
        try:
            assert bob.receive().WhichOneof("message") == "joined"
        except grpc.RpcError as error:
            _named(error, "", known, codes)
            assert how != "good", (how, error.details())
            return
        assert how == "good", how
        assert alice.receive().WhichOneof("message") == "round" and bob.receive().WhichOneof("message") == "round"
        answer, defects = data.draw(fedwad_answers())
        bob.send(answer=answer)
        if not defects:  # a good answer: the round waits for alice, and we end it here
            stub.CancelSession(fedwad_pb2.CancelSessionRequest(session_id=session.session_id), timeout=10)
        with pytest.raises(grpc.RpcError) as caught:
            bob.receive()
        if defects:
            fields = _named(caught.value, "parties[bob].", {"answer"}, (grpc.StatusCode.INVALID_ARGUMENT,))
            event(f"answer refused on {fields[0]}")
        else:
            assert caught.value.code() == grpc.StatusCode.ABORTED, caught.value
        with pytest.raises(grpc.RpcError) as caught:
            alice.receive()
        assert caught.value.code() in (grpc.StatusCode.ABORTED, grpc.StatusCode.INVALID_ARGUMENT), caught.value
    finally:
        alice.close()
        bob.close()
        stub.CancelSession(fedwad_pb2.CancelSessionRequest(session_id=session.session_id), timeout=10)
