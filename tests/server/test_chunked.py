import threading

import numpy as np
import pytest

from monge.server.chunked import chunk_size, run_in_chunks
from monge.solvers import sinkhorn
from monge.solvers.loop import Status


@pytest.mark.parametrize("wanted,remaining,expected", [(160, 10_000, 160), (160, 100, 100), (500, 10_000, 320), (160, 7, 7), (7, 100, 7)])
def test_chunk_sizes_are_few_and_bounded(wanted, remaining, expected):
    assert chunk_size(wanted, remaining) == expected


def _solver(rng):
    x, y = rng.normal(size=(40, 2)), rng.normal(size=(40, 2)) + 1

    def solve_chunk(iterations, init):
        return sinkhorn(x, y, epsilon=0.1, threshold=1e-10, max_iterations=iterations, init=init)

    return x, y, solve_chunk


def test_chunks_reach_the_same_answer_as_one_solve(rng):
    x, y, solve_chunk = _solver(rng)
    whole = sinkhorn(x, y, epsilon=0.1, threshold=1e-10, max_iterations=50_000)
    chunked = run_in_chunks(solve_chunk, lambda o: (o.f, o.g), max_iterations=50_000,
                            stop=threading.Event(), first_chunk=20)
    assert bool(whole.converged) and bool(chunked.converged)
    np.testing.assert_allclose(float(chunked.cost), float(whole.cost), rtol=1e-9)


def test_stop_is_noticed_between_chunks(rng):
    _, _, solve_chunk = _solver(rng)
    stop = threading.Event()
    stop.set()
    out = run_in_chunks(solve_chunk, lambda o: (o.f, o.g), max_iterations=50_000, stop=stop, first_chunk=20)
    assert int(out.status) == Status.CANCELLED
    assert int(out.iterations) == 20


@pytest.mark.parametrize("work,expected", [(1, 2560), (1600, 2560), (250_000, 160), (64e6, 10)])
def test_chunk_for_size_is_bounded(work, expected):
    from monge.server.chunked import chunk_for_size

    assert chunk_for_size(work) == expected
