"""Sinkhorn through the real server and client, against POT."""

import numpy as np
import ot
import pytest

from monge.client import DeadlineExceededError


def _problem(rng, n, m, d=4, dtype=np.float64):
    x = rng.normal(size=(n, d)).astype(dtype)
    y = (rng.normal(size=(m, d)) + 1.0).astype(dtype)
    a = rng.random(n) + 0.2
    b = rng.random(m) + 0.2
    return x, y, a / a.sum(), b / b.sum()


@pytest.mark.parametrize("seed,n,m,eps", [(1, 30, 40, 0.5), (2, 80, 60, 0.1), (3, 50, 50, 1.0)])
def test_balanced_agrees_with_pot(client, seed, n, m, eps):
    x, y, a, b = _problem(np.random.default_rng(seed), n, m)
    r = client.sinkhorn(x, y, a, b, epsilon=eps, threshold=1e-11, max_iterations=100_000)
    reference = ot.sinkhorn2(a, b, ot.dist(x, y), eps, stopThr=1e-14, numItermax=1_000_000)
    assert r.converged and r.diagnostics.status == "converged"
    assert r.cost == pytest.approx(reference, rel=1e-6)
    assert r.f.shape == (n,) and r.g.shape == (m,) and r.f.dtype == np.float64
    assert r.marginal_error < 1e-10


@pytest.mark.parametrize("reg_m", [1.0, (0.3, 5.0)])
def test_unbalanced_agrees_with_pot(client, rng, reg_m):
    x, y, a, b = _problem(rng, 40, 30)
    a = 2.0 * a  # unequal masses: only an unbalanced problem accepts them
    r = client.sinkhorn(x, y, a, b, epsilon=0.2, reg_m=reg_m, threshold=1e-12)
    reference = ot.unbalanced.sinkhorn_unbalanced2(
        a, b, ot.dist(x, y), 0.2, reg_m, stopThr=1e-15, numItermax=1_000_000
    )
    assert r.converged
    assert r.cost == pytest.approx(float(reference), rel=1e-6)


def test_plan_is_returned_on_request_only(client, rng):
    x, y, a, b = _problem(rng, 20, 25)
    assert client.sinkhorn(x, y, a, b, epsilon=0.3).plan is None
    r = client.sinkhorn(x, y, a, b, epsilon=0.3, threshold=1e-12, return_plan=True)
    reference = ot.sinkhorn(a, b, ot.dist(x, y), 0.3, stopThr=1e-14, numItermax=100_000)
    np.testing.assert_allclose(r.plan, reference, atol=1e-12)
    assert np.sum(r.plan * ot.dist(x, y)) == pytest.approx(r.cost, rel=1e-12)


def test_cost_matrix_and_uniform_weights(client, rng):
    x, y, _, _ = _problem(rng, 15, 20)
    cost = ot.dist(x, y, metric="euclidean")
    r = client.sinkhorn(cost_matrix=cost, epsilon=0.1, threshold=1e-12)
    reference = ot.sinkhorn2(np.full(15, 1 / 15), np.full(20, 1 / 20), cost, 0.1, stopThr=1e-14,
                             numItermax=100_000)
    assert r.cost == pytest.approx(reference, rel=1e-6)
    by_points = client.sinkhorn(x, y, cost="euclidean", epsilon=0.1, threshold=1e-12)
    assert by_points.cost == pytest.approx(r.cost, rel=1e-9)


def test_float32_stays_float32(client, rng):
    x, y, a, b = _problem(rng, 30, 30, dtype=np.float32)
    r = client.sinkhorn(x, y, epsilon=0.5, threshold=1e-5)
    reference = ot.sinkhorn2(np.full(30, 1 / 30), np.full(30, 1 / 30), ot.dist(x.astype(float), y.astype(float)),
                             0.5, stopThr=1e-12)
    assert r.f.dtype == np.float32 and r.converged
    assert r.cost == pytest.approx(reference, rel=1e-4)


def test_not_converged_is_a_result_not_an_error(client, rng):
    x, y, a, b = _problem(rng, 30, 30)
    r = client.sinkhorn(x, y, epsilon=1e-3, threshold=1e-12, max_iterations=10)
    assert not r.converged
    assert r.diagnostics.status == "max_iterations"
    assert r.iterations == 10
    assert "iteration cap" in r.message


def test_overrelaxation_off_runs_plain_sinkhorn(client):
    # At a small epsilon the adaptive factor takes several times fewer iterations; "off"
    # runs the plain updates, as the in-process solver does (the server's padding to a
    # size bucket moves the rounding, so the count where the threshold is crossed by a
    # few iterations in several thousand).
    from monge.solvers.sinkhorn import sinkhorn

    x, y, a, b = _problem(np.random.default_rng(4), 60, 50, d=2)
    reference = ot.sinkhorn2(a, b, ot.dist(x, y), 0.02, stopThr=1e-14, numItermax=1_000_000)
    plain = client.sinkhorn(x, y, a, b, epsilon=0.02, threshold=1e-9, overrelaxation="off", method="kernel")
    relaxed = client.sinkhorn(x, y, a, b, epsilon=0.02, threshold=1e-9, method="kernel")
    in_process = sinkhorn(x, y, a, b, epsilon=0.02, threshold=1e-9, overrelaxation="off", method="kernel")
    assert plain.converged and relaxed.converged
    assert plain.cost == pytest.approx(reference, rel=1e-6) and relaxed.cost == pytest.approx(reference, rel=1e-6)
    assert plain.iterations == pytest.approx(int(in_process.iterations), rel=0.01)
    assert plain.iterations > 2 * relaxed.iterations


def test_overrelaxation_reaches_sns_and_unknown_values_are_refused(client, rng):
    from monge.client import requests

    x, y, _, _ = _problem(rng, 10, 6)
    # SNS over-relaxes its Sinkhorn sweeps as the other methods do (the default), or not.
    relaxed, plain, unset = (client.sinkhorn(x, y, method="sns", overrelaxation=setting)
                             for setting in ("adaptive", "off", None))
    assert relaxed.converged and plain.converged and unset.converged
    assert unset.iterations == relaxed.iterations < plain.iterations
    # Unknown numbers (from other clients) are refused naming the field: test_fuzz.py.
    with pytest.raises(ValueError, match="overrelaxation must be one of"):
        requests.sinkhorn(x, y, overrelaxation="fixed")


def test_epsilon_scaling_is_served_as_in_process(client):
    # Plain updates at a small epsilon: three stages from 0.02 / 0.3**3 save a third of
    # the iterations (4,060 in-process instead of 6,844) and reach the same plan.
    from monge.solvers.sinkhorn import sinkhorn

    x, y, a, b = _problem(np.random.default_rng(4), 60, 50, d=2)
    settings = dict(epsilon=0.02, threshold=1e-9, overrelaxation="off", method="kernel")
    reference = ot.sinkhorn2(a, b, ot.dist(x, y), 0.02, stopThr=1e-14, numItermax=1_000_000)
    scaled = client.sinkhorn(x, y, a, b, scaling_stages=3, **settings)
    unscaled = client.sinkhorn(x, y, a, b, **settings)
    in_process = sinkhorn(x, y, a, b, scaling_stages=3, **settings)
    assert scaled.converged and scaled.cost == pytest.approx(reference, rel=1e-6)
    assert scaled.iterations == pytest.approx(int(in_process.iterations), rel=0.02)
    assert scaled.iterations < 0.75 * unscaled.iterations


def test_epsilon_scaling_refusals_name_the_field(client, rng):
    from monge.client import InvalidArgumentError

    x, y, _, _ = _problem(rng, 10, 6)
    for stages, words in ((-1, "must be in [0, 20], got -1"), (21, "must be in [0, 20], got 21")):
        with pytest.raises(InvalidArgumentError) as caught:
            client.sinkhorn(x, y, scaling_stages=stages)
        assert caught.value.field == "scaling_stages" and words in caught.value.violations[0].description
    with pytest.raises(InvalidArgumentError) as caught:
        client.sinkhorn(x, y, method="sns", scaling_stages=2)
    assert caught.value.field == "scaling_stages" and "does not scale epsilon" in str(caught.value)
    assert client.sinkhorn(x, y, method="sns", scaling_stages=0).converged


def test_hundred_megabyte_request(client, rng):
    # Sixteen points in a very high dimension: the payload is large, the solve is trivial.
    # (Fewer points are not padded to the 16-point bucket at this dimension:
    # test_limits.py::test_few_points_in_a_high_dimension_are_not_padded.)
    d = 412_500
    x = rng.normal(size=(16, d)).astype(np.float64) / np.sqrt(d)
    y = x[::-1].copy()
    assert x.nbytes + y.nbytes > 100e6
    r = client.sinkhorn(x, y, epsilon=1.0, threshold=1e-9)
    reference = ot.sinkhorn2(np.full(16, 1 / 16), np.full(16, 1 / 16), ot.dist(x, y), 1.0, stopThr=1e-12)
    assert r.cost == pytest.approx(reference, rel=1e-6)


def test_deadline_is_honoured(client, rng):
    x, y, _, _ = _problem(rng, 400, 400)
    with pytest.raises(DeadlineExceededError):
        client.sinkhorn(x, y, epsilon=1e-4, threshold=1e-14, max_iterations=1_000_000, timeout=0.2)


# -- views of the plan: top-k entries per row, barycentric map, dense plan ------------


def _top_k_of(plan, k):
    """POT's dense plan restricted to each row's k largest entries (as a dense array)."""
    top = np.argsort(-plan, axis=1, kind="stable")[:, :k]
    kept = np.zeros_like(plan)
    np.put_along_axis(kept, top, np.take_along_axis(plan, top, 1), 1)
    return kept


@pytest.mark.parametrize("reg_m", [None, 0.7])
def test_views_agree_with_pot_and_in_process(client, reg_m):
    import scipy.sparse

    from monge.solvers.sinkhorn import sinkhorn as in_process

    x, y, a, b = _problem(np.random.default_rng(7), 30, 40, d=3)
    eps = 0.3
    r = client.sinkhorn(x, y, a, b, epsilon=eps, reg_m=reg_m, threshold=1e-12, return_plan=True,
                        plan_top_k=5, return_barycentric_map=True)
    if reg_m is None:
        reference = ot.sinkhorn(a, b, ot.dist(x, y), eps, stopThr=1e-14, numItermax=100_000)
    else:
        reference = ot.unbalanced.sinkhorn_unbalanced(a, b, ot.dist(x, y), eps, reg_m, stopThr=1e-15,
                                                      numItermax=1_000_000)
    assert r.converged
    np.testing.assert_allclose(r.plan, reference, atol=1e-12)

    sparse = r.sparse_plan
    assert isinstance(sparse, scipy.sparse.coo_array) and sparse.shape == (30, 40) and sparse.nnz == 30 * 5
    np.testing.assert_array_equal(sparse.row, np.repeat(np.arange(30), 5))  # row-major, largest first
    np.testing.assert_allclose(sparse.toarray(), _top_k_of(reference, 5), atol=1e-12)
    assert np.all(np.diff(sparse.data.reshape(30, 5), axis=1) <= 0)

    moved = reference @ y / reference.sum(1, keepdims=True)
    assert r.barycentric_map.shape == (30, 3)
    np.testing.assert_allclose(r.barycentric_map, moved, rtol=1e-9, atol=1e-10)

    local = in_process(x, y, a, b, epsilon=eps, reg_m=reg_m, threshold=1e-12)
    rows, cols, values = (np.asarray(v) for v in local.plan_topk(5))
    np.testing.assert_array_equal(sparse.col, cols)
    np.testing.assert_allclose(sparse.data, values, rtol=1e-9)
    np.testing.assert_allclose(r.barycentric_map, np.asarray(local.barycentric_map()), rtol=1e-9)


def test_views_of_a_cost_matrix_float32_and_sns(client, rng):
    x, y, a, b = _problem(rng, 20, 25, dtype=np.float32)
    cost = ot.dist(x, y)
    r = client.sinkhorn(cost_matrix=cost, epsilon=0.5, threshold=1e-5, plan_top_k=25)
    assert r.sparse_plan.dtype == np.float32 and r.barycentric_map is None and r.plan is None
    reference = ot.sinkhorn(np.full(20, 1 / 20), np.full(25, 1 / 25), cost.astype(np.float64), 0.5,
                            stopThr=1e-12)
    np.testing.assert_allclose(r.sparse_plan.toarray(), reference, atol=1e-6)  # k = m: the whole plan
    sns = client.sinkhorn(x.astype(np.float64), y.astype(np.float64), epsilon=0.5, threshold=1e-10,
                          method="sns", plan_top_k=3, return_barycentric_map=True, return_plan=True)
    assert sns.newton is not None and sns.sparse_plan.nnz == 60
    np.testing.assert_allclose(sns.sparse_plan.toarray(), _top_k_of(sns.plan, 3), atol=1e-14)
    np.testing.assert_allclose(sns.barycentric_map, sns.plan @ y / sns.plan.sum(1, keepdims=True), rtol=1e-9)


def test_view_refusals_name_the_field(client, rng):
    from monge.client import InvalidArgumentError

    x, y, _, _ = _problem(rng, 10, 6)
    for call, field, words in [
        (lambda: client.sinkhorn(x, y, plan_top_k=7), "plan_top_k", "[0, 6]"),
        (lambda: client.sinkhorn(x, y, plan_top_k=-1), "plan_top_k", "got -1"),
        (lambda: client.sinkhorn(cost_matrix=ot.dist(x, y), return_barycentric_map=True),
         "return_barycentric_map", "cost matrix"),
    ]:
        with pytest.raises(InvalidArgumentError) as caught:
            call()
        assert caught.value.field == field and words in caught.value.violations[0].description


@pytest.mark.parametrize("method, cap", [("log", 10_000), ("sns", 50_000)])
def test_unreachable_float32_threshold_stalls(client, method, cap):
    # float32 bottoms out near 3e-6 in L1 on this problem: 1e-12 is out of reach, and
    # the solve says so before its cap rather than running to it (SNS by its own stall
    # rule and, served in chunks, by the chunks' errors).
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 2)).astype(np.float32)
    y = (rng.normal(size=(100, 2)) + 1.0).astype(np.float32)
    r = client.sinkhorn(x, y, epsilon=0.05, threshold=1e-12, max_iterations=50_000, method=method)
    assert not r.converged and r.diagnostics.status == "stalled"
    assert r.iterations < cap and r.marginal_error < 1e-4
    assert "stopped decreasing" in r.message


@pytest.mark.parametrize("method, n, m", [("kernel", 64, 48), ("log", 64, 48), ("kernel", 60, 50)])
def test_served_stops_at_the_in_process_iteration(client, method, n, m):
    # The served call runs the in-process program (with a watch between blocks), so it
    # stops at the same iteration with the same potentials; 60 x 50 is padded to its
    # size bucket (64 x 64) with zero-weight points, which carry no mass.
    from monge.solvers import sinkhorn

    rng = np.random.default_rng(3)
    x = rng.normal(size=(n, 2)).astype(np.float32)
    y = (rng.normal(size=(m, 2)) + 0.5).astype(np.float32)
    served = client.sinkhorn(x, y, epsilon=0.02, threshold=1e-5, method=method)
    local = sinkhorn(x, y, epsilon=0.02, threshold=1e-5, method=method)
    assert served.converged and int(local.iterations) > 100
    assert served.iterations == int(local.iterations)
    # Potentials are defined up to (f + c, g - c); float32 rounding of the padded program
    # may move that constant by ~2e-5 on some CPUs (measured on an AMD EPYC), not the plan.
    local_f, local_g = np.asarray(local.f), np.asarray(local.g)
    shift = float(np.mean(served.f - local_f))
    assert abs(shift) < 1e-4
    np.testing.assert_allclose(served.f - shift, local_f, rtol=0, atol=1e-5)
    np.testing.assert_allclose(served.g + shift, local_g, rtol=0, atol=1e-5)
    assert served.cost == pytest.approx(float(local.cost), rel=1e-5)
