"""Federated Wasserstein distance (FedWaD, Rakotomamonjy et al., ICLR 2024).

Two parties each hold a sample; a server orchestrates and never receives the samples
themselves. The server holds an interpolating measure xi. Each round:

1. the server sends xi and a fraction t in (0, 1) to both parties (`server_schedule`
   gives the seeded initial xi, `init_xi`, and every round's t);
2. each party solves the exact OT problem between xi and its own sample and answers
   with the point at fraction t on the geodesic from xi to its sample, plus
   W_p(xi, own sample)  (`party_step`);
3. the server moves xi to the point at fraction t on the geodesic between the two
   answers (`server_step`).

W_p(mu, xi) + W_p(xi, nu) >= W_p(mu, nu) for every xi (triangle inequality), so each
round yields a certified upper bound; the estimate is the smallest bound seen. With t
drawn uniformly each round the bound reaches a fraction of a percent of the exact
value; a fixed t = 0.5 tends to stall (xi settles near the midpoint of a wrong curve).

Why the bound cannot increase (exact geodesics): with W1 = W(mu, xi), W2 = W(xi, nu),
the answers satisfy W(mu, xi_mu) = (1-t) W1, W(xi_nu, nu) = (1-t) W2 and
W(xi_mu, xi_nu) <= t (W1 + W2); the new xi sits on a geodesic between them, so
W(mu, xi') + W(xi', nu) <= (1-t)(W1 + W2) + W(xi_mu, xi_nu) <= W1 + W2. Support
reduction (below) makes the geodesics approximate, hence the minimum over rounds.

Support reduction. The McCann interpolant of an exact plan P between xi (points z_j,
weights w_j) and a sample (x_i) has one atom per nonzero entry of P, up to S + n - 1.
We keep xi's support size fixed by replacing P with its barycentric projection
T(z_j) = sum_i P_ji x_i / w_j and answering with the atoms (1-t) z_j + t T(z_j) and
xi's weights. When xi and the sample have the same size and uniform weights the exact
plan is a permutation and this is the exact interpolant; the same holds for uniform
weights when S is a common multiple of both sample sizes (each atom of xi then goes
to one point). Otherwise it is an approximation that averages (natural for p = 2):
measured at n = 40 in 3-D, unequal sizes with S = max(n, m) plateau about 3% above
W, random non-uniform weights about 9%. With a support
size S smaller than the samples, xi can only approximate geodesic measures and the
bound plateaus above the exact value.

Pairing the two answers. The answers xi_mu, xi_nu are both carried by S atoms with
xi's weights, but atom j of one is not the optimal partner of atom j of the other, so
the server solves the exact OT between them (it holds both) and applies the same
barycentric reduction onto xi_mu's atoms. One code path serves both the in-process
simulation (`fedwad`) and a protocol over the network: only `Measure`s, `t` and
scalar distances cross the party boundary.

Privacy. FedWaD is NOT differentially private and gives no formal guarantee. The
server learns every interpolating measure and every W_p(xi, sample). Worse, it knows
xi and t, so it can invert an answer: T(z_j) = (answer_j - (1 - t) z_j) / t. That is
the barycentric projection of the party's sample onto xi; when S equals the sample
size with uniform weights the plan is a permutation and this IS the party's sample,
exactly, from a single round (see `tests/solvers/test_fedwad.py`). Smaller support
sizes reveal an S-point quantisation (cluster means) of the sample instead. Keeping t
private to a party does not fix this (the rays from z_j through the answers meet at
the data across rounds). Deploy only where the server is trusted not to look, or add
real protection (secure aggregation, noise) on top.

Usage:
    out = fedwad(x, y, config=FedWadConfig(rounds=100, seed=0))
    out.estimate, out.bound_history, out.best_round

Exact OT is POT's network simplex (`ot.emd`) on numpy float64 arrays; nothing here is
jitted (the work per round is a few LP solves, not array arithmetic).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import NamedTuple

import numpy as np
import ot
from scipy.spatial.distance import cdist

# The network simplex needs O(n^2) pivots in practice; POT's default cap (1e5) can stop
# short for a few hundred points, and a stopped plan is feasible but not optimal.
_EMD_MAX_ITERATIONS = 10_000_000


class Measure(NamedTuple):
    """A weighted point cloud: `points` (S, d) and `weights` (S,) summing to one."""

    points: np.ndarray
    weights: np.ndarray


class PartyAnswer(NamedTuple):
    """What a party sends to the server after one round; nothing else leaves it.

    points, weights: the measure at fraction t from xi towards the party's sample,
        carried by xi's support size (barycentric reduction) with xi's weights.
    distance: W_p(xi, party's sample) under the exact plan.
    optimal: False when the network simplex stopped before optimality; `distance` is
        then the cost of a feasible plan, still an upper bound of W_p.
    """

    points: np.ndarray
    weights: np.ndarray
    distance: float
    optimal: bool


@dataclasses.dataclass(frozen=True, kw_only=True)
class FedWadConfig:
    """Hyperparameters of a FedWaD run.

    support_size: number of atoms of xi. None: the larger of the two sample sizes
        (exact interpolants for equal-size uniform samples); in a protocol this means
        the parties tell the server their sample sizes.
    rounds: communication rounds (each costs one exact OT per party and one on the
        server).
    t: fraction along geodesics, in (0, 1) exclusive; None draws it uniformly each
        round (the default: a fixed t = 0.5 stalls at a few percent error).
    seed: seeds xi's initial points and the draws of t.
    p: the order of W_p, cost |x - y|^p, p >= 1.
    """

    support_size: int | None = None
    rounds: int = 100
    t: float | None = None
    seed: int = 0
    p: float = 2.0

    def __post_init__(self):
        if self.support_size is not None:
            _check_int("support_size", self.support_size, minimum=1)
        _check_int("rounds", self.rounds, minimum=1)
        _check_int("seed", self.seed, minimum=0)
        if self.t is not None:
            _check_fraction("t", self.t)
        if isinstance(self.p, bool) or not isinstance(self.p, numbers.Real):
            raise ValueError(f"p must be a real number >= 1, got {self.p!r}")
        if not (math.isfinite(self.p) and self.p >= 1):
            raise ValueError(f"p must be finite and >= 1, got {self.p!r}")


@dataclasses.dataclass(frozen=True)
class FedWadOutput:
    """The estimate and its per-round history.

    estimate: min over rounds of `bound_history`, an upper bound of W_p(mu, nu).
    bound_history: (rounds,) W_p(mu, xi_k) + W_p(xi_k, nu), xi_k the measure sent in
        round k (k = 0 is the random initial xi).
    distance_x_history, distance_y_history: (rounds,) the two terms of the bound.
    t_history: (rounds,) the fraction used in each round.
    best_round: index of the round that attains `estimate`.
    xi: the interpolating measure of `best_round` (near the geodesic from mu to nu).
    suboptimal_ot_calls: parties' exact-OT calls stopped before optimality (0
        expected); the bound stays valid, it is the cost of a feasible plan.
    config: the configuration used, with `support_size` resolved.
    """

    estimate: float
    bound_history: np.ndarray
    distance_x_history: np.ndarray
    distance_y_history: np.ndarray
    t_history: np.ndarray
    best_round: int
    xi: Measure
    suboptimal_ot_calls: int
    config: FedWadConfig

    @property
    def rounds(self) -> int:
        return int(self.bound_history.shape[0])


@dataclasses.dataclass(frozen=True)
class PairwiseFedWadOutput:
    """distances: (N, N) symmetric, zero diagonal, entry (i, j) the FedWaD estimate
    between parties i and j. pairs: the full output for each i < j."""

    distances: np.ndarray
    pairs: dict[tuple[int, int], FedWadOutput]


# --- the three protocol steps ------------------------------------------------------


def init_xi(
    dimension: int, support_size: int, seed: int = 0, *, loc=0.0, scale=1.0
) -> Measure:
    """The server's initial xi, drawn without any data: Gaussian N(loc, scale^2 I).

    The parties must share the dimension (and agree on a support size). `loc` and
    `scale` are public knobs (a scalar or a (dimension,) vector) the parties may agree
    on when their data is far from the unit ball; far-off starts only cost rounds.
    """
    _check_int("dimension", dimension, minimum=1)
    _check_int("support_size", support_size, minimum=1)
    _check_int("seed", seed, minimum=0)
    noise = np.random.default_rng(seed).standard_normal((support_size, dimension))
    points = np.asarray(loc, np.float64) + np.asarray(scale, np.float64) * noise
    return Measure(points, np.full(support_size, 1.0 / support_size))


def server_schedule(dimension: int, config: FedWadConfig) -> tuple[Measure, np.ndarray]:
    """The server's seeded choices for a whole run: the initial xi and the fraction t
    of every round, (rounds,). Needs a resolved `config.support_size`. A networked
    server calling this reproduces `fedwad`'s simulation number for number."""
    if config.support_size is None:
        raise ValueError("support_size must be set (not None) to schedule a run")
    # Independent streams: changing the t schedule must not change the initial xi.
    init_seed, t_seed = np.random.SeedSequence(config.seed).spawn(2)
    xi = init_xi(dimension, config.support_size, seed=int(init_seed.generate_state(1)[0]))
    if config.t is not None:
        return xi, np.full(config.rounds, float(config.t))
    t_rng = np.random.default_rng(t_seed)
    return xi, np.array([_draw_fraction(t_rng) for _ in range(config.rounds)])


def party_step(
    xi_points, xi_weights, own_points, own_weights, t: float, *, p: float = 2.0,
    party: str = "party",
) -> PartyAnswer:
    """One party's local computation for one round.

    Solves the exact OT between xi and the party's sample (cost |x - y|^p) and returns
    the measure at fraction t from xi towards the sample, reduced to xi's support
    (atoms (1 - t) z_j + t T(z_j), T the barycentric projection of the plan), with
    W_p(xi, sample). See the module docstring for what this reveals to the server.
    `party` only names the party in error messages.
    """
    _check_fraction("t", t)
    xi = _as_measure(xi_points, xi_weights, "xi")
    own = _as_measure(own_points, own_weights, party)
    _check_same_dimension(xi, "xi", own, party)
    return _interpolate(xi, own, t, p)


def server_step(answer_1, answer_2, t: float, *, p: float = 2.0) -> Measure:
    """The server's update: the measure at fraction t from `answer_1` to `answer_2`.

    The two answers have different atoms, so the server pairs them by the exact OT
    between them and keeps `answer_1`'s support (barycentric reduction), which keeps
    xi's support size fixed. Accepts `PartyAnswer`s or any (points, weights, ...)
    tuples.
    """
    _check_fraction("t", t)
    first = _as_measure(answer_1[0], answer_1[1], "answer_1")
    second = _as_measure(answer_2[0], answer_2[1], "answer_2")
    _check_same_dimension(first, "answer_1", second, "answer_2")
    moved = _interpolate(first, second, t, p)
    return Measure(moved.points, moved.weights)


# --- simulation: both samples in one process ----------------------------------------


def fedwad(x, y, a=None, b=None, config: FedWadConfig | None = None) -> FedWadOutput:
    """FedWaD between samples x (n, d) and y (m, d) with optional weights a, b
    (normalised to sum to one), simulated in-process with the protocol's own steps.
    `config` None means `FedWadConfig()`."""
    config = FedWadConfig() if config is None else config
    mu = _as_measure(x, a, "x (party 1)", point_field="x", weight_field="a")
    nu = _as_measure(y, b, "y (party 2)", point_field="y", weight_field="b")
    _check_same_dimension(mu, "x (party 1)", nu, "y (party 2)")
    support_size = config.support_size or max(len(mu.weights), len(nu.weights))
    config = dataclasses.replace(config, support_size=support_size)

    xi, ts = server_schedule(mu.points.shape[1], config)

    rounds = config.rounds
    dist_x, dist_y = np.empty(rounds), np.empty(rounds)
    best, best_xi, suboptimal = math.inf, xi, 0
    for k, t in enumerate(ts.tolist()):
        # The public steps themselves, validation included: the simulation computes
        # bit for bit what the networked protocol computes.
        answer_x = party_step(*xi, *mu, t, p=config.p, party="x (party 1)")
        answer_y = party_step(*xi, *nu, t, p=config.p, party="y (party 2)")
        dist_x[k], dist_y[k] = answer_x.distance, answer_y.distance
        bound = answer_x.distance + answer_y.distance
        if bound < best:
            best, best_xi = bound, xi
        suboptimal += (not answer_x.optimal) + (not answer_y.optimal)
        xi = server_step(answer_x, answer_y, t, p=config.p)

    bounds = dist_x + dist_y
    return FedWadOutput(
        estimate=float(bounds.min()),
        bound_history=bounds,
        distance_x_history=dist_x,
        distance_y_history=dist_y,
        t_history=ts,
        best_round=int(np.argmin(bounds)),
        xi=best_xi,
        suboptimal_ot_calls=suboptimal,
        config=config,
    )


def pairwise_fedwad(
    samples, config: FedWadConfig | None = None, weights=None
) -> PairwiseFedWadOutput:
    """FedWaD between every pair of N parties, pair by pair with the same steps.

    samples: a sequence of (n_i, d) arrays; weights: None or a sequence of None or
    (n_i,) arrays. Each pair (i, j) runs with its own seed derived from `config.seed`,
    so a pair's value does not depend on how many parties there are before it.
    """
    config = FedWadConfig() if config is None else config
    samples = list(samples)
    if len(samples) < 2:
        raise ValueError(f"samples must hold at least 2 parties, got {len(samples)}")
    weights = [None] * len(samples) if weights is None else list(weights)
    if len(weights) != len(samples):
        raise ValueError(
            f"weights must have one entry per party: {len(weights)} for {len(samples)}"
        )
    measures = [
        _as_measure(s, w, f"party {i}", point_field=f"samples[{i}]",
                    weight_field=f"weights[{i}]")
        for i, (s, w) in enumerate(zip(samples, weights))
    ]
    for i, measure in enumerate(measures[1:], start=1):
        _check_same_dimension(measures[0], "party 0", measure, f"party {i}")

    count = len(measures)
    distances = np.zeros((count, count))
    pairs = {}
    for i in range(count):
        for j in range(i + 1, count):
            pair_seed = int(np.random.SeedSequence((config.seed, i, j)).generate_state(1)[0])
            out = fedwad(
                measures[i].points, measures[j].points, measures[i].weights,
                measures[j].weights, dataclasses.replace(config, seed=pair_seed),
            )
            distances[i, j] = distances[j, i] = out.estimate
            pairs[(i, j)] = out
    return PairwiseFedWadOutput(distances, pairs)


# --- internals ----------------------------------------------------------------------


def _interpolate(source: Measure, target: Measure, t: float, p: float) -> PartyAnswer:
    """Exact OT from `source` to `target`, then the barycentric-reduced interpolant at
    fraction t, carried by `source`'s atoms and weights."""
    cost = _cost_matrix(source.points, target.points, p)
    plan, log = ot.emd(
        source.weights, target.weights, cost, numItermax=_EMD_MAX_ITERATIONS, log=True
    )
    # Zero-weight atoms of the source have empty rows; they stay where they are.
    mass = plan.sum(axis=1)
    safe = np.where(mass > 0, mass, 1.0)
    projection = np.where(
        (mass > 0)[:, None], plan @ target.points / safe[:, None], source.points
    )
    points = (1.0 - t) * source.points + t * projection
    transport_cost = max(float(np.sum(plan * cost)), 0.0)
    return PartyAnswer(
        points=points,
        weights=source.weights,
        distance=transport_cost ** (1.0 / p),
        optimal=int(log.get("result_code", 1)) == 1,
    )


def _cost_matrix(x: np.ndarray, y: np.ndarray, p: float) -> np.ndarray:
    # cdist sums squared differences directly: no cancellation for nearby points,
    # which the expanded |x|^2 + |y|^2 - 2 x.y form would suffer at 1e-4 accuracy.
    if p == 2:
        return cdist(x, y, "sqeuclidean")
    return cdist(x, y, "euclidean") ** p


def _draw_fraction(rng: np.random.Generator) -> float:
    # Uniform on (0, 1): t = 0 would return xi unchanged, and the low end is moved off
    # zero so the draw is never exactly 0 (t = 1 is already excluded by numpy).
    return float(rng.uniform(np.nextafter(0.0, 1.0), 1.0))


def _as_measure(
    points, weights, owner: str, *, point_field: str = "points",
    weight_field: str = "weights",
) -> Measure:
    """float64 (n, d) points and weights summing to one, or a ValueError that names
    the field and its owner."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2:
        raise ValueError(f"{point_field} of {owner} must be 2-D (n, d), got shape {points.shape}")
    if points.shape[0] == 0 or points.shape[1] == 0:
        raise ValueError(f"{point_field} of {owner} is empty (shape {points.shape})")
    if not np.all(np.isfinite(points)):
        raise ValueError(f"{point_field} of {owner} contains NaN or infinite values")
    n = points.shape[0]
    if weights is None:
        return Measure(points, np.full(n, 1.0 / n))
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (n,):
        raise ValueError(
            f"{weight_field} of {owner} must have shape ({n},), got {weights.shape}"
        )
    if not np.all(np.isfinite(weights)):
        raise ValueError(f"{weight_field} of {owner} contains NaN or infinite values")
    if np.any(weights < 0):
        raise ValueError(f"{weight_field} of {owner} has negative entries")
    total = weights.sum()
    if not total > 0:
        raise ValueError(f"{weight_field} of {owner} sums to zero")
    return Measure(points, weights / total)


def _check_same_dimension(first: Measure, first_name: str, second: Measure, second_name: str):
    d1, d2 = first.points.shape[1], second.points.shape[1]
    if d1 != d2:
        raise ValueError(
            f"dimension mismatch: {first_name} has dimension {d1}, {second_name} has {d2}"
        )


def _check_int(name: str, value, *, minimum: int):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")


def _check_fraction(name: str, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {value!r}")
