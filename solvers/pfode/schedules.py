"""Noise schedules and time grids for probability-flow ODE samplers.

A schedule describes the forward (noising) process through its marginals

    x_t = alpha(t) x_0 + sigma(t) eps,    eps ~ N(0, I),

with t growing from data (small t) to noise (large t). Everything a sampler needs follows
from log alpha, log sigma and the log signal-to-noise ratio lambda = log(alpha / sigma):
the probability-flow ODE is

    dx/dt = (d log alpha / dt) x + sigma^2 (d lambda / dt) score(x, t)

(the usual f x - g^2 / 2 score with g^2 = -2 sigma^2 d lambda / dt), and the exponential
integrators step in lambda. Each schedule also inverts lambda -> t so that grids can be
laid out uniformly in log-SNR or in EDM's sigma / alpha.

Schedule parameters are pytree leaves (traced): changing beta_max does not recompile.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp


class AbstractSchedule(eqx.Module):
    """The marginals x_t = alpha(t) x_0 + sigma(t) eps of a forward noising process."""

    @abc.abstractmethod
    def log_alpha(self, t: jax.Array) -> jax.Array: ...

    @abc.abstractmethod
    def log_sigma(self, t: jax.Array) -> jax.Array: ...

    @abc.abstractmethod
    def t_from_log_snr(self, log_snr: jax.Array) -> jax.Array:
        """The time whose log(alpha / sigma) equals `log_snr` (inverse of `log_snr`)."""

    @abc.abstractmethod
    def default_interval(self) -> tuple[float, float]:
        """(t_start, t_end): where sampling starts (noise) and ends (near data)."""

    @abc.abstractmethod
    def default_grid(self) -> "AbstractTimeGrid": ...

    def alpha(self, t):
        return jnp.exp(self.log_alpha(t))

    def sigma(self, t):
        return jnp.exp(self.log_sigma(t))

    def log_snr(self, t):
        return self.log_alpha(t) - self.log_sigma(t)

    def ode_coefficients(self, t):
        """(a, b) with dx/dt = a x + b score: a = d log alpha / dt, b = sigma^2 d lambda/dt.

        Derivatives by forward-mode AD of the scalar closed forms, so a new schedule only
        writes log alpha and log sigma.
        """
        one = jnp.ones_like(t)
        log_alpha, dlog_alpha = jax.jvp(self.log_alpha, (t,), (one,))
        log_sigma, dlog_sigma = jax.jvp(self.log_sigma, (t,), (one,))
        return dlog_alpha, jnp.exp(2 * log_sigma) * (dlog_alpha - dlog_sigma)


class VPSchedule(AbstractSchedule):
    """Variance preserving, linear beta(t) = beta_min + t (beta_max - beta_min), t in [0, 1].

    alpha^2 = exp(-int_0^t beta), sigma^2 = 1 - alpha^2 (Song et al.'s VP SDE).
    """

    beta_min: float = 0.1
    beta_max: float = 20.0

    def __check_init__(self):
        _check_positive("beta_min", self.beta_min, allow_zero=True)
        _check_positive("beta_max", self.beta_max)

    def _integral(self, t):
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t**2

    def log_alpha(self, t):
        return -0.5 * self._integral(t)

    def log_sigma(self, t):
        # log sqrt(1 - alpha^2) via expm1: accurate where alpha is close to one.
        return 0.5 * jnp.log(-jnp.expm1(-self._integral(t)))

    def t_from_log_snr(self, log_snr):
        # alpha^2 = sigmoid(2 lambda), so int beta = softplus(-2 lambda); solve the
        # quadratic in the cancellation-free form 2B / (b0 + sqrt(b0^2 + 2 (b1 - b0) B)).
        integral = jax.nn.softplus(-2.0 * log_snr)
        root = jnp.sqrt(self.beta_min**2 + 2.0 * (self.beta_max - self.beta_min) * integral)
        return 2.0 * integral / (self.beta_min + root)

    def default_interval(self):
        return 1.0, 1e-3

    def default_grid(self):
        return UniformTimeGrid()


class VESchedule(AbstractSchedule):
    """Variance exploding, geometric sigma(t) = sigma_min (sigma_max / sigma_min)^t, alpha = 1."""

    sigma_min: float = 0.01
    sigma_max: float = 50.0

    def __check_init__(self):
        _check_positive("sigma_min", self.sigma_min)
        _check_positive("sigma_max", self.sigma_max)

    def log_alpha(self, t):
        return jnp.zeros_like(t)

    def log_sigma(self, t):
        return jnp.log(self.sigma_min) + t * jnp.log(self.sigma_max / self.sigma_min)

    def t_from_log_snr(self, log_snr):
        return (-log_snr - jnp.log(self.sigma_min)) / jnp.log(self.sigma_max / self.sigma_min)

    def default_interval(self):
        return 1.0, 0.0  # sigma(0) = sigma_min > 0

    def default_grid(self):
        return UniformTimeGrid()  # uniform in t is geometric in sigma


class EDMSchedule(AbstractSchedule):
    """Karras et al. (EDM): alpha = 1, sigma(t) = t, sampled on the rho = 7 sigma grid.

    t is sigma itself. Sampled as EDM does by default: Karras grid from sigma_max to
    sigma_min, then a last step to sigma = 0 (`KarrasTimeGrid(append_zero=True)`).
    """

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0

    def __check_init__(self):
        _check_positive("sigma_min", self.sigma_min, allow_zero=True)
        _check_positive("sigma_max", self.sigma_max)
        _check_positive("rho", self.rho)

    def log_alpha(self, t):
        return jnp.zeros_like(t)

    def log_sigma(self, t):
        return jnp.log(t)

    def t_from_log_snr(self, log_snr):
        return jnp.exp(-log_snr)

    def default_interval(self):
        return self.sigma_max, self.sigma_min

    def default_grid(self):
        return KarrasTimeGrid(rho=self.rho, append_zero=True)


class AbstractTimeGrid(eqx.Module):
    """Where a fixed-step sampler evaluates: steps + 1 times from t_start down to t_end."""

    @abc.abstractmethod
    def __call__(self, schedule: AbstractSchedule, t_start, t_end, steps: int) -> jax.Array: ...


def _pin_ends(times, t_start, t_end):
    # Inverting lambda -> t is exact only up to rounding; the ends are what the caller asked.
    return times.at[0].set(t_start).at[-1].set(t_end)


class UniformTimeGrid(AbstractTimeGrid):
    """Equal steps in t."""

    def __call__(self, schedule, t_start, t_end, steps):
        return jnp.linspace(t_start, t_end, steps + 1)


class LogSNRTimeGrid(AbstractTimeGrid):
    """Equal steps in lambda = log(alpha / sigma) (DPM-Solver's choice)."""

    def __call__(self, schedule, t_start, t_end, steps):
        lam = jnp.linspace(schedule.log_snr(t_start), schedule.log_snr(t_end), steps + 1)
        return _pin_ends(schedule.t_from_log_snr(lam), t_start, t_end)


class KarrasTimeGrid(AbstractTimeGrid):
    """EDM's grid: equal steps in s^(1/rho), s = sigma / alpha (EDM's sigma), rho = 7.

    append_zero: EDM's convention -- the Karras grid covers t_start .. t_end with
    steps - 1 intervals and one last step goes from t_end to t = 0 (no noise); EDM's
    "18 steps" Heun is then 17 Heun steps and a final Euler step, 35 evaluations."""

    rho: float = 7.0
    append_zero: bool = eqx.field(static=True, default=False)

    def __call__(self, schedule, t_start, t_end, steps):
        if self.append_zero:
            if steps == 1:
                return jnp.stack([t_start, jnp.zeros_like(t_start)])
            head = KarrasTimeGrid(self.rho)(schedule, t_start, t_end, steps - 1)
            return jnp.concatenate([head, jnp.zeros_like(head[:1])])

        def edm_sigma(t):
            return jnp.exp(schedule.log_sigma(t) - schedule.log_alpha(t))

        hi, lo = edm_sigma(t_start) ** (1 / self.rho), edm_sigma(t_end) ** (1 / self.rho)
        s = (hi + jnp.linspace(0.0, 1.0, steps + 1) * (lo - hi)) ** self.rho
        # s = 0 (t_end = 0 on EDM) maps to log_snr = +inf, which every inverse sends to t_end.
        return _pin_ends(schedule.t_from_log_snr(-jnp.log(s)), t_start, t_end)


def _check_positive(name, value, allow_zero=False):
    try:
        concrete = float(value)
    except (TypeError, jax.errors.ConcretizationTypeError):
        return  # traced: validated where it was concrete
    if not (concrete >= 0 if allow_zero else concrete > 0):
        raise ValueError(f"{name} must be {'non-negative' if allow_zero else 'positive'}, got {concrete}")


# The registries the service names them by.
SCHEDULES = {"vp": VPSchedule, "ve": VESchedule, "edm": EDMSchedule}
TIME_GRIDS = {"uniform": UniformTimeGrid, "log_snr": LogSNRTimeGrid, "karras": KarrasTimeGrid}
