"""Exact, sparsity-constrained and SNS solves through the real server and client.

Shapes are shared between tests so that each solver program compiles once.
"""

import time

import grpc
import numpy as np
import ot
import pytest
import scipy.sparse

from monge.client import DeadlineExceededError, InvalidArgumentError, requests
from monge.v1.codec import encode
from monge.v1 import service_pb2_grpc, sparsity_constrained_pb2

N, M, D = 20, 15, 2
K = 4  # most nonzeros per column in the sparsity-constrained tests (problem 7 converges)


def _problem(seed, n=N, m=M, d=D):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = rng.normal(size=(m, d)) + 0.5
    a = rng.random(n) + 0.2
    b = rng.random(m) + 0.2
    return x, y, a / a.sum(), b / b.sum()


def _quantile_wp(x, y, a, b, p):
    """W_p^p on the line from the quantile functions, computed independently of the
    server: integrate |F^-1(t) - G^-1(t)|^p over the merged breakpoints of both CDFs."""
    ix, iy = np.argsort(x), np.argsort(y)
    cu, cv = np.cumsum(a[ix]), np.cumsum(b[iy])
    ts = np.unique(np.concatenate([[0.0], cu, cv]))
    ts = ts[ts <= 1.0]
    mid = (ts[:-1] + ts[1:]) / 2
    qx = x[ix][np.minimum(np.searchsorted(cu, mid), len(x) - 1)]
    qy = y[iy][np.minimum(np.searchsorted(cv, mid), len(y) - 1)]
    return float(np.sum(np.diff(ts) * np.abs(qx - qy) ** p))


# -- exact ----------------------------------------------------------------------------


def test_exact_network_simplex_equals_emd2(client):
    x, y, a, b = _problem(1)
    r = client.exact_transport(x, y, a, b)
    reference = ot.emd2(a, b, ot.dist(x, y))
    assert r.method == "network_simplex" and r.converged
    assert r.cost == pytest.approx(reference, rel=1e-10)
    assert r.distance == pytest.approx(np.sqrt(reference), rel=1e-10)
    assert isinstance(r.plan, scipy.sparse.coo_array) and r.plan.shape == (N, M)
    assert r.plan.nnz <= N + M - 1
    dense = r.plan.toarray()
    np.testing.assert_allclose(dense.sum(1), a, atol=1e-12)
    np.testing.assert_allclose(dense.sum(0), b, atol=1e-12)
    assert np.sum(dense * ot.dist(x, y)) == pytest.approx(r.cost, rel=1e-12)
    assert r.f.shape == (N,) and r.g.shape == (M,)
    # Dual feasibility and complementary slackness of the returned potentials.
    slack = ot.dist(x, y) - r.f[:, None] - r.g[None, :]
    assert slack.min() > -1e-10
    assert np.abs(slack[dense > 0]).max() < 1e-10


def test_exact_cost_matrix_euclidean_and_wp(client):
    x, y, a, b = _problem(2)
    euclidean = ot.dist(x, y, metric="euclidean")
    by_matrix = client.exact_transport(cost_matrix=euclidean, a=a, b=b)
    assert by_matrix.cost == pytest.approx(ot.emd2(a, b, euclidean), rel=1e-10)
    assert by_matrix.distance is None
    w1 = client.exact_transport(x, y, a, b, cost="euclidean")
    assert w1.distance == pytest.approx(by_matrix.cost, rel=1e-10)
    w3 = client.exact_transport(x, y, a, b, p=3)
    assert w3.cost == pytest.approx(ot.emd2(a, b, euclidean**3), rel=1e-10)
    assert w3.distance == pytest.approx(w3.cost ** (1 / 3), rel=1e-12)


@pytest.mark.parametrize("p", [1.0, 1.5, 2.0])
def test_exact_1d_is_the_sorting_formula(client, p):
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(40, 1)), rng.exponential(size=(30, 1))
    a, b = rng.random(40) + 0.1, rng.random(30) + 0.1
    a, b = a / a.sum(), b / b.sum()
    r = client.exact_transport(x, y, a, b, p=p)
    assert r.method == "sorting_1d" and r.converged and r.f is None
    expected = _quantile_wp(x[:, 0], y[:, 0], a, b, p)
    assert r.cost == pytest.approx(expected, rel=1e-10)
    assert r.cost == pytest.approx(ot.wasserstein_1d(x[:, 0], y[:, 0], a, b, p=p), rel=1e-8)
    assert r.distance == pytest.approx(expected ** (1 / p), rel=1e-10)
    assert r.plan.nnz <= 40 + 30 - 1
    np.testing.assert_allclose(r.plan.toarray().sum(0), b, atol=1e-12)
    if p == 2.0:
        simplex = client.exact_transport(x, y, a, b, method="network_simplex")
        assert simplex.method == "network_simplex"
        assert simplex.cost == pytest.approx(r.cost, rel=1e-10)


# -- SNS ------------------------------------------------------------------------------


def test_sns_equals_sinkhorn(client):
    x, y, a, b = _problem(4)
    kwargs = dict(epsilon=0.01, threshold=1e-11, max_iterations=100_000)
    sns = client.sinkhorn(x, y, a, b, method="sns", **kwargs)
    log = client.sinkhorn(x, y, a, b, method="log", **kwargs)
    kernel = client.sinkhorn(x, y, a, b, method="kernel", **kwargs)
    assert sns.converged and log.converged and kernel.converged
    assert sns.cost == pytest.approx(log.cost, abs=1e-8)
    assert sns.objective == pytest.approx(log.objective, abs=1e-8)
    assert kernel.cost == pytest.approx(log.cost, abs=1e-8)
    # Potentials agree up to the constant shift (f + c, g - c).
    shift = np.mean(sns.f - log.f)
    np.testing.assert_allclose(sns.f - shift, log.f, atol=1e-7)
    np.testing.assert_allclose(sns.g + shift, log.g, atol=1e-7)
    assert log.newton is None and kernel.newton is None
    n = sns.newton
    assert n is not None and n.kept_per_row >= 1
    assert n.sinkhorn_iterations + n.newton_iterations == sns.iterations
    assert n.newton_iterations > 0  # small epsilon: SNS switched to Newton steps


def test_sns_refuses_unbalanced(client):
    x, y, a, b = _problem(5)
    with pytest.raises(InvalidArgumentError) as caught:
        client.sinkhorn(x, y, a, b, method="sns", reg_m=1.0)
    assert caught.value.field == "method"


# -- sparsity-constrained -------------------------------------------------------------


def test_sparsity_constrained_has_at_most_k_per_column(client):
    x, y, a, b = _problem(7)
    r = client.sparsity_constrained(x, y, a, b, k=K, gamma=1.0, threshold=1e-9)
    assert r.converged and r.marginal_error < 1e-8
    assert isinstance(r.plan, scipy.sparse.coo_array) and r.plan.shape == (N, M)
    assert np.all(r.plan.data != 0)  # the solver's zero entries are not sent
    per_column = np.bincount(r.plan.col, minlength=M)
    assert per_column.max() <= K and r.max_nonzeros_per_column == per_column.max()
    dense = r.plan.toarray()
    assert dense.min() >= 0
    np.testing.assert_allclose(dense.sum(0), b, atol=1e-9)
    np.testing.assert_allclose(dense.sum(1), a, atol=1e-9)
    assert np.sum(dense * ot.dist(x, y)) == pytest.approx(r.cost, rel=1e-10)
    assert r.objective == pytest.approx(r.cost + 0.5 * np.sum(dense**2), rel=1e-10)
    assert r.dual_objective <= r.objective + 1e-9
    # A feasible plan costs at least the exact optimum.
    assert r.cost >= ot.emd2(a, b, ot.dist(x, y)) - 1e-9
    assert r.alpha.shape == (N,) and r.beta.shape == (M,)


def test_sparsity_constrained_binding_k_is_a_result(client):
    # k = 2 binds at a tie here: the solver says so through its status, not an error.
    x, y, a, b = _problem(6)
    r = client.sparsity_constrained(x, y, a, b, k=2, gamma=1.0, threshold=1e-9, max_iterations=50)
    assert not r.converged and r.diagnostics.status == "max_iterations"
    assert np.bincount(r.plan.col, minlength=M).max() <= 2


# -- jobs -----------------------------------------------------------------------------


def test_three_kinds_in_one_job(client):
    x, y, a, b = _problem(7)
    batch = [
        requests.exact_transport(x, y, a, b),
        requests.sparsity_constrained(x, y, a, b, k=K, gamma=1.0, threshold=1e-9),
        requests.sinkhorn(x, y, a, b, method="sns", epsilon=0.01, threshold=1e-11, max_iterations=100_000),
        requests.sparsity_constrained(x, y, a, b, k=N + 1),
    ]
    results = client.result(client.submit(batch))
    assert [item.ok for item in results] == [True, True, True, False]
    exact, sparse, sns = (item.value for item in results[:3])
    assert exact.cost == pytest.approx(ot.emd2(a, b, ot.dist(x, y)), rel=1e-10)
    assert isinstance(sparse.plan, scipy.sparse.coo_array)
    assert sparse.converged and np.bincount(sparse.plan.col, minlength=M).max() <= K
    direct = client.sparsity_constrained(x, y, a, b, k=K, gamma=1.0, threshold=1e-9)
    assert sparse.cost == pytest.approx(direct.cost, rel=1e-12)
    assert sns.newton is not None and sns.converged
    assert results[3].error.field == "items[3].sparsity_constrained.k"


# -- bad input ------------------------------------------------------------------------


def _fails_on(call, field, *args, **kwargs):
    with pytest.raises(InvalidArgumentError) as caught:
        call(*args, **kwargs)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in [v.field for v in caught.value.violations], caught.value
    return caught.value


@pytest.mark.parametrize("field,kwargs", [
    ("p", dict(p=0.5)),
    ("p", dict(p=float("inf"))),
    ("p", dict(p=2.0, cost="euclidean")),
    ("max_iterations", dict(max_iterations=0)),
    ("method", dict(method="sorting_1d")),
])
def test_exact_bad_parameters(client, field, kwargs):
    x, y, a, b = _problem(8)
    _fails_on(client.exact_transport, field, x, y, a, b, **kwargs)


def test_exact_bad_measures(client):
    x, y, a, b = _problem(9)
    _fails_on(client.exact_transport, "b", x, y, a, 2 * b)  # unequal masses
    cost = ot.dist(x, y)
    _fails_on(client.exact_transport, "p", cost_matrix=cost, p=2.0)
    cost[3, 4] = np.inf
    _fails_on(client.exact_transport, "cost_matrix", cost_matrix=cost)
    huge = x * 1e200  # finite points whose squared distances overflow
    error = _fails_on(client.exact_transport, "x", huge, y)
    assert "finite" in error.violations[0].description


def test_exact_size_over_the_limit_is_refused_at_once(client):
    from monge.solvers.exact import ExactConfig

    limit = ExactConfig().max_size
    x = np.random.default_rng(10).normal(size=(limit + 1, 2))
    error = _fails_on(client.exact_transport, "x", x, x[:5], timeout=10)
    assert f"{limit:,}" in error.violations[0].description
    # The same size on the line goes to sorting, which takes it.
    assert client.exact_transport(x[:, :1], x[:5, :1], timeout=30).method == "sorting_1d"


def test_exact_deadline_frees_the_worker_at_once(client):
    # POT's network simplex is one C call that no stop flag reaches: a large one runs
    # in a child process, which the worker kills when the deadline passes.
    rng = np.random.default_rng(12)
    x, y = rng.normal(size=(4000, 2)), rng.normal(size=(4000, 2))  # several seconds
    done_before = client.info().workers[0].tasks_done
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError):
        client.exact_transport(x, y, timeout=0.5)
    while client.info().workers[0].busy:
        assert time.monotonic() - started < 30, "the worker never came back"
        time.sleep(0.02)
    freed_after = time.monotonic() - (started + 0.5)
    assert client.info().workers[0].tasks_done == done_before + 1  # it started, and stopped
    assert freed_after < 1.5, f"the worker was busy {freed_after:.2f} s after the deadline"
    asked = time.monotonic()
    assert client.exact_transport(x[:5], y[:5], timeout=10).converged
    assert time.monotonic() - asked < 2.0
    # The next large solve runs in a fresh child.
    x, y = x[:1100], y[:1100]
    u = np.full(1100, 1 / 1100)
    r = client.exact_transport(x, y, timeout=60)
    assert r.converged and r.cost == pytest.approx(ot.emd2(u, u, ot.dist(x, y)), rel=1e-10)


def test_sparsity_deadline_stops_the_solve_within_a_second(client):
    # One watched solve: the L-BFGS loop asks between iterations whether to go on.
    rng = np.random.default_rng(13)
    x, y = rng.normal(size=(1200, 2)), rng.normal(size=(1000, 2))
    a, b = rng.random(1200) + 0.5, rng.random(1000) + 0.5
    a, b = a / a.sum(), b / b.sum()
    settings = dict(k=2, gamma=0.1, max_iterations=200_000)
    client.sparsity_constrained(x, y, a, b, threshold=1e300, timeout=120, **settings)  # compiles
    done_before = client.info().workers[0].tasks_done
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError):  # a threshold no solve meets: it would run for minutes
        client.sparsity_constrained(x, y, a, b, threshold=1e-300, timeout=0.5, **settings)
    while client.info().workers[0].busy:
        assert time.monotonic() - started < 60, "the worker never came back"
        time.sleep(0.02)
    freed_after = time.monotonic() - (started + 0.5)
    assert client.info().workers[0].tasks_done == done_before + 1
    assert freed_after < 1.0, f"the worker was busy {freed_after:.2f} s after the deadline"


@pytest.mark.parametrize("field,kwargs", [
    ("k", dict(k=0)),
    ("k", dict(k=N + 1)),
    ("gamma", dict(gamma=0.0)),
    ("threshold", dict(threshold=-1.0)),
    ("max_iterations", dict(max_iterations=0)),
])
def test_sparsity_bad_parameters(client, field, kwargs):
    x, y, a, b = _problem(11)
    _fails_on(client.sparsity_constrained, field, x, y, a, b, **kwargs)


def test_sparsity_bad_measures_and_formulation(client, server):
    x, y, a, b = _problem(12)
    _fails_on(client.sparsity_constrained, "b", x, y, 3 * a, b)
    cost = ot.dist(x, y)
    cost[0, 0] = np.nan
    _fails_on(client.sparsity_constrained, "cost_matrix", cost_matrix=cost)
    request = sparsity_constrained_pb2.SparsityConstrainedTransportRequest(
        x=encode(x), y=encode(y), formulation=7)
    with grpc.insecure_channel(server.target) as channel:
        stub = service_pb2_grpc.SolverServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.SparsityConstrainedTransport(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "formulation" in caught.value.details()


def test_server_lists_the_new_solvers(client):
    solvers = client.info().solvers
    assert "ExactTransport" in solvers and "SparsityConstrainedTransport" in solvers


class _StopAfter:
    """A stop flag that turns on after `checks` checks (the worker's cancel flag's API)."""

    def __init__(self, checks):
        self.checks = checks

    def is_set(self):
        self.checks -= 1
        return self.checks < 0


def test_sns_runs_in_chunks_and_stops_between_them(monkeypatch):
    from monge.server.calls import sinkhorn as sinkhorn_call
    from monge.server.config import ServerConfig
    from monge.v1 import sinkhorn_pb2

    rng = np.random.default_rng(3)
    n = 60
    request = requests.sinkhorn(cost_matrix=rng.random((n, n)), epsilon=1 / 1200, threshold=1e-12,
                                max_iterations=100_000, method="sns")
    call = sinkhorn_call.parse(sinkhorn_pb2.SinkhornRequest.FromString(request.SerializeToString()),
                               ServerConfig())
    monkeypatch.setattr(sinkhorn_call, "SNS_CHUNK", 20)
    heard = []
    result, _, _ = sinkhorn_call.run(call, _StopAfter(2), lambda **fields: heard.append(fields))
    assert int(result["status"]) == 3 and "cancel" in result["message"]  # Status.CANCELLED
    assert int(result["iterations"]) == 40 and [h["iteration"] for h in heard] == [20, 40]
    assert result["newton"]["sinkhorn_iterations"] + result["newton"]["newton_iterations"] == 40

    # Chunks long enough for the switch to Newton add up to a converged solve.
    monkeypatch.setattr(sinkhorn_call, "SNS_CHUNK", 200)
    finished, _, _ = sinkhorn_call.run(call, _StopAfter(10**6), None)
    assert int(finished["status"]) == 0 and float(finished["marginal_error"]) <= 1e-12
    assert finished["newton"]["newton_iterations"] > 0
