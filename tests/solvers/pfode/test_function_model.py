"""Networks as functions f(x, t): a Python callable, or a jax.export artifact (reverse
mode only), sample and evaluate as the exact source they compute."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

from monge.solvers.pfode import (
    DPMSolverPlusPlus,
    FunctionModel,
    GaussianMixture,
    Heun,
    NoisePrediction,
    VPSchedule,
    log_likelihood,
    sample,
)

MEAN = np.array([1.0, -0.5])
COV = np.array([[0.8, 0.3], [0.3, 0.5]])
SCHEDULE = VPSchedule()


def gaussian_noise(x, t):
    """The exact noise prediction of N(MEAN, COV) under VP: eps = sigma C_t^{-1} (x - alpha
    MEAN), C_t = alpha^2 COV + sigma^2 I, for a batch x (n, 2) at times t (n,)."""
    alpha, sigma = SCHEDULE.alpha(t)[:, None], SCHEDULE.sigma(t)[:, None]
    cov = alpha[..., None] ** 2 * jnp.asarray(COV, x.dtype) + sigma[..., None] ** 2 * jnp.eye(2, dtype=x.dtype)
    return sigma * jnp.linalg.solve(cov, (x - alpha * jnp.asarray(MEAN, x.dtype))[..., None])[..., 0]


def exported(fn, event_shape, dtype=jnp.float64):
    (b,) = export.symbolic_shape("b")
    return export.export(jax.jit(fn), platforms=("cpu",))(
        jax.ShapeDtypeStruct((b, *event_shape), dtype), jax.ShapeDtypeStruct((b,), dtype))


def _samples(source, sampler):
    return np.asarray(sample(source, SCHEDULE, sampler, num_samples=64, key=jax.random.key(1), steps=8,
                             dtype=jnp.float64).samples)


def test_a_callable_and_its_export_sample_as_the_exact_source():
    sampler = DPMSolverPlusPlus(2)  # in terms of the denoiser; Heun's score is checked with the service
    exact = _samples(GaussianMixture.gaussian(MEAN, COV), sampler)
    plain = _samples(FunctionModel(gaussian_noise, (2,), NoisePrediction()), sampler)
    artifact = export.deserialize(exported(gaussian_noise, (2,)).serialize(vjp_order=1))
    from_export = _samples(FunctionModel.from_exported(artifact, NoisePrediction()), sampler)
    np.testing.assert_allclose(plain, exact, rtol=0, atol=1e-10)
    np.testing.assert_allclose(from_export, plain, rtol=0, atol=1e-12)


def test_exported_likelihoods_take_reverse_mode_and_agree():
    points = np.random.default_rng(0).multivariate_normal(MEAN, COV, size=8)
    artifact = export.deserialize(exported(gaussian_noise, (2,)).serialize(vjp_order=1))
    source = FunctionModel.from_exported(artifact, NoisePrediction())
    assert not source.forward_mode
    exact = GaussianMixture.gaussian(MEAN, COV)
    reference = np.asarray(log_likelihood(exact, SCHEDULE, points).log_prob)
    np.testing.assert_allclose(np.asarray(log_likelihood(source, SCHEDULE, points).log_prob), reference,
                               rtol=1e-10)


def test_events_of_any_rank_are_sampled_flat():
    # A (1, 2, 2) "image" of independent N(0.5, 0.25) pixels: the same samples as the
    # flat (4,) network, row for row.
    def pixel_noise(x, t):
        alpha = SCHEDULE.alpha(t).reshape((-1,) + (1,) * (x.ndim - 1))
        sigma = SCHEDULE.sigma(t).reshape(alpha.shape)
        return sigma * (x - 0.5 * alpha) / (0.25 * alpha**2 + sigma**2)

    image = FunctionModel(pixel_noise, (1, 2, 2), NoisePrediction())
    flat = FunctionModel(pixel_noise, (4,), NoisePrediction())
    assert image.dim == 4
    np.testing.assert_array_equal(_samples(image, Heun()), _samples(flat, Heun()))
    from_export = FunctionModel.from_exported(exported(pixel_noise, (1, 2, 2)), NoisePrediction())
    assert from_export.event_shape == (1, 2, 2) and from_export.dim == 4


def test_bad_function_models_are_refused():
    with pytest.raises(ValueError, match="callable"):
        FunctionModel(np.zeros(2), (2,), NoisePrediction())
    with pytest.raises(ValueError, match="event_shape"):
        FunctionModel(gaussian_noise, (2, 0), NoisePrediction())
    with pytest.raises(ValueError, match="event_shape"):
        FunctionModel(gaussian_noise, (), NoisePrediction())
    with pytest.raises(ValueError, match="prediction"):
        FunctionModel(gaussian_noise, (2,), "noise")
    assert FunctionModel(gaussian_noise, 2, NoisePrediction()).event_shape == (2,)
