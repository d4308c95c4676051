"""Var-RUOT settings: growth penalties, Laplacian estimators, the frozen solver config and
the snapshot data with its validation.

Growth penalties and Laplacian estimators are strategy objects (frozen, hashable, so
they can be static arguments of a jitted function); every strategy can write itself as a
JSON-able dict and be read back, which is how a fitted model is exported without pickle.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

# ---------------------------------------------------------------------------------------
# Growth penalties psi(g). The optimality condition alpha psi'(g) = lambda gives the
# growth rate as a function of the potential, so each strategy exposes both.


class AbstractGrowth(abc.ABC):
    """A growth penalty psi and the growth rate g(lambda) solving alpha psi'(g) = lambda."""

    name: str = ""

    @abc.abstractmethod
    def rate(self, lam: jax.Array, alpha: jax.Array) -> jax.Array:
        """g as a function of the potential lambda (elementwise)."""

    @abc.abstractmethod
    def penalty(self, g: jax.Array) -> jax.Array:
        """psi(g) (elementwise); the action integrates alpha psi(g) against rho."""

    def to_settings(self) -> dict[str, Any]:
        return {"name": self.name, **dataclasses.asdict(self)}


@dataclasses.dataclass(frozen=True)
class NoGrowth(AbstractGrowth):
    """Balanced dynamics: g = 0 (an infinite penalty on any growth)."""

    name = "none"

    def rate(self, lam, alpha):
        return jnp.zeros_like(lam)

    def penalty(self, g):
        return jnp.zeros_like(g)


@dataclasses.dataclass(frozen=True)
class QuadraticGrowth(AbstractGrowth):
    """Wasserstein-Fisher-Rao: psi(g) = g^2 / 2, so g = lambda / alpha."""

    name = "quadratic"

    def rate(self, lam, alpha):
        return lam / alpha

    def penalty(self, g):
        return 0.5 * g * g


@dataclasses.dataclass(frozen=True)
class PaperGrowth(AbstractGrowth):
    """The Var-RUOT paper's penalty psi(g) = |g|^(2/15).

    alpha psi'(g) = lambda gives g = sign(lambda) (2 alpha / (15 |lambda|))^(15/13), which
    is singular at lambda = 0; for |lambda| <= `linear_below` the rate is the straight
    line through 0 and its value at the threshold, so g stays finite and continuous.
    """

    name = "paper"
    linear_below: float = 0.1

    def __post_init__(self):
        if not self.linear_below > 0:
            raise ValueError(f"growth.linear_below must be positive, got {self.linear_below}")

    def rate(self, lam, alpha):
        c = jnp.asarray(self.linear_below, lam.dtype)
        power = 15.0 / 13.0
        at_c = (2.0 * alpha / (15.0 * c)) ** power
        safe = jnp.maximum(jnp.abs(lam), c)  # keeps the unused branch finite (and its grad)
        outer = jnp.sign(lam) * (2.0 * alpha / (15.0 * safe)) ** power
        return jnp.where(jnp.abs(lam) <= c, lam / c * at_c, outer)

    def penalty(self, g):
        # (g^2 + tiny)^(1/15) instead of |g|^(2/15): same value, finite gradient at 0.
        return (g * g + 1e-12) ** (1.0 / 15.0)


GROWTHS: dict[str, type[AbstractGrowth]] = {
    cls.name: cls for cls in (NoGrowth, QuadraticGrowth, PaperGrowth)
}


def from_settings(kind: str, registry: dict[str, type], settings: dict[str, Any]):
    """The strategy object a stored settings dict names (`name` plus its fields); `kind`
    names the settings key in the error."""
    settings = dict(settings)
    name = settings.pop("name", None)
    if name not in registry:
        raise ValueError(f"{kind}.name must be one of {sorted(registry)}, got {name!r}")
    return registry[name](**settings)


def growth_from_settings(settings: dict[str, Any]) -> AbstractGrowth:
    return from_settings("growth", GROWTHS, settings)


# ---------------------------------------------------------------------------------------
# Laplacian of lambda in x: exact Hessian trace (d Jacobian-vector products) or
# Hutchinson's unbiased estimate E[v^T H v] with Rademacher probes (cost independent of d).


class AbstractLaplacian(abc.ABC):
    name: str = ""

    @abc.abstractmethod
    def resolve(self, dim: int) -> "AbstractLaplacian":
        """The concrete estimator used in dimension `dim`."""

    def to_settings(self) -> dict[str, Any]:
        return {"name": self.name, **dataclasses.asdict(self)}


@dataclasses.dataclass(frozen=True)
class ExactLaplacian(AbstractLaplacian):
    name = "exact"

    def resolve(self, dim):
        return self


@dataclasses.dataclass(frozen=True)
class HutchinsonLaplacian(AbstractLaplacian):
    name = "hutchinson"
    probes: int = 1

    def __post_init__(self):
        if isinstance(self.probes, bool) or not isinstance(self.probes, int) or self.probes < 1:
            raise ValueError(f"laplacian.probes must be a positive integer, got {self.probes!r}")

    def resolve(self, dim):
        return self


@dataclasses.dataclass(frozen=True)
class AutoLaplacian(AbstractLaplacian):
    """Exact up to `max_exact_dim` dimensions (where d JVPs are cheap), Hutchinson above."""

    name = "auto"
    max_exact_dim: int = 4
    probes: int = 1

    def resolve(self, dim):
        return ExactLaplacian() if dim <= self.max_exact_dim else HutchinsonLaplacian(self.probes)


LAPLACIANS: dict[str, type[AbstractLaplacian]] = {
    cls.name: cls for cls in (ExactLaplacian, HutchinsonLaplacian, AutoLaplacian)
}


def laplacian_from_settings(settings: dict[str, Any]) -> AbstractLaplacian:
    return from_settings("laplacian", LAPLACIANS, settings)


# ---------------------------------------------------------------------------------------
# Reconstruction terms: how far the weight-normalised particles (x, a) are from a
# snapshot (y, b uniform). Each is D(x, a; y, b) = cross - self(x) - self(y); the
# snapshot's own term does not depend on the parameters and is computed once
# (`snapshot_term`), so the reported value is the whole divergence.


class AbstractReconstruction(abc.ABC):
    name: str = ""

    @abc.abstractmethod
    def particle_terms(self, x, a, y, b, epsilon, population: int | None = None) -> jax.Array:
        """D(x, a; y, b) without the snapshot's own term (differentiable in x and a).
        The particles x are a batch drawn from `population` starting cells (with
        replacement when the batch is larger; None: an unlimited population)."""

    @abc.abstractmethod
    def snapshot_term(self, y, b, epsilon) -> jax.Array:
        """The snapshot's own term, subtracted from `particle_terms` to give D."""

    def to_settings(self) -> dict[str, Any]:
        return {"name": self.name, **dataclasses.asdict(self)}


def _distances(x, y, smoothing):
    """Euclidean distances (n, m), smoothed as sqrt(d^2 + smoothing^2) - smoothing so that
    the gradient at coincident points (the diagonal of x against x) is 0, not NaN."""
    d2 = jnp.sum((x[:, None, :] - y[None, :, :]) ** 2, axis=-1)
    return jnp.sqrt(d2 + smoothing * smoothing) - smoothing


@dataclasses.dataclass(frozen=True)
class EnergyDistance(AbstractReconstruction):
    """Energy distance (the MMD of the kernel -|x - y|):
    2 E|X - Y| - E|X - X'| - E|Y - Y'|, zero only when the measures agree.

    The snapshot enters as the empirical measure it is (its self term exact). The
    particles are a batch of n drawn from the N starting cells, and their self term
    is corrected so that its expectation is that of all N: times n / (n - 1) for a
    draw with replacement (or from an unlimited population), times
    n (N - 1) / ((n - 1) N) without; with n = N it is exact. Minimising the
    expectation over random batches then has the snapshot itself as minimiser,
    whatever the batch size. (Not divided by 1 - sum a_i^2, the weighted U-statistic:
    when the weights concentrate on a few particles that divisor goes to zero and the
    term rewards flinging those particles apart; on EMT it did.) A
    debiased Sinkhorn divergence between 128-256 particles and a snapshot of ~1,000
    cells is biased: at the data's own law it is 0.08-0.13 on the gene data, more
    than the W1 the benchmark asks for, and each step costs hundreds of Sinkhorn
    iterations. `smoothing` (data units) rounds the distance near zero."""

    name = "energy"
    smoothing: float = 1e-3

    def __post_init__(self):
        _positive("reconstruction.smoothing", self.smoothing)

    def _self(self, x, a):
        return a @ _distances(x, x, self.smoothing) @ a

    def particle_terms(self, x, a, y, b, epsilon, population=None):
        n = x.shape[0]
        if n == 1 or population == n:
            correction = 1.0
        elif population is None or population < n:
            correction = n / (n - 1.0)
        else:
            correction = n * (population - 1.0) / ((n - 1.0) * population)
        return 2.0 * a @ _distances(x, y, self.smoothing) @ b - correction * self._self(x, a)

    def snapshot_term(self, y, b, epsilon):
        return self._self(y, b)


@dataclasses.dataclass(frozen=True)
class SinkhornDivergence(AbstractReconstruction):
    """Debiased Sinkhorn divergence OT_e(x, y) - OT_e(x, x) / 2 - OT_e(y, y) / 2 with the
    squared Euclidean cost, e = RuotConfig.ot_epsilon x the data's total variance.
    At e = 0.01 the gene data's Sinkhorn needs ~1,800 iterations from a cold start
    (350-500 with 3 epsilon-scaling stages); stopped earlier, the value is a loose
    lower bound. Which term fits better depends on the data: on the gene data (2-D) this
    one made every W1 worse than the energy distance, on EMT (10-D) it is what brings W1
    from 0.27-0.30 to 0.24-0.26 (the energy distance there is weak on the shape that W1
    scores), at about twice the time per step (benchmarks/RESULTS.md)."""

    name = "sinkhorn"
    max_iterations: int = 1000
    scaling_stages: int = 3
    threshold: float = 1e-3

    def __post_init__(self):
        _positive_int("reconstruction.max_iterations", self.max_iterations)
        _nonnegative_int("reconstruction.scaling_stages", self.scaling_stages)
        _positive("reconstruction.threshold", self.threshold)

    def _ot(self, x, a, y, b, epsilon):
        from monge.solvers.sinkhorn import OTProblem, SinkhornConfig, solve

        config = SinkhornConfig(epsilon=epsilon, threshold=self.threshold, max_iterations=self.max_iterations,
                                scaling_stages=self.scaling_stages, method="log")
        return solve(OTProblem.from_points(x, y, a, b), config).objective

    def particle_terms(self, x, a, y, b, epsilon, population=None):
        return self._ot(x, a, y, b, epsilon) - 0.5 * self._ot(x, a, x, a, epsilon)

    def snapshot_term(self, y, b, epsilon):
        return 0.5 * self._ot(y, b, y, b, epsilon)


RECONSTRUCTIONS: dict[str, type[AbstractReconstruction]] = {
    cls.name: cls for cls in (EnergyDistance, SinkhornDivergence)
}


# ---------------------------------------------------------------------------------------
# Configs.


def _positive(name, value):
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def _nonnegative(name, value):
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a non-negative finite number, got {value!r}")


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _nonnegative_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")




@dataclasses.dataclass(frozen=True, kw_only=True)
class NetworkConfig:
    """lambda(x, t): input layer, `residual_blocks` blocks h + W2 silu(LN(W1 h)), then
    LayerNorm and a linear read-out. SiLU because the HJB residual needs smooth second
    derivatives in x (ReLU's Laplacian is zero almost everywhere).

    snapshot_jumps: the network also reads a step 1[t >= t_k] for each interior snapshot
    time t_k, so lambda (and with it u and g) may jump at the snapshots and the HJB
    residual is asked to vanish only between them (see `Normaliser`).

    readout_scale: multiplies the initial read-out weights. At 1 the initial lambda has
    a spread of ~0.5, and particles climbing grad lambda into the high-growth regions
    multiply the mass: on EMT (10-D) the untrained model's mass at t = 3 is 11-33
    against 1.53, and its action 17-47, and the fit spends its first hundred steps
    recovering (EMT at 400 steps: W1 0.34 / 0.39 / 0.42 at 1, 0.29 / 0.32 / 0.32 at
    0.1). The default 0.1 starts near "nothing moves, nothing grows" (mass at t = 3
    1.15-1.28, action 0.14); not 0, where the hidden layers get no gradient."""

    width: int = 512
    residual_blocks: int = 1
    snapshot_jumps: bool = False
    readout_scale: float = 0.1

    def __post_init__(self):
        _positive_int("network.width", self.width)
        _nonnegative_int("network.residual_blocks", self.residual_blocks)
        _positive("network.readout_scale", self.readout_scale)
        if not isinstance(self.snapshot_jumps, bool):
            raise ValueError(f"network.snapshot_jumps must be a boolean, got {self.snapshot_jumps!r}")


# ---------------------------------------------------------------------------------------
# Learning-rate schedules: the factor applied to the learning rate at each step.


class AbstractSchedule(abc.ABC):
    """Learning-rate multiplier as a function of the step (traced) and the step count."""

    name: str = ""

    @abc.abstractmethod
    def factor(self, step: jax.Array, total: jax.Array) -> jax.Array:
        """Multiplier of the learning rate at optimiser step `step` (0-based) of `total`."""

    def to_settings(self) -> dict[str, Any]:
        return {"name": self.name, **dataclasses.asdict(self)}


@dataclasses.dataclass(frozen=True)
class ConstantSchedule(AbstractSchedule):
    name = "constant"

    def factor(self, step, total):
        return jnp.ones((), jnp.float32)


@dataclasses.dataclass(frozen=True)
class WarmupCosineSchedule(AbstractSchedule):
    """Linear warm-up over the first `warmup` fraction of the steps, then a cosine decay
    to `final` times the learning rate at the last step. The decay is what lets the
    particles settle: at a constant rate the stochastic gradients (new particles and
    noise every step) keep the fit jittering by about the W1 the benchmark measures."""

    name = "warmup_cosine"
    warmup: float = 0.05
    final: float = 0.02

    def __post_init__(self):
        if not (isinstance(self.warmup, (int, float)) and 0 <= self.warmup < 1):
            raise ValueError(f"optimizer.schedule.warmup must lie in [0, 1), got {self.warmup!r}")
        if not (isinstance(self.final, (int, float)) and 0 <= self.final <= 1):
            raise ValueError(f"optimizer.schedule.final must lie in [0, 1], got {self.final!r}")

    def factor(self, step, total):
        step = jnp.asarray(step, jnp.float32)
        total = jnp.maximum(jnp.asarray(total, jnp.float32), 1.0)
        warm = jnp.maximum(self.warmup * total, 1.0)
        rise = jnp.minimum((step + 1.0) / warm, 1.0)
        progress = jnp.clip((step - warm) / jnp.maximum(total - 1.0 - warm, 1.0), 0.0, 1.0)
        decay = self.final + (1.0 - self.final) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
        return jnp.where(step < warm, rise, decay)


@dataclasses.dataclass(frozen=True, kw_only=True)
class OptimizerConfig:
    """AdamW; `clip_norm` bounds the global gradient norm (None: no clipping);
    `schedule` (an `AbstractSchedule`) scales the learning rate over the run."""

    learning_rate: float = 1e-4
    weight_decay: float = 1e-2
    clip_norm: float | None = 1.0
    schedule: AbstractSchedule = WarmupCosineSchedule()

    def __post_init__(self):
        _positive("optimizer.learning_rate", self.learning_rate)
        _nonnegative("optimizer.weight_decay", self.weight_decay)
        if self.clip_norm is not None:
            _positive("optimizer.clip_norm", self.clip_norm)
        if not isinstance(self.schedule, AbstractSchedule):
            raise ValueError(f"optimizer.schedule must be an AbstractSchedule, got {type(self.schedule).__name__}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class RuotConfig:
    """Var-RUOT hyperparameters. Defaults are the paper's quadratic-psi settings.

    sigma: diffusion, dX = grad lambda dt + sigma dW.
    dt: Euler-Maruyama step per unit time (each interval between snapshots gets
        ceil(length / dt) equal steps).
    alpha: growth-penalty weight. growth: an `AbstractGrowth`.
    gamma_hjb, gamma_action: weights of the mean squared HJB residual and of the action.
    gamma_mass: weight of the squared error of total mass against N_k / N_0.
    ot_epsilon: entropic weight of the `SinkhornDivergence` reconstruction, relative to
        the data's total variance (so it is scale-free); unused by `EnergyDistance`.
    reconstruction: an `AbstractReconstruction`, the distance between the
        weight-normalised particles and each snapshot (default `EnergyDistance()`).
    pretrain_fraction: the first fraction of the steps fits the snapshots and masses
        only (gamma_hjb and gamma_action off), as the paper trains in stages.
    particles: simulated particles per step (drawn from the first snapshot).
    steps: optimiser steps. report_every: steps per jitted block; `progress` is called
        after each block.
    laplacian: an `AbstractLaplacian` (exact or Hutchinson).
    """

    network: NetworkConfig = NetworkConfig()
    sigma: float = 0.1
    dt: float = 0.1
    alpha: float = 2.0
    growth: AbstractGrowth = QuadraticGrowth()
    gamma_hjb: float = 0.0625
    gamma_action: float = 0.0625
    gamma_mass: float = 1.0
    ot_epsilon: float = 0.01
    pretrain_fraction: float = 0.0
    reconstruction: AbstractReconstruction = EnergyDistance()
    optimizer: OptimizerConfig = OptimizerConfig()
    steps: int = 2000
    report_every: int = 50
    particles: int = 256
    seed: int = 0
    laplacian: AbstractLaplacian = AutoLaplacian()

    def __post_init__(self):
        _nonnegative("sigma", self.sigma)
        _positive("dt", self.dt)
        _positive("alpha", self.alpha)
        for name in ("gamma_hjb", "gamma_action", "gamma_mass"):
            _nonnegative(name, getattr(self, name))
        _positive("ot_epsilon", self.ot_epsilon)
        if not (isinstance(self.pretrain_fraction, (int, float)) and not isinstance(self.pretrain_fraction, bool)
                and 0 <= self.pretrain_fraction < 1):
            raise ValueError(f"pretrain_fraction must lie in [0, 1), got {self.pretrain_fraction!r}")
        for name in ("steps", "report_every", "particles"):
            _positive_int(name, getattr(self, name))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")
        for name, base in (("growth", AbstractGrowth), ("laplacian", AbstractLaplacian),
                           ("reconstruction", AbstractReconstruction),
                           ("network", NetworkConfig), ("optimizer", OptimizerConfig)):
            if not isinstance(getattr(self, name), base):
                raise ValueError(f"{name} must be a {base.__name__}, got {type(getattr(self, name)).__name__}")


def paper_config(**overrides) -> RuotConfig:
    """The paper's settings for its modified penalty psi = |g|^(2/15)."""
    settings = dict(alpha=7.0, growth=PaperGrowth(), gamma_hjb=6.25e-3,
                    optimizer=OptimizerConfig(learning_rate=2e-5))
    settings.update(overrides)
    return RuotConfig(**settings)


# ---------------------------------------------------------------------------------------
# Data.


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """One observed population: its time, its points (n, d) and optionally its total
    mass (a cell count, or any unnormalised mass). Masses are used relative to the first
    snapshot's; when absent, the point count n is the mass."""

    time: float
    points: np.ndarray
    mass: float | None = None


@dataclasses.dataclass(frozen=True)
class SnapshotData:
    """Validated snapshots: float32 points, times, and relative masses m_k = M_k / M_0."""

    times: np.ndarray  # (K,) float64, strictly increasing
    points: tuple[np.ndarray, ...]  # K arrays (n_k, d), float32
    relative_mass: np.ndarray  # (K,) float64, first entry 1

    @property
    def dim(self) -> int:
        return self.points[0].shape[1]


def validate_snapshots(snapshots: Sequence[Snapshot | tuple]) -> SnapshotData:
    """Check and normalise snapshots; errors name the offending field."""
    items = []
    for k, snap in enumerate(snapshots):
        if isinstance(snap, Snapshot):
            items.append(snap)
        elif isinstance(snap, (tuple, list)) and len(snap) in (2, 3):
            items.append(Snapshot(*snap))
        else:
            raise ValueError(f"snapshots[{k}] must be a Snapshot or (time, points[, mass])")
    if len(items) < 2:
        raise ValueError(f"snapshots must hold at least two snapshots, got {len(items)}")
    times, points, masses = [], [], []
    dim = None
    for k, snap in enumerate(items):
        try:
            t = float(snap.time)
        except (TypeError, ValueError):
            raise ValueError(f"snapshots[{k}].time must be a number, got {snap.time!r}") from None
        if not math.isfinite(t):
            raise ValueError(f"snapshots[{k}].time must be finite, got {t}")
        if times and not t > times[-1]:
            raise ValueError(f"snapshots[{k}].time must be greater than the previous time "
                             f"({times[-1]}), got {t}: times must increase strictly")
        x = np.asarray(snap.points)
        if x.ndim != 2:
            raise ValueError(f"snapshots[{k}].points must be a 2-D array (n, d), got shape {x.shape}")
        if x.shape[0] == 0:
            raise ValueError(f"snapshots[{k}].points is empty")
        if x.shape[1] == 0:
            raise ValueError(f"snapshots[{k}].points has zero dimensions")
        if dim is None:
            dim = x.shape[1]
        elif x.shape[1] != dim:
            raise ValueError(f"snapshots[{k}].points has dimension {x.shape[1]}, but snapshots[0] has {dim}")
        if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
            raise ValueError(f"snapshots[{k}].points must be finite numbers")
        mass = float(x.shape[0]) if snap.mass is None else snap.mass
        try:
            mass = float(mass)
        except (TypeError, ValueError):
            raise ValueError(f"snapshots[{k}].mass must be a number, got {snap.mass!r}") from None
        if not (math.isfinite(mass) and mass > 0):
            raise ValueError(f"snapshots[{k}].mass must be positive and finite, got {mass}")
        times.append(t)
        points.append(x.astype(np.float32))
        masses.append(mass)
    masses = np.asarray(masses)
    return SnapshotData(np.asarray(times), tuple(points), masses / masses[0])
