"""Implicit differentiation of Sinkhorn potentials (the implicit function theorem).

At the solution, the potentials satisfy the first-order optimality conditions, written
here divided by the weights so that zero-weight points keep a well-posed equation:

    R_f(i) = sum_j b_j E_ij - s_a(f_i) = 0,   R_g(j) = sum_i a_i E_ij - s_b(g_j) = 0,

with E_ij = exp((f_i + g_j - C_ij) / epsilon) and s(f) = exp(-f / tau) (1 when the
marginal is a hard constraint, tau = inf). For a cotangent v on (f, g), the reverse
rule solves J^T lambda = v with J = dR/d(f, g) and returns -lambda^T dR/dtheta for
theta = (a, b, the geometry, epsilon, tau).

Gauge. A balanced problem (both tau infinite) has potentials only up to (f + c, g - c):
J is singular, with null vector (1, -1) and left null vector (a, -b). The solve uses
the nonsingular J^T + (1, -1)(a, -b)^T / epsilon, whose solution solves J^T lambda = v
whenever v is orthogonal to (1, -1), i.e. whenever the downstream function does not
depend on the gauge. The solver makes every output gauge-free by returning balanced
potentials in a fixed gauge (`fix_gauge`: <a, f> = <b, g>), a differentiable function
of any representative. Weights of a balanced problem must keep equal masses: their
gradient is defined up to adding (c, -c) to the pair (a, b).

Linear solvers: a dense direct solve of the (n + m) system when the cost is stored
and n + m <= `DIRECT_MAX`, else matrix-free GMRES on J^T products from `jax.vjp` of
the residual (online mode stays within one cost block of memory).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.scipy.sparse.linalg import gmres

from monge.solvers.sinkhorn.ops import CostAccess

DIRECT_MAX = 2048
GMRES_RESTART = 50
GMRES_MAXITER = 20


def _scale(potential, tau):
    """s(f) = exp(-f / tau), or 1 when tau is infinite (a hard constraint)."""
    safe_tau = jnp.where(jnp.isinf(tau), 1.0, tau)
    return jnp.where(jnp.isinf(tau), jnp.ones_like(potential), jnp.exp(-potential / safe_tau))


def _inv(tau):
    """1 / tau, 0 for an infinite tau (with a finite gradient)."""
    safe_tau = jnp.where(jnp.isinf(tau), 1.0, tau)
    return jnp.where(jnp.isinf(tau), 0.0, 1.0 / safe_tau)


def _exponent(f_i, g, c, epsilon):
    # Clipped like `plan_sums`: entries with a zero weight on the other side may be
    # large, and must not turn 0 * inf into NaN.
    clip = 0.5 * jnp.log(jnp.finfo(g.dtype).max)
    return jnp.exp(jnp.minimum((f_i[:, None] + g[None, :] - c) / epsilon, clip))


def residual(f, g, theta, online: bool, block: int):
    """(R_f, R_g), the optimality conditions divided by the weights (module docstring)."""
    a, b, geometry, epsilon, tau_a, tau_b = theta
    access = CostAccess.create(geometry, online, block)

    def rows(c, a_i, f_i, _x):
        e = _exponent(f_i, g, c, epsilon)
        return e @ b, a_i @ e

    row_sums, col_sums = access.map_rows(rows, a, f)
    return row_sums - _scale(f, tau_a), col_sums - _scale(g, tau_b)


def _dense_jacobian(f, g, theta):
    """J = dR/d(f, g) as an (n + m, n + m) matrix, from one exp pass over C."""
    a, b, geometry, epsilon, tau_a, tau_b = theta
    e = _exponent(f, g, geometry.cost_matrix(), epsilon)
    inv_a, inv_b = _inv(tau_a), _inv(tau_b)
    diag_f = (e @ b) / epsilon + inv_a * _scale(f, tau_a)
    diag_g = (a @ e) / epsilon + inv_b * _scale(g, tau_b)
    top = jnp.concatenate([jnp.diag(diag_f), e * b[None, :] / epsilon], axis=1)
    bottom = jnp.concatenate([(e * a[:, None]).T / epsilon, jnp.diag(diag_g)], axis=1)
    return jnp.concatenate([top, bottom], axis=0)


def _gauge_vectors(theta, n, m):
    """(p, q) of the rank-one term p q^T added to J^T; zero when the problem is unbalanced."""
    a, b, _, epsilon, tau_a, tau_b = theta
    balanced = jnp.isinf(tau_a) & jnp.isinf(tau_b)
    dtype = a.dtype
    p = jnp.concatenate([jnp.ones((n,), dtype), -jnp.ones((m,), dtype)]) / epsilon
    q = jnp.concatenate([a, -b])
    return jnp.where(balanced, p, 0.0), q


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def implicit_potentials(f, g, theta, online: bool, block: int):
    """Identity on the converged (f, g); reverse mode by the implicit function theorem.

    theta = (a, b, geometry, epsilon, tau_a, tau_b), all live (differentiable) values;
    f and g are the solver's (stopped) potentials. Use through `fix_gauge` for balanced
    problems so that cotangents never see the gauge.
    """
    del theta, online, block
    return f, g


def _forward(f, g, theta, online, block):
    return (f, g), (f, g, theta)


def _backward(online, block, saved, cotangent):
    f, g, theta = saved
    theta = jax.lax.stop_gradient(theta)
    n, m = f.shape[0], g.shape[0]
    v = jnp.concatenate(cotangent)
    p, q = _gauge_vectors(theta, n, m)
    geometry = theta[2]
    stored = not online or geometry.matrix is not None
    if stored and n + m <= DIRECT_MAX:
        matrix = _dense_jacobian(f, g, theta).T + p[:, None] * q[None, :]
        lam = jnp.linalg.solve(matrix, v)
    else:
        _, pullback = jax.vjp(lambda ff, gg: residual(ff, gg, theta, online, block), f, g)

        def apply(x):
            jf, jg = pullback((x[:n], x[n:]))
            return jnp.concatenate([jf, jg]) + p * jnp.dot(q, x)

        # Jacobi preconditioner: at the solution J's diagonal is s (1 / epsilon + 1 / tau).
        diagonal = jnp.concatenate(_diagonal(f, g, theta))
        lam, _ = gmres(
            apply, v, tol=1e-10, atol=0.0, restart=GMRES_RESTART, maxiter=GMRES_MAXITER,
            M=lambda x: x / diagonal, solve_method="batched",
        )
    lam_f, lam_g = lam[:n], lam[n:]
    _, pullback_theta = jax.vjp(lambda t: residual(f, g, t, online, block), theta)
    (theta_bar,) = pullback_theta((-lam_f, -lam_g))
    return jnp.zeros_like(f), jnp.zeros_like(g), theta_bar


def _diagonal(f, g, theta):
    _, _, _, epsilon, tau_a, tau_b = theta
    diag_f = _scale(f, tau_a) * (1.0 / epsilon + _inv(tau_a))
    diag_g = _scale(g, tau_b) * (1.0 / epsilon + _inv(tau_b))
    return diag_f, diag_g


implicit_potentials.defvjp(_forward, _backward)


def gauge_shift(f, g, a, b, tau_a, tau_b):
    """The c that `fix_gauge` adds to f and subtracts from g (0 when unbalanced)."""
    balanced = jnp.isinf(tau_a) & jnp.isinf(tau_b)
    shift = (jnp.dot(b, g) - jnp.dot(a, f)) / (jnp.sum(a) + jnp.sum(b))
    return jnp.where(balanced, shift, 0.0)


def fix_gauge(f, g, a, b, tau_a, tau_b):
    """Balanced problems: the representative (f + c, g - c) with <a, f> = <b, g>, the
    same whichever representative comes in (so its derivative ignores the gauge).
    Unbalanced problems have no gauge and pass through."""
    shift = gauge_shift(f, g, a, b, tau_a, tau_b)
    return f + shift, g - shift
