"""FedWaD against exact W_p computed with both samples in one place (POT's network
simplex), the geodesic identities of each protocol step, and input validation."""

import dataclasses

import numpy as np
import ot
import pytest

from monge.solvers.fedwad import (
    FedWadConfig,
    Measure,
    PartyAnswer,
    fedwad,
    init_xi,
    pairwise_fedwad,
    party_step,
    server_schedule,
    server_step,
)

from fit_checks import Fits, assert_checks, at_least, at_most


def exact_w(x, y, a=None, b=None, p=2.0):
    a = np.full(len(x), 1 / len(x)) if a is None else np.asarray(a) / np.sum(a)
    b = np.full(len(y), 1 / len(y)) if b is None else np.asarray(b) / np.sum(b)
    cost = ot.dist(x, y, metric="sqeuclidean") if p == 2 else ot.dist(x, y, "euclidean") ** p
    return float(ot.emd2(a, b, cost, numItermax=10_000_000)) ** (1 / p)


def uniform(n):
    return np.full(n, 1.0 / n)


# --- accuracy against exact OT ------------------------------------------------------


def estimate_checks(out, exact, excess):
    """FedWaD's estimate is an upper bound of W (the triangle inequality) within `excess`
    of it (relative)."""
    return [at_least("estimate / exact W - 1 (not below)", out.estimate / exact - 1, -1e-12),
            at_most("estimate / exact W - 1", out.estimate / exact - 1, excess)]


def high_dimension(d, seed=1):
    # The authors' code reaches 0.38% (d=10) and 0.32% (d=50) at this size.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, d))
    y = 0.5 * rng.standard_normal((200, d)) + 1.0
    out = fedwad(x, y, config=FedWadConfig(support_size=200, rounds=100, seed=seed))
    return out, estimate_checks(out, exact_w(x, y), 5e-3)


@pytest.mark.parametrize("d", [10, 50])
def test_matches_exact_w2_in_high_dimension(d):
    out, checks = high_dimension(d)
    assert out.rounds == 100 and out.config.support_size == 200
    assert_checks(checks)
    assert out.suboptimal_ot_calls == 0


def apart_in_2d(seed=0):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 2))
    y = rng.standard_normal((100, 2)) + 3.0
    return estimate_checks(fedwad(x, y, config=FedWadConfig(rounds=20, seed=seed)), exact_w(x, y), 1e-4)


def test_matches_exact_w2_in_2d_in_20_rounds():
    assert_checks(apart_in_2d())


def overlapping_in_2d(seed=3):
    # Samples from one distribution: the bound can sit on a plateau (a stable but
    # suboptimal coupling) for tens of rounds before a draw of t breaks it; measured
    # over 16 seeds, 20 rounds reach 1e-4 in about half the runs, 200 rounds in all.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 2))
    y = rng.standard_normal((100, 2))
    return estimate_checks(fedwad(x, y, config=FedWadConfig(rounds=200, seed=seed)), exact_w(x, y), 1e-4)


def test_overlapping_2d_samples_need_more_rounds_but_get_there():
    assert_checks(overlapping_in_2d())


def test_bound_never_increases_when_interpolants_are_exact(rng):
    # Equal sizes and uniform weights: every plan is a permutation, the reduced
    # interpolants are the exact McCann interpolants, and the triangle-inequality
    # argument makes the bound non-increasing round after round.
    x = rng.standard_normal((60, 3))
    y = rng.standard_normal((60, 3)) + 1.0
    out = fedwad(x, y, config=FedWadConfig(rounds=40, seed=0))
    assert np.all(np.diff(out.bound_history) <= 1e-12 * out.bound_history[0])
    np.testing.assert_array_equal(
        out.bound_history, out.distance_x_history + out.distance_y_history
    )
    assert out.estimate == out.bound_history[out.best_round] == out.bound_history.min()


CASES = ["fixed_t", "small_support", "unequal_sizes", "weights_with_zeros", "p1"]


def every_round(case, seed=2):
    n, m, d = 40, 40, 3
    a = b = None
    config = FedWadConfig(rounds=15, seed=seed)
    if case == "fixed_t":
        config = dataclasses.replace(config, t=0.3)
    if case == "small_support":
        config = dataclasses.replace(config, support_size=7)
    if case == "unequal_sizes":
        m = 25
    if case == "p1":
        config = dataclasses.replace(config, p=1.0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, d))
    y = rng.standard_normal((m, d)) + 0.7
    if case == "weights_with_zeros":
        a = rng.uniform(size=n)
        a[::5] = 0.0
        b = rng.uniform(size=m)
    exact = exact_w(x, y, a, b, p=config.p)
    out = fedwad(x, y, a, b, config)
    # Loose ceilings, a little above the measured plateaus (ratios 1.09, 1.59, 1.04,
    # 1.09, 1.002): the barycentric reduction is exact only for permutation plans,
    # a fixed t stalls, and 7 atoms cannot come closer to 40 points than their
    # quantisation error. They still catch a broken step.
    ceiling = {"fixed_t": 1.12, "small_support": 1.7, "unequal_sizes": 1.06,
               "weights_with_zeros": 1.12, "p1": 1.01}[case]
    checks = [at_least("every round's bound / exact W - 1", out.bound_history.min() / exact - 1, -1e-12),
              at_most("estimate / exact W - 1", out.estimate / exact - 1, ceiling - 1),
              at_most("estimate / first round's bound", out.estimate / out.bound_history[0], 1.0 - 1e-12)]
    return checks


@pytest.mark.parametrize("case", CASES)
def test_every_round_is_an_upper_bound(case):
    assert_checks(every_round(case))


def unequal_sizes(seed=0):
    # With S a multiple of both sizes and uniform weights, every plan sends each atom
    # of xi to one point, so the reduction is exact again (S = max(n, m): 3.3%).
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3))
    y = rng.standard_normal((25, 3)) + 0.7
    out = fedwad(x, y, config=FedWadConfig(support_size=200, rounds=60, seed=seed))
    return estimate_checks(out, exact_w(x, y), 2e-3)


def test_unequal_sizes_are_exact_with_a_common_multiple_support():
    assert_checks(unequal_sizes())


def test_identical_samples_give_zero(rng):
    x = rng.standard_normal((30, 2))
    out = fedwad(x, x, config=FedWadConfig(rounds=40))
    assert 0.0 <= out.estimate <= 1e-8


def drawn_and_fixed_t(seed=0):
    # Why drawing t is the default: a fixed t = 0.5 stalls at a few percent.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 10))
    y = 0.5 * rng.standard_normal((100, 10)) + 1.0
    exact = exact_w(x, y)
    drawn = fedwad(x, y, config=FedWadConfig(rounds=50, seed=seed))
    fixed = fedwad(x, y, config=FedWadConfig(rounds=50, seed=seed, t=0.5))
    checks = [at_most("drawn t: estimate / exact W - 1", drawn.estimate / exact - 1, 5e-3),
              at_least("t = 0.5: estimate / exact W - 1", fixed.estimate / exact - 1, 1e-2)]
    return drawn, fixed, checks


def test_drawn_t_beats_fixed_half():
    drawn, fixed, checks = drawn_and_fixed_t()
    assert_checks(checks)
    np.testing.assert_array_equal(fixed.t_history, 0.5)
    assert np.all((drawn.t_history > 0) & (drawn.t_history < 1))


def test_seed_determines_the_run(rng):
    x, y = rng.standard_normal((30, 2)), rng.standard_normal((30, 2)) + 1
    first = fedwad(x, y, config=FedWadConfig(rounds=5, seed=4))
    again = fedwad(x, y, config=FedWadConfig(rounds=5, seed=4))
    other = fedwad(x, y, config=FedWadConfig(rounds=5, seed=5))
    np.testing.assert_array_equal(first.bound_history, again.bound_history)
    assert not np.array_equal(first.t_history, other.t_history)


# --- the protocol steps -------------------------------------------------------------


def test_party_step_is_the_geodesic_point_at_t(rng):
    # Same size, uniform: W(xi, answer) = t W(xi, own) and W(answer, own) = (1-t) W.
    xi = init_xi(3, 50, seed=0)
    own = rng.standard_normal((50, 3)) + 2.0
    t = 0.3
    answer = party_step(xi.points, xi.weights, own, uniform(50), t)
    assert isinstance(answer, PartyAnswer) and answer.optimal
    w = exact_w(xi.points, own)
    np.testing.assert_allclose(answer.distance, w, rtol=1e-12)
    np.testing.assert_allclose(exact_w(xi.points, answer.points), t * w, rtol=1e-9)
    np.testing.assert_allclose(exact_w(answer.points, own), (1 - t) * w, rtol=1e-9)
    np.testing.assert_array_equal(answer.weights, xi.weights)
    points, weights, distance, optimal = answer  # a plain tuple on the wire


def test_server_step_is_the_geodesic_point_at_t(rng):
    first = Measure(rng.standard_normal((40, 2)), uniform(40))
    second = Measure(rng.standard_normal((40, 2)) + 1.0, uniform(40))
    t = 0.7
    new = server_step(first, second, t)
    w = exact_w(first.points, second.points)
    np.testing.assert_allclose(exact_w(first.points, new.points), t * w, rtol=1e-9)
    np.testing.assert_allclose(exact_w(new.points, second.points), (1 - t) * w, rtol=1e-9)
    assert new.points.shape == (40, 2)


@pytest.mark.parametrize("support_size", [80, 13])
@pytest.mark.parametrize("t", [0.1, 0.5, 0.9])
def test_party_step_returns_none_of_its_own_points(rng, support_size, t):
    own = rng.standard_normal((80, 4))
    xi = init_xi(4, support_size, seed=1)
    answer = party_step(xi.points, xi.weights, own, None, t)
    assert answer.points.shape == (support_size, 4)
    gaps = np.sqrt(ot.dist(answer.points, own))
    assert gaps.min() > 1e-9


def test_server_can_invert_an_answer_documented_leak(rng):
    # Not a guarantee but the opposite: the server knows xi and t, so it recovers the
    # barycentric projection of the sample onto xi; at support size n with uniform
    # weights that is the sample itself. The docstrings say FedWaD is not private.
    own = rng.standard_normal((50, 3))
    xi = init_xi(3, 50, seed=0)
    t = 0.4
    answer = party_step(xi.points, xi.weights, own, None, t)
    recovered = (answer.points - (1 - t) * xi.points) / t
    order = np.lexsort(own.T)
    np.testing.assert_allclose(
        recovered[np.lexsort(recovered.T)], own[order], atol=1e-9
    )


def test_simulation_is_the_protocol_steps(rng):
    # fedwad must be exactly the composition of init_xi, party_step and server_step,
    # so the gRPC protocol built on the steps computes the same numbers.
    x, y = rng.standard_normal((20, 2)), rng.standard_normal((20, 2)) + 1
    config = FedWadConfig(rounds=4, seed=0, t=0.35)
    out = fedwad(x, y, config=config)
    xi, ts = server_schedule(2, dataclasses.replace(config, support_size=20))
    np.testing.assert_array_equal(ts, 0.35)
    for k, t in enumerate(ts):
        ax = party_step(*xi, x, None, t, party="party 1")
        ay = party_step(*xi, y, None, t, party="party 2")
        assert ax.distance + ay.distance == out.bound_history[k]
        xi = server_step(ax, ay, t)
    # Drawn t: the schedule is the one the simulation used.
    drawn = fedwad(x, y, config=FedWadConfig(rounds=4, seed=7))
    _, ts = server_schedule(2, drawn.config)
    np.testing.assert_array_equal(ts, drawn.t_history)
    with pytest.raises(ValueError, match="support_size"):
        server_schedule(2, FedWadConfig())


def test_init_xi_needs_only_the_dimension():
    xi = init_xi(5, 12, seed=3, loc=np.arange(5.0), scale=2.0)
    assert xi.points.shape == (12, 5) and np.isclose(xi.weights.sum(), 1.0)
    np.testing.assert_array_equal(xi.points, init_xi(5, 12, seed=3, loc=np.arange(5.0), scale=2.0).points)


# --- several parties ----------------------------------------------------------------


def test_pairwise_matrix(rng):
    samples = [rng.standard_normal((30, 2)) + shift for shift in (0.0, 1.0, 3.0)]
    out = pairwise_fedwad(samples, FedWadConfig(rounds=40))
    d = out.distances
    assert d.shape == (3, 3)
    np.testing.assert_array_equal(d, d.T)
    np.testing.assert_array_equal(np.diag(d), 0.0)
    for (i, j), pair in out.pairs.items():
        assert d[i, j] == pair.estimate
        exact = exact_w(samples[i], samples[j])
        assert exact * (1 - 1e-12) <= d[i, j] <= exact * (1 + 1e-3)


# --- validation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value",
    [
        ("support_size", 0),
        ("support_size", 2.5),
        ("rounds", 0),
        ("rounds", True),
        ("t", 0.0),
        ("t", 1.0),
        ("t", 1.5),
        ("t", float("nan")),
        ("seed", -1),
        ("p", 0.5),
        ("p", float("inf")),
        ("p", "2"),
    ],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        FedWadConfig(**{field: value})


def test_config_is_frozen_and_keyword_only():
    config = FedWadConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.rounds = 3
    with pytest.raises(TypeError):
        FedWadConfig(10)


def test_bad_inputs_name_the_field_and_party(rng):
    x, y = rng.standard_normal((10, 2)), rng.standard_normal((12, 2))
    config = FedWadConfig(rounds=1)
    with pytest.raises(ValueError, match=r"dimension mismatch.*party 1.*dimension 2.*party 2.*3"):
        fedwad(x, rng.standard_normal((12, 3)), config=config)
    with pytest.raises(ValueError, match=r"x of x \(party 1\) is empty"):
        fedwad(np.zeros((0, 2)), y, config=config)
    bad = y.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"y of y \(party 2\) contains NaN"):
        fedwad(x, bad, config=config)
    with pytest.raises(ValueError, match=r"a of x \(party 1\) must have shape \(10,\)"):
        fedwad(x, y, np.ones(9), config=config)
    with pytest.raises(ValueError, match=r"b of y \(party 2\) has negative"):
        fedwad(x, y, None, -np.ones(12), config=config)
    with pytest.raises(ValueError, match=r"b of y \(party 2\) contains NaN"):
        fedwad(x, y, None, np.full(12, np.nan), config=config)
    with pytest.raises(ValueError, match=r"a of x \(party 1\) sums to zero"):
        fedwad(x, y, np.zeros(10), config=config)
    with pytest.raises(ValueError, match=r"x of x \(party 1\) must be 2-D"):
        fedwad(np.ones(10), y, config=config)


def test_steps_validate_their_inputs(rng):
    xi = init_xi(2, 5)
    own = rng.standard_normal((8, 3))
    with pytest.raises(ValueError, match=r"xi has dimension 2, hospital B has 3"):
        party_step(*xi, own, None, 0.5, party="hospital B")
    with pytest.raises(ValueError, match="t must lie strictly between 0 and 1"):
        party_step(*xi, own[:, :2], None, 1.0)
    with pytest.raises(ValueError, match="answer_2"):
        server_step(xi, (np.full((5, 2), np.nan), xi.weights), 0.5)
    with pytest.raises(ValueError, match="dimension"):
        init_xi(0, 5)


def test_pairwise_validates_parties(rng):
    samples = [rng.standard_normal((5, 2)), rng.standard_normal((5, 2)), rng.standard_normal((5, 4))]
    with pytest.raises(ValueError, match="party 2"):
        pairwise_fedwad(samples)
    with pytest.raises(ValueError, match="at least 2"):
        pairwise_fedwad(samples[:1])
    with pytest.raises(ValueError, match=r"samples\[1\] of party 1 contains NaN"):
        pairwise_fedwad([samples[0], np.full((5, 2), np.nan)])


FITS: Fits = {
    "fedwad d=10, 100 rounds": lambda seed: high_dimension(10, seed=1 + seed)[1],
    "fedwad d=50, 100 rounds": lambda seed: high_dimension(50, seed=1 + seed)[1],
    "fedwad 2-D apart, 20 rounds": lambda seed: apart_in_2d(seed),
    "fedwad 2-D overlapping, 200 rounds": lambda seed: overlapping_in_2d(3 + seed),
    "fedwad unequal sizes, common-multiple support": lambda seed: unequal_sizes(seed),
    "fedwad drawn t against t = 0.5": lambda seed: drawn_and_fixed_t(seed)[2],
    **{f"fedwad 15 rounds, {case}": (lambda seed, case=case: every_round(case, seed=2 + seed)) for case in CASES},
}
