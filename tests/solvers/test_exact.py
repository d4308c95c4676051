import numpy as np
import ot
import pytest

from monge.solvers import OTProblem, Status
from monge.solvers.exact import ExactConfig, default_pivot_cap, emd, solve, solve_1d, wasserstein


def _weights(rng, n):
    w = rng.random(n) + 0.05
    return w / w.sum()


def _check_plan(out, a, b, atol=1e-12):
    plan = out.plan()
    assert np.all(out.values > 0)
    np.testing.assert_allclose(plan.sum(1), a, atol=atol)
    np.testing.assert_allclose(plan.sum(0), b, atol=atol)


@pytest.mark.parametrize("cost", ["sqeuclidean", "euclidean"])
def test_network_simplex_points_matches_emd2(rng, cost):
    x, y = rng.normal(size=(40, 3)), rng.normal(size=(55, 3))
    a, b = _weights(rng, 40), _weights(rng, 55)
    out = solve(OTProblem.from_points(x, y, a, b, cost=cost))
    ref = ot.emd2(a, b, ot.dist(x, y, metric=cost))
    assert out.converged and out.status == Status.CONVERGED
    np.testing.assert_allclose(out.cost, ref, rtol=1e-12)
    assert out.nnz <= 40 + 55 - 1  # a basic solution
    _check_plan(out, a, b)
    # Complementary slackness: f_i + g_j = C_ij on the support.
    c = ot.dist(x, y, metric=cost)
    np.testing.assert_allclose(out.f[out.rows] + out.g[out.cols], c[out.rows, out.cols],
                               atol=1e-10)


def test_network_simplex_matrix_with_zero_weights(rng):
    c = rng.random((30, 20))
    a, b = _weights(rng, 30), _weights(rng, 20)
    a[[3, 7]] = 0.0
    a /= a.sum()
    out = emd(c, a, b)
    np.testing.assert_allclose(out.cost, ot.emd2(a, b, c), rtol=1e-12)
    assert not np.isin(out.rows, [3, 7]).any()
    _check_plan(out, a, b)


def test_pivot_cap_is_reported():
    rng = np.random.default_rng(1)
    c = rng.random((60, 60))
    out = emd(c, config=ExactConfig(max_iterations=5))
    assert out.status == Status.MAX_ITERATIONS and not out.converged
    assert "pivot cap" in out.message
    assert default_pivot_cap(4000, 4000) > 100_000


@pytest.mark.parametrize("p", [1.0, 2.0, 1.5])
def test_sorting_matches_pot_unequal_weights(rng, p):
    x, y = rng.normal(size=17), rng.normal(size=11) * 2 + 0.3
    a, b = _weights(rng, 17), _weights(rng, 11)
    a[4] = 0.0
    a /= a.sum()
    out = solve_1d(x, y, a, b, p=p)
    ref = ot.wasserstein_1d(x, y, a, b, p=p)  # W_p^p
    np.testing.assert_allclose(out.cost, ref, rtol=1e-12)
    np.testing.assert_allclose(out.distance, ref ** (1 / p), rtol=1e-12)
    # The same as the network simplex on the dense |x - y|^p matrix.
    dense = np.abs(x[:, None] - y[None, :]) ** p
    np.testing.assert_allclose(out.cost, ot.emd2(a, b, dense), rtol=1e-10)
    assert out.nnz <= 17 + 11 - 1
    _check_plan(out, a, b)
    np.testing.assert_allclose(np.sum(out.plan() * dense), out.cost, rtol=1e-12)


def test_sorting_with_ties_and_emd2_1d(rng):
    x = np.array([0.0, 1.0, 1.0, 3.0])
    y = np.array([2.0, 0.5, 0.5])
    a, b = np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.5, 0.25, 0.25])
    out = solve_1d(x, y, a, b, p=2)
    np.testing.assert_allclose(out.cost, ot.emd2_1d(x, y, a, b, metric="sqeuclidean"),
                               rtol=1e-12)


def test_wasserstein_routes(rng):
    x, y = rng.normal(size=(25, 2)), rng.normal(size=(30, 2)) + 1
    w2 = wasserstein(x, y, p=2)
    w1 = wasserstein(x, y, p=1)
    u, v = np.full(25, 1 / 25), np.full(30, 1 / 30)
    np.testing.assert_allclose(w2.distance, np.sqrt(ot.emd2(u, v, ot.dist(x, y))), rtol=1e-12)
    np.testing.assert_allclose(w1.distance, ot.emd2(u, v, ot.dist(x, y, metric="euclidean")),
                               rtol=1e-12)
    assert w1.method == w2.method == "network_simplex"
    line = wasserstein(x[:, :1], y[:, :1], p=2)
    assert line.method == "sorting_1d"
    np.testing.assert_allclose(line.cost, ot.wasserstein_1d(x[:, 0], y[:, 0], p=2), rtol=1e-12)


def test_large_problem_is_a_clear_error():
    x = np.zeros((20, 2))
    with pytest.raises(ValueError, match="exceeds the configured maximum"):
        wasserstein(x, x, config=ExactConfig(max_size=10))
    with pytest.raises(ValueError, match="exceeds the configured maximum"):
        solve_1d(np.zeros(20), np.zeros(20), config=ExactConfig(max_size_1d=10))


def test_bad_inputs_name_the_parameter(rng):
    c = rng.random((5, 5))
    c[1, 2] = np.inf
    with pytest.raises(ValueError, match="cost_matrix"):
        emd(c)
    with pytest.raises(ValueError, match="a and b must have the same total mass"):
        emd(rng.random((3, 3)), np.ones(3), np.ones(3) / 3)
    with pytest.raises(ValueError, match="^a must"):
        emd(rng.random((3, 3)), np.array([0.5, -0.1, 0.6]))
    with pytest.raises(ValueError, match="^p must"):
        solve_1d(np.zeros(3), np.zeros(3), p=0.5)
    with pytest.raises(ValueError, match="^x contains"):
        solve_1d(np.array([0.0, np.nan]), np.zeros(3))
    with pytest.raises(ValueError, match="max_iterations"):
        ExactConfig(max_iterations=0)
