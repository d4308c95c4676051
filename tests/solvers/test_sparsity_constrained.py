import numpy as np
import ot
import pytest

from monge.solvers import OTProblem, Status
from monge.solvers.sparsity_constrained import (
    SparsityConstrainedConfig,
    solve,
    sparsity_constrained,
)


def _problem(rng, n, m):
    x, y = rng.normal(size=(n, 2)), rng.normal(size=(m, 2))
    a, b = rng.random(n) + 0.1, rng.random(m) + 0.1
    return ot.dist(x, y), a / a.sum(), b / b.sum()


def _nonzeros_per_column(out):
    plan = np.asarray(out.plan())
    return (plan > 0).sum(axis=0), plan


def _uniform(rng, n):
    x, y = rng.normal(size=(n, 2)), rng.normal(size=(n, 2))
    return ot.dist(x, y), np.full(n, 1.0 / n), np.full(n, 1.0 / n)


@pytest.mark.parametrize("k", [2, 3])
def test_at_most_k_per_column_and_converged(rng, k):
    c, a, b = _uniform(rng, 30)
    out = sparsity_constrained(cost_matrix=c, a=a, b=b, gamma=0.2, k=k)
    assert bool(out.converged), out.message
    counts, plan = _nonzeros_per_column(out)
    assert counts.max() <= k and int(out.max_nonzeros_per_column) <= k
    assert out.values.shape == (30 * k,)  # sparse triple, never n x m
    assert float(out.marginal_error) < 1e-6
    np.testing.assert_allclose(plan.sum(1), a, atol=1e-7)
    np.testing.assert_allclose(plan.sum(0), b, atol=1e-12)  # exact by construction
    # The plan is the KKT form on its support: P_ij = (alpha_i + beta_j - C_ij) / gamma.
    r, s = np.asarray(out.rows), np.asarray(out.cols)
    v = np.asarray(out.values)
    on = v > 0
    np.testing.assert_allclose(
        (np.asarray(out.alpha)[r[on]] + np.asarray(out.beta)[s[on]] - c[r[on], s[on]]) / 0.2,
        v[on], atol=1e-9,
    )
    np.testing.assert_allclose(float(out.objective), float(out.dual_objective), rtol=1e-6)


def test_k1_recovers_exact_ot(rng):
    # n = m with uniform weights: the optimum is a permutation, unique for random costs.
    n = 24
    c = rng.random((n, n))
    u = np.full(n, 1.0 / n)
    out = sparsity_constrained(cost_matrix=c, a=u, b=u, gamma=0.5, k=1)
    assert bool(out.converged), out.message
    assert float(out.marginal_error) < 1e-6
    np.testing.assert_allclose(float(out.cost), ot.emd2(u, u, c), rtol=1e-12)
    counts, plan = _nonzeros_per_column(out)
    assert counts.max() == 1
    np.testing.assert_allclose(plan, ot.emd(u, u, c), atol=1e-12)


@pytest.mark.parametrize("k", [1, 2, 8])
def test_binding_k_converges_on_uniform_problems(k):
    # n = m points of equal weight, gamma small enough that quadratic OT wants about
    # three sources per column: k = 1 and 2 bind. Stage 1's top-k supports alone
    # need not admit a feasible plan; the assignment-based supports always do.
    rng = np.random.default_rng(11)
    n = 80
    c, a, b = _uniform(rng, n)
    out = sparsity_constrained(cost_matrix=c, a=a, b=b, gamma=0.02, k=k, threshold=1e-9)
    assert bool(out.converged), out.message
    assert float(out.marginal_error) < 1e-6
    counts, plan = _nonzeros_per_column(out)
    assert counts.max() <= k
    np.testing.assert_allclose(plan.sum(1), a, atol=1e-8)
    np.testing.assert_allclose(plan.sum(0), b, atol=1e-8)
    exact = ot.emd2(a, b, c)
    if k == 1:  # a permutation: the assignment, whose quadratic term is fixed
        np.testing.assert_allclose(float(out.cost), exact, rtol=1e-12)
        np.testing.assert_allclose(float(out.objective), exact + 0.01 / n, rtol=1e-12)
    else:  # the k = 1 plan is feasible here, so the optimum is no worse (up to the
        # objective's accuracy at a 1e-9 marginal error)
        one = sparsity_constrained(cost_matrix=c, a=a, b=b, gamma=0.02, k=1)
        assert float(out.objective) <= float(one.objective) * (1 + 1e-9)


def test_large_k_is_quadratic_regularisation(rng):
    c, a, b = _problem(rng, 20, 26)
    gamma = 1.0
    semi = sparsity_constrained(cost_matrix=c, a=a, b=b, gamma=gamma, k=20, threshold=1e-10)
    dual = sparsity_constrained(cost_matrix=c, a=a, b=b, gamma=gamma, k=20, threshold=1e-10,
                                formulation="dual")
    assert bool(semi.converged) and bool(dual.converged)
    # With k = n the problem is convex: both duals reach the same primal optimum.
    np.testing.assert_allclose(float(semi.objective), float(dual.objective), rtol=1e-9)
    np.testing.assert_allclose(np.asarray(semi.plan()), np.asarray(dual.plan()), atol=1e-8)
    # POT's quadratic (l2) regularisation, stopped less tightly than ours.
    ref = ot.smooth.smooth_ot_dual(a, b, c, gamma, reg_type="l2", stopThr=1e-15,
                                   numItermax=100_000)
    ref_objective = np.sum(ref * c) + 0.5 * gamma * np.sum(ref * ref)
    np.testing.assert_allclose(float(semi.objective), ref_objective, rtol=1e-6)


def test_binding_constraint_reports_honestly(rng):
    # Unequal weights and a binding k: the dual optimum can sit on a tie between
    # candidates, and then no k-sparse plan is read off it. The solver must say so
    # (and still respect k), not claim convergence.
    c, a, b = _problem(rng, 30, 24)
    out = sparsity_constrained(cost_matrix=c, a=a, b=b, gamma=0.2, k=2,
                               support_iterations=100, max_iterations=200)
    counts, _ = _nonzeros_per_column(out)
    assert counts.max() <= 2
    assert bool(out.converged) == (float(out.marginal_error) <= 1e-8)
    if not bool(out.converged):
        assert int(out.status) == Status.MAX_ITERATIONS


def test_zero_weight_column(rng):
    c, a, b = _problem(rng, 12, 10)
    b[3] = 0.0
    b /= b.sum()
    # k = n: the convex case, which converges for any weights.
    out = sparsity_constrained(cost_matrix=c, a=a, b=b, gamma=0.3, k=12)
    assert bool(out.converged), out.message
    plan = np.asarray(out.plan())
    assert np.all(plan[:, 3] == 0.0)


def test_bad_parameters_name_the_parameter(rng):
    c, a, b = _problem(rng, 5, 4)
    with pytest.raises(ValueError, match="^k must"):
        SparsityConstrainedConfig(k=0)
    with pytest.raises(ValueError, match="^k must be at most n"):
        solve(OTProblem.from_matrix(c, a, b), SparsityConstrainedConfig(k=6))
    with pytest.raises(ValueError, match="^gamma must"):
        SparsityConstrainedConfig(gamma=0.0)
    with pytest.raises(ValueError, match="^gamma must"):
        SparsityConstrainedConfig(gamma=float("nan"))
    with pytest.raises(ValueError, match="^formulation"):
        SparsityConstrainedConfig(formulation="primal")
    c_bad = c.copy()
    c_bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="cost_matrix"):
        sparsity_constrained(cost_matrix=c_bad, a=a, b=b)
    assert Status.CONVERGED == 0


def test_non_square_uniform_problem_converges_when_k_binds():
    # n != m: no assignment makes the supports feasible, so stage 1 must run long
    # enough for its top-k supports to admit a plan (with 100 iterations here they did
    # not, and stage 2 stopped at its cap with an L1 error of 0.29).
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 2)), rng.normal(size=(200, 2)) + 1.0
    c = ot.dist(x, y)
    a, b = np.full(300, 1 / 300), np.full(200, 1 / 200)
    out = sparsity_constrained(cost_matrix=c, a=a, b=b, gamma=1.0, k=4)
    assert bool(out.converged), out.message
    assert float(out.marginal_error) < 1e-6
    counts, _ = _nonzeros_per_column(out)
    assert counts.max() <= 4
