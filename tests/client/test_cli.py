"""The `monge` command in real processes: serve, info, solve, then SIGTERM."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import ot
import pytest

MONGE = [sys.executable, "-m", "monge.client.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    port = _free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    # Its own data dir: never the user's (whose server may be running, and holds it).
    data_dir = tmp_path_factory.mktemp("served")
    process = subprocess.Popen(MONGE + ["serve", "--port", str(port), "--grace", "2", "--data-dir", str(data_dir)],
                               env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    target = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        probe = subprocess.run(MONGE + ["info", "--target", target, "--timeout", "2"],
                               capture_output=True, text=True)
        if probe.returncode == 0:
            break
        time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("monge serve did not come up: " + process.stdout.read())
    yield process, target, probe.stdout
    if process.poll() is None:
        process.kill()


def test_info_prints_backend_and_devices(served):
    _, _, out = served
    assert "backend: cpu" in out and "device 0: cpu" in out and "Sinkhorn" in out


def test_solve_sinkhorn_writes_result(served, tmp_path, rng):
    _, target, _ = served
    x, y = rng.normal(size=(30, 2)), rng.normal(size=(40, 2)) + 1
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    out = tmp_path / "r.npz"
    run = subprocess.run(MONGE + ["solve", "sinkhorn", "--target", target, "--x", str(tmp_path / "x.npy"),
                                  "--y", str(tmp_path / "y.npy"), "--epsilon", "0.5", "--threshold", "1e-10",
                                  "--top-k", "2", "--barycentric-map", "--out", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "converged" in run.stdout
    saved = np.load(out)
    a, b = np.full(30, 1 / 30), np.full(40, 1 / 40)
    reference = ot.sinkhorn2(a, b, ot.dist(x, y), 0.5, stopThr=1e-13)
    assert float(saved["cost"]) == pytest.approx(reference, rel=1e-6)
    plan = ot.sinkhorn(a, b, ot.dist(x, y), 0.5, stopThr=1e-13)
    assert saved["sparse_plan_values"].shape == (60,) and list(saved["sparse_plan_shape"]) == [30, 40]
    np.testing.assert_allclose(saved["sparse_plan_values"].reshape(30, 2), -np.sort(-plan, axis=1)[:, :2], rtol=1e-6)
    np.testing.assert_allclose(saved["barycentric_map"], plan @ y / plan.sum(1, keepdims=True), rtol=1e-6)


def test_solve_reports_bad_input_without_traceback(served, tmp_path):
    _, target, _ = served
    np.save(tmp_path / "x.npy", np.ones((3, 2)))
    np.save(tmp_path / "y.npy", np.ones((3, 5)))
    run = subprocess.run(MONGE + ["solve", "sinkhorn", "--target", target, "--x", str(tmp_path / "x.npy"),
                                  "--y", str(tmp_path / "y.npy")], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "INVALID_ARGUMENT" in run.stderr and "y: has dimension 5" in run.stderr
    assert "Traceback" not in run.stderr


def test_sample_from_a_json_gaussian(served, tmp_path):
    _, target, _ = served
    mean, cov = [1.0, -0.5], [[0.6, 0.2], [0.2, 0.4]]
    (tmp_path / "g.json").write_text(json.dumps({"mean": mean, "cov": cov}))
    out = tmp_path / "s.npy"
    run = subprocess.run(MONGE + ["sample", str(tmp_path / "g.json"), "--target", target,
                                  "--sampler", "dpm_solver_pp_2m", "--nfe", "20", "-n", "4000", "--seed", "1", "--out", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "4000 samples of dimension 2, 20 score evaluations, success" in run.stdout
    samples = np.load(out)
    assert samples.shape == (4000, 2) and samples.dtype == np.float32
    np.testing.assert_allclose(samples.mean(0), mean, atol=0.05)
    np.testing.assert_allclose(np.cov(samples.T), cov, atol=0.05)


def test_sample_from_uploaded_weights_is_the_in_process_sampler(served, tmp_path):
    import jax
    import jax.numpy as jnp

    from monge.solvers.pfode import Euler, MLPArchitecture, MLPModel, NoisePrediction, VPSchedule, sample

    _, target, _ = served
    arch = MLPArchitecture(dim=2, hidden=(8,), time_embedding_dim=4)
    rng = np.random.default_rng(2)
    weights = {name: rng.normal(size=shape) * 0.3 for name, shape in arch.weight_shapes().items()}
    np.savez(tmp_path / "w.npz", **weights)
    out = tmp_path / "s.npz"
    run = subprocess.run(MONGE + ["sample", str(tmp_path / "w.npz"), "--target", target, "--hidden", "8",
                                  "--time-embedding-dim", "4", "--prediction", "noise", "--sampler", "euler",
                                  "--steps", "6", "-n", "32", "--seed", "3", "--dtype", "float64", "--trajectory",
                                  "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    saved = np.load(out)
    direct = sample(MLPModel(arch, weights, NoisePrediction()), VPSchedule(), Euler(), num_samples=32,
                    key=jax.random.key(3), steps=6, dtype=jnp.float64, save_trajectory=True)
    np.testing.assert_allclose(saved["samples"], np.asarray(direct.samples), rtol=0, atol=1e-12)
    assert saved["trajectory"].shape == (7, 32, 2) and int(saved["nfe"]) == 6 and bool(saved["ok"])


def test_loglik_of_a_mixture_matches_the_closed_form(served, tmp_path):
    from monge.solvers.pfode import GaussianMixture, VPSchedule

    _, target, _ = served
    means, covs, weights = np.array([[-1.0, 0.0], [1.5, 0.5]]), np.array([np.eye(2) * 0.3, np.eye(2) * 0.5]), [0.4, 0.6]
    np.savez(tmp_path / "m.npz", means=means, covariances=covs, weights=weights)
    points = np.random.default_rng(5).normal(size=(6, 2))
    np.save(tmp_path / "p.npy", points)
    run = subprocess.run(MONGE + ["loglik", str(tmp_path / "m.npz"), "--target", target, "--points",
                                  str(tmp_path / "p.npy"), "--out", str(tmp_path / "ll.npy")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "6 log-likelihoods" in run.stdout
    closed = np.asarray(GaussianMixture(means, covs, weights).log_prob(points, 1e-3, VPSchedule()))
    np.testing.assert_allclose(np.load(tmp_path / "ll.npy"), closed, rtol=1e-2)


def test_sample_from_an_exported_network_file(served, tmp_path):
    import jax
    from jax import export

    from monge.client import Client, requests

    _, target, _ = served
    batch = export.symbolic_shape("b")[0]
    exported = export.export(jax.jit(lambda x, t: 0.5 * x * t[:, None]), platforms=("cpu",))(
        jax.ShapeDtypeStruct((batch, 2), "float32"), jax.ShapeDtypeStruct((batch,), "float32"))
    (tmp_path / "net.jaxexport").write_bytes(exported.serialize())
    out = tmp_path / "s.npy"
    run = subprocess.run(MONGE + ["sample", str(tmp_path / "net.jaxexport"), "--prediction", "noise", "--target", target,
                                  "-n", "64", "--steps", "8", "--seed", "2", "--out", str(out)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    with Client(target, timeout=60) as client:
        same = client.sample_probability_flow(requests.exported_model(exported, prediction="noise"), num_samples=64,
                                              steps=8, seed=2)
    np.testing.assert_array_equal(np.load(out), same.samples)
    run = subprocess.run(MONGE + ["sample", str(tmp_path / "net.jaxexport"), "--target", target],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "needs --prediction" in run.stderr and "Traceback" not in run.stderr
    (tmp_path / "junk.jaxexport").write_bytes(b"not an artifact")
    run = subprocess.run(MONGE + ["sample", str(tmp_path / "junk.jaxexport"), "--prediction", "noise",
                                  "--target", target], capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "not a jax.export artifact" in run.stderr and "Traceback" not in run.stderr


def test_sample_reports_a_bad_target_without_traceback(served, tmp_path):
    _, target, _ = served
    (tmp_path / "bad.json").write_text(json.dumps({"mean": [0.0, 0.0], "cov": [[1.0, 2.0], [2.0, 1.0]]}))
    run = subprocess.run(MONGE + ["sample", str(tmp_path / "bad.json"), "--target", target],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "INVALID_ARGUMENT" in run.stderr and "not positive definite" in run.stderr
    assert "Traceback" not in run.stderr


def test_health_command(served):
    _, target, _ = served
    run = subprocess.run(MONGE + ["health", "--target", target], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0 and run.stdout.strip() == "SERVING"


def test_sigterm_stops_gracefully(served):
    process, _, _ = served
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    log = process.stdout.read()
    assert "shutting down" in log and "stopped" in log
