"""The server on a real Dask cluster (`--cluster`): a LocalCluster with two worker
processes, the real gRPC server and the real client."""

import concurrent.futures
import os
import signal
import subprocess
import sys
import time
import urllib.request

import grpc
import numpy as np
import ot
import pytest

from monge.client import Client, requests
from monge.v1 import service_pb2_grpc
from helpers import point_clouds, slow_sinkhorn, wait_until

distributed = pytest.importorskip("distributed")








@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, host="127.0.0.1",
                                  dashboard_address=":0") as running:
        yield running


@pytest.fixture(scope="module")
def gpu_cluster():
    with distributed.LocalCluster(n_workers=1, processes=True, threads_per_worker=2, host="127.0.0.1",
                                  dashboard_address=":0", resources={"GPU": 1}) as running:
        yield running


@pytest.fixture
def dask_client(cluster, make_server):
    """A server of its own for each test (cheap: it starts no worker process)."""
    server = make_server(cluster=cluster.scheduler_address, grace_seconds=1.0)
    with Client(server.target, timeout=60) as c:
        yield c


def _worker_pids(cluster) -> dict[str, int]:
    with distributed.Client(cluster.scheduler_address, set_as_default=False) as c:
        return c.run(os.getpid)


def test_info_lists_the_dask_workers(cluster, dask_client):
    info = dask_client.info()
    assert info.cluster == cluster.scheduler_address
    assert {w.address: w.pid for w in info.workers} == _worker_pids(cluster)
    assert all(w.devices and w.devices[0].platform == info.backend for w in info.workers)
    assert sorted(w.index for w in info.workers) == [0, 1]


def test_sinkhorn_on_the_cluster_equals_the_local_pool(dask_client, client):
    x, y = point_clouds(1)
    on_cluster = dask_client.sinkhorn(x, y, epsilon=0.5, threshold=1e-10)
    local = client.sinkhorn(x, y, epsilon=0.5, threshold=1e-10)
    assert on_cluster.converged and on_cluster.iterations == local.iterations
    assert on_cluster.cost == pytest.approx(local.cost, rel=1e-12)
    np.testing.assert_allclose(on_cluster.f, local.f, rtol=1e-12, atol=1e-12)
    assert sum(w.tasks_done for w in dask_client.info().workers) >= 1


def test_batch_job_completes_on_the_cluster(dask_client):
    x, y = point_clouds(2)
    batch = [requests.sinkhorn(x, y, epsilon=e) for e in (0.5, 0.3, 0.2)] + [requests.sinkhorn(x, y, epsilon=-1.0)]
    before = sum(w.tasks_done for w in dask_client.info().workers)
    job = dask_client.submit(batch)
    results = dask_client.result(job, timeout=60)
    assert [r.ok for r in results] == [True, True, True, False]
    assert results[3].error.field == "items[3].sinkhorn.epsilon"
    assert results[2].value.cost == pytest.approx(dask_client.sinkhorn(x, y, epsilon=0.2).cost, rel=1e-12)
    assert dask_client.job(job).state == "succeeded"
    # The bad item is refused by the server before it reaches the cluster.
    assert sum(w.tasks_done for w in dask_client.info().workers) == before + 4


def test_concurrent_calls_are_batched_on_the_cluster(cluster, make_server):
    """Dynamic batching in front of the cluster: concurrent small Sinkhorn calls go to a
    Dask worker as one vmapped call, each gets its own answer, and the metrics hear of
    the worker's compute time."""
    server = make_server(cluster=cluster.scheduler_address, max_batch_size=8, max_batch_delay_seconds=0.5,
                         metrics_port=0)
    rng = np.random.default_rng(9)
    problems = [(rng.normal(size=(20 + i, 2)), rng.normal(size=(30 - i, 2)) + 0.7) for i in range(4)]

    def solve(problem):
        with Client(server.target, timeout=60) as c:
            return c.sinkhorn(*problem, epsilon=0.2, threshold=1e-10)

    with concurrent.futures.ThreadPoolExecutor(len(problems)) as pool:
        results = list(pool.map(solve, problems))
    for (x, y), result in zip(problems, results):
        reference = ot.sinkhorn2(ot.unif(len(x)), ot.unif(len(y)), ot.dist(x, y), 0.2, stopThr=1e-13,
                                 numItermax=100_000)
        assert result.converged and result.cost == pytest.approx(reference, rel=1e-7)
    sizes = server.running.metrics.batch_size.collect()[0].samples
    assert next(s.value for s in sizes if s.name.endswith("_count")) < 4, "the calls were not merged"
    scraped = urllib.request.urlopen(
        f"http://127.0.0.1:{server.running.metrics_port}/metrics", timeout=10).read().decode()
    assert 'monge_compute_seconds_count{solver="sinkhorn_batch"}' in scraped


def test_cancel_frees_the_dask_worker(cluster, dask_client):
    job = dask_client.submit(slow_sinkhorn(seed=3, iterations=1_000_000))
    wait_until(lambda: dask_client.job(job).progress.get("iteration", 0) > 0)
    assert any(w.busy for w in dask_client.info().workers)
    cancelled_at = time.monotonic()
    assert dask_client.cancel(job).state == "cancelled"
    wait_until(lambda: not any(w.busy for w in dask_client.info().workers), timeout=10.0)
    assert time.monotonic() - cancelled_at < 2.0  # stopped at its next chunk, not after 1M iterations
    # The cancel flag (a distributed.Event on the scheduler) is dropped once the call ended.
    events = cluster.scheduler.extensions["events"]
    wait_until(lambda: not any(str(name).startswith("monge-cancel-") for name in events._events), timeout=5.0)


def test_full_queue_is_resource_exhausted(cluster, make_server):
    # Batching off: the slow calls must not be merged into one batch.
    server = make_server(cluster=cluster.scheduler_address, queue_limit=1, grace_seconds=1.0, max_batch_size=1)
    with Client(server.target) as c, grpc.insecure_channel(server.target) as channel:
        stub = service_pb2_grpc.SolverServiceStub(channel)
        futures = [stub.Sinkhorn.future(slow_sinkhorn(seed=i, iterations=1_000_000), timeout=60) for i in range(2)]
        wait_until(lambda: all(w.busy for w in c.info().workers))
        futures.append(stub.Sinkhorn.future(slow_sinkhorn(seed=2, iterations=1_000_000), timeout=60))
        with pytest.raises(grpc.RpcError) as caught:
            stub.Sinkhorn(slow_sinkhorn(seed=9, iterations=100), timeout=30)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "queue is full" in caught.value.details()
        for future in futures:
            future.cancel()
        wait_until(lambda: not any(w.busy for w in c.info().workers), timeout=30.0)


def _executing(dask_worker):
    return len(dask_worker.state.executing)


def test_workers_with_gpu_resources_run_one_call_each(gpu_cluster, make_server):
    """Workers started with `--resources GPU=1` (here CPU workers that claim one): calls
    ask for a GPU, so a two-thread worker still runs one call at a time."""
    server = make_server(cluster=gpu_cluster.scheduler_address, grace_seconds=1.0, max_batch_size=1)
    assert server.running.executor.capacity == 1
    with Client(server.target, timeout=60) as c, \
            distributed.Client(gpu_cluster.scheduler_address, set_as_default=False) as dask:
        job = c.submit([slow_sinkhorn(seed=5, iterations=1_000_000), slow_sinkhorn(seed=6, iterations=1_000_000)])
        wait_until(lambda: c.job(job).progress.get("iteration", 0) > 0)
        tasks = [t for key, t in gpu_cluster.scheduler.tasks.items() if str(key).startswith("monge-")]
        assert len(tasks) == 2 and all(t.resource_restrictions == {"GPU": 1} for t in tasks)
        for _ in range(10):
            assert list(dask.run(_executing).values()) == [1]
            time.sleep(0.05)
        c.cancel(job)
        x, y = point_clouds(7, n=10)
        assert c.sinkhorn(x, y, epsilon=1.0).converged


def test_killed_worker_does_not_lose_the_job(cluster, dask_client):
    """Runs last in this module: the nanny replaces the killed worker process."""
    iterations = 200_000  # about 2 s: the served solve runs at in-process speed
    job = dask_client.submit(slow_sinkhorn(seed=4, iterations=iterations))
    wait_until(lambda: dask_client.job(job).progress.get("iteration", 0) > 0)
    busy = [w for w in dask_client.info().workers if w.busy]
    assert len(busy) == 1
    os.kill(busy[0].pid, signal.SIGKILL)
    info = dask_client.wait(job, timeout=60)
    assert info.state == "succeeded", info
    assert info.results[0].value.iterations == iterations
    wait_until(lambda: busy[0].address not in {w.address for w in dask_client.info().workers}, timeout=30.0)
    assert sum(w.tasks_done for w in dask_client.info().workers) == 1  # done by a survivor


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Processes:
    """`dask scheduler` and `dask worker` processes of a test, killed at its end (after
    its servers stopped, when requested before `make_server`)."""

    def __init__(self):
        self.address = f"tcp://127.0.0.1:{_free_port()}"
        self.started: list[subprocess.Popen] = []

    def start(self, *args) -> subprocess.Popen:
        self.started.append(subprocess.Popen([sys.executable, "-m", "dask", *args, "--no-dashboard"],
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return self.started[-1]

    def scheduler(self) -> subprocess.Popen:
        return self.start("scheduler", "--host", "127.0.0.1", "--port", self.address.rsplit(":", 1)[1])

    def worker(self) -> subprocess.Popen:
        return self.start("worker", self.address, "--nthreads", "1", "--no-nanny")

    def kill_all(self) -> None:
        for process in self.started:
            process.kill()
            process.wait()


@pytest.fixture
def dask_processes():
    processes = _Processes()
    yield processes
    processes.kill_all()


def test_job_survives_a_scheduler_restart(dask_processes, make_server):
    """The scheduler (and with it its worker) is killed mid-job; a new one starts on the
    same address: the server reconnects, sends the call again, and the job completes."""
    dask_processes.scheduler()
    dask_processes.worker()
    server = make_server(cluster=dask_processes.address, grace_seconds=1.0)
    with Client(server.target, timeout=60) as c:
        job = c.submit(slow_sinkhorn(seed=8, iterations=2_000))
        wait_until(lambda: c.job(job).progress.get("iteration", 0) > 0)
        dask_processes.kill_all()
        dask_processes.scheduler()
        worker = dask_processes.worker()
        info = c.wait(job, timeout=60)
        assert info.state == "succeeded", info
        assert info.results[0].value.iterations == 2_000
        wait_until(lambda: [w.pid for w in c.info().workers] == [worker.pid], timeout=30.0)
