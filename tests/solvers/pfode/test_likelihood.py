"""Log-likelihoods by the instantaneous change of variables against the closed form of
the noised Gaussian mixture."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from monge.solvers.pfode import (
    ExactDivergence,
    GaussianMixture,
    Heun,
    HutchinsonDivergence,
    MarginalPrior,
    NoisePrior,
    VESchedule,
    VPSchedule,
    log_likelihood,
    sample,
)


def _mixture(rng, k, d):
    means = rng.normal(size=(k, d)) * 1.5
    factors = rng.normal(size=(k, d, d)) * 0.3
    covs = factors @ np.swapaxes(factors, 1, 2) + 0.2 * np.eye(d)
    weights = rng.uniform(0.5, 1.0, size=k)
    return GaussianMixture(means, covs, weights / weights.sum())


@pytest.mark.parametrize("schedule,t_end", [(VPSchedule(), 1e-3), (VESchedule(sigma_max=30.0), 0.0)], ids=["vp", "ve"])
def test_exact_divergence_matches_closed_form(rng, schedule, t_end):
    source = _mixture(rng, 3, 2)
    points = jnp.asarray(rng.normal(size=(6, 2)) * 1.5)
    closed = np.asarray(source.log_prob(points, t_end, schedule))
    # The service's default prior (plain noise): within 1%.
    out = log_likelihood(source, schedule, points, t_end=t_end, prior=NoisePrior())
    assert out.status == 0
    np.testing.assert_allclose(out.log_prob, closed, rtol=1e-2)
    np.testing.assert_array_equal(out.stderr, 0.0)
    # With the exact law at t_start only the integration error remains.
    out = log_likelihood(source, schedule, points, t_end=t_end, prior=MarginalPrior())
    np.testing.assert_allclose(out.log_prob, closed, rtol=1e-4, atol=1e-4)


def test_hutchinson_within_three_standard_errors(rng):
    source = _mixture(rng, 2, 6)
    schedule = VPSchedule()
    points = jnp.asarray(np.asarray(source.means) + 0.3 * rng.normal(size=(2, 6)))
    points = jnp.concatenate([points, jnp.asarray(rng.normal(size=(2, 6)))])
    closed = np.asarray(source.log_prob(points, 1e-3, schedule))
    out = log_likelihood(
        source, schedule, points, divergence=HutchinsonDivergence(num_probes=24),
        key=jax.random.key(0), prior=MarginalPrior(), rtol=1e-5, atol=1e-5,
    )
    stderr = np.asarray(out.stderr)
    assert np.all(stderr > 0)
    assert np.all(np.abs(np.asarray(out.log_prob) - closed) <= 3 * stderr + 1e-3), (out.log_prob, closed, stderr)


def test_likelihood_of_samples(rng):
    source = _mixture(rng, 2, 2)
    schedule = VPSchedule()
    out = sample(source, schedule, Heun(), num_samples=5, key=jax.random.key(1), steps=30,
                 dtype=jnp.float64, likelihood=ExactDivergence(), prior=MarginalPrior())
    closed = np.asarray(source.log_prob(out.samples, 1e-3, schedule))
    np.testing.assert_allclose(out.log_prob, closed, rtol=1e-3, atol=1e-3)
    assert out.log_prob_stderr.shape == (5,)


def test_likelihood_validation(rng):
    source = _mixture(rng, 2, 2)
    with pytest.raises(ValueError, match="points"):
        log_likelihood(source, VPSchedule(), jnp.zeros((3, 5)))
    with pytest.raises(ValueError, match="key"):
        log_likelihood(source, VPSchedule(), jnp.zeros((3, 2)), divergence=HutchinsonDivergence(8))
    with pytest.raises(ValueError, match="num_probes"):
        HutchinsonDivergence(num_probes=1)


def test_likelihood_in_chunks_is_the_whole_integration(rng):
    from monge.solvers.pfode import LikelihoodRun

    source = _mixture(rng, 2, 2)
    points = jnp.asarray(rng.normal(size=(5, 2)))
    whole = log_likelihood(source, VPSchedule(), points, divergence=HutchinsonDivergence(4), key=jax.random.key(1))
    job = LikelihoodRun(source, VPSchedule(), points, divergence=HutchinsonDivergence(4), key=jax.random.key(1))
    state = job.start()
    while not job.finished(state):
        state = job.advance(state, 7)
    out = job.finish(state)
    np.testing.assert_allclose(out.log_prob, whole.log_prob, rtol=1e-12)
    np.testing.assert_allclose(out.stderr, whole.stderr, rtol=1e-12)
    assert int(out.nfe) == int(whole.nfe) and int(out.status) == 0
