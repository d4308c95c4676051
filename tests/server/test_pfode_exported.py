"""Bring your own network: a jax.export artifact as the probability-flow source, through
the real server and client; and the artifacts the server refuses, each naming the field.

Networks are tiny and shared between tests so that each compiles once in the worker."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

from monge.client import InvalidArgumentError, requests
from monge.solvers.pfode import (
    DPMSolverPlusPlus,
    ExponentialEuler,
    FunctionModel,
    GaussianMixture,
    Heun,
    NoisePrediction,
    VelocityPrediction,
    VPSchedule,
    log_likelihood,
    sample,
)

MEAN = np.array([1.0, -0.5])
COV = np.array([[0.8, 0.3], [0.3, 0.5]])
SCHEDULE = VPSchedule()
FIELD = "model.exported.artifact"

_rng = np.random.default_rng(7)
W1, B1 = _rng.normal(size=(3, 16)) * 0.5, _rng.normal(size=16) * 0.1
W2, B2 = _rng.normal(size=(16, 2)) * 0.5, _rng.normal(size=2) * 0.1


def mlp(x, t):
    """A two-layer network with fixed random weights on [x, t]."""
    h = jnp.concatenate([x, t[:, None]], axis=-1)
    h = jnp.tanh(h @ W1.astype(x.dtype) + B1.astype(x.dtype))
    return h @ W2.astype(x.dtype) + B2.astype(x.dtype)


def gaussian_noise(x, t):
    """The exact noise prediction of N(MEAN, COV) under VP: eps = sigma C_t^{-1} (x - alpha
    MEAN), C_t = alpha^2 COV + sigma^2 I (a batched solve: LAPACK custom calls)."""
    alpha, sigma = SCHEDULE.alpha(t)[:, None], SCHEDULE.sigma(t)[:, None]
    cov = alpha[..., None] ** 2 * jnp.asarray(COV, x.dtype) + sigma[..., None] ** 2 * jnp.eye(2, dtype=x.dtype)
    return sigma * jnp.linalg.solve(cov, (x - alpha * jnp.asarray(MEAN, x.dtype))[..., None])[..., 0]


def _export(fn, x_shape=None, dtype=jnp.float32, platforms=("cpu", "cuda"), inputs=2):
    (b,) = export.symbolic_shape("b")
    x_shape = (b, 2) if x_shape is None else x_shape
    specs = [jax.ShapeDtypeStruct(x_shape, dtype), jax.ShapeDtypeStruct(x_shape[:1], dtype)]
    specs += [jax.ShapeDtypeStruct(x_shape[:1], dtype)] * (inputs - 2)
    return export.export(jax.jit(fn), platforms=platforms)(*specs)


@pytest.fixture(scope="module")
def mlp_export():
    return _export(mlp, dtype=jnp.float64)


@pytest.fixture(scope="module")
def gaussian_export():
    return _export(gaussian_noise)


def _invalid(call):
    with pytest.raises(InvalidArgumentError) as caught:
        call()
    return {v.field: v.description for v in caught.value.violations}


# -- sampling ---------------------------------------------------------------------------


def test_an_exported_mlp_samples_as_in_process(client, mlp_export):
    source = requests.exported_model(mlp_export, prediction="velocity")
    assert list(source.event_shape) == [2] and len(source.artifact) > 0
    r = client.sample_probability_flow(source, num_samples=64, sampler="dpm_solver_pp_2m", nfe=8, seed=5,
                                       dtype="float64", return_trajectory=True)
    assert r.ok and r.nfe == 8 and r.samples.shape == (64, 2) and r.trajectory.shape == (9, 64, 2)
    # In-process, the Python function it was exported from, with the same seed and sampler.
    direct = sample(FunctionModel(mlp, (2,), VelocityPrediction()), SCHEDULE, DPMSolverPlusPlus(2), num_samples=64,
                    key=jax.random.key(5), nfe=8, dtype=jnp.float64, save_trajectory=True)
    np.testing.assert_allclose(r.samples, np.asarray(direct.samples), rtol=0, atol=1e-10)
    np.testing.assert_allclose(r.trajectory, np.asarray(direct.trajectory), rtol=0, atol=1e-10)
    # A job item carries the same source.
    request = requests.sample_probability_flow(source, num_samples=64, sampler="dpm_solver_pp_2m", nfe=8, seed=5,
                                               dtype="float64")
    np.testing.assert_array_equal(client.result(client.submit(request)).samples, r.samples)


def test_an_exported_gaussian_denoiser_samples_the_gaussian(client, gaussian_export):
    source = requests.exported_model(gaussian_export, prediction="noise")
    r = client.sample_probability_flow(source, num_samples=4000, sampler="heun", steps=20, seed=3)
    assert r.ok and r.samples.dtype == np.float32 and r.samples.shape == (4000, 2)
    # Standard errors at n = 4000: 0.014 on the mean, 0.018 on the covariance; a wrong
    # score, schedule or time convention misses by 0.1 or more.
    np.testing.assert_allclose(r.samples.mean(0), MEAN, atol=0.06)
    np.testing.assert_allclose(np.cov(r.samples.T), COV, atol=0.08)
    # The same draws and steps as the exact source in-process, up to float32 rounding.
    exact = sample(GaussianMixture.gaussian(MEAN, COV), SCHEDULE, Heun(), num_samples=4000, key=jax.random.key(3),
                   steps=20, dtype=jnp.float32)
    np.testing.assert_allclose(r.samples, np.asarray(exact.samples), rtol=0, atol=2e-4)


def test_exported_log_likelihoods_match_the_exact_source(client, gaussian_export):
    source = requests.exported_model(gaussian_export, prediction="noise")
    points = np.random.default_rng(4).multivariate_normal(MEAN, COV, size=8).astype(np.float32)
    r = client.probability_flow_log_likelihood(source, points)
    assert r.ok and r.latents.shape == (8, 2)
    exact = log_likelihood(GaussianMixture.gaussian(MEAN, COV), SCHEDULE, points, dtype=jnp.float32)
    np.testing.assert_allclose(r.log_likelihood, np.asarray(exact.log_prob), rtol=1e-3)
    # Without its VJP the network cannot be differentiated: refused, saying how to export.
    no_vjp = requests.exported_model(gaussian_export, prediction="noise", vjp=False)
    refused = _invalid(lambda: client.probability_flow_log_likelihood(no_vjp, points))
    assert list(refused) == [FIELD] and "vjp_order=1" in refused[FIELD]


def test_image_shaped_events_come_back_in_their_shape(client):
    def pixel_noise(x, t):  # independent N(0.5, 0.25) pixels
        alpha, sigma = SCHEDULE.alpha(t)[:, None, None, None], SCHEDULE.sigma(t)[:, None, None, None]
        return sigma * (x - 0.5 * alpha) / (0.25 * alpha**2 + sigma**2)

    source = requests.exported_model(pixel_noise, prediction="noise", event_shape=(1, 2, 2))
    assert list(source.event_shape) == [1, 2, 2]
    r = client.sample_probability_flow(source, num_samples=16, sampler="ddim", steps=5, seed=1)
    assert r.ok and r.samples.shape == (16, 1, 2, 2)
    flat = sample(FunctionModel(pixel_noise, (1, 2, 2), NoisePrediction()), SCHEDULE,
                  ExponentialEuler(), num_samples=16, key=jax.random.key(1), steps=5, dtype=jnp.float32)
    np.testing.assert_allclose(r.samples.reshape(16, 4), np.asarray(flat.samples), rtol=0, atol=1e-5)


# -- refusals ----------------------------------------------------------------------------


def _with_host_callback(exported):
    """The artifact with its tanh replaced by a custom call to the host-callback target:
    jax.export refuses to make one, an attacker would write it by hand."""
    from jax._src.lib.mlir.dialects import hlo

    text, count = re.subn(r"stablehlo\.tanh (%\w+) : (tensor<[^>]+>)",
                          r"stablehlo.custom_call @xla_ffi_python_cpu_callback(\1) : (\2) -> \2",
                          exported.mlir_module())
    assert count == 1
    version = hlo.get_version_from_compatibility_requirement(hlo.StablehloCompatibilityRequirement.WEEK_4)
    module = jax.extend.mlir.serialize_portable_artifact(text, version)
    return dataclasses.replace(exported, mlir_module_serialized=module).serialize()


def _bad_sources():
    (at_least_16,) = export.symbolic_shape("b", constraints=("b >= 16",))
    good = _export(mlp)
    garbage_module = dataclasses.replace(good, mlir_module_serialized=b"garbage").serialize()
    return {
        "bytes that do not deserialize": (requests.exported_model(b"not an artifact", prediction="noise",
                                                                  event_shape=(2,)), "deserialize"),
        "a wrong output shape": (requests.exported_model(_export(lambda x, t: x[:, :1] * t[:, None]),
                                                         prediction="noise"), "returns shape (b, 1)"),
        "a concrete batch": (requests.exported_model(_export(mlp, x_shape=(8, 2)), prediction="noise"),
                             "fixed batch of 8"),
        "another platform only": (requests.exported_model(_export(mlp, platforms=("cuda",)), prediction="noise"),
                                  "exported for cuda only"),
        "another dtype": (requests.exported_model(_export(mlp, dtype=jnp.float64), prediction="noise"),
                          "float64"),
        "three inputs": (requests.exported_model(_export(lambda x, t, u: x, inputs=3), prediction="noise"),
                         "two array arguments"),
        "a host callback": (requests.exported_model(_with_host_callback(good), prediction="noise",
                                                    event_shape=(2,)), "host callbacks are not accepted"),
        "an event shape that is not the network's": (
            requests.exported_model(good, prediction="noise", event_shape=(3,)), "event shape [3]"),
        "a module that does not deserialize": (
            requests.exported_model(garbage_module, prediction="noise", event_shape=(2,)),
            "StableHLO module that does not deserialize"),
        "a batch constraint the request breaks": (
            requests.exported_model(_export(mlp, x_shape=(at_least_16, 2)), prediction="noise"),
            "does not run on a batch of 8 rows"),
    }


@pytest.fixture(scope="module")
def bad_sources():
    return _bad_sources()


BAD = ["bytes that do not deserialize", "a wrong output shape", "a concrete batch", "another platform only",
       "another dtype", "three inputs", "a host callback", "an event shape that is not the network's",
       "a module that does not deserialize", "a batch constraint the request breaks"]


@pytest.mark.parametrize("case", BAD)
def test_bad_artifacts_are_refused_naming_the_field(client, bad_sources, case):
    source, says = bad_sources[case]
    refused = _invalid(lambda: client.sample_probability_flow(source, num_samples=8, steps=2))
    assert list(refused) == [FIELD] and says in refused[FIELD], refused


def test_a_bad_artifact_in_a_job_item_names_the_item(client, bad_sources):
    source, _ = bad_sources["another platform only"]
    refused = _invalid(lambda: client.result(client.submit(requests.sample_probability_flow(source, num_samples=8))))
    assert list(refused) == ["items[0].sample_probability_flow." + FIELD]


def test_the_request_fields_are_checked_in_the_server_process(client, gaussian_export):
    good = requests.exported_model(gaussian_export, prediction="noise")

    def changed(**fields):
        message = type(good)()
        message.CopyFrom(good)
        for name, value in fields.items():
            if name == "event_shape":
                del message.event_shape[:]
                message.event_shape.extend(value)
            else:
                setattr(message, name, value)
        return message

    for message, field in (
        (changed(artifact=b""), FIELD),
        (changed(prediction=0), "model.exported.prediction"),
        (changed(event_shape=[]), "model.exported.event_shape"),
        (changed(event_shape=[2, 0]), "model.exported.event_shape"),
    ):
        assert list(_invalid(lambda: client.sample_probability_flow(message, num_samples=8))) == [field]
    # Likelihood points must have the event shape.
    refused = _invalid(lambda: client.probability_flow_log_likelihood(good, np.zeros((4, 3), np.float32)))
    assert list(refused) == ["points"]


def test_an_artifact_over_the_limit_is_refused(make_module_server, gaussian_export):
    from monge.client import Client

    source = requests.exported_model(gaussian_export, prediction="noise")
    server = make_module_server(max_exported_model_bytes=len(source.artifact) - 1)
    with Client(server.target, timeout=60) as small:
        refused = _invalid(lambda: small.sample_probability_flow(source, num_samples=8))
    assert list(refused) == [FIELD] and "max_exported_model_bytes" in refused[FIELD]
