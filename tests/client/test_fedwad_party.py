"""The FedWaD protocol with two real party processes (`monge fedwad party`) against a
real server whose every received request is recorded by a server interceptor: no
party's points reach the server, and the estimate is the in-process simulation's."""

import dataclasses
import json
import os
import subprocess
import sys

import grpc
import numpy as np
import pytest

from monge.client import FedWadSessions
from monge.solvers.fedwad import FedWadConfig, fedwad, server_schedule
from monge.v1 import fedwad_pb2

MONGE = [sys.executable, "-m", "monge.client.cli"]


class RecordRequests(grpc.aio.ServerInterceptor):
    """Instrumentation: keeps the raw bytes and the decoded message of every request
    the server deserialises, for every method (it wraps the request deserializer)."""

    def __init__(self):
        self.raw: list[bytes] = []
        self.messages: list = []

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        deserialize = handler.request_deserializer

        def recording(data):
            self.raw.append(bytes(data))
            message = deserialize(data)
            self.messages.append(message)
            return message

        return handler._replace(request_deserializer=recording)


def _cli(*args, timeout=60):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    run = subprocess.run(MONGE + list(args), capture_output=True, text=True, timeout=timeout, env=env)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_two_party_processes_keep_their_points(make_server, tmp_path):
    recorder = RecordRequests()
    server = make_server(grace_seconds=1.0, interceptors=[recorder])
    rng = np.random.default_rng(11)
    x, y = rng.normal(size=(12, 2)), rng.normal(size=(12, 2)) * 0.5 + 2.0
    np.save(tmp_path / "a.npy", x)
    np.save(tmp_path / "b.npy", y)
    rounds, seed = 12, 5

    session_id = _cli("fedwad", "create", "--target", server.target, "--parties", "alice", "bob",
                      "--rounds", str(rounds), "--seed", str(seed)).strip()
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    parties = [
        subprocess.Popen(MONGE + ["fedwad", "party", "--data", str(tmp_path / f"{f}.npy"), "--session",
                                  session_id, "--target", server.target, "--name", name, "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for name, f in (("alice", "a"), ("bob", "b"))
    ]
    outputs = []
    for process in parties:
        try:
            out, err = process.communicate(timeout=90)
        finally:
            process.kill()
        assert process.returncode == 0, err
        outputs.append(json.loads(out))

    # The estimate and its history are the simulation's, number for number.
    config = FedWadConfig(rounds=rounds, seed=seed)
    reference = fedwad(x, y, config=config)
    with FedWadSessions(server.target, timeout=10) as sessions:
        final = sessions.get(session_id)
    assert final.state == "completed"
    assert final.estimate == reference.estimate
    np.testing.assert_array_equal(final.bound_history, reference.bound_history)
    assert outputs[0]["pairs"][0]["estimate"] == outputs[1]["pairs"][0]["estimate"] == reference.estimate
    status = _cli("fedwad", "status", "--target", server.target, "--session", session_id)
    assert "completed" in status and f"{reference.estimate:.10g}" in status

    # Nothing the server received carries a party's point, neither as bytes of any
    # request nor as a row of any tensor in the decoded requests.
    participate = [m for m in recorder.messages if isinstance(m, fedwad_pb2.ParticipateRequest)]
    answers = [m.answer for m in participate if m.WhichOneof("message") == "answer"]
    assert len(answers) == 2 * rounds
    for data in (x, y):
        for row in data:
            needle = np.ascontiguousarray(row, "<f8").tobytes()
            assert not any(needle in raw for raw in recorder.raw)
            for value in row:  # not even one coordinate travels as raw bytes
                assert not any(np.float64(value).tobytes() in raw for raw in recorder.raw)
        received = np.concatenate([np.frombuffer(a.points.data, "<f8").reshape(-1, 2) for a in answers])
        gaps = np.linalg.norm(received[:, None, :] - data[None, :, :], axis=-1)
        assert gaps.min() > 1e-6
    joins = [m.join for m in participate if m.WhichOneof("message") == "join"]
    assert sorted((j.party, j.dimension, j.sample_size) for j in joins) == [("alice", 2, 12), ("bob", 2, 12)]

    # ...but, as documented, the server could invert an answer: with uniform weights and
    # support size = n, round 0 of alice's answer gives back her sample exactly.
    xi, ts = server_schedule(2, dataclasses.replace(config, support_size=12))
    first = next(a for a in answers if a.round == 0)
    first_points = np.frombuffer(first.points.data, "<f8").reshape(-1, 2)
    recovered = (first_points - (1 - ts[0]) * xi.points) / ts[0]
    owner = x if np.allclose(np.sort(recovered, axis=0), np.sort(x, axis=0), atol=1e-8) else y
    np.testing.assert_allclose(np.sort(recovered, axis=0), np.sort(owner, axis=0), atol=1e-8)


def test_party_cli_reports_bad_data_without_contacting_anyone(tmp_path):
    data = np.ones((4, 2))
    data[1, 0] = np.nan
    np.save(tmp_path / "a.npy", data)
    run = subprocess.run(MONGE + ["fedwad", "party", "--data", str(tmp_path / "a.npy"), "--session", "x",
                                  "--name", "alice", "--target", "127.0.0.1:1"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "INVALID_ARGUMENT" in run.stderr and "parties[alice].data: has 1 NaN" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.fixture(autouse=True)
def _cpu(monkeypatch):
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
