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

Every sampler returns the final state, an optional trajectory on the grid, the number of
score evaluations actually spent and a status (errors are values; the caller decides).
"""

from __future__ import annotations

import abc
import enum
import math

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from monge.solvers.pfode_schedules import AbstractSchedule, AbstractTimeGrid, LogSNRTimeGrid, UniformTimeGrid
from monge.solvers.pfode_sources import AbstractScoreSource


class SampleStatus(enum.IntEnum):
    """Why an integration stopped. Stored as an int32 array under jit."""

    SUCCESS = 0
    MAX_STEPS = 1  # adaptive solver hit max_steps before t_end
    NONFINITE = 2  # the state became NaN or infinite
    SOLVER_FAILED = 3  # another diffrax failure

    @property
    def message(self) -> str:
        return {
            SampleStatus.SUCCESS: "success: integrated to t_end",
            SampleStatus.MAX_STEPS: "stopped: the adaptive solver reached max_steps before t_end",
            SampleStatus.NONFINITE: "failed: the state became NaN or infinite",
            SampleStatus.SOLVER_FAILED: "failed: the ODE solver reported an error",
        }[self]


def velocity(source: AbstractScoreSource, schedule: AbstractSchedule, x, t):
    """dx/dt of the probability-flow ODE, written through the denoiser D:
    a x + b score = a x + b (alpha D - x) / sigma^2."""
    a, b = schedule.ode_coefficients(t)
    alpha, sigma = schedule.alpha(t), schedule.sigma(t)
    return a * x + b * (alpha * source.denoise(x, t, schedule) - x) / sigma**2


class AbstractSampler(eqx.Module):
    def default_grid(self, schedule: AbstractSchedule) -> AbstractTimeGrid:
        """The grid used when the request names none: the schedule's own."""
        return schedule.default_grid()

    @abc.abstractmethod
    def steps_for_nfe(self, nfe: int) -> int:
        """The largest number of grid steps whose evaluations fit in `nfe`."""

    @abc.abstractmethod
    def integrate(self, source, schedule, times, x, save_trajectory: bool):
        """-> (x_end, trajectory (len(times), n, d) or None, nfe int32, status int32)."""


def _status_of(x):
    return jnp.where(jnp.all(jnp.isfinite(x)), SampleStatus.SUCCESS, SampleStatus.NONFINITE).astype(jnp.int32)


class AbstractFixedGridSampler(AbstractSampler):
    """Steps along the grid with `lax.scan`; `_step` sees the whole grid and the index so
    that multistep methods can look back."""

    @abc.abstractmethod
    def _step(self, source, schedule, times, i, carry): ...

    def _init_carry(self, x):
        return x

    def integrate(self, source, schedule, times, x, save_trajectory):
        steps = times.shape[0] - 1

        def body(state, i):
            carry, nfe = state
            carry, used = self._step(source, schedule, times, i, carry)
            x_next = carry[0] if isinstance(carry, tuple) else carry
            return (carry, nfe + used), (x_next if save_trajectory else None)

        init = (self._init_carry(x), jnp.int32(0))
        (carry, nfe), traj = jax.lax.scan(body, init, jnp.arange(steps))
        x_end = carry[0] if isinstance(carry, tuple) else carry
        trajectory = jnp.concatenate([x[None], traj]) if save_trajectory else None
        return x_end, trajectory, nfe, _status_of(x_end)


class Euler(AbstractFixedGridSampler):
    """x_{i+1} = x_i + (t_{i+1} - t_i) v(x_i, t_i). First order."""

    def steps_for_nfe(self, nfe):
        return nfe

    def _step(self, source, schedule, times, i, x):
        t, t_next = times[i], times[i + 1]
        return x + (t_next - t) * velocity(source, schedule, x, t), jnp.int32(1)


class Heun(AbstractFixedGridSampler):
    """EDM's Heun: Euler predictor, trapezoidal corrector. Second order. The corrector is
    skipped on a step landing on sigma = 0, where the score is undefined."""

    def steps_for_nfe(self, nfe):
        return max(nfe // 2, 0)

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

    def steps_for_nfe(self, nfe):
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
# diffrax


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


def _diffrax_integrate(solver, controller, max_steps, source, schedule, times, x, save_trajectory):
    term = diffrax.ODETerm(lambda t, y, args: velocity(source, schedule, y, t))
    t0, t1 = times[0], times[-1]
    if controller is None:
        controller, dt0 = diffrax.StepTo(ts=times), None
    else:
        dt0 = (t1 - t0) / (times.shape[0] - 1)
    saveat = diffrax.SaveAt(ts=times) if save_trajectory else diffrax.SaveAt(t1=True)
    sol = diffrax.diffeqsolve(
        term, solver, t0, t1, dt0, x,
        stepsize_controller=controller, saveat=saveat, max_steps=max_steps, throw=False,
    )
    per_step, once = _evaluations_per_step(solver)
    nfe = (per_step * sol.stats["num_steps"] + once).astype(jnp.int32)
    x_end = sol.ys[-1]
    status = jnp.where(
        sol.result == diffrax.RESULTS.successful,
        _status_of(x_end),
        jnp.where(sol.result == diffrax.RESULTS.max_steps_reached, SampleStatus.MAX_STEPS, SampleStatus.SOLVER_FAILED),
    ).astype(jnp.int32)
    return x_end, (sol.ys if save_trajectory else None), nfe, status


class Dopri5(AbstractSampler):
    """Adaptive Dormand-Prince 5(4) (diffrax) with a PID step-size controller.

    rtol, atol are traced (no recompile); max_steps is static. The time grid only sets the
    first step guess and where the trajectory is saved. NFE = 6 per attempted step + 1."""

    rtol: float = 1e-5
    atol: float = 1e-5
    max_steps: int = eqx.field(static=True, default=4096)

    def __check_init__(self):
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if isinstance(value, (int, float)) and not value > 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if self.max_steps < 1:
            raise ValueError(f"max_steps must be positive, got {self.max_steps}")

    def steps_for_nfe(self, nfe):
        return max((nfe - 1) // 6, 1)  # only the saving grid / first-step guess

    def integrate(self, source, schedule, times, x, save_trajectory):
        controller = diffrax.PIDController(rtol=self.rtol, atol=self.atol)
        return _diffrax_integrate(
            diffrax.Dopri5(), controller, self.max_steps, source, schedule, times, x, save_trajectory
        )


class Diffrax(AbstractSampler):
    """A plain diffrax solve of the same ODE: any diffrax RK solver, stepping exactly on
    the time grid (controller None) or adaptively with the given controller."""

    solver: diffrax.AbstractSolver = diffrax.Tsit5()
    controller: diffrax.AbstractStepSizeController | None = None
    max_steps: int = eqx.field(static=True, default=4096)

    def __check_init__(self):
        _evaluations_per_step(self.solver)

    def steps_for_nfe(self, nfe):
        per_step, once = _evaluations_per_step(self.solver)
        return max((nfe - once) // per_step, 0)

    def integrate(self, source, schedule, times, x, save_trajectory):
        return _diffrax_integrate(
            self.solver, self.controller, self.max_steps, source, schedule, times, x, save_trajectory
        )
