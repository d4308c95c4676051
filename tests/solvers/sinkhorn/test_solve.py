import math

import numpy as np
import ot
import pytest

from monge.solvers import OTProblem, SinkhornConfig, sinkhorn
from monge.solvers.sinkhorn import solve


def _problem(rng, n, m, d=3):
    x = rng.normal(size=(n, d))
    y = rng.normal(size=(m, d)) + 1.0
    a = rng.random(n) + 0.1
    b = rng.random(m) + 0.1
    return x, y, a / a.sum(), b / b.sum()


@pytest.mark.parametrize("n,m,eps", [(20, 30, 0.5), (64, 48, 0.1)])
def test_balanced_matches_pot(rng, n, m, eps):
    x, y, a, b = _problem(rng, n, m)
    out = sinkhorn(x, y, a, b, epsilon=eps, threshold=1e-12, max_iterations=100_000)
    ref = ot.sinkhorn2(a, b, ot.dist(x, y), eps, stopThr=1e-14, numItermax=1_000_000)
    assert bool(out.converged)
    np.testing.assert_allclose(float(out.cost), ref, rtol=1e-9)
    plan = np.asarray(out.plan())
    np.testing.assert_allclose(plan.sum(1), a, atol=1e-11)
    np.testing.assert_allclose(plan.sum(0), b, atol=1e-11)


@pytest.mark.parametrize("reg_m", [1.0, (0.5, 2.0)])
def test_unbalanced_matches_pot(rng, reg_m):
    x, y, a, b = _problem(rng, 25, 35)
    out = sinkhorn(x, y, a, b, epsilon=0.2, reg_m=reg_m, threshold=1e-13)
    ref = ot.unbalanced.sinkhorn_unbalanced2(
        a, b, ot.dist(x, y), 0.2, reg_m, stopThr=1e-15, numItermax=1_000_000
    )
    assert bool(out.converged)
    np.testing.assert_allclose(float(out.cost), float(ref), rtol=1e-9)


def test_zero_weight_points_are_ignored(rng):
    x, y, a, b = _problem(rng, 12, 10)
    a_padded = np.concatenate([a, [0.0, 0.0]])
    x_padded = np.concatenate([x, rng.normal(size=(2, 3)) * 50])
    full = sinkhorn(x, y, a, b, epsilon=0.3, threshold=1e-12)
    padded = sinkhorn(x_padded, y, a_padded, b, epsilon=0.3, threshold=1e-12)
    np.testing.assert_allclose(float(padded.cost), float(full.cost), rtol=1e-10)
    assert np.all(np.asarray(padded.plan())[-2:] == 0.0)
    assert np.all(np.isfinite(np.asarray(padded.f)))


def test_cost_matrix_equals_points(rng):
    x, y, a, b = _problem(rng, 15, 15)
    from_points = sinkhorn(x, y, a, b, epsilon=0.2, cost="euclidean", threshold=1e-12)
    from_matrix = sinkhorn(cost_matrix=ot.dist(x, y, metric="euclidean"), a=a, b=b,
                           epsilon=0.2, threshold=1e-12)
    np.testing.assert_allclose(float(from_points.cost), float(from_matrix.cost), rtol=1e-10)


def test_non_convergence_is_reported(rng):
    x, y, a, b = _problem(rng, 30, 30)
    out = solve(OTProblem.from_points(x, y, a, b),
                SinkhornConfig(epsilon=1e-3, threshold=1e-12, max_iterations=20))
    assert not bool(out.converged)
    assert int(out.iterations) == 20
    assert "iteration cap" in out.message


def test_config_rejects_impossible_values():
    with pytest.raises(ValueError, match="epsilon"):
        SinkhornConfig(epsilon=0.0)
    with pytest.raises(ValueError, match="reg_m"):
        SinkhornConfig(reg_m=(-1.0, math.inf))


def test_iteration_cap_is_a_whole_number():
    # The cap is traced (one program for every cap): a float that is a whole number is
    # taken as that int, anything else is refused by name.
    import pytest
    from monge.solvers.sinkhorn import SinkhornConfig

    assert SinkhornConfig(max_iterations=1e4).max_iterations == 10_000
    for bad in (2.5, 0, -3):
        with pytest.raises(ValueError, match="max_iterations must be a whole number"):
            SinkhornConfig(max_iterations=bad)
