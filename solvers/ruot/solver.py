"""Var-RUOT training (`fit`, compiled blocks of steps) and the queries of a fitted
model (fields, trajectories, populations, mass and action over time)."""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from monge.solvers.ruot.config import (
    AbstractGrowth,
    AbstractSchedule,
    AbstractLaplacian,
    AbstractReconstruction,
    RuotConfig,
    Snapshot,
    SnapshotData,
    validate_snapshots,
)
from monge.solvers.ruot.model import (
    Fields,
    Normaliser,
    RuotModel,
    RuotSettings,
    _jet,
    fields,
    hjb_residual,
    init_params,
    simulate,
    time_grid,
)
from monge.solvers.training import run_block


LOSS_NAMES = ("total", "ot", "mass", "hjb", "action")
DTYPE = np.float32


class _Static(NamedTuple):
    """Everything that shapes the compiled training step (hashable)."""

    residual_blocks: int
    growth: AbstractGrowth
    laplacian: AbstractLaplacian
    grid: tuple[float, ...]
    marks: tuple[int, ...]
    particles: int
    clip: bool
    schedule: AbstractSchedule
    reconstruction: AbstractReconstruction


class _Hyper(NamedTuple):
    """Traced values: changing them does not recompile."""

    sigma: jax.Array
    alpha: jax.Array
    gamma_hjb: jax.Array
    gamma_action: jax.Array
    gamma_mass: jax.Array
    epsilon: jax.Array
    learning_rate: jax.Array
    weight_decay: jax.Array
    clip_norm: jax.Array
    total_steps: jax.Array  # the run's optimiser steps (for the schedule)
    pretrain_steps: jax.Array  # steps with the HJB and action terms off
    relative_mass: jax.Array  # (K,)
    target_self: jax.Array  # (K,) OT(b, b) / 2 of each snapshot, a constant of the loss


def _optimizer(hyper: _Hyper, clip: bool, schedule: AbstractSchedule):
    rate = lambda count: hyper.learning_rate * schedule.factor(count, hyper.total_steps)
    adamw = optax.adamw(rate, weight_decay=hyper.weight_decay)
    return optax.chain(optax.clip_by_global_norm(hyper.clip_norm), adamw) if clip else adamw


def _loss(params, norm, targets, hyper: _Hyper, key, step, static: _Static):
    k_start, k_sim = jax.random.split(key)
    x_first = targets[0]
    n0 = x_first.shape[0]
    idx = jax.random.choice(k_start, n0, (static.particles,), replace=n0 < static.particles)
    sim = simulate(params, norm, x_first[idx], np.asarray(static.grid), k_sim, sigma=hyper.sigma,
                   alpha=hyper.alpha, growth=static.growth, laplacian=static.laplacian,
                   residual_blocks=static.residual_blocks)
    ot_total = jnp.zeros((), x_first.dtype)
    mass_total = jnp.zeros((), x_first.dtype)
    for k in range(1, len(targets)):
        x, logw = sim.points[static.marks[k]], sim.log_weights[static.marks[k]]
        # Normalise in log space: weights can span many orders of magnitude.
        a = jax.nn.softmax(logw)
        y = targets[k]
        b = jnp.full((y.shape[0],), 1.0 / y.shape[0], y.dtype)
        divergence = (static.reconstruction.particle_terms(x, a, y, b, hyper.epsilon, population=n0)
                      - hyper.target_self[k])
        ot_total = ot_total + divergence
        mass = jnp.mean(jnp.exp(logw))
        mass_total = mass_total + (mass - hyper.relative_mass[k]) ** 2
    # Reconstruction-only pre-training: the HJB and action terms join after it.
    on = (step >= hyper.pretrain_steps).astype(x_first.dtype)
    total = (ot_total + hyper.gamma_mass * mass_total
             + on * (hyper.gamma_hjb * sim.hjb + hyper.gamma_action * sim.action))
    return total, jnp.stack([total, ot_total, mass_total, sim.hjb, sim.action])


@functools.partial(jax.jit, static_argnames=("static", "block"))
def _train_block(params, opt_state, norm, targets, hyper: _Hyper, key, first_step, *, static: _Static, block: int):
    """`block` steps; returns the parameters, the optimiser state and the loss terms
    summed over the steps."""
    optimizer = _optimizer(hyper, static.clip, static.schedule)
    grad_fn = jax.value_and_grad(_loss, has_aux=True)

    def train(params, opt_state, i):
        (_, terms), grads = grad_fn(params, norm, targets, hyper, jax.random.fold_in(key, i), i, static)
        updates, new_state = optimizer.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        # A non-finite step is not applied; the host sees the NaN in the losses and stops.
        ok = jnp.all(jnp.isfinite(terms)) & jnp.all(
            jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, old)
        return keep(new_params, params), keep(new_state, opt_state), terms

    def step(carry, i):
        params, opt_state, terms = train(*carry, i)
        return (params, opt_state), terms

    (params, opt_state), terms = jax.lax.scan(step, (params, opt_state), first_step + jnp.arange(block))
    return params, opt_state, jnp.sum(terms, axis=0)


def _normaliser(data: SnapshotData) -> Normaliser:
    pooled = np.concatenate(data.points).astype(np.float64)
    scale = float(np.sqrt(np.mean(pooled.var(axis=0))))
    scale = scale if scale > 0 else 1.0
    span = float(data.times[-1] - data.times[0])
    return Normaliser(jnp.asarray(pooled.mean(axis=0), DTYPE), jnp.asarray(scale, DTYPE),
                      jnp.asarray(data.times[0], DTYPE), jnp.asarray(span, DTYPE))


def fit(
    snapshots: Sequence[Snapshot | tuple],
    config: RuotConfig = RuotConfig(),
    *,
    progress: Callable[[int, dict[str, float]], bool | None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> RuotModel:
    """Fit Var-RUOT to snapshots [(time, points (n_k, d)[, mass]), ...].

    `progress(step, losses)` is called after every `config.report_every` steps with the
    block's mean losses {"total", "ot", "mass", "hjb", "action"}; returning False stops
    training (status "cancelled"). `should_stop()`, when given, is asked before every
    step (the steps then run one compiled step at a time), so a stop is noticed
    within one step rather than one block; True stops training the same way. A
    non-finite loss stops it too (status "diverged", the last finite parameters kept).
    Raises ValueError on bad input, naming the field.
    """
    if not isinstance(config, RuotConfig):
        raise ValueError(f"config must be a RuotConfig, got {type(config).__name__}")
    data = validate_snapshots(snapshots)
    dim = data.dim
    laplacian = config.laplacian.resolve(dim)
    grid, marks = time_grid(data.times, config.dt)
    norm = _normaliser(data)
    jumps = len(data.times) - 2 if config.network.snapshot_jumps else 0
    if jumps > 0:
        norm = norm._replace(jumps=jnp.asarray(data.times[1:-1], DTYPE))
    pooled = np.concatenate(data.points).astype(np.float64)
    epsilon = config.ot_epsilon * max(float(pooled.var(axis=0).sum()), 1e-12)
    targets = tuple(jnp.asarray(p) for p in data.points)
    # OT(b, b) of each snapshot does not depend on the parameters: computed once, so the
    # reported "ot" is the full debiased divergence at no cost per step.
    target_self = [0.0] + [
        float(config.reconstruction.snapshot_term(y, jnp.full((y.shape[0],), 1.0 / y.shape[0], y.dtype),
                                                  jnp.asarray(epsilon, DTYPE)))
        for y in targets[1:]
    ]
    opt = config.optimizer
    f32 = lambda v: jnp.asarray(v, DTYPE)
    hyper = _Hyper(
        f32(config.sigma), f32(config.alpha), f32(config.gamma_hjb), f32(config.gamma_action),
        f32(config.gamma_mass), f32(epsilon), f32(opt.learning_rate), f32(opt.weight_decay),
        f32(1.0 if opt.clip_norm is None else opt.clip_norm), f32(config.steps),
        f32(round(config.pretrain_fraction * config.steps)), f32(data.relative_mass), f32(target_self),
    )
    key = jax.random.key(config.seed)
    init_key, train_key = jax.random.split(key)
    params = init_params(init_key, dim, config.network.width, config.network.residual_blocks, DTYPE,
                         jumps=max(jumps, 0), readout_scale=config.network.readout_scale)
    opt_state = _optimizer(hyper, opt.clip_norm is not None, opt.schedule).init(params)

    history, done, status = [], 0, "completed"
    static = _Static(config.network.residual_blocks, config.growth, laplacian, tuple(grid.tolist()),
                     tuple(int(m) for m in marks), config.particles, opt.clip_norm is not None,
                     opt.schedule, config.reconstruction)

    def step_block(state, first, steps):
        params, opt_state, total = _train_block(*state, norm, targets, hyper, train_key, jnp.int32(first),
                                                static=static, block=steps)
        return (params, opt_state), total

    while done < config.steps:
        block = min(config.report_every, config.steps - done)
        (params, opt_state), total, taken = run_block(step_block, (params, opt_state), done, block, should_stop)
        done += taken
        if taken == 0:  # stopped before the block's first step
            status = "cancelled"
            break
        losses = dict(zip(LOSS_NAMES, (float(v) for v in np.asarray(total / taken))))
        history.append([losses[name] for name in LOSS_NAMES])
        if not all(math.isfinite(v) for v in losses.values()):
            status = "diverged"
            break
        if taken < block or (progress is not None and progress(done, losses) is False):
            status = "cancelled"
            break

    settings = RuotSettings(
        dim=dim, width=config.network.width, residual_blocks=config.network.residual_blocks,
        sigma=float(config.sigma), dt=float(config.dt), alpha=float(config.alpha), growth=config.growth,
        laplacian=laplacian, steps_trained=done, status=status, loss_names=LOSS_NAMES,
    )
    return RuotModel(params, norm, data.times.copy(), data.relative_mass.copy(), data.points[0].copy(),
                     np.asarray(history, DTYPE).reshape(-1, len(LOSS_NAMES)), settings)


# ---------------------------------------------------------------------------------------
# Queries: pure functions of a fitted model.


def _points_and_times(model: RuotModel, x, t):
    x = np.asarray(x, DTYPE)
    if x.ndim != 2 or x.shape[1] != model.settings.dim:
        raise ValueError(f"points must have shape (n, {model.settings.dim}), got {x.shape}")
    t = np.broadcast_to(np.asarray(t, DTYPE), (x.shape[0],))
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(t))):
        raise ValueError("points and times must be finite")
    return jnp.asarray(x), jnp.asarray(t)


@functools.partial(jax.jit, static_argnames=("residual_blocks", "laplacian"))
def _fields_at(params, norm, x, t, key, *, residual_blocks, laplacian) -> Fields:
    per_point = lambda xi, ti, ki: jax.tree.map(
        lambda v: v[0], fields(params, norm, xi[None], ti, residual_blocks=residual_blocks,
                               laplacian=laplacian, key=ki))
    return jax.vmap(per_point)(x, t, jax.random.split(key, x.shape[0]))


def _query_fields(model: RuotModel, x, t, seed=0) -> Fields:
    x, t = _points_and_times(model, x, t)
    return _fields_at(model.params, model.norm, x, t, jax.random.key(seed),
                      residual_blocks=model.settings.residual_blocks, laplacian=model.settings.laplacian)


@functools.partial(jax.jit, static_argnames=("residual_blocks",))
def _first_order_at(params, norm, x, t, *, residual_blocks):
    """lambda and grad_x lambda at points x (n, d), times t (n,): the jet without probes,
    so queries never pay for second derivatives."""
    no_probes = jnp.zeros((0, x.shape[1]), x.dtype)
    one = lambda xi, ti: _jet(params, norm, xi, ti, no_probes, residual_blocks)[:2]
    return jax.vmap(one)(x, t)


def _query_first_order(model: RuotModel, x, t):
    x, t = _points_and_times(model, x, t)
    return _first_order_at(model.params, model.norm, x, t, residual_blocks=model.settings.residual_blocks)


def potential_at(model: RuotModel, x, t) -> np.ndarray:
    """lambda(x, t) at points x (n, d); t a scalar or (n,)."""
    return np.asarray(_query_first_order(model, x, t)[0])


def velocity_at(model: RuotModel, x, t) -> np.ndarray:
    """u = grad_x lambda at points x (n, d), time(s) t: (n, d)."""
    return np.asarray(_query_first_order(model, x, t)[1])


def growth_at(model: RuotModel, x, t) -> np.ndarray:
    """The growth rate g(lambda(x, t)): (n,)."""
    lam = _query_first_order(model, x, t)[0]
    return np.asarray(model.settings.growth.rate(lam, jnp.asarray(model.settings.alpha, lam.dtype)))


def hjb_residual_at(model: RuotModel, x, t, seed: int = 0) -> np.ndarray:
    """The HJB residual at points x (n, d), time(s) t (zero at an exact optimum): (n,)."""
    s = model.settings
    f = _query_fields(model, x, t, seed)
    return np.asarray(hjb_residual(f, s.growth, jnp.asarray(s.alpha, DTYPE), jnp.asarray(s.sigma, DTYPE)))


@dataclasses.dataclass(frozen=True)
class Trajectories:
    """Particles at the requested times: points (T, n, d), weights (T, n) with w = 1 at the
    first snapshot time, mass (T,) = mean weight (relative to the initial mass), and the
    action of the path from the first snapshot time to the last requested time."""

    times: np.ndarray
    points: np.ndarray
    weights: np.ndarray
    mass: np.ndarray
    action: float


@dataclasses.dataclass(frozen=True)
class Population:
    """The predicted population at one time: points (n, d), weights (n,) and mass."""

    time: float
    points: np.ndarray
    weights: np.ndarray
    mass: float

    @property
    def probabilities(self) -> np.ndarray:
        return self.weights / self.weights.sum()


_simulate_jit = jax.jit(functools.partial(simulate, with_hjb=False),
                        static_argnames=("growth", "laplacian", "residual_blocks"))


def trajectories(model: RuotModel, times=None, x0=None, *, seed: int = 0) -> Trajectories:
    """Simulate from x0 (n, d; default the first snapshot) at the first snapshot time to
    each of `times` (increasing, >= that time; default the snapshot times). Times after
    the last snapshot extrapolate the learned dynamics."""
    s = model.settings
    t0 = float(model.times[0])
    times = np.asarray(model.times if times is None else times, np.float64).reshape(-1)
    if times.size == 0 or not np.all(np.isfinite(times)):
        raise ValueError("times must be a non-empty array of finite numbers")
    if np.any(np.diff(times) <= 0):
        raise ValueError("times must increase strictly")
    if times[0] < t0 - 1e-9:
        raise ValueError(f"times must not precede the first snapshot time {t0}, got {times[0]}")
    x0 = model.initial_points if x0 is None else x0
    x0, _ = _points_and_times(model, x0, t0)
    through = times if times[0] > t0 + 1e-9 else times[1:]
    stops = np.concatenate([[t0], through])
    if model.norm.jumps is not None:
        # lambda jumps at the interior snapshot times: put them on the grid so that no
        # step straddles one (they are simulated through, not returned).
        jumps = np.asarray(model.times, np.float64)[1:-1]
        jumps = jumps[(jumps > t0) & (jumps < stops[-1])]
        stops = np.union1d(stops, jumps)
    grid, marks = time_grid(stops, s.dt)
    marks = marks[np.searchsorted(stops, np.concatenate([[t0], through]))]
    if times[0] > t0 + 1e-9:
        marks = marks[1:]
    sim = _simulate_jit(model.params, model.norm, x0, jnp.asarray(grid, DTYPE), jax.random.key(seed),
                        sigma=jnp.asarray(s.sigma, DTYPE), alpha=jnp.asarray(s.alpha, DTYPE),
                        growth=s.growth, laplacian=s.laplacian, residual_blocks=s.residual_blocks)
    weights = np.exp(np.asarray(sim.log_weights)[marks])
    return Trajectories(times, np.asarray(sim.points)[marks], weights, weights.mean(axis=1), float(sim.action))


def predict(model: RuotModel, time: float, x0=None, *, seed: int = 0) -> Population:
    """The population at `time` (between snapshots or after the last one)."""
    traj = trajectories(model, [time], x0, seed=seed)
    return Population(float(time), traj.points[0], traj.weights[0], float(traj.mass[0]))


def mass_over_time(model: RuotModel, times, x0=None, *, seed: int = 0) -> np.ndarray:
    """Total mass relative to the initial mass at each of `times`."""
    return trajectories(model, times, x0, seed=seed).mass


def path_action(model: RuotModel, x0=None, *, until: float | None = None, seed: int = 0) -> float:
    """The action int (|u|^2 / 2 + alpha psi(g)) rho dx dt from the first snapshot time to
    `until` (default the last snapshot time), per unit initial mass."""
    until = float(model.times[-1]) if until is None else until
    return trajectories(model, [until], x0, seed=seed).action
