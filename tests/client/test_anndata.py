"""Var-RUOT with AnnData (client/cells.py): snapshots read from real .h5ad files, a fit
from an AnnData equal to the fit from the same arrays, bad input refused naming the key,
and the CLI writing the fitted fields and predicted populations as AnnData.

The fits use the tiny settings and shapes of tests/client/test_cli_ruot.py (2-D, 24 cells
per snapshot, width 16, 20 steps), so a worker compiles the training step once."""

import contextlib
import io
import re

import numpy as np
import pandas as pd
import pytest
import scipy.sparse

anndata = pytest.importorskip("anndata")

from monge.client import RuotExport, cells  # noqa: E402
from monge.client.cli import main  # noqa: E402

TINY = dict(width=16, residual_blocks=0, particles=24, steps=20, report_every=10, dt=0.25,
            learning_rate=1e-2, weight_decay=0.0, seed=1)
TINY_FLAGS = [f"--{name.replace('_', '-')}={value}" for name, value in TINY.items()]
N = 24


def _arrays():
    x0 = 0.3 * np.random.default_rng(0).standard_normal((N, 2))
    return x0, x0 + np.array([1.0, 0.5])


def _adata(times=("0", "1.5")):
    """48 cells, interleaved in time (cell 2k at the first time, 2k+1 at the second),
    obs["day"] categorical with the categories `times`, obsm["X_pca"] (48, 3) whose
    first two columns are the snapshots' points, and a sparse X."""
    x0, x1 = _arrays()
    points = np.empty((2 * N, 2))
    points[0::2], points[1::2] = x0, x1
    pca = np.column_stack([points, np.arange(2 * N, dtype=float)])
    day = pd.Categorical([times[k % 2] for k in range(2 * N)], categories=list(times))
    obs = pd.DataFrame({"day": day, "hours": np.where(np.arange(2 * N) % 2, 36, 0),
                        "size": np.where(np.arange(2 * N) % 2, 2.0, 1.0)},
                       index=pd.Index([f"cell{k}" for k in range(2 * N)], dtype=str))
    X = scipy.sparse.random(2 * N, 5, density=0.4, format="csr", random_state=0)
    return anndata.AnnData(X=X, obs=obs, obsm={"X_pca": pca})


@pytest.fixture(scope="module")
def h5ad(tmp_path_factory):
    path = tmp_path_factory.mktemp("cells") / "cells.h5ad"
    _adata().write_h5ad(path)
    return path


def _run(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


# -- reading ------------------------------------------------------------------------------


def test_snapshots_from_an_h5ad_file(h5ad):
    x0, x1 = _arrays()
    snaps = cells.snapshots(h5ad, time_key="day", embedding="X_pca", dims=2)
    assert [s.time for s in snaps] == [0.0, 1.5] and [s.mass for s in snaps] == [None, None]
    np.testing.assert_array_equal(snaps[0].points, x0)  # the cells in the file's order
    np.testing.assert_array_equal(snaps[1].points, x1)
    assert cells.snapshots(h5ad, time_key="day")[0].points.shape == (N, 3)  # default embedding X_pca


def test_numeric_time_mass_key_and_sparse_x(h5ad):
    adata = anndata.read_h5ad(h5ad)
    snaps = cells.snapshots(adata, time_key="hours", embedding="X", mass_key="size")
    assert [s.time for s in snaps] == [0.0, 36.0]
    assert [s.mass for s in snaps] == [N * 1.0, N * 2.0]  # per-cell weights summed per time
    np.testing.assert_array_equal(snaps[1].points, adata.X[1::2].toarray())


def test_integer_categories_and_float32_are_kept(tmp_path):
    adata = _adata()
    adata.obs["day"] = pd.Categorical(np.where(np.arange(2 * N) % 2, 3, 1))
    adata.obsm["X_pca"] = adata.obsm["X_pca"].astype(np.float32)
    adata.write_h5ad(tmp_path / "c.h5ad")
    snaps = cells.snapshots(tmp_path / "c.h5ad", time_key="day", embedding="X_pca")
    assert [s.time for s in snaps] == [1.0, 3.0] and snaps[0].points.dtype == np.float32


def _nan_embedding(adata):
    adata.obsm["X_pca"][5, 1] = np.nan


def _one_time(adata):
    adata.obs["day"] = pd.Categorical(["2"] * adata.n_obs)


def _negative_weight(adata):
    adata.obs.loc["cell3", "size"] = -1.0


def _missing_time(adata):
    adata.obs["hours"] = adata.obs["hours"].astype(float)
    adata.obs.loc["cell4", "hours"] = np.nan


BAD = [
    ("missing time key", dict(time_key="age"), None, "time_key", "time_key 'age' is not a column of obs"),
    ("non-numeric time", dict(time_key="day"), ("day0", "day3"), "time_key", "time_key 'day': the time 'day0' is not a number"),
    ("one time point", dict(time_key="day"), _one_time, "time_key", "time_key 'day': needs at least two time points, found 1 (2)"),
    ("NaN time", dict(time_key="hours"), _missing_time, "time_key", "time_key 'hours': 1 cells have no finite time (NaN or infinite), first 'cell4'"),
    ("missing embedding", dict(time_key="day", embedding="X_umap"), None, "embedding", "embedding 'X_umap' is not a key of obsm (obsm keys: X_pca"),
    ("NaN in the embedding", dict(time_key="day"), _nan_embedding, "embedding", "embedding 'X_pca': 1 cells have NaN or infinite coordinates, first 'cell5'"),
    ("too many dims", dict(time_key="day", dims=4), None, "dims", "dims must be a whole number from 1 to the 3 columns of embedding 'X_pca', got 4"),
    ("missing mass key", dict(time_key="day", mass_key="n_counts"), None, "mass_key", "mass_key 'n_counts' is not a column of obs"),
    ("categorical mass key", dict(time_key="hours", mass_key="day"), None, "mass_key", "mass_key 'day': must be a numeric obs column"),
    ("negative weight", dict(time_key="day", mass_key="size"), _negative_weight, "mass_key", "mass_key 'size': 1 cells have a weight that is negative"),
]


def _bad_adata(change):
    if isinstance(change, tuple):
        return _adata(times=change)
    adata = _adata()
    if change is not None:
        change(adata)
    return adata


@pytest.mark.parametrize("case", BAD, ids=[case[0] for case in BAD])
def test_bad_input_is_refused_naming_the_key(case, tmp_path):
    _, keys, change, argument, message = case
    adata = _bad_adata(change)
    adata.write_h5ad(tmp_path / "bad.h5ad")
    for data in (adata, tmp_path / "bad.h5ad"):
        with pytest.raises(cells.AnnDataInputError, match=re.escape(message)) as raised:
            cells.snapshots(data, **keys)
        assert raised.value.argument == argument and isinstance(raised.value, ValueError)


def test_the_client_refuses_before_calling(client, tmp_path):
    with pytest.raises(cells.AnnDataInputError, match="time_key 'age' is not a column of obs"):
        client.ruot_fit(_adata(), time_key="age", embedding="X_pca", **TINY)
    with pytest.raises(TypeError, match="apply only to an AnnData"):
        client.ruot_fit([(0.0, np.zeros((3, 2))), (1.0, np.ones((3, 2)))], time_key="day", **TINY)


def test_a_malformed_file_is_refused(tmp_path):
    (tmp_path / "junk.h5ad").write_bytes(b"not an hdf5 file")
    with pytest.raises(cells.AnnDataInputError, match=r"cannot be read as AnnData \(\.h5ad\)") as raised:
        cells.snapshots(tmp_path / "junk.h5ad", time_key="day")
    assert raised.value.argument == "path"
    with pytest.raises(cells.AnnDataInputError, match="no such file"):
        cells.read(tmp_path / "absent.h5ad")


@pytest.mark.parametrize("argv, line", [
    (["--time-key", "age"], "time_key 'age' is not a column of obs (obs columns: day, hours, size) (--time-key)"),
    (["--time-key", "day", "--embedding", "X_umap"],
     "embedding 'X_umap' is not a key of obsm (obsm keys: X_pca; or \"X\") (--embedding)"),
    (["--time-key", "day", "--mass-key", "n_counts"],
     "mass_key 'n_counts' is not a column of obs (obs columns: day, hours, size) (--mass-key)"),
])
def test_cli_refuses_bad_keys_in_one_line(h5ad, argv, line):
    code, out, err = _run("ruot", "fit", h5ad, *argv, "--target", "127.0.0.1:9", *TINY_FLAGS)
    assert code == 2 and out == ""
    assert err.splitlines() == [f"monge: {h5ad}: {line}"]


def test_cli_refuses_a_malformed_file_and_cell_flags_on_csv(tmp_path):
    (tmp_path / "junk.h5ad").write_bytes(b"not an hdf5 file")
    code, _, err = _run("ruot", "fit", tmp_path / "junk.h5ad", "--time-key", "day")
    assert code == 2 and "Traceback" not in err
    assert re.fullmatch(rf"monge: {re.escape(str(tmp_path / 'junk.h5ad'))}: cannot be read as AnnData \(\.h5ad\): "
                        r"OSError: .*\n", err), err
    (tmp_path / "d.csv").write_text("t,x\n0,1\n1,2\n")
    code, _, err = _run("ruot", "fit", tmp_path / "d.csv", "--time-key", "day")
    assert code == 2 and err == f"monge: --time-key applies only to an AnnData .h5ad, not {tmp_path / 'd.csv'}\n"


# -- through the server -------------------------------------------------------------------


@pytest.fixture(scope="module")
def fits(server, h5ad):
    """The same fit three ways: from the arrays, from an AnnData object (client), and
    `monge ruot fit cells.h5ad --out-h5ad` (CLI). {name: (loss history, ...)}"""
    from monge.client import Client

    folder = h5ad.parent
    with Client(server.target, timeout=120) as c:
        from_arrays = c.result(c.ruot_fit([(0.0, _arrays()[0]), (1.5, _arrays()[1])], **TINY))
        adata = anndata.read_h5ad(h5ad)
        from_adata = c.result(c.ruot_fit(adata, time_key="day", embedding="X_pca", dims=2, **TINY))
    code, out, err = _run("ruot", "fit", h5ad, "--time-key", "day", "--embedding", "X_pca", "--dims", 2,
                          "--target", server.target, *TINY_FLAGS, "--out", folder / "model.npz",
                          "--out-h5ad", folder / "annotated.h5ad")
    assert code == 0, err
    return {"arrays": from_arrays, "adata": from_adata, "cli": (out, folder / "model.npz", folder / "annotated.h5ad")}


def test_a_fit_from_anndata_equals_the_fit_from_arrays(fits):
    from_arrays, from_adata = fits["arrays"], fits["adata"]
    assert from_arrays.status == from_adata.status == "completed"
    np.testing.assert_array_equal(from_adata.loss_history, from_arrays.loss_history)
    assert from_adata.final_losses == from_arrays.final_losses
    out, model_file, _ = fits["cli"]
    assert "Var-RUOT fit of 2 snapshots (2-D; 24, 24 cells)" in out
    np.testing.assert_array_equal(RuotExport.load(model_file).history, from_arrays.loss_history)


def test_cli_writes_velocity_and_growth_at_each_cells_time(fits, client):
    out, model_file, annotated = fits["cli"]
    assert f"saved 48 cells with obsm['velocity_ruot'], obs['growth_rate_ruot'] and uns['ruot'] to {annotated}" in out
    adata = anndata.read_h5ad(annotated)
    model = RuotExport.load(model_file)
    assert adata.obsm["velocity_ruot"].shape == (48, 2) and adata.obs["growth_rate_ruot"].shape == (48,)
    assert list(adata.obs["day"].cat.categories) == ["0", "1.5"]  # the input is kept
    x0, x1 = _arrays()
    for points, time, rows in ((x0, 0.0, slice(0, None, 2)), (x1, 1.5, slice(1, None, 2))):
        fields = client.ruot_query(model.model_id, points=points, times=time).fields
        np.testing.assert_allclose(adata.obsm["velocity_ruot"][rows], fields.velocity, rtol=1e-12)
        np.testing.assert_allclose(adata.obs["growth_rate_ruot"].to_numpy()[rows], fields.growth, rtol=1e-12)
    uns = adata.uns["ruot"]
    assert uns["model_id"] == model.model_id and uns["time_key"] == "day" and uns["embedding"] == "X_pca"
    assert uns["dims"] == 2 and uns["settings"]["width"] == 16 and uns["settings"]["growth"]["name"] == "quadratic"
    np.testing.assert_array_equal(uns["snapshot_times"], [0.0, 1.5])


def test_cli_writes_predicted_populations_as_anndata(fits, server, tmp_path):
    _, model_file, annotated = fits["cli"]
    model_id = RuotExport.load(model_file).model_id
    code, out, err = _run("ruot", "query", model_id, "--target", server.target, "--population", 0.75,
                          "--population", 3, "--embedding", "X_pca", "--out", tmp_path / "pred.h5ad")
    assert code == 0, err
    assert "population    t=0.75: 24 particles" in out and "population    t=3: 24 particles" in out
    pred = anndata.read_h5ad(tmp_path / "pred.h5ad")
    assert pred.n_obs == 48 and pred.X is None and pred.obsm["X_pca"].shape == (48, 2)
    assert list(pred.obs["time"].cat.categories) == [0.75, 3.0] and pred.obs["weight"].shape == (48,)
    np.testing.assert_array_equal(pred.uns["ruot"]["times"], [0.75, 3.0])
    assert pred.uns["ruot"]["model_id"] == model_id and pred.uns["ruot"]["settings"]["dim"] == 2
    # The same answer as the query itself, and readable again as Var-RUOT input.
    single = _run("ruot", "query", model_file, "--target", server.target, "--population", 3,
                  "--out", tmp_path / "one.npz")
    assert single[0] == 0, single[2]
    with np.load(tmp_path / "one.npz") as stored:
        one = {name: stored[name] for name in stored.files}
    np.testing.assert_array_equal(pred.obsm["X_pca"][24:], one["population_points"])
    np.testing.assert_array_equal(pred.obs["weight"].to_numpy()[24:], one["population_weights"])
    again = cells.snapshots(pred, time_key="time", embedding="X_pca", mass_key="weight")
    assert [s.time for s in again] == [0.75, 3.0] and again[1].mass == pytest.approx(one["population_weights"].sum())


def test_cli_query_h5ad_needs_a_population(fits, server, tmp_path):
    _, model_file, _ = fits["cli"]
    code, _, err = _run("ruot", "query", model_file, "--target", server.target, "--mass", 1, "--out",
                        tmp_path / "p.h5ad")
    assert code == 2
    assert err == f"monge: --out {tmp_path / 'p.h5ad'}: an .h5ad holds predicted populations; ask for --population T\n"


def test_annotate_refuses_an_embedding_the_model_was_not_fitted_to(fits):
    model = RuotExport.load(fits["cli"][1])  # 2-D
    adata = _adata()
    adata.obsm["X_one"] = adata.obsm["X_pca"][:, :1]
    for keys, message in ((dict(embedding="X_one"), "embedding 'X_one': the model is 2-D"),
                          (dict(embedding="X_pca", dims=3), "embedding 'X_pca': the model is 2-D")):
        with pytest.raises(cells.AnnDataInputError, match=re.escape(message)):
            cells.annotate(adata, model, client=None, time_key="day", **keys)
    with pytest.raises(cells.AnnDataInputError, match="time_key 'age' is not a column of obs"):
        cells.annotate(adata, model, client=None, time_key="age")
    assert "velocity_ruot" not in adata.obsm and "ruot" not in adata.uns  # nothing written
