"""Security through the real server and client: TLS, bearer tokens, job ownership, the
per-owner job limit, and the rule for where the server may listen."""

import asyncio
import datetime
import ipaddress
import sqlite3

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from monge.client import (Client, NotFoundError, ResourceExhaustedError, UnauthenticatedError,
                          UnavailableError, requests)
from monge.client.cli import main as cli_main
from monge.server.app import start
from monge.server.config import ServerConfig
from helpers import slow_sinkhorn

ALICE, BOB, CAROL = "alice-token-0123456789", "bob-token-0123456789", "carol-token-0123456789"


def _request(seed=0):
    rng = np.random.default_rng(seed)
    return requests.sinkhorn(rng.normal(size=(20, 2)), rng.normal(size=(20, 2)) + 1.0, epsilon=0.5)




@pytest.fixture(scope="module")
def authed(make_module_server):
    """Plaintext on loopback with three tokens: two named, CAROL unnamed (a hash names her)."""
    return make_module_server(tokens=(f"alice:{ALICE}", f"bob:{BOB}", CAROL), max_jobs_per_owner=2,
                              grace_seconds=1.0)


def _client(server, token=None, **kwargs):
    return Client(server.target, token=token, timeout=30, **kwargs)


# -- tokens ------------------------------------------------------------------------------


def test_missing_or_wrong_token_is_unauthenticated(authed):
    with _client(authed) as anonymous, _client(authed, "not-a-known-token") as wrong:
        for client, message in ((anonymous, "missing credentials"), (wrong, "invalid token")):
            for call in (client.info, client.jobs, lambda: client.submit(_request()),
                         lambda: list(client.watch("some-job"))):  # unary and streaming
                with pytest.raises(UnauthenticatedError, match=message):
                    call()
    with _client(authed, ALICE) as alice:
        assert "Sinkhorn" in alice.info().solvers


def test_health_and_reflection_are_open_without_token(authed):
    with grpc.insecure_channel(authed.target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        answers = reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
        names = {s.name for answer in answers for s in answer.list_services_response.service}
    assert "monge.v1.JobService" in names


# -- ownership ---------------------------------------------------------------------------


def test_another_token_cannot_see_or_touch_a_job(authed):
    with _client(authed, ALICE) as alice, _client(authed, BOB) as bob:
        job = alice.submit(_request(1), request_id="shared-id")
        for call in (lambda: bob.job(job), lambda: bob.cancel(job), lambda: bob.wait(job, timeout=5),
                     lambda: list(bob.watch(job, timeout=5)), lambda: bob.result(job, timeout=5)):
            with pytest.raises(NotFoundError) as caught:
                call()
            assert caught.value.message == f"no job {job.job_id!r}"  # as for an id that never existed
        assert job.job_id not in {j.job_id for j in bob.jobs()}
        # Request ids are per owner: bob's "shared-id" is a job of his own.
        bobs = bob.submit(_request(1), request_id="shared-id")
        assert bobs.job_id != job.job_id and [j.job_id for j in bob.jobs()] == [bobs.job_id]
        assert alice.submit(_request(1), request_id="shared-id").job_id == job.job_id
        # The owner still sees, watches (a stream, token in metadata) and reads it.
        assert job.job_id in {j.job_id for j in alice.jobs()}
        assert list(alice.watch(job))[-1].state == "succeeded"
        assert alice.result(job).converged
    rows = authed.running.jobs._store._db.execute("SELECT job_id, owner FROM jobs").fetchall()
    assert {tuple(row) for row in rows} >= {(job.job_id, "alice"), (bobs.job_id, "bob")}


def test_per_owner_limit_of_unfinished_jobs(authed):
    with _client(authed, CAROL) as carol, _client(authed, BOB) as bob:
        mine = [carol.submit(slow_sinkhorn(seed)) for seed in range(2)]
        with pytest.raises(ResourceExhaustedError, match="max_jobs_per_owner") as caught:
            carol.submit(slow_sinkhorn(2), timeout=1.0)  # the client retries a full quota until then
        assert "2 jobs" in caught.value.message
        other = bob.submit(_request(3))  # the limit is per owner
        for job in mine:
            assert carol.cancel(job).state == "cancelled"
        assert carol.submit(_request(4)).state in ("queued", "running", "succeeded")
        assert bob.result(other).converged
    # The unnamed token's jobs carry a hash of it, never the token itself.
    owners = {row[0] for row in authed.running.jobs._store._db.execute("SELECT owner FROM jobs")}
    carols = owners - {"alice", "bob"}
    assert len(carols) == 1 and carols.pop().startswith("sha256:")
    assert not any(CAROL in owner for owner in owners)


# -- trained models ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def alices_models(authed):
    """A score model and a Var-RUOT model that alice trained through the server: what
    stores a model as its job's owner is the training path. Most of this fixture's time
    is this server's worker compiling the two trainers; a smaller network or fewer steps
    would not help, and the trainers' host callbacks keep them out of the shared
    persistent compilation cache, so every server compiles them again."""
    rng = np.random.default_rng(0)
    data = (rng.normal(size=(256, 2)) * np.array([0.5, 0.3]) + np.array([2.0, -1.0])).astype(np.float32)
    x0 = 0.3 * rng.standard_normal((24, 2))
    with _client(authed, ALICE) as alice:
        score = alice.result(alice.train_score_model(data, hidden=(16, 16), time_embedding_dim=4, steps=150,
                                                     batch_size=64, learning_rate=5e-3, report_every=50, seed=0),
                             timeout=300)
        ruot = alice.result(alice.ruot_fit([(0.0, x0, 100.0), (1.0, x0 + np.array([1.0, 0.5]), 150.0)], width=16,
                                           residual_blocks=0, particles=24, steps=20, report_every=10, dt=0.25,
                                           learning_rate=1e-2, weight_decay=0.0, seed=1), timeout=300)
    return score.model_id, ruot.model_id


@pytest.mark.timeout(300)  # the first use trains both models (compiling two programs if cold)
def test_another_token_cannot_use_a_trained_model(authed, alices_models):
    score, ruot = alices_models
    unknown = "0" * 32
    with _client(authed, ALICE) as alice, _client(authed, BOB) as bob:
        def asks(client, model_id, ruot_id):
            return (
                lambda: client.sample_probability_flow(model_id, num_samples=8, steps=5),
                lambda: client.probability_flow_log_likelihood(model_id, np.zeros((4, 2), np.float32)),
                lambda: client.result(client.submit(requests.sample_probability_flow(model_id, num_samples=8,
                                                                                     steps=5))),
                lambda: client.ruot_query(ruot_id, action=True),
                lambda: client.ruot_export(ruot_id, include_snapshots=True),
            )

        answers = []
        for theirs, never in zip(asks(bob, score, ruot), asks(bob, unknown, unknown)):
            with pytest.raises(NotFoundError) as caught:
                theirs()
            with pytest.raises(NotFoundError) as missing:
                never()
            # Exactly the answer for an id that never existed: ids do not leak.
            assert (caught.value.message.replace(score, "ID").replace(ruot, "ID")
                    == missing.value.message.replace(unknown, "ID")), (caught.value, missing.value)
            answers.append(caught.value.message)
        assert answers[0] == f"model.trained_model_id: no trained model {score} on this server"
        assert answers[2] == f"items[0].sample_probability_flow.model.trained_model_id: no trained model {score} on this server"
        assert answers[3] == answers[4] == f"model_id: no Var-RUOT model {ruot} on this server"
        # The owner uses them.
        assert alice.sample_probability_flow(score, num_samples=8, steps=5).samples.shape == (8, 2)
        assert alice.ruot_query(ruot, action=True).action > 0
        assert alice.ruot_export(ruot).model_id == ruot
    # Stored with the owner's identity, never the token.
    import json
    import pathlib

    data = pathlib.Path(authed.config.data_dir)
    assert json.loads((data / "models" / score / "model.json").read_text())["owner"] == "alice"
    assert json.loads((data / "ruot_models" / ruot / "model.json").read_text())["owner"] == "alice"


def test_models_without_an_owner_are_the_anonymous_owners(tmp_path):
    """Models stored before owners were recorded: anyone's with auth off, nobody's with tokens."""
    import json

    from monge.server.models import score as pfode_models
    from monge.server.models import ruot as ruot_models
    from monge.server.errors import NotFound

    stored = pfode_models.StoredModel(2, (4,), 2, "noise", {"w": np.zeros(2)})
    mine = pfode_models.save(tmp_path, stored, {}, owner="alice")
    assert pfode_models.load(tmp_path, mine, "alice").dim == 2
    with pytest.raises(pfode_models.ModelNotFound, match=f"no trained model {mine} on this server"):
        pfode_models.load(tmp_path, mine, "bob")
    description = tmp_path / "models" / mine / "model.json"
    description.write_text(json.dumps({k: v for k, v in json.loads(description.read_text()).items() if k != "owner"}))
    assert pfode_models.load(tmp_path, mine).dim == 2
    with pytest.raises(pfode_models.ModelNotFound):
        pfode_models.load(tmp_path, mine, "alice")

    ruot_id = ruot_models.save(tmp_path, {"times": np.zeros(2)}, {"dim": 2}, [], {}, owner="bob")
    assert ruot_models.load(tmp_path, ruot_id, "bob").settings == {"dim": 2}
    for owner in ("alice", ""):
        with pytest.raises(NotFound, match=f"^model_id: no Var-RUOT model {ruot_id} on this server$"):
            ruot_models.load(tmp_path, ruot_id, owner)
        with pytest.raises(NotFound):
            ruot_models.load_snapshots(tmp_path, ruot_id, owner)


# -- TLS ---------------------------------------------------------------------------------


def _certificates(directory):
    """A CA and a server certificate for 127.0.0.1 and localhost that it signed, as PEM
    files; and a second CA that signed nothing."""
    x509 = pytest.importorskip("cryptography.x509", reason="the test extra `cryptography` makes certificates")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def certificate(subject, key, issuer, issuer_key, *, ca, names=()):
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def pem(cert):
        return cert.public_bytes(serialization.Encoding.PEM)

    ca_key, other_key, server_key = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    ca = certificate("monge test CA", ca_key, "monge test CA", ca_key, ca=True)
    other = certificate("another CA", other_key, "another CA", other_key, ca=True)
    server = certificate("127.0.0.1", server_key, "monge test CA", ca_key, ca=False,
                         names=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    files = {"ca.pem": pem(ca), "other-ca.pem": pem(other), "server.pem": pem(server),
             "server.key": server_key.private_bytes(serialization.Encoding.PEM,
                                                    serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption())}
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return {name: str(directory / name) for name in files}


@pytest.fixture(scope="module")
def tls(make_module_server, tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    files = _certificates(directory)
    token_file = directory / "tokens"
    token_file.write_text(f"# name:token, one a line\nalice:{ALICE}\n\n{CAROL}\n")
    server = make_module_server(tls_cert=files["server.pem"], tls_key=files["server.key"],
                                token_file=str(token_file), grace_seconds=1.0)
    return server, files, directory


def test_tls_call_succeeds_with_the_ca_and_fails_without(tls):
    server, files, _ = tls
    with Client(server.target, root_certificates=files["ca.pem"], token=ALICE, timeout=30) as alice:
        assert "Sinkhorn" in alice.info().solvers
        job = alice.submit(_request(5))
        assert list(alice.watch(job))[-1].state == "succeeded"  # a stream with call credentials
    with open(files["ca.pem"], "rb") as pem:  # PEM bytes work as well as a path
        with Client(server.target, root_certificates=pem.read(), timeout=30) as tokenless:
            with pytest.raises(UnauthenticatedError):
                tokenless.info()
    for kwargs in ({}, {"root_certificates": files["other-ca.pem"]}):  # plaintext; a CA that did not sign
        with Client(server.target, token=ALICE, timeout=10, **kwargs) as refused:
            with pytest.raises(UnavailableError):
                refused.info()


def test_cli_reaches_a_tls_server_with_a_token(tls, capsys, monkeypatch):
    server, files, directory = tls
    (directory / "my-token").write_text(f"{CAROL}\n")
    common = ["--target", server.target, "--tls-ca", files["ca.pem"], "--timeout", "30"]
    assert cli_main(["info", *common, "--token-file", str(directory / "my-token")]) == 0
    assert "solvers:" in capsys.readouterr().out
    monkeypatch.setenv("MONGE_TOKEN", ALICE)
    assert cli_main(["info", *common]) == 0
    monkeypatch.setenv("MONGE_TOKEN", "wrong-token-000")
    assert cli_main(["info", *common]) == 2
    assert "UNAUTHENTICATED" in capsys.readouterr().err
    assert cli_main(["health", "--target", server.target, "--tls-ca", files["ca.pem"]]) == 0


# -- where the server may listen ---------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "solver.example"])
def test_non_loopback_bind_needs_tls_and_tokens_or_insecure(host, tmp_path):
    with pytest.raises(ValueError, match=f"refusing to listen on {host}.*no TLS.*and no tokens.*--insecure"):
        ServerConfig(host=host, data_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"has no tokens \(--token-file") as caught:
        ServerConfig(host=host, tls_cert="c.pem", tls_key="k.pem", data_dir=str(tmp_path))
    assert "no TLS" not in str(caught.value)
    ServerConfig(host=host, tls_cert="c.pem", tls_key="k.pem", tokens=(ALICE,), data_dir=str(tmp_path))
    ServerConfig(host=host, insecure=True, data_dir=str(tmp_path))
    for loopback in ("127.0.0.1", "127.3.2.1", "::1", "localhost"):
        ServerConfig(host=loopback, data_dir=str(tmp_path))


def test_serve_refuses_with_a_clear_message(capsys):
    with pytest.raises(SystemExit) as caught:
        cli_main(["serve", "--host", "0.0.0.0", "--port", "0"])
    assert "refusing to listen on 0.0.0.0" in str(caught.value)
    assert "--insecure" in str(caught.value)


def test_the_metrics_endpoint_stays_on_loopback_unless_insecure(tmp_path):
    # Plain HTTP without tokens: TLS and tokens on the gRPC port do not cover it.
    secured = dict(host="0.0.0.0", tls_cert="c.pem", tls_key="k.pem", tokens=(ALICE,), data_dir=str(tmp_path))
    for host in ("0.0.0.0", "::", "192.0.2.7", "metrics.example"):
        with pytest.raises(ValueError, match=f"refusing to serve metrics on {host} .*no TLS and no tokens.*--insecure"):
            ServerConfig(metrics_port=9464, metrics_host=host, **secured)
        ServerConfig(metrics_port=9464, metrics_host=host, insecure=True, data_dir=str(tmp_path))
    assert ServerConfig(metrics_port=9464, **secured).metrics_host == "127.0.0.1"  # the default, whatever --host
    ServerConfig(metrics_port=None, metrics_host="0.0.0.0", data_dir=str(tmp_path))  # no endpoint, nothing to refuse
    with pytest.raises(SystemExit) as caught:
        cli_main(["serve", "--port", "0", "--metrics-port", "0", "--metrics-host", "0.0.0.0"])
    assert "refusing to serve metrics on 0.0.0.0" in str(caught.value)


def test_the_metrics_endpoint_listens_where_it_is_told(make_server):
    server = make_server(metrics_port=0)
    assert server.running.metrics._http.server_address[0] == "127.0.0.1"


def test_a_bad_token_file_stops_the_start(tmp_path):
    token_file = tmp_path / "tokens"
    for text, message in (("# only a comment\n", "no tokens"), ("short\n", "entry 1 is not a token"),
                          (f"a:{ALICE}\nb:{ALICE}\n", "entry 2 repeats a token"),
                          (f"a:{ALICE}\na:{BOB}\n", "entry 2 repeats the name")):
        token_file.write_text(text)
        config = ServerConfig(port=0, token_file=str(token_file), data_dir=str(tmp_path))
        with pytest.raises(ValueError, match=message):
            asyncio.run(start(config))  # before any worker starts


# -- the job store -----------------------------------------------------------------------


def test_a_database_from_before_owners_is_migrated(tmp_path):
    from monge.server.jobs.store import JobStore

    database = sqlite3.connect(tmp_path / "jobs.sqlite3")
    database.executescript("""
        CREATE TABLE jobs (job_id TEXT PRIMARY KEY, request_id TEXT UNIQUE, state TEXT NOT NULL,
            item_count INTEGER NOT NULL, failed_items INTEGER NOT NULL DEFAULT 0,
            attempts INTEGER NOT NULL DEFAULT 0, progress TEXT NOT NULL DEFAULT '{}',
            error_code INTEGER NOT NULL DEFAULT 0, error_message TEXT NOT NULL DEFAULT '',
            created REAL NOT NULL, started REAL, finished REAL, sequence INTEGER NOT NULL);
        CREATE INDEX jobs_by_state ON jobs (state, sequence);
        INSERT INTO jobs (job_id, request_id, state, item_count, created, sequence)
            VALUES ('old-job', 'req-1', 'succeeded', 1, 1.0, 1);
    """)
    database.close()
    store = JobStore(tmp_path)
    try:
        old = store.get("old-job")
        assert old.owner == "" and old.request_id == "req-1" and old.state == "succeeded"
        assert store.by_request_id("req-1").job_id == "old-job"
        mine, created = store.create(b"", 1, "req-1", owner="alice")  # no longer unique across owners
        assert created and mine.job_id != "old-job" and mine.sequence == 2
        assert store.create(b"", 1, "req-1", owner="alice") == (mine, False)
        assert [r.job_id for r in store.list(owner="")] == ["old-job"]
    finally:
        store.close()
    JobStore(tmp_path).close()  # opening a migrated database again changes nothing
