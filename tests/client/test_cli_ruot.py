"""`monge ruot fit|query|export|plot`: the real CLI (`main(argv)` in this process)
against the real test server. The fit uses the same tiny settings and shapes as
tests/server/test_ruot_rpc.py, so a worker that ran those reuses its compiled step."""

import contextlib
import io
import re
import sys

import numpy as np
import pytest

from monge.client import RuotExport
from monge.client.cli import main
from monge.client.cli_ruot import read_snapshots

TINY = ["--width", 16, "--residual-blocks", 0, "--particles", 24, "--steps", 20, "--report-every", 10,
        "--dt", 0.25, "--learning-rate", 1e-2, "--weight-decay", 0, "--seed", 1]


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _write_csv(path, times=(0.0, 1.0), n=24):
    x0 = 0.3 * np.random.default_rng(0).standard_normal((n, 2))
    with open(path, "w") as f:
        f.write("samples,x1,x2\n")
        for k, t in enumerate(times):
            for x, y in x0 + k * np.array([1.0, 0.5]):
                f.write(f"{t:g},{x:.17g},{y:.17g}\n")


@pytest.fixture(scope="module")
def fitted(server, tmp_path_factory):
    """`monge ruot fit data.csv --out model.npz`: (exit code, stdout, model id, model file)."""
    folder = tmp_path_factory.mktemp("ruot-cli")
    _write_csv(folder / "data.csv")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([str(a) for a in ["ruot", "fit", folder / "data.csv", "--target", server.target, *TINY,
                                      "--out", folder / "model.npz"]])
    text = out.getvalue()
    found = re.search(r"^model ([0-9a-f]{32}): completed", text, re.M)
    return code, text, found and found.group(1), folder / "model.npz"


def test_csv_snapshots_group_rows_by_time(tmp_path):
    _write_csv(tmp_path / "d.csv", times=(0, 2, 5), n=4)
    snaps = read_snapshots(str(tmp_path / "d.csv"))
    assert [s.time for s in snaps] == [0.0, 2.0, 5.0] and [s.points.shape for s in snaps] == [(4, 2)] * 3
    assert read_snapshots(str(tmp_path / "d.csv"), dims=1)[0].points.shape == (4, 1)


def test_fit_streams_losses_and_saves_the_model(fitted):
    code, text, model_id, path = fitted
    assert code == 0, text
    assert model_id is not None
    assert re.search(r"^step 20/20  loss \S+  action \S+  hjb \S+  mass \S+  ot \S+", text, re.M), text
    assert "final losses  total" in text
    kept = RuotExport.load(path)
    assert kept.model_id == model_id and kept.status == "completed" and len(kept.snapshots) == 2
    np.testing.assert_allclose(kept.relative_mass, [1.0, 1.0])  # masses are the cell counts


def test_query_by_id_and_from_the_file(fitted, server, tmp_path, capsys):
    _, _, model_id, path = fitted
    answers = []
    for model in (model_id, path):
        code, out, err = _run(capsys, "ruot", "query", model, "--target", server.target, "--trajectories",
                              "--mass", 0, 0.5, 1, "--action", "--population", 1.0, "--out",
                              tmp_path / "answer.npz")
        assert code == 0, err
        assert "trajectories  24 particles at 2 times" in out and "action" in out and "population    t=1" in out
        with np.load(tmp_path / "answer.npz") as stored:
            answers.append({k: stored[k] for k in stored.files})
    assert answers[0]["trajectory_points"].shape == (2, 24, 2)
    for key in ("trajectory_points", "mass", "action", "population_points"):
        np.testing.assert_array_equal(answers[0][key], answers[1][key])


def test_export_then_plot(fitted, server, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    _, _, model_id, _ = fitted
    code, out, err = _run(capsys, "ruot", "export", model_id, "--target", server.target,
                          "--out", tmp_path / "m.npz")
    assert code == 0, err and "2 snapshots" in out
    assert RuotExport.load(tmp_path / "m.npz").settings["width"] == 16
    for model in (model_id, tmp_path / "m.npz"):
        code, out, err = _run(capsys, "ruot", "plot", model, "--target", server.target, "--frames", 5,
                              "--out", tmp_path / "p.png")
        assert code == 0, err
        assert "24 trajectories over t = 0..1" in out
        assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_how_to_install(fitted, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    code, _, err = _run(capsys, "ruot", "plot", fitted[3], "--out", "never.png")
    assert code == 1 and "pip install 'monge[plot]'" in err


def test_refused_fit_is_one_line(server, tmp_path, capsys):
    _write_csv(tmp_path / "one.csv", times=(0.0,))
    code, _, err = _run(capsys, "ruot", "fit", tmp_path / "one.csv", "--target", server.target, *TINY)
    assert code == 2
    assert err.strip().splitlines() == [
        "monge: INVALID_ARGUMENT: items[0].ruot_fit.snapshots: needs at least two snapshots, got 1"]


def test_reconstruction_flag_reaches_the_server(server, tmp_path, capsys):
    _write_csv(tmp_path / "two.csv", times=(0.0, 1.0))
    code, _, err = _run(capsys, "ruot", "fit", tmp_path / "two.csv", "--target", server.target, *TINY,
                        "--reconstruction", "energy", "--ot-epsilon", 0.02)
    assert code == 2
    assert err.strip().splitlines() == [
        "monge: INVALID_ARGUMENT: items[0].ruot_fit.settings.ot_epsilon: applies only to "
        "RUOT_RECONSTRUCTION_SINKHORN_DIVERGENCE (the energy distance has no epsilon)"]


def test_jobs_get_shows_the_fit_and_saves_its_model(fitted, server, tmp_path, capsys):
    _, text, model_id, _ = fitted
    job_id = re.search(r"^monge: job ([0-9a-f]{32}):", text, re.M).group(1)
    code, out, err = _run(capsys, "jobs", "get", job_id, "--target", server.target, "--out", tmp_path)
    assert code == 0, err
    assert f"item 0: model {model_id}: completed after 20 steps" in out
    assert RuotExport.load(tmp_path / "item-000.npz").model_id == model_id


def test_hold_out_prints_the_report_and_saves_only_the_fitted_snapshots(server, tmp_path, capsys):
    _write_csv(tmp_path / "three.csv", times=(0.0, 0.5, 1.0))
    code, out, _ = _run(capsys, "ruot", "fit", tmp_path / "three.csv", "--target", server.target, *TINY,
                        "--hold-out", 0.5, "--out", tmp_path / "model.npz")
    assert code == 0, out
    line = next(line for line in out.splitlines() if line.startswith("held out t=0.5: W1 "))
    # The McCann interpolation of a cloud and its translate, at the half: exactly the held-out cloud.
    interpolation = float(re.search(r"McCann interpolation ([^)]+)\)", line).group(1))
    assert interpolation < 1e-12 and line.endswith("1 observed")
    assert [s.time for s in RuotExport.load(tmp_path / "model.npz").snapshots] == [0.0, 1.0]
    code, _, err = _run(capsys, "ruot", "fit", tmp_path / "three.csv", "--target", server.target, *TINY,
                        "--hold-out", 1.0)
    assert code == 2 and "hold_out[0]: 1 is the last snapshot's time" in err
