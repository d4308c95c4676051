"""Helpers the server and client tests share (importable: `tests/` is on pytest's path)."""

import time

import numpy as np

from monge.client import requests


def point_clouds(seed: int, n: int = 30, m: int | None = None, d: int = 2):
    """x ~ N(0, I) with n rows and y ~ N(1, I) with m (default n) rows."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(size=(n if m is None else m, d)) + 1.0


def slow_sinkhorn(seed: int = 0, iterations: int = 400_000):
    """A request that runs until its iteration cap, in many chunks: tiny epsilon and threshold."""
    x, y = point_clouds(seed, n=40)
    return requests.sinkhorn(x, y, epsilon=1e-4, threshold=1e-15, max_iterations=iterations)


def wait_until(predicate, timeout: float = 60.0, every: float = 0.05):
    """The predicate's first truthy value, polled every `every` seconds; AssertionError after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not reached in time")
