"""`--warmup N`: a default call on up to N points compiles nothing once the server serves."""

import numpy as np

from monge.client import Client
from monge.server.runtime.warmup import warmup_sizes


def _compiles(server) -> float:
    samples = server.running.metrics.compiles.collect()[0].samples
    return sum(sample.value for sample in samples if sample.name.endswith("_total"))


def test_warmed_up_calls_compile_nothing(make_server, tmp_path):
    assert warmup_sizes(24) == [16, 24]
    server = make_server(warmup=24, compile_cache_dir=str(tmp_path / "cache"))  # a cold cache
    warmed = _compiles(server)
    assert warmed > 0
    rng = np.random.default_rng(0)
    with Client(server.target, timeout=60) as client:
        for n, m, dtype in ((20, 17, np.float64), (24, 24, np.float32), (9, 12, np.float32)):
            x = rng.normal(size=(n, 2)).astype(dtype)
            y = rng.normal(size=(m, 2)).astype(dtype) + 1.0
            # epsilon and threshold are traced: any values run the warmed programs, but a
            # call that reaches its iteration cap ends on a shorter chunk, a program of its own.
            assert client.sinkhorn(x, y, epsilon=0.5, threshold=1e-4).converged
    assert _compiles(server) == warmed
    # A size above the warm-up does compile: the check above can fail.
    with Client(server.target, timeout=60) as client:
        client.sinkhorn(rng.normal(size=(40, 2)), rng.normal(size=(40, 2)))
    assert _compiles(server) > warmed
