"""Probability-flow samplers: convergence orders (exact W2 on Gaussian targets), budgets,
determinism and input validation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from monge.solvers.pfode import (
    Diffrax,
    Dopri5,
    DPMSolverPlusPlus,
    EDMSchedule,
    Euler,
    ExponentialEuler,
    GaussianMixture,
    Heun,
    KarrasTimeGrid,
    LogSNRTimeGrid,
    MarginalPrior,
    SampleRun,
    VESchedule,
    VPSchedule,
    sample,
)
from monge.solvers.pfode import flow
from monge.solvers.status import Status
from monge.solvers.pfode.metrics import affine_pushforward, gaussian_w2

MEAN = np.array([1.0, -0.5])
COV = np.array([[0.6, 0.25], [0.25, 0.3]])


def _target():
    return GaussianMixture.gaussian(MEAN, COV)


def _exact_error(source, schedule, sampler, steps, grid, t_start, t_end):
    """Exact W2 between the sampler's output law and the true law at t_end, starting
    from the true law at t_start: only discretisation error remains."""
    prior_mean, prior_cov = (np.asarray(a) for a in source.marginal_mean_cov(t_start, schedule))
    mean_end, cov_end = (np.asarray(a) for a in source.marginal_mean_cov(t_end, schedule))

    def run(points):
        return sample(
            source, schedule, sampler, num_samples=points.shape[0], key=jax.random.key(0),
            steps=steps, grid=grid, t_start=t_start, t_end=t_end, x_init=points, dtype=jnp.float64,
        ).samples

    mean, cov = affine_pushforward(run, prior_mean, prior_cov)
    return gaussian_w2(mean, cov, mean_end, cov_end)


def _slope(steps, errors):
    return -np.polyfit(np.log(steps), np.log(errors), 1)[0]


CASES = [
    ("euler", Euler(), 1),
    ("ddim", ExponentialEuler(), 1),
    ("heun", Heun(), 2),
    ("dpm2", DPMSolverPlusPlus(2), 2),
    ("dpm3", DPMSolverPlusPlus(3), 3),
]


@pytest.mark.parametrize("name,sampler,order", CASES, ids=[c[0] for c in CASES])
def test_convergence_order_vp(name, sampler, order):
    steps = [12, 24, 48]
    errors = [
        _exact_error(_target(), VPSchedule(), sampler, n, LogSNRTimeGrid(), 1.0, 1e-3) for n in steps
    ]
    slope = _slope(steps, errors)
    # A wrong coefficient drops an order; allow a little pre-asymptotic slack, no more.
    assert order - 0.2 <= slope <= order + 1.2, (errors, slope)
    assert errors[-1] < errors[0]


@pytest.mark.parametrize(
    "schedule,grid,t0,t1",
    [(VESchedule(sigma_min=0.01, sigma_max=20.0), None, 1.0, 0.0), (EDMSchedule(), KarrasTimeGrid(), 80.0, 0.002)],
    ids=["ve", "edm"],
)
@pytest.mark.parametrize("name,sampler,order", [CASES[2], CASES[4]], ids=["heun", "dpm3"])
def test_convergence_order_other_schedules(schedule, grid, t0, t1, name, sampler, order):
    steps = [16, 32, 64]
    errors = [_exact_error(_target(), schedule, sampler, n, grid, t0, t1) for n in steps]
    assert _slope(steps, errors) >= order - 0.3, errors


def test_dopri5_meets_tolerance_and_counts_evaluations():
    source, schedule = _target(), VPSchedule()
    err_loose = _exact_error(source, schedule, Dopri5(rtol=1e-4, atol=1e-4), 4, None, 1.0, 1e-3)
    err_tight = _exact_error(source, schedule, Dopri5(rtol=1e-8, atol=1e-8), 4, None, 1.0, 1e-3)
    assert err_tight < 1e-5 and err_tight < err_loose
    out = sample(source, schedule, Dopri5(), num_samples=8, key=jax.random.key(1), steps=4, dtype=jnp.float64)
    assert out.status == Status.CONVERGED
    assert (int(out.nfe) - 1) % 6 == 0 and int(out.nfe) > 6


def test_dopri5_lands_on_zero_noise_on_the_edm_grid():
    """EDM's default grid ends at sigma = 0, where the velocity is undefined: Dopri5 stops
    at sigma_min and takes the exact-for-constant-D step onto the data (one evaluation)."""
    source = _target()
    err = _exact_error(source, EDMSchedule(), Dopri5(rtol=1e-7, atol=1e-7), 18, None, 80.0, 0.0)
    assert err < 1e-4, err
    out = sample(source, EDMSchedule(), Dopri5(), num_samples=8, key=jax.random.key(1), steps=18)
    assert out.status == Status.CONVERGED and float(out.times[-1]) == 0.0
    assert (int(out.nfe) - 2) % 6 == 0 and int(out.nfe) < 400


def test_dopri5_is_held_to_an_nfe_budget():
    source = _target()
    kw = dict(num_samples=8, key=jax.random.key(1), dtype=jnp.float64)
    tight = sample(source, VPSchedule(), Dopri5(rtol=1e-9, atol=1e-9), nfe=25, **kw)
    assert tight.status == Status.MAX_ITERATIONS and int(tight.nfe) == 25  # 4 steps: 1 + 24
    loose = sample(source, VPSchedule(), Dopri5(rtol=1e-2, atol=1e-2), nfe=200, **kw)
    assert loose.status == Status.CONVERGED and int(loose.nfe) <= 200
    with pytest.raises(ValueError, match="nfe"):
        sample(source, VPSchedule(), Dopri5(), nfe=6, **kw)


@pytest.mark.parametrize(
    "schedule,sampler",
    [(VPSchedule(), Heun()), (VPSchedule(), DPMSolverPlusPlus(3)), (EDMSchedule(), Dopri5(rtol=1e-4, atol=1e-4))],
    ids=["heun", "dpm3", "dopri5-edm"],
)
def test_chunks_give_the_one_program_result(schedule, sampler):
    """Sampling in chunks of steps (what the service does, to stop between them) gives
    the numbers of the one-program solve, trajectory and evaluation count included."""
    source = GaussianMixture([[-2.0, 0.0], [2.0, 0.5]], [np.eye(2) * 0.1] * 2, [0.3, 0.7])
    kw = dict(num_samples=16, key=jax.random.key(7), steps=12, dtype=jnp.float64, save_trajectory=True)
    whole = sample(source, schedule, sampler, **kw)
    job = SampleRun(source, schedule, sampler, **kw)
    state, chunks = job.start(), 0
    while not job.finished(state):
        state = job.advance(state, 5)
        chunks += 1
    out = job.finish(state)
    assert chunks >= 3 and job.progress(state) <= job.max_progress
    # Chunk sizes are traced: other sizes run the same compiled program.

    compiled = flow._sample_advance._cached._cache_size()
    job.advance(job.start(), 3)
    job.advance(job.start(), 11)
    assert flow._sample_advance._cached._cache_size() == compiled
    np.testing.assert_allclose(out.samples, whole.samples, rtol=0, atol=1e-12)
    np.testing.assert_allclose(out.trajectory, whole.trajectory, rtol=0, atol=1e-12)
    assert int(out.nfe) == int(whole.nfe) and int(out.status) == int(whole.status) == 0


def test_samplers_agree_with_plain_diffrax():
    """Our Heun on a grid equals diffrax's Heun stepping on the same grid (EDM's Heun is
    the explicit trapezoid rule), and both spend two evaluations per step."""
    import diffrax

    source, schedule = _target(), VPSchedule()
    kw = dict(num_samples=64, key=jax.random.key(2), steps=10, dtype=jnp.float64)
    ours = sample(source, schedule, Heun(), **kw)
    ref = sample(source, schedule, Diffrax(diffrax.Heun()), **kw)
    np.testing.assert_allclose(ours.samples, ref.samples, rtol=1e-10, atol=1e-10)
    assert int(ours.nfe) == int(ref.nfe) == 20


def test_plain_diffrax_lands_on_zero_noise_as_heun_does():
    """On EDM's grid, which ends at sigma = 0, diffrax solves to sigma_min and lands with
    the step our Heun takes there (x = D): the same samples."""
    import diffrax

    source = _target()
    kw = dict(num_samples=64, key=jax.random.key(2), steps=10, dtype=jnp.float64)
    ours = sample(source, EDMSchedule(), Heun(), **kw)
    ref = sample(source, EDMSchedule(), Diffrax(diffrax.Heun()), **kw)
    np.testing.assert_allclose(ours.samples, ref.samples, rtol=1e-10, atol=1e-10)
    assert int(ours.nfe) == int(ref.nfe) == 19


def test_edm_final_step_onto_zero_noise():
    source = _target()
    # EDM's 18 sigmas (80 .. 0.002) + a last Euler step onto sigma = 0: 35 evaluations.
    out = sample(source, EDMSchedule(), Heun(), num_samples=16, key=jax.random.key(0), steps=18)
    assert int(out.nfe) == 35 and out.ok
    assert float(out.times[-2]) == pytest.approx(0.002) and float(out.times[-1]) == 0.0
    # The exponential integrators land on the data with their first-order (exact) update.
    out = sample(source, EDMSchedule(), DPMSolverPlusPlus(3), num_samples=16, key=jax.random.key(0), steps=18)
    assert out.ok and int(out.nfe) == 19


def test_nfe_budget():
    source = _target()
    for sampler, nfe, expected in [(Euler(), 10, 10), (Heun(), 21, 20), (DPMSolverPlusPlus(3), 10, 10)]:
        out = sample(source, VPSchedule(), sampler, num_samples=4, key=jax.random.key(0), nfe=nfe)
        assert int(out.nfe) == expected
    # Onto sigma = 0 Heun's last step costs one evaluation: 35 buys EDM's 18 steps.
    out = sample(source, EDMSchedule(), Heun(), num_samples=4, key=jax.random.key(0), nfe=35)
    assert int(out.nfe) == 35 and out.times.shape == (19,)


def test_trajectory_and_determinism():
    source = GaussianMixture([[-2.0, 0.0], [2.0, 0.0]], [np.eye(2) * 0.1] * 2, [0.3, 0.7])
    kw = dict(num_samples=32, key=jax.random.key(3), steps=6, save_trajectory=True)
    a = sample(source, VPSchedule(), DPMSolverPlusPlus(2), **kw)
    b = sample(source, VPSchedule(), DPMSolverPlusPlus(2), **kw)
    assert a.trajectory.shape == (7, 32, 2) and a.times.shape == (7,)
    np.testing.assert_array_equal(a.samples, b.samples)
    np.testing.assert_array_equal(a.trajectory[-1], a.samples)
    assert a.samples.dtype == jnp.float32
    c = sample(source, VPSchedule(), DPMSolverPlusPlus(2), **{**kw, "key": jax.random.key(4)})
    assert not np.allclose(a.samples, c.samples)


def test_marginal_prior_samples_the_noised_law():
    source = _target()
    out = sample(source, VPSchedule(), Heun(), num_samples=4000, key=jax.random.key(5), steps=20,
                 prior=MarginalPrior(), dtype=jnp.float64)
    mean_end, _ = source.marginal_mean_cov(1e-3, VPSchedule())
    np.testing.assert_allclose(out.samples.mean(0), mean_end, atol=0.05)


def test_schedule_parameters_do_not_recompile():

    source = _target()
    kw = dict(num_samples=8, key=jax.random.key(0), steps=5)
    sample(source, VPSchedule(beta_max=20.0), Euler(), **kw)
    before = flow._sample_core._cached._cache_size()
    sample(source, VPSchedule(beta_max=15.0), Euler(), **kw)
    sample(source, VPSchedule(beta_max=12.0), Euler(), t_start=0.9, **kw)
    assert flow._sample_core._cached._cache_size() == before


def test_grids_are_monotone_and_pinned():
    for schedule in [VPSchedule(), VESchedule(), EDMSchedule()]:
        t0, t1 = schedule.default_interval()
        for grid in [LogSNRTimeGrid(), KarrasTimeGrid()] if t1 > 0 else [KarrasTimeGrid()]:
            times = np.asarray(grid(schedule, jnp.asarray(float(t0)), jnp.asarray(float(t1)), 10))
            assert times[0] == pytest.approx(t0) and times[-1] == pytest.approx(t1)
            assert np.all(np.diff(times) < 0)


# ---------------------------------------------------------------------------------------
# Validation: ValueError naming the parameter.


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(means=[[0.0, 0.0]], covariances=[[[1.0, 0.0], [0.0, -1.0]]], weights=[1.0]), "covariances"),
        (dict(means=[[0.0, 0.0]], covariances=[[[1.0, 2.0], [2.0, 1.0]]], weights=[1.0]), "covariances"),
        (dict(means=[[0.0], [1.0]], covariances=[[[1.0]], [[1.0]]], weights=[0.5, 0.6]), "weights"),
        (dict(means=[[0.0], [1.0]], covariances=[[[1.0]], [[1.0]]], weights=[1.5, -0.5]), "weights"),
        (dict(means=[[0.0], [1.0]], covariances=[[[1.0]]], weights=[0.5, 0.5]), "covariances"),
    ],
)
def test_bad_mixture_raises(kwargs, name):
    with pytest.raises(ValueError, match=name):
        GaussianMixture(**kwargs)


def test_bad_budget_raises():
    source = _target()
    with pytest.raises(ValueError, match="nfe"):
        sample(source, VPSchedule(), Euler(), num_samples=4, key=jax.random.key(0), nfe=0)
    with pytest.raises(ValueError, match="nfe"):
        sample(source, VPSchedule(), Heun(), num_samples=4, key=jax.random.key(0), nfe=1)
    with pytest.raises(ValueError, match="num_samples"):
        sample(source, VPSchedule(), Euler(), num_samples=0, key=jax.random.key(0), steps=4)
    with pytest.raises(ValueError, match="t_start"):
        sample(source, VPSchedule(), Euler(), num_samples=4, key=jax.random.key(0), steps=4, t_start=0.0, t_end=0.5)
    with pytest.raises(ValueError, match="order"):
        DPMSolverPlusPlus(4)
    with pytest.raises(ValueError, match="rtol"):
        Dopri5(rtol=0.0)
    with pytest.raises(ValueError, match="beta_max"):
        VPSchedule(beta_max=-1.0)
