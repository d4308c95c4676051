"""Probability-flow sampling, log-likelihoods and score-model training through the real
server and client.

Sizes are tiny and shared between tests so that each solver program compiles once in
the worker (and once here, for the in-process comparisons).
"""

import math
import pathlib
import shutil
import time

import grpc
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multivariate_normal

from monge.client import InvalidArgumentError, NotFoundError, TrainedScoreModel, requests
from monge.client.errors import from_rpc_error
from monge.solvers.pfode import (
    DPMSolverPlusPlus,
    GaussianMixture,
    Heun,
    MLPArchitecture,
    MLPModel,
    VelocityPrediction,
    VPSchedule,
    sample,
)
from monge.v1 import pfode_pb2, service_pb2_grpc, tensor_pb2

from fit_checks import Fits, assert_checks, at_most

MEAN = np.array([1.0, -0.5])
COV = np.array([[0.8, 0.3], [0.3, 0.5]])
N_GAUSSIAN = 20_000
ARCH = MLPArchitecture(dim=2, hidden=(16, 16), time_embedding_dim=4)


def _noised_gaussian(t):
    """The exact law of x_t under VP for x_0 ~ N(MEAN, COV)."""
    schedule = VPSchedule()
    alpha, sigma = float(schedule.alpha(t)), float(schedule.sigma(t))
    return multivariate_normal(alpha * MEAN, alpha**2 * COV + sigma**2 * np.eye(2))


def _random_weights(seed, arch=ARCH):
    rng = np.random.default_rng(seed)
    return {name: rng.normal(size=shape) * 0.3 for name, shape in arch.weight_shapes().items()}


@pytest.fixture
def stub(server):
    with grpc.insecure_channel(server.target) as channel:
        yield service_pb2_grpc.SolverServiceStub(channel)


# -- sampling ---------------------------------------------------------------------------


def test_gaussian_heun_matches_the_closed_form_and_the_solver(client):
    r = client.sample_probability_flow(requests.gaussian(MEAN, COV), num_samples=N_GAUSSIAN, sampler="heun",
                                       steps=20, seed=3, dtype="float64")
    assert r.ok and r.diagnostics.status == "success"
    assert r.samples.shape == (N_GAUSSIAN, 2) and r.samples.dtype == np.float64
    assert r.nfe == 40 and r.steps == 20  # Heun: two evaluations per step (t_end = 1e-3 has noise)
    assert r.times.shape == (21,) and r.times[0] == 1.0 and r.times[-1] == pytest.approx(1e-3)
    assert r.trajectory is None and r.log_likelihood is None
    # The target N(MEAN, COV). Standard errors at n = 20000: 0.006 on the mean, 0.008 on
    # the covariance; the sampler's own bias (prior mismatch and 20 steps) is below 0.008.
    # A wrong score, schedule or covariance layout misses by 0.1 or more.
    np.testing.assert_allclose(r.samples.mean(0), MEAN, atol=0.03)
    np.testing.assert_allclose(np.cov(r.samples.T), COV, atol=0.03)
    # The same numbers as the solver in-process with the same seed.
    direct = sample(GaussianMixture.gaussian(MEAN, COV), VPSchedule(), Heun(), num_samples=N_GAUSSIAN,
                    key=jax.random.key(3), steps=20, dtype=jnp.float64)
    np.testing.assert_allclose(r.samples, np.asarray(direct.samples), rtol=0, atol=1e-12)
    assert int(direct.nfe) == r.nfe


def test_sampling_as_a_job_item_is_the_same_call(client):
    request = requests.sample_probability_flow(requests.gaussian(MEAN, COV), num_samples=N_GAUSSIAN,
                                               sampler="heun", steps=20, seed=3, dtype="float64")
    from_job = client.result(client.submit(request))
    unary = client.sample_probability_flow(requests.gaussian(MEAN, COV), num_samples=N_GAUSSIAN, sampler="heun",
                                           steps=20, seed=3, dtype="float64")
    np.testing.assert_array_equal(from_job.samples, unary.samples)
    assert "SampleProbabilityFlow" in client.info().solvers


def test_uploaded_mlp_weights_sample_as_in_process(client):
    weights = _random_weights(1)
    source = requests.mlp_model(weights, hidden=ARCH.hidden, time_embedding_dim=ARCH.time_embedding_dim,
                                prediction="velocity")
    r = client.sample_probability_flow(source, num_samples=64, sampler="dpm_solver_pp_2m", nfe=8, seed=5,
                                       dtype="float64", return_trajectory=True)
    direct = sample(MLPModel(ARCH, weights, VelocityPrediction()), VPSchedule(), DPMSolverPlusPlus(2),
                    num_samples=64, key=jax.random.key(5), nfe=8, dtype=jnp.float64, save_trajectory=True)
    assert r.ok and r.nfe == 8 and r.steps == 8
    np.testing.assert_allclose(r.samples, np.asarray(direct.samples), rtol=0, atol=1e-12)
    np.testing.assert_allclose(r.times, np.asarray(direct.times), rtol=0, atol=1e-15)
    assert r.trajectory.shape == (9, 64, 2)
    np.testing.assert_allclose(r.trajectory, np.asarray(direct.trajectory), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(r.trajectory[-1], r.samples)


# -- log-likelihoods ---------------------------------------------------------------------


def _likelihood_problem():
    points = np.random.default_rng(4).multivariate_normal(MEAN, COV, size=16)
    return requests.gaussian(MEAN, COV), points, _noised_gaussian(1e-3).logpdf(points)  # VP's t_end


def test_log_likelihood_of_points_is_the_gaussian_density(client):
    source, points, exact = _likelihood_problem()
    # The exact prior at t_start: only the integration errs (rtol 1e-6).
    r = client.probability_flow_log_likelihood(source, points, prior="marginal")
    assert r.ok and r.log_likelihood.shape == (16,) and r.nfe > 0
    np.testing.assert_allclose(r.log_likelihood, exact, rtol=1e-4)
    np.testing.assert_array_equal(r.standard_error, np.zeros(16))
    assert r.latents.shape == (16, 2)
    # The usual N(0, I) prior misses the true noised law at t = 1 slightly: within 1%.
    noise = client.probability_flow_log_likelihood(source, points)
    np.testing.assert_allclose(noise.log_likelihood, exact, rtol=1e-2)


def test_hutchinson_log_likelihood_is_within_its_standard_errors(client):
    source, points, exact = _likelihood_problem()
    h = client.probability_flow_log_likelihood(source, points, prior="marginal", divergence="hutchinson",
                                               num_probes=16, seed=1)
    assert h.ok and np.all(h.standard_error > 0)
    assert np.all(np.abs(h.log_likelihood - exact) <= 4 * h.standard_error + 1e-4)


def test_log_likelihood_of_samples(client):
    r = client.sample_probability_flow(requests.gaussian(MEAN, COV), num_samples=64, steps=20, seed=2,
                                       dtype="float64", log_likelihood="exact")
    assert r.ok and r.log_likelihood.shape == (64,) and r.log_likelihood_stderr.shape == (64,)
    np.testing.assert_allclose(r.log_likelihood, _noised_gaussian(1e-3).logpdf(r.samples), rtol=1e-2)


# -- training ----------------------------------------------------------------------------


JOB_DATA = (np.random.default_rng(0).normal(size=(256, 2)) * np.array([0.5, 0.3]) + np.array([2.0, -1.0]))
JOB_TRAINING = dict(steps=150, batch_size=64, learning_rate=5e-3, report_every=50)


def training_job_checks(losses):
    return [at_most("last block loss / first", losses[-1] / losses[0], 1.0)]


def train_the_job_in_process(seed):
    """The job's training as the worker runs it (the client's default VP schedule and noise
    prediction), for the margins over seeds."""
    from monge.solvers.pfode import DSMConfig, NoisePrediction, train_dsm

    out = train_dsm(JOB_DATA.astype(np.float32), ARCH, NoisePrediction(), VPSchedule(), DSMConfig(**JOB_TRAINING),
                    key=jax.random.key(seed))
    return np.asarray(out.losses)


FITS: Fits = {"dsm training job (in-process)": lambda seed: training_job_checks(train_the_job_in_process(seed))}


def test_dsm_training_job_stores_a_model_that_samples(client, server, stub):
    job = client.train_score_model(JOB_DATA.astype(np.float32), hidden=(16, 16), time_embedding_dim=4, seed=0,
                                   **JOB_TRAINING)
    events = list(client.watch(job, timeout=60))
    done = events[-1]
    assert done.state == "succeeded"
    trained = done.results[0].unwrap()
    assert isinstance(trained, TrainedScoreModel) and trained.ok and len(trained.model_id) == 32
    assert trained.losses.shape == (3,) and np.all(np.isfinite(trained.losses))
    assert_checks(training_job_checks(trained.losses))
    assert set(trained.weights) == set(ARCH.weight_shapes()) and trained.prediction == "noise"
    # Progress reached the watchers: the last report is the last block's loss.
    assert done.progress["iteration"] == 150
    assert done.progress["loss"] == pytest.approx(trained.final_loss, rel=1e-6)
    assert (pathlib.Path(server.config.data_dir) / "models" / trained.model_id / "weights.npz").exists()

    by_id = client.sample_probability_flow(trained.model_id, num_samples=64, steps=5, seed=1)
    by_object = client.sample_probability_flow(trained, num_samples=64, steps=5, seed=1)
    uploaded = client.sample_probability_flow(trained.upload(), num_samples=64, steps=5, seed=1)
    assert by_id.ok and by_id.samples.shape == (64, 2) and by_id.samples.dtype == np.float32
    np.testing.assert_array_equal(by_id.samples, by_object.samples)
    np.testing.assert_array_equal(by_id.samples, uploaded.samples)

    # A job item whose model disappears after the item was checked but before a worker
    # loads it (here: removed while the one worker is busy) fails alone with NOT_FOUND
    # naming the item's field, as the check itself would have said. The worker is held
    # by a Sinkhorn call that would run for many minutes (the shape and settings of
    # test_faults.py's long call) and is cancelled once the model is gone, so the test
    # waits for no solve and the worker is surely busy until then.
    # (Two independent clouds: a cloud and its translate, x and x + 1, is as easy as x
    # against itself and converged within seconds in CI.)
    busy_rng = np.random.default_rng(0)
    busy_x, busy_y = busy_rng.normal(size=(400, 2)), busy_rng.normal(size=(400, 2)) + 1.0
    occupied = stub.Sinkhorn.future(requests.sinkhorn(busy_x, busy_y, epsilon=1e-4, threshold=1e-14,
                                                      max_iterations=1_000_000), timeout=120)
    try:
        while not client.info().workers[0].busy:
            assert not occupied.done(), occupied.exception()
            time.sleep(0.01)
        # The sizes of the calls above, whose program the worker has compiled.
        job = client.submit([requests.sample_probability_flow(trained.model_id, num_samples=64, steps=5, seed=1),
                             requests.sample_probability_flow(trained.upload(), num_samples=64, steps=5, seed=1)])
        while client.job(job).state != "running":
            time.sleep(0.01)
        time.sleep(0.3)  # the items are checked as the job starts
        shutil.rmtree(pathlib.Path(server.config.data_dir) / "models" / trained.model_id)
        assert client.info().workers[0].busy and not occupied.done()  # the items have not been loaded yet
    finally:
        occupied.cancel()  # the server stops the solve at its next chunk
    gone, uploaded_item = client.wait(job, timeout=60).results
    assert isinstance(gone.error, NotFoundError)
    assert str(gone.error).startswith("NOT_FOUND: items[0].sample_probability_flow.model.trained_model_id: ")
    assert uploaded_item.ok
    np.testing.assert_array_equal(uploaded_item.value.samples, by_id.samples)


def test_cancelling_training_frees_the_worker(client):
    # A million steps of batch 2048: many minutes if cancellation did not stop it.
    data = np.random.default_rng(1).normal(size=(64, 2))
    job = client.train_score_model(data, hidden=(32,), time_embedding_dim=2, steps=1_000_000, batch_size=2048,
                                   report_every=20)
    deadline = time.monotonic() + 60
    while not (client.job(job).state == "running" and client.job(job).progress["iteration"] > 0):
        assert time.monotonic() < deadline, "training never reported progress"
        time.sleep(0.1)
    started = time.monotonic()
    cancelled = client.cancel(job)
    assert cancelled.state == "cancelled"
    # The worker is free again: a call (compiled by the first test) runs at once.
    r = client.sample_probability_flow(requests.gaussian(MEAN, COV), num_samples=N_GAUSSIAN, steps=20, seed=3,
                                       dtype="float64", timeout=30)
    assert r.ok and time.monotonic() - started < 15


# -- bad input ---------------------------------------------------------------------------


def _invalid(call):
    with pytest.raises(InvalidArgumentError) as caught:
        call()
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    return [v.field for v in caught.value.violations]


def _gaussian_source(**changes):
    fields = dict(means=MEAN[None], covariances=COV[None], weights=None) | changes
    return requests.gaussian_mixture(**fields)


BAD_SOURCES = {
    "not positive definite": (
        dict(covariances=np.array([[[1.0, 2.0], [2.0, 1.0]]])), "model.gaussian_mixture.covariances"),
    "not symmetric": (dict(covariances=np.array([[[1.0, 0.2], [0.1, 1.0]]])), "model.gaussian_mixture.covariances"),
    "NaN mean": (dict(means=np.array([[np.nan, 0.0]])), "model.gaussian_mixture.means"),
    "covariance shape": (dict(covariances=np.eye(3)[None]), "model.gaussian_mixture.covariances"),
    "negative weight": (
        dict(means=np.zeros((2, 2)), covariances=np.stack([np.eye(2)] * 2), weights=np.array([1.5, -0.5])),
        "model.gaussian_mixture.weights"),
    "weights not summing to one": (
        dict(means=np.zeros((2, 2)), covariances=np.stack([np.eye(2)] * 2), weights=np.array([0.5, 0.6])),
        "model.gaussian_mixture.weights"),
    "zero weights": (
        dict(means=np.zeros((2, 2)), covariances=np.stack([np.eye(2)] * 2), weights=np.zeros(2)),
        "model.gaussian_mixture.weights"),
    "weights of the wrong length": (dict(weights=np.array([0.5, 0.5])), "model.gaussian_mixture.weights"),
}


@pytest.mark.parametrize("case", BAD_SOURCES, ids=list(BAD_SOURCES))
def test_bad_gaussian_mixture(client, case):
    changes, field = BAD_SOURCES[case]
    fields = _invalid(lambda: client.sample_probability_flow(_gaussian_source(**changes), num_samples=8))
    assert fields == [field]


BAD_SAMPLING = {
    "nfe of zero": (dict(nfe=0), "nfe"),
    "nfe below one Heun step": (dict(nfe=1), "nfe"),
    "zero steps": (dict(steps=0), "steps"),
    "zero samples": (dict(num_samples=0), "num_samples"),
    "too many samples": (dict(num_samples=10**9), "num_samples"),
    "rtol for a fixed-step sampler": (dict(rtol=1e-3), "rtol"),
    "negative atol": (dict(sampler="dopri5", atol=-1.0), "atol"),
    "negative seed": (dict(seed=-1), "seed"),
    "start before end": (dict(t_start=0.1, t_end=0.5), "model.t_start"),
    "negative end": (dict(t_end=-0.1), "model.t_end"),
    "schedule parameter of another schedule": (dict(schedule=requests.schedule("vp", rho=7.0)),
                                               "model.schedule.rho"),
    "negative beta": (dict(schedule=requests.schedule("vp", beta_max=-1.0)), "model.schedule.beta_max"),
    "VE sigma_max below sigma_min": (dict(schedule=requests.schedule("ve", sigma_min=2.0, sigma_max=1.0)),
                                     "model.schedule.sigma_max"),
    "marginal prior of a network": (dict(source="0" * 32, prior="marginal"), "model.prior"),
    "malformed model id": (dict(source="../../etc/passwd"), "model.trained_model_id"),
    "one probe": (dict(log_likelihood="hutchinson", num_probes=1), "log_likelihood.num_probes"),
    "likelihood at sigma = 0": (dict(schedule="edm", t_end=0.0, log_likelihood="exact"), "model.t_end"),
    "trajectory over the message limit": (dict(num_samples=10**6, steps=10**4, return_trajectory=True),
                                          "return_trajectory"),
}


@pytest.mark.parametrize("case", BAD_SAMPLING, ids=list(BAD_SAMPLING))
def test_bad_sampling_request(client, case):
    changes, field = BAD_SAMPLING[case]
    kwargs = dict(source=requests.gaussian(MEAN, COV), num_samples=8) | changes
    source = kwargs.pop("source")
    fields = _invalid(lambda: client.sample_probability_flow(source, **kwargs))
    assert field in fields


def test_an_unknown_trained_model_is_not_found(client):
    unknown = "0" * 32
    for call, field in (
        (lambda: client.sample_probability_flow(unknown, num_samples=8), "model.trained_model_id"),
        (lambda: client.probability_flow_log_likelihood(unknown, np.zeros((4, 2))), "model.trained_model_id"),
        (lambda: client.submit(requests.sample_probability_flow(unknown, num_samples=8)),
         "items[0].sample_probability_flow.model.trained_model_id"),
    ):
        with pytest.raises(NotFoundError) as caught:
            call()
        assert caught.value.message == f"{field}: no trained model {unknown} on this server"
    # A bad request is refused as such before any model is looked up.
    assert _invalid(lambda: client.sample_probability_flow(unknown, num_samples=0)) == ["num_samples"]


def test_bad_uploaded_weights_name_the_weight(client):
    weights = _random_weights(2)
    kwargs = dict(hidden=ARCH.hidden, time_embedding_dim=ARCH.time_embedding_dim, prediction="noise")

    def fields_for(w, **changes):
        source = requests.mlp_model(w, **(kwargs | changes), dim=2)
        return _invalid(lambda: client.sample_probability_flow(source, num_samples=8))

    assert fields_for(weights | {"layers.1.w": np.zeros((16, 8))}) == ["model.mlp.weights[layers.1.w]"]
    missing = {k: w for k, w in weights.items() if k != "layers.2.b"}
    assert fields_for(missing) == ["model.mlp.weights[layers.2.b]"]
    assert fields_for(weights | {"layers.3.w": np.zeros((2, 2))}) == ["model.mlp.weights[layers.3.w]"]
    # Sizes that do not match the weights: every weight is named.
    assert "model.mlp.weights[layers.0.w]" in fields_for(weights, time_embedding_dim=6)
    assert fields_for(weights, time_embedding_dim=3) == ["model.mlp.time_embedding_dim"]
    nan = weights | {"layers.0.b": np.full(16, np.nan)}
    assert fields_for(nan) == ["model.mlp.weights[layers.0.b]"]


def _raw_invalid(method, request):
    with pytest.raises(grpc.RpcError) as caught:
        method(request, timeout=30)
    error = from_rpc_error(caught.value)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    return [v.field for v in error.violations]


def test_unknown_enum_values_and_missing_fields(stub):
    good = requests.sample_probability_flow(requests.gaussian(MEAN, COV), num_samples=8)

    def changed(**fields):
        request = pfode_pb2.SampleProbabilityFlowRequest()
        request.CopyFrom(good)
        for name, value in fields.items():
            target = request
            *path, last = name.split(".")
            for part in path:
                target = getattr(target, part)
            setattr(target, last, value)
        return request

    method = stub.SampleProbabilityFlow
    assert _raw_invalid(method, changed(sampler=42)) == ["sampler"]
    assert _raw_invalid(method, changed(time_grid=9)) == ["time_grid"]
    assert _raw_invalid(method, changed(**{"model.schedule.kind": 17})) == ["model.schedule.kind"]
    assert _raw_invalid(method, changed(**{"model.prior": 5})) == ["model.prior"]
    assert _raw_invalid(method, changed(dtype=tensor_pb2.DTYPE_INT32)) == ["dtype"]
    no_source = changed()
    no_source.model.ClearField("gaussian_mixture")
    assert _raw_invalid(method, no_source) == ["model.source"]
    no_prediction = changed()
    no_prediction.model.mlp.CopyFrom(requests.mlp_model(_random_weights(3), hidden=ARCH.hidden,
                                                        time_embedding_dim=4, prediction="noise"))
    no_prediction.model.mlp.prediction = pfode_pb2.PREDICTION_TYPE_UNSPECIFIED
    assert _raw_invalid(method, no_prediction) == ["model.mlp.prediction"]
    bad_bytes = changed()
    bad_bytes.model.gaussian_mixture.means.data = b"\x00" * 3
    assert _raw_invalid(method, bad_bytes) == ["model.gaussian_mixture.means"]


def test_bad_likelihood_and_training_requests(client):
    source = requests.gaussian(MEAN, COV)
    assert _invalid(lambda: client.probability_flow_log_likelihood(source, np.zeros((4, 3)))) == ["points"]
    assert _invalid(lambda: client.probability_flow_log_likelihood(source, np.full((4, 2), np.nan))) == ["points"]
    assert _invalid(lambda: client.probability_flow_log_likelihood(
        source, np.zeros((4, 2)), divergence="exact", num_probes=8)) == ["options.num_probes"]
    assert _invalid(lambda: client.probability_flow_log_likelihood(
        source, np.zeros((4, 2)), t_end=0.0)) == ["model.t_end"]

    data = np.zeros((16, 2))
    assert _invalid(lambda: client.train_score_model(data, hidden=(0, 4))) == ["items[0].train_score_model.hidden"]
    assert _invalid(lambda: client.train_score_model(data, steps=0)) == ["items[0].train_score_model.steps"]
    assert _invalid(lambda: client.train_score_model(data, learning_rate=math.nan)) == [
        "items[0].train_score_model.learning_rate"]
    assert _invalid(lambda: client.train_score_model(data, t_min=0.5, t_max=0.1)) == [
        "items[0].train_score_model.t_max"]
    assert _invalid(lambda: client.train_score_model(np.zeros((16, 2, 1)))) == ["items[0].train_score_model.samples"]
