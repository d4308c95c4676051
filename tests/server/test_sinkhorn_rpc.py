"""Sinkhorn through the real server and client, against POT."""

import numpy as np
import ot
import pytest

from monge.client import DeadlineExceededError


def _problem(rng, n, m, d=4, dtype=np.float64):
    x = rng.normal(size=(n, d)).astype(dtype)
    y = (rng.normal(size=(m, d)) + 1.0).astype(dtype)
    a = rng.random(n) + 0.2
    b = rng.random(m) + 0.2
    return x, y, a / a.sum(), b / b.sum()


@pytest.mark.parametrize("seed,n,m,eps", [(1, 30, 40, 0.5), (2, 80, 60, 0.1), (3, 50, 50, 1.0)])
def test_balanced_agrees_with_pot(client, seed, n, m, eps):
    x, y, a, b = _problem(np.random.default_rng(seed), n, m)
    r = client.sinkhorn(x, y, a, b, epsilon=eps, threshold=1e-11, max_iterations=100_000)
    reference = ot.sinkhorn2(a, b, ot.dist(x, y), eps, stopThr=1e-14, numItermax=1_000_000)
    assert r.converged and r.diagnostics.status == "converged"
    assert r.cost == pytest.approx(reference, rel=1e-6)
    assert r.f.shape == (n,) and r.g.shape == (m,) and r.f.dtype == np.float64
    assert r.marginal_error < 1e-10


@pytest.mark.parametrize("reg_m", [1.0, (0.3, 5.0)])
def test_unbalanced_agrees_with_pot(client, rng, reg_m):
    x, y, a, b = _problem(rng, 40, 30)
    a = 2.0 * a  # unequal masses: only an unbalanced problem accepts them
    r = client.sinkhorn(x, y, a, b, epsilon=0.2, reg_m=reg_m, threshold=1e-12)
    reference = ot.unbalanced.sinkhorn_unbalanced2(
        a, b, ot.dist(x, y), 0.2, reg_m, stopThr=1e-15, numItermax=1_000_000
    )
    assert r.converged
    assert r.cost == pytest.approx(float(reference), rel=1e-6)


def test_plan_is_returned_on_request_only(client, rng):
    x, y, a, b = _problem(rng, 20, 25)
    assert client.sinkhorn(x, y, a, b, epsilon=0.3).plan is None
    r = client.sinkhorn(x, y, a, b, epsilon=0.3, threshold=1e-12, return_plan=True)
    reference = ot.sinkhorn(a, b, ot.dist(x, y), 0.3, stopThr=1e-14, numItermax=100_000)
    np.testing.assert_allclose(r.plan, reference, atol=1e-12)
    assert np.sum(r.plan * ot.dist(x, y)) == pytest.approx(r.cost, rel=1e-12)


def test_cost_matrix_and_uniform_weights(client, rng):
    x, y, _, _ = _problem(rng, 15, 20)
    cost = ot.dist(x, y, metric="euclidean")
    r = client.sinkhorn(cost_matrix=cost, epsilon=0.1, threshold=1e-12)
    reference = ot.sinkhorn2(np.full(15, 1 / 15), np.full(20, 1 / 20), cost, 0.1, stopThr=1e-14,
                             numItermax=100_000)
    assert r.cost == pytest.approx(reference, rel=1e-6)
    by_points = client.sinkhorn(x, y, cost="euclidean", epsilon=0.1, threshold=1e-12)
    assert by_points.cost == pytest.approx(r.cost, rel=1e-9)


def test_float32_stays_float32(client, rng):
    x, y, a, b = _problem(rng, 30, 30, dtype=np.float32)
    r = client.sinkhorn(x, y, epsilon=0.5, threshold=1e-5)
    reference = ot.sinkhorn2(np.full(30, 1 / 30), np.full(30, 1 / 30), ot.dist(x.astype(float), y.astype(float)),
                             0.5, stopThr=1e-12)
    assert r.f.dtype == np.float32 and r.converged
    assert r.cost == pytest.approx(reference, rel=1e-4)


def test_not_converged_is_a_result_not_an_error(client, rng):
    x, y, a, b = _problem(rng, 30, 30)
    r = client.sinkhorn(x, y, epsilon=1e-3, threshold=1e-12, max_iterations=10)
    assert not r.converged
    assert r.diagnostics.status == "max_iterations"
    assert r.iterations == 10
    assert "iteration cap" in r.message


def test_hundred_megabyte_request(client, rng):
    # Two points in a very high dimension: the payload is large, the solve is trivial.
    d = 6_600_000
    x = rng.normal(size=(2, d)).astype(np.float64) / np.sqrt(d)
    y = x[::-1].copy()
    assert x.nbytes + y.nbytes > 100e6
    r = client.sinkhorn(x, y, epsilon=1.0, threshold=1e-9)
    reference = ot.sinkhorn2(np.full(2, 0.5), np.full(2, 0.5), ot.dist(x, y), 1.0, stopThr=1e-12)
    assert r.cost == pytest.approx(reference, rel=1e-6)


def test_deadline_is_honoured(client, rng):
    x, y, _, _ = _problem(rng, 400, 400)
    with pytest.raises(DeadlineExceededError):
        client.sinkhorn(x, y, epsilon=1e-4, threshold=1e-14, max_iterations=1_000_000, timeout=0.2)
