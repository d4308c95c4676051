"""Stall detection: a threshold out of reach at the working precision stops the solver
with status STALLED well before its cap; a slow but converging run is never stopped."""

import jax.numpy as jnp
import numpy as np
import pytest

from monge.solvers.loop import is_stalled, run_until_converged
from monge.solvers.status import Status
from monge.solvers.sinkhorn import OTProblem, SinkhornConfig, solve


def _points(n, m, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)).astype(dtype)
    y = (rng.normal(size=(m, 2)) + 1.0).astype(dtype)
    return OTProblem.from_points(jnp.asarray(x), jnp.asarray(y))


@pytest.mark.parametrize("method", ["kernel", "log"])
def test_float32_unreachable_threshold_stalls(method):
    # float32 bottoms out near 3e-6 in L1 here (~700 iterations); 1e-12 is out of reach.
    problem = _points(120, 100, np.float32)
    out = solve(problem, SinkhornConfig(epsilon=0.05, threshold=1e-12, max_iterations=20_000,
                                        method=method))
    assert int(out.status) == Status.STALLED and not bool(out.converged)
    assert int(out.iterations) < 6_000
    assert float(out.marginal_error) < 1e-4  # it did get to the floor first
    assert "stopped decreasing" in out.message


@pytest.mark.parametrize("method", ["kernel", "log"])
def test_slow_float64_run_is_not_stopped(method):
    # epsilon 0.003 on squared distances of order 4: the error plateaus (at 0.08 for
    # ~250 iterations from ~1650, at 0.0133 for ~1000 from ~3000) and only reaches 1e-4
    # after ~7000 iterations of plain Sinkhorn (over-relaxed: ~2000). Detection must
    # change nothing.
    problem = _points(60, 50, np.float64)
    outs = [solve(problem, SinkhornConfig(epsilon=0.003, threshold=1e-4, max_iterations=20_000,
                                          method=method, stall_patience=patience, overrelaxation="off"))
            for patience in (200, 0)]
    assert [int(o.status) for o in outs] == [Status.CONVERGED, Status.CONVERGED]
    assert int(outs[0].iterations) == int(outs[1].iterations) > 5_000
    np.testing.assert_array_equal(np.asarray(outs[0].f), np.asarray(outs[1].f))


def test_epsilon_scaling_reports_stall():
    problem = _points(120, 100, np.float32)
    out = solve(problem, SinkhornConfig(epsilon=0.05, threshold=1e-12, max_iterations=20_000,
                                        method="log", scaling_stages=2))
    assert int(out.status) == Status.STALLED and int(out.iterations) < 6_000


def test_loop_driver_rule():
    # An error that halves each block until 1.0, then sits there: with patience 30
    # iterations (3 blocks of 10) and the floor reached at block 5, the loop stops
    # once the blocks since the best reach max(3, 5): at block 10.
    def error(state):
        return jnp.maximum(2.0 ** (5 - state), 1.0)

    out = run_until_converged(lambda s: s + 0.1, error, jnp.float64(0.0), threshold=0.5,
                              max_iterations=1000, inner_iterations=10, stall_patience=30, stall_below=1.5)
    assert int(out.status) == Status.STALLED and int(out.iterations) == 100
    # A best error above `stall_below` is a plateau, never a floor.
    high = run_until_converged(lambda s: s + 0.1, error, jnp.float64(0.0), threshold=0.5,
                               max_iterations=1000, inner_iterations=10, stall_patience=30, stall_below=0.9)
    assert int(high.status) == Status.MAX_ITERATIONS and int(high.iterations) == 1000
    off = run_until_converged(lambda s: s + 0.1, error, jnp.float64(0.0), threshold=0.5,
                              max_iterations=1000, inner_iterations=10)
    assert int(off.status) == Status.MAX_ITERATIONS and int(off.iterations) == 1000
    assert not is_stalled(14, 5, 10, 0.0, 1.0) and is_stalled(15, 5, 10, 0.0, 1.0)
    assert not is_stalled(15, 8, 3, 0.0, 1.0) and not is_stalled(15, 5, 10, 2.0, 1.0)


def test_tiny_epsilon_plateau_is_not_a_stall():
    # epsilon 1e-4 on squared distances of order 4 (40 points, float64): the error sits
    # at 0.80 from iteration ~600 for longer than the run before it; only the ceiling
    # (sqrt(machine epsilon) x mass) keeps this from reading as a stall.
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 2)), rng.normal(size=(40, 2)) + 1.0
    out = solve(OTProblem.from_points(jnp.asarray(x), jnp.asarray(y)),
                SinkhornConfig(epsilon=1e-4, threshold=1e-15, max_iterations=3_000, method="log"))
    assert int(out.status) == Status.MAX_ITERATIONS and int(out.iterations) == 3_000


def test_negative_patience_is_refused():
    with pytest.raises(ValueError, match="stall_patience"):
        SinkhornConfig(stall_patience=-1)
