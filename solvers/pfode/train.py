"""Denoising score matching for the built-in MLP: samples in, weights (a flat dict) out.

    out = train_dsm(samples, MLPArchitecture(dim=2, hidden=(64, 64)), NoisePrediction(),
                    VPSchedule(), DSMConfig(steps=2000), key=jax.random.key(0),
                    callback=lambda step, loss: print(step, loss))
    model = MLPModel(architecture, out.weights, NoisePrediction())

Each step draws a batch of data x_0, times t ~ U[t_min, t_max] and noise eps, forms
x_t = alpha x_0 + sigma eps and regresses the network output on the prediction type's
target, weighted so that every prediction type minimises the same eps-scale loss
(`AbstractPrediction.loss_scale`). Each block of `report_every` steps is one `lax.scan`
under jit; the host reports between blocks. With `should_stop` the steps run one
compiled step at a time and it is asked before each (`training.run_block`).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from monge.solvers.pfode.schedules import AbstractSchedule
from monge.solvers.pfode.sources import AbstractPrediction, MLPArchitecture
from monge.solvers.training import run_block


@dataclasses.dataclass(frozen=True, kw_only=True)
class DSMConfig:
    """steps, batch_size, report_every: static. learning_rate, t_min, t_max: traced.
    t_min / t_max default to the schedule's sampling interval."""

    steps: int = 2000
    batch_size: int = 256
    learning_rate: float = 1e-3
    t_min: float | None = None
    t_max: float | None = None
    report_every: int = 100

    def __post_init__(self):
        for name in ("steps", "batch_size", "report_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")


@dataclasses.dataclass(frozen=True)
class DSMOutput:
    weights: dict  # name -> array, the layout of `MLPArchitecture`
    losses: jax.Array  # (ceil(steps / report_every),) mean loss over each reporting block
    final_loss: jax.Array  # mean loss over the last block

    @property
    def finite(self) -> bool:
        """False when training diverged (a NaN or infinite loss): do not use the weights."""
        return bool(jnp.all(jnp.isfinite(self.losses)))


def train_dsm(
    samples,
    architecture: MLPArchitecture,
    prediction: AbstractPrediction,
    schedule: AbstractSchedule,
    config: DSMConfig = DSMConfig(),
    *,
    key: jax.Array,
    init_weights: dict | None = None,
    callback: Callable[[int, float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> DSMOutput:
    """Train the built-in MLP on `samples` (n, dim); pure apart from `callback`, which
    receives (step, mean loss of the last block) as host values, and `should_stop`,
    asked before every step: True aborts the run, which raises `TrainingStopped` with
    the number of steps taken."""
    samples = jnp.asarray(samples)
    if samples.ndim != 2 or samples.shape[1] != architecture.dim or samples.shape[0] < 1:
        raise ValueError(f"samples must have shape (n, {architecture.dim}), got {samples.shape}")
    if not bool(jnp.all(jnp.isfinite(samples))):
        raise ValueError("samples must be finite")
    if not isinstance(prediction, AbstractPrediction):
        raise ValueError(f"prediction must be an AbstractPrediction, got {type(prediction).__name__}")
    init_key, key = jax.random.split(key)
    weights = architecture.init(init_key) if init_weights is None else architecture.validate(init_weights)
    dtype = samples.dtype if jnp.issubdtype(samples.dtype, jnp.floating) else jnp.float32
    weights = {name: w.astype(dtype) for name, w in weights.items()}
    default_start, default_end = schedule.default_interval()
    t_min = default_end if config.t_min is None else config.t_min
    t_max = default_start if config.t_max is None else config.t_max
    if not float(t_max) > float(t_min):
        raise ValueError(f"t_max must be greater than t_min, got {t_max} <= {t_min}")
    hyper = jax.tree.map(lambda v: jnp.asarray(v, dtype), (config.learning_rate, t_min, t_max))
    # Schedule numbers become arrays: traced, so a new beta_max does not recompile.
    schedule = jax.tree.map(lambda v: jnp.asarray(v, dtype) if isinstance(v, (int, float)) else v, schedule)
    samples = samples.astype(dtype)
    opt_state = optax.adam(hyper[0]).init(weights)

    def step_block(state, first, steps):
        weights, opt_state, total = _train_block(samples, *state, schedule, prediction, key, hyper, jnp.int32(first),
                                                 architecture=architecture, block=steps,
                                                 batch_size=config.batch_size)
        return (weights, opt_state), total

    block_losses, done = [], 0
    while done < config.steps:
        block = min(config.report_every, config.steps - done)
        (weights, opt_state), total, taken = run_block(step_block, (weights, opt_state), done, block, should_stop)
        if taken < block:
            raise TrainingStopped(done + taken)
        done += block
        block_losses.append(total / block)
        if callback is not None:
            callback(done, float(block_losses[-1]))
    block_losses = jnp.stack(block_losses)
    return DSMOutput(weights, block_losses, block_losses[-1])


class TrainingStopped(Exception):
    """`should_stop()` said True: training was aborted after `steps` steps."""

    def __init__(self, steps: int):
        super().__init__(f"training stopped after {steps} steps")
        self.steps = steps


@eqx.filter_jit
def _train_block(samples, weights, opt_state, schedule, prediction, key, hyper, first, *, architecture, block,
                 batch_size):
    """`block` steps from step `first`: the weights, the optimiser state and the sum of
    the steps' losses."""
    learning_rate, t_min, t_max = hyper
    # A floor on t keeps sigma > 0 (VE at t = 0 is fine, EDM at sigma = 0 is not).
    t_min = jnp.maximum(t_min, jnp.finfo(samples.dtype).eps)
    optimizer = optax.adam(learning_rate)
    n, dim = samples.shape

    def loss_fn(w, batch_key):
        k_idx, k_t, k_eps = jax.random.split(batch_key, 3)
        x0 = samples[jax.random.randint(k_idx, (batch_size,), 0, n)]
        t = jax.random.uniform(k_t, (batch_size,), samples.dtype, t_min, t_max)
        eps = jax.random.normal(k_eps, x0.shape, samples.dtype)
        log_alpha, log_sigma = schedule.log_alpha(t), schedule.log_sigma(t)
        alpha, sigma = jnp.exp(log_alpha)[:, None], jnp.exp(log_sigma)[:, None]
        output = architecture.apply(w, alpha * x0 + sigma * eps, log_alpha, log_sigma)
        target = prediction.target(x0, eps, alpha, sigma)
        per_sample = prediction.loss_scale(alpha, sigma)[:, 0] * jnp.sum((output - target) ** 2, axis=-1)
        return jnp.mean(per_sample) / dim

    def step(carry, i):
        w, opt_state, running = carry
        loss, grads = jax.value_and_grad(loss_fn)(w, jax.random.fold_in(key, i))
        updates, opt_state = optimizer.update(grads, opt_state, w)
        return (optax.apply_updates(w, updates), opt_state, running + loss), None

    init = (weights, opt_state, jnp.zeros((), samples.dtype))
    (weights, opt_state, total), _ = jax.lax.scan(step, init, first + jnp.arange(block))
    return weights, opt_state, total
