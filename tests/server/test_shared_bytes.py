"""Large worker replies cross through shared memory: the same bytes, no segment left."""

from multiprocessing import shared_memory

import numpy as np
import pytest

from monge.server.runtime.shared_bytes import THRESHOLD, SharedBytes, share, take
from monge.solvers import sinkhorn


def test_a_large_reply_round_trips_and_its_segment_is_freed():
    data = np.random.default_rng(0).bytes(THRESHOLD + 17)
    shared = share(data)
    assert isinstance(shared, SharedBytes) and shared.size == len(data)
    assert take(shared) == data
    with pytest.raises(FileNotFoundError):
        shared_memory.SharedMemory(name=shared.name)
    small = b"x" * 10
    assert share(small) is small and take(small) is small and share(None) is None


def test_a_served_plan_over_the_threshold_equals_the_in_process_one(client):
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(420, 2)), rng.normal(size=(400, 2)) + 1.0  # 1.3 MB of float64 plan
    served = client.sinkhorn(x, y, epsilon=0.5, return_plan=True)
    local = sinkhorn(x, y, epsilon=0.5)
    assert served.plan.nbytes > THRESHOLD
    np.testing.assert_allclose(served.plan, np.asarray(local.plan()), rtol=1e-12, atol=1e-300)
