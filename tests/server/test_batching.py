"""Dynamic batching and metrics through a real server: concurrent Sinkhorn calls are
merged into one vmapped worker call and still answer exactly what each asked."""

import concurrent.futures
import urllib.request

import numpy as np
import ot
import pytest

from monge.client import Client
from monge.server.runtime import sinkhorn_batch


def _problems(count, seed=0, step=(3, 2)):
    rng = np.random.default_rng(seed)
    sizes = [(20 + step[0] * i, 30 - step[1] * i) for i in range(count)]
    assert all(16 < n <= 32 and 16 < m <= 32 for n, m in sizes)  # one size bucket, (32, 32)
    problems = []
    for n, m in sizes:
        a = rng.random(n) + 0.2
        problems.append((rng.normal(size=(n, 2)), rng.normal(size=(m, 2)) + 0.7, a / a.sum()))
    return problems


def _solve_concurrently(target, problems, **settings):
    def solve(problem):
        x, y, a = problem
        with Client(target, timeout=60) as c:
            return c.sinkhorn(x, y, a=a, **settings)

    with concurrent.futures.ThreadPoolExecutor(len(problems)) as pool:
        return list(pool.map(solve, problems))


def test_frames_round_trip():
    items = [b"", b"abc", bytes(range(256)) * 3]
    assert sinkhorn_batch.unframe(sinkhorn_batch.frame(items)) == items
    with pytest.raises(ValueError):
        sinkhorn_batch.unframe(sinkhorn_batch.frame(items) + b"x")


def test_concurrent_calls_are_batched_and_each_gets_its_own_answer(make_server):
    # A long delay so that the calls, sent together, surely meet in one batch.
    server = make_server(max_batch_size=8, max_batch_delay_seconds=0.5, metrics_port=0)
    problems = _problems(4)
    epsilon = 0.2
    results = _solve_concurrently(server.target, problems, epsilon=epsilon, threshold=1e-9,
                                  return_plan=True)
    for (x, y, a), result in zip(problems, results):
        b = np.full(len(y), 1 / len(y))
        reference = ot.sinkhorn2(a, b, ot.dist(x, y), epsilon, stopThr=1e-13, numItermax=100_000)
        assert result.converged
        assert result.f.shape == (len(x),) and result.g.shape == (len(y),)
        np.testing.assert_allclose(result.cost, reference, rtol=1e-7)
        np.testing.assert_allclose(result.plan.sum(1), a, atol=1e-8)  # padding took no mass
        np.testing.assert_allclose(result.plan.sum(0), b, atol=1e-8)

    sizes = server.running.metrics.batch_size.collect()[0].samples
    count = next(s.value for s in sizes if s.name.endswith("_count"))
    total = next(s.value for s in sizes if s.name.endswith("_sum"))
    assert total == 4 and count < 4, "the concurrent calls were not merged"

    scraped = urllib.request.urlopen(
        f"http://127.0.0.1:{server.running.metrics_port}/metrics", timeout=10).read().decode()
    assert 'monge_requests_total{code="OK",method="Sinkhorn"} 4.0' in scraped
    assert "monge_batch_size_count" in scraped
    assert 'monge_compute_seconds_count{solver="sinkhorn_batch"}' in scraped
    assert "monge_queue_depth 0.0" in scraped


def test_a_batched_answer_equals_the_unbatched_one(make_server):
    problems = _problems(3, seed=1)
    settings = dict(epsilon=0.1, threshold=1e-10)
    batched = _solve_concurrently(
        make_server(max_batch_size=8, max_batch_delay_seconds=0.5).target, problems, **settings)
    alone = _solve_concurrently(make_server(max_batch_size=1).target, problems, **settings)
    for one, other in zip(batched, alone):
        np.testing.assert_allclose(one.cost, other.cost, rtol=1e-8)
        # Potentials agree up to the constant shift that Sinkhorn leaves free.
        shift = np.mean(one.f - other.f)
        np.testing.assert_allclose(one.f - shift, other.f, atol=1e-6)
        np.testing.assert_allclose(one.g + shift, other.g, atol=1e-6)


def test_errors_are_counted_by_code(server, client):
    from monge.client.errors import InvalidArgumentError

    x = np.zeros((3, 2))
    with pytest.raises(InvalidArgumentError):
        client.sinkhorn(x, np.zeros((4, 3)))
    # Balanced transport with unequal masses would never converge: refused up front.
    with pytest.raises(InvalidArgumentError) as caught:
        client.sinkhorn(x, np.ones((4, 2)), a=np.full(3, 0.5))
    assert caught.value.field == "b" and "mass" in str(caught.value)
    samples = server.running.metrics.requests.collect()[0].samples
    assert any(s.labels == {"method": "Sinkhorn", "code": "INVALID_ARGUMENT"} and s.value >= 1
               for s in samples)


def test_batching_is_off_by_default_on_cpu_workers(server):
    platforms = {d["platform"] for w in server.running.executor.describe() for d in w["devices"]}
    assert server.running.executor.max_batch == (1 if platforms == {"cpu"} else 32)


def test_items_of_a_batch_job_are_merged_beyond_two_at_a_time(make_server):
    from monge.client import requests

    server = make_server(max_batch_size=8, max_batch_delay_seconds=0.5)
    problems = _problems(8, seed=2, step=(1, 1))  # eight sizes in one bucket: one program to compile
    with Client(server.target, timeout=60) as c:
        job = c.submit([requests.sinkhorn(x, y, a=a, epsilon=0.2, threshold=1e-9) for x, y, a in problems])
        results = c.result(job)
    sizes = server.running.metrics.batch_size.collect()[0].samples
    count = next(s.value for s in sizes if s.name.endswith("_count"))
    total = next(s.value for s in sizes if s.name.endswith("_sum"))
    # Two items at a time would take at least four worker calls.
    assert total == 8 and count < 4, "job items were not merged beyond two at a time"
    assert all(r.ok for r in results)
    # Each item has its own problem's answer (POT's, as in the test of concurrent calls;
    # that a batched answer equals the unbatched one is tested above).
    for (x, y, a), result in zip(problems, results):
        b = np.full(len(y), 1 / len(y))
        reference = ot.sinkhorn2(a, b, ot.dist(x, y), 0.2, stopThr=1e-13, numItermax=100_000)
        assert result.value.converged
        np.testing.assert_allclose(result.value.cost, reference, rtol=1e-7)


def test_batch_size_counts_the_views_asked_for():
    # The dynamic batcher sizes a merge by the memory its members need: requests for
    # the plan's top-k entries or the barycentric map wait apart from plain ones and
    # merge fewer at a time (the same rule SinkhornBatch applies).
    from monge.client import requests
    from monge.server.runtime.batching import DynamicBatcher
    from monge.server.config import ServerConfig

    mib = 1 << 20
    batcher = DynamicBatcher(None, ServerConfig(max_request_memory_bytes=24 * mib),
                             max_batch=1024, max_delay=0.0)
    x = np.random.default_rng(0).normal(size=(400, 3)).astype(np.float32)

    def key(**views):
        return batcher._key("sinkhorn", requests.sinkhorn(x, x, **views).SerializeToString(), None, 1)

    plain, top_k, mapped = key(), key(plan_top_k=200), key(return_barycentric_map=True)
    assert len({plain, top_k, mapped}) == 3
    assert plain[1] == top_k[1] == mapped[1]
    assert batcher._largest(top_k) < batcher._largest(plain)
    assert batcher._largest(mapped) < batcher._largest(plain)
    assert batcher._largest(top_k) == sinkhorn_batch.max_batch_for_memory(
        plain[1], 24 * mib, top_k=200)
    assert batcher._largest(mapped) == sinkhorn_batch.max_batch_for_memory(
        plain[1], 24 * mib, dimension=3)


def test_batches_of_any_count_reuse_the_programs_of_one_problem():
    # On CPU a merged batch solves its members in turn; its chunk of iterations (a
    # static cap) must not depend on how many were merged, or every batch size
    # compiles its own programs.
    import threading

    from monge.client import requests
    from monge.server.calls import sinkhorn as sinkhorn_call
    from monge.server.config import ServerConfig
    from monge.solvers.sinkhorn import default_vectorization, solve

    assert default_vectorization() == "loop"  # CI's CPU
    rng = np.random.default_rng(5)
    config = ServerConfig()

    def calls(count):
        return [sinkhorn_call.parse(requests.sinkhorn(rng.normal(size=(300, 2)), rng.normal(size=(300, 2)),
                                                      epsilon=0.5, threshold=1e-4), config)
                for _ in range(count)]

    stop = threading.Event()
    sinkhorn_batch.solve_group(calls(1), stop)
    compiled = solve._cache_size()
    for count in (2, 3, 5):
        results = sinkhorn_batch.solve_group(calls(count), stop)
        assert len(results) == count and all(numbers["status"] == 0 for numbers, _, _ in results)
    assert solve._cache_size() == compiled
