"""RUOTFitRequest -> validated call -> `ruot.fit` -> stored model -> RUOTFitResponse.

A job item only (JobItem.ruot_fit): training takes minutes. The solver trains in jitted
blocks of `report_every` steps and calls back between blocks; each callback sends the
block's mean losses to the job's watchers (`iteration`, `loss`, `loss_terms`) and tells
the solver to stop when the job was cancelled. A fit that ran (completed, or diverged with its last
finite parameters) is stored under the server's data directory (`ruot_models`) with its
snapshots, as the caller's, and its id is returned with the model, exported; a cancelled
fit stores nothing. Cancellation and the server's `max_training_seconds` are also
checked before every training step (`ruot.fit`'s should_stop), so the
worker is free within a step: a fit past the limit stops there and fails
RESOURCE_EXHAUSTED, storing nothing. Snapshots named by `hold_out` are left out of the
fit (and of the stored model); after it, each is predicted and reported beside its
references (`monge.solvers.ruot.hold_out_report`).

`parse` builds the solver's own `RuotConfig` (plain Python, no device work), after
checking every field under its proto name so that errors name the request's fields.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from monge.v1.ruot_codec import FIT_SETTINGS, RuotExport, RuotSnapshot
from monge.v1.codec import encode
from monge.server import limits
from monge.server.models import ruot as ruot_models
from monge.server.calls import common as v
from monge.server.auth import ANONYMOUS
from monge.server.config import ServerConfig
from monge.server.errors import InvalidArgument, LimitExceeded
from monge.server.priority import OwnTime
from monge.v1 import diagnostics_pb2, ruot_pb2

MAX_WIDTH = 4096
MAX_RESIDUAL_BLOCKS = 32
MAX_PARTICLES = 100_000
MAX_GRID_STEPS = 10_000  # Euler-Maruyama steps from the first to the last snapshot
MAX_PROBES = 1024

_GROWTHS = {
    ruot_pb2.RUOT_GROWTH_PENALTY_UNSPECIFIED: "quadratic",
    ruot_pb2.RUOT_GROWTH_PENALTY_NONE: "none",
    ruot_pb2.RUOT_GROWTH_PENALTY_QUADRATIC: "quadratic",
    ruot_pb2.RUOT_GROWTH_PENALTY_PAPER: "paper",
}
_RECONSTRUCTIONS = {
    ruot_pb2.RUOT_RECONSTRUCTION_UNSPECIFIED: None,  # energy, or Sinkhorn when ot_epsilon is given
    ruot_pb2.RUOT_RECONSTRUCTION_ENERGY_DISTANCE: "energy",
    ruot_pb2.RUOT_RECONSTRUCTION_SINKHORN_DIVERGENCE: "sinkhorn",
}
_LAPLACIANS = {
    ruot_pb2.RUOT_LAPLACIAN_UNSPECIFIED: "auto",
    ruot_pb2.RUOT_LAPLACIAN_AUTO: "auto",
    ruot_pb2.RUOT_LAPLACIAN_EXACT: "exact",
    ruot_pb2.RUOT_LAPLACIAN_HUTCHINSON: "hutchinson",
}


@dataclasses.dataclass(frozen=True)
class HeldOut:
    """A snapshot left out of the fit, its mass relative to the first snapshot's, and
    the fitted snapshots on either side of it."""

    snapshot: RuotSnapshot
    relative_mass: float
    before: RuotSnapshot
    after: RuotSnapshot


def _mass(snapshot: RuotSnapshot) -> float:
    return float(snapshot.points.shape[0] if snapshot.mass is None else snapshot.mass)


def split_hold_out(snapshots: list[RuotSnapshot], hold_out, max_entries: int,
                   errors: v.Violations) -> tuple[list[RuotSnapshot], tuple[HeldOut, ...]]:
    """(the snapshots to fit, those held out), each `hold_out[i]` the time of an interior
    snapshot, each at most once; violations name `hold_out[i]`."""
    times = [s.time for s in snapshots]
    chosen, asked_as = [], []  # snapshot indices, and the hold_out index that named each
    for i, when in enumerate(hold_out):
        field = f"hold_out[{i}]"
        if not math.isfinite(when):
            errors.add(field, f"must be finite, got {when}")
            continue
        matches = [k for k, t in enumerate(times) if abs(t - when) <= 1e-9 * max(1.0, abs(when))]
        if not matches:
            errors.add(field, f"{when:g} is not the time of a snapshot (times: {', '.join(f'{t:g}' for t in times)})")
        elif matches[0] in (0, len(times) - 1):
            errors.add(field, f"{when:g} is the {'first' if matches[0] == 0 else 'last'} snapshot's time: only "
                              "interior snapshots can be held out (the fit starts at the first and ends at the last)")
        elif matches[0] in chosen:
            errors.add(field, f"holds out {when:g} a second time")
        else:
            chosen.append(matches[0])
            asked_as.append(i)
    fitted = [s for k, s in enumerate(snapshots) if k not in chosen]
    held = []
    for i, k in zip(asked_as, chosen):
        snapshot = snapshots[k]
        before = max((s for s in fitted if s.time < snapshot.time), key=lambda s: s.time)
        after = min((s for s in fitted if s.time > snapshot.time), key=lambda s: s.time)
        entries = before.points.shape[0] * after.points.shape[0]
        if entries > max_entries:
            errors.add(f"hold_out[{i}]", limits.over_limit(
                f"the interpolation between the snapshots at {before.time:g} and {after.time:g} needs an exact plan "
                f"of {entries:,} entries", max_entries, "max_dense_elements"))
        held.append(HeldOut(snapshot, _mass(snapshot) / _mass(snapshots[0]), before, after))
    return fitted, tuple(held)


@dataclasses.dataclass(frozen=True)
class FitCall:
    """A fit request that passed validation."""

    snapshots: tuple[RuotSnapshot, ...]
    config: object  # monge.solvers.ruot.RuotConfig
    data_dir: str  # where the fitted model is stored
    owner: str = ANONYMOUS  # whose the stored model is
    max_seconds: float = math.inf  # the server's max_training_seconds
    held_out: tuple[HeldOut, ...] = ()  # snapshots left out of the fit, to predict


def _finite(value: float, field: str, *, low: float = -math.inf, positive: bool = False) -> float:
    if not math.isfinite(value):
        raise InvalidArgument.field(field, f"must be a finite number, got {value}")
    if positive and not value > 0:
        raise InvalidArgument.field(field, f"must be positive, got {value}")
    if value < low:
        raise InvalidArgument.field(field, f"must be at least {low:g}, got {value}")
    return float(value)


def parse_snapshots(request, max_points: int | None = None) -> list[RuotSnapshot]:
    """Checked snapshots: at least two, times finite and strictly increasing, points
    (n, d) finite floats of one dimension (at most `max_points` each, checked on the
    header), masses positive. InvalidArgument with every violation found."""
    errors = v.Violations()
    count = len(request.snapshots)
    if count < 2:
        errors.add("snapshots", f"needs at least two snapshots, got {count}")
        errors.raise_if_any()
    snapshots, dim, previous = [], None, None
    for k, snap in enumerate(request.snapshots):
        prefix = f"snapshots[{k}]."
        with errors.check():
            _finite(snap.time, prefix + "time")
            if previous is not None and math.isfinite(previous) and not snap.time > previous:
                errors.add(prefix + "time", f"must be greater than snapshots[{k - 1}].time ({previous}), got "
                                            f"{snap.time}: times must increase strictly")
        previous = snap.time
        points = None
        with errors.check():
            points = v.float_tensor(snap, "points", ndim=2, prefix=prefix, max_points=max_points,
                                    required="is required, shape (n, d)")
        if points is not None:
            if points.shape[1] == 0:
                errors.add(prefix + "points", "has zero dimensions")
            elif dim is None:
                dim = points.shape[1]
            elif points.shape[1] != dim:
                errors.add(prefix + "points", f"has dimension {points.shape[1]} but snapshots[0] has {dim}")
        mass = None
        if snap.HasField("mass"):
            with errors.check():
                mass = _finite(snap.mass, prefix + "mass", positive=True)
        snapshots.append(RuotSnapshot(snap.time, points, mass))
    errors.raise_if_any()
    return snapshots


def _settings(message: ruot_pb2.RUOTFitSettings, config: ServerConfig, errors: v.Violations) -> dict:
    """The given settings by RUOTFitSettings name, each checked; unset ones are absent."""
    checks = {
        "growth_linear_below": lambda x, f: _finite(x, f, positive=True),
        "alpha": lambda x, f: _finite(x, f, positive=True),
        "sigma": lambda x, f: _finite(x, f, low=0.0),
        "dt": lambda x, f: _finite(x, f, positive=True),
        "gamma_hjb": lambda x, f: _finite(x, f, low=0.0),
        "gamma_action": lambda x, f: _finite(x, f, low=0.0),
        "gamma_mass": lambda x, f: _finite(x, f, low=0.0),
        "ot_epsilon": lambda x, f: _finite(x, f, positive=True),
        "width": lambda x, f: v.integer_in_range(x, f, 1, MAX_WIDTH),
        "residual_blocks": lambda x, f: v.integer_in_range(x, f, 0, MAX_RESIDUAL_BLOCKS),
        "steps": lambda x, f: v.integer_in_range(x, f, 1, config.max_training_steps, limit="max_training_steps"),
        "report_every": lambda x, f: v.integer_in_range(x, f, 1, config.max_training_steps,
                                                        limit="max_training_steps"),
        "particles": lambda x, f: v.integer_in_range(x, f, 1, MAX_PARTICLES),
        "learning_rate": lambda x, f: _finite(x, f, positive=True),
        "weight_decay": lambda x, f: _finite(x, f, low=0.0),
        "clip_norm": lambda x, f: _finite(x, f, low=0.0),
        "seed": lambda x, f: v.integer_in_range(x, f, 0, 2**63 - 1),
        "laplacian_probes": lambda x, f: v.integer_in_range(x, f, 1, MAX_PROBES),
        "laplacian_max_exact_dim": lambda x, f: v.integer_in_range(x, f, 0, MAX_WIDTH),
    }
    assert set(checks) == set(FIT_SETTINGS)
    given = {}
    for name, check in checks.items():
        if message.HasField(name):
            with errors.check():
                given[name] = check(getattr(message, name), f"settings.{name}")
    given["growth"] = v.choice(message, "growth_penalty", _GROWTHS, errors, "quadratic",
                               name="settings.growth_penalty")
    given["laplacian"] = v.choice(message, "laplacian", _LAPLACIANS, errors, "auto", name="settings.laplacian")
    chosen = v.choice(message, "reconstruction", _RECONSTRUCTIONS, errors, None, name="settings.reconstruction")
    given["reconstruction"] = chosen or ("sinkhorn" if "ot_epsilon" in given else "energy")
    if "ot_epsilon" in given and given.get("reconstruction") == "energy":
        errors.add("settings.ot_epsilon", "applies only to RUOT_RECONSTRUCTION_SINKHORN_DIVERGENCE (the energy "
                                          "distance has no epsilon)")
    if "growth_linear_below" in given and given.get("growth") != "paper":
        errors.add("settings.growth_linear_below", "applies only to RUOT_GROWTH_PENALTY_PAPER")
    laplacian = given.get("laplacian")
    if "laplacian_probes" in given and laplacian == "exact":
        errors.add("settings.laplacian_probes", "applies only to RUOT_LAPLACIAN_AUTO or RUOT_LAPLACIAN_HUTCHINSON")
    if "laplacian_max_exact_dim" in given and laplacian != "auto":
        errors.add("settings.laplacian_max_exact_dim", "applies only to RUOT_LAPLACIAN_AUTO")
    return given


def build_config(given: dict):
    """The solver's RuotConfig from checked settings (unset: the paper's defaults for the
    growth penalty). ValueError if the solver refuses a combination."""
    from monge.solvers import ruot
    from monge.solvers.ruot.config import RECONSTRUCTIONS

    growth = {"none": ruot.NoGrowth(), "quadratic": ruot.QuadraticGrowth(),
              "paper": ruot.PaperGrowth(**({"linear_below": given["growth_linear_below"]}
                                           if "growth_linear_below" in given else {}))}[given["growth"]]
    probes = {"probes": given["laplacian_probes"]} if "laplacian_probes" in given else {}
    laplacian = {"auto": lambda: ruot.AutoLaplacian(**probes, **({"max_exact_dim": given["laplacian_max_exact_dim"]}
                                                                 if "laplacian_max_exact_dim" in given else {})),
                 "exact": ruot.ExactLaplacian,
                 "hutchinson": lambda: ruot.HutchinsonLaplacian(**probes)}[given["laplacian"]]()
    base = ruot.paper_config() if given["growth"] == "paper" else ruot.RuotConfig()
    network = ruot.NetworkConfig(**{name: given.get(name, getattr(base.network, name))
                                    for name in ("width", "residual_blocks")})
    optimizer = ruot.OptimizerConfig(
        learning_rate=given.get("learning_rate", base.optimizer.learning_rate),
        weight_decay=given.get("weight_decay", base.optimizer.weight_decay),
        clip_norm=(None if given.get("clip_norm") == 0.0 else given.get("clip_norm", base.optimizer.clip_norm)),
    )
    plain = ("sigma", "dt", "alpha", "gamma_hjb", "gamma_action", "gamma_mass", "ot_epsilon", "steps",
             "report_every", "particles", "seed")
    reconstruction = RECONSTRUCTIONS[given["reconstruction"]]()
    return dataclasses.replace(base, network=network, optimizer=optimizer, growth=growth, laplacian=laplacian,
                               reconstruction=reconstruction, **{name: given[name] for name in plain if name in given})


def _grid_steps(times, dt: float) -> int:
    return sum(max(1, math.ceil((b - a) / dt - 1e-9)) for a, b in zip(times[:-1], times[1:]))


def parse(request: ruot_pb2.RUOTFitRequest, config: ServerConfig, owner: str = ANONYMOUS) -> FitCall:
    errors = v.Violations()
    snapshots = []
    with errors.check():
        snapshots = parse_snapshots(request, config.max_points)
    given = _settings(request.settings, config, errors)
    errors.raise_if_any()
    snapshots, held_out = split_hold_out(snapshots, request.hold_out, config.max_dense_elements, errors)
    errors.raise_if_any()
    try:
        ruot_config = build_config(given)
    except ValueError as error:  # a combination the solver refuses; its message names the setting
        raise InvalidArgument.field("settings", str(error)) from None
    steps = _grid_steps([s.time for s in snapshots], ruot_config.dt)
    if steps > MAX_GRID_STEPS:
        errors.add("settings.dt", f"dt = {ruot_config.dt:g} makes {steps:,} Euler-Maruyama steps from the first to "
                                  f"the last snapshot, over this server's limit of {MAX_GRID_STEPS:,}")
    largest = max(s.points.shape[0] for s in snapshots)
    if ruot_config.particles * largest > config.max_dense_elements:
        errors.add("settings.particles", limits.over_limit(
            f"{ruot_config.particles} particles against a snapshot of {largest:,} points need a dense OT problem of "
            f"{ruot_config.particles * largest:,} entries", config.max_dense_elements, "max_dense_elements"))
    errors.raise_if_any()
    return FitCall(tuple(snapshots), ruot_config, config.data_dir, owner, config.max_training_seconds, held_out)


def run(call: FitCall, stop, progress=None):
    """Train on this process's device; store the model unless the fit was cancelled."""
    started = time.perf_counter()
    if stop.is_set():
        return {"status": "cancelled", "steps": 0, "seconds": 0.0}
    from monge.solvers import ruot

    clock = OwnTime(stop, call.max_seconds)  # its own time: given-way time left out

    def report(step, losses):
        if progress is not None:
            progress(iteration=step, loss=losses["total"],
                     loss_terms={name: value for name, value in losses.items() if name != "total"})

    model = ruot.fit([(s.time, s.points, s.mass) for s in call.snapshots], call.config, progress=report,
                     should_stop=clock.should_stop)  # before every step: a stop never waits for a report
    if clock.over_time:
        raise LimitExceeded(limits.training_over_time(model.settings.steps_trained, call.config.steps,
                                                      time.perf_counter() - started, call.max_seconds))
    arrays, settings = model.to_arrays(), model.settings_dict()
    status = model.settings.status
    history = np.asarray(model.history, np.float32)
    final = {name: float(value) for name, value in zip(ruot.LOSS_NAMES, history[-1])} if len(history) else {}
    model_id = ""
    if status != "cancelled" and not stop.is_set():
        model_id = ruot_models.save(call.data_dir, arrays, settings, call.snapshots, owner=call.owner, metadata={
            "fit": {"steps": model.settings.steps_trained, "seconds": clock.seconds(),
                    "final_losses": final},
        })
    reports = []
    if status != "cancelled" and not stop.is_set():
        reports = [ruot.hold_out_report(model, held.snapshot.time, held.snapshot.points, held.relative_mass,
                                        (held.before.time, held.before.points), (held.after.time, held.after.points),
                                        seed=call.config.seed)
                   for held in call.held_out]
    return {"status": status, "steps": model.settings.steps_trained, "model_id": model_id, "arrays": arrays,
            "settings": settings, "history": history, "loss_names": list(ruot.LOSS_NAMES), "final": final,
            "seconds": time.perf_counter() - started, "hold_out": reports}


_STATUS = {
    "completed": (diagnostics_pb2.SOLVER_STATUS_MAX_ITERATIONS, "trained for all {steps} steps"),
    "diverged": (diagnostics_pb2.SOLVER_STATUS_DIVERGED,
                 "diverged after {steps} steps: a loss was NaN or infinite; the last finite parameters were kept"),
    "cancelled": (diagnostics_pb2.SOLVER_STATUS_CANCELLED, "cancelled after {steps} steps; nothing was stored"),
}


def encode_response(result) -> ruot_pb2.RUOTFitResponse:
    status, template = _STATUS[result["status"]]
    final = result.get("final", {})
    response = ruot_pb2.RUOTFitResponse(
        model_id=result.get("model_id", ""),
        loss_names=result.get("loss_names", []),
        final_losses=final,
        diagnostics=diagnostics_pb2.SolverDiagnostics(
            status=status, message=template.format(steps=result["steps"]), converged=False,
            iterations=result["steps"], error=final.get("total", math.nan), solve_seconds=result["seconds"],
        ),
    )
    if "arrays" in result:
        response.model.CopyFrom(RuotExport(result["arrays"], result["settings"]).to_proto())
        response.loss_history.CopyFrom(encode(result["history"]))
    for report in result.get("hold_out", ()):
        response.hold_out.add(**dataclasses.asdict(report))
    return response


__all__ = ["FitCall", "parse", "run", "encode_response", "build_config", "parse_snapshots"]
