"""The Var-RUOT wire and file format, shared by client and server: the enum names of the
fit settings, snapshots and settings <-> proto, and `RuotExport` (a fitted model as
plain numpy data, with its .npz file form). numpy only, no JAX."""

from __future__ import annotations

import dataclasses
import json
import math
import os

import numpy as np

from monge.v1.codec import decode, encode
from monge.v1 import ruot_pb2

FORMAT_VERSION = 1
LOSS_NAMES = ("total", "ot", "mass", "hjb", "action")

GROWTH_PENALTIES = {
    "none": ruot_pb2.RUOT_GROWTH_PENALTY_NONE,
    "quadratic": ruot_pb2.RUOT_GROWTH_PENALTY_QUADRATIC,
    "paper": ruot_pb2.RUOT_GROWTH_PENALTY_PAPER,
}
LAPLACIANS = {
    "auto": ruot_pb2.RUOT_LAPLACIAN_AUTO,
    "exact": ruot_pb2.RUOT_LAPLACIAN_EXACT,
    "hutchinson": ruot_pb2.RUOT_LAPLACIAN_HUTCHINSON,
}
RECONSTRUCTIONS = {
    "energy": ruot_pb2.RUOT_RECONSTRUCTION_ENERGY_DISTANCE,
    "sinkhorn": ruot_pb2.RUOT_RECONSTRUCTION_SINKHORN_DIVERGENCE,
}
STATUSES = {
    "untrained": ruot_pb2.RUOT_TRAINING_STATUS_UNTRAINED,
    "completed": ruot_pb2.RUOT_TRAINING_STATUS_COMPLETED,
    "cancelled": ruot_pb2.RUOT_TRAINING_STATUS_CANCELLED,
    "diverged": ruot_pb2.RUOT_TRAINING_STATUS_DIVERGED,
}
_GROWTH_NAMES = {number: name for name, number in GROWTH_PENALTIES.items()}
_LAPLACIAN_NAMES = {number: name for name, number in LAPLACIANS.items()}
_STATUS_NAMES = {number: name for name, number in STATUSES.items()}

# The fit settings a request may carry, in RUOTFitSettings' own names.
FIT_SETTINGS = (
    "growth_linear_below", "alpha", "sigma", "dt", "gamma_hjb", "gamma_action", "gamma_mass",
    "ot_epsilon", "width", "residual_blocks", "steps", "report_every", "particles", "learning_rate",
    "weight_decay", "clip_norm", "seed", "laplacian_probes", "laplacian_max_exact_dim",
)


@dataclasses.dataclass(frozen=True)
class RuotSnapshot:
    """One observed population: time, points (n, d), and optionally its total mass (a
    cell count; default the number of points)."""

    time: float
    points: np.ndarray
    mass: float | None = None


def as_snapshots(snapshots) -> list[RuotSnapshot]:
    """RuotSnapshots from RuotSnapshot objects or (time, points[, mass]) tuples."""
    out = []
    for k, snap in enumerate(snapshots):
        if isinstance(snap, RuotSnapshot):
            out.append(snap)
        elif isinstance(snap, (tuple, list)) and len(snap) in (2, 3):
            out.append(RuotSnapshot(*snap))
        else:
            raise TypeError(f"snapshots[{k}] must be a RuotSnapshot or (time, points[, mass])")
    return out


def _float_array(value) -> np.ndarray:
    array = np.asarray(value)
    return array if array.dtype in (np.float32, np.float64) else array.astype(np.float64)


def snapshot_to_proto(snap: RuotSnapshot) -> ruot_pb2.RUOTSnapshot:
    message = ruot_pb2.RUOTSnapshot(time=float(snap.time), points=encode(_float_array(snap.points)))
    if snap.mass is not None:
        message.mass = float(snap.mass)
    return message


def snapshot_from_proto(message: ruot_pb2.RUOTSnapshot, field: str = "snapshots") -> RuotSnapshot:
    return RuotSnapshot(message.time, decode(message.points, f"{field}.points"),
                        message.mass if message.HasField("mass") else None)


# -- settings: proto <-> the solver's settings dict ---------------------------------------


def settings_to_proto(settings: dict) -> ruot_pb2.RUOTModelSettings:
    """The solver's `RuotSettings.to_dict()` as a RUOTModelSettings message."""
    growth = dict(settings["growth"])
    laplacian = dict(settings["laplacian"])
    if growth.get("name") not in GROWTH_PENALTIES:
        raise ValueError(f"settings.growth.name must be one of {sorted(GROWTH_PENALTIES)}, got {growth.get('name')!r}")
    if laplacian.get("name") not in LAPLACIANS:
        raise ValueError(f"settings.laplacian.name must be one of {sorted(LAPLACIANS)}, "
                         f"got {laplacian.get('name')!r}")
    return ruot_pb2.RUOTModelSettings(
        format_version=int(settings.get("format_version", FORMAT_VERSION)),
        dim=int(settings["dim"]), width=int(settings["width"]), residual_blocks=int(settings["residual_blocks"]),
        sigma=float(settings["sigma"]), dt=float(settings["dt"]), alpha=float(settings["alpha"]),
        growth_penalty=GROWTH_PENALTIES[growth["name"]],
        growth_linear_below=float(growth.get("linear_below", 0.0)),
        laplacian=LAPLACIANS[laplacian["name"]],
        laplacian_probes=int(laplacian.get("probes", 0)),
        laplacian_max_exact_dim=int(laplacian.get("max_exact_dim", 0)),
        steps_trained=int(settings.get("steps_trained", 0)),
        status=STATUSES.get(settings.get("status", "untrained"), ruot_pb2.RUOT_TRAINING_STATUS_UNSPECIFIED),
        loss_names=list(settings.get("loss_names", ())),
    )


def settings_from_proto(message: ruot_pb2.RUOTModelSettings, field: str = "model.settings") -> dict:
    """A RUOTModelSettings message as the solver's settings dict; ValueError naming the
    field for values no model can have."""
    if message.growth_penalty not in _GROWTH_NAMES:
        raise ValueError(f"{field}.growth_penalty: unknown or unspecified value {message.growth_penalty}")
    if message.laplacian not in _LAPLACIAN_NAMES:
        raise ValueError(f"{field}.laplacian: unknown or unspecified value {message.laplacian}")
    if message.status not in _STATUS_NAMES:
        raise ValueError(f"{field}.status: unknown or unspecified value {message.status}")
    growth = {"name": _GROWTH_NAMES[message.growth_penalty]}
    if growth["name"] == "paper":
        growth["linear_below"] = message.growth_linear_below
    laplacian = {"name": _LAPLACIAN_NAMES[message.laplacian]}
    if laplacian["name"] == "auto":
        laplacian["max_exact_dim"] = message.laplacian_max_exact_dim
    if laplacian["name"] in ("auto", "hutchinson"):
        laplacian["probes"] = message.laplacian_probes
    return {
        "dim": message.dim, "width": message.width, "residual_blocks": message.residual_blocks,
        "sigma": message.sigma, "dt": message.dt, "alpha": message.alpha,
        "growth": growth, "laplacian": laplacian,
        "steps_trained": message.steps_trained, "status": _STATUS_NAMES[message.status],
        "loss_names": list(message.loss_names), "format_version": message.format_version,
    }


# -- exported models --------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RuotExport:
    """A fitted model as plain data. `arrays` and `settings` are what
    `monge.solvers.ruot.RuotModel.from_arrays` takes; `model_id` is its id on the server
    that fitted it ("" if unknown); `snapshots` the training data, when exported with it."""

    arrays: dict[str, np.ndarray]
    settings: dict
    model_id: str = ""
    snapshots: tuple[RuotSnapshot, ...] = ()

    @property
    def dim(self) -> int:
        return int(self.settings["dim"])

    @property
    def times(self) -> np.ndarray:
        return self.arrays["times"]

    @property
    def relative_mass(self) -> np.ndarray:
        return self.arrays["relative_mass"]

    @property
    def initial_points(self) -> np.ndarray:
        return self.arrays["initial_points"]

    @property
    def history(self) -> np.ndarray:
        return self.arrays["history"]

    @property
    def status(self) -> str:
        return self.settings.get("status", "untrained")

    def to_proto(self) -> ruot_pb2.RUOTModel:
        return ruot_pb2.RUOTModel(settings=settings_to_proto(self.settings),
                                  arrays={name: encode(value) for name, value in self.arrays.items()})

    @classmethod
    def from_proto(cls, message: ruot_pb2.RUOTModel, *, model_id: str = "", snapshots=(),
                   field: str = "model") -> "RuotExport":
        arrays = {name: decode(tensor, f"{field}.arrays[{name}]") for name, tensor in message.arrays.items()}
        return cls(arrays, settings_from_proto(message.settings, f"{field}.settings"), model_id, tuple(snapshots))

    def file_arrays(self) -> dict[str, np.ndarray]:
        """What `save` writes: the arrays by name, `settings_json`, `model_id`, and the
        snapshots as `snapshot_times`, `snapshot_masses` (NaN: unset) and `snapshot_points_<k>`."""
        extra = {"settings_json": np.str_(json.dumps(self.settings)), "model_id": np.str_(self.model_id)}
        if self.snapshots:
            extra["snapshot_times"] = np.asarray([s.time for s in self.snapshots], np.float64)
            extra["snapshot_masses"] = np.asarray([math.nan if s.mass is None else s.mass for s in self.snapshots])
            extra.update({f"snapshot_points_{k}": np.asarray(s.points) for k, s in enumerate(self.snapshots)})
        clash = set(extra) & set(self.arrays)
        if clash:
            raise ValueError(f"arrays may not be named {sorted(clash)}")
        return {**self.arrays, **extra}

    def save(self, path: str | os.PathLike) -> None:
        """One .npz (see `file_arrays`); `load` reads it back."""
        np.savez(path, **self.file_arrays())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "RuotExport":
        """A model written by `save` (or `monge ruot export`); ValueError if it is not one."""
        with np.load(path, allow_pickle=False) as stored:
            files = {name: stored[name] for name in stored.files}
        if "settings_json" not in files:
            raise ValueError(f"{os.fspath(path)} is not an exported Var-RUOT model (no settings_json)")
        settings = json.loads(str(files.pop("settings_json")))
        model_id = str(files.pop("model_id", ""))
        snapshots = ()
        if "snapshot_times" in files:
            times, masses = files.pop("snapshot_times"), files.pop("snapshot_masses")
            snapshots = tuple(
                RuotSnapshot(float(t), files.pop(f"snapshot_points_{k}"), None if math.isnan(m) else float(m))
                for k, (t, m) in enumerate(zip(times, masses))
            )
        return cls(files, settings, model_id, snapshots)


