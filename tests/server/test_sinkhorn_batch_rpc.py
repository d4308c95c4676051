"""SinkhornBatch through the real server: many problems in one call, grouped into
vmapped solves where they share a shape bucket, each answer the same as its own call."""

import numpy as np
import ot
import pytest

from monge.client import InvalidArgumentError, requests


def _points(rng, n, m, d=2):
    a = rng.random(n) + 0.2
    return rng.normal(size=(n, d)), rng.normal(size=(m, d)) + 0.8, a / a.sum()


# Sizes that share the solver's size bucket (24, 32) one by one and the batch's
# power-of-two bucket (32, 32): few programs to compile on a shared machine.
SIZES = [(20, 30), (22, 28), (24, 32)]


def test_batch_matches_one_by_one_in_order(client):
    rng = np.random.default_rng(11)
    settings = dict(epsilon=0.3, threshold=1e-11, return_plan=True)
    problems = []
    for n, m in SIZES:  # one batch key: one vmapped group
        x, y, a = _points(rng, n, m)
        problems.append(dict(x=x, y=y, a=a, **settings))
    x, y, a = _points(rng, 20, 30)
    # Another epsilon is another key: this one is solved alone, between the others.
    problems.insert(1, dict(x=x, y=y, a=a, plan_top_k=2, **(settings | dict(epsilon=0.4))))

    batch = client.sinkhorn_batch(problems)
    assert len(batch) == len(problems)
    assert (batch.vectorized_groups, batch.single_solves) == (1, 1)
    for problem, result in zip(problems, batch):
        single = client.sinkhorn(**problem)
        assert result.converged and single.converged
        assert result.f.shape == single.f.shape and result.g.shape == single.g.shape
        assert result.cost == pytest.approx(single.cost, rel=1e-9)
        np.testing.assert_allclose(result.plan, single.plan, atol=1e-12)
        if problem.get("plan_top_k"):
            np.testing.assert_allclose(result.sparse_plan.toarray(), single.sparse_plan.toarray(), atol=1e-12)
        b = np.full(len(problem["y"]), 1 / len(problem["y"]))
        reference = ot.sinkhorn2(problem["a"], b, ot.dist(problem["x"], problem["y"]), problem["epsilon"],
                                 stopThr=1e-14, numItermax=100_000)
        assert result.cost == pytest.approx(reference, rel=1e-7)


def test_tuples_with_shared_settings(client):
    rng = np.random.default_rng(12)
    pairs = [_points(rng, n, m)[:2] for n, m in SIZES]
    batch = client.sinkhorn_batch(pairs, epsilon=0.5, threshold=1e-10, return_barycentric_map=True)
    for (x, y), result in zip(pairs, batch):
        single = client.sinkhorn(x, y, epsilon=0.5, threshold=1e-10, return_barycentric_map=True)
        np.testing.assert_allclose(result.barycentric_map, single.barycentric_map, rtol=1e-9)


def test_epsilon_scaling_in_a_vmapped_group(client):
    # Scaling stages are part of the batch key and run in the group's first chunk only.
    rng = np.random.default_rng(14)
    pairs = [_points(rng, n, m)[:2] for n, m in SIZES]
    settings = dict(epsilon=0.05, threshold=1e-9, overrelaxation="off", method="log")
    scaled = client.sinkhorn_batch(pairs, scaling_stages=3, **settings)
    unscaled = client.sinkhorn_batch(pairs, **settings)
    assert scaled.vectorized_groups == 1
    for (x, y), with_stages, without in zip(pairs, scaled, unscaled):
        single = client.sinkhorn(x, y, scaling_stages=3, **settings)
        assert with_stages.converged, with_stages.diagnostics
        assert with_stages.cost == pytest.approx(without.cost, rel=1e-6)
        assert with_stages.iterations == pytest.approx(single.iterations, rel=0.02)
        assert with_stages.iterations < without.iterations  # equal if the stages were dropped


def test_refusals_name_the_problem(client):
    rng = np.random.default_rng(13)
    x, y, _ = _points(rng, 6, 6)
    with pytest.raises(InvalidArgumentError) as caught:
        client.sinkhorn_batch([(x, y), requests.sinkhorn(x, y, epsilon=0.0), (x, y[:, :1])])
    assert [v.field for v in caught.value.violations] == ["problems[1].epsilon", "problems[2].y"]
    with pytest.raises(InvalidArgumentError) as caught:
        client.sinkhorn_batch([])
    assert caught.value.field == "problems"


def test_a_cancelled_batch_stops_before_its_next_solve():
    from monge.server.calls import sinkhorn_batch as sinkhorn_batch_call
    from monge.server.config import ServerConfig
    from monge.v1 import diagnostics_pb2

    class Stopped:
        def is_set(self):
            return True

    rng = np.random.default_rng(14)
    batch = sinkhorn_batch_call.parse(requests.sinkhorn_batch([_points(rng, 5, 6)[:2]] * 3), ServerConfig())
    reply = sinkhorn_batch_call.encode_response(sinkhorn_batch_call.run(batch, Stopped()))
    assert len(reply.results) == 3 and (reply.vectorized_groups, reply.single_solves) == (0, 0)
    assert {r.diagnostics.status for r in reply.results} == {diagnostics_pb2.SOLVER_STATUS_CANCELLED}
    assert all(r.f.shape == [5] for r in reply.results)
