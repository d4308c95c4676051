"""Probability-flow sampling and likelihoods: priors, divergence estimators, the two
entry points (`sample`, `log_likelihood`) and their resumable runs (`SampleRun`,
`LikelihoodRun`), composed from the strategy objects of the sibling modules."""

from __future__ import annotations

import abc
import dataclasses
import inspect
import math
from typing import Callable, ParamSpec, Protocol, TypeVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from monge.solvers.pfode import adaptive as pfode_adaptive
from monge.solvers.status import Status, sample_message
from monge.solvers.pfode.samplers import AbstractSampler, Heun, IntegrationState, velocity
from monge.solvers.pfode.schedules import AbstractSchedule, AbstractTimeGrid, KarrasTimeGrid
from monge.solvers.pfode.sources import AbstractScoreSource, GaussianMixture




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
    status: jax.Array  # int32, a Status (sample_message reads it)

    @property
    def message(self) -> str:
        return sample_message(int(self.status))


@dataclasses.dataclass(frozen=True)
class SampleOutput:
    """Samples at t_end and diagnostics. Fields not asked for are None (the type does not
    change with the request)."""

    samples: jax.Array  # (num_samples, d)
    nfe: jax.Array  # int32: score evaluations actually used
    times: jax.Array  # (steps + 1,) the grid (for adaptive samplers: where trajectory is saved)
    status: jax.Array  # int32, a Status (sample_message reads it)
    trajectory: jax.Array | None = None  # (steps + 1, num_samples, d)
    log_prob: jax.Array | None = None  # (num_samples,) log p_{t_end}(samples)
    log_prob_stderr: jax.Array | None = None  # (num_samples,)

    @property
    def ok(self) -> bool:
        return int(self.status) == Status.CONVERGED

    @property
    def message(self) -> str:
        return sample_message(int(self.status))


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


def grid_ends_at_zero(schedule, grid, t_end) -> bool:
    """Whether a grid's last time has sigma = 0 (EDM's default grid, or t_end = 0 on VP
    or EDM): there the score is undefined and the last step is a special one."""
    if isinstance(grid, KarrasTimeGrid) and grid.append_zero:
        return True
    try:
        return not float(schedule.sigma(jnp.asarray(float(t_end)))) > 0
    except (TypeError, jax.errors.ConcretizationTypeError):
        return False


# Sampling in parts: `start` draws the prior and builds the grid, `advance` takes at most
# `chunk` (traced) steps, `finish` reads the result off the state. The same pure
# functions make the one-program `_sample_core` used in-process.


def _start(source, schedule, sampler, grid, prior, key, x_init, t_start, t_end, steps, num_samples,
           save_trajectory, dtype):
    t_start, t_end = jnp.asarray(t_start, dtype), jnp.asarray(t_end, dtype)
    times = grid(schedule, t_start, t_end, steps).astype(dtype)
    if x_init is None:
        x = prior.sample(key, source, schedule, t_start, num_samples, dtype)
    else:
        x = x_init.astype(dtype)
    return times, sampler.start(source, schedule, times, x, save_trajectory)


def _finish(source, schedule, sampler, times, state):
    x_end, trajectory, nfe, status = sampler.finish(source, schedule, times, state)
    return SampleOutput(x_end, nfe, times, status, trajectory)


@eqx.filter_jit
def _sample_start(source, schedule, sampler, grid, prior, key, x_init, t_start, t_end,
                  *, steps, num_samples, save_trajectory, dtype):
    source, schedule, sampler, prior = _cast((source, schedule, sampler, prior), dtype)
    return _start(source, schedule, sampler, grid, prior, key, x_init, t_start, t_end, steps, num_samples,
                  save_trajectory, dtype)


@eqx.filter_jit
def _sample_advance(source, schedule, sampler, times, state, chunk, *, dtype):
    source, schedule, sampler = _cast((source, schedule, sampler), dtype)
    return sampler.advance(source, schedule, times, state, chunk)


@eqx.filter_jit
def _sample_finish(source, schedule, sampler, times, state, *, dtype):
    source, schedule, sampler = _cast((source, schedule, sampler), dtype)
    return _finish(source, schedule, sampler, times, state)


@eqx.filter_jit
def _sample_core(source, schedule, sampler, grid, prior, key, x_init, t_start, t_end, lik_key, lik_tols,
                 *, steps, num_samples, save_trajectory, dtype, divergence, max_progress):
    source, schedule, sampler, prior = _cast((source, schedule, sampler, prior), dtype)
    times, state = _start(source, schedule, sampler, grid, prior, key, x_init, t_start, t_end, steps, num_samples,
                          save_trajectory, dtype)
    state = sampler.advance(source, schedule, times, state, jnp.asarray(max_progress, jnp.int32))
    out = _finish(source, schedule, sampler, times, state)
    if divergence is not None:
        t_start, t_end = jnp.asarray(t_start, dtype), jnp.asarray(t_end, dtype)
        rtol, atol = lik_tols
        lik_state = _likelihood_begin(source, schedule, divergence, out.samples, t_start, t_end, lik_key, rtol, atol)
        lik_state = _likelihood_step(source, schedule, lik_state, t_start, rtol, atol,
                                     LIKELIHOOD_MAX_STEPS, LIKELIHOOD_MAX_STEPS)
        lik = _likelihood_end(divergence, lik_state, t_start, LIKELIHOOD_MAX_STEPS)
        prior_lp = prior.log_prob(lik.latents, source, schedule, t_start)
        status = jnp.where(out.status == Status.CONVERGED, lik.status, out.status)
        out = dataclasses.replace(out, log_prob=prior_lp + lik.delta, log_prob_stderr=lik.stderr, status=status)
    return out


P = ParamSpec("P")
R = TypeVar("R", covariant=True)


class SampleRun:
    """A validated sampling request, to run whole (`run()`, one compiled program; what
    `sample` does) or in chunks that a caller may stop between (what the service does):

        job = SampleRun(source, schedule, sampler, num_samples=..., key=..., nfe=20)
        state = job.start()
        while not job.finished(state):
            state = job.advance(state, 50)       # at most 50 more steps; check a stop flag
        out = job.finish(state)                  # SampleOutput without log_prob
        lik = job.likelihood_run(out)            # None, or a LikelihoodRun for the samples

    `progress(state)` counts grid steps (Dopri5: attempted steps) and never exceeds
    `max_progress`. Chunks are traced: every chunk size runs the same programs, one per
    request shape (samples, steps, dtype, sampler and source structure). `sample(...)`
    takes the same arguments and runs it whole."""

    def __init__(
        self,
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
    ):
        if not isinstance(source, AbstractScoreSource):
            raise ValueError(f"source must be an AbstractScoreSource, got {type(source).__name__}")
        num_samples = _check_int("num_samples", num_samples)
        if (steps is None) == (nfe is None):
            raise ValueError("give exactly one of steps and nfe")
        t_start, t_end = _interval(schedule, t_start, t_end)
        grid = sampler.default_grid(schedule) if grid is None else grid
        to_zero = grid_ends_at_zero(schedule, grid, t_end)
        if nfe is not None:
            nfe = _check_int("nfe", nfe)
            steps = sampler.steps_for_nfe(nfe, to_zero)
            if steps < 1:
                raise ValueError(f"nfe={nfe} is too small for one step of {type(sampler).__name__}")
            sampler = sampler.with_nfe_cap(nfe, to_zero)
        sampler = sampler.for_grid(to_zero)
        steps = _check_int("steps", steps)
        if x_init is not None and tuple(np.shape(x_init)) != (num_samples, source.dim):
            raise ValueError(f"x_init must have shape {(num_samples, source.dim)}, got {tuple(np.shape(x_init))}")
        if isinstance(prior, MarginalPrior) and not isinstance(source, GaussianMixture):
            raise ValueError("prior: MarginalPrior needs an analytic (GaussianMixture) source")
        self.steps, self.num_samples = steps, num_samples
        self.max_progress = int(sampler.max_progress(steps))
        self.dtype = jnp.dtype(dtype)
        self.save_trajectory = bool(save_trajectory)
        self.divergence = likelihood
        self.lik_key = key if likelihood is None else jax.random.fold_in(key, 1)
        self._prior = prior
        dynamic = _scalars_to_arrays(
            (source, schedule, sampler, grid, prior, t_start, t_end, (likelihood_rtol, likelihood_atol))
        )
        (self.source, self.schedule, self.sampler, self.grid, self.prior, self.t_start, self.t_end,
         self.lik_tols) = dynamic
        self.key, self.x_init = key, x_init
        self._times = None

    def run(self) -> SampleOutput:
        return _sample_core(
            self.source, self.schedule, self.sampler, self.grid, self.prior, self.key, self.x_init,
            self.t_start, self.t_end, self.lik_key, self.lik_tols,
            steps=self.steps, num_samples=self.num_samples, save_trajectory=self.save_trajectory,
            dtype=self.dtype, divergence=self.divergence, max_progress=self.max_progress,
        )

    def start(self) -> IntegrationState:
        self._times, state = _sample_start(
            self.source, self.schedule, self.sampler, self.grid, self.prior, self.key, self.x_init,
            self.t_start, self.t_end, steps=self.steps, num_samples=self.num_samples,
            save_trajectory=self.save_trajectory, dtype=self.dtype,
        )
        return state

    def advance(self, state: IntegrationState, chunk: int) -> IntegrationState:
        chunk = jnp.asarray(_check_int("chunk", chunk), jnp.int32)
        return _sample_advance(self.source, self.schedule, self.sampler, self._times, state, chunk, dtype=self.dtype)

    @staticmethod
    def progress(state: IntegrationState) -> int:
        return int(state.progress)

    @staticmethod
    def finished(state: IntegrationState) -> bool:
        return bool(state.finished)

    def finish(self, state: IntegrationState) -> SampleOutput:
        return _sample_finish(self.source, self.schedule, self.sampler, self._times, state, dtype=self.dtype)

    def likelihood_run(self, out: SampleOutput) -> "LikelihoodRun | None":
        """The log-likelihood of the samples, to run in chunks as well (None if not asked)."""
        if self.divergence is None:
            return None
        rtol, atol = self.lik_tols
        return LikelihoodRun(
            self.source, self.schedule, out.samples, divergence=self.divergence, key=self.lik_key,
            prior=self._prior, t_start=self.t_start, t_end=self.t_end, rtol=rtol, atol=atol,
            max_steps=LIKELIHOOD_MAX_STEPS, dtype=self.dtype,
        )


class _Runnable(Protocol[R]):
    def run(self) -> R: ...


def _runs(run_class: Callable[P, _Runnable[R]]) -> Callable[P, R]:
    """A function taking `run_class`'s arguments that runs it whole, with its signature
    (one parameter list for both)."""

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return run_class(*args, **kwargs).run()

    returns = inspect.signature(run_class.run).return_annotation
    run.__signature__ = inspect.signature(run_class).replace(return_annotation=returns)
    return run


sample = _runs(SampleRun)
sample.__name__ = sample.__qualname__ = "sample"
sample.__doc__ = """Draw `num_samples` from the prior at t_start and integrate the probability-flow
ODE to t_end. Budget: `steps` grid steps, or `nfe` score evaluations (the most steps
the sampler can take within it; an adaptive sampler is capped to it); exactly one of
them. `x_init` (num_samples, d) replaces the prior draw. `likelihood` also returns
log p_{t_end}(samples). One compiled program; `SampleRun` runs the same in chunks.
Arguments as `SampleRun`'s."""


# ---------------------------------------------------------------------------------------
# Log-likelihoods: the points and the divergence integral pushed from t_end to t_start
# with the chunkable adaptive Dopri5 (pfode_adaptive), forwards in t.

LIKELIHOOD_MAX_STEPS = 4096


class LikelihoodState(eqx.Module):
    ode: pfode_adaptive.AdaptiveState  # y = (x, integrated quadratic forms (n, P))
    probes: jax.Array  # (n, P, d)

    @property
    def progress(self):
        return self.ode.num_steps


@dataclasses.dataclass(frozen=True)
class _Integrated:
    latents: jax.Array
    delta: jax.Array
    stderr: jax.Array
    nfe: jax.Array
    status: jax.Array


def _divergence_field(source, schedule, probes):
    def field(t, state):
        x, _ = state

        def v(y):
            return velocity(source, schedule, y, t)

        if not source.forward_mode:
            return _reverse_quadratic_forms(v, x, probes)
        # One JVP per probe on the whole batch: rows do not interact, so the batch
        # Jacobian is block diagonal and J z_p is row-wise.
        vx, jz = jax.vmap(lambda zp: jax.jvp(v, (x,), (zp,)), in_axes=1, out_axes=(None, 1))(probes)
        return vx, jnp.sum(jz * probes, axis=-1)

    return field


def _reverse_quadratic_forms(v, x, probes):
    """v(x) and z_p^T (dv/dx) z_p (n, P) by one VJP, for sources that JAX cannot
    differentiate in forward mode nor vmap (`jax.export` artifacts): the P probes are
    stacked along the batch (P n rows, x repeated), where, the batch Jacobian being
    block diagonal, the pullback of the stacked probes is z_p^T J row by row."""
    n, p, d = probes.shape
    stacked = jnp.broadcast_to(x[None], (p, n, d)).reshape(p * n, d)
    tangents = jnp.swapaxes(probes, 0, 1).reshape(p * n, d)
    vx, pullback = jax.vjp(v, stacked)
    (zj,) = pullback(tangents)
    forms = jnp.sum(zj * tangents, axis=-1).reshape(p, n)
    return vx[:n], forms.T


def _likelihood_begin(source, schedule, divergence, points, t_start, t_end, key, rtol, atol):
    n, d = points.shape
    probes = divergence.probes(key, n, d, points.dtype)  # (n, P, d)
    state0 = (points, jnp.zeros((n, probes.shape[1]), points.dtype))
    ode = pfode_adaptive.start(_divergence_field(source, schedule, probes), t_end, t_start, state0,
                               (t_start - t_end) / 32, rtol, atol)
    return LikelihoodState(ode, probes)


def _likelihood_step(source, schedule, state, t_start, rtol, atol, max_steps, chunk):
    ode = pfode_adaptive.advance(_divergence_field(source, schedule, state.probes), state.ode, t_start, rtol, atol,
                                 max_steps=max_steps, chunk=chunk)
    return LikelihoodState(ode, state.probes)


def _likelihood_end(divergence, state, t_start, max_steps):
    ode = state.ode
    latents, integrated = ode.y
    delta, stderr = divergence.combine(integrated)
    status = jnp.where(
        ode.reached(t_start),
        jnp.where(jnp.all(jnp.isfinite(delta)) & jnp.all(jnp.isfinite(latents)), Status.CONVERGED,
                  Status.DIVERGED),
        jnp.where(ode.stalled, Status.FAILED, Status.MAX_ITERATIONS),
    ).astype(jnp.int32)
    return _Integrated(latents, delta, stderr, ode.nfe, status)


@eqx.filter_jit
def _likelihood_start_jit(source, schedule, points, t_start, t_end, key, rtol, atol, *, divergence, dtype):
    source, schedule, rtol, atol = _cast((source, schedule, rtol, atol), dtype)
    return _likelihood_begin(source, schedule, divergence, points.astype(dtype),
                             jnp.asarray(t_start, dtype), jnp.asarray(t_end, dtype), key, rtol, atol)


@eqx.filter_jit
def _likelihood_advance_jit(source, schedule, state, t_start, rtol, atol, max_steps, chunk, *, dtype):
    source, schedule, rtol, atol = _cast((source, schedule, rtol, atol), dtype)
    return _likelihood_step(source, schedule, state, jnp.asarray(t_start, dtype), rtol, atol, max_steps, chunk)


@eqx.filter_jit
def _likelihood_finish_jit(prior, source, schedule, state, t_start, max_steps, *, divergence, dtype):
    # The prior is applied here, not in the ODE programs: a different prior must not
    # recompile the integration.
    prior, source, schedule = _cast((prior, source, schedule), dtype)
    t_start = jnp.asarray(t_start, dtype)
    out = _likelihood_end(divergence, state, t_start, max_steps)
    prior_lp = prior.log_prob(out.latents, source, schedule, t_start)
    return LikelihoodOutput(prior_lp + out.delta, out.stderr, prior_lp, out.latents, out.nfe, out.status)


for _cls in (_Integrated,):
    jax.tree_util.register_dataclass(_cls, data_fields=[f.name for f in dataclasses.fields(_cls)], meta_fields=[])


class LikelihoodRun:
    """A validated likelihood request, to run whole (`run()`) or in chunks of attempted
    Dopri5 steps (`start`, `advance(state, chunk)`, `finished`, `finish`), as SampleRun.
    `log_likelihood(...)` takes the same arguments and runs it whole."""

    def __init__(
        self,
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
        max_steps: int = LIKELIHOOD_MAX_STEPS,
        dtype=None,
    ):
        if not isinstance(source, AbstractScoreSource):
            raise ValueError(f"source must be an AbstractScoreSource, got {type(source).__name__}")
        points = jnp.asarray(points)
        if points.ndim != 2 or points.shape[1] != source.dim:
            raise ValueError(f"points must have shape (n, {source.dim}), got {points.shape}")
        if divergence.needs_key and key is None:
            raise ValueError("key: the Hutchinson estimator needs a PRNG key")
        if isinstance(prior, MarginalPrior) and not isinstance(source, GaussianMixture):
            raise ValueError("prior: MarginalPrior needs an analytic (GaussianMixture) source")
        self.max_progress = _check_int("max_steps", int(max_steps))
        t_start, t_end = _interval(schedule, t_start, t_end)
        self.dtype = jnp.dtype(points.dtype if dtype is None else dtype)
        self.key = jax.random.key(0) if key is None else key
        self.divergence, self.points = divergence, points
        (self.source, self.schedule, self.prior, self.t_start, self.t_end, self.rtol, self.atol,
         self.max_steps) = _scalars_to_arrays((source, schedule, prior, t_start, t_end, rtol, atol, max_steps))

    def start(self) -> LikelihoodState:
        return _likelihood_start_jit(self.source, self.schedule, self.points, self.t_start, self.t_end, self.key,
                                     self.rtol, self.atol, divergence=self.divergence, dtype=self.dtype)

    def advance(self, state: LikelihoodState, chunk: int) -> LikelihoodState:
        chunk = jnp.asarray(_check_int("chunk", chunk), jnp.int32)
        return _likelihood_advance_jit(self.source, self.schedule, state, self.t_start, self.rtol, self.atol,
                                       self.max_steps, chunk, dtype=self.dtype)

    @staticmethod
    def progress(state: LikelihoodState) -> int:
        return int(state.progress)

    def finished(self, state: LikelihoodState) -> bool:
        return bool(state.ode.finished(jnp.asarray(self.t_start, self.dtype), self.max_steps))

    def finish(self, state: LikelihoodState) -> LikelihoodOutput:
        return _likelihood_finish_jit(self.prior, self.source, self.schedule, state, self.t_start, self.max_steps,
                                      divergence=self.divergence, dtype=self.dtype)

    def run(self) -> LikelihoodOutput:
        return self.finish(self.advance(self.start(), self.max_progress))


log_likelihood = _runs(LikelihoodRun)
log_likelihood.__name__ = log_likelihood.__qualname__ = "log_likelihood"
log_likelihood.__doc__ = """log p_{t_end}(points) under the model: integrate the ODE and the divergence of its
velocity from t_end to t_start (Dopri5, rtol/atol, at most max_steps attempted
steps), add the prior's log density. `LikelihoodRun` runs the same in chunks; the
arguments are its."""
