"""Queue priorities on a real server and a real worker pool: calls overtake queued job
items, and a running training gives way to them and resumes where it was."""

import asyncio
import tempfile
import time

import grpc
import numpy as np
import pytest

from monge.client import Client, InvalidArgumentError, requests

DATA = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
TRAINING = dict(hidden=(16, 16), time_embedding_dim=4, steps=1500, batch_size=256, report_every=100, seed=0)


def test_a_call_overtakes_queued_job_items():
    from monge.server.config import ServerConfig
    from monge.server.runtime.pool import WorkerPool
    from tests.conftest import _COMPILE_CACHE

    x = np.random.default_rng(1).normal(size=(40, 2))
    payload = requests.sinkhorn(x, x + 1.0, epsilon=0.1).SerializeToString()

    async def scenario():
        pool = WorkerPool(ServerConfig(data_dir=tempfile.mkdtemp()), workers=1, cache_dir=_COMPILE_CACHE)
        await pool.start()
        finished = []

        async def run(name, level):
            await pool.run("sinkhorn", payload, priority=level)
            finished.append(name)

        try:
            # The first item takes the worker; the second waits, and the call sent after it goes first.
            await asyncio.gather(run("running item", 2), run("queued item", 2), run("call", 1))
        finally:
            await pool.close()
        return finished

    assert asyncio.run(asyncio.wait_for(scenario(), 120)) == ["running item", "call", "queued item"]


def test_cancelling_a_training_while_it_has_given_way_frees_its_worker():
    from monge.server.config import ServerConfig
    from monge.server.runtime.pool import WorkerPool
    from tests.conftest import _COMPILE_CACHE
    from helpers import slow_sinkhorn

    endless = requests.train_score_model(DATA, **dict(TRAINING, steps=10**6)).SerializeToString()
    slow_call = slow_sinkhorn(iterations=30_000).SerializeToString()
    x = np.random.default_rng(1).normal(size=(40, 2))
    quick_call = requests.sinkhorn(x, x + 1.0, epsilon=0.1).SerializeToString()

    async def scenario():
        pool = WorkerPool(ServerConfig(data_dir=tempfile.mkdtemp()), workers=1, cache_dir=_COMPILE_CACHE)
        await pool.start()
        worker = pool._workers[0]
        try:
            await pool.run("sinkhorn", slow_call)  # compiled before the training holds the worker
            progress = []
            training = asyncio.ensure_future(pool.run("train_score_model", endless, progress.append, priority=2))
            while not progress:
                if training.done():
                    training.result()  # the error, if it failed
                await asyncio.sleep(0.02)
            call = asyncio.ensure_future(pool.run("sinkhorn", slow_call, priority=1))
            while worker.yielded_task is None:  # the training has given way to the call
                assert not call.done(), "the call finished before the training gave way"
                await asyncio.sleep(0.005)
            training.cancel()
            await call
            call_done = time.monotonic()
            with pytest.raises(asyncio.CancelledError):
                await training
            # Stopped when it resumed: the worker is free for the next call at once.
            await asyncio.wait_for(pool.run("sinkhorn", quick_call, priority=2), 30)
            freed = time.monotonic() - call_done
            assert worker.task is None and worker.yielded_task is None
            return freed
        finally:
            await pool.close()

    assert asyncio.run(asyncio.wait_for(scenario(), 180)) < 2.0


def test_a_training_gives_way_to_calls_and_resumes_where_it_was(client):
    alone = client.result(client.train_score_model(DATA, **TRAINING))
    x = np.random.default_rng(1).normal(size=(200, 2))
    client.sinkhorn(x, x + 1.0, epsilon=0.5)  # compiled before the training starts
    job = client.train_score_model(DATA, **TRAINING)
    deadline = time.monotonic() + 60
    while client.job(job).progress["iteration"] == 0:
        assert time.monotonic() < deadline, "training never reported progress"
        time.sleep(0.02)
    calls = 0
    while not client.job(job).done:
        assert np.isfinite(client.sinkhorn(x, x + 1.0, epsilon=0.5).cost)
        calls += 1
    info = client.wait(job)
    given_way = client.result(job)
    assert calls >= 1 and info.progress["yielded_seconds"] > 0  # it gave way, and says how long
    # Resumed where it was: the same losses, step for step, as the run nobody interrupted.
    np.testing.assert_array_equal(given_way.losses, alone.losses)
    assert given_way.losses.shape == (15,)


def test_a_priority_outside_the_levels_is_refused_naming_the_field(server, client):
    x = np.zeros((4, 2))
    with Client(server.target, timeout=30, priority=3) as low:
        with pytest.raises(InvalidArgumentError) as caught:
            low.sinkhorn(x, x + 1.0)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in caught.value.violations] == ["priority"]
    with pytest.raises(InvalidArgumentError) as caught:
        client.submit(requests.sinkhorn(x, x + 1.0), priority=9)
    assert [v.field for v in caught.value.violations] == ["priority"]
    item = requests.sinkhorn(x, x + 1.0)
    item.priority = 7
    with pytest.raises(InvalidArgumentError) as caught:
        client.submit(item)
    assert [v.field for v in caught.value.violations] == ["items[0].sinkhorn.priority"]
