"""The Var-RUOT model: one scalar network lambda(x, t) and everything derived from it.

By the optimality conditions of RUOT, the velocity is u = grad_x lambda and the growth
rate solves alpha psi'(g) = lambda, so the network alone defines the dynamics. Weighted
particles follow dX = u dt + sigma dW and d(log w) = g dt (Euler-Maruyama; log-weights
are integrated so that weights stay positive). The HJB residual

    r = d lambda/dt + |grad lambda|^2 / 2 + (sigma^2 / 2) Laplacian lambda + lambda g - alpha psi(g)

vanishes at the optimum and is penalised along the particles during training.

Parameters are a flat dict of arrays (name -> array); with `RuotSettings` (JSON-able)
they are the whole model, so export is `to_arrays()` + `settings_dict()`, never pickle.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from monge.solvers.ruot.config import (
    AbstractGrowth,
    AbstractLaplacian,
    ExactLaplacian,
    HutchinsonLaplacian,
    growth_from_settings,
    laplacian_from_settings,
)

FORMAT_VERSION = 1


# ---------------------------------------------------------------------------------------
# The network.


def init_params(key, dim: int, width: int, residual_blocks: int, dtype=jnp.float32,
                jumps: int = 0, readout_scale: float = 1.0) -> dict[str, jax.Array]:
    """LeCun-normal weights, zero biases, unit LayerNorm gains. The read-out is not
    zero: lambda = 0 would make the initial HJB residual (and its gradient) vanish.
    `jumps`: extra input rows for the step features of `Normaliser.jumps`.
    `readout_scale` multiplies the read-out weights (see `NetworkConfig.readout_scale`)."""
    keys = jax.random.split(key, 2 + 2 * residual_blocks)

    def dense(k, fan_in, fan_out):
        return jax.random.normal(k, (fan_in, fan_out), dtype) / math.sqrt(fan_in)

    # The jump rows start at zero: the initial network is the one without jumps (random
    # rows gave EMT a different lambda on each interval from the first step and a fit that
    # never recovered: HJB residual ~160, action ~40).
    w_in = dense(keys[0], dim + 1, width)
    params = {"in.w": jnp.concatenate([w_in, jnp.zeros((jumps, width), dtype)]), "in.b": jnp.zeros((width,), dtype)}
    for i in range(residual_blocks):
        params[f"block{i}.w1"] = dense(keys[2 + 2 * i], width, width)
        params[f"block{i}.b1"] = jnp.zeros((width,), dtype)
        params[f"block{i}.ln.g"] = jnp.ones((width,), dtype)
        params[f"block{i}.ln.b"] = jnp.zeros((width,), dtype)
        params[f"block{i}.w2"] = dense(keys[3 + 2 * i], width, width)
        params[f"block{i}.b2"] = jnp.zeros((width,), dtype)
    params["out.ln.g"] = jnp.ones((width,), dtype)
    params["out.ln.b"] = jnp.zeros((width,), dtype)
    params["out.w"] = readout_scale * dense(keys[1], width, 1)[:, 0]
    params["out.b"] = jnp.zeros((), dtype)
    return params


def _layer_norm(h, gain, bias):
    mean = jnp.mean(h, axis=-1, keepdims=True)
    var = jnp.mean((h - mean) ** 2, axis=-1, keepdims=True)
    return (h - mean) * jax.lax.rsqrt(var + 1e-5) * gain + bias


class Normaliser(NamedTuple):
    """Fixed affine input maps (not trained): x -> (x - shift) / scale, t -> (t - t0) / span.
    They change the parametrisation only, never the physics (sigma, alpha stay in data units).

    jumps (J,) or None: interior snapshot times; the network then also reads the step
    features 1[t >= tau_j], so lambda may jump at each snapshot time while staying
    smooth in between (where the HJB residual is taken). At an exact optimum of the
    snapshot-constrained problem lambda is the adjoint of the constraints and does jump
    there; without jumps an exact HJB makes the total mass convex in time (d^2 M / dt^2
    = int (|grad lambda|^2 / 2 + lambda^2 / (2 alpha)) rho / alpha >= 0 for quadratic
    psi), which cannot follow masses that go up, down and up (EMT). Not exported as an
    array: the snapshot times are, and the input layer's rows say whether jumps are on."""

    x_shift: jax.Array  # (d,)
    x_scale: jax.Array  # ()
    t_shift: jax.Array  # ()
    t_scale: jax.Array  # ()
    jumps: jax.Array | None = None  # (J,) interior snapshot times, data units


def _inputs(norm: Normaliser, x, t):
    """The network's input: normalised x, normalised t, then the jump steps (if any)."""
    parts = [(x - norm.x_shift) / norm.x_scale, ((t - norm.t_shift) / norm.t_scale)[None]]
    if norm.jumps is not None:
        # A grid point at a snapshot time starts the next interval (the left end of its
        # first step); the tolerance absorbs the float32 rounding of grid times.
        parts.append((t >= norm.jumps - 1e-5 * norm.t_scale).astype(x.dtype))
    return jnp.concatenate(parts)


def potential(params, norm: Normaliser, x, t, residual_blocks: int):
    """lambda at one point x (d,) and time t (scalar)."""
    z = _inputs(norm, x, t)
    h = jax.nn.silu(z @ params["in.w"] + params["in.b"])
    for i in range(residual_blocks):
        inner = h @ params[f"block{i}.w1"] + params[f"block{i}.b1"]
        inner = jax.nn.silu(_layer_norm(inner, params[f"block{i}.ln.g"], params[f"block{i}.ln.b"]))
        h = h + inner @ params[f"block{i}.w2"] + params[f"block{i}.b2"]
    h = jax.nn.silu(_layer_norm(h, params["out.ln.g"], params["out.ln.b"]))
    return h @ params["out.w"] + params["out.b"]


class Fields(NamedTuple):
    """lambda and its derivatives at a batch of points: value (n,), grad_x (n, d),
    dt (n,), laplacian (n,)."""

    value: jax.Array
    grad_x: jax.Array
    dt: jax.Array
    laplacian: jax.Array


def _silu_derivatives(a):
    sig = jax.nn.sigmoid(a)
    first = sig + a * sig * (1.0 - sig)
    second = sig * (1.0 - sig) * (2.0 + a * (1.0 - 2.0 * sig))
    return a * sig, first, second


def _activation_jet(a, jac, jac_t, second, probes):
    """silu applied to a value a (w,) with its x-Jacobian jac (d, w), t-derivative jac_t (w,)
    and second derivatives along the probes second (p, w)."""
    value, d1, d2 = _silu_derivatives(a)
    along = probes @ jac  # (p, w) first derivatives along the probes
    return value, d1 * jac, d1 * jac_t, d1 * second + d2 * along * along


def _layer_norm_jet(a, jac, jac_t, second, probes, gain, bias, eps=1e-5):
    """LayerNorm n = (a - mean) / sqrt(var + eps) with first and second directional
    derivatives written out (product and chain rules on c = a - mean, s = sqrt(var + eps))."""
    c = a - jnp.mean(a)
    s = jnp.sqrt(jnp.mean(c * c) + eps)

    def first(dc_raw):  # (k, w) tangents of a -> tangents of n, and what the second order needs
        dc = dc_raw - jnp.mean(dc_raw, axis=-1, keepdims=True)
        ds = jnp.mean(c * dc, axis=-1, keepdims=True) / s
        return dc / s - c * ds / (s * s), dc, ds

    dn, _, _ = first(jnp.concatenate([jac, jac_t[None]]))
    _, dc, ds = first(probes @ jac)
    d2c = second - jnp.mean(second, axis=-1, keepdims=True)
    d2s = jnp.mean(dc * dc + c * d2c, axis=-1, keepdims=True) / s - ds * ds / s
    d2n = d2c / s - 2.0 * dc * ds / s**2 - c * d2s / s**2 + 2.0 * c * ds * ds / s**3
    return c / s * gain + bias, dn[:-1] * gain, dn[-1] * gain, d2n * gain


def _jet(params, norm: Normaliser, x, t, probes, residual_blocks: int):
    """lambda, grad_x lambda, d lambda/dt and v^T H v for each probe v, at one point, in a
    single forward pass that carries derivatives layer by layer (forward Taylor mode by
    hand). Differentiating this w.r.t. the parameters compiles far faster than nesting
    jax.grad / jvp three deep, which on CPU took tens of seconds per program."""
    dim = x.shape[0]
    z = _inputs(norm, x, t)
    w_in = params["in.w"]
    a = z @ w_in + params["in.b"]
    jac, jac_t = w_in[:dim] / norm.x_scale, w_in[dim] / norm.t_scale
    second = jnp.zeros((probes.shape[0], a.shape[0]), a.dtype)
    h, jac, jac_t, second = _activation_jet(a, jac, jac_t, second, probes)
    for i in range(residual_blocks):
        w1, w2 = params[f"block{i}.w1"], params[f"block{i}.w2"]
        inner = (h @ w1 + params[f"block{i}.b1"], jac @ w1, jac_t @ w1, second @ w1)
        inner = _layer_norm_jet(*inner, probes, params[f"block{i}.ln.g"], params[f"block{i}.ln.b"])
        r, r_jac, r_jac_t, r_second = _activation_jet(*inner, probes)
        h = h + r @ w2 + params[f"block{i}.b2"]
        jac, jac_t, second = jac + r_jac @ w2, jac_t + r_jac_t @ w2, second + r_second @ w2
    out = _layer_norm_jet(h, jac, jac_t, second, probes, params["out.ln.g"], params["out.ln.b"])
    h, jac, jac_t, second = _activation_jet(*out, probes)
    w_out = params["out.w"]
    return h @ w_out + params["out.b"], jac @ w_out, jac_t @ w_out, second @ w_out


def fields(params, norm, x, t, *, residual_blocks: int, laplacian: AbstractLaplacian, key=None) -> Fields:
    """lambda, grad_x lambda, d lambda / dt and the Laplacian at points x (n, d), time t.

    The Laplacian is the trace of the x-Hessian: exact as the sum of e_i^T H e_i over the
    d coordinate directions, or Hutchinson's mean of v^T H v over Rademacher probes v
    drawn from `key` (unbiased, cost independent of d)."""
    n, dim = x.shape
    if isinstance(laplacian, ExactLaplacian):
        probes = jnp.broadcast_to(jnp.eye(dim, dtype=x.dtype), (n, dim, dim))
        reduce = jnp.sum
    else:
        assert isinstance(laplacian, HutchinsonLaplacian), laplacian
        probes = jax.random.rademacher(key, (n, laplacian.probes, dim), dtype=x.dtype)
        reduce = jnp.mean
    one = lambda xi, vi: _jet(params, norm, xi, t, vi, residual_blocks)
    value, grad_x, dt, quad = jax.vmap(one)(x, probes)
    return Fields(value, grad_x, dt, reduce(quad, axis=-1))


def hjb_residual(f: Fields, growth: AbstractGrowth, alpha, sigma) -> jax.Array:
    g = growth.rate(f.value, alpha)
    return (f.dt + 0.5 * jnp.sum(f.grad_x ** 2, axis=-1) + 0.5 * sigma ** 2 * f.laplacian
            + f.value * g - alpha * growth.penalty(g))


# ---------------------------------------------------------------------------------------
# Time grids and the particle simulation.


def time_grid(times, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Euler-Maruyama grid through `times` (increasing): each interval gets
    ceil(length / dt) equal steps. Returns (grid, index of each time in the grid)."""
    times = np.asarray(times, np.float64)
    grid, marks = [times[0]], [0]
    for a, b in zip(times[:-1], times[1:]):
        steps = max(1, int(math.ceil((b - a) / dt - 1e-9)))
        grid.extend(a + (b - a) * np.arange(1, steps + 1) / steps)
        marks.append(len(grid) - 1)
    return np.asarray(grid), np.asarray(marks)


class Simulation(NamedTuple):
    """Particles on the grid: points (T, n, d), log_weights (T, n) (log w, w(t0) = 1),
    action (scalar, the path's action up to the last grid time, per unit initial mass)
    and hjb (mean squared HJB residual over steps and particles)."""

    points: jax.Array
    log_weights: jax.Array
    action: jax.Array
    hjb: jax.Array


def simulate(params, norm, x0, grid, key, *, sigma, alpha, growth: AbstractGrowth,
             laplacian: AbstractLaplacian, residual_blocks: int, with_hjb: bool = True) -> Simulation:
    """Euler-Maruyama from x0 (n, d) at grid[0] over the (static) grid.

    The action sums dt * sum_i (w_i / n) (|u_i|^2 / 2 + alpha psi(g_i)) at the left end of
    each step (the weights are relative to the initial mass, as in the paper). The HJB
    residual is taken at the same left ends; `with_hjb=False` skips it (queries), so
    only lambda and grad_x lambda are computed."""
    grid = jnp.asarray(grid, x0.dtype)
    n = x0.shape[0]

    def step(carry, inputs):
        x, logw, action, hjb = carry
        t, h, k = inputs
        k_noise, k_probe = jax.random.split(k)
        if with_hjb:
            f = fields(params, norm, x, t, residual_blocks=residual_blocks, laplacian=laplacian, key=k_probe)
        else:
            no_probes = jnp.zeros((0, x.shape[1]), x.dtype)
            value, grad_x, _, _ = jax.vmap(lambda xi: _jet(params, norm, xi, t, no_probes, residual_blocks))(x)
            f = Fields(value, grad_x, None, None)
        g = growth.rate(f.value, alpha)
        w = jnp.exp(logw)
        lagrangian = 0.5 * jnp.sum(f.grad_x ** 2, axis=-1) + alpha * growth.penalty(g)
        action = action + h * jnp.sum(w * lagrangian) / n
        if with_hjb:
            hjb = hjb + jnp.mean(hjb_residual(f, growth, alpha, sigma) ** 2)
        noise = jax.random.normal(k_noise, x.shape, x.dtype)
        x = x + f.grad_x * h + sigma * jnp.sqrt(h) * noise
        logw = logw + g * h
        return (x, logw, action, hjb), (x, logw)

    steps = grid.shape[0] - 1
    keys = jax.random.split(key, steps)
    zero = jnp.zeros((), x0.dtype)
    init = (x0, jnp.zeros((n,), x0.dtype), zero, zero)
    (_, _, action, hjb), (xs, logws) = jax.lax.scan(step, init, (grid[:-1], jnp.diff(grid), keys))
    points = jnp.concatenate([x0[None], xs])
    log_weights = jnp.concatenate([jnp.zeros((1, n), x0.dtype), logws])
    return Simulation(points, log_weights, action, hjb / max(steps, 1))


# ---------------------------------------------------------------------------------------
# The fitted model and its export.


@dataclasses.dataclass(frozen=True, kw_only=True)
class RuotSettings:
    """Everything about a model that is not an array, JSON-able via `to_dict`."""

    dim: int
    width: int
    residual_blocks: int
    sigma: float
    dt: float
    alpha: float
    growth: AbstractGrowth
    laplacian: AbstractLaplacian
    steps_trained: int = 0
    status: str = "untrained"  # "completed", "cancelled" (progress returned False) or "diverged"
    loss_names: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["growth"] = self.growth.to_settings()
        out["laplacian"] = self.laplacian.to_settings()
        out["loss_names"] = list(self.loss_names)
        out["format_version"] = FORMAT_VERSION
        return out

    @classmethod
    def from_dict(cls, settings: dict[str, Any]) -> "RuotSettings":
        settings = dict(settings)
        version = settings.pop("format_version", FORMAT_VERSION)
        if version != FORMAT_VERSION:
            raise ValueError(f"settings.format_version {version!r} is not supported (expected {FORMAT_VERSION})")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(settings) - names
        if unknown:
            raise ValueError(f"settings has unknown fields {sorted(unknown)}")
        try:
            settings["growth"] = growth_from_settings(settings["growth"])
            settings["laplacian"] = laplacian_from_settings(settings["laplacian"])
            settings["loss_names"] = tuple(settings.get("loss_names", ()))
            return cls(**settings)
        except (KeyError, TypeError) as err:
            raise ValueError(f"settings is incomplete or malformed: {err}") from None


_NORM_KEYS = ("norm.x_shift", "norm.x_scale", "norm.t_shift", "norm.t_scale")


@dataclasses.dataclass(frozen=True)
class RuotModel:
    """A fitted Var-RUOT model.

    params: network weights (name -> array). norm: fixed input maps.
    times (K,), relative_mass (K,): the training snapshots' times and masses M_k / M_0.
    initial_points (n0, d): the first snapshot, the default start of queries.
    history (blocks, len(loss_names)): mean losses of each reporting block.
    """

    params: dict[str, jax.Array]
    norm: Normaliser
    times: np.ndarray
    relative_mass: np.ndarray
    initial_points: np.ndarray
    history: np.ndarray
    settings: RuotSettings

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain numpy arrays: network weights under "params/<name>", the rest by name."""
        out = {f"params/{name}": np.asarray(value) for name, value in self.params.items()}
        out.update({key: np.asarray(value) for key, value in zip(_NORM_KEYS, self.norm)})  # not jumps
        out["times"] = np.asarray(self.times)
        out["relative_mass"] = np.asarray(self.relative_mass)
        out["initial_points"] = np.asarray(self.initial_points)
        out["history"] = np.asarray(self.history)
        return out

    def settings_dict(self) -> dict[str, Any]:
        return self.settings.to_dict()

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], settings: dict[str, Any]) -> "RuotModel":
        parsed = RuotSettings.from_dict(settings)
        missing = [k for k in (*_NORM_KEYS, "times", "relative_mass", "initial_points", "history") if k not in arrays]
        if missing:
            raise ValueError(f"arrays is missing {missing}")
        params = {k[len("params/"):]: jnp.asarray(v) for k, v in arrays.items() if k.startswith("params/")}
        # Jumps at the interior snapshot times when the input layer has a row for each.
        interior = max(np.asarray(arrays["times"]).reshape(-1).shape[0] - 2, 0)
        in_rows = np.shape(params.get("in.w"))[0] if np.ndim(params.get("in.w")) == 2 else None
        jumps = interior if interior and in_rows == parsed.dim + 1 + interior else 0
        expected = jax.eval_shape(lambda: init_params(jax.random.key(0), parsed.dim, parsed.width,
                                                      parsed.residual_blocks, jumps=jumps))
        if set(params) != set(expected):
            raise ValueError(f"arrays params do not match the settings' network: "
                             f"missing {sorted(set(expected) - set(params))}, extra {sorted(set(params) - set(expected))}")
        for name, spec in expected.items():
            if params[name].shape != spec.shape:
                raise ValueError(f"arrays['params/{name}'] has shape {params[name].shape}, expected {spec.shape}")
        norm = Normaliser(*(jnp.asarray(arrays[k]) for k in _NORM_KEYS),
                          jumps=jnp.asarray(np.asarray(arrays["times"])[1:-1], jnp.float32) if jumps else None)
        return cls(params, norm, np.asarray(arrays["times"]), np.asarray(arrays["relative_mass"]),
                   np.asarray(arrays["initial_points"]), np.asarray(arrays["history"]), parsed)
