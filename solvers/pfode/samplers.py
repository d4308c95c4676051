"""Samplers: how the probability-flow ODE is integrated from noise (t_start) to data (t_end).

Fixed-grid samplers step along a time grid (`AbstractTimeGrid`):
    Euler                 first order in t, 1 evaluation per step
    Heun                  EDM's second-order predictor-corrector, 2 per step (1 on a
                          final step that lands on sigma = 0, as EDM does)
    ExponentialEuler      DDIM: exact in the linear part, first order, 1 per step
    DPMSolverPlusPlus     multistep exponential integrator in log-SNR on the data
                          prediction, order 2 or 3, 1 per step (+1 for order 3, whose first
                          step is a single-step second-order update so that the start-up
                          does not cost an order)
Adaptive or generic (diffrax):
    Dopri5                diffrax Dopri5 + PIDController(rtol, atol)
    Diffrax               any diffrax Runge-Kutta solver, on the grid or with a controller:
                          the reference "plain diffrax solve" of the same ODE

Every sampler integrates in three parts, so that a service can stop between chunks of
steps: `start` (the state at t_start), `advance(state, chunk)` (at most `chunk` more
steps; `chunk` is traced, so every chunk size runs one compiled program) and `finish`
(the final state, an optional trajectory on the grid, the number of score evaluations
actually spent and a status; errors are values, the caller decides). `integrate` does
all three at once.

A grid that ends where sigma = 0 (EDM's, by default) has no score at its last time: the
fixed-grid samplers never evaluate there, and the ODE solvers (Dopri5, Diffrax) stop at
the time before it and land on the data with one exponential-integrator step,
x = alpha(0) D(x, t), as EDM's final Euler step does.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import math
from typing import Any

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from monge.solvers.pfode import adaptive as pfode_adaptive
from monge.solvers.pfode.schedules import AbstractSchedule, AbstractTimeGrid, LogSNRTimeGrid, UniformTimeGrid
from monge.solvers.pfode.sources import AbstractScoreSource
from monge.solvers.status import Status


def velocity(source: AbstractScoreSource, schedule: AbstractSchedule, x, t):
    """dx/dt of the probability-flow ODE, written through the denoiser D:
    a x + b score = a x + b (alpha D - x) / sigma^2."""
    a, b = schedule.ode_coefficients(t)
    alpha, sigma = schedule.alpha(t), schedule.sigma(t)
    return a * x + b * (alpha * source.denoise(x, t, schedule) - x) / sigma**2


class IntegrationState(eqx.Module):
    """Where a sampler's integration stands between chunks: `progress` counts the steps
    taken (grid steps; attempted steps for adaptive samplers), `finished` says whether
    more `advance` calls would do anything. `inner` is the sampler's own state."""

    inner: Any
    progress: jax.Array  # int32
    finished: jax.Array  # bool


class AbstractSampler(eqx.Module):
    def default_grid(self, schedule: AbstractSchedule) -> AbstractTimeGrid:
        """The grid used when the request names none: the schedule's own."""
        return schedule.default_grid()

    @abc.abstractmethod
    def steps_for_nfe(self, nfe: int, ends_at_zero: bool = False) -> int:
        """The largest number of grid steps whose evaluations fit in `nfe` (on a grid
        whose last time has sigma = 0 when `ends_at_zero`)."""

    def with_nfe_cap(self, nfe: int, ends_at_zero: bool = False) -> "AbstractSampler":
        """This sampler held to at most `nfe` evaluations (adaptive samplers cap their
        steps; fixed-grid ones are held to it by their step count already)."""
        return self

    def for_grid(self, ends_at_zero: bool) -> "AbstractSampler":
        """This sampler told, when it is known before tracing, whether the grid ends at
        sigma = 0 (a sampler may then compile one branch instead of both)."""
        return self

    def max_progress(self, steps: int) -> int:
        """The most `progress` an integration on a grid of `steps` steps can make."""
        return steps

    @abc.abstractmethod
    def start(self, source, schedule, times, x, save_trajectory: bool) -> IntegrationState: ...

    @abc.abstractmethod
    def advance(self, source, schedule, times, state: IntegrationState, chunk) -> IntegrationState:
        """At most `chunk` (traced) more steps."""

    @abc.abstractmethod
    def finish(self, source, schedule, times, state: IntegrationState):
        """-> (x_end, trajectory (len(times), n, d) or None, nfe int32, status int32)."""

    def integrate(self, source, schedule, times, x, save_trajectory: bool):
        """start, advance to the end, finish: one program."""
        state = self.start(source, schedule, times, x, save_trajectory)
        state = self.advance(source, schedule, times, state, jnp.int32(self.max_progress(times.shape[0] - 1)))
        return self.finish(source, schedule, times, state)


def _status_of(x):
    return jnp.where(jnp.all(jnp.isfinite(x)), Status.CONVERGED, Status.DIVERGED).astype(jnp.int32)


class _GridState(eqx.Module):
    carry: Any  # x, or (x, D_{i-1}, D_{i-2}) for multistep methods
    nfe: jax.Array
    trajectory: jax.Array | None  # (steps + 1, n, d)


def _x_of(carry):
    return carry[0] if isinstance(carry, tuple) else carry


class AbstractFixedGridSampler(AbstractSampler):
    """Steps along the grid in a `lax.while_loop` (a traced number of steps per chunk);
    `_step` sees the whole grid and the index so that multistep methods can look back."""

    @abc.abstractmethod
    def _step(self, source, schedule, times, i, carry): ...

    def _init_carry(self, x):
        return x

    def start(self, source, schedule, times, x, save_trajectory):
        trajectory = None
        if save_trajectory:
            trajectory = jnp.zeros((times.shape[0],) + x.shape, x.dtype).at[0].set(x)
        inner = _GridState(self._init_carry(x), jnp.int32(0), trajectory)
        return IntegrationState(inner, jnp.int32(0), jnp.asarray(times.shape[0] == 1))

    def advance(self, source, schedule, times, state, chunk):
        steps = times.shape[0] - 1
        stop = jnp.minimum(state.progress + chunk, steps)

        def body(loop):
            i, grid = loop
            carry, used = self._step(source, schedule, times, i, grid.carry)
            trajectory = grid.trajectory
            if trajectory is not None:
                trajectory = trajectory.at[i + 1].set(_x_of(carry))
            return i + 1, _GridState(carry, grid.nfe + used, trajectory)

        i, inner = jax.lax.while_loop(lambda loop: loop[0] < stop, body, (state.progress, state.inner))
        return IntegrationState(inner, i, i >= steps)

    def finish(self, source, schedule, times, state):
        x_end = _x_of(state.inner.carry)
        return x_end, state.inner.trajectory, state.inner.nfe, _status_of(x_end)


class Euler(AbstractFixedGridSampler):
    """x_{i+1} = x_i + (t_{i+1} - t_i) v(x_i, t_i). First order."""

    def steps_for_nfe(self, nfe, ends_at_zero=False):
        return nfe

    def _step(self, source, schedule, times, i, x):
        t, t_next = times[i], times[i + 1]
        return x + (t_next - t) * velocity(source, schedule, x, t), jnp.int32(1)


class Heun(AbstractFixedGridSampler):
    """EDM's Heun: Euler predictor, trapezoidal corrector. Second order. The corrector is
    skipped on a step landing on sigma = 0, where the score is undefined."""

    def steps_for_nfe(self, nfe, ends_at_zero=False):
        # Onto sigma = 0 the last step is an Euler step: 2 steps - 1 evaluations.
        return max((nfe + 1) // 2 if ends_at_zero else nfe // 2, 0)

    def _step(self, source, schedule, times, i, x):
        t, t_next = times[i], times[i + 1]
        dt = t_next - t
        v = velocity(source, schedule, x, t)
        x_euler = x + dt * v

        def correct(_):
            return x + 0.5 * dt * (v + velocity(source, schedule, x_euler, t_next)), jnp.int32(2)

        return jax.lax.cond(
            schedule.sigma(t_next) > 0, correct, lambda _: (x_euler, jnp.int32(1)), None
        )


def _psi(k: int, h):
    """psi_k(h) = int_0^h e^{u - h} u^{k-1} / (k-1)! du: the weights of the exponential
    integrator x_t = (sigma_t / sigma_s) x_s + alpha_t sum_k psi_k D^{(k-1)}.

    Closed form psi_1 = 1 - e^{-h}, psi_{k+1} = h^k / k! - psi_k cancels badly for small h,
    so small steps use the series h^k sum_j (-h)^j / (k + j)!."""
    small = jnp.abs(h) < 0.5
    hs = jnp.where(small, h, 0.0)
    series = sum((-hs) ** j / math.factorial(k + j) for j in range(14)) * hs**k
    hl = jnp.where(small, 1.0, h)
    closed = -jnp.expm1(-hl)
    for j in range(1, k):
        closed = hl**j / math.factorial(j) - closed
    return jnp.where(small, series, closed)


class AbstractExponentialSampler(AbstractFixedGridSampler):
    """Exponential integrators in lambda = log(alpha / sigma) on the data prediction D:

        x_t = (sigma_t / sigma_s) x_s + alpha_t [psi_1 D_s + psi_2 D'_s + psi_3 D''_s]

    (derivatives in lambda), exact when D is constant; the order is how many derivatives
    are estimated from past evaluations."""

    order: int = eqx.field(static=True, default=1)

    def default_grid(self, schedule):
        # These methods step in lambda; a grid uniform in t (VP's default) puts most of
        # the log-SNR change into the last few steps, where they lose their order.
        grid = schedule.default_grid()
        return LogSNRTimeGrid() if isinstance(grid, UniformTimeGrid) else grid

    def steps_for_nfe(self, nfe, ends_at_zero=False):
        return nfe - 1 if self.order == 3 else nfe  # order 3: one extra start-up evaluation

    def _init_carry(self, x):
        # (x, D_{i-1}, D_{i-2}) -- past denoised predictions for the multistep updates.
        return (x, jnp.zeros_like(x), jnp.zeros_like(x))

    def _step(self, source, schedule, times, i, carry):
        x, d_prev, d_prev2 = carry
        lam = schedule.log_snr(times)
        t, t_next = times[i], times[i + 1]
        alpha_next, sigma, sigma_next = schedule.alpha(t_next), schedule.sigma(t), schedule.sigma(t_next)
        d0 = source.denoise(x, t, schedule)
        to_zero = ~(sigma_next > 0)  # lambda_next = inf: the step lands on the data
        h = jnp.where(to_zero, 1.0, lam[i + 1] - lam[i])
        h0 = lam[i] - lam[jnp.maximum(i - 1, 0)]
        h1 = lam[jnp.maximum(i - 1, 0)] - lam[jnp.maximum(i - 2, 0)]
        h0 = jnp.where(i >= 1, h0, 1.0)
        h1 = jnp.where(i >= 2, h1, 1.0)
        ratio = jnp.where(to_zero, 0.0, sigma_next / sigma)
        # psi_1(inf) = 1: landing on the data, x_next = alpha_next D.
        psi1 = jnp.where(to_zero, 1.0, _psi(1, h))
        psi2, psi3 = _psi(2, h), _psi(3, h)

        def first(_):
            return ratio * x + alpha_next * psi1 * d0, jnp.int32(0)

        def multistep2(_):
            slope = (d0 - d_prev) / h0
            return ratio * x + alpha_next * (psi1 * d0 + psi2 * slope), jnp.int32(0)

        def multistep3(_):
            # Newton form through lambda_i, lambda_i - h0, lambda_i - h0 - h1.
            f01 = (d0 - d_prev) / h0
            f12 = (d_prev - d_prev2) / h1
            curv = (f01 - f12) / (h0 + h1)
            return (
                ratio * x + alpha_next * (psi1 * d0 + psi2 * (f01 + curv * h0) + psi3 * 2 * curv),
                jnp.int32(0),
            )

        def singlestep2(_):
            # Midpoint in lambda: one extra evaluation buys a second-order first step, so
            # order 3 is not lost to its start-up.
            t_mid = schedule.t_from_log_snr(lam[i] + 0.5 * h)
            half = 0.5 * h
            u = (schedule.sigma(t_mid) / sigma) * x + schedule.alpha(t_mid) * _psi(1, half) * d0
            slope = (source.denoise(u, t_mid, schedule) - d0) / half
            return ratio * x + alpha_next * (psi1 * d0 + psi2 * slope), jnp.int32(1)

        # Branch 0 (first order) is also the fallback for a step onto sigma = 0.
        branches = {1: [first], 2: [first, multistep2], 3: [first, singlestep2, multistep2, multistep3]}
        branches = branches[self.order]
        index = jnp.where(to_zero, 0, jnp.minimum(i + (self.order == 3), len(branches) - 1))
        x_next, extra = jax.lax.switch(index, branches, None)
        return (x_next, d0, d_prev), jnp.int32(1) + extra


class ExponentialEuler(AbstractExponentialSampler):
    """DDIM (= DPM-Solver++ order 1): first order, exact in the linear part of the ODE."""

    def __init__(self):
        self.order = 1


class DPMSolverPlusPlus(AbstractExponentialSampler):
    """DPM-Solver++ multistep (data prediction), order 2 or 3."""

    def __init__(self, order: int = 2):
        if order not in (2, 3):
            raise ValueError(f"order must be 2 or 3, got {order}")
        self.order = order


# ---------------------------------------------------------------------------------------
# ODE solvers: adaptive Dopri5 (chunked) and a plain diffrax solve (the reference).


def ends_at_zero(schedule, times):
    """Whether the grid's last time has no noise (sigma = 0), where the score is undefined."""
    return ~(schedule.sigma(times[-1]) > 0)


def _onto_zero(source, schedule, times, x):
    """The step from times[-2] onto times[-1] where sigma = 0: x = alpha D(x), the
    exponential integrator's update, exact when D is constant over the step (for
    alpha = 1 it is EDM's final Euler step x + (0 - sigma) (x - D) / sigma)."""
    return schedule.alpha(times[-1]) * source.denoise(x, times[-2], schedule)


class Dopri5(AbstractSampler):
    """Adaptive Dormand-Prince 5(4) with diffrax's PID step-size controller.

    It integrates the ODE in the variables where it is best scaled, x / alpha against the
    log-SNR lambda = log(alpha / sigma), in which every schedule's probability flow reads

        d(x / alpha) / d lambda = D(x, t(lambda)) - x / alpha

    (EDM's dx/dsigma = (x - D) / sigma with sigma = e^-lambda): the linear part has rate
    one and the steps follow the noise level on a log scale, so no step can jump over the
    noise levels where the data's structure appears (in t, on EDM's 80 .. 0.002, a step
    from 20 to 0.002 passed the error test and missed it). It goes from t_start to the
    grid's last time with noise, then onto sigma = 0 with one evaluation if the grid ends
    there.

    rtol, atol (on x / alpha) and max_steps (attempted steps) are traced: no recompile.
    The grid sets the first step (its first interval, in lambda) and where the trajectory
    is saved (interpolated, so saving changes no step). NFE = 1 + 6 per attempted step
    (+ 1 onto sigma = 0). Given an NFE budget, the steps are capped to fit it
    (`with_nfe_cap`); a solve that reaches the cap before the end reports MAX_STEPS."""

    rtol: float = 1e-5
    atol: float = 1e-5
    max_steps: int = 4096

    def __check_init__(self):
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if isinstance(value, (int, float)) and not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if isinstance(self.max_steps, int) and self.max_steps < 1:
            raise ValueError(f"max_steps must be positive, got {self.max_steps}")

    def steps_for_nfe(self, nfe, ends_at_zero=False):
        return max(self._cap(nfe, ends_at_zero), 1)  # the saving grid / first-step guess

    @staticmethod
    def _cap(nfe, ends_at_zero):
        return (nfe - 1 - int(ends_at_zero)) // pfode_adaptive.EVALUATIONS_PER_STEP

    def with_nfe_cap(self, nfe, ends_at_zero=False):
        cap = self._cap(nfe, ends_at_zero)
        if cap < 1:
            raise ValueError(f"nfe={nfe} is too small for one step of Dopri5 (it needs "
                             f"{2 + pfode_adaptive.EVALUATIONS_PER_STEP + int(ends_at_zero) - 1})")
        return eqx.tree_at(lambda s: s.max_steps, self, min(int(self.max_steps), cap))

    def max_progress(self, steps):
        return self.max_steps

    @staticmethod
    def _field(source, schedule):
        def field(lam, y):
            t = schedule.t_from_log_snr(lam)
            return source.denoise(schedule.alpha(t) * y, t, schedule) - y

        return field

    @staticmethod
    def _span(schedule, times):
        """(lambda at the start, lambda where the integration stops, lambda of the grid)."""
        lam = schedule.log_snr(times)
        stop = jnp.where(ends_at_zero(schedule, times), lam[-2] if times.shape[0] > 1 else lam[-1], lam[-1])
        return lam[0], stop, lam

    def start(self, source, schedule, times, x, save_trajectory):
        s0, s1, save_ts = self._span(schedule, times)
        dt0 = jnp.maximum(jnp.minimum(save_ts[1], s1) - s0, jnp.finfo(times.dtype).eps)
        ode = pfode_adaptive.start(self._field(source, schedule), s0, s1, x / schedule.alpha(times[0]), dt0,
                                   self.rtol, self.atol, save_ts if save_trajectory else None)
        return IntegrationState(ode, ode.num_steps, ode.finished(s1, self.max_steps))

    def advance(self, source, schedule, times, state, chunk):
        s0, s1, save_ts = self._span(schedule, times)
        ode = pfode_adaptive.advance(
            self._field(source, schedule), state.inner, s1, self.rtol, self.atol,
            max_steps=self.max_steps, chunk=chunk, save_ts=None if state.inner.saved is None else save_ts,
        )
        return IntegrationState(ode, ode.num_steps, ode.finished(s1, self.max_steps))

    def finish(self, source, schedule, times, state):
        _, s1, _ = self._span(schedule, times)
        ode = state.inner
        reached = ode.reached(s1)
        to_zero = ends_at_zero(schedule, times) & reached
        stop = jnp.where(to_zero, times[-2] if times.shape[0] > 1 else times[-1], times[-1])
        x = schedule.alpha(stop) * ode.y
        x_end = jax.lax.cond(to_zero, lambda x: _onto_zero(source, schedule, times, x), lambda x: x, x)
        trajectory = None
        if ode.saved is not None:
            alphas = schedule.alpha(times).reshape((-1,) + (1,) * x.ndim)
            trajectory = (alphas * ode.saved).at[-1].set(x_end)
        status = jnp.where(
            reached, _status_of(x_end),
            jnp.where(ode.stalled, Status.FAILED, Status.MAX_ITERATIONS),
        ).astype(jnp.int32)
        return x_end, trajectory, ode.nfe + to_zero.astype(jnp.int32), status


def _evaluations_per_step(solver) -> tuple[int, int]:
    """(per step, once at the start) score evaluations of a diffrax solver."""
    if isinstance(solver, diffrax.Euler):
        return 1, 0
    tableau = getattr(solver, "tableau", None)
    if tableau is None:
        raise ValueError(
            f"solver: cannot count score evaluations of {type(solver).__name__}; "
            "use Euler or an explicit Runge-Kutta solver"
        )
    stages = len(tableau.c) + 1
    return (stages - 1, 1) if tableau.fsal else (stages, 0)


class _OneShotInner(eqx.Module):
    x: jax.Array
    x_end: jax.Array
    trajectory: jax.Array | None
    nfe: jax.Array
    status: jax.Array


class Diffrax(AbstractSampler):
    """A plain `diffrax.diffeqsolve` of the same ODE: any diffrax RK solver, stepping
    exactly on the time grid (controller None) or adaptively with the given controller;
    the reference the benchmarks set our samplers beside. One solve, not chunked (the
    service does not offer it). On a grid ending at sigma = 0 it solves to the time
    before and lands with the same last step as Dopri5."""

    solver: diffrax.AbstractSolver = diffrax.Tsit5()
    controller: diffrax.AbstractStepSizeController | None = None
    max_steps: int = eqx.field(static=True, default=4096)
    ends_at_zero: bool | None = eqx.field(static=True, default=None)  # None: decided when run

    def for_grid(self, ends_at_zero):
        return dataclasses.replace(self, ends_at_zero=bool(ends_at_zero))

    def __check_init__(self):
        _evaluations_per_step(self.solver)

    def steps_for_nfe(self, nfe, ends_at_zero=False):
        per_step, once = _evaluations_per_step(self.solver)
        return max((nfe - once - int(ends_at_zero)) // per_step + int(ends_at_zero), 0)

    def max_progress(self, steps):
        return 1

    def _solve(self, source, schedule, times, x, save_trajectory):
        """diffeqsolve over `times` (at least two)."""
        term = diffrax.ODETerm(lambda t, y, args: velocity(source, schedule, y, t))
        t0, t1 = times[0], times[-1]
        if self.controller is None:
            controller, dt0 = diffrax.StepTo(ts=times), None
        else:
            controller, dt0 = self.controller, (t1 - t0) / (times.shape[0] - 1)
        saveat = diffrax.SaveAt(ts=times) if save_trajectory else diffrax.SaveAt(t1=True)
        sol = diffrax.diffeqsolve(
            term, self.solver, t0, t1, dt0, x,
            stepsize_controller=controller, saveat=saveat, max_steps=self.max_steps, throw=False,
        )
        per_step, once = _evaluations_per_step(self.solver)
        nfe = (per_step * sol.stats["num_steps"] + once).astype(jnp.int32)
        status = jnp.where(
            sol.result == diffrax.RESULTS.successful,
            _status_of(sol.ys[-1]),
            jnp.where(sol.result == diffrax.RESULTS.max_steps_reached, Status.MAX_ITERATIONS,
                      Status.FAILED),
        ).astype(jnp.int32)
        return sol.ys[-1], (sol.ys if save_trajectory else None), nfe, status

    def _solve_to_zero(self, source, schedule, times, x, save_trajectory):
        if times.shape[0] > 2:
            x_last, head, nfe, status = self._solve(source, schedule, times[:-1], x, save_trajectory)
        else:
            x_last, head, nfe, status = x, (x[None] if save_trajectory else None), jnp.int32(0), jnp.int32(0)
        x_end = _onto_zero(source, schedule, times, x_last)
        trajectory = None if head is None else jnp.concatenate([head, x_end[None]])
        return x_end, trajectory, nfe + 1, jnp.where(status == 0, _status_of(x_end), status).astype(jnp.int32)

    def start(self, source, schedule, times, x, save_trajectory):
        trajectory = jnp.zeros((times.shape[0],) + x.shape, x.dtype) if save_trajectory else None
        inner = _OneShotInner(x, x, trajectory, jnp.int32(0), jnp.int32(0))
        return IntegrationState(inner, jnp.int32(0), jnp.asarray(False))

    def advance(self, source, schedule, times, state, chunk):
        save = state.inner.trajectory is not None

        def solve(inner):
            def to_zero(x):
                return self._solve_to_zero(source, schedule, times, x, save)

            def plain(x):
                return self._solve(source, schedule, times, x, save)

            if self.ends_at_zero is None:
                x_end, trajectory, nfe, status = jax.lax.cond(ends_at_zero(schedule, times), to_zero, plain, inner.x)
            else:
                x_end, trajectory, nfe, status = (to_zero if self.ends_at_zero else plain)(inner.x)
            return _OneShotInner(inner.x, x_end, trajectory, nfe, status)

        inner = jax.lax.cond(state.finished, lambda inner: inner, solve, state.inner)
        return IntegrationState(inner, jnp.int32(1), jnp.asarray(True))

    def finish(self, source, schedule, times, state):
        inner = state.inner
        return inner.x_end, inner.trajectory, inner.nfe, inner.status


# Names a request may use (lower-case, as in the proto enums without their prefix), so
# that the service maps an enum to a class in one place.
SAMPLERS = {
    "euler": Euler,
    "heun": Heun,
    "ddim": ExponentialEuler,
    "dpm_solver_pp_2m": functools.partial(DPMSolverPlusPlus, order=2),
    "dpm_solver_pp_3m": functools.partial(DPMSolverPlusPlus, order=3),
    "dopri5": Dopri5,
}
