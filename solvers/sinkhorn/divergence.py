"""The debiased Sinkhorn divergence, balanced and unbalanced (ott-jax's semantics)."""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from monge.solvers.geometry import Geometry
from monge.solvers.problem import OTProblem
from monge.solvers.sinkhorn.solver import SinkhornConfig, SinkhornOutput, _damping, _marginal_target, _solve


@dataclasses.dataclass(frozen=True)
class SinkhornDivergenceOutput:
    """S(a, b) = OT(a, b) - OT(a, a) / 2 - OT(b, b) / 2 + epsilon (|a| - |b|)^2 / 2, with
    OT the regularised objective (GeomLoss's and ott-jax's debiased divergence).

    Balanced (reg_m infinite): differentiable w.r.t. the points, the weights and epsilon.
    Unbalanced (reg_m finite): ott-jax's semantics, value only (see `divergence_term`);
    the three solves are then of the weights a^tau, b^tau (tau = reg_m / (reg_m +
    epsilon)), so `xy.problem` holds those."""

    divergence: jax.Array
    xy: SinkhornOutput
    xx: SinkhornOutput
    yy: SinkhornOutput

    @property
    def converged(self) -> jax.Array:
        return self.xy.converged & self.xx.converged & self.yy.converged


jax.tree_util.register_dataclass(
    SinkhornDivergenceOutput, data_fields=["divergence", "xy", "xx", "yy"], meta_fields=[]
)


def divergence_weights(w, reg_m, epsilon):
    """The weights a Sinkhorn divergence term solves with: w^tau, tau = reg_m / (reg_m +
    epsilon) (w itself when balanced).

    ott-jax regularises an unbalanced problem with the entropy of P (its plan is
    exp((f + g - C) / epsilon)), where this module uses KL(P | a b^T). Expanding both,
    <P, C> - epsilon H(P) + rho_a KL(P 1 | a) + rho_b KL(P^T 1 | b) equals, up to a
    constant, the KL form with weights alpha = a^tau_a and beta = b^tau_b: the terms
    linear in P 1 are (epsilon + rho_a) log alpha - rho_a log a, zero exactly then. So
    solving with these weights gives ott-jax's plan."""
    tau = _damping(reg_m, epsilon)
    positive = w > 0
    return jnp.where(positive, jnp.where(positive, w, 1.0) ** tau, 0.0)


def divergence_term(a, b, f, g, reg_m, epsilon):
    """ott-jax's `reg_ot_cost` of one divergence term, from this module's potentials f, g
    of the problem solved with `divergence_weights(a)`, `divergence_weights(b)`.

    ott-jax evaluates sum_i -a_i phi*(-(f'_i - epsilon log a_i)) (+ the same for b)
    + epsilon (|a| |b| - |P|), phi* the Legendre transform of rho KL, with its
    potentials f' = f + epsilon log a^tau; that is rho <a, 1 - exp(-(f + epsilon (tau - 1)
    log a) / rho)>, or <a, f> when balanced. |P| is read from the column optimality
    condition, exact after a g-update (the engines' last): sum_j b^tau exp(-g / rho_b)."""
    tau_a, tau_b = _damping(reg_m[0], epsilon), _damping(reg_m[1], epsilon)

    def side(w, pot, rho, tau):
        positive = w > 0
        log_w = jnp.log(jnp.where(positive, w, 1.0))
        shifted = pot + epsilon * (tau - 1.0) * log_w
        safe_rho = jnp.where(jnp.isinf(rho), 1.0, rho)
        soft = safe_rho * (1.0 - jnp.exp(-shifted / safe_rho))
        return jnp.sum(jnp.where(positive, w * jnp.where(jnp.isinf(rho), shifted, soft), 0.0))

    beta = divergence_weights(b, reg_m[1], epsilon)
    mass = jnp.sum(_marginal_target(beta, g, reg_m[1]))
    return (side(a, f, reg_m[0], tau_a) + side(b, g, reg_m[1], tau_b)
            + epsilon * (jnp.sum(a) * jnp.sum(b) - mass))


def _divergence_impl(x, y, a, b, config, cost_name):
    epsilon = jnp.asarray(config.epsilon, x.dtype)
    reg_m = tuple(jnp.asarray(r, x.dtype) for r in config.reg_m)
    sg = jax.lax.stop_gradient

    def solve_pair(p, q, wp, wq):
        weights = (divergence_weights(wp, reg_m[0], epsilon), divergence_weights(wq, reg_m[1], epsilon))
        out = _solve(OTProblem(Geometry.from_points(p, q, cost_name), *weights), config)
        return out, sg(divergence_term(wp, wq, out.f, out.g, reg_m, epsilon))

    (xy, r_xy), (xx, r_xx), (yy, r_yy) = (solve_pair(x, y, a, b), solve_pair(x, x, a, a), solve_pair(y, y, b, b))
    gap = 0.5 * epsilon * (jnp.sum(a) - jnp.sum(b)) ** 2
    balanced = xy.objective - 0.5 * (xx.objective + yy.objective) + gap
    unbalanced = sg(r_xy - 0.5 * (r_xx + r_yy) + gap)
    value = jnp.where(jnp.isinf(reg_m[0]) & jnp.isinf(reg_m[1]), balanced, unbalanced)
    return SinkhornDivergenceOutput(value, xy, xx, yy)


def sinkhorn_divergence(
    x, y, a=None, b=None, *, config: SinkhornConfig | None = None, cost: str = "sqeuclidean"
) -> SinkhornDivergenceOutput:
    """Debiased Sinkhorn divergence between two weighted point clouds.

    Usable as a training loss: `jax.grad(lambda x: sinkhorn_divergence(x, y).divergence)`
    (balanced). With `config.reg_m` finite it is unbalanced, with ott-jax's semantics
    (`ott.tools.sinkhorn_divergence` with tau = reg_m / (reg_m + epsilon)), value only.
    """
    config = SinkhornConfig() if config is None else config
    x = jnp.asarray(x)
    y = jnp.asarray(y, x.dtype)
    a = jnp.full((x.shape[0],), 1.0 / x.shape[0], x.dtype) if a is None else jnp.asarray(a, x.dtype)
    b = jnp.full((y.shape[0],), 1.0 / y.shape[0], x.dtype) if b is None else jnp.asarray(b, x.dtype)
    return _divergence_static(cost)(x, y, a, b, config)


@functools.lru_cache(maxsize=None)
def _divergence_static(cost_name: str):
    return jax.jit(functools.partial(_divergence_impl, cost_name=cost_name))
