"""Var-RUOT requests on the client side (the results are in `results`, the exported
models and their format in `monge.v1.ruot_codec`).

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

from typing import Sequence

import numpy as np

from monge.v1 import ruot_pb2
from monge.v1.codec import encode
from monge.v1.ruot_codec import (FIT_SETTINGS, GROWTH_PENALTIES, LAPLACIANS, RECONSTRUCTIONS, RuotExport,
                                 _float_array, as_snapshots, snapshot_to_proto)


# -- requests ---------------------------------------------------------------------------


def fit_request(snapshots: Sequence, *, growth: str = "quadratic", laplacian: str = "auto",
                reconstruction: str | None = None, hold_out: Sequence[float] = (),
                **settings) -> ruot_pb2.RUOTFitRequest:
    """A RUOTFitRequest; settings left out (or None) take the server's defaults, which
    are the paper's for the chosen growth penalty. `hold_out`: times of interior
    snapshots to leave out of the fit; the result reports how well the fit predicts
    each (`RuotFitResult.hold_out`). See `Client.ruot_fit`."""
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
    if isinstance(hold_out, (int, float)):
        hold_out = [hold_out]
    return ruot_pb2.RUOTFitRequest(snapshots=[snapshot_to_proto(s) for s in as_snapshots(snapshots)],
                                   settings=message, hold_out=[float(t) for t in hold_out])


def set_model(request, model) -> None:
    """Point a QueryRUOTRequest at a model: an id (str), a RuotExport or a RuotFitResult
    (its stored id when it has one, else the model inline)."""
    if hasattr(model, "model_id") and hasattr(model, "model"):  # a RuotFitResult (client.results)
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
