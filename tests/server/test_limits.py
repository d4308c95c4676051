"""Size and memory limits, checked before any allocation and named in the refusal.

Two servers with small limits: one counts points and dense elements, the other memory.
A Sinkhorn call on points that is too large to solve densely runs online (the cost
computed in blocks) and still answers; calls that need a dense matrix are refused.
"""

import numpy as np
import pytest

from monge.client import InvalidArgumentError, requests
from monge.server import limits
from monge.server.runtime import sinkhorn_batch
from monge.server.calls import sinkhorn as sinkhorn_call
from monge.server.config import MIB, ServerConfig
from monge.solvers.sinkhorn import sinkhorn as solve_in_process


@pytest.fixture(scope="module")
def counted(make_module_server):
    """At most 1000 points per measure and 10,000 dense elements."""
    return make_module_server(max_points=1000, max_dense_elements=10_000)


@pytest.fixture(scope="module")
def budgeted(make_module_server):
    """At most 1 MiB of memory per request."""
    return make_module_server(max_request_memory_bytes=1 * MIB)


def _client(server):
    from monge.client import Client

    return Client(server.target, timeout=60)


def _refused(call, field, *words):
    with pytest.raises(InvalidArgumentError) as caught:
        call()
    fields = {v.field: v.description for v in caught.value.violations}
    assert field in fields, caught.value
    for word in words:
        assert word in fields[field], fields[field]
    return fields[field]


def _points(n, d=2, seed=0, dtype=np.float64):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(dtype)


# -- points per measure ------------------------------------------------------------


def test_points_per_measure_for_every_call(counted):
    many, few = _points(1001), _points(10)
    with _client(counted) as c:
        _refused(lambda: c.sinkhorn(many, few), "x", "1,001 points", "max_points")
        _refused(lambda: c.exact_transport(few, many), "y", "max_points")
        _refused(lambda: c.sparsity_constrained(cost_matrix=np.ones((10, 1001))), "cost_matrix", "max_points")
        _refused(lambda: c.submit(requests.sinkhorn(few, many)), "items[0].sinkhorn.y", "max_points")


# -- dense elements: online Sinkhorn, refusals for the rest --------------------------


def test_sinkhorn_on_points_over_the_dense_limit_runs_online(counted):
    x, y = _points(200, seed=1), _points(150, seed=2) + 0.5
    with _client(counted) as c:
        r = c.sinkhorn(x, y, epsilon=0.5, threshold=1e-9)
    reference = solve_in_process(x, y, epsilon=0.5, threshold=1e-9)
    assert r.converged
    assert r.cost == pytest.approx(float(reference.cost), rel=1e-7)
    np.testing.assert_allclose(r.f, np.asarray(reference.f), atol=1e-6)


def test_unbalanced_sinkhorn_runs_online_too(counted):
    x, y = _points(200, seed=3), _points(150, seed=4)
    with _client(counted) as c:
        r = c.sinkhorn(x, y, epsilon=0.5, reg_m=1.0, threshold=1e-9)
    reference = solve_in_process(x, y, epsilon=0.5, reg_m=1.0, threshold=1e-9)
    assert r.converged and r.cost == pytest.approx(float(reference.cost), rel=1e-7)


def test_dense_only_calls_over_the_dense_limit_are_refused(counted):
    x, y = _points(200), _points(150)
    with _client(counted) as c:
        _refused(lambda: c.sinkhorn(x, y, method="kernel"), "method",
                 "SINKHORN_METHOD_KERNEL", "max_dense_elements", "SINKHORN_METHOD_AUTO")
        _refused(lambda: c.sinkhorn(x, y, method="sns"), "method", "max_dense_elements")
        _refused(lambda: c.sinkhorn(cost_matrix=np.ones((200, 150))), "cost_matrix", "limit of 10,000")
        _refused(lambda: c.sinkhorn(x, y, return_plan=True), "return_plan", "max_dense_elements")
        _refused(lambda: c.sparsity_constrained(x, y), "x", "max_dense_elements")
        _refused(lambda: c.exact_transport(x, y, p=3), "p", "max_dense_elements")
        # The network simplex on points with p = 1 or 2 computes costs lazily: no limit.
        assert c.exact_transport(x, y).converged


# -- memory -----------------------------------------------------------------------


def test_calls_over_the_memory_budget_are_refused(budgeted):
    with _client(budgeted) as c:
        cost = np.random.default_rng(0).random((200, 200))
        _refused(lambda: c.sinkhorn(cost_matrix=cost), "cost_matrix", "max_request_memory_bytes = 1,048,576")
        _refused(lambda: c.sparsity_constrained(cost_matrix=cost), "cost_matrix", "max_request_memory_bytes")
        _refused(lambda: c.exact_transport(cost_matrix=np.random.default_rng(0).random((250, 250))),
                 "cost_matrix", "max_request_memory_bytes")
        # Too large even with the cost computed in blocks (and over the dense limit).
        line = np.linspace(0, 1, 20_000)[:, None]
        _refused(lambda: c.sinkhorn(line, line), "x", "in blocks", "max_request_memory_bytes")
        _refused(lambda: c.submit(requests.sinkhorn(cost_matrix=cost)), "items[0].sinkhorn.cost_matrix",
                 "max_request_memory_bytes")
        # Small calls still answer.
        assert c.sinkhorn(_points(10), _points(10), epsilon=1.0).converged


def _parse(config, **kwargs):
    return sinkhorn_call.parse(requests.sinkhorn(**kwargs), config)


def test_routing_by_memory_estimate():
    # 2048 x 2048 float32: dense needs 4 matrices (64 MiB), online 3 blocks of 1024 rows (24 MiB).
    x = _points(2048, dtype=np.float32)
    roomy = ServerConfig(max_request_memory_bytes=128 * MIB)
    tight = ServerConfig(max_request_memory_bytes=32 * MIB)
    tiny = ServerConfig(max_request_memory_bytes=16 * MIB)
    assert not _parse(roomy, x=x, y=x).online
    assert _parse(tight, x=x, y=x).online
    assert _parse(tight, x=x, y=x, method="log").online
    with pytest.raises(sinkhorn_call.InvalidArgument) as caught:
        _parse(tight, x=x, y=x, method="kernel")
    assert caught.value.violations[0][0] == "method"
    with pytest.raises(sinkhorn_call.InvalidArgument) as caught:
        _parse(tiny, x=x, y=x)
    assert caught.value.violations[0][0] == "x"
    # float64 doubles every estimate.
    assert _parse(roomy, x=x.astype(np.float64), y=x.astype(np.float64)).online is False
    assert _parse(tight, x=x[:700].astype(np.float64), y=x[:700].astype(np.float64)).online is False


def test_the_servers_size_buckets_are_the_solvers():
    from monge.server import limits
    from monge.solvers.sinkhorn import size_bucket

    for size in [*range(1, 5000), 2**20 - 1, 2**20, 2**20 + 1, 3 * 2**21 + 5]:
        assert limits.size_bucket(size) == size_bucket(size), size


def test_batches_are_capped_by_memory():
    x = _points(300)
    call = _parse(ServerConfig(), x=x, y=x)
    key = sinkhorn_batch.batch_key(call)  # 512 x 512 buckets of float64: 12 MiB with plans
    assert sinkhorn_batch.max_batch_for_memory(key, 4096 * MIB) == 256
    assert sinkhorn_batch.max_batch_for_memory(key, 100 * MIB) == 8
    assert sinkhorn_batch.max_batch_for_memory(key, 1 * MIB) == 1
    online = _parse(ServerConfig(max_dense_elements=1000), x=x, y=x)
    assert online.online and sinkhorn_batch.batch_key(online) is None


def test_few_points_in_a_high_dimension_are_not_padded():
    # Padding 2 points to the 16-point bucket would add 28 x 300,000 float64 (67 MB) of
    # zero-weight points; a small dimension still pads (shared compiled programs).
    rng = np.random.default_rng(0)
    wide = _parse(ServerConfig(), x=rng.normal(size=(2, 300_000)), y=rng.normal(size=(2, 300_000)))
    assert sinkhorn_call.padded_to_bucket(wide).shape == (2, 2)
    assert sinkhorn_batch.batch_key(wide) is None
    narrow = _parse(ServerConfig(), x=rng.normal(size=(2, 3)), y=rng.normal(size=(2, 3)))
    assert sinkhorn_call.padded_to_bucket(narrow).shape == (16, 16)
    assert sinkhorn_batch.batch_key(narrow) is not None


# -- probability flow, Var-RUOT, jobs, FedWaD: one server with small limits ------------


SMALL = dict(max_samples=300, max_iterations=50, max_training_steps=200, max_training_seconds=1e-3,
             max_trajectory_steps=40, max_trajectory_elements=2_000, max_job_items=3, max_points=1000,
             max_dense_elements=10_000)


@pytest.fixture(scope="module")
def small(make_module_server):
    return make_module_server(**SMALL)


def _gaussian():
    return requests.gaussian(np.zeros(2), np.eye(2))


def _untrained_ruot(dim=2):
    """An exported Var-RUOT model, untrained (refusals need no fit): snapshots at 0 and 1, dt 0.25."""
    import jax

    from monge.client import RuotExport
    from monge.solvers.ruot.config import ExactLaplacian, QuadraticGrowth
    from monge.solvers.ruot.model import RuotSettings, init_params

    arrays = {f"params/{k}": np.asarray(v) for k, v in init_params(jax.random.key(0), dim, 8, 0).items()}
    arrays.update({"norm.x_shift": np.zeros(dim), "norm.x_scale": np.array(1.0), "norm.t_shift": np.array(0.0),
                   "norm.t_scale": np.array(1.0), "times": np.array([0.0, 1.0]), "relative_mass": np.ones(2),
                   "initial_points": _points(6, dim), "history": np.zeros((0, 5))})
    settings = RuotSettings(dim=dim, width=8, residual_blocks=0, sigma=0.1, dt=0.25, alpha=1.0,
                            growth=QuadraticGrowth(), laplacian=ExactLaplacian())
    return RuotExport(arrays, settings.to_dict())


def test_probability_flow_limits_are_named(small):
    with _client(small) as c:
        _refused(lambda: c.sample_probability_flow(_gaussian(), num_samples=301), "num_samples",
                 "[1, 300]", "max_samples")
        _refused(lambda: c.sample_probability_flow(_gaussian(), num_samples=4, steps=51), "steps", "max_iterations")
        _refused(lambda: c.sample_probability_flow(_gaussian(), num_samples=4, sampler="euler", nfe=51), "nfe",
                 "51 steps of euler", "limit of 50 (max_iterations)")
        _refused(lambda: c.sample_probability_flow(_gaussian(), num_samples=30, steps=40, return_trajectory=True),
                 "return_trajectory", "2,460 values", "limit of 2,000 (max_trajectory_elements)")
        _refused(lambda: c.probability_flow_log_likelihood(_gaussian(), _points(301)), "points",
                 "301 points", "limit of 300 points (max_samples)")
        _refused(lambda: c.probability_flow_log_likelihood(_gaussian(), _points(4), max_steps=51), "max_steps",
                 "max_iterations")
        data = _points(16)
        _refused(lambda: c.train_score_model(_points(301)), "items[0].train_score_model.samples", "max_samples")
        _refused(lambda: c.train_score_model(data, steps=201), "items[0].train_score_model.steps",
                 "max_training_steps")
        _refused(lambda: c.train_score_model(data, report_every=201), "items[0].train_score_model.report_every",
                 "max_training_steps")


def test_ruot_limits_are_named(small):
    model = _untrained_ruot()
    with _client(small) as c:
        _refused(lambda: c.ruot_query(model, trajectories=[20.0]), "trajectories.times",
                 "81 steps of dt = 0.25", "limit of 40 (max_trajectory_steps)")
        _refused(lambda: c.ruot_query(model, mass_times=[5.0], initial_points=_points(100)), "mass.times",
                 "100 particles over 21 steps", "max_trajectory_elements")
        _refused(lambda: c.ruot_query(model, action=True, initial_points=_points(10**3, 2)), "action.until",
                 "max_trajectory_elements")
        x0 = _points(8)
        _refused(lambda: c.ruot_fit([(0.0, x0), (1.0, x0)], steps=201), "items[0].ruot_fit.settings.steps",
                 "max_training_steps")
        _refused(lambda: c.ruot_fit([(0.0, x0), (1.0, _points(1001))], particles=4),
                 "items[0].ruot_fit.snapshots[1].points", "1,001 points", "max_points")
        _refused(lambda: c.ruot_fit([(0.0, x0), (1.0, _points(1000))], particles=11),
                 "items[0].ruot_fit.settings.particles", "11,000 entries", "max_dense_elements")


def test_iterations_and_job_items_are_named(small):
    with _client(small) as c:
        _refused(lambda: c.sinkhorn(_points(4), _points(4), max_iterations=51), "max_iterations",
                 "50 is this server's limit, max_iterations")
        few = requests.sinkhorn(_points(4), _points(4))
        _refused(lambda: c.submit([few] * 4), "items", "4 items", "limit of 3 (max_job_items)")
        assert len(c.result(c.submit([few] * 3))) == 3


def test_fedwad_limits_are_named(small):
    from monge.client import FedWadSessions
    from monge.v1 import fedwad_pb2

    with FedWadSessions(small.target, timeout=30) as sessions:
        with pytest.raises(InvalidArgumentError) as caught:
            sessions.create(["a", "b"], rounds=51)
        assert caught.value.field == "config.rounds" and "50 is this server's limit, max_iterations" in str(caught.value)
        open_size = sessions.create(["a", "b"], rounds=2)
        wide = sessions.create(["a", "b"], rounds=2, support_size=10)
    # Joins, by hand: what a party claims about its data is checked before xi is built.
    import grpc

    from monge.v1 import fedwad_pb2_grpc

    with grpc.insecure_channel(small.target) as channel:
        stub = fedwad_pb2_grpc.FedWadServiceStub(channel)
        for session, join, field, limit in (
            (open_size, dict(dimension=2, sample_size=20_001), "parties[a].sample_size", "max_support_size"),
            (wide, dict(dimension=1_001, sample_size=5), "parties[a].dimension", "max_dense_elements"),
        ):
            first = fedwad_pb2.ParticipateRequest(join=fedwad_pb2.FedWadJoin(session_id=session.session_id,
                                                                             party="a", **join))
            with pytest.raises(grpc.RpcError) as caught:
                next(stub.Participate(iter([first]), timeout=30))
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert caught.value.details().startswith(field) and limit in caught.value.details()


@pytest.mark.timeout(300)  # compiles a training program of each kind if no earlier test did
def test_training_stops_at_the_wall_time_limit_and_stores_nothing(small):
    from monge.client import ResourceExhaustedError

    import pathlib

    models = pathlib.Path(small.config.data_dir)
    with _client(small) as c:
        # The shapes of tests/server/test_pfode_rpc.py's training (its compiled program).
        rng = np.random.default_rng(0)
        data = (rng.normal(size=(256, 2)) * np.array([0.5, 0.3]) + np.array([2.0, -1.0])).astype(np.float32)
        job = c.train_score_model(data, hidden=(16, 16), time_embedding_dim=4, steps=150, batch_size=64,
                                  learning_rate=5e-3, report_every=50, seed=0)
        with pytest.raises(ResourceExhaustedError) as caught:
            c.result(job, timeout=300)
        # Training asks before every step (not only at reports): past the limit before its
        # first step, it never takes one.
        assert "stopped after 0 of 150 steps" in caught.value.message
        assert "limit of 0.001 s (max_training_seconds)" in caught.value.message
        # ... and of tests/server/test_ruot_rpc.py's fit.
        x0 = 0.3 * np.random.default_rng(0).standard_normal((24, 2))
        job = c.ruot_fit([(0.0, x0, 100.0), (1.0, x0 + np.array([1.0, 0.5]), 150.0)], width=16, residual_blocks=0,
                         particles=24, steps=20, report_every=10, dt=0.25, learning_rate=1e-2, weight_decay=0.0,
                         seed=1)
        with pytest.raises(ResourceExhaustedError, match="stopped after 0 of 20 steps"):
            c.result(job, timeout=300)
        assert c.job(job).state == "succeeded" and c.job(job).failed_items == 1
    assert not list((models / "models").glob("*")) and not list((models / "ruot_models").glob("*"))


def test_serve_flags_set_the_limits():
    from monge.client.cli import build_parser, server_config

    args = build_parser().parse_args([
        "serve", "--max-iterations", "7", "--max-samples", "8", "--max-training-steps", "9",
        "--max-training-seconds", "1.5", "--max-trajectory-steps", "10", "--max-trajectory-elements", "11",
        "--max-job-items", "12"])
    config = server_config(args)
    assert (config.max_iterations, config.max_samples, config.max_training_steps, config.max_training_seconds,
            config.max_trajectory_steps, config.max_trajectory_elements, config.max_job_items) == (
        7, 8, 9, 1.5, 10, 11, 12)
    for name in ("max_samples", "max_training_steps", "max_trajectory_steps", "max_job_items"):
        with pytest.raises(ValueError, match=name):
            ServerConfig(**{name: 0})
    with pytest.raises(ValueError, match="max_training_seconds"):
        ServerConfig(max_training_seconds=0.0)


# -- the plan's views, batches and divergences ------------------------------------------


def test_views_of_an_online_solve_match_the_dense_plan(counted):
    x, y = _points(200, seed=1), _points(150, seed=2) + 0.5
    with _client(counted) as c:
        r = c.sinkhorn(x, y, epsilon=0.5, threshold=1e-9, plan_top_k=3, return_barycentric_map=True)
        _refused(lambda: c.sinkhorn(x, y, plan_top_k=151), "plan_top_k", "[0, 150]")
    plan = np.asarray(solve_in_process(x, y, epsilon=0.5, threshold=1e-9).plan())
    top = np.argsort(-plan, axis=1)[:, :3]
    np.testing.assert_array_equal(r.sparse_plan.col.reshape(200, 3), top)
    np.testing.assert_allclose(r.sparse_plan.data.reshape(200, 3), np.take_along_axis(plan, top, 1), rtol=1e-6)
    np.testing.assert_allclose(r.barycentric_map, plan @ y / plan.sum(1, keepdims=True), rtol=1e-6)


def test_view_outputs_count_against_the_limits():
    x = _points(2048, dtype=np.float32)
    roomy = ServerConfig(max_request_memory_bytes=128 * MIB)
    # 2048 x 2048 top-k entries are 80 MiB: with the dense solve's 64 MiB, over 128 MiB.
    assert not _parse(roomy, x=x, y=x, plan_top_k=16).online
    assert _parse(roomy, x=x, y=x, plan_top_k=2048).online
    with pytest.raises(sinkhorn_call.InvalidArgument) as caught:
        _parse(roomy, cost_matrix=np.ones((2048, 2048), np.float32), plan_top_k=2048)
    assert caught.value.violations[0][0] == "cost_matrix"
    small_messages = ServerConfig(max_message_bytes=1 * MIB)
    with pytest.raises(sinkhorn_call.InvalidArgument) as caught:
        _parse(small_messages, x=x, y=x, plan_top_k=32)  # 2048 x 32 x 20 bytes = 1.25 MiB
    assert caught.value.violations[0][0] == "plan_top_k" and "message limit" in caught.value.violations[0][1]


def test_batches_split_by_memory_and_by_reply_size():
    from monge.server.calls import sinkhorn_batch as sinkhorn_batch_call

    x = _points(300)
    request = requests.sinkhorn_batch([(x, x)] * 5, return_plan=True)
    key = sinkhorn_batch.batch_key(_parse(ServerConfig(), x=x, y=x))
    budget = 2 * limits.dense_sinkhorn(512, 512, 8, return_plan=True)
    assert sinkhorn_batch.max_batch_for_memory(key, budget) == 2
    batch = sinkhorn_batch_call.parse(request, ServerConfig(max_request_memory_bytes=budget))
    assert batch.plan() == [[0, 1], [2, 3], [4]]
    with pytest.raises(sinkhorn_call.InvalidArgument) as caught:
        # Each 300 x 300 float64 plan (720,000 bytes) fits 1 MiB; five do not.
        sinkhorn_batch_call.parse(request, ServerConfig(max_message_bytes=MIB))
    assert caught.value.violations[0][0] == "problems"


def test_divergence_routes_each_solve_and_names_the_measure():
    from monge.server.calls import divergence as divergence_call

    small, large = _points(10), _points(600, seed=1)
    call = divergence_call.parse(requests.sinkhorn_divergence(small, large), ServerConfig())
    assert not (call.xy.online or call.xx.online or call.yy.online)
    assert call.yy.shape == (600, 600) and call.xx.shape == (10, 10)
    with pytest.raises(sinkhorn_call.InvalidArgument) as caught:
        # x-y (16 x 768 padded) fits 1 MiB; y-y does not, dense or in blocks.
        divergence_call.parse(requests.sinkhorn_divergence(small, large), ServerConfig(max_request_memory_bytes=MIB))
    assert caught.value.violations[0][0] == "y"
    online = divergence_call.parse(requests.sinkhorn_divergence(small, large), ServerConfig(max_dense_elements=1000))
    assert online.yy.online and online.xy.online and not online.xx.online
