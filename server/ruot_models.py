"""Fitted Var-RUOT models on disk, under `<data_dir>/ruot_models/<model_id>/`.

A model is a folder with `arrays.npz` (`RuotModel.to_arrays()`: plain arrays, read with
`allow_pickle=False`), `model.json` (the solver's settings dict and how the model was
fitted) and `snapshots.npz` (the training snapshots: `times`, `masses` with NaN for
unset, `points_<k>`). A folder is written under a temporary name and renamed into
place, so an id names a complete model or nothing. Ids are 32 lower-case hex digits,
checked before they touch a path. Numpy only: the server process reads models without JAX.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
import re
import shutil
import time
import uuid

import numpy as np

from monge.client.ruot import RuotSnapshot
from monge.server.errors import NotFound

FORMAT = 1
_ID = re.compile(r"[0-9a-f]{32}")


@dataclasses.dataclass(frozen=True)
class StoredRuotModel:
    model_id: str
    arrays: dict[str, np.ndarray]
    settings: dict
    metadata: dict


def _root(data_dir) -> pathlib.Path:
    return pathlib.Path(data_dir) / "ruot_models"


def _folder(data_dir, model_id: str) -> pathlib.Path:
    if not _ID.fullmatch(model_id or ""):
        raise NotFound(f"{model_id!r} is not a Var-RUOT model id (32 lower-case hex digits)")
    folder = _root(data_dir) / model_id
    if not folder.is_dir():
        raise NotFound(f"no Var-RUOT model {model_id} on this server")
    return folder


def save(data_dir, arrays: dict[str, np.ndarray], settings: dict, snapshots, metadata: dict) -> str:
    """Store a model with its training snapshots; return its new id."""
    root = _root(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    model_id = uuid.uuid4().hex
    staging = root / f".{model_id}.partial"
    staging.mkdir()
    try:
        with open(staging / "arrays.npz", "wb") as f:
            np.savez(f, **{name: np.asarray(value) for name, value in arrays.items()})
        with open(staging / "snapshots.npz", "wb") as f:
            np.savez(f, times=np.asarray([s.time for s in snapshots], np.float64),
                     masses=np.asarray([math.nan if s.mass is None else s.mass for s in snapshots], np.float64),
                     **{f"points_{k}": np.asarray(s.points) for k, s in enumerate(snapshots)})
        description = {"format": FORMAT, "settings": settings, "created": time.time(), **metadata}
        (staging / "model.json").write_text(json.dumps(description, indent=1))
        os.rename(staging, root / model_id)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return model_id


def load(data_dir, model_id: str) -> StoredRuotModel:
    """The stored model, or NotFound."""
    folder = _folder(data_dir, model_id)
    try:
        description = json.loads((folder / "model.json").read_text())
        with np.load(folder / "arrays.npz", allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
    except FileNotFoundError:
        raise NotFound(f"no Var-RUOT model {model_id} on this server") from None
    if description.get("format") != FORMAT:
        raise NotFound(f"Var-RUOT model {model_id} was stored in a format this server does not read")
    metadata = {k: v for k, v in description.items() if k not in ("format", "settings")}
    return StoredRuotModel(model_id, arrays, description["settings"], metadata)


def load_snapshots(data_dir, model_id: str) -> list[RuotSnapshot]:
    """The snapshots the model was fitted to, or NotFound."""
    folder = _folder(data_dir, model_id)
    try:
        with np.load(folder / "snapshots.npz", allow_pickle=False) as stored:
            times, masses = stored["times"], stored["masses"]
            return [RuotSnapshot(float(t), stored[f"points_{k}"], None if math.isnan(m) else float(m))
                    for k, (t, m) in enumerate(zip(times, masses))]
    except FileNotFoundError:
        raise NotFound(f"no Var-RUOT model {model_id} on this server") from None
