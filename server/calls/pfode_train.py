"""TrainScoreModelRequest -> validated call -> `pfode.train_dsm` -> stored model -> response.

A job item only (training takes a while). The trainer reports (step, mean loss) every
`report_every` steps; each report goes to the job's watchers as progress (`iteration`,
`loss`). It asks before every step whether the job is cancelled or past the server's
`max_training_seconds`, so the worker is free within a step.
A model whose losses stayed finite is stored under the server's data directory
(`pfode_models`), as the caller's, and its id returned with the weights; a diverged one
is not stored. A run past `max_training_seconds` fails RESOURCE_EXHAUSTED, storing nothing.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from monge.v1.codec import encode
from monge.server import limits
from monge.server.models import score as pfode_models
from monge.server.calls import common as v
from monge.server.auth import ANONYMOUS
from monge.server.errors import LimitExceeded
from monge.server.priority import OwnTime
from monge.server.config import ServerConfig
from monge.server.calls.pfode_sample import (
    ScheduleSpec,
    default_interval,
    enum_choice,
    finite,
    parse_architecture,
    parse_schedule,
    seed,
)
from monge.solvers.pfode import PREDICTIONS, DSMConfig, MLPArchitecture
from monge.v1 import diagnostics_pb2, pfode_pb2 as pb

DEFAULT_HIDDEN = (128, 128)
DEFAULT_EMBEDDING = 16
# Unset training settings take the trainer's defaults.
TRAINING = DSMConfig()
MAX_BATCH = 65_536

_PREDICTION_NUMBERS = {name: pb.PredictionType.Value(f"PREDICTION_TYPE_{name.upper()}") for name in PREDICTIONS}


@dataclasses.dataclass(frozen=True)
class TrainCall:
    samples: np.ndarray  # (n, d)
    architecture: MLPArchitecture
    prediction: str  # a key of PREDICTIONS
    schedule: ScheduleSpec
    steps: int
    batch_size: int
    learning_rate: float
    t_min: float | None  # None: the schedule's default interval
    t_max: float | None
    report_every: int
    seed: int
    data_dir: str  # where the trained model is stored
    owner: str = ANONYMOUS  # whose the stored model is
    max_seconds: float = math.inf  # the server's max_training_seconds


def parse(request: pb.TrainScoreModelRequest, config: ServerConfig, owner: str = ANONYMOUS) -> TrainCall:
    errors = v.Violations()
    samples = None
    with errors.check():
        samples = v.float_tensor(request, "samples", ndim=2, max_points=config.max_samples, limit="max_samples",
                                 required="is required (n, d)")
    hidden = list(request.hidden) or list(DEFAULT_HIDDEN)
    embedding = request.time_embedding_dim if request.HasField("time_embedding_dim") else DEFAULT_EMBEDDING
    architecture = parse_architecture(samples.shape[1] if samples is not None else 1, hidden, embedding, "",
                                      errors, dim_field="samples")
    prediction = "noise"
    with errors.check():
        prediction = enum_choice(request.prediction, pb.PredictionType, "prediction", PREDICTIONS, "noise")
    schedule = parse_schedule(request.schedule if request.HasField("schedule") else None, "schedule.", errors)
    steps = batch_size = report_every = learning_rate = None
    with errors.check():
        steps = v.integer_in_range(v.optional_value(request, "steps", TRAINING.steps), "steps", 1,
                                   config.max_training_steps, limit="max_training_steps")
    with errors.check():
        batch_size = v.integer_in_range(v.optional_value(request, "batch_size", TRAINING.batch_size), "batch_size", 1,
                                        MAX_BATCH)
    with errors.check():
        report_every = v.integer_in_range(v.optional_value(request, "report_every", TRAINING.report_every),
                                          "report_every", 1, config.max_training_steps, limit="max_training_steps")
    with errors.check():
        learning_rate = v.positive(v.optional_value(request, "learning_rate", TRAINING.learning_rate),
                                   "learning_rate")
    with errors.check():
        seed(request.seed, "seed")
    times = {}
    for name in ("t_min", "t_max"):
        if request.HasField(name):
            with errors.check():
                times[name] = finite(getattr(request, name), name)
    errors.raise_if_any()
    t_max_default, t_min_default = default_interval(schedule)
    t_min, t_max = times.get("t_min", t_min_default), times.get("t_max", t_max_default)
    if t_min < 0:
        errors.add("t_min", f"must be >= 0, got {t_min}")
    elif not t_max > t_min:
        errors.add("t_max" if "t_max" in times else "t_min", f"t_max ({t_max}) must be greater than t_min ({t_min})")
    errors.raise_if_any()
    return TrainCall(samples, architecture, prediction, schedule, steps, batch_size, learning_rate,
                     times.get("t_min"), times.get("t_max"), report_every, int(request.seed), config.data_dir,
                     owner, config.max_training_seconds)


def run(call: TrainCall, stop, progress=None):
    """Train on this process's JAX device; store the model if its losses are finite."""
    import jax

    from monge.solvers.pfode import DSMConfig, train_dsm
    from monge.solvers.pfode.train import TrainingStopped

    if stop.is_set():
        return None, 0.0
    started = time.perf_counter()

    def report(step, loss):
        if progress is not None:
            progress(iteration=step, loss=loss)

    clock = OwnTime(stop, call.max_seconds)  # its own time: given-way time left out

    config = DSMConfig(steps=call.steps, batch_size=call.batch_size, learning_rate=call.learning_rate,
                       t_min=call.t_min, t_max=call.t_max, report_every=call.report_every)
    try:
        out = train_dsm(call.samples, call.architecture, PREDICTIONS[call.prediction](), call.schedule.build(),
                        config, key=jax.random.key(call.seed), callback=report, should_stop=clock.should_stop)
    except TrainingStopped as stopped:
        if stop.is_set():
            return None, time.perf_counter() - started
        raise LimitExceeded(limits.training_over_time(stopped.steps, call.steps, time.perf_counter() - started,
                                                      call.max_seconds)) from None
    if stop.is_set():  # cancelled during the last step: nothing is stored
        return None, time.perf_counter() - started
    weights = {name: np.asarray(w) for name, w in out.weights.items()}
    losses = np.asarray(out.losses)
    stored = pfode_models.StoredModel(call.architecture.dim, call.architecture.hidden,
                                      call.architecture.time_embedding_dim, call.prediction, weights)
    model_id = ""
    if out.finite:
        model_id = pfode_models.save(call.data_dir, stored, owner=call.owner, metadata={
            "schedule": {"kind": call.schedule.name, **call.schedule.parameters},
            "training": {"samples": int(call.samples.shape[0]), "steps": call.steps, "batch_size": call.batch_size,
                         "learning_rate": call.learning_rate, "seed": call.seed,
                         "final_loss": float(losses[-1])},
        })
    return {"model_id": model_id, "model": stored, "losses": losses, "steps": call.steps}, \
        time.perf_counter() - started


def encode_response(result) -> pb.TrainScoreModelResponse:
    out, seconds = result
    if out is None:
        return pb.TrainScoreModelResponse(diagnostics=diagnostics_pb2.SolverDiagnostics(
            status=diagnostics_pb2.SOLVER_STATUS_CANCELLED, message="cancelled: training stopped, nothing stored",
            error=math.nan, solve_seconds=seconds))
    stored: pfode_models.StoredModel = out["model"]
    losses = out["losses"]
    finite_run = bool(np.all(np.isfinite(losses)))
    response = pb.TrainScoreModelResponse(
        model_id=out["model_id"],
        model=pb.MlpScoreModel(
            dim=stored.dim, hidden=list(stored.hidden), time_embedding_dim=stored.time_embedding_dim,
            prediction=_PREDICTION_NUMBERS[stored.prediction],
            weights={name: encode(w) for name, w in stored.weights.items()},
        ),
        losses=encode(losses),
        final_loss=float(losses[-1]),
        diagnostics=diagnostics_pb2.SolverDiagnostics(
            status=diagnostics_pb2.SOLVER_STATUS_MAX_ITERATIONS if finite_run else diagnostics_pb2.SOLVER_STATUS_DIVERGED,
            message=(f"trained for {out['steps']} steps" if finite_run
                     else "diverged: a training loss was NaN or infinite; the model was not stored"),
            converged=False, iterations=out["steps"], error=float(losses[-1]), solve_seconds=seconds,
        ),
    )
    return response


__all__ = ["TrainCall", "parse", "run", "encode_response"]
