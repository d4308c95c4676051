"""Var-RUOT through the real server and client: a fit job with progress and a stored
model, queries equal to the solver's in-process answers, export and inline queries on
a second server, bad input by field, and cancellation freeing the worker.

One tiny fit (2-D, 24 points, width 16, 20 steps) is shared by the module; the
cancelled fit reuses its compiled training block, so no test compiles it twice."""

import json
import os
import re
import time

import numpy as np
import pytest

from monge.client import (
    Client,
    InvalidArgumentError,
    NotFoundError,
    RuotExport,
    RuotFitResult,
    requests,
)
from monge.solvers import ruot
from monge.solvers.ruot import RuotModel
from helpers import wait_until

SHIFT = np.array([1.0, 0.5])
TINY = dict(width=16, residual_blocks=0, particles=24, steps=20, report_every=10, dt=0.25,
            learning_rate=1e-2, weight_decay=0.0, seed=1)


def snapshots(n=24, seed=0):
    x0 = 0.3 * np.random.default_rng(seed).standard_normal((n, 2))
    return [(0.0, x0, 100.0), (1.0, x0 + SHIFT, 150.0)]




@pytest.fixture(scope="module")
def fitted(server):
    """The shared fit, followed through WatchJob: (result, progress events, final job)."""
    with Client(server.target, timeout=120) as client:
        job = client.ruot_fit(snapshots(), **TINY)
        events = [info.progress for info in client.watch(job) if not info.done]
        result = client.result(job)
        final = client.job(job)
    return result, events, final


def test_fit_job_reports_loss_terms_and_returns_a_stored_model(fitted, server):
    result, events, final = fitted
    assert isinstance(result, RuotFitResult)
    assert re.fullmatch(r"[0-9a-f]{32}", result.model_id)
    assert os.path.isdir(os.path.join(server.config.data_dir, "ruot_models", result.model_id))
    assert result.status == "completed" and result.diagnostics.iterations == 20
    assert result.loss_history.shape == (2, 5) and result.loss_names == ruot.LOSS_NAMES
    assert set(result.final_losses) == set(ruot.LOSS_NAMES)
    assert result.diagnostics.error == pytest.approx(result.final_losses["total"])
    # The job's last progress is the last block's losses; watchers saw blocks as they ran.
    assert final.state == "succeeded" and final.progress["iteration"] == 20
    assert set(final.progress["loss_terms"]) == {"ot", "mass", "hjb", "action"}
    assert final.progress["loss"] == pytest.approx(result.final_losses["total"], rel=1e-6)
    assert final.progress["loss_terms"]["hjb"] == pytest.approx(result.final_losses["hjb"], rel=1e-6)
    reported = [e for e in events if e["iteration"] > 0]
    assert reported and all(set(e["loss_terms"]) == {"ot", "mass", "hjb", "action"} for e in reported)
    # The exported model is the solver's own: it loads in-process.
    model = RuotModel.from_arrays(dict(result.model.arrays), result.model.settings)
    assert model.settings.dim == 2 and model.settings.width == 16 and model.settings.steps_trained == 20
    np.testing.assert_allclose(model.relative_mass, [1.0, 1.5])


def test_queries_match_the_solver_in_process(fitted, client):
    result, _, _ = fitted
    # Every simulation below ends at t = 1 and every point set has 24 points, so that
    # the server and this process each compile one program per kind of query.
    x = 0.4 * np.random.default_rng(5).standard_normal((24, 2))
    t = np.linspace(0.0, 1.0, 24)
    r = client.ruot_query(result.model_id, trajectories=[0.5, 1.0], points=x, times=t, hjb_residual=True,
                          mass_times=[0.0, 0.5, 1.0], action=True, population_time=1.0, seed=4)
    model = RuotModel.from_arrays(dict(result.model.arrays), result.model.settings)

    traj = ruot.trajectories(model, [0.5, 1.0], seed=4)
    assert r.trajectories.points.shape == (2, 24, 2) and r.trajectories.weights.shape == (2, 24)
    assert r.trajectories.growth.shape == (2, 24) and r.trajectories.mass.shape == (2,)
    np.testing.assert_array_equal(r.trajectories.points, traj.points)
    np.testing.assert_array_equal(r.trajectories.weights, traj.weights)
    np.testing.assert_array_equal(r.trajectories.mass, traj.mass)
    assert r.trajectories.action == traj.action
    np.testing.assert_array_equal(r.trajectories.growth[1], ruot.growth_at(model, traj.points[1], 1.0))

    assert r.fields.velocity.shape == (24, 2) and r.fields.potential.shape == (24,)
    np.testing.assert_array_equal(r.fields.potential, ruot.potential_at(model, x, t))
    np.testing.assert_array_equal(r.fields.velocity, ruot.velocity_at(model, x, t))
    np.testing.assert_array_equal(r.fields.growth, ruot.growth_at(model, x, t))
    np.testing.assert_array_equal(r.fields.hjb_residual, ruot.hjb_residual_at(model, x, t, seed=4))
    # Quadratic growth: g = lambda / alpha.
    np.testing.assert_allclose(r.fields.growth, r.fields.potential / model.settings.alpha, rtol=1e-6)

    np.testing.assert_array_equal(r.mass, ruot.mass_over_time(model, [0.0, 0.5, 1.0], seed=4))
    assert r.mass[0] == 1.0 and r.mass_times.tolist() == [0.0, 0.5, 1.0]
    assert r.action == ruot.path_action(model, seed=4) and r.action_until == 1.0
    np.testing.assert_array_equal(r.population.points, traj.points[1])  # the same simulation
    assert r.population.mass == traj.mass[1] and r.population.time == 1.0
    np.testing.assert_array_equal(r.snapshot_times, [0.0, 1.0])
    np.testing.assert_allclose(r.snapshot_relative_mass, [1.0, 1.5])

    # New initial points, and one time for all the fields' points.
    other = client.ruot_query(result, trajectories=True, initial_points=x, points=x, times=0.5, seed=4)
    np.testing.assert_array_equal(other.trajectories.points, ruot.trajectories(model, None, x, seed=4).points)
    np.testing.assert_array_equal(other.fields.velocity, ruot.velocity_at(model, x, 0.5))


def test_export_then_inline_query_on_another_server(fitted, client, make_server, tmp_path):
    result, _, _ = fitted
    exported = client.ruot_export(result.model_id, include_snapshots=True)
    assert exported.model_id == result.model_id and exported.settings == result.model.settings
    assert exported.arrays.keys() == result.model.arrays.keys()
    for name, array in exported.arrays.items():
        np.testing.assert_array_equal(array, result.model.arrays[name])
    assert [s.time for s in exported.snapshots] == [0.0, 1.0]
    assert [s.mass for s in exported.snapshots] == [100.0, 150.0]
    np.testing.assert_array_equal(exported.snapshots[1].points, snapshots()[1][1])
    # A file round trip keeps everything (settings as JSON, arrays bit for bit).
    exported.save(tmp_path / "model.npz")
    kept = RuotExport.load(tmp_path / "model.npz")
    assert kept.settings == json.loads(json.dumps(exported.settings)) and kept.model_id == result.model_id
    assert len(kept.snapshots) == 2

    # Past the last snapshot (extrapolation), all ending at t = 2: one more program to compile.
    ask = dict(trajectories=[0.25, 2.0], points=snapshots()[0][1], times=0.3, mass_times=[0.5, 2.0],
               action=2.0, population_time=2.0, seed=7)
    here = client.ruot_query(result.model_id, **ask)
    other = make_server()
    with Client(other.target, timeout=120) as remote:
        there = remote.ruot_query(kept, **ask)
        with pytest.raises(NotFoundError):
            remote.ruot_query(result.model_id, action=True)
    for a, b in ((here.trajectories.points, there.trajectories.points),
                 (here.trajectories.weights, there.trajectories.weights),
                 (here.fields.velocity, there.fields.velocity), (here.fields.growth, there.fields.growth),
                 (here.mass, there.mass), (here.population.points, there.population.points)):
        np.testing.assert_array_equal(a, b)
    assert here.action == there.action and here.action_until == 2.0


def _fit_field(snaps, **settings):
    return requests.ruot_fit(snaps, **{**TINY, **settings})


def _unknown_reconstruction(snaps):
    request = _fit_field(snaps)
    request.settings.reconstruction = 7  # a number this server's enum does not have
    return request


def _points(n=5, d=2, value=0.0):
    return np.full((n, d), value)


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: _fit_field([(0.0, _points())]), "snapshots"),
        (lambda: _fit_field([(0.0, _points()), (1.0, _points()), (0.5, _points())]), "snapshots[2].time"),
        (lambda: _fit_field([(0.0, _points()), (0.0, _points())]), "snapshots[1].time"),
        (lambda: _fit_field([(0.0, _points()), (1.0, _points(d=3))]), "snapshots[1].points"),
        (lambda: _fit_field([(0.0, _points()), (1.0, _points(value=np.nan))]), "snapshots[1].points"),
        (lambda: _fit_field([(0.0, _points()), (1.0, np.zeros((0, 2)))]), "snapshots[1].points"),
        (lambda: _fit_field([(0.0, _points()), (1.0, _points(), -3.0)]), "snapshots[1].mass"),
        (lambda: _fit_field([(0.0, _points(), 0.0), (1.0, _points())]), "snapshots[0].mass"),
        (lambda: _fit_field(snapshots(), width=0), "settings.width"),
        (lambda: _fit_field(snapshots(), sigma=-0.1), "settings.sigma"),
        (lambda: _fit_field(snapshots(), alpha=float("nan")), "settings.alpha"),
        (lambda: _fit_field(snapshots(), dt=1e-6), "settings.dt"),
        (lambda: _fit_field(snapshots(), growth_linear_below=0.2), "settings.growth_linear_below"),
        (lambda: _fit_field(snapshots(), reconstruction="energy", ot_epsilon=0.02), "settings.ot_epsilon"),
        (lambda: _unknown_reconstruction(snapshots()), "settings.reconstruction"),
        (lambda: _fit_field(snapshots(), particles=10**6), "settings.particles"),
        (lambda: _fit_field(three_snapshots(), hold_out=[0.0]), "hold_out[0]"),  # the first
        (lambda: _fit_field(three_snapshots(), hold_out=[1.0]), "hold_out[0]"),  # the last
        (lambda: _fit_field(three_snapshots(), hold_out=[0.7]), "hold_out[0]"),  # no snapshot there
        (lambda: _fit_field(three_snapshots(), hold_out=[0.5, 0.5]), "hold_out[1]"),
        (lambda: _fit_field(three_snapshots(), hold_out=[float("inf")]), "hold_out[0]"),
    ],
)
def test_bad_fit_is_refused_naming_the_field(client, make, field):
    with pytest.raises(InvalidArgumentError) as caught:
        client.submit(make())
    assert caught.value.field == f"items[0].ruot_fit.{field}", caught.value
    assert len(caught.value.violations) == 1, caught.value


def three_snapshots(n=24, seed=0):
    x0 = 0.3 * np.random.default_rng(seed).standard_normal((n, 2))
    middle = 0.3 * np.random.default_rng(seed + 1).standard_normal((30, 2)) + 0.5 * SHIFT
    return [(0.0, x0, 100.0), (0.5, middle, 130.0), (1.0, x0 + SHIFT, 150.0)]


def test_a_held_out_snapshot_is_left_out_and_reported_beside_its_references(client):
    import ot

    data = three_snapshots()
    result = client.result(client.ruot_fit(data, hold_out=[0.5], **TINY))
    stored = client.ruot_export(result.model_id, include_snapshots=True)
    assert [s.time for s in stored.snapshots] == [0.0, 1.0]  # fitted without it
    (report,) = result.hold_out
    assert report.time == 0.5 and report.observed_mass == pytest.approx(1.3)
    held = data[1][1]
    # The fit's prediction: the population the stored model gives at 0.5 with the fit's seed.
    population = client.ruot_query(result.model_id, population_time=0.5, seed=TINY["seed"]).population
    weights = population.weights / population.weights.sum()
    expected = ot.emd2(weights, np.full(30, 1 / 30), ot.dist(population.points, held, metric="euclidean"))
    assert report.w1 == pytest.approx(expected, rel=1e-6)
    assert report.predicted_mass == pytest.approx(population.mass, rel=1e-6)
    # The interpolation of x0 and its translate: x0 moved halfway.
    u = np.full(24, 1 / 24)
    expected = ot.emd2(u, np.full(30, 1 / 30), ot.dist(data[0][1] + 0.5 * SHIFT, held, metric="euclidean"))
    assert report.interpolation_w1 == pytest.approx(expected, rel=1e-9)
    assert 0 < report.noise_floor < 1.0


def test_bad_queries_name_the_field_and_unknown_models_are_not_found(fitted, client):
    result, _, _ = fitted
    with pytest.raises(NotFoundError):
        client.ruot_query("0" * 32, action=True)
    with pytest.raises(NotFoundError):
        client.ruot_query("../../etc", action=True)
    with pytest.raises(NotFoundError):
        client.ruot_export("f" * 32)
    cases = [
        (dict(points=np.zeros((3, 3)), times=0.5), "fields.points"),
        (dict(points=np.zeros((3, 2)), times=np.zeros(4)), "fields.times"),
        (dict(trajectories=[1.0, 0.5]), "trajectories.times"),
        (dict(trajectories=[-1.0]), "trajectories.times"),
        (dict(mass_times=[0.5], initial_points=np.full((4, 2), np.inf)), "mass.initial_points"),
        (dict(population_time=1e9), "population.time"),
        (dict(), "trajectories"),
    ]
    for ask, field in cases:
        with pytest.raises(InvalidArgumentError) as caught:
            client.ruot_query(result.model_id, **ask)
        assert caught.value.field == field, (ask, caught.value)
    # An inline model whose network does not match its settings.
    arrays = dict(result.model.arrays, **{"params/in.w": result.model.arrays["params/in.w"][:, :3]})
    broken = RuotExport(arrays, result.model.settings)
    with pytest.raises(InvalidArgumentError) as caught:
        client.ruot_query(broken, action=True)
    assert caught.value.field == "inline_model" and "params/in.w" in str(caught.value)
    damaged = RuotExport({k: v for k, v in result.model.arrays.items() if k != "times"}, result.model.settings)
    with pytest.raises(InvalidArgumentError) as caught:
        client.ruot_query(damaged, action=True)
    assert caught.value.field == "inline_model.arrays"


def test_cancelling_a_fit_frees_the_worker(fitted, client, server):
    result, _, _ = fitted
    stored = os.path.join(server.config.data_dir, "ruot_models")
    before = set(os.listdir(stored))
    job = client.ruot_fit(snapshots(), **dict(TINY, steps=1_000_000))  # the shared fit's compiled block
    wait_until(lambda: client.job(job).progress["iteration"] >= 10)
    started = time.monotonic()
    cancelled = client.cancel(job)
    assert cancelled.state == "cancelled"
    answer = client.ruot_query(result.model_id, action=True, timeout=20)  # the worker is free again
    assert time.monotonic() - started < 15 and answer.action > 0
    assert client.job(job).progress["iteration"] < 1_000_000
    assert set(os.listdir(stored)) == before  # a cancelled fit stores nothing


def test_unset_settings_take_the_papers_values_for_the_growth_penalty(tmp_path):
    from monge.server.config import ServerConfig
    from monge.server.calls.ruot_fit import parse

    config = ServerConfig(data_dir=str(tmp_path))
    quadratic = parse(requests.ruot_fit(snapshots()), config).config
    assert quadratic == ruot.RuotConfig()  # alpha 2, gamma_hjb 0.0625, lr 1e-4, width 512, ...
    paper = parse(requests.ruot_fit(snapshots(), growth="paper", growth_linear_below=0.2, sigma=0.0, clip_norm=0,
                                    laplacian="hutchinson", laplacian_probes=3), config).config
    assert paper == ruot.paper_config(growth=ruot.PaperGrowth(linear_below=0.2), sigma=0.0,
                                      optimizer=ruot.OptimizerConfig(learning_rate=2e-5, clip_norm=None),
                                      laplacian=ruot.HutchinsonLaplacian(probes=3))
    assert (paper.alpha, paper.gamma_hjb) == (7.0, 6.25e-3)
    # The default reconstruction is the energy distance; giving ot_epsilon asks for Sinkhorn.
    assert quadratic.reconstruction == ruot.EnergyDistance()
    sinkhorn = parse(requests.ruot_fit(snapshots(), ot_epsilon=0.02), config).config
    assert sinkhorn.reconstruction == ruot.SinkhornDivergence() and sinkhorn.ot_epsilon == 0.02
    # Or named, at the default epsilon; naming the energy distance is the default.
    named = parse(requests.ruot_fit(snapshots(), reconstruction="sinkhorn"), config).config
    assert named.reconstruction == ruot.SinkhornDivergence() and named.ot_epsilon == ruot.RuotConfig().ot_epsilon
    assert parse(requests.ruot_fit(snapshots(), reconstruction="energy"), config).config == quadratic


def test_loss_terms_survive_the_trip_from_a_dask_worker():
    pytest.importorskip("distributed")
    from monge.server.runtime.dask_executor import _plain

    fields = {"iteration": np.int64(10), "loss": np.float32(0.5), "loss_terms": {"ot": np.float32(0.25)}}
    assert _plain(fields) == {"iteration": 10, "loss": 0.5, "loss_terms": {"ot": 0.25}}
