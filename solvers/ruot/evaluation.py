"""How well a fit predicts a snapshot it did not see: the held-out check.

A fit made without the snapshot at time t predicts the population there; its exact W1
to the held-out cells means little alone, so two references come with it (as moscot's
`compute_interpolated_distance` and the trajectory-inference literature report them):

- the noise floor: W1 between two random halves of the held-out cells, the distance
  sampling alone puts between two draws of half that size;
- the balanced McCann interpolation between the neighbouring fitted snapshots: the
  exact W2 plan between them, each matched pair displaced to t. A dynamic model that
  cannot beat it has learned nothing the two snapshots did not already say.

Distances are between probability measures (the predicted weights normalised, the
cells uniform), with the exact solver (`monge.solvers.exact`): no entropic bias.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from monge.solvers import exact


@dataclasses.dataclass(frozen=True)
class HoldOutReport:
    """W1 of the prediction at `time` beside the noise floor and the interpolation, and
    the predicted against the observed mass (both relative to the first snapshot's)."""

    time: float
    w1: float
    noise_floor: float
    interpolation_w1: float
    predicted_mass: float
    observed_mass: float


def w1(x, y, a=None, b=None) -> float:
    """Exact W1 between weighted point clouds (weights normalised; uniform when None)."""
    a = None if a is None else np.asarray(a, np.float64) / np.sum(a)
    b = None if b is None else np.asarray(b, np.float64) / np.sum(b)
    return float(exact.wasserstein(x, y, a, b, p=1.0).distance)


def noise_floor(points, *, seed: int = 0) -> float:
    """W1 between two random halves of `points`."""
    order = np.random.default_rng(seed).permutation(len(points))
    half = len(points) // 2
    return w1(points[order[:half]], points[order[half:2 * half]])


def mccann_interpolation(x, y, s: float) -> tuple[np.ndarray, np.ndarray]:
    """The balanced displacement interpolation at fraction `s` in [0, 1] from uniform x
    to uniform y: (points, weights), one point per entry of the exact W2 plan."""
    plan = exact.wasserstein(x, y, p=2.0)
    points = (1.0 - s) * np.asarray(x, np.float64)[plan.rows] + s * np.asarray(y, np.float64)[plan.cols]
    return points, plan.values


def hold_out_report(model, time: float, held, observed_mass: float, before, after, *,
                    seed: int = 0) -> HoldOutReport:
    """The report for the snapshot `held` (points) at `time`, its mass `observed_mass`
    relative to the first snapshot's, between the fitted snapshots `before` and
    `after` ((time, points) each)."""
    from monge.solvers.ruot.solver import predict

    held = np.asarray(held, np.float64)
    population = predict(model, time, seed=seed)
    (t0, x0), (t1, x1) = before, after
    between, weights = mccann_interpolation(x0, x1, (time - t0) / (t1 - t0))
    return HoldOutReport(
        time=float(time),
        w1=w1(population.points, held, population.weights),
        noise_floor=noise_floor(held, seed=seed),
        interpolation_w1=w1(between, held, weights),
        predicted_mass=float(population.mass),
        observed_mass=float(observed_mass),
    )
