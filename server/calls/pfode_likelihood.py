"""ProbabilityFlowLogLikelihoodRequest -> validated call -> `pfode.log_likelihood` -> response.

The model is parsed as for sampling (`pfode_call.parse_model`); the points must have the
model's dimension (an exported model's event shape: (n, *event_shape)), and t_end must
carry noise (the score is undefined at sigma = 0).
The adaptive integration runs in chunks of steps (`pfode_call.run_steps`): `stop` ends
it between chunks.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from monge.v1.codec import encode
from monge.server.calls import common as v
from monge.server.auth import ANONYMOUS
from monge.server.config import ServerConfig
from monge.server.calls.pfode_sample import (
    MAX_LIKELIHOOD_STEPS,
    ExportedSpec,
    LikelihoodSpec,
    ModelSpec,
    check_likelihood_end,
    cancelled_result,
    cancelled,
    check_probe_memory,
    diagnostics,
    evaluation_cost,
    float_dtype,
    parse_likelihood_options,
    parse_model,
    run_steps,
    seed,
)
from monge.v1 import pfode_pb2 as pb

DEFAULT_MAX_STEPS = 4096


@dataclasses.dataclass(frozen=True)
class LikelihoodCall:
    model: ModelSpec
    points: np.ndarray  # (n, d), in `dtype` (an exported model's events flattened)
    options: LikelihoodSpec
    seed: int
    dtype: np.dtype
    max_steps: int


def parse(request: pb.ProbabilityFlowLogLikelihoodRequest, config: ServerConfig,
          owner: str = ANONYMOUS) -> LikelihoodCall:
    errors = v.Violations()
    points = None
    exported = request.model.WhichOneof("source") == "exported"
    rank = len(request.model.exported.event_shape) if exported else 1
    with errors.check():
        points = v.float_tensor(request, "points", ndim=1 + max(rank, 1), max_points=config.max_samples,
                                limit="max_samples",
                                required="is required (n, *event_shape)" if exported else "is required (n, d)")
    dtype = None
    with errors.check():
        dtype = float_dtype(request.dtype, "dtype", points.dtype if points is not None else np.float64)
    with errors.check():
        seed(request.seed, "seed")
    max_steps = DEFAULT_MAX_STEPS
    if request.HasField("max_steps"):
        with errors.check():
            binding = "max_iterations" if config.max_iterations < MAX_LIKELIHOOD_STEPS else None
            max_steps = v.integer_in_range(request.max_steps, "max_steps", 1,
                                           min(MAX_LIKELIHOOD_STEPS, config.max_iterations), limit=binding)
    model = parse_model(request, config, errors, owner=owner)
    if tuple(points.shape[1:]) != model.event_shape:
        if isinstance(model.source, ExportedSpec):
            errors.add("points", f"have shape {list(points.shape)} but the model's events have shape "
                                 f"{list(model.event_shape)}: points must be (n, *event_shape)")
        else:
            errors.add("points", f"have dimension {points.shape[1]} but the model has dimension {model.dim}")
    options = parse_likelihood_options(
        request.options if request.HasField("options") else None, "options.", errors
    )
    check_likelihood_end(model, "model.", errors)
    check_probe_memory(options, points.shape[0], model.dim, "options.divergence", config, errors)
    errors.raise_if_any()
    n = points.shape[0]
    model = model.for_call(dtype, model.batch_sizes(n, options), gradients=True)
    flat = points.astype(dtype, copy=False).reshape(n, model.dim)
    return LikelihoodCall(model, flat, options, int(request.seed), dtype, max_steps)


def run(call: LikelihoodCall, stop, progress=None):
    """Integrate on this process's JAX device in chunks of Dopri5 steps; `stop` ends it
    between chunks."""
    import jax

    from monge.solvers.pfode import LikelihoodRun

    if stop.is_set():
        return cancelled_result("cancelled before the solve started", 0.0)
    started = time.perf_counter()
    source, schedule, prior = call.model.build()
    tolerances = {k: val for k, val in (("rtol", call.options.rtol), ("atol", call.options.atol)) if val is not None}
    job = LikelihoodRun(
        source, schedule, call.points, divergence=call.options.build(), key=jax.random.key(call.seed),
        prior=prior, t_start=call.model.t_start, t_end=call.model.t_end, max_steps=call.max_steps,
        dtype=call.dtype, **tolerances,
    )
    step_work = 6 * call.options.probes(call.model.dim) * call.points.shape[0] * 3 * evaluation_cost(call.model)
    state, stopped = run_steps(job, stop, progress, step_work)
    if stopped:
        return cancelled_result(f"cancelled after {job.progress(state)} adaptive steps", time.perf_counter() - started)
    out = job.finish(state)
    result = {
        name: np.asarray(getattr(out, name))
        for name in ("log_prob", "stderr", "prior_log_prob", "latents", "nfe", "status")
    } | {"message": out.message}
    result["latents"] = result["latents"].reshape((-1, *call.model.event_shape))
    return result, time.perf_counter() - started


def encode_response(result) -> pb.ProbabilityFlowLogLikelihoodResponse:
    out, seconds = result
    if cancelled(out):
        return pb.ProbabilityFlowLogLikelihoodResponse(diagnostics=diagnostics(None, cancelled(out), seconds))
    return pb.ProbabilityFlowLogLikelihoodResponse(
        log_likelihood=encode(out["log_prob"]),
        standard_error=encode(out["stderr"]),
        prior_log_likelihood=encode(out["prior_log_prob"]),
        latents=encode(out["latents"]),
        nfe=int(out["nfe"]),
        diagnostics=diagnostics(int(out["status"]), out["message"], seconds),
    )


__all__ = ["LikelihoodCall", "parse", "run", "encode_response"]
