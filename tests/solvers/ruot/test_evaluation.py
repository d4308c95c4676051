"""The held-out check's references against closed forms and POT."""

import numpy as np
import ot
import pytest

from monge.solvers.ruot import mccann_interpolation
from monge.solvers.ruot.evaluation import noise_floor, w1


def test_w1_of_a_translate_is_the_shift_and_matches_pot():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2))
    shift = np.array([0.3, -0.4])
    assert w1(x, x + shift) == pytest.approx(0.5, rel=1e-9)  # W1(mu, mu + c) = |c|
    y, b = rng.normal(size=(40, 2)), rng.random(40)
    expected = ot.emd2(np.full(60, 1 / 60), b / b.sum(), ot.dist(x, y, metric="euclidean"))
    assert w1(x, y, None, b) == pytest.approx(expected, rel=1e-9)


def test_mccann_interpolation_of_a_translate_moves_every_point_halfway():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 2))
    points, weights = mccann_interpolation(x, x + np.array([2.0, 0.0]), 0.25)
    # The W2 plan between a cloud and its translate is the identity.
    order = np.lexsort(points.T[::-1])
    np.testing.assert_allclose(points[order], (x + np.array([0.5, 0.0]))[np.lexsort(x.T[::-1])], atol=1e-12)
    np.testing.assert_allclose(weights, np.full(30, 1 / 30))


def test_mccann_interpolation_keeps_the_plan_mass_where_clouds_differ_in_size():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(20, 2)), rng.normal(size=(35, 2)) + 1.0
    points, weights = mccann_interpolation(x, y, 0.5)
    assert weights.sum() == pytest.approx(1.0) and len(points) == len(weights) <= 20 + 35 - 1
    plan = ot.emd(np.full(20, 1 / 20), np.full(35, 1 / 35), ot.dist(x, y))
    rows, cols = np.nonzero(plan > 1e-15)
    expected_mean = (plan[rows, cols][:, None] * (0.5 * x[rows] + 0.5 * y[cols])).sum(0)
    np.testing.assert_allclose((weights[:, None] * points).sum(0), expected_mean, atol=1e-12)


def test_noise_floor_is_w1_between_the_seeded_halves():
    x = np.random.default_rng(3).normal(size=(51, 2))
    order = np.random.default_rng(7).permutation(51)
    expected = ot.emd2(np.full(25, 1 / 25), np.full(25, 1 / 25),
                       ot.dist(x[order[:25]], x[order[25:50]], metric="euclidean"))
    assert noise_floor(x, seed=7) == pytest.approx(expected, rel=1e-9)
    assert noise_floor(x, seed=7) > 0
