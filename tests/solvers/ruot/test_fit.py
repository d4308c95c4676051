"""Var-RUOT: exact answers on tiny problems (translation, pure growth), the optimality
structure (u = grad lambda, HJB residual falling), export round trip and bad input.

Fits are shared through module fixtures (one compile each); configurations are tiny so
that each test stays within seconds on a shared 2-core CPU."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from monge.solvers import ruot
from monge.solvers.ruot import (
    NetworkConfig,
    NoGrowth,
    OptimizerConfig,
    PaperGrowth,
    QuadraticGrowth,
    RuotConfig,
    RuotModel,
    Snapshot,
)
from monge.solvers.ruot.model import potential

from fit_checks import Fits, assert_checks, at_least, at_most, within

SHIFT = np.array([1.0, 0.5])
TINY = dict(network=NetworkConfig(width=16, residual_blocks=0), particles=48, report_every=50,
            optimizer=OptimizerConfig(learning_rate=1e-2, weight_decay=0.0))


def cloud(n=48, seed=0):
    return 0.3 * np.random.default_rng(seed).standard_normal((n, 2))


def translation_config(**overrides):
    settings = dict(TINY, sigma=0.0, growth=NoGrowth(), steps=200, gamma_hjb=0.0625, gamma_action=0.005)
    settings.update(overrides)
    return RuotConfig(**settings)


def fit_translation(seed=0):
    x0 = cloud()
    reports = []
    model = ruot.fit([(0.0, x0), (1.0, x0 + SHIFT)], translation_config(seed=seed),
                     progress=lambda step, losses: reports.append((step, losses)))
    return model, reports


def translation_checks(model):
    end = ruot.predict(model, 1.0)
    hjb = model.history[:, ruot.LOSS_NAMES.index("hjb")]
    return [
        within("action / (|shift|^2 / 2) - 1", ruot.path_action(model), 0.5 * float(SHIFT @ SHIFT), 0.05,
               relative=True),
        at_most("|mean at t=1 - mean at t=0 - shift|",
                np.abs(end.points.mean(axis=0) - model.initial_points.mean(axis=0) - SHIFT).max(), 0.05),
        at_most("hjb last report / first", hjb[-1] / hjb[0], 0.1),
    ]


@pytest.fixture(scope="module")
def translation():
    return fit_translation()


def geodesic_growth(t):
    """The population that only grows (the same cloud at t = 0 and t = 1, mass 1 -> 2)
    has, with quadratic psi and any alpha, the least action that moves nothing and grows
    every cell alike along the Fisher-Rao geodesic, sqrt(M(t)) linear in t: the rate
    g(t) = 2 r / (1 + r t), r = sqrt(2) - 1, falls from 0.83 to 0.59. (A constant rate
    ln 2 reaches the mass too, but breaks the HJB equation, by which lambda = alpha g
    falls as d lambda / dt = -lambda^2 / (2 alpha).)"""
    r = np.sqrt(2.0) - 1.0
    return 2.0 * r / (1.0 + r * t)


def fit_growth_only(seed=0):
    x0 = cloud()
    # Every setting that decides the answer is spelled out rather than inherited from
    # RuotConfig's defaults. Width 32 with a residual block: the width-16 network without
    # one (TINY's) cannot follow lambda's fall in time, pays the HJB residual with
    # spurious |grad lambda|^2 instead (HJB term 0.1-0.2, mean speed 0.13-0.2 at t = 0
    # after 400-1000 steps), against 0.0005 and 0.03 here. The action penalty is what
    # stops particles from shuffling inside the cloud (any rearrangement of the same
    # cloud matches it equally well); gamma_mass 10 makes the mass, not the shape, the
    # thing to fit.
    config = RuotConfig(
        network=NetworkConfig(width=32, residual_blocks=1, readout_scale=0.1), particles=48, steps=400,
        report_every=50, sigma=0.0, dt=0.1, alpha=2.0, growth=QuadraticGrowth(),
        gamma_hjb=0.0625, gamma_action=0.25, gamma_mass=10.0, reconstruction=ruot.EnergyDistance(),
        optimizer=OptimizerConfig(learning_rate=1e-2, weight_decay=0.0,
                                  schedule=ruot.WarmupCosineSchedule(warmup=0.05, final=0.02)), seed=seed)
    return ruot.fit([Snapshot(0.0, x0, 100.0), Snapshot(1.0, x0, 200.0)], config)


def growth_only_checks(model):
    x0 = model.initial_points
    spread = float(x0.std())  # the cloud's per-coordinate standard deviation, 0.3
    path = ruot.trajectories(model, np.linspace(0.0, 1.0, 5))
    # Nothing moves: the speed inside the interval and each cell's displacement over it
    # are small against the cloud's spread, the scale on which a move would change the fit.
    speeds = [np.linalg.norm(ruot.velocity_at(model, path.points[i], path.times[i]), axis=1).mean()
              for i in (1, 2, 3)]
    checks = [
        within("mass at t=1 / 2 - 1", path.mass[-1], 2.0, 0.02, relative=True),
        at_least("smallest mass increment", np.diff(path.mass).min(), 0.0),
        at_most("largest mean speed / spread", max(speeds) / spread, 0.1),
        at_most("mean displacement / spread",
                np.linalg.norm(path.points[-1] - path.points[0], axis=1).mean() / spread, 0.05),
    ]
    # Every cell grows alike, at the geodesic's falling rate.
    for t in (0.0, 0.5, 1.0):
        g = ruot.growth_at(model, x0, t)
        checks += [at_most(f"growth std / mean at t={t}", g.std() / g.mean(), 0.02),
                   within(f"growth / geodesic rate - 1 at t={t}", g.mean(), geodesic_growth(t), 0.06,
                          relative=True)]
    return checks


@pytest.fixture(scope="module")
def growth_only():
    return fit_growth_only()


def test_translation_action_is_half_squared_shift(translation):
    model, _ = translation
    assert model.settings.status == "completed"
    assert_checks(translation_checks(model)[:2])
    assert ruot.predict(model, 1.0).mass == pytest.approx(1.0, abs=1e-6)  # no growth: weights stay 1


def test_progress_reports_every_block_and_hjb_residual_falls(translation):
    model, reports = translation
    assert [step for step, _ in reports] == [50, 100, 150, 200]
    assert set(reports[0][1]) == set(ruot.LOSS_NAMES)
    assert_checks(translation_checks(model)[2:])


def test_velocity_is_grad_of_lambda(translation):
    model, _ = translation
    x = cloud(7, seed=1) + 0.5
    t = np.linspace(0.0, 1.0, 7)
    blocks = model.settings.residual_blocks
    expected = jax.vmap(jax.grad(lambda xi, ti: potential(model.params, model.norm, xi, ti, blocks)))(
        jnp.asarray(x, jnp.float32), jnp.asarray(t, jnp.float32))
    np.testing.assert_allclose(ruot.velocity_at(model, x, t), expected, rtol=1e-5, atol=1e-6)
    # No growth strategy: g = 0 whatever lambda is.
    np.testing.assert_array_equal(ruot.growth_at(model, x, t), 0.0)


def test_population_that_only_grows(growth_only):
    assert ruot.trajectories(growth_only, [0.0]).mass[0] == pytest.approx(1.0, rel=1e-6)
    assert_checks(growth_only_checks(growth_only))


def test_export_round_trip_gives_identical_queries(translation):
    model, _ = translation
    arrays = model.to_arrays()
    assert all(isinstance(v, np.ndarray) for v in arrays.values())
    settings = json.loads(json.dumps(model.settings_dict()))
    loaded = RuotModel.from_arrays(dict(arrays), settings)
    x = cloud(5, seed=2)
    np.testing.assert_array_equal(ruot.velocity_at(loaded, x, 0.3), ruot.velocity_at(model, x, 0.3))
    np.testing.assert_array_equal(ruot.potential_at(loaded, x, 0.3), ruot.potential_at(model, x, 0.3))
    a, b = ruot.trajectories(model, [0.5, 1.0], seed=3), ruot.trajectories(loaded, [0.5, 1.0], seed=3)
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.weights, b.weights)
    assert a.action == b.action
    bad = dict(arrays, **{"params/in.w": arrays["params/in.w"][:, :3]})
    with pytest.raises(ValueError, match="params/in.w"):
        RuotModel.from_arrays(bad, settings)
    with pytest.raises(ValueError, match="growth.name"):
        RuotModel.from_arrays(arrays, dict(settings, growth={"name": "cubic"}))


def test_progress_returning_false_cancels(translation):
    x0 = cloud()
    calls = []
    model = ruot.fit([(0.0, x0), (1.0, x0 + SHIFT)], translation_config(),
                     progress=lambda step, losses: calls.append(step) or False)
    assert calls == [50]
    assert model.settings.status == "cancelled" and model.settings.steps_trained == 50
    assert model.history.shape == (1, len(ruot.LOSS_NAMES))


@pytest.mark.parametrize(
    "snapshots, field",
    [
        ([(0.0, np.zeros((3, 2)))], "snapshots"),
        ([(0.0, np.zeros((3, 2))), (0.0, np.zeros((3, 2)))], r"snapshots\[1\].time"),
        ([(0.0, np.zeros((3, 2))), (1.0, np.zeros((3, 2))), (2.0, np.zeros((3, 3)))], r"snapshots\[2\].points"),
        ([(0.0, np.zeros((3, 2))), (1.0, np.zeros((0, 2)))], r"snapshots\[1\].points"),
        ([(0.0, np.zeros((3, 2))), (1.0, np.zeros((3, 2)), -4.0)], r"snapshots\[1\].mass"),
        ([(0.0, np.zeros((3, 2))), (1.0, np.full((3, 2), np.nan))], r"snapshots\[1\].points"),
        ([(0.0, np.zeros(3)), (1.0, np.zeros((3, 2)))], r"snapshots\[0\].points"),
    ],
)
def test_bad_snapshots_name_the_field(snapshots, field):
    with pytest.raises(ValueError, match=field):
        ruot.fit(snapshots, RuotConfig(steps=1))


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: RuotConfig(sigma=-0.1), "sigma"),
        (lambda: RuotConfig(dt=0.0), "dt"),
        (lambda: RuotConfig(steps=0), "steps"),
        (lambda: RuotConfig(particles=1.5), "particles"),
        (lambda: RuotConfig(growth="quadratic"), "growth"),
        (lambda: NetworkConfig(width=0), "network.width"),
        (lambda: OptimizerConfig(learning_rate=-1.0), "optimizer.learning_rate"),
        (lambda: PaperGrowth(linear_below=0.0), "growth.linear_below"),
    ],
)
def test_bad_config_names_the_field(make, field):
    with pytest.raises(ValueError, match=field):
        make()


def test_energy_distance_is_exact_for_the_whole_population_and_unbiased_for_batches():
    rng = np.random.default_rng(0)
    y = jnp.asarray(rng.standard_normal((600, 2)), jnp.float32)
    b = jnp.full((600,), 1.0 / 600, jnp.float32)
    energy = ruot.EnergyDistance()
    const = energy.snapshot_term(y, b, 0.0)
    divergence = lambda x, population: float(energy.particle_terms(
        x, jnp.full((x.shape[0],), 1.0 / x.shape[0], jnp.float32), y, b, 0.0, population=population) - const)
    # All 600 cells as particles: the empirical measures agree and D is 0.
    assert abs(divergence(y, 600)) < 1e-5
    # Batches of 32 drawn without replacement from those cells: 0 on average; shifted: not.
    batches = [y[rng.choice(600, 32, replace=False)] for _ in range(300)]
    unbiased = np.mean([divergence(x, 600) for x in batches])
    assert abs(unbiased) < 0.005 < 0.05 < np.mean([divergence(x + 0.3, 600) for x in batches[:50]])
    # Uncorrected (taken for the whole population) the same batches sit ~0.05 off.
    assert np.mean([divergence(x, 32) for x in batches]) > 4 * max(abs(unbiased), 0.005)


def test_warmup_cosine_schedule():
    schedule = ruot.WarmupCosineSchedule(warmup=0.1, final=0.02)
    factors = [float(schedule.factor(jnp.float32(step), 100)) for step in (0, 9, 10, 99, 150)]
    np.testing.assert_allclose(factors, [0.1, 1.0, 1.0, 0.02, 0.02], atol=1e-6)
    assert 0.45 < float(schedule.factor(jnp.float32(55), 100)) < 0.55
    assert float(ruot.ConstantSchedule().factor(jnp.float32(7), 100)) == 1.0
    with pytest.raises(ValueError, match="optimizer.schedule.warmup"):
        ruot.WarmupCosineSchedule(warmup=1.0)


def test_paper_growth_rate_solves_the_optimality_condition():
    growth, alpha = PaperGrowth(), 7.0
    lam = jnp.asarray([-3.0, -0.5, 0.2, 1.0, 4.0], jnp.float64)
    g = growth.rate(lam, alpha)
    # alpha psi'(g) = alpha (2/15) sign(g) |g|^(-13/15) must give back lambda.
    np.testing.assert_allclose(alpha * 2 / 15 * jnp.sign(g) * jnp.abs(g) ** (-13 / 15), lam, rtol=1e-10)
    # Linear (and continuous) inside |lambda| <= 0.1.
    inside = growth.rate(jnp.asarray([0.05, 0.1, -0.1]), alpha)
    edge = (2 * alpha / 1.5) ** (15 / 13)
    np.testing.assert_allclose(inside, [0.5 * edge, edge, -edge], rtol=1e-6)
    np.testing.assert_allclose(QuadraticGrowth().rate(lam, 2.0), lam / 2.0)


def decay_geodesic_growth(t):
    """The Fisher-Rao geodesic from mass 2 at t = 1 down to 1 at t = 2: sqrt(M) linear,
    g(t) = 2 s / (sqrt(2) + s (t - 1)), s = 1 - sqrt(2); -0.59 at t = 1."""
    s = 1.0 - np.sqrt(2.0)
    return 2.0 * s / (np.sqrt(2.0) + s * (t - 1.0))


def fit_up_and_down(seed=0):
    """Same cloud, mass 1 -> 2 -> 1: growth then decay, which a lambda without jumps
    cannot follow while its HJB residual vanishes (the mass would be convex in time)."""
    x0 = cloud()
    # The growth-only fit's settings, with jumps and two changes that make it robust.
    # Over 20 seeds (float64 on and off) none fails; with TINY's network at readout scale 1
    # and 300 steps, 5 of 10 seeds stopped at a mass of 1.2-1.7 at t = 1. The failures are
    # a blow-up early in training (HJB term 200-1500 by step 50, particles thrown about,
    # action 10-24) that the fit does not recover from: a 20% warm-up (not 5%) keeps the
    # first steps small until lambda has its sign, and gamma_action 0.5 (not 0.25) keeps
    # the particles from being thrown. 600 steps: at 400 two of ten seeds still fail.
    config = RuotConfig(
        network=NetworkConfig(width=32, residual_blocks=1, readout_scale=0.1, snapshot_jumps=True), particles=48,
        steps=600, report_every=50, sigma=0.0, dt=0.1, alpha=2.0, growth=QuadraticGrowth(),
        gamma_hjb=0.0625, gamma_action=0.5, gamma_mass=10.0, reconstruction=ruot.EnergyDistance(),
        optimizer=OptimizerConfig(learning_rate=1e-2, weight_decay=0.0,
                                  schedule=ruot.WarmupCosineSchedule(warmup=0.2, final=0.02)), seed=seed)
    return ruot.fit([Snapshot(0.0, x0, 100.0), Snapshot(1.0, x0, 200.0), Snapshot(2.0, x0, 100.0)], config)


def up_and_down_checks(model):
    mass = ruot.trajectories(model).mass
    x = cloud(8, seed=4)
    before, after = ruot.growth_at(model, x, 0.99), ruot.growth_at(model, x, 1.0)
    return [
        at_most("max |mass - [1, 2, 1]|", np.abs(mass - [1.0, 2.0, 1.0]).max(), 0.15),
        # Between the snapshots lambda is smooth; at t = 1 the growth rate changes sign,
        at_least("smallest growth at t=0.99", before.min(), 0.0),
        at_most("largest growth at t=1", after.max(), 0.0),
        # from the growth geodesic's rate to the decay geodesic's.
        within("growth / geodesic rate - 1 at t=0.99", before.mean(), geodesic_growth(0.99), 0.25, relative=True),
        within("growth / geodesic rate - 1 at t=1", after.mean(), decay_geodesic_growth(1.0), 0.25, relative=True),
    ]


@pytest.fixture(scope="module")
def up_and_down():
    return fit_up_and_down()


def test_snapshot_jumps_let_the_mass_go_up_then_down(up_and_down):
    model = up_and_down
    assert model.params["in.w"].shape == (2 + 1 + 1, 32)  # x, t and one jump (t = 1)
    np.testing.assert_array_equal(np.asarray(model.norm.jumps), [1.0])
    assert_checks(up_and_down_checks(model))
    x = cloud(8, seed=4)
    # Query times off the snapshots simulate through t = 1 on the grid.
    a = ruot.trajectories(model, [0.5, 2.0], seed=1)
    b = ruot.trajectories(model, [0.5, 1.0, 2.0], seed=1)
    np.testing.assert_allclose(a.mass, b.mass[[0, 2]], rtol=1e-5)
    loaded = RuotModel.from_arrays(model.to_arrays(), json.loads(json.dumps(model.settings_dict())))
    np.testing.assert_array_equal(np.asarray(loaded.norm.jumps), [1.0])
    np.testing.assert_array_equal(ruot.potential_at(loaded, x, 1.0), ruot.potential_at(model, x, 1.0))


def test_should_stop_is_heard_within_a_step():
    # Asked before every step (the steps then run one compiled step at a time), so a
    # stop does not wait for the block (here 60 steps) to end.
    x0 = cloud()
    asked = []

    def should_stop():
        asked.append(1)
        return len(asked) > 25

    config = RuotConfig(**dict(TINY, steps=120, report_every=60))
    model = ruot.fit([Snapshot(0.0, x0), Snapshot(1.0, x0 + SHIFT)], config, should_stop=should_stop)
    assert model.settings.status == "cancelled"
    assert model.settings.steps_trained == 25
    assert model.history.shape == (1, len(ruot.LOSS_NAMES)) and np.all(np.isfinite(model.history))


FITS: Fits = {
    "ruot translation": lambda seed: translation_checks(fit_translation(seed)[0]),
    "ruot growth only": lambda seed: growth_only_checks(fit_growth_only(seed)),
    "ruot up and down (snapshot jumps)": lambda seed: up_and_down_checks(fit_up_and_down(seed)),
}
