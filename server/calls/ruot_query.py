"""QueryRUOTRequest -> validated call -> the solver's queries -> QueryRUOTResponse, and
ExportRUOTModel (a stored model as a message; no worker needed).

The model is a stored one (model_id, read from the data directory: NOT_FOUND if there
is none, or if it is another caller's) or an exported one sent inline. `parse` reads and checks it with numpy only;
`run` rebuilds the solver's `RuotModel` (which checks the network's arrays against the
settings) and calls `monge.solvers.ruot`'s query functions with the request's seed, so
the numbers are those of the same calls in-process.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from monge.v1.ruot_codec import RuotExport, settings_from_proto, snapshot_to_proto
from monge.v1.codec import TensorError, decode, encode
from monge.server import limits
from monge.server.models import ruot as ruot_models
from monge.server.calls import common as v
from monge.server.auth import ANONYMOUS
from monge.server.config import ServerConfig
from monge.server.errors import InvalidArgument
from monge.v1 import ruot_pb2

MAX_TIMES = 10_000
FORMAT_VERSION = 1
_REQUIRED = ("norm.x_shift", "norm.x_scale", "norm.t_shift", "norm.t_scale", "times", "relative_mass",
             "initial_points", "history")


@dataclasses.dataclass(frozen=True)
class Start:
    """Initial points of a simulation (None: the model's first snapshot)."""

    points: np.ndarray | None


@dataclasses.dataclass(frozen=True)
class QueryCall:
    arrays: dict[str, np.ndarray]
    settings: dict
    model_field: str  # "model_id" or "inline_model": named when the model itself is at fault
    seed: int
    trajectories: tuple[np.ndarray | None, Start] | None = None
    fields: tuple[np.ndarray, np.ndarray, bool] | None = None
    mass: tuple[np.ndarray, Start] | None = None
    action: tuple[float | None, Start] | None = None
    population: tuple[float, Start] | None = None


def _model(request, config: ServerConfig, owner: str) -> tuple[dict, dict, str]:
    """(arrays, settings, field) of the request's model, checked with numpy."""
    which = request.WhichOneof("model")
    if which is None:
        raise InvalidArgument.field("model_id", "give a model: model_id or inline_model")
    if which == "model_id":
        if not request.model_id:
            raise InvalidArgument.field("model_id", "is empty")
        stored = ruot_models.load(config.data_dir, request.model_id, owner)  # NotFound
        return stored.arrays, stored.settings, "model_id"
    field = "inline_model"
    try:
        exported = RuotExport.from_proto(request.inline_model, field=field)
    except TensorError as error:
        raise InvalidArgument.field(error.field, error.description) from None
    except ValueError as error:  # "<field>: description"
        name, _, description = str(error).partition(": ")
        raise InvalidArgument.field(name, description) from None
    arrays, settings = exported.arrays, exported.settings
    errors = v.Violations()
    if settings["format_version"] != FORMAT_VERSION:
        errors.add(f"{field}.settings.format_version", f"must be {FORMAT_VERSION}, got {settings['format_version']}")
    for name, low in (("dim", 1), ("width", 1), ("residual_blocks", 0)):
        if settings[name] < low:
            errors.add(f"{field}.settings.{name}", f"must be at least {low}, got {settings[name]}")
    for name in ("sigma", "dt", "alpha"):
        value = settings[name]
        if not math.isfinite(value) or value < 0 or (name != "sigma" and value == 0):
            errors.add(f"{field}.settings.{name}", f"must be a {'non-negative' if name == 'sigma' else 'positive'} "
                                                   f"finite number, got {value}")
    missing = [name for name in _REQUIRED if name not in arrays]
    if missing:
        errors.add(f"{field}.arrays", f"is missing {missing}")
    errors.raise_if_any()
    for name in _REQUIRED[:-1]:  # the loss history may hold the NaN of a diverged block
        if arrays[name].dtype.kind != "f" or not np.all(np.isfinite(arrays[name])):
            errors.add(f"{field}.arrays[{name}]", "must hold finite floating-point numbers")
    for name in sorted(arrays):
        if name.startswith("params/") and arrays[name].dtype.kind != "f":
            errors.add(f"{field}.arrays[{name}]", f"must hold floating-point numbers, got {arrays[name].dtype}")
    times = arrays["times"]
    if times.ndim != 1 or times.size < 1 or np.any(np.diff(times) <= 0):
        errors.add(f"{field}.arrays[times]", f"must be increasing, shape (K,), got shape {list(times.shape)}")
    elif arrays["relative_mass"].shape != times.shape:
        errors.add(f"{field}.arrays[relative_mass]", f"must have one entry per snapshot time, shape "
                                                     f"{list(times.shape)}, got {list(arrays['relative_mass'].shape)}")
    initial = arrays["initial_points"]
    if initial.ndim != 2 or initial.shape[1] != settings["dim"] or initial.shape[0] < 1:
        errors.add(f"{field}.arrays[initial_points]", f"must have shape (n, {settings['dim']}) with n >= 1, "
                                                      f"got {list(initial.shape)}")
    expected = {"norm.x_shift": (settings["dim"],), "norm.x_scale": (), "norm.t_shift": (), "norm.t_scale": ()}
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            errors.add(f"{field}.arrays[{name}]", f"must have shape {list(shape)}, got {list(arrays[name].shape)}")
    for name in ("norm.x_scale", "norm.t_scale"):
        if arrays[name].shape == () and not arrays[name] > 0:
            errors.add(f"{field}.arrays[{name}]", f"must be positive, got {float(arrays[name])}")
    errors.raise_if_any()
    return arrays, settings, field


def _start(query, field: str, dim: int, config: ServerConfig, errors: v.Violations) -> Start:
    points = None
    with errors.check():
        points = v.float_tensor(query, "initial_points", ndim=2, prefix=field + ".", max_points=config.max_points)
        if points is not None and points.shape[1] != dim:
            errors.add(f"{field}.initial_points", f"has dimension {points.shape[1]} but the model has {dim}")
    return Start(points)


def _times(values, field: str, t0: float, errors: v.Violations, *, required: bool) -> np.ndarray | None:
    times = np.asarray(values, np.float64)
    if times.size == 0:
        if required:
            errors.add(field, "give at least one time")
        return None
    if times.size > MAX_TIMES:
        errors.add(field, f"{times.size:,} times are over the limit of {MAX_TIMES:,} times per query")
    elif not np.all(np.isfinite(times)):
        errors.add(field, "must be finite")
    elif np.any(np.diff(times) <= 0):
        errors.add(field, "must increase strictly")
    elif times[0] < t0:
        errors.add(field, f"must not precede the first snapshot time {t0}, got {times[0]}")
    return times


def _check_simulation(field: str, until: float, start: Start, arrays, settings, config, errors, reported: int = 1):
    """Refuse simulations whose grid or output would be over the server's limits."""
    t0 = float(arrays["times"][0])
    ratio = max(until - t0, 0.0) / settings["dt"]  # a float: a far time or a tiny dt makes it huge, or inf
    n = (arrays["initial_points"] if start.points is None else start.points).shape[0]
    dim = settings["dim"]
    if not ratio + 1 <= config.max_trajectory_steps:
        shown = (f"{math.ceil(ratio) + 1:,}" if ratio < 1e15 else
                 "more than 10^308" if math.isinf(ratio) else f"about {ratio:.3g}")
        errors.add(field, limits.over_limit(f"simulating to {until} takes {shown} steps of dt = {settings['dt']:g}",
                                            config.max_trajectory_steps, "max_trajectory_steps"))
        return
    steps = math.ceil(ratio) + 1
    if steps > config.max_trajectory_steps:
        errors.add(field, limits.over_limit(f"simulating to {until} takes {steps:,} steps of dt = {settings['dt']:g}",
                                            config.max_trajectory_steps, "max_trajectory_steps"))
    elif steps * n * dim > config.max_trajectory_elements:
        errors.add(field, limits.over_limit(f"{n:,} particles over {steps:,} steps in {dim} dimensions are "
                                            f"{steps * n * dim:,} values", config.max_trajectory_elements,
                                            "max_trajectory_elements"))
    elif reported * n * (dim + 2) * 4 > config.max_message_bytes:
        errors.add(field, limits.over_limit(f"the answer ({reported:,} times x {n:,} particles) would take "
                                            f"{reported * n * (dim + 2) * 4:,} bytes", config.max_message_bytes,
                                            "max_message_bytes"))


def parse(request: ruot_pb2.QueryRUOTRequest, config: ServerConfig, owner: str = ANONYMOUS) -> QueryCall:
    arrays, settings, model_field = _model(request, config, owner)
    dim, t0 = settings["dim"], float(arrays["times"][0])
    errors = v.Violations()
    asked = {}
    if request.HasField("trajectories"):
        q = request.trajectories
        start = _start(q, "trajectories", dim, config, errors)
        times = _times(q.times, "trajectories.times", t0, errors, required=False)
        if not errors.items:
            last = float(arrays["times"][-1] if times is None else times[-1])
            count = len(arrays["times"]) if times is None else len(times)
            _check_simulation("trajectories.times", last, start, arrays, settings, config, errors, count)
        asked["trajectories"] = (times, start)
    if request.HasField("fields"):
        q = request.fields
        points = times = None
        with errors.check():
            points = v.float_tensor(q, "points", ndim=2, prefix="fields.", max_points=config.max_points,
                                    required="is required, shape (n, d)")
            if points.shape[1] != dim:
                errors.add("fields.points", f"has dimension {points.shape[1]} but the model has {dim}")
        with errors.check():
            if not q.HasField("times"):
                raise InvalidArgument.field("fields.times", "is required: one per point (n,), or a scalar")
            try:
                times = decode(q.times, "fields.times")
            except TensorError as error:
                raise InvalidArgument.field(error.field, error.description) from None
            if times.dtype.kind != "f":
                raise InvalidArgument.field("fields.times", f"dtype must be float32 or float64, got {times.dtype}")
            if not np.all(np.isfinite(times)):
                raise InvalidArgument.field("fields.times", "must be finite")
            if points is not None and not (times.ndim == 0 or times.shape == (points.shape[0],)):
                raise InvalidArgument.field("fields.times", f"must be a scalar or have shape ({points.shape[0]},), "
                                                            f"got {list(times.shape)}")
        asked["fields"] = (points, times, bool(q.hjb_residual))
    if request.HasField("mass"):
        start = _start(request.mass, "mass", dim, config, errors)
        times = _times(request.mass.times, "mass.times", t0, errors, required=True)
        if not errors.items:
            _check_simulation("mass.times", float(times[-1]), start, arrays, settings, config, errors)
        asked["mass"] = (times, start)
    if request.HasField("action"):
        q = request.action
        start = _start(q, "action", dim, config, errors)
        until = None
        if q.HasField("until"):
            if not math.isfinite(q.until) or q.until < t0:
                errors.add("action.until", f"must be a finite time not before the first snapshot time {t0}, "
                                           f"got {q.until}")
            until = q.until
        if not errors.items:
            _check_simulation("action.until", float(arrays["times"][-1]) if until is None else until, start,
                              arrays, settings, config, errors)
        asked["action"] = (until, start)
    if request.HasField("population"):
        q = request.population
        start = _start(q, "population", dim, config, errors)
        if not math.isfinite(q.time) or q.time < t0:
            errors.add("population.time", f"must be a finite time not before the first snapshot time {t0}, "
                                          f"got {q.time}")
        elif not errors.items:
            _check_simulation("population.time", q.time, start, arrays, settings, config, errors)
        asked["population"] = (q.time, start)
    if not asked:
        errors.add("trajectories", "ask for something: trajectories, fields, mass, action or population")
    with errors.check():
        v.integer_in_range(request.seed, "seed", 0, 2**63 - 1)
    errors.raise_if_any()
    return QueryCall(arrays, settings, model_field, int(request.seed), **asked)


def run(call: QueryCall, stop, progress=None):
    """Answer every query on this process's device."""
    from monge.solvers import ruot

    started = time.perf_counter()
    try:
        model = ruot.RuotModel.from_arrays(call.arrays, call.settings)
    except ValueError as error:
        raise InvalidArgument.field(call.model_field, f"is not a usable Var-RUOT model: {error}") from None
    seed = call.seed
    out = {}
    if call.trajectories is not None and not stop.is_set():
        times, start = call.trajectories
        traj = ruot.trajectories(model, times, start.points, seed=seed)
        growth = np.stack([ruot.growth_at(model, x, t) for x, t in zip(traj.points, traj.times)])
        out["trajectories"] = (traj, growth)
    if call.fields is not None and not stop.is_set():
        points, times, with_hjb = call.fields
        out["fields"] = (ruot.potential_at(model, points, times), ruot.velocity_at(model, points, times),
                         ruot.growth_at(model, points, times),
                         ruot.hjb_residual_at(model, points, times, seed=seed) if with_hjb else None)
    if call.mass is not None and not stop.is_set():
        times, start = call.mass
        out["mass"] = (times, ruot.mass_over_time(model, times, start.points, seed=seed))
    if call.action is not None and not stop.is_set():
        until, start = call.action
        until = float(model.times[-1]) if until is None else until
        out["action"] = (until, ruot.path_action(model, start.points, until=until, seed=seed))
    if call.population is not None and not stop.is_set():
        when, start = call.population
        out["population"] = ruot.predict(model, when, start.points, seed=seed)
    out["snapshots"] = (np.asarray(model.times), np.asarray(model.relative_mass))
    out["seconds"] = time.perf_counter() - started
    return out


def encode_response(out) -> ruot_pb2.QueryRUOTResponse:
    times, relative_mass = out["snapshots"]
    response = ruot_pb2.QueryRUOTResponse(snapshot_times=encode(times), snapshot_relative_mass=encode(relative_mass),
                                          query_seconds=out["seconds"])
    if "trajectories" in out:
        traj, growth = out["trajectories"]
        response.trajectories.CopyFrom(ruot_pb2.RUOTTrajectories(
            times=encode(traj.times), points=encode(traj.points), weights=encode(traj.weights),
            mass=encode(traj.mass), growth=encode(growth), action=traj.action))
    if "fields" in out:
        potential, velocity, growth, hjb = out["fields"]
        response.fields.CopyFrom(ruot_pb2.RUOTFields(
            potential=encode(potential), velocity=encode(velocity), growth=encode(growth),
            hjb_residual=None if hjb is None else encode(hjb)))
    if "mass" in out:
        times, mass = out["mass"]
        response.mass.CopyFrom(ruot_pb2.RUOTMassOverTime(times=encode(times), mass=encode(mass)))
    if "action" in out:
        until, action = out["action"]
        response.action.CopyFrom(ruot_pb2.RUOTAction(until=until, action=action))
    if "population" in out:
        p = out["population"]
        response.population.CopyFrom(ruot_pb2.RUOTPopulation(time=p.time, points=encode(p.points),
                                                             weights=encode(p.weights), mass=p.mass))
    return response


def export(request: ruot_pb2.ExportRUOTModelRequest, config: ServerConfig,
           owner: str = ANONYMOUS) -> ruot_pb2.ExportRUOTModelResponse:
    """The caller's stored model (and its snapshots when asked) as a message. Blocking
    file reads: call it off the event loop."""
    if not request.model_id:
        raise InvalidArgument.field("model_id", "is required")
    stored = ruot_models.load(config.data_dir, request.model_id, owner)
    response = ruot_pb2.ExportRUOTModelResponse(model=RuotExport(stored.arrays, stored.settings).to_proto())
    if request.include_snapshots:
        response.snapshots.extend(snapshot_to_proto(s) for s in
                                  ruot_models.load_snapshots(config.data_dir, request.model_id, owner))
    return response


__all__ = ["QueryCall", "parse", "run", "encode_response", "export", "settings_from_proto"]
