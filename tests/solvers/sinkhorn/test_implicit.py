"""Implicit differentiation of the Sinkhorn potentials (SinkhornConfig(implicit_diff=True)).

Checked against central finite differences (float64) and ott-jax's implicit
differentiation. Balanced potentials have a gauge (f + c, g - c); the tested functions
are either gauge-free (<P, C>, sum(w f) with sum(w) = 0) or use the solver's fixed gauge.
One small size and one static config per engine, so that compiled programs are shared.
"""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ott.geometry import pointcloud
from ott.problems.linear import linear_problem
from ott.solvers.linear import sinkhorn as ott_sinkhorn

from monge.solvers.sinkhorn import OTProblem, SinkhornConfig, solve

N, M, D = 12, 15, 2
EPS = 0.5


def _data(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, D))
    y = rng.normal(size=(M, D)) + 1.0
    a = rng.random(N) + 0.1
    b = rng.random(M) + 0.1
    w = rng.normal(size=N)
    return x, y, a / a.sum(), b / b.sum(), w - w.mean()


def _config(reg_m=math.inf, online=False):
    return SinkhornConfig(epsilon=EPS, threshold=1e-14, max_iterations=100_000, method="log",
                          reg_m=reg_m, online=online, block_size=8, implicit_diff=True)


def _loss(config, y, b, w):
    """<P, C> + sum(w f) + sum(b g) / 3 (the last term uses the balanced gauge)."""

    def loss(x, a, eps):
        import dataclasses

        out = solve(OTProblem.from_points(x, y, a, b), dataclasses.replace(config, epsilon=eps))
        return out.cost + jnp.dot(w, out.f) + jnp.dot(b, out.g) / 3.0

    return loss


def _central(fn, h=1e-5):
    return (fn(h) - fn(-h)) / (2 * h)


@pytest.mark.parametrize("reg_m", [math.inf, 1.0], ids=["balanced", "unbalanced"])
def test_gradients_match_finite_differences(reg_m):
    x, y, a, b, w = _data()
    loss = jax.jit(_loss(_config(reg_m), y, b, w))
    grad_x, grad_a, grad_eps = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(x, a, EPS)
    rng = np.random.default_rng(1)
    for _ in range(3):  # directional derivatives: one solve pair each
        dx = rng.normal(size=x.shape)
        fd = _central(lambda h: float(loss(x + h * dx, a, EPS)))
        np.testing.assert_allclose(float(jnp.sum(grad_x * dx)), fd, rtol=1e-6, atol=1e-8)
    # Balanced weights must keep their mass: perturb along a zero-sum direction.
    da = rng.normal(size=N)
    da -= da.mean()
    fd = _central(lambda h: float(loss(x, a + h * da, EPS)))
    np.testing.assert_allclose(float(jnp.dot(grad_a, da)), fd, rtol=1e-6, atol=1e-8)
    fd = _central(lambda h: float(loss(x, a, EPS + h)))
    np.testing.assert_allclose(float(grad_eps), fd, rtol=1e-6, atol=1e-8)


def test_potentials_gradient_matches_ott():
    x, y, a, b, w = _data(2)

    def ours(x):
        out = solve(OTProblem.from_points(x, y, a, b), _config())
        return jnp.stack([out.cost, jnp.dot(w, out.f)])

    def theirs(x):
        geom = pointcloud.PointCloud(x, jnp.asarray(y), epsilon=EPS)
        out = ott_sinkhorn.Sinkhorn(threshold=1e-12, max_iterations=20_000, lse_mode=True)(
            linear_problem.LinearProblem(geom, a=jnp.asarray(a), b=jnp.asarray(b))
        )
        # ott's potentials are ours plus epsilon log(weights); sum(w) = 0 removes the gauge.
        return jnp.stack([jnp.sum(out.matrix * geom.cost_matrix), jnp.dot(w, out.f)])

    # Rows: d<P, C>/dx and d sum(w f)/dx, one jitted program per library.
    mine = jax.jit(jax.jacrev(ours))(jnp.asarray(x))
    ref = jax.jit(jax.jacrev(theirs))(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(mine), np.asarray(ref), rtol=1e-6, atol=1e-8)


def test_online_gmres_matches_dense_direct_solve():
    x, y, a, b, w = _data(3)
    for reg_m in (math.inf, 1.0):
        dense = jax.jit(jax.grad(_loss(_config(reg_m), y, b, w), argnums=(0, 1)))(x, a, EPS)
        online = jax.jit(jax.grad(_loss(_config(reg_m, online=True), y, b, w), argnums=(0, 1)))(x, a, EPS)
        for d, o in zip(dense, online):
            np.testing.assert_allclose(np.asarray(o), np.asarray(d), rtol=1e-7, atol=1e-9)


def test_jit_vmap_and_no_recompile_for_new_epsilon():
    x, y, a, b, w = _data()
    loss = _loss(_config(), y, b, w)
    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)  # a second trace raises
    def batched_grad(xs, eps):
        return jax.vmap(lambda x: jax.grad(loss)(x, jnp.asarray(a), eps))(xs)

    xs = jnp.stack([jnp.asarray(x), jnp.asarray(x) + 0.3])
    for eps in (EPS, 0.7):
        grads = batched_grad(xs, eps)
        for k in range(2):
            one = jax.grad(loss)(xs[k], jnp.asarray(a), eps)
            np.testing.assert_allclose(np.asarray(grads[k]), np.asarray(one), rtol=1e-8, atol=1e-10)


def test_default_config_does_not_differentiate_potentials():
    x, y, a, b, _ = _data()
    config = SinkhornConfig(epsilon=EPS, threshold=1e-14, max_iterations=100_000, method="log")
    grad = jax.grad(lambda x: jnp.sum(solve(OTProblem.from_points(x, y, a, b), config).f))(x)
    assert not np.any(np.asarray(grad))
