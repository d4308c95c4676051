"""Probability-flow ODE sampling and likelihoods: one family, two entry points.

    out = sample(source, schedule, sampler, num_samples=1000, key=jax.random.key(0), nfe=20)
    out.samples, out.nfe, out.status, out.trajectory, out.log_prob

    lik = log_likelihood(source, schedule, points, divergence=HutchinsonDivergence(16), key=key)
    lik.log_prob, lik.stderr

Composed from small strategy objects (all `equinox.Module`s, frozen, pytrees):
    schedule   VPSchedule | VESchedule | EDMSchedule                 (pfode_schedules)
    grid       UniformTimeGrid | LogSNRTimeGrid | KarrasTimeGrid      (pfode_schedules)
    source     GaussianMixture | MLPModel(architecture, weights, prediction)  (pfode_sources)
    sampler    Euler | Heun | ExponentialEuler | DPMSolverPlusPlus(order) | Dopri5 | Diffrax
    prior      NoisePrior | MarginalPrior
    divergence ExactDivergence | HutchinsonDivergence
Training a model: `train_dsm(samples, architecture, prediction, schedule, DSMConfig(...),
key=..., callback=...) -> DSMOutput(weights, losses, final_loss)` (pfode_train).

Static versus traced: the number of samples, steps, probes, dtype and the sampler's
structure are static; schedule parameters, mixture parameters, model weights, times and
tolerances are traced, so one compiled program serves every request of a shape.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import math

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from monge.solvers.pfode_samplers import (
    AbstractExponentialSampler,
    AbstractFixedGridSampler,
    AbstractSampler,
    Diffrax,
    Dopri5,
    DPMSolverPlusPlus,
    Euler,
    ExponentialEuler,
    Heun,
    SampleStatus,
    velocity,
)
from monge.solvers.pfode_schedules import (
    AbstractSchedule,
    AbstractTimeGrid,
    EDMSchedule,
    KarrasTimeGrid,
    LogSNRTimeGrid,
    UniformTimeGrid,
    VESchedule,
    VPSchedule,
)
from monge.solvers.pfode_sources import (
    AbstractPrediction,
    AbstractScoreSource,
    DataPrediction,
    GaussianMixture,
    MLPArchitecture,
    MLPModel,
    NoisePrediction,
    ScorePrediction,
    VelocityPrediction,
)

from monge.solvers.pfode_train import DSMConfig, DSMOutput, train_dsm

__all__ = [
    "DSMConfig", "DSMOutput", "train_dsm", "PREDICTIONS", "SAMPLERS", "SCHEDULES", "TIME_GRIDS",
    "AbstractDivergence", "AbstractExponentialSampler", "AbstractFixedGridSampler",
    "AbstractPrediction", "AbstractPrior", "AbstractSampler", "AbstractSchedule",
    "AbstractScoreSource", "AbstractTimeGrid", "DataPrediction", "Diffrax", "Dopri5",
    "DPMSolverPlusPlus", "EDMSchedule", "Euler", "ExactDivergence", "ExponentialEuler",
    "GaussianMixture", "Heun", "HutchinsonDivergence", "KarrasTimeGrid", "LikelihoodOutput",
    "LogSNRTimeGrid", "MarginalPrior", "MLPArchitecture", "MLPModel", "NoisePrediction",
    "NoisePrior", "SampleOutput", "SampleStatus", "ScorePrediction", "UniformTimeGrid",
    "VelocityPrediction", "VESchedule", "VPSchedule", "log_likelihood", "sample",
]


# ---------------------------------------------------------------------------------------
# Priors: the law sampling starts from at t_start.


class AbstractPrior(eqx.Module):
    @abc.abstractmethod
    def sample(self, key, source, schedule, t, num_samples: int, dtype) -> jax.Array: ...

    @abc.abstractmethod
    def log_prob(self, x, source, schedule, t) -> jax.Array: ...


class NoisePrior(AbstractPrior):
    """N(0, (sigma(t)^2 + alpha(t)^2 data_std^2) I): the noised law of data with standard
    deviation `data_std` per coordinate, ignoring its mean. With the default 0 this is
    N(0, sigma_T^2 I), the usual choice (VP: ~N(0, I); VE/EDM: N(0, sigma_max^2 I))."""

    data_std: float = 0.0

    def _std(self, schedule, t):
        return jnp.sqrt(schedule.sigma(t) ** 2 + (schedule.alpha(t) * self.data_std) ** 2)

    def sample(self, key, source, schedule, t, num_samples, dtype):
        return self._std(schedule, t) * jax.random.normal(key, (num_samples, source.dim), dtype)

    def log_prob(self, x, source, schedule, t):
        std = self._std(schedule, t)
        d = x.shape[-1]
        return -0.5 * jnp.sum(x**2, axis=-1) / std**2 - d * jnp.log(std) - 0.5 * d * math.log(2 * math.pi)


class MarginalPrior(AbstractPrior):
    """The exact noised law of an analytic source at t_start: sampling then has no prior
    mismatch, so every remaining error is the integrator's (what order tests need)."""

    def sample(self, key, source, schedule, t, num_samples, dtype):
        return source.sample_marginal(key, num_samples, t, schedule, dtype)

    def log_prob(self, x, source, schedule, t):
        return source.log_prob(x, t, schedule)


# ---------------------------------------------------------------------------------------
# Divergence of the velocity field, for the instantaneous change of variables.


class AbstractDivergence(eqx.Module):
    # Whether `probes` draws random numbers (log_likelihood then requires a key).
    needs_key = False

    @abc.abstractmethod
    def probes(self, key, n: int, d: int, dtype) -> jax.Array:
        """(n, P, d) tangent directions; div v is estimated from z^T (dv/dx) z."""

    @abc.abstractmethod
    def combine(self, quadratic_forms) -> tuple[jax.Array, jax.Array]:
        """(n, P) integrated quadratic forms -> (estimate (n,), standard error (n,))."""


class ExactDivergence(AbstractDivergence):
    """The trace of the Jacobian from d forward-mode products (the basis vectors):
    exact, d Jacobian-vector products per evaluation; for low dimension."""

    def probes(self, key, n, d, dtype):
        return jnp.broadcast_to(jnp.eye(d, dtype=dtype), (n, d, d))

    def combine(self, quadratic_forms):
        return jnp.sum(quadratic_forms, axis=-1), jnp.zeros(quadratic_forms.shape[:1], quadratic_forms.dtype)


class HutchinsonDivergence(AbstractDivergence):
    """Hutchinson's estimator with `num_probes` Rademacher vectors held fixed along each
    trajectory; the per-point estimates are independent across probes, so their spread
    gives a standard error of the integrated divergence."""

    num_probes: int = eqx.field(static=True, default=16)
    needs_key = True

    def __check_init__(self):
        if self.num_probes < 2:
            raise ValueError(f"num_probes must be at least 2 (for a standard error), got {self.num_probes}")

    def probes(self, key, n, d, dtype):
        return jax.random.rademacher(key, (n, self.num_probes, d), dtype)

    def combine(self, quadratic_forms):
        p = quadratic_forms.shape[-1]
        return jnp.mean(quadratic_forms, axis=-1), jnp.std(quadratic_forms, axis=-1, ddof=1) / math.sqrt(p)


# ---------------------------------------------------------------------------------------
# Names a request may use (lower-case, as in the proto enums without their prefix), so
# that the service maps an enum to a class in one place.

SCHEDULES = {"vp": VPSchedule, "ve": VESchedule, "edm": EDMSchedule}
TIME_GRIDS = {"uniform": UniformTimeGrid, "log_snr": LogSNRTimeGrid, "karras": KarrasTimeGrid}
SAMPLERS = {
    "euler": Euler,
    "heun": Heun,
    "ddim": ExponentialEuler,
    "dpm_solver_pp_2m": functools.partial(DPMSolverPlusPlus, order=2),
    "dpm_solver_pp_3m": functools.partial(DPMSolverPlusPlus, order=3),
    "dopri5": Dopri5,
}
PREDICTIONS = {
    "score": ScorePrediction,
    "noise": NoisePrediction,
    "data": DataPrediction,
    "velocity": VelocityPrediction,
}


# ---------------------------------------------------------------------------------------
# Outputs.


@dataclasses.dataclass(frozen=True)
class LikelihoodOutput:
    """log p_{t_end}(points) by the instantaneous change of variables.

    log_prob = prior_log_prob + integrated divergence; stderr is the Hutchinson standard
    error (zeros for the exact divergence); latents are the points pushed to t_start;
    nfe counts velocity evaluations of the augmented ODE (each costs P Jacobian-vector
    products: P = d exact, P = num_probes Hutchinson)."""

    log_prob: jax.Array  # (n,)
    stderr: jax.Array  # (n,)
    prior_log_prob: jax.Array  # (n,)
    latents: jax.Array  # (n, d)
    nfe: jax.Array  # int32
    status: jax.Array  # int32, a SampleStatus

    @property
    def message(self) -> str:
        return SampleStatus(int(self.status)).message


@dataclasses.dataclass(frozen=True)
class SampleOutput:
    """Samples at t_end and diagnostics. Fields not asked for are None (the type does not
    change with the request)."""

    samples: jax.Array  # (num_samples, d)
    nfe: jax.Array  # int32: score evaluations actually used
    times: jax.Array  # (steps + 1,) the grid (for adaptive samplers: where trajectory is saved)
    status: jax.Array  # int32, a SampleStatus
    trajectory: jax.Array | None = None  # (steps + 1, num_samples, d)
    log_prob: jax.Array | None = None  # (num_samples,) log p_{t_end}(samples)
    log_prob_stderr: jax.Array | None = None  # (num_samples,)

    @property
    def ok(self) -> bool:
        return int(self.status) == SampleStatus.SUCCESS

    @property
    def message(self) -> str:
        return SampleStatus(int(self.status)).message


for _cls in (SampleOutput, LikelihoodOutput):
    jax.tree_util.register_dataclass(_cls, data_fields=[f.name for f in dataclasses.fields(_cls)], meta_fields=[])


# ---------------------------------------------------------------------------------------
# Entry points.


def _cast(tree, dtype):
    """Floating leaves to the request dtype, so float64 parameters do not promote a
    float32 request (and float32 weights run in float64 when asked)."""

    def cast(leaf):
        if isinstance(leaf, float):
            return jnp.asarray(leaf, dtype)
        if isinstance(leaf, jax.Array | np.ndarray) and jnp.issubdtype(leaf.dtype, jnp.floating):
            return leaf.astype(dtype)
        return leaf

    return jax.tree.map(cast, tree)


def _interval(schedule, t_start, t_end):
    default_start, default_end = schedule.default_interval()
    t_start = default_start if t_start is None else t_start
    t_end = default_end if t_end is None else t_end
    try:
        if not float(t_start) > float(t_end):
            raise ValueError(f"t_start must be greater than t_end, got t_start={float(t_start)}, t_end={float(t_end)}")
        if float(t_end) < 0:
            raise ValueError(f"t_end must be non-negative, got {float(t_end)}")
    except (TypeError, jax.errors.ConcretizationTypeError):
        pass
    return t_start, t_end


def _check_int(name, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _scalars_to_arrays(tree):
    """Python numbers in strategy objects become arrays so that `eqx.filter_jit` traces
    them (one program for every beta_max, rtol, ...) and keeps only structure static."""
    return jax.tree.map(
        lambda leaf: jnp.asarray(leaf) if isinstance(leaf, (int, float)) and not isinstance(leaf, bool) else leaf,
        tree,
    )


@eqx.filter_jit
def _sample_core(source, schedule, sampler, grid, prior, key, x_init, t_start, t_end, lik_key, lik_tols,
                 *, steps, num_samples, save_trajectory, dtype, divergence):
    source, schedule, prior = _cast((source, schedule, prior), dtype)
    t_start, t_end = jnp.asarray(t_start, dtype), jnp.asarray(t_end, dtype)
    times = grid(schedule, t_start, t_end, steps).astype(dtype)
    if x_init is None:
        x = prior.sample(key, source, schedule, t_start, num_samples, dtype)
    else:
        x = x_init.astype(dtype)
    x_end, trajectory, nfe, status = sampler.integrate(source, schedule, times, x, save_trajectory)
    out = SampleOutput(x_end, nfe, times, status, trajectory)
    if divergence is not None:
        lik = _likelihood_core(source, schedule, prior, divergence, x_end, t_start, t_end, lik_key, *lik_tols)
        out = dataclasses.replace(out, log_prob=lik.log_prob, log_prob_stderr=lik.stderr)
    return out


def sample(
    source: AbstractScoreSource,
    schedule: AbstractSchedule,
    sampler: AbstractSampler = Heun(),
    *,
    num_samples: int,
    key: jax.Array,
    steps: int | None = None,
    nfe: int | None = None,
    grid: AbstractTimeGrid | None = None,
    t_start: float | None = None,
    t_end: float | None = None,
    prior: AbstractPrior = NoisePrior(),
    x_init: jax.Array | None = None,
    dtype=jnp.float32,
    save_trajectory: bool = False,
    likelihood: AbstractDivergence | None = None,
    likelihood_rtol: float = 1e-5,
    likelihood_atol: float = 1e-5,
) -> SampleOutput:
    """Draw `num_samples` from the prior at t_start and integrate the probability-flow
    ODE to t_end. Budget: `steps` grid steps, or `nfe` score evaluations (the most steps
    the sampler can take within it); exactly one of them. `x_init` (num_samples, d)
    replaces the prior draw. `likelihood` also returns log p_{t_end}(samples)."""
    if not isinstance(source, AbstractScoreSource):
        raise ValueError(f"source must be an AbstractScoreSource, got {type(source).__name__}")
    num_samples = _check_int("num_samples", num_samples)
    if (steps is None) == (nfe is None):
        raise ValueError("give exactly one of steps and nfe")
    if nfe is not None:
        nfe = _check_int("nfe", nfe)
        steps = sampler.steps_for_nfe(nfe)
        if steps < 1:
            raise ValueError(f"nfe={nfe} is too small for one step of {type(sampler).__name__}")
    steps = _check_int("steps", steps)
    if x_init is not None and tuple(np.shape(x_init)) != (num_samples, source.dim):
        raise ValueError(f"x_init must have shape {(num_samples, source.dim)}, got {tuple(np.shape(x_init))}")
    if isinstance(prior, MarginalPrior) and not isinstance(source, GaussianMixture):
        raise ValueError("prior: MarginalPrior needs an analytic (GaussianMixture) source")
    t_start, t_end = _interval(schedule, t_start, t_end)
    grid = sampler.default_grid(schedule) if grid is None else grid
    lik_key = key if likelihood is None else jax.random.fold_in(key, 1)
    dynamic = _scalars_to_arrays(
        (source, schedule, sampler, grid, prior, t_start, t_end, (likelihood_rtol, likelihood_atol))
    )
    source, schedule, sampler, grid, prior, t_start, t_end, lik_tols = dynamic
    return _sample_core(
        source, schedule, sampler, grid, prior, key, x_init, t_start, t_end, lik_key, lik_tols,
        steps=steps, num_samples=num_samples, save_trajectory=bool(save_trajectory),
        dtype=jnp.dtype(dtype), divergence=likelihood,
    )


def _integrate_divergence(source, schedule, divergence, points, t_start, t_end, key, rtol, atol, max_steps=4096):
    """Push points from t_end to t_start along the ODE, integrating z^T (dv/dx) z for each
    probe z. -> (latents, divergence integral, its standard error, nfe, status)."""
    n, d = points.shape
    dtype = points.dtype
    z = divergence.probes(key, n, d, dtype)  # (n, P, d)

    def field(t, state, args):
        x, _ = state

        def v(y):
            return velocity(source, schedule, y, t)

        # One JVP per probe on the whole batch: rows do not interact, so the batch
        # Jacobian is block diagonal and J z_p is row-wise.
        vx, jz = jax.vmap(lambda zp: jax.jvp(v, (x,), (zp,)), in_axes=1, out_axes=(None, 1))(z)
        return vx, jnp.sum(jz * z, axis=-1)

    state0 = (points, jnp.zeros((n, z.shape[1]), dtype))
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field), diffrax.Dopri5(), t_end, t_start, (t_start - t_end) / 32, state0,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps, throw=False,
    )
    latents, integrated = sol.ys[0][-1], sol.ys[1][-1]
    delta, stderr = divergence.combine(integrated)
    status = jnp.where(
        sol.result == diffrax.RESULTS.successful,
        jnp.where(jnp.all(jnp.isfinite(delta)), SampleStatus.SUCCESS, SampleStatus.NONFINITE),
        jnp.where(sol.result == diffrax.RESULTS.max_steps_reached, SampleStatus.MAX_STEPS, SampleStatus.SOLVER_FAILED),
    ).astype(jnp.int32)
    nfe = (6 * sol.stats["num_steps"] + 1).astype(jnp.int32)
    return latents, delta, stderr, nfe, status


def _likelihood_core(source, schedule, prior, divergence, points, t_start, t_end, key, rtol, atol, max_steps=4096):
    latents, delta, stderr, nfe, status = _integrate_divergence(
        source, schedule, divergence, points, t_start, t_end, key, rtol, atol, max_steps
    )
    prior_lp = prior.log_prob(latents, source, schedule, t_start)
    return LikelihoodOutput(prior_lp + delta, stderr, prior_lp, latents, nfe, status)


@eqx.filter_jit
def _integrate_divergence_jit(source, schedule, points, t_start, t_end, key, rtol, atol, *, divergence, max_steps, dtype):
    source, schedule = _cast((source, schedule), dtype)
    return _integrate_divergence(
        source, schedule, divergence, points.astype(dtype),
        jnp.asarray(t_start, dtype), jnp.asarray(t_end, dtype), key, rtol, atol, max_steps,
    )


@eqx.filter_jit
def _prior_log_prob_jit(prior, source, schedule, latents, t_start):
    # Separate from the ODE solve: a different prior must not recompile the integration.
    prior, source, schedule = _cast((prior, source, schedule), latents.dtype)
    return prior.log_prob(latents, source, schedule, jnp.asarray(t_start, latents.dtype))


def log_likelihood(
    source: AbstractScoreSource,
    schedule: AbstractSchedule,
    points: jax.Array,
    *,
    divergence: AbstractDivergence = ExactDivergence(),
    key: jax.Array | None = None,
    prior: AbstractPrior = NoisePrior(),
    t_start: float | None = None,
    t_end: float | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-6,
    max_steps: int = 4096,
    dtype=None,
) -> LikelihoodOutput:
    """log p_{t_end}(points) under the model: integrate the ODE and the divergence of its
    velocity from t_end to t_start (Dopri5, rtol/atol), add the prior's log density."""
    if not isinstance(source, AbstractScoreSource):
        raise ValueError(f"source must be an AbstractScoreSource, got {type(source).__name__}")
    points = jnp.asarray(points)
    if points.ndim != 2 or points.shape[1] != source.dim:
        raise ValueError(f"points must have shape (n, {source.dim}), got {points.shape}")
    if divergence.needs_key and key is None:
        raise ValueError("key: the Hutchinson estimator needs a PRNG key")
    if isinstance(prior, MarginalPrior) and not isinstance(source, GaussianMixture):
        raise ValueError("prior: MarginalPrior needs an analytic (GaussianMixture) source")
    max_steps = _check_int("max_steps", max_steps)
    t_start, t_end = _interval(schedule, t_start, t_end)
    dtype = jnp.dtype(points.dtype if dtype is None else dtype)
    key = jax.random.key(0) if key is None else key
    source, schedule, prior, t_start, t_end, rtol, atol = _scalars_to_arrays(
        (source, schedule, prior, t_start, t_end, rtol, atol)
    )
    latents, delta, stderr, nfe, status = _integrate_divergence_jit(
        source, schedule, points, t_start, t_end, key, rtol, atol,
        divergence=divergence, max_steps=max_steps, dtype=dtype,
    )
    prior_lp = _prior_log_prob_jit(prior, source, schedule, latents, t_start)
    return LikelihoodOutput(prior_lp + delta, stderr, prior_lp, latents, nfe, status)
