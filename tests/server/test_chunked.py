import threading

import numpy as np
import pytest

from monge.server.runtime.chunked import chunk_size, run_in_chunks
from monge.solvers import sinkhorn
from monge.solvers.status import Status


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
    from monge.server.runtime.chunked import chunk_for_size

    assert chunk_for_size(work) == expected


def _float32_chunks(threshold):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 2)).astype(np.float32)
    y = (rng.normal(size=(100, 2)) + 1.0).astype(np.float32)

    def solve_chunk(iterations, init):
        return sinkhorn(x, y, epsilon=0.05, threshold=threshold, max_iterations=iterations, init=init,
                        method="log")

    return solve_chunk


def test_stall_is_detected_across_chunks():
    # 40-iteration chunks: each is a fresh solve, too short for the solver's own
    # detection (patience 200), so only the rule across chunks can stop this run,
    # whose float32 floor (~3e-6) is far above the threshold.
    solve_chunk = _float32_chunks(1e-12)
    out = run_in_chunks(solve_chunk, lambda o: (o.f, o.g), max_iterations=20_000, stop=threading.Event(),
                        first_chunk=40, grow=False, stall_patience=200)
    assert int(out.status) == Status.STALLED and not bool(out.converged)
    assert int(out.iterations) < 6_000 and float(out.marginal_error) < 1e-4
    off = run_in_chunks(solve_chunk, lambda o: (o.f, o.g), max_iterations=2_000, stop=threading.Event(),
                        first_chunk=40, grow=False)
    assert int(off.status) == Status.MAX_ITERATIONS and int(off.iterations) == 2_000


def test_slow_chunked_run_is_not_stalled():
    # The plateaus of a small-epsilon float64 run (see tests/solvers/sinkhorn/test_stall.py)
    # span many chunks; the rule across chunks must not stop it either. Plain Sinkhorn,
    # whose plateaus are the longest (over-relaxed, the run takes a few hundred iterations).
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 2)), rng.normal(size=(50, 2)) + 1.0

    def solve_chunk(iterations, init):
        return sinkhorn(x, y, epsilon=0.003, threshold=1e-4, max_iterations=iterations, init=init,
                        method="kernel", overrelaxation="off")

    out = run_in_chunks(solve_chunk, lambda o: (o.f, o.g), max_iterations=20_000, stop=threading.Event(),
                        first_chunk=160, grow=False, stall_patience=200)
    assert int(out.status) == Status.CONVERGED and int(out.iterations) > 5_000
