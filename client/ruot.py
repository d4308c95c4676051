"""Var-RUOT on the client side: request builders, results, and exported models.

numpy only (no JAX), so a pipeline can fit and query on a remote server and keep its
models as plain files. An exported model is `RuotExport`: the solver's arrays and its
settings dict, exactly what `monge.solvers.ruot.RuotModel.from_arrays(arrays, settings)`
takes, so the same model also loads in-process:

    job = client.ruot_fit([(0.0, x0), (1.0, x1), (2.0, x2, 3.1 * len(x0))], steps=2000)
    fitted = client.result(job)                        # RuotFitResult
    fitted.model.save("model.npz")                     # keep it
    r = client.ruot_query(RuotExport.load("model.npz"), trajectories=True)   # any server
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Sequence

import numpy as np

from monge.client.tensors import decode, encode
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


# -- requests ---------------------------------------------------------------------------


def fit_request(snapshots: Sequence, *, growth: str = "quadratic", laplacian: str = "auto",
                reconstruction: str | None = None, **settings) -> ruot_pb2.RUOTFitRequest:
    """A RUOTFitRequest; settings left out (or None) take the server's defaults, which
    are the paper's for the chosen growth penalty. See `Client.ruot_fit`."""
    unknown = sorted(set(settings) - set(FIT_SETTINGS))
    if unknown:
        raise TypeError(f"unknown Var-RUOT settings {unknown}; known: {', '.join(FIT_SETTINGS)}")
    if growth not in GROWTH_PENALTIES:
        raise ValueError(f"growth must be one of {sorted(GROWTH_PENALTIES)}, got {growth!r}")
    if laplacian not in LAPLACIANS:
        raise ValueError(f"laplacian must be one of {sorted(LAPLACIANS)}, got {laplacian!r}")
    if reconstruction is not None and reconstruction not in RECONSTRUCTIONS:
        raise ValueError(f"reconstruction must be one of {sorted(RECONSTRUCTIONS)}, got {reconstruction!r}")
    message = ruot_pb2.RUOTFitSettings(growth_penalty=GROWTH_PENALTIES[growth], laplacian=LAPLACIANS[laplacian])
    if reconstruction is not None:
        message.reconstruction = RECONSTRUCTIONS[reconstruction]
    for name, value in settings.items():
        if value is not None:
            setattr(message, name, value)
    return ruot_pb2.RUOTFitRequest(snapshots=[snapshot_to_proto(s) for s in as_snapshots(snapshots)],
                                   settings=message)


def set_model(request, model) -> None:
    """Point a QueryRUOTRequest at a model: an id (str), a RuotExport or a RuotFitResult
    (its stored id when it has one, else the model inline)."""
    if isinstance(model, RuotFitResult):
        model = model.model_id or model.model
    if isinstance(model, str):
        request.model_id = model
    elif isinstance(model, RuotExport):
        request.inline_model.CopyFrom(model.to_proto())
    else:
        raise TypeError(f"model must be a model id, a RuotExport or a RuotFitResult, got {type(model).__name__}")


def query_request(
    model,
    *,
    trajectories=None,
    points=None,
    times=None,
    hjb_residual: bool = False,
    mass_times=None,
    action=None,
    population_time: float | None = None,
    initial_points=None,
    seed: int = 0,
) -> ruot_pb2.QueryRUOTRequest:
    """A QueryRUOTRequest; see `Client.ruot_query`."""
    request = ruot_pb2.QueryRUOTRequest(seed=seed)
    set_model(request, model)
    start = None if initial_points is None else encode(_float_array(initial_points))

    def with_start(query):
        if start is not None:
            query.initial_points.CopyFrom(start)
        return query

    if trajectories is not None and trajectories is not False:
        chosen = [] if trajectories is True else [float(t) for t in np.atleast_1d(trajectories)]
        request.trajectories.CopyFrom(with_start(ruot_pb2.RUOTTrajectoriesQuery(times=chosen)))
    if points is not None or times is not None:
        if points is None or times is None:
            raise ValueError("give both points and times for the fields query")
        request.fields.CopyFrom(ruot_pb2.RUOTFieldsQuery(
            points=encode(_float_array(points)), times=encode(_float_array(times)), hjb_residual=hjb_residual))
    if mass_times is not None:
        request.mass.CopyFrom(with_start(ruot_pb2.RUOTMassQuery(times=[float(t) for t in np.atleast_1d(mass_times)])))
    if action is not None and action is not False:
        query = with_start(ruot_pb2.RUOTActionQuery())
        if action is not True:
            query.until = float(action)
        request.action.CopyFrom(query)
    if population_time is not None:
        request.population.CopyFrom(with_start(ruot_pb2.RUOTPopulationQuery(time=float(population_time))))
    return request


# -- results ----------------------------------------------------------------------------


def _array(message, field):
    return decode(getattr(message, field), field) if message.HasField(field) else None


@dataclasses.dataclass(frozen=True)
class RuotFitResult:
    """A finished fit: the stored model's id ("" when cancelled), the model itself,
    the mean losses of every block (blocks, len(loss_names)) and how training went
    (`diagnostics.iterations` are optimiser steps, `.error` the final total loss)."""

    model_id: str
    model: RuotExport
    loss_history: np.ndarray
    loss_names: tuple[str, ...]
    final_losses: dict[str, float]
    diagnostics: object  # results.Diagnostics

    @property
    def status(self) -> str:
        return self.model.status

    @classmethod
    def from_proto(cls, reply: ruot_pb2.RUOTFitResponse) -> "RuotFitResult":
        from monge.client.results import Diagnostics

        model = RuotExport.from_proto(reply.model, model_id=reply.model_id)
        names = tuple(reply.loss_names)
        final = {name: reply.final_losses[name] for name in names if name in reply.final_losses}  # in order
        return cls(reply.model_id, model, _array(reply, "loss_history"), names, final,
                   Diagnostics.from_proto(reply.diagnostics))


@dataclasses.dataclass(frozen=True)
class RuotTrajectories:
    """Particles at `times` (T,): points (T, n, d), weights (T, n) (1 at the start), mass
    (T,) relative to the initial mass, growth rates (T, n), and the path's action."""

    times: np.ndarray
    points: np.ndarray
    weights: np.ndarray
    mass: np.ndarray
    growth: np.ndarray
    action: float


@dataclasses.dataclass(frozen=True)
class RuotFields:
    """lambda (n,), velocity u = grad lambda (n, d), growth rate (n,), and the HJB
    residual (n,) when asked for."""

    potential: np.ndarray
    velocity: np.ndarray
    growth: np.ndarray
    hjb_residual: np.ndarray | None


@dataclasses.dataclass(frozen=True)
class RuotPopulation:
    """The predicted population at `time`: points (n, d), weights (n,), relative mass."""

    time: float
    points: np.ndarray
    weights: np.ndarray
    mass: float

    @property
    def probabilities(self) -> np.ndarray:
        return self.weights / self.weights.sum()


@dataclasses.dataclass(frozen=True)
class RuotQueryResult:
    """The answers to the queries asked (None for those not asked), and the model's
    snapshot times and observed relative masses."""

    trajectories: RuotTrajectories | None
    fields: RuotFields | None
    mass_times: np.ndarray | None
    mass: np.ndarray | None
    action: float | None
    action_until: float | None
    population: RuotPopulation | None
    snapshot_times: np.ndarray
    snapshot_relative_mass: np.ndarray
    query_seconds: float

    @classmethod
    def from_proto(cls, reply: ruot_pb2.QueryRUOTResponse) -> "RuotQueryResult":
        trajectories = fields = population = None
        if reply.HasField("trajectories"):
            t = reply.trajectories
            trajectories = RuotTrajectories(_array(t, "times"), _array(t, "points"), _array(t, "weights"),
                                            _array(t, "mass"), _array(t, "growth"), t.action)
        if reply.HasField("fields"):
            f = reply.fields
            fields = RuotFields(_array(f, "potential"), _array(f, "velocity"), _array(f, "growth"),
                                _array(f, "hjb_residual"))
        if reply.HasField("population"):
            p = reply.population
            population = RuotPopulation(p.time, _array(p, "points"), _array(p, "weights"), p.mass)
        has_mass, has_action = reply.HasField("mass"), reply.HasField("action")
        return cls(
            trajectories, fields,
            _array(reply.mass, "times") if has_mass else None, _array(reply.mass, "mass") if has_mass else None,
            reply.action.action if has_action else None, reply.action.until if has_action else None,
            population, _array(reply, "snapshot_times"), _array(reply, "snapshot_relative_mass"),
            reply.query_seconds,
        )
