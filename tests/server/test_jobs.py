"""Jobs through the real server and client: submit, wait, watch, cancel, batches."""

import os
import signal
import time

import grpc
import numpy as np
import ot
import pytest

from monge.client import Client, InvalidArgumentError, NotFoundError, requests
from monge.v1 import service_pb2_grpc
from helpers import point_clouds, slow_sinkhorn, wait_until








def test_submit_wait_result_matches_pot(client):
    x, y = point_clouds(1)
    job = client.submit(requests.sinkhorn(x, y, epsilon=0.5, threshold=1e-11))
    assert job.state in ("queued", "running", "succeeded") and job.item_count == 1
    r = client.result(job)
    reference = ot.sinkhorn2(np.full(30, 1 / 30), np.full(30, 1 / 30), ot.dist(x, y), 0.5, stopThr=1e-14)
    assert r.converged and r.cost == pytest.approx(reference, rel=1e-6)
    assert client.job(job).state == "succeeded"


def test_divergence_and_batch_items(client):
    # One job, one SinkhornDivergence item and one SinkhornBatch item; each result is
    # the unary call's, and a bad batch member fails its item with the member's field.
    x, y = point_clouds(5)
    divergence = requests.sinkhorn_divergence(x, y, epsilon=0.5, threshold=1e-10)
    batch = requests.sinkhorn_batch([(x, y), (x[:20], y[:25])], epsilon=0.5, threshold=1e-10)
    bad = requests.sinkhorn_batch([(x, y), (x, y[:, :1])], epsilon=0.5)
    results = client.result(client.submit([divergence, batch, bad]))
    assert [r.ok for r in results] == [True, True, False]
    d, b = results[0].value, results[1].value
    unary = client.sinkhorn_divergence(x, y, epsilon=0.5, threshold=1e-10)
    assert d.converged and d.divergence == pytest.approx(unary.divergence, rel=1e-9)
    assert len(b) == 2 and all(one.converged for one in b)
    assert b[1].cost == pytest.approx(client.sinkhorn(x[:20], y[:25], epsilon=0.5, threshold=1e-10).cost, rel=1e-9)
    assert results[2].error.field.startswith("items[2].sinkhorn_batch.problems[1]")
    # What `monge jobs result` prints and saves for them.
    from monge.client.cli_common import result_arrays, summary

    assert summary(d).startswith(f"divergence {d.divergence:.10g}, converged")
    assert summary(b).startswith("2 problems, 2 converged")
    assert result_arrays(d)["xy_objective"] == d.xy.objective
    np.testing.assert_array_equal(result_arrays(b)["cost"], [one.cost for one in b])


def test_same_request_id_is_the_same_job(client):
    x, y = point_clouds(2)
    first = client.submit(requests.sinkhorn(x, y, epsilon=0.5), request_id="idem-1")
    second = client.submit(requests.sinkhorn(x, y, epsilon=0.5), request_id="idem-1")
    assert first.job_id == second.job_id
    client.wait(first)
    third = client.submit(requests.sinkhorn(x, y, epsilon=0.5), request_id="idem-1")
    assert third.job_id == first.job_id and third.attempts == 1
    assert sum(j.request_id == "idem-1" for j in client.jobs()) == 1


def test_batch_item_fails_alone(client):
    x, y = point_clouds(3)
    batch = [requests.sinkhorn(x, y, epsilon=0.5), requests.sinkhorn(x, y, epsilon=-1.0),
             requests.sinkhorn(x, y[:, :1], epsilon=0.5), requests.sinkhorn(x, y, epsilon=0.2)]
    results = client.result(client.submit(batch))
    assert [r.ok for r in results] == [True, False, False, True]
    assert results[1].error.field == "items[1].sinkhorn.epsilon"
    assert results[2].error.field == "items[2].sinkhorn.y"
    assert results[3].value.cost == pytest.approx(client.sinkhorn(x, y, epsilon=0.2).cost, rel=1e-9)
    assert client.job(client.jobs()[0]).failed_items == 2


def test_single_bad_request_is_refused_at_submit(client):
    x, y = point_clouds(4)
    with pytest.raises(InvalidArgumentError) as caught:
        client.submit(requests.sinkhorn(x, y, epsilon=0.0))
    assert caught.value.field == "items[0].sinkhorn.epsilon"


def test_unknown_job_is_not_found(client):
    with pytest.raises(NotFoundError):
        client.job("no-such-job")


def test_watch_streams_progress_then_the_result(client):
    job = client.submit(slow_sinkhorn(iterations=30_000))
    events = list(client.watch(job, timeout=120))
    assert events[-1].done and events[-1].results is not None
    running = [e for e in events if e.state == "running" and e.progress["iteration"] > 0]
    assert running, "no progress event before the result"
    iterations = [e.progress["iteration"] for e in running]
    assert iterations == sorted(iterations)
    assert events[-1].results[0].value.iterations == 30_000


def test_cancel_frees_the_worker(client):
    job = client.submit(slow_sinkhorn(seed=5))
    wait_until(lambda: client.job(job).state == "running" and client.job(job).progress["iteration"] > 0)
    cancelled_at = time.monotonic()
    assert client.cancel(job).state == "cancelled"
    wait_until(lambda: not client.info().workers[0].busy, timeout=5.0, every=0.02)
    assert time.monotonic() - cancelled_at < 1.5  # the worker stopped at its next chunk
    x, y = point_clouds(6, n=10)
    assert client.sinkhorn(x, y, epsilon=1.0).converged  # the (single) worker serves again
    assert client.job(job).state == "cancelled"


def test_full_queue_is_resource_exhausted(make_server):
    server = make_server(queue_limit=1, max_batch_size=1)  # the pool's own queue, no batching
    with Client(server.target) as c, grpc.insecure_channel(server.target) as channel:
        stub = service_pb2_grpc.SolverServiceStub(channel)
        futures = [stub.Sinkhorn.future(slow_sinkhorn(seed=i, iterations=200_000), timeout=60) for i in range(2)]
        wait_until(lambda: c.info().workers[0].busy)
        with pytest.raises(grpc.RpcError) as caught:
            stub.Sinkhorn(slow_sinkhorn(seed=9), timeout=30)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "queue is full" in caught.value.details()
        for future in futures:
            future.cancel()


def test_killed_worker_does_not_lose_the_job(make_server):
    server = make_server()
    with Client(server.target) as c:
        job = c.submit(slow_sinkhorn(seed=7, iterations=20_000))
        wait_until(lambda: c.job(job).state == "running" and c.info().workers[0].busy)
        pid = c.info().workers[0].pid
        os.kill(pid, signal.SIGKILL)
        info = c.wait(job, timeout=120)
        assert info.state == "succeeded", info
        assert info.results[0].value.iterations == 20_000
        wait_until(lambda: c.info().workers[0].pid not in (0, pid))


def test_finished_jobs_expire(make_server):
    server = make_server(job_retention_seconds=1.0)
    with Client(server.target) as c:
        x, y = point_clouds(8, n=5)
        job = c.submit(requests.sinkhorn(x, y, epsilon=1.0))
        c.wait(job)

        def gone():
            try:
                c.job(job)
            except NotFoundError:
                return True
            return False

        wait_until(gone, timeout=15)
