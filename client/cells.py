"""Var-RUOT with AnnData: snapshots from cells, fitted fields back onto them, predicted
populations as AnnData.

An AnnData (`.h5ad`) holds cells x genes with per-cell annotations; what a fit needs is
read as moscot reads it:

- `time_key`: the `obs` column of each cell's time: numeric, or categorical whose
  categories are numbers (ints, floats, or strings that parse as numbers such as "1.5";
  "day3" does not). Each distinct time is one snapshot; at least two are needed.
- `embedding`: the coordinates, `obsm[embedding]` (default "X_pca"), or `X` itself with
  embedding="X"; dense or scipy sparse. `dims` keeps the first N columns.
- `mass_key` (optional): an `obs` column of per-cell non-negative weights; a snapshot's
  total mass is the sum of its cells' weights (without it, its cell count). The weights
  set only the snapshots' totals, which drive the growth: within a snapshot every cell
  counts equally in the distance to the simulated particles (the fit takes no per-cell
  weights).

    import anndata
    from monge.client import Client, cells

    adata = anndata.read_h5ad("cells.h5ad")
    with Client() as c:
        fitted = c.result(c.ruot_fit(adata, time_key="day", embedding="X_pca", steps=2000))
        cells.annotate(adata, fitted, client=c, time_key="day", embedding="X_pca")
    adata.write_h5ad("annotated.h5ad")   # obsm["velocity_ruot"], obs["growth_rate_ruot"], uns["ruot"]

Input that cannot be used raises `AnnDataInputError` (a ValueError) naming the argument
and the key at fault. anndata is imported only when an AnnData is read or built here, so
`import monge.client` stays light.
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

import numpy as np

from monge.v1.ruot_codec import RuotExport, RuotSnapshot

DEFAULT_EMBEDDING = "X_pca"
# Where `annotate` writes, and the obsm key of a predicted population's positions.
VELOCITY_KEY = "velocity_ruot"
GROWTH_KEY = "growth_rate_ruot"
UNS_KEY = "ruot"
POSITIONS_KEY = "X_ruot"
# Cells per fields query in `annotate` (each query is one message each way).
ANNOTATE_BATCH = 100_000


class AnnDataInputError(ValueError):
    """An AnnData (or .h5ad file) that cannot be used; `argument` is the one at fault:
    "path", "time_key", "embedding", "dims" or "mass_key". The message names the key."""

    def __init__(self, argument: str, message: str):
        super().__init__(message)
        self.argument = argument


def is_anndata(data) -> bool:
    """Whether `data` is an AnnData object or the path of an .h5ad file."""
    if isinstance(data, (str, os.PathLike)):
        return os.fspath(data).endswith(".h5ad")
    anndata = sys.modules.get("anndata")  # an AnnData object means anndata is imported
    return anndata is not None and isinstance(data, anndata.AnnData)


def read(path: str | os.PathLike):
    """The AnnData in an .h5ad file, in memory; AnnDataInputError if it cannot be read."""
    import anndata

    try:
        return anndata.read_h5ad(path)
    except FileNotFoundError:
        raise AnnDataInputError("path", "no such file") from None
    except Exception as error:  # h5py and anndata raise many kinds for a file that is not one
        detail = " ".join(str(error).split())
        raise AnnDataInputError("path", f"cannot be read as AnnData (.h5ad): {type(error).__name__}: "
                                        f"{detail[:300]}") from None


def _anndata(data):
    if isinstance(data, (str, os.PathLike)):
        return read(data)
    if not is_anndata(data):
        raise TypeError(f"expected an AnnData or the path of an .h5ad file, got {type(data).__name__}")
    return data


def _columns(adata) -> str:
    names = [str(c) for c in adata.obs.columns]
    return ", ".join(names) if names else "none"


def cell_times(adata, time_key: str) -> np.ndarray:
    """Each cell's time (n_obs,) from `obs[time_key]`: numeric, or categorical (or
    strings) whose values are numbers."""
    import pandas as pd

    if time_key is None:
        raise AnnDataInputError("time_key", f"give time_key: the obs column of each cell's time "
                                            f"(obs columns: {_columns(adata)})")
    if time_key not in adata.obs.columns:
        raise AnnDataInputError("time_key", f"time_key {time_key!r} is not a column of obs "
                                            f"(obs columns: {_columns(adata)})")
    column = adata.obs[time_key]
    where = f"time_key {time_key!r}"
    if column.dtype.kind == "b":
        raise AnnDataInputError("time_key", f"{where}: obs column is boolean; Var-RUOT needs numeric times")
    if column.dtype.kind in "iuf":
        times = column.to_numpy(np.float64)
    else:  # categorical, or strings
        if isinstance(column.dtype, pd.CategoricalDtype):
            codes, values = column.cat.codes.to_numpy(), column.cat.categories
        else:
            codes, values = pd.factorize(column)
        missing = int(np.count_nonzero(codes < 0))
        if missing:
            raise AnnDataInputError("time_key", f"{where}: {missing} cells have no time (a missing value), "
                                                f"first {adata.obs_names[np.argmax(codes < 0)]!r}")
        times = _numbers(values, where)[codes]
    bad = ~np.isfinite(times)
    if bad.any():
        raise AnnDataInputError("time_key", f"{where}: {int(bad.sum())} cells have no finite time "
                                            f"(NaN or infinite), first {adata.obs_names[np.argmax(bad)]!r}")
    return times


def _numbers(values, where: str) -> np.ndarray:
    """Category values as floats; AnnDataInputError for the first that is not a number."""
    out = []
    for value in values:
        if isinstance(value, (bool, np.bool_)):
            raise AnnDataInputError("time_key", f"{where}: the time {value!r} is not a number")
        try:
            out.append(float(value.strip() if isinstance(value, str) else value))
        except (TypeError, ValueError):
            raise AnnDataInputError("time_key", f"{where}: the time {value!r} is not a number; Var-RUOT needs "
                                                f"numeric times (a numeric obs column, or categories that are "
                                                f"numbers such as '1.5')") from None
    return np.asarray(out, np.float64)


def cell_points(adata, embedding: str | None = None, dims: int | None = None) -> np.ndarray:
    """Each cell's coordinates (n_obs, d): `obsm[embedding]` (default "X_pca") or `X`
    with embedding="X", dense or sparse, its first `dims` columns when given. float32
    stays float32; other numbers become float64."""
    import scipy.sparse

    embedding = DEFAULT_EMBEDDING if embedding is None else embedding
    where = f"embedding {embedding!r}"
    if embedding == "X":
        matrix = adata.X
        if matrix is None:
            raise AnnDataInputError("embedding", f"{where}: the AnnData has no X")
    elif embedding in adata.obsm:
        matrix = adata.obsm[embedding]
    else:
        keys = ", ".join(map(str, adata.obsm.keys())) or "none"
        raise AnnDataInputError("embedding", f"{where} is not a key of obsm (obsm keys: {keys}; or \"X\")")
    if hasattr(matrix, "to_numpy") and not scipy.sparse.issparse(matrix):  # obsm may hold a DataFrame
        matrix = matrix.to_numpy()
    if len(getattr(matrix, "shape", ())) != 2:
        raise AnnDataInputError("embedding", f"{where}: must be a matrix (cells x coordinates), "
                                             f"got shape {list(getattr(matrix, 'shape', ()))}")
    if dims is not None:
        if isinstance(dims, bool) or not isinstance(dims, (int, np.integer)) or not 1 <= dims <= matrix.shape[1]:
            raise AnnDataInputError("dims", f"dims must be a whole number from 1 to the {matrix.shape[1]} columns "
                                            f"of {where}, got {dims!r}")
        matrix = matrix[:, :dims]
    points = matrix.toarray() if scipy.sparse.issparse(matrix) else np.asarray(matrix)
    if points.dtype.kind not in "iuf":
        raise AnnDataInputError("embedding", f"{where}: must hold numbers, got dtype {points.dtype}")
    if points.dtype not in (np.float32, np.float64):
        points = points.astype(np.float64)
    bad = ~np.isfinite(points).all(axis=1)
    if bad.any():
        raise AnnDataInputError("embedding", f"{where}: {int(bad.sum())} cells have NaN or infinite coordinates, "
                                             f"first {adata.obs_names[np.argmax(bad)]!r}")
    return points


def cell_weights(adata, mass_key: str) -> np.ndarray:
    """Each cell's weight (n_obs,) from `obs[mass_key]`: finite and non-negative."""
    if mass_key not in adata.obs.columns:
        raise AnnDataInputError("mass_key", f"mass_key {mass_key!r} is not a column of obs "
                                            f"(obs columns: {_columns(adata)})")
    column = adata.obs[mass_key]
    where = f"mass_key {mass_key!r}"
    if column.dtype.kind not in "iuf":
        raise AnnDataInputError("mass_key", f"{where}: must be a numeric obs column (per-cell weights), "
                                            f"got dtype {column.dtype}")
    weights = column.to_numpy(np.float64)
    bad = ~(np.isfinite(weights) & (weights >= 0))
    if bad.any():
        raise AnnDataInputError("mass_key", f"{where}: {int(bad.sum())} cells have a weight that is negative, "
                                            f"NaN or infinite, first {adata.obs_names[np.argmax(bad)]!r}")
    return weights


def snapshots(data, *, time_key: str, embedding: str | None = None, mass_key: str | None = None,
              dims: int | None = None) -> list[RuotSnapshot]:
    """The snapshots of an AnnData (or .h5ad path): one per distinct time of
    `obs[time_key]`, in increasing time, its cells in the AnnData's order, at the
    coordinates of `embedding` (first `dims` columns); mass: the cell count, or the sum
    of `obs[mass_key]` over the snapshot's cells. AnnDataInputError naming the key for
    anything unusable, fewer than two times included."""
    adata = _anndata(data)
    if adata.n_obs == 0:
        raise AnnDataInputError("path", "the AnnData has no cells")
    times = cell_times(adata, time_key)
    points = cell_points(adata, embedding, dims)
    weights = None if mass_key is None else cell_weights(adata, mass_key)
    distinct = np.unique(times)
    if len(distinct) < 2:
        found = ", ".join(f"{t:g}" for t in distinct)
        raise AnnDataInputError("time_key", f"time_key {time_key!r}: needs at least two time points, found "
                                            f"{len(distinct)} ({found})")
    out = []
    for t in distinct:
        chosen = times == t
        mass = None
        if weights is not None:
            mass = float(weights[chosen].sum())
            if mass <= 0:
                raise AnnDataInputError("mass_key", f"mass_key {mass_key!r}: the cells at time {t:g} weigh 0 "
                                                    f"in all; a snapshot needs a positive mass")
        out.append(RuotSnapshot(float(t), points[chosen], mass))
    return out


def _export(model, client, timeout) -> RuotExport:
    """The model's arrays and settings: from a RuotFitResult or RuotExport as they are,
    from the server for a model id."""
    if hasattr(model, "model_id") and hasattr(model, "model"):  # a RuotFitResult
        return model.model
    if isinstance(model, RuotExport):
        return model
    if isinstance(model, str):
        return client.ruot_export(model, timeout=timeout)
    raise TypeError(f"model must be a model id, a RuotExport or a RuotFitResult, got {type(model).__name__}")


def annotate(adata, model, *, client, time_key: str, embedding: str | None = None, dims: int | None = None,
             velocity_key: str = VELOCITY_KEY, growth_key: str = GROWTH_KEY, uns_key: str = UNS_KEY,
             batch_size: int = ANNOTATE_BATCH, timeout: float | None = None) -> None:
    """Write the fitted model's fields at every cell, at the cell's own time, into
    `adata` (in place): velocity u = grad lambda in `obsm[velocity_key]` (n_obs, d), in
    the embedding's coordinates; growth rate g in `obs[growth_key]`; and in
    `uns[uns_key]` the model's id, settings, snapshot times and observed relative
    masses, with the keys read and written.

    model: a model id, a `RuotExport` or a `RuotFitResult`; `client` asks it
    (`Client.ruot_query`'s fields, `batch_size` cells per call). Times and coordinates
    are read as `snapshots` reads them; `dims` defaults to the model's dimension (the
    first columns, as the fit's `dims` took them)."""
    exported = _export(model, client, timeout)
    dim = exported.dim
    times = cell_times(adata, time_key)
    mismatch = AnnDataInputError("embedding", f"embedding {embedding or DEFAULT_EMBEDDING!r}: the model is "
                                              f"{dim}-D; give the embedding it was fitted to (and its dims)")
    try:
        points = cell_points(adata, embedding, dim if dims is None else dims)
    except AnnDataInputError as error:
        if dims is None and error.argument == "dims":  # fewer columns than the model has
            raise mismatch from None
        raise
    if points.shape[1] != dim:
        raise mismatch
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    velocity = np.empty(points.shape, np.float64)
    growth = np.empty(len(points), np.float64)
    for start in range(0, len(points), batch_size):
        part = slice(start, start + batch_size)
        fields = client.ruot_query(model, points=points[part], times=times[part], timeout=timeout).fields
        velocity[part], growth[part] = fields.velocity, fields.growth
    adata.obsm[velocity_key] = velocity
    adata.obs[growth_key] = growth
    adata.uns[uns_key] = _uns(exported) | {
        "time_key": str(time_key), "embedding": embedding or DEFAULT_EMBEDDING, "dims": int(dim),
        "velocity_key": velocity_key, "growth_key": growth_key,
    }


def _uns(exported: RuotExport) -> dict:
    """What `uns["ruot"]` says of a model (no None: h5ad cannot store it)."""
    return {
        "model_id": exported.model_id,
        "settings": _storable(exported.settings),
        "snapshot_times": np.asarray(exported.times, np.float64),
        "snapshot_relative_mass": np.asarray(exported.relative_mass, np.float64),
    }


def _storable(value):
    if isinstance(value, dict):
        return {str(k): _storable(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return np.asarray([str(v) for v in value]) if value and all(isinstance(v, str) for v in value) \
            else np.asarray(value)
    return value


def populations_anndata(populations: Sequence, *, embedding: str = POSITIONS_KEY, model: RuotExport | None = None,
                        seed: int | None = None):
    """Predicted populations (`RuotPopulation`s, from `Client.ruot_query(...,
    population_time=T)`) as one AnnData: a cell per particle, `obs["time"]` (categorical
    with numeric categories, as `time_key` takes it), `obs["weight"]` (the particle's
    weight, 1 at the first snapshot: summed per time, with mass_key="weight", it is the
    predicted cell count when the model started from the first snapshot's cells),
    positions in `obsm[embedding]`, no X; `uns["ruot"]` holds each population's time and
    relative mass, the seed, and the model's id and settings when `model` is given."""
    import anndata
    import pandas as pd

    if not populations:
        raise ValueError("give at least one population")
    times = np.concatenate([np.full(len(p.weights), float(p.time)) for p in populations])
    names = [f"t{p.time:g}_{i}" for p in populations for i in range(len(p.weights))]
    obs = pd.DataFrame({"time": pd.Categorical(times),
                        "weight": np.concatenate([np.asarray(p.weights, np.float64) for p in populations])},
                       index=pd.Index(names, dtype=str))
    points = np.concatenate([np.asarray(p.points) for p in populations])
    uns = {"times": np.asarray([p.time for p in populations], np.float64),
           "mass": np.asarray([p.mass for p in populations], np.float64), "embedding": embedding}
    if seed is not None:
        uns["seed"] = int(seed)
    if model is not None:
        uns |= _uns(model)
    return anndata.AnnData(obs=obs, obsm={embedding: points}, uns={UNS_KEY: uns})
