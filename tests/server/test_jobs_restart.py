"""Kill the server process mid-job and start a second one on the same data dir: finished
results are still there and the unfinished job runs again, to one result."""

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from monge.client import Client, requests

MONGE = [sys.executable, "-m", "monge.client.cli"]


def _serve(data_dir, log_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = open(log_path, "ab")
    process = subprocess.Popen(
        MONGE + ["serve", "--port", str(port), "--data-dir", str(data_dir), "--workers", "1", "--grace", "1"],
        stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    target = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, open(log_path).read()
        try:
            with Client(target, timeout=2) as c:
                c.info()
            return process, target
        except Exception:
            time.sleep(0.3)
    process.kill()
    pytest.fail("server did not start: " + open(log_path).read())


def test_restart_keeps_results_and_reruns_unfinished_jobs(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 2)), rng.normal(size=(40, 2)) + 1.0
    quick_request = requests.sinkhorn(x, y, epsilon=0.5, threshold=1e-10)
    slow_request = requests.sinkhorn(x, y, epsilon=1e-4, threshold=1e-15, max_iterations=60_000)
    log_path = tmp_path / "server.log"

    first, target = _serve(tmp_path / "data", log_path)
    try:
        with Client(target) as c:
            quick = c.submit(quick_request, request_id="quick")
            quick_result = c.result(quick, timeout=120)
            slow = c.submit(slow_request, request_id="slow")
            deadline = time.monotonic() + 120
            while c.job(slow).progress["iteration"] == 0:
                assert time.monotonic() < deadline, "the slow job never started"
                time.sleep(0.1)
    finally:
        first.send_signal(signal.SIGKILL)  # a crash, not a graceful stop
        first.wait(10)

    second, target = _serve(tmp_path / "data", log_path)
    try:
        with Client(target) as c:
            kept = c.job(quick.job_id, include_results=True)
            assert kept.state == "succeeded"
            assert kept.results[0].value.cost == quick_result.cost
            # Submitting again with the same request id is still the same job.
            assert c.submit(slow_request, request_id="slow").job_id == slow.job_id
            rerun = c.wait(slow, timeout=180)
            assert rerun.state == "succeeded", rerun
            assert rerun.attempts == 2
            assert rerun.results[0].value.iterations == 60_000
            assert [j.job_id for j in c.jobs()].count(slow.job_id) == 1
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0
    assert "re-queued after a restart" in log_path.read_text()
