"""Size and memory limits, checked before any allocation and named in the refusal.

Two servers with small limits: one counts points and dense elements, the other memory.
A Sinkhorn call on points that is too large to solve densely runs online (the cost
computed in blocks) and still answers; calls that need a dense matrix are refused.
"""

import numpy as np
import pytest

from monge.client import InvalidArgumentError, requests
from monge.server import sinkhorn_batch, sinkhorn_call
from monge.server.config import MIB, ServerConfig
from monge.solvers.sinkhorn import sinkhorn as solve_in_process


@pytest.fixture(scope="module")
def counted(make_module_server):
    """At most 1000 points per measure and 10,000 dense elements."""
    return make_module_server(max_points=1000, max_dense_elements=10_000)


@pytest.fixture(scope="module")
def budgeted(make_module_server):
    """At most 1 MiB of memory per request."""
    return make_module_server(max_request_memory_bytes=1 * MIB)


def _client(server):
    from monge.client import Client

    return Client(server.target, timeout=60)


def _refused(call, field, *words):
    with pytest.raises(InvalidArgumentError) as caught:
        call()
    fields = {v.field: v.description for v in caught.value.violations}
    assert field in fields, caught.value
    for word in words:
        assert word in fields[field], fields[field]
    return fields[field]


def _points(n, d=2, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(dtype)


# -- points per measure ------------------------------------------------------------


def test_points_per_measure_for_every_call(counted):
    many, few = _points(1001), _points(10)
    with _client(counted) as c:
        _refused(lambda: c.sinkhorn(many, few), "x", "1,001 points", "max_points")
        _refused(lambda: c.exact_transport(few, many), "y", "max_points")
        _refused(lambda: c.sparsity_constrained(cost_matrix=np.ones((10, 1001))), "cost_matrix", "max_points")
        _refused(lambda: c.submit(requests.sinkhorn(few, many)), "items[0].sinkhorn.y", "max_points")


# -- dense elements: online Sinkhorn, refusals for the rest --------------------------


def test_sinkhorn_on_points_over_the_dense_limit_runs_online(counted):
    x, y = _points(200, seed=1), _points(150, seed=2) + 0.5
    with _client(counted) as c:
        r = c.sinkhorn(x, y, epsilon=0.5, threshold=1e-9)
    reference = solve_in_process(x, y, epsilon=0.5, threshold=1e-9)
    assert r.converged
    assert r.cost == pytest.approx(float(reference.cost), rel=1e-7)
    np.testing.assert_allclose(r.f, np.asarray(reference.f), atol=1e-6)


def test_unbalanced_sinkhorn_runs_online_too(counted):
    x, y = _points(200, seed=3), _points(150, seed=4)
    with _client(counted) as c:
        r = c.sinkhorn(x, y, epsilon=0.5, reg_m=1.0, threshold=1e-9)
    reference = solve_in_process(x, y, epsilon=0.5, reg_m=1.0, threshold=1e-9)
    assert r.converged and r.cost == pytest.approx(float(reference.cost), rel=1e-7)


def test_dense_only_calls_over_the_dense_limit_are_refused(counted):
    x, y = _points(200), _points(150)
    with _client(counted) as c:
        _refused(lambda: c.sinkhorn(x, y, method="kernel"), "method",
                 "SINKHORN_METHOD_KERNEL", "max_dense_elements", "SINKHORN_METHOD_AUTO")
        _refused(lambda: c.sinkhorn(x, y, method="sns"), "method", "max_dense_elements")
        _refused(lambda: c.sinkhorn(cost_matrix=np.ones((200, 150))), "cost_matrix", "limit of 10,000")
        _refused(lambda: c.sinkhorn(x, y, return_plan=True), "return_plan", "max_dense_elements")
        _refused(lambda: c.sparsity_constrained(x, y), "x", "max_dense_elements")
        _refused(lambda: c.exact_transport(x, y, p=3), "p", "max_dense_elements")
        # The network simplex on points with p = 1 or 2 computes costs lazily: no limit.
        assert c.exact_transport(x, y).converged


# -- memory -----------------------------------------------------------------------


def test_calls_over_the_memory_budget_are_refused(budgeted):
    with _client(budgeted) as c:
        cost = np.random.default_rng(0).random((200, 200))
        _refused(lambda: c.sinkhorn(cost_matrix=cost), "cost_matrix", "max_request_memory_bytes = 1,048,576")
        _refused(lambda: c.sparsity_constrained(cost_matrix=cost), "cost_matrix", "max_request_memory_bytes")
        _refused(lambda: c.exact_transport(cost_matrix=np.random.default_rng(0).random((250, 250))),
                 "cost_matrix", "max_request_memory_bytes")
        # Too large even with the cost computed in blocks (and over the dense limit).
        line = np.linspace(0, 1, 20_000)[:, None]
        _refused(lambda: c.sinkhorn(line, line), "x", "in blocks", "max_request_memory_bytes")
        _refused(lambda: c.submit(requests.sinkhorn(cost_matrix=cost)), "items[0].sinkhorn.cost_matrix",
                 "max_request_memory_bytes")
        # Small calls still answer.
        assert c.sinkhorn(_points(10), _points(10), epsilon=1.0).converged


def _parse(config, **kwargs):
    return sinkhorn_call.parse(requests.sinkhorn(**kwargs), config)


def test_routing_by_memory_estimate():
    # 2048 x 2048 float32: dense needs 4 matrices (64 MiB), online 3 blocks of 1024 rows (24 MiB).
    x = _points(2048, dtype=np.float32)
    roomy = ServerConfig(max_request_memory_bytes=128 * MIB)
    tight = ServerConfig(max_request_memory_bytes=32 * MIB)
    tiny = ServerConfig(max_request_memory_bytes=16 * MIB)
    assert not _parse(roomy, x=x, y=x).online
    assert _parse(tight, x=x, y=x).online
    assert _parse(tight, x=x, y=x, method="log").online
    with pytest.raises(sinkhorn_call.InvalidArgument) as caught:
        _parse(tight, x=x, y=x, method="kernel")
    assert caught.value.violations[0][0] == "method"
    with pytest.raises(sinkhorn_call.InvalidArgument) as caught:
        _parse(tiny, x=x, y=x)
    assert caught.value.violations[0][0] == "x"
    # float64 doubles every estimate.
    assert _parse(roomy, x=x.astype(np.float64), y=x.astype(np.float64)).online is False
    assert _parse(tight, x=x[:700].astype(np.float64), y=x[:700].astype(np.float64)).online is False


def test_the_servers_size_buckets_are_the_solvers():
    from monge.server import limits
    from monge.solvers.sinkhorn import size_bucket

    for size in [*range(1, 5000), 2**20 - 1, 2**20, 2**20 + 1, 3 * 2**21 + 5]:
        assert limits.size_bucket(size) == size_bucket(size), size


def test_batches_are_capped_by_memory():
    x = _points(300)
    call = _parse(ServerConfig(), x=x, y=x)
    key = sinkhorn_batch.batch_key(call)  # 512 x 512 buckets of float64: 12 MiB with plans
    assert sinkhorn_batch.max_batch_for_memory(key, 4096 * MIB) == 256
    assert sinkhorn_batch.max_batch_for_memory(key, 100 * MIB) == 8
    assert sinkhorn_batch.max_batch_for_memory(key, 1 * MIB) == 1
    online = _parse(ServerConfig(max_dense_elements=1000), x=x, y=x)
    assert online.online and sinkhorn_batch.batch_key(online) is None
