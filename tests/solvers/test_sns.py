import numpy as np
import ot
import pytest

from monge.solvers import OTProblem, SinkhornOutput, sinkhorn
from monge.solvers.sns import SWITCH_ITERATIONS, SNSConfig, solve, sns
from monge.solvers.status import Status

# One program per shape and static settings: tests on 40 x 30 float64 problems with
# this cap share the SNS program the first test compiles (and its Sinkhorn reference).
CAP = 100_000


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
    out = sns(cost_matrix=c, a=a, b=b, epsilon=eps, threshold=1e-12, max_iterations=CAP,
              switch_iterations=switch)
    ref = sinkhorn(cost_matrix=c, a=a, b=b, epsilon=eps, threshold=1e-13,
                   max_iterations=CAP)
    assert isinstance(out, SinkhornOutput)
    assert bool(out.converged), out.message
    assert float(out.omega) > 1.5  # the sweeps were over-relaxed (the default)
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
    c, a, b = _problem(rng, 40, 30)
    out = sns(cost_matrix=c, a=a, b=b, epsilon=1.0, threshold=1e-10, max_iterations=CAP)
    # SNS's sweeps are the Sinkhorn solver's over-relaxed ones, factor and all.
    ref = sinkhorn(cost_matrix=c, a=a, b=b, epsilon=1.0, threshold=1e-10)
    assert int(out.newton_iterations) == 0
    assert bool(out.converged) and float(out.marginal_error) <= 1e-10
    # Sinkhorn checks the error of (f, g_old) at each block's end, SNS the error of the
    # final iterate: the sweep counts agree to within one check block.
    assert abs(int(out.sinkhorn_iterations) - int(ref.iterations)) <= SNSConfig().inner_iterations
    assert float(out.omega) > 1.0
    np.testing.assert_allclose(float(out.omega), float(ref.omega), rtol=0.05)
    _assert_same_potentials(out, ref, atol=1e-8)


def test_overrelaxed_sweeps_then_newton_match_converged_sinkhorn(rng):
    # A small epsilon (0.01, costs up to ~20): the over-relaxed warm-up hands over to
    # Newton under the default switch rule, and the end point is the converged
    # Sinkhorn's (the Newton steps work on the exact marginals, not on the sweeps').
    c, a, b = _problem(rng, 40, 30)
    eps = 0.01
    out = sns(cost_matrix=c, a=a, b=b, epsilon=eps, threshold=1e-12, max_iterations=CAP)
    ref = sinkhorn(cost_matrix=c, a=a, b=b, epsilon=eps, threshold=1e-13, max_iterations=CAP)
    assert bool(out.converged) and bool(ref.converged), (out.message, ref.message)
    assert int(out.sinkhorn_iterations) > 0 and int(out.newton_iterations) > 0
    assert float(out.omega) > 1.5
    _assert_same_potentials(out, ref, atol=1e-8)
    np.testing.assert_allclose(float(out.cost), float(ref.cost), rtol=1e-8)
    np.testing.assert_allclose(float(out.objective), float(ref.objective), rtol=1e-8)
    plan = np.asarray(out.plan())
    np.testing.assert_allclose(plan.sum(1), a, rtol=0, atol=1e-12)
    np.testing.assert_allclose(plan.sum(0), b, rtol=0, atol=1e-12)
    np.testing.assert_allclose(plan, np.asarray(ref.plan()), rtol=0, atol=1e-10)


def test_overrelaxed_sns_takes_fewer_iterations_than_plain_sweeps(rng):
    c, a, b = _problem(rng, 40, 30)
    eps = 0.003  # small for these costs: plain sweeps are slow
    runs = {relax: sns(cost_matrix=c, a=a, b=b, epsilon=eps, threshold=1e-12, max_iterations=CAP,
                       overrelaxation=relax) for relax in ("adaptive", "off")}
    relaxed, plain = runs["adaptive"], runs["off"]
    assert bool(relaxed.converged) and bool(plain.converged)
    assert float(plain.omega) == 1.0 and float(relaxed.omega) > 1.5
    # Measured: 200 sweeps + 11 Newton steps against 770 + 41.
    assert int(relaxed.iterations) < 0.5 * int(plain.iterations)
    assert int(relaxed.newton_iterations) < int(plain.newton_iterations)
    _assert_same_potentials(relaxed, plain, atol=1e-8)


def test_each_kind_of_sweep_has_its_switch_default():
    assert SNSConfig().switch_iterations == SWITCH_ITERATIONS["adaptive"]
    assert SNSConfig(overrelaxation="off").switch_iterations == SWITCH_ITERATIONS["off"]
    assert SNSConfig(overrelaxation="off", switch_iterations=5.0).switch_iterations == 5.0


def test_unreachable_float32_threshold_stalls(rng):
    # float32 bottoms out near 3e-6 in L1 here: 1e-12 is out of reach, and SNS says so
    # (status STALLED) long before its cap instead of running to it.
    # (direct_size=0: CG only, a program that compiles in half the time.)
    c, a, b = (v.astype(np.float32) for v in _problem(rng, 40, 30))
    cap = 20_000
    out = sns(cost_matrix=c, a=a, b=b, epsilon=0.05, threshold=1e-12, max_iterations=cap,
              direct_size=0)
    assert out.f.dtype == np.float32
    assert int(out.status) == Status.STALLED, out.message
    assert "stopped decreasing" in out.message
    assert int(out.iterations) < cap // 10  # measured: 562 (stall_patience=0: 20,000)
    assert float(out.marginal_error) < 1e-4


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
    with pytest.raises(ValueError, match="^unknown overrelaxation 'fixed'"):
        SNSConfig(overrelaxation="fixed")
    with pytest.raises(ValueError, match="^stall_patience"):
        SNSConfig(stall_patience=-1)
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
    f, g, omega = np.zeros(n), np.zeros(n), np.float64(1.0)  # not weakly typed: one program
    for chunk in range(1, 21):
        out = sns(cost_matrix=c, a=u, b=u, epsilon=eps, threshold=1e-11, max_iterations=35,
                  init=(f, g, omega))
        if bool(out.converged):
            break
        # The cap holds exactly, though it is no whole number of 10-sweep blocks.
        assert int(out.iterations) == 35 and int(out.status) == Status.MAX_ITERATIONS
        f, g, omega = out.f, out.g, out.omega
    assert bool(out.converged) and chunk > 1 and int(out.iterations) <= 35
    assert int(out.newton_iterations) > 0 or chunk > 2
    assert float(out.marginal_error) <= 1e-11
    # Marginals at 1e-11 pin the (strictly concave) dual optimum; the cost is then
    # just above the unregularised optimum at this small epsilon.
    assert ot.emd2(u, u, c) - 1e-12 <= float(out.cost) <= ot.emd2(u, u, c) + 2 * eps
    with pytest.raises(ValueError, match="^init"):
        sns(cost_matrix=c, a=u, b=u, epsilon=eps, init=(np.zeros(3), np.zeros(n)))
