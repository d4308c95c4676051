"""Trained score models on disk, under `<data_dir>/models/<model_id>/`.

Each model is a folder with `weights.npz` (the built-in MLP's flat weight dict, plain
arrays: loaded with `allow_pickle=False`) and `model.json` (architecture, prediction
type, how it was trained, and its owner). A folder is written under a temporary name and
renamed into place, so a model id either names a complete model or nothing. Ids are 32
lower-case hex digits and are checked before they touch a path.

A model belongs to the caller that trained it (the identity of its token; ANONYMOUS with
auth off, and for models stored before owners were recorded): `load` for anyone else
answers exactly as for an id that does not exist.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time

import numpy as np

from monge.server.auth import ANONYMOUS
from monge.server.models import folders

FORMAT = 1


@dataclasses.dataclass(frozen=True)
class StoredModel:
    """A built-in MLP with its weights: what a request's `mlp` source also describes."""

    dim: int
    hidden: tuple[int, ...]
    time_embedding_dim: int
    prediction: str  # a key of monge.solvers.pfode.PREDICTIONS
    weights: dict[str, np.ndarray]


class ModelNotFound(LookupError):
    """No model with this id (or a malformed id); the message says which."""


def _root(data_dir) -> pathlib.Path:
    return pathlib.Path(data_dir) / "models"


valid_id = folders.valid_id


def save(data_dir, model: StoredModel, metadata: dict, owner: str = ANONYMOUS) -> str:
    """Store the model as `owner`'s and return its new id."""
    description = {
        "format": FORMAT,
        "architecture": "mlp",
        "dim": model.dim,
        "hidden": list(model.hidden),
        "time_embedding_dim": model.time_embedding_dim,
        "prediction": model.prediction,
        "created": time.time(),
        **metadata,
        "owner": owner,
    }
    return folders.store(_root(data_dir), {"weights.npz": model.weights}, description)


def load(data_dir, model_id: str, owner: str = ANONYMOUS) -> StoredModel:
    """`owner`'s stored model, or ModelNotFound (also for another owner's)."""
    if not valid_id(model_id):
        raise ModelNotFound(f"{model_id!r} is not a model id (32 lower-case hex digits)")
    folder = _root(data_dir) / model_id
    missing = ModelNotFound(f"no trained model {model_id} on this server")
    try:
        description = json.loads((folder / "model.json").read_text())
        if description.get("owner", ANONYMOUS) != owner:  # another's: as if there were none
            raise missing
        if description.get("format") != FORMAT or description.get("architecture") != "mlp":
            raise ModelNotFound(f"model {model_id} was stored in a format this server does not read")
        with np.load(folder / "weights.npz", allow_pickle=False) as stored:
            weights = {name: stored[name] for name in stored.files}
    except FileNotFoundError:
        raise missing from None
    return StoredModel(
        dim=int(description["dim"]),
        hidden=tuple(int(h) for h in description["hidden"]),
        time_embedding_dim=int(description["time_embedding_dim"]),
        prediction=str(description["prediction"]),
        weights=weights,
    )
