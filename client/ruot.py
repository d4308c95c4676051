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
from typing import Sequence

import numpy as np

from monge.v1 import ruot_pb2
from monge.v1.codec import decode, encode
from monge.v1.ruot_codec import (FIT_SETTINGS, GROWTH_PENALTIES, LAPLACIANS, RECONSTRUCTIONS, RuotExport,
                                 _float_array, as_snapshots, snapshot_to_proto)


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
