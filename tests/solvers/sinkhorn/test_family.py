"""The Sinkhorn family against POT and ott-jax, plus its own optimality conditions.

Sizes are small and shared between tests so that compiled programs are reused (the
machine is shared; a compile is seconds)."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import ot
import pytest
from ott.geometry import pointcloud
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn as ott_sinkhorn
from ott.tools import sinkhorn_divergence as ott_divergence

from monge.solvers.status import Status
from monge.solvers.sinkhorn import (
    OTProblem,
    SinkhornConfig,
    sinkhorn,
    sinkhorn_divergence,
    solve,
    solve_batch,
    default_vectorization,
)

N, M, D = 30, 40, 3


def _problem(rng, n=N, m=M, d=D, dtype=np.float64):
    x = rng.normal(size=(n, d))
    y = rng.normal(size=(m, d)) + 1.0
    a = rng.random(n) + 0.1
    b = rng.random(m) + 0.1
    return (x.astype(dtype), y.astype(dtype), (a / a.sum()).astype(dtype), (b / b.sum()).astype(dtype))


def _eps(x, y, scale):
    # Epsilon relative to the mean cost, as in the benchmark.
    return scale * float(ot.dist(x.astype(np.float64), y.astype(np.float64)).mean())


def _align(f, g, f_ref, g_ref, a):
    """Balanced potentials are defined up to (f + c, g - c): remove the shift."""
    shift = np.dot(a, f_ref - f)
    return f + shift, g - shift


@pytest.mark.parametrize("method", ["kernel", "log"])
@pytest.mark.parametrize("scale", [0.1, 0.01])
def test_balanced_float64_matches_pot_and_ott(rng, method, scale):
    x, y, a, b = _problem(rng)
    eps = _eps(x, y, scale)
    out = sinkhorn(x, y, a, b, epsilon=eps, threshold=1e-13, max_iterations=50_000, method=method)
    assert bool(out.converged), out.message
    cost = ot.dist(x, y)
    plan_ref, log = ot.sinkhorn(a, b, cost, eps, method="sinkhorn_log", stopThr=1e-15,
                                numItermax=200_000, log=True)
    np.testing.assert_allclose(float(out.cost), np.sum(plan_ref * cost), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(out.plan()), plan_ref, rtol=1e-6, atol=1e-12)
    # POT's log-scalings: P = diag(exp(log_u)) K diag(exp(log_v)), so f = eps (log_u - log a).
    f_pot = eps * (log["log_u"] - np.log(a))
    g_pot = eps * (log["log_v"] - np.log(b))
    f, g = _align(np.asarray(out.f), np.asarray(out.g), f_pot, g_pot, a)
    scale_f = np.abs(f_pot).max()
    np.testing.assert_allclose(f, f_pot, rtol=0, atol=1e-6 * scale_f)
    np.testing.assert_allclose(g, g_pot, rtol=0, atol=1e-6 * scale_f)

    geom = pointcloud.PointCloud(jnp.asarray(x), jnp.asarray(y), epsilon=eps)
    ref = ott_sinkhorn.Sinkhorn(threshold=1e-13, max_iterations=200_000)(
        linear_problem.LinearProblem(geom, jnp.asarray(a), jnp.asarray(b)))
    # ott-jax's potentials carry the weights: f_ott = f + eps log a.
    f_ott = np.asarray(ref.f) - eps * np.log(a)
    g_ott = np.asarray(ref.g) - eps * np.log(b)
    f, g = _align(np.asarray(out.f), np.asarray(out.g), f_ott, g_ott, a)
    np.testing.assert_allclose(f, f_ott, rtol=0, atol=1e-6 * scale_f)
    np.testing.assert_allclose(g, g_ott, rtol=0, atol=1e-6 * scale_f)
    np.testing.assert_allclose(float(out.objective), float(ref.reg_ot_cost), rtol=1e-6)


@pytest.mark.parametrize("method", ["kernel", "log"])
def test_float32_close_to_float64(rng, method):
    x, y, a, b = _problem(rng)
    eps = _eps(x, y, 0.1)
    ref = sinkhorn(x, y, a, b, epsilon=eps, threshold=1e-12, method=method)
    x32, y32, a32, b32 = (v.astype(np.float32) for v in (x, y, a, b))
    out = sinkhorn(x32, y32, a32, b32, epsilon=eps, threshold=1e-5, method=method)
    assert out.f.dtype == jnp.float32
    assert bool(out.converged), out.message
    np.testing.assert_allclose(float(out.cost), float(ref.cost), rtol=1e-4)
    assert float(out.marginal_error) < 2e-5


@pytest.mark.parametrize("method", ["kernel", "log"])
@pytest.mark.parametrize("reg_m", [1.0, (0.5, 2.0)])
def test_unbalanced_matches_pot_and_optimality(rng, method, reg_m):
    x, y, a, b = _problem(rng)
    b = 1.5 * b  # different masses
    eps = _eps(x, y, 0.1)
    out = sinkhorn(x, y, a, b, epsilon=eps, reg_m=reg_m, threshold=1e-13, method=method,
                   max_iterations=50_000)
    assert bool(out.converged), out.message
    cost = ot.dist(x, y)
    ref = ot.unbalanced.sinkhorn_unbalanced(a, b, cost, eps, reg_m, stopThr=1e-15,
                                            numItermax=1_000_000, method="sinkhorn")
    np.testing.assert_allclose(float(out.cost), np.sum(ref * cost), rtol=1e-6)
    ref2 = ot.unbalanced.sinkhorn_unbalanced2(a, b, cost, eps, reg_m, stopThr=1e-15,
                                              numItermax=1_000_000)
    np.testing.assert_allclose(float(out.cost), float(ref2), rtol=1e-6)
    # Optimality: P 1 = a exp(-f / tau_a), P^T 1 = b exp(-g / tau_b).
    tau_a, tau_b = (reg_m, reg_m) if np.isscalar(reg_m) else reg_m
    plan = np.asarray(out.plan())
    np.testing.assert_allclose(plan.sum(1), a * np.exp(-np.asarray(out.f) / tau_a), rtol=1e-9)
    np.testing.assert_allclose(plan.sum(0), b * np.exp(-np.asarray(out.g) / tau_b), rtol=1e-9)
    # The reported objective is the primal one at P.
    kl = lambda p, q: np.sum(p * np.log(p / q) - p + q)
    primal = (np.sum(plan * cost) + eps * kl(plan, np.outer(a, b))
              + tau_a * kl(plan.sum(1), a) + tau_b * kl(plan.sum(0), b))
    np.testing.assert_allclose(float(out.objective), primal, rtol=1e-9)


def test_balanced_optimality_and_duality(rng):
    x, y, a, b = _problem(rng)
    eps = _eps(x, y, 0.05)
    out = sinkhorn(x, y, a, b, epsilon=eps, threshold=1e-13, max_iterations=50_000)
    plan = np.asarray(out.plan())
    np.testing.assert_allclose(plan.sum(1), a, rtol=1e-10)
    np.testing.assert_allclose(plan.sum(0), b, rtol=1e-10)
    # Strong duality: the primal objective equals <a, f> + <b, g> at the optimum.
    dual = np.dot(a, out.f) + np.dot(b, out.g)
    np.testing.assert_allclose(float(out.objective), dual, rtol=1e-10)
    assert float(out.marginal_error) < 1e-12


@pytest.mark.parametrize("method", ["kernel", "log"])
def test_zero_weight_points(rng, method):
    x, y, a, b = _problem(rng, n=N - 3, m=M - 2)
    x_pad = np.concatenate([x, 40.0 + rng.normal(size=(3, D))])  # far away on purpose
    y_pad = np.concatenate([y, rng.normal(size=(2, D))])
    a_pad, b_pad = np.concatenate([a, np.zeros(3)]), np.concatenate([b, np.zeros(2)])
    eps = _eps(x, y, 0.01)
    full = sinkhorn(x, y, a, b, epsilon=eps, threshold=1e-12, method=method, max_iterations=50_000)
    padded = sinkhorn(x_pad, y_pad, a_pad, b_pad, epsilon=eps, threshold=1e-12, method=method,
                      max_iterations=50_000)
    assert bool(padded.converged), padded.message
    np.testing.assert_allclose(float(padded.cost), float(full.cost), rtol=1e-9)
    assert np.all(np.isfinite(np.asarray(padded.f))) and np.all(np.isfinite(np.asarray(padded.g)))
    plan = np.asarray(padded.plan())
    assert np.all(plan[-3:] == 0.0) and np.all(plan[:, -2:] == 0.0)


def test_online_matches_dense_and_views(rng):
    x, y, a, b = _problem(rng)
    eps = _eps(x, y, 0.05)
    dense = sinkhorn(x, y, a, b, epsilon=eps, threshold=1e-12)
    config = SinkhornConfig(epsilon=eps, threshold=1e-12, online=True, block_size=16)
    online = solve(OTProblem.from_points(x, y, a, b), config)  # 30 rows: a ragged last block
    assert online.online
    np.testing.assert_allclose(float(online.cost), float(dense.cost), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(online.f), np.asarray(dense.f), atol=1e-9)
    plan = np.asarray(dense.plan())
    rows, cols, values = online.plan_topk(4)
    top = np.argsort(-plan, axis=1)[:, :4]
    np.testing.assert_array_equal(np.asarray(rows), np.repeat(np.arange(N), 4))
    np.testing.assert_array_equal(np.asarray(cols).reshape(N, 4), top)
    np.testing.assert_allclose(np.asarray(values).reshape(N, 4),
                               np.take_along_axis(plan, top, 1), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(online.barycentric_map()),
                               plan @ y / plan.sum(1, keepdims=True), rtol=1e-9)


def test_kernel_recovers_from_underflow_float64(rng):
    # epsilon = 2e-3 x mean cost and one source point far out: exp(-C / eps)
    # underflows its whole row at the first step, so the kernel path must recover
    # through a log-domain rebuild.
    x, y, a, b = _problem(rng)
    x[0] += 8.0
    eps = _eps(x, y, 2e-3)
    cost = ot.dist(x, y)
    assert cost[0].min() / eps > 745.0
    out = sinkhorn(x, y, a, b, epsilon=eps, threshold=1e-11, max_iterations=50_000, method="kernel")
    ref = sinkhorn(x, y, a, b, epsilon=eps, threshold=1e-11, max_iterations=50_000, method="log")
    assert bool(out.converged) and bool(ref.converged), (out.message, ref.message)
    np.testing.assert_allclose(float(out.cost), float(ref.cost), rtol=1e-8)
    f, g = _align(np.asarray(out.f), np.asarray(out.g), np.asarray(ref.f), np.asarray(ref.g), a)
    np.testing.assert_allclose(f, np.asarray(ref.f), atol=1e-8 * np.abs(ref.f).max())


def test_online_gradient_matches_dense(rng):
    x, y, a, b = _problem(rng, n=12, m=15, d=2)

    def value(x, online):
        config = SinkhornConfig(epsilon=0.5, threshold=1e-12, method="log", online=online, block_size=8)
        return solve(OTProblem.from_points(x, y, a, b), config).objective

    dense = jax.grad(value)(jnp.asarray(x), False)
    online = jax.grad(value)(jnp.asarray(x), True)
    np.testing.assert_allclose(np.asarray(online), np.asarray(dense), rtol=1e-9, atol=1e-12)
    # Envelope theorem, squared Euclidean: d/dx_i = 2 sum_j P_ij (x_i - y_j).
    out = solve(OTProblem.from_points(x, y, a, b), SinkhornConfig(epsilon=0.5, threshold=1e-12, method="log"))
    plan = np.asarray(out.plan())
    expected = 2.0 * (plan.sum(1)[:, None] * x - plan @ y)
    np.testing.assert_allclose(np.asarray(dense), expected, rtol=1e-8, atol=1e-12)


def test_epsilon_scaling_and_warm_start(rng):
    x, y, a, b = _problem(rng)
    eps = _eps(x, y, 0.005)
    plain = sinkhorn(x, y, a, b, epsilon=eps, threshold=1e-10, max_iterations=50_000, method="log")
    scaled = sinkhorn(x, y, a, b, epsilon=eps, threshold=1e-10, max_iterations=50_000,
                      method="log", scaling_stages=4)
    assert bool(plain.converged) and bool(scaled.converged)
    np.testing.assert_allclose(float(scaled.cost), float(plain.cost), rtol=1e-7)
    warm = sinkhorn(x, y, a, b, epsilon=eps, threshold=1e-10, max_iterations=50_000,
                    method="log", init=(plain.f, plain.g))
    assert int(warm.iterations) <= 10 < int(plain.iterations)
    np.testing.assert_allclose(float(warm.cost), float(plain.cost), rtol=1e-9)


@pytest.mark.parametrize("method", ["auto", "kernel"])
def test_small_epsilon_float32_never_reports_nan(rng, method):
    x, y, a, b = _problem(rng, dtype=np.float32)
    eps = _eps(x, y, 1e-3)
    out = sinkhorn(x, y, a, b, epsilon=eps, threshold=1e-4, max_iterations=3000, method=method)
    if bool(out.converged):
        for value in (out.f, out.g, out.cost, out.objective):
            assert np.all(np.isfinite(np.asarray(value)))
        assert float(out.marginal_error) < 1e-3
    else:
        assert "not converged" in out.message or "diverged" in out.message


def test_no_recompile_for_new_values(rng):
    x, y, a, b = _problem(rng)
    problem = OTProblem.from_points(x, y, a, b)
    counter = {"traces": 0}
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)  # a second trace raises
    def run(problem, config):
        counter["traces"] += 1
        return solve(problem, config).cost

    for eps, threshold, reg_m in [(0.5, 1e-6, math.inf), (0.3, 1e-8, 1.0), (0.2, 1e-4, (0.5, 2.0))]:
        run(problem, SinkhornConfig(epsilon=eps, threshold=threshold, reg_m=reg_m, method="log"))
    assert counter["traces"] == 1
    # The same through solve's own jit cache: one new entry for two epsilons.
    before = solve._cache_size()
    for eps in (0.5, 0.25):
        solve(problem, SinkhornConfig(epsilon=eps, method="log", max_iterations=7))
    assert solve._cache_size() == before + 1


def test_divergence_matches_ott(rng):
    x, y, a, b = _problem(rng, n=12, m=15, d=2)
    config = SinkhornConfig(epsilon=0.5, threshold=1e-12, method="log")
    out = sinkhorn_divergence(x, y, a, b, config=config)
    assert bool(out.converged)
    ref, _ = ott_divergence.sinkhorn_divergence(
        pointcloud.PointCloud, jnp.asarray(x), jnp.asarray(y), a=jnp.asarray(a), b=jnp.asarray(b),
        epsilon=0.5, solve_kwargs=dict(threshold=1e-12, max_iterations=100_000))
    np.testing.assert_allclose(float(out.divergence), float(ref), rtol=1e-6)


@pytest.mark.parametrize("reg_m", [(1.0, 1.0), (0.5, 2.0), (math.inf, 3.0)])
def test_unbalanced_divergence_matches_ott(rng, reg_m):
    # Unequal masses and a zero-weight point; ott-jax's tau = rho / (rho + epsilon).
    x, y, a, b = _problem(rng, n=12, m=15, d=2)
    a, b = 1.5 * a, 0.7 * b
    a[3] = 0.0
    eps = 0.5
    config = SinkhornConfig(epsilon=eps, reg_m=reg_m, threshold=1e-12, method="log", max_iterations=100_000)
    out = sinkhorn_divergence(x, y, a, b, config=config)
    assert bool(out.converged)
    tau = [r / (r + eps) if math.isfinite(r) else 1.0 for r in reg_m]
    ref, _ = ott_divergence.sinkhorn_divergence(
        pointcloud.PointCloud, jnp.asarray(x), jnp.asarray(y), a=jnp.asarray(a), b=jnp.asarray(b),
        epsilon=eps, solve_kwargs=dict(threshold=1e-12, max_iterations=100_000, tau_a=tau[0], tau_b=tau[1]))
    np.testing.assert_allclose(float(out.divergence), float(ref), rtol=1e-9, atol=1e-10)


def test_divergence_gradient_matches_finite_differences(rng):
    x, y, a, b = _problem(rng, n=12, m=15, d=2)
    config = SinkhornConfig(epsilon=0.5, threshold=1e-12, method="log")
    loss = lambda x: sinkhorn_divergence(x, y, a, b, config=config).divergence
    grad = np.asarray(jax.grad(loss)(jnp.asarray(x)))
    h = 1e-5
    for i, k in [(0, 0), (3, 1), (11, 0)]:
        e = np.zeros_like(x)
        e[i, k] = h
        fd = (float(loss(x + e)) - float(loss(x - e))) / (2 * h)
        np.testing.assert_allclose(grad[i, k], fd, rtol=1e-5, atol=1e-8)


def test_objective_gradient_in_weights_and_epsilon(rng):
    x, y, a, b = _problem(rng)
    eps = _eps(x, y, 0.1)

    def value(a, eps):
        config = SinkhornConfig(epsilon=eps, threshold=1e-13, method="log")
        return solve(OTProblem.from_points(x, y, a, b), config).objective

    grad_a, grad_eps = jax.grad(value, argnums=(0, 1))(jnp.asarray(a), eps)
    # Balanced, unit masses: the gradient in a is f (up to a constant), in epsilon KL(P|ab).
    out = solve(OTProblem.from_points(x, y, a, b), SinkhornConfig(epsilon=eps, threshold=1e-13, method="log"))
    np.testing.assert_allclose(np.asarray(grad_a), np.asarray(out.f), atol=1e-9)
    h = 1e-6
    fd = (float(value(a, eps + h)) - float(value(a, eps - h))) / (2 * h)
    np.testing.assert_allclose(float(grad_eps), fd, rtol=1e-5)


@pytest.mark.parametrize("vectorize", ["vmap", "loop"])
def test_batch_matches_single_solves_in_order(rng, vectorize):
    sizes = [(N, M), (20, 33), (N, M - 5)]  # one bucket: a single vmapped program
    problems = [OTProblem.from_points(*_problem(rng, n, m)) for n, m in sizes]
    config = SinkhornConfig(epsilon=0.5, threshold=1e-12)
    outs = solve_batch(problems, config, vectorize=vectorize)
    for problem, out in zip(problems, outs):
        single = solve(problem, SinkhornConfig(epsilon=0.5, threshold=1e-12, method="kernel"))
        assert out.f.shape == (problem.shape[0],) and out.g.shape == (problem.shape[1],)
        assert bool(out.converged)
        np.testing.assert_allclose(float(out.cost), float(single.cost), rtol=1e-10)
        f, g = _align(np.asarray(out.f), np.asarray(out.g), np.asarray(single.f),
                      np.asarray(single.g), np.asarray(problem.a))
        np.testing.assert_allclose(f, np.asarray(single.f), atol=1e-9)
        assert int(out.iterations) == int(single.iterations)


def test_batch_vectorizes_by_device():
    assert default_vectorization() == ("loop" if jax.default_backend() == "cpu" else "vmap")
    with pytest.raises(ValueError, match="vectorize"):
        solve_batch([], SinkhornConfig(), vectorize="pmap")


def test_status_is_a_value(rng):
    x, y, a, b = _problem(rng)
    out = sinkhorn(x, y, a, b, epsilon=1e-3, threshold=1e-12, max_iterations=20, method="kernel")
    assert int(out.status) == Status.MAX_ITERATIONS and not bool(out.converged)
    assert "iteration cap" in out.message
    with pytest.raises(ValueError, match="method"):
        SinkhornConfig(method="fast")
    with pytest.raises(ValueError, match="online"):
        SinkhornConfig(method="kernel", online=True)
