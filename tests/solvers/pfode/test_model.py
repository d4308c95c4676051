"""The built-in MLP: weight layout validation, prediction types, determinism, and the
denoising-score-matching trainer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from monge.solvers.pfode import (
    DataPrediction,
    DPMSolverPlusPlus,
    ExactDivergence,
    Heun,
    MLPArchitecture,
    MLPModel,
    NoisePrediction,
    ScorePrediction,
    VelocityPrediction,
    VESchedule,
    VPSchedule,
    log_likelihood,
    sample,
)
from monge.solvers.pfode.train import DSMConfig, train_dsm

from fit_checks import Fits, assert_checks, at_most

ARCH = MLPArchitecture(dim=3, hidden=(16, 8), time_embedding_dim=4)
PREDICTIONS = [ScorePrediction(), NoisePrediction(), DataPrediction(), VelocityPrediction()]


def _random_weights(rng, arch=ARCH):
    return {name: rng.normal(size=shape) * 0.3 for name, shape in arch.weight_shapes().items()}


def test_weight_layout_is_documented():
    assert ARCH.weight_shapes() == {
        "layers.0.w": (7, 16), "layers.0.b": (16,),
        "layers.1.w": (16, 8), "layers.1.b": (8,),
        "layers.2.w": (8, 3), "layers.2.b": (3,),
    }


def test_wrong_weights_raise_naming_the_weight(rng):
    weights = _random_weights(rng)
    bad = dict(weights, **{"layers.1.w": np.zeros((8, 16))})
    with pytest.raises(ValueError, match=r"layers\.1\.w.*\(8, 16\).*\(16, 8\)"):
        MLPModel(ARCH, bad, NoisePrediction())
    missing = {k: v for k, v in weights.items() if k != "layers.2.b"}
    with pytest.raises(ValueError, match=r"layers\.2\.b"):
        MLPModel(ARCH, missing, NoisePrediction())
    with pytest.raises(ValueError, match=r"layers\.3\.w"):
        MLPModel(ARCH, dict(weights, **{"layers.3.w": np.zeros((3, 3))}), NoisePrediction())
    with pytest.raises(ValueError, match="time_embedding_dim"):
        MLPArchitecture(dim=3, time_embedding_dim=3)


@pytest.mark.parametrize("prediction", PREDICTIONS, ids=lambda p: type(p).__name__)
def test_prediction_types_invert_their_targets(rng, prediction):
    x0, eps = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    for alpha, sigma in [(0.9, 0.3), (1.0, 20.0), (0.05, 0.99)]:
        xt = alpha * x0 + sigma * eps
        target = prediction.target(x0, eps, alpha, sigma)
        np.testing.assert_allclose(prediction.denoised(target, xt, alpha, sigma), x0, rtol=1e-9, atol=1e-9)


def test_model_sampling_is_deterministic_given_the_seed(rng):
    model = MLPModel(ARCH, _random_weights(rng), VelocityPrediction())
    kw = dict(num_samples=16, steps=5)
    a = sample(model, VPSchedule(), DPMSolverPlusPlus(2), key=jax.random.key(7), **kw)
    b = sample(model, VPSchedule(), DPMSolverPlusPlus(2), key=jax.random.key(7), **kw)
    c = sample(model, VPSchedule(), DPMSolverPlusPlus(2), key=jax.random.key(8), **kw)
    np.testing.assert_array_equal(a.samples, b.samples)
    assert not np.allclose(a.samples, c.samples)
    assert a.ok and int(a.nfe) == 5
    # Same weights and prediction type, new values: no recompilation, different output.
    model2 = MLPModel(ARCH, _random_weights(rng), VelocityPrediction())
    d = sample(model2, VPSchedule(), DPMSolverPlusPlus(2), key=jax.random.key(7), **kw)
    assert not np.allclose(a.samples, d.samples)


def test_model_likelihood_runs(rng):
    model = MLPModel(ARCH, _random_weights(rng), NoisePrediction())
    out = log_likelihood(model, VESchedule(), jnp.asarray(rng.normal(size=(4, 3))), divergence=ExactDivergence())
    assert out.status == 0 and np.all(np.isfinite(out.log_prob))


GAUSSIAN_MEAN = np.array([2.0, -1.0])


def gaussian_data():
    return np.random.default_rng(0).normal(size=(1000, 2)) * np.array([0.5, 0.3]) + GAUSSIAN_MEAN


def train_on_the_gaussian(seed=0, callback=None):
    arch = MLPArchitecture(dim=2, hidden=(48, 48), time_embedding_dim=8)
    out = train_dsm(gaussian_data().astype(np.float32), arch, NoisePrediction(), VPSchedule(),
                    DSMConfig(steps=600, batch_size=128, learning_rate=5e-3, report_every=200),
                    key=jax.random.key(seed), callback=callback)
    return arch, out


def gaussian_training_checks(arch, out, seed=0):
    model = MLPModel(arch, out.weights, NoisePrediction())
    samples = np.asarray(sample(model, VPSchedule(), Heun(), num_samples=1000, key=jax.random.key(seed + 1),
                                steps=15).samples)
    # An untrained (zero-output) noise model would land near the origin.
    return [at_most("last block loss / first", out.losses[-1] / out.losses[0], 1.0),
            at_most("|sample mean - data mean|", np.abs(samples.mean(0) - GAUSSIAN_MEAN).max(), 0.35)]


def test_dsm_training_learns_a_gaussian():
    data = gaussian_data()
    reports = []
    arch, out = train_on_the_gaussian(callback=lambda step, loss: reports.append((step, loss)))
    assert [s for s, _ in reports] == [200, 400, 600]
    np.testing.assert_allclose([l for _, l in reports], out.losses, rtol=1e-5)
    assert out.finite
    # A second job with its own callback reuses the compiled trainer.
    from monge.solvers.pfode import train as pfode_train

    compiled = pfode_train._train_block._cached._cache_size()
    other = []
    train_dsm(data.astype(np.float32), arch, NoisePrediction(), VPSchedule(),
              DSMConfig(steps=600, batch_size=128, learning_rate=1e-3, report_every=200),
              key=jax.random.key(1), callback=lambda step, loss: other.append(step))
    assert other == [200, 400, 600] and pfode_train._train_block._cached._cache_size() == compiled
    # `should_stop` is asked before every step: a stop does not wait for a report.
    asked = []
    with pytest.raises(pfode_train.TrainingStopped) as stopped:
        train_dsm(data.astype(np.float32), arch, NoisePrediction(), VPSchedule(),
                  DSMConfig(steps=600, batch_size=128, learning_rate=1e-3, report_every=200),
                  key=jax.random.key(1), callback=lambda step, loss: other.append(step),
                  should_stop=lambda: asked.append(1) or len(asked) > 37)
    assert stopped.value.steps == 37 and other == [200, 400, 600]
    assert set(out.weights) == set(arch.weight_shapes())
    assert_checks(gaussian_training_checks(arch, out))


def test_dsm_validation():
    arch = MLPArchitecture(dim=2, hidden=(8,))
    with pytest.raises(ValueError, match="samples"):
        train_dsm(np.zeros((10, 3)), arch, NoisePrediction(), VPSchedule(), key=jax.random.key(0))
    with pytest.raises(ValueError, match="learning_rate"):
        DSMConfig(learning_rate=0.0)
    with pytest.raises(ValueError, match="steps"):
        DSMConfig(steps=0)


FITS: Fits = {"dsm on a 2-D Gaussian": lambda seed: gaussian_training_checks(*train_on_the_gaussian(seed), seed=seed)}
