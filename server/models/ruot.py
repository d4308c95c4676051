"""Fitted Var-RUOT models on disk, under `<data_dir>/ruot_models/<model_id>/`.

A model is a folder with `arrays.npz` (`RuotModel.to_arrays()`: plain arrays, read with
`allow_pickle=False`), `model.json` (the solver's settings dict and how the model was
fitted) and `snapshots.npz` (the training snapshots: `times`, `masses` with NaN for
unset, `points_<k>`). A folder is written under a temporary name and renamed into
place, so an id names a complete model or nothing. Ids are 32 lower-case hex digits,
checked before they touch a path. Numpy only: the server process reads models without JAX.

A model belongs to the caller whose fit stored it (`model.json`'s `owner`: the identity of
its token; ANONYMOUS with auth off, and for models stored before owners were recorded).
For anyone else `load` and `load_snapshots` answer NotFound, exactly as for an id that
does not exist. `field` names the request field that gave the id, in that answer.
"""

from __future__ import annotations

import dataclasses
import json
import math
import pathlib
import time

import numpy as np

from monge.v1.ruot_codec import RuotSnapshot
from monge.server.auth import ANONYMOUS
from monge.server.errors import NotFound
from monge.server.models import folders

FORMAT = 1


@dataclasses.dataclass(frozen=True)
class StoredRuotModel:
    model_id: str
    arrays: dict[str, np.ndarray]
    settings: dict
    metadata: dict


def _root(data_dir) -> pathlib.Path:
    return pathlib.Path(data_dir) / "ruot_models"


def _missing(model_id: str, field: str) -> NotFound:
    return NotFound(f"no Var-RUOT model {model_id} on this server", field)


def _folder(data_dir, model_id: str, owner: str, field: str) -> tuple[pathlib.Path, dict]:
    """The folder of `owner`'s model and its description, or NotFound."""
    if not folders.valid_id(model_id):
        raise NotFound(f"{model_id!r} is not a Var-RUOT model id (32 lower-case hex digits)", field)
    folder = _root(data_dir) / model_id
    try:
        description = json.loads((folder / "model.json").read_text())
    except (FileNotFoundError, NotADirectoryError):
        raise _missing(model_id, field) from None
    if description.get("owner", ANONYMOUS) != owner:  # another's: as if there were none
        raise _missing(model_id, field)
    return folder, description


def save(data_dir, arrays: dict[str, np.ndarray], settings: dict, snapshots, metadata: dict,
         owner: str = ANONYMOUS) -> str:
    """Store a model with its training snapshots as `owner`'s; return its new id."""
    snapshot_arrays = dict(
        times=np.asarray([s.time for s in snapshots], np.float64),
        masses=np.asarray([math.nan if s.mass is None else s.mass for s in snapshots], np.float64),
        **{f"points_{k}": np.asarray(s.points) for k, s in enumerate(snapshots)},
    )
    description = {"format": FORMAT, "settings": settings, "created": time.time(), **metadata, "owner": owner}
    return folders.store(_root(data_dir), {"arrays.npz": arrays, "snapshots.npz": snapshot_arrays}, description)


def load(data_dir, model_id: str, owner: str = ANONYMOUS, field: str = "model_id") -> StoredRuotModel:
    """`owner`'s stored model, or NotFound."""
    folder, description = _folder(data_dir, model_id, owner, field)
    if description.get("format") != FORMAT:
        raise NotFound(f"Var-RUOT model {model_id} was stored in a format this server does not read", field)
    try:
        with np.load(folder / "arrays.npz", allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
    except FileNotFoundError:
        raise _missing(model_id, field) from None
    metadata = {k: v for k, v in description.items() if k not in ("format", "settings", "owner")}
    return StoredRuotModel(model_id, arrays, description["settings"], metadata)


def load_snapshots(data_dir, model_id: str, owner: str = ANONYMOUS, field: str = "model_id") -> list[RuotSnapshot]:
    """The snapshots `owner`'s model was fitted to, or NotFound."""
    folder, _ = _folder(data_dir, model_id, owner, field)
    try:
        with np.load(folder / "snapshots.npz", allow_pickle=False) as stored:
            times, masses = stored["times"], stored["masses"]
            return [RuotSnapshot(float(t), stored[f"points_{k}"], None if math.isnan(m) else float(m))
                    for k, (t, m) in enumerate(zip(times, masses))]
    except FileNotFoundError:
        raise _missing(model_id, field) from None
