"""Over-relaxed Sinkhorn: the same answer as plain Sinkhorn and POT in several times
fewer iterations at small epsilon, and a factor that survives a warm start."""

import jax.numpy as jnp
import numpy as np
import ot
import pytest

from monge.solvers.sinkhorn import overrelaxation
from monge.solvers.status import Status
from monge.solvers.sinkhorn import OTProblem, SinkhornConfig, solve


def _problem(n, m, seed=0):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(n, 2)), rng.normal(size=(m, 2)) + 1.0
    cost = ((x[:, None] - y[None]) ** 2).sum(-1)
    return OTProblem.from_points(jnp.asarray(x), jnp.asarray(y)), cost


@pytest.mark.parametrize("method", ["kernel", "log"])
def test_same_answer_in_far_fewer_iterations(method):
    problem, cost = _problem(200, 150)
    epsilon = 0.01 * cost.mean()
    plain, relaxed = (solve(problem, SinkhornConfig(epsilon=epsilon, threshold=1e-9, max_iterations=50_000,
                                                    method=method, overrelaxation=mode))
                      for mode in ("off", "adaptive"))
    assert bool(plain.converged) and bool(relaxed.converged)
    assert float(plain.omega) == 1.0 and 1.5 < float(relaxed.omega) < 2.0
    assert int(relaxed.iterations) * 4 < int(plain.iterations)
    a, b = np.full(200, 1 / 200), np.full(150, 1 / 150)
    reference = ot.sinkhorn2(a, b, cost, epsilon, stopThr=1e-13, numItermax=200_000)
    np.testing.assert_allclose(float(relaxed.cost), reference, rtol=1e-7)
    np.testing.assert_allclose(float(relaxed.cost), float(plain.cost), rtol=1e-7)
    # Same potentials up to the constant shift that balanced potentials are defined by.
    shift = float(jnp.mean(relaxed.f - plain.f))
    np.testing.assert_allclose(np.asarray(relaxed.f) - shift, np.asarray(plain.f), atol=1e-6 * epsilon)
    np.testing.assert_allclose(np.asarray(relaxed.g) + shift, np.asarray(plain.g), atol=1e-6 * epsilon)


def test_unbalanced_matches_pot():
    problem, cost = _problem(120, 100, seed=1)
    epsilon, reg_m = 0.01 * cost.mean(), 0.5
    out = solve(problem, SinkhornConfig(epsilon=epsilon, reg_m=reg_m, threshold=1e-10, max_iterations=20_000))
    a, b = np.full(120, 1 / 120), np.full(100, 1 / 100)
    plan = ot.unbalanced.sinkhorn_unbalanced(a, b, cost, epsilon, reg_m, stopThr=1e-14, numItermax=100_000)
    assert bool(out.converged) and float(out.omega) > 1.0
    np.testing.assert_allclose(np.asarray(out.plan()), plan, atol=1e-9)


def test_factor_survives_a_warm_start():
    # The server solves in chunks; a chunk that passes omega on continues at full speed,
    # one that starts again from omega = 1 re-learns it every time (in 10-iteration chunks,
    # the server's for large problems, it never gets to use it).
    problem, cost = _problem(200, 150)
    config = SinkhornConfig(epsilon=0.01 * cost.mean(), threshold=1e-9, max_iterations=10)

    def chunked(carry_omega):
        state, total = (jnp.zeros(200), jnp.zeros(150), 1.0), 0
        for _ in range(1000):
            out = solve(problem, config, state)
            total += int(out.iterations)
            if bool(out.converged):
                return total
            state = (out.f, out.g, out.omega if carry_omega else 1.0)
        raise AssertionError("did not converge")

    whole = solve(problem, SinkhornConfig(epsilon=0.01 * cost.mean(), threshold=1e-9, max_iterations=20_000))
    carried, restarted = chunked(True), chunked(False)
    assert carried <= int(whole.iterations) + 30
    assert carried * 2 < restarted


def test_estimate_from_a_plain_window():
    # A plain run contracting by 0.99 per iteration gives Young's optimal factor.
    state = overrelaxation.start(1.0, jnp.float64)
    state = overrelaxation.update(state, jnp.float64(1.0), jnp.inf, overrelaxation.WINDOW, True, 0.0)
    state = overrelaxation.update(state, jnp.float64(0.99 ** overrelaxation.WINDOW), jnp.inf, 2 * overrelaxation.WINDOW, True, 0.0)
    np.testing.assert_allclose(float(state.omega), 2 / (1 + np.sqrt(1 - 0.99)), rtol=1e-9)
    # Mid-window iterations, a window that does not contract, and "off" change nothing.
    assert float(overrelaxation.update(state, jnp.float64(1e-9), jnp.inf, 2 * overrelaxation.WINDOW + 1, True, 0.0).omega) == float(state.omega)
    assert float(overrelaxation.update(state, jnp.float64(2.0), jnp.inf, 3 * overrelaxation.WINDOW, True, 0.0).omega) == float(state.omega)
    off = overrelaxation.start(1.0, jnp.float64)
    assert float(overrelaxation.update(off, jnp.float64(1e-9), jnp.inf, overrelaxation.WINDOW, False, 0.0).omega) == 1.0


def test_no_estimate_from_rounding_noise():
    # An error at the precision floor wanders with a "rate" near 1; read as a slow
    # contraction it would send omega to its cap and amplify the rounding.
    floor = overrelaxation.noise_floor(jnp.float32, 2.0)
    state = overrelaxation.start(1.0, jnp.float32)
    state = overrelaxation.update(state, jnp.float32(floor / 2), jnp.inf, overrelaxation.WINDOW, True, floor)
    state = overrelaxation.update(state, jnp.float32(floor / 2.01), jnp.inf, 2 * overrelaxation.WINDOW, True, floor)
    assert float(state.omega) == 1.0


def test_float32_floor_is_not_raised():
    # float32, n = 600, epsilon 0.1 x mean cost: plain Sinkhorn bottoms out near an L1
    # error of 1e-6; the over-relaxed run must bottom out in the same place (a factor
    # learnt from rounding noise raised it ten-fold).
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(600, 2)).astype(np.float32), (rng.normal(size=(600, 2)) + 1.0).astype(np.float32)
    problem = OTProblem.from_points(jnp.asarray(x), jnp.asarray(y))
    cost = ((x.astype(np.float64)[:, None] - y.astype(np.float64)[None]) ** 2).sum(-1)
    errors = {}
    for mode in ("off", "adaptive"):
        out = solve(problem, SinkhornConfig(epsilon=0.1 * cost.mean(), threshold=1e-30, max_iterations=200,
                                            stall_patience=0, method="kernel", overrelaxation=mode))
        plan = np.asarray(out.plan(), np.float64)
        errors[mode] = np.abs(plan.sum(1) - 1 / 600).sum() + np.abs(plan.sum(0) - 1 / 600).sum()
    assert errors["adaptive"] < 2 * errors["off"] + 1e-7, errors


def test_factor_falls_back_at_the_floor():
    # Under the noise floor, windows that no longer cut the error halve omega - 1; a
    # window that still makes progress keeps it.
    floor = 1e-3
    state = overrelaxation.Relaxation(jnp.float64(1.9), jnp.float64(1e-4))
    progressing = overrelaxation.update(state, jnp.float64(0.5e-4), jnp.inf, overrelaxation.WINDOW, True, floor)
    assert float(progressing.omega) == 1.9
    stuck = overrelaxation.update(state, jnp.float64(0.95e-4), jnp.inf, overrelaxation.WINDOW, True, floor)
    np.testing.assert_allclose(float(stuck.omega), 1.45)


def test_an_overshoot_resets_the_factor():
    state = overrelaxation.Relaxation(jnp.float64(1.9), jnp.float64(1.0))
    # Mid-window, the error grows more than tenfold: back to plain updates.
    grown = overrelaxation.update(state, jnp.float64(25.0), jnp.float64(1.0), 3, True, 1e-10)
    assert float(overrelaxation.update(state, jnp.float64(5.0), jnp.float64(1.0), 3, True, 1e-10).omega) == 1.9
    assert float(grown.omega) == 1.0
    # Growth under the noise floor is rounding, not an overshoot.
    noise = overrelaxation.update(state, jnp.float64(5e-11), jnp.float64(1e-12), 3, True, 1e-10)
    assert float(noise.omega) == 1.9


@pytest.mark.parametrize("method", ["log", "kernel"])
def test_tiny_epsilon_does_not_diverge(method):
    # 400 points, epsilon 1e-4 (mean cost 6): early windows raised omega to 1.9 and the
    # over-relaxed iterations then ran away (error 1e152 after 60 iterations, then NaN;
    # the kernel form rebuilt its kernel until the cap). Plain Sinkhorn is slow here,
    # not unstable; the over-relaxed run must be at least as far along.
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(400, 2)), rng.normal(size=(400, 2)) + 1.0
    problem = OTProblem.from_points(jnp.asarray(x), jnp.asarray(y))
    errors = {}
    for mode in ("off", "adaptive"):
        out = solve(problem, SinkhornConfig(epsilon=1e-4, threshold=1e-14, max_iterations=600, method=method,
                                            overrelaxation=mode))
        assert int(out.status) == Status.MAX_ITERATIONS, out.message
        assert int(out.iterations) == 600
        errors[mode] = float(out.marginal_error)
    assert errors["adaptive"] <= errors["off"], errors
