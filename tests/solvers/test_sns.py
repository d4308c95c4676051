import numpy as np
import ot
import pytest

from monge.solvers import OTProblem, SinkhornOutput, sinkhorn
from monge.solvers.sns import SNSConfig, solve, sns


def _problem(rng, n, m, d=2):
    x, y = rng.normal(size=(n, d)), rng.normal(size=(m, d)) + 0.5
    a, b = rng.random(n) + 0.1, rng.random(m) + 0.1
    return ot.dist(x, y), a / a.sum(), b / b.sum()


def _assert_same_potentials(out, ref, atol):
    # Potentials are defined up to (f + c, g - c); compare after removing the shift.
    shift = float(np.mean(np.asarray(out.f) - np.asarray(ref.f)))
    np.testing.assert_allclose(np.asarray(out.f) - shift, np.asarray(ref.f), atol=atol)
    np.testing.assert_allclose(np.asarray(out.g) + shift, np.asarray(ref.g), atol=atol)


@pytest.mark.parametrize("switch", [200.0, 1.0])
def test_matches_converged_sinkhorn_and_pot(rng, switch):
    c, a, b = _problem(rng, 40, 30)
    eps = 0.05
    out = sns(cost_matrix=c, a=a, b=b, epsilon=eps, threshold=1e-12, max_iterations=100_000,
              switch_iterations=switch)
    ref = sinkhorn(cost_matrix=c, a=a, b=b, epsilon=eps, threshold=1e-13,
                   max_iterations=100_000)
    assert isinstance(out, SinkhornOutput)
    assert bool(out.converged), out.message
    if switch == 1.0:  # forced into the Newton phase early
        assert int(out.newton_iterations) > 0 and int(out.cg_iterations) > 0
    _assert_same_potentials(out, ref, atol=1e-8)
    np.testing.assert_allclose(float(out.cost), float(ref.cost), rtol=1e-8)
    np.testing.assert_allclose(float(out.objective), float(ref.objective), rtol=1e-8)
    pot = ot.sinkhorn2(a, b, c, eps, stopThr=1e-14, numItermax=1_000_000)
    np.testing.assert_allclose(float(out.cost), pot, rtol=1e-8)
    plan = np.asarray(out.plan())
    np.testing.assert_allclose(plan.sum(1), a, atol=1e-11)
    np.testing.assert_allclose(plan.sum(0), b, atol=1e-11)
    assert int(out.iterations) == int(out.sinkhorn_iterations) + int(out.newton_iterations)


def test_fast_problems_stay_sinkhorn(rng):
    c, a, b = _problem(rng, 30, 30)
    out = sns(cost_matrix=c, a=a, b=b, epsilon=1.0, threshold=1e-10)
    # SNS's sweeps are plain Sinkhorn ones, so compare with plain (not over-relaxed) Sinkhorn.
    ref = sinkhorn(cost_matrix=c, a=a, b=b, epsilon=1.0, threshold=1e-10, overrelaxation="off")
    assert int(out.newton_iterations) == 0
    assert bool(out.converged) and float(out.marginal_error) <= 1e-10
    # Plain Sinkhorn checks the column error of the previous g (one block late), SNS the
    # error of the final iterate: the sweep counts agree to within one check block.
    assert abs(int(out.sinkhorn_iterations) - int(ref.iterations)) <= SNSConfig().inner_iterations
    _assert_same_potentials(out, ref, atol=1e-8)


def test_random_assignment_where_sinkhorn_is_slow():
    # The paper's random assignment problem, smaller: uniform costs on [0, 1].
    rng = np.random.default_rng(3)
    n, eps = 80, 1.0 / 1200
    c = rng.random((n, n))
    u = np.full(n, 1.0 / n)
    slow = sinkhorn(cost_matrix=c, a=u, b=u, epsilon=eps, threshold=1e-10,
                    max_iterations=10_000)
    assert not bool(slow.converged)  # plain Sinkhorn needs more than 10k sweeps
    out = sns(cost_matrix=c, a=u, b=u, epsilon=eps, threshold=1e-10, max_iterations=10_000)
    assert bool(out.converged), out.message
    assert float(out.marginal_error) <= 1e-10
    assert int(out.newton_iterations) > 0
    assert int(out.iterations) < 2_000
    # Near the unregularised optimum at this epsilon.
    assert float(out.cost) >= ot.emd2(u, u, c) - 1e-12


def test_near_permutation_plan_converges_where_cg_stalls():
    # Cost range / epsilon = 1e4 (C ~ U[0, 10], eps = 1e-3): the plan is nearly a
    # permutation and the Newton system badly conditioned. Jacobi-CG on the full
    # system stopped at its cap at every step (2,000 Newton steps without converging
    # at n = 500); CG on the Schur complement converges, and when CG does reach its
    # cap the direct fallback takes over. Both converge in tens of Newton steps.
    rng = np.random.default_rng(0)
    n, eps = 150, 1e-3
    c = 10.0 * rng.random((n, n))
    u = np.full(n, 1.0 / n)
    exact = ot.emd2(u, u, c)
    problem = OTProblem.from_matrix(c, u, u)

    def run(**options):
        return solve(problem, SNSConfig(epsilon=eps, threshold=1e-11, max_iterations=400,
                                        **options))

    # max_cg_iterations=1: every CG solve "fails", so the direct solve does the work.
    for out in (run(direct_size=0), run(max_cg_iterations=1)):
        assert bool(out.converged), out.message
        assert float(out.marginal_error) <= 1e-11
        assert 0 < int(out.newton_iterations) < 60
        assert exact - 1e-12 <= float(out.cost) <= exact + eps * np.log(n)
    starved = run(max_cg_iterations=1, direct_size=0)
    assert not bool(starved.converged)


def test_bad_parameters_name_the_parameter(rng):
    for name in ("epsilon", "threshold", "switch_iterations", "hessian_shift"):
        with pytest.raises(ValueError, match=f"^{name} must"):
            SNSConfig(**{name: 0.0})
    with pytest.raises(ValueError, match="^epsilon must"):
        SNSConfig(epsilon=-1.0)
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="^dropped_mass must"):
            SNSConfig(dropped_mass=bad)
    with pytest.raises(ValueError, match="^kept_per_row"):
        SNSConfig(kept_per_row=0)
    with pytest.raises(ValueError, match="^direct_size"):
        SNSConfig(direct_size=-1)
    c, a, b = _problem(rng, 5, 4)
    c[0, 1] = np.inf
    with pytest.raises(ValueError, match="cost_matrix"):
        solve(OTProblem.from_matrix(c, a, b), SNSConfig())


def test_warm_start_in_chunks_converges():
    # The paper's problem, small, solved in chunks of 35 iterations through init=
    # (one compiled program: the same cap and an init every time), as a cancellable
    # caller would run it.
    rng = np.random.default_rng(5)
    n, eps = 40, 1.0 / 300
    c = rng.random((n, n))
    u = np.full(n, 1.0 / n)
    f, g = np.zeros(n), np.zeros(n)
    for chunk in range(1, 21):
        out = sns(cost_matrix=c, a=u, b=u, epsilon=eps, threshold=1e-11, max_iterations=35,
                  init=(f, g))
        if bool(out.converged):
            break
        f, g = out.f, out.g
    assert bool(out.converged) and chunk > 1
    assert int(out.newton_iterations) > 0 or chunk > 2
    assert float(out.marginal_error) <= 1e-11
    # Marginals at 1e-11 pin the (strictly concave) dual optimum; the cost is then
    # just above the unregularised optimum at this small epsilon.
    assert ot.emd2(u, u, c) - 1e-12 <= float(out.cost) <= ot.emd2(u, u, c) + 2 * eps
    with pytest.raises(ValueError, match="^init"):
        sns(cost_matrix=c, a=u, b=u, epsilon=eps, init=(np.zeros(3), np.zeros(n)))
