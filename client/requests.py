"""Build solver requests from numpy arrays, for direct calls and for job submission.

    from monge.client import requests
    job = client.submit(requests.sinkhorn(x, y, epsilon=0.05))
    job = client.submit(requests.ruot_fit([(0.0, x0), (1.0, x1)], steps=500))
"""

from __future__ import annotations

import numpy as np

from monge.client.options import Option, set_options, with_keywords
from monge.client.ruot import fit_request as ruot_fit
from monge.client.ruot import query_request as ruot_query
from monge.v1.codec import encode
from monge.v1 import exact_pb2, pfode_pb2, sinkhorn_pb2, sparsity_constrained_pb2, tensor_pb2

_COSTS = {
    "sqeuclidean": sinkhorn_pb2.COST_FUNCTION_SQEUCLIDEAN,
    "euclidean": sinkhorn_pb2.COST_FUNCTION_EUCLIDEAN,
}
_SINKHORN_METHODS = {
    "auto": sinkhorn_pb2.SINKHORN_METHOD_AUTO,
    "kernel": sinkhorn_pb2.SINKHORN_METHOD_KERNEL,
    "log": sinkhorn_pb2.SINKHORN_METHOD_LOG,
    "sns": sinkhorn_pb2.SINKHORN_METHOD_SNS,
}
_OVERRELAXATION = {  # None: unspecified (the server's default)
    "adaptive": sinkhorn_pb2.OVERRELAXATION_ADAPTIVE,
    "off": sinkhorn_pb2.OVERRELAXATION_OFF,
}
_EXACT_METHODS = {
    "auto": exact_pb2.EXACT_METHOD_AUTO,
    "network_simplex": exact_pb2.EXACT_METHOD_NETWORK_SIMPLEX,
    "sorting_1d": exact_pb2.EXACT_METHOD_SORTING_1D,
}
_FORMULATIONS = {
    "semi_dual": sparsity_constrained_pb2.SPARSITY_FORMULATION_SEMI_DUAL,
    "dual": sparsity_constrained_pb2.SPARSITY_FORMULATION_DUAL,
}


def _choice(name: str, value: str, choices: dict):
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return choices[value]


def _set_arrays(request, **arrays) -> None:
    for field, value in arrays.items():
        if value is not None:
            getattr(request, field).CopyFrom(encode(_as_float(value)))


def _set_reg_m(request, reg_m) -> None:
    """KL marginal penalties: one number for both sides or a (source, target) pair; None
    leaves the request balanced."""
    if reg_m is not None:
        source, target = (reg_m, reg_m) if np.isscalar(reg_m) else reg_m
        request.reg_m.source, request.reg_m.target = float(source), float(target)


def _as_float(value) -> np.ndarray:
    array = np.asarray(value)
    return array if array.dtype in (np.float32, np.float64) else array.astype(np.float64)


# The Sinkhorn request's settings (beyond arrays and reg_m); None: the server's default.
SINKHORN_OPTIONS = (
    Option("cost", str, "cost between points (ignored with a cost matrix)", choices=_COSTS),
    Option("epsilon", float, "entropic weight, absolute in cost units"),
    Option("threshold", float, "stop when the L1 marginal error is at most this"),
    Option("max_iterations", int, "iteration cap"),
    Option("method", str, "Sinkhorn iterations (auto, kernel or log), or sns (Sinkhorn-Newton-Sparse, "
                          "balanced only)", choices=_SINKHORN_METHODS),
    Option("overrelaxation", str, "adaptive: over-relaxed updates with a factor estimated as the run goes "
                                  "(the default, for sns too); off: plain Sinkhorn updates",
           choices=_OVERRELAXATION),
    Option("scaling_stages", int, "epsilon scaling: solve at epsilon / 0.3^k for k = K .. 1 first, each "
                                  "warm-starting the next (0: none; not with sns)", metavar="K"),
    Option("return_plan", bool, "also return the dense plan", flag="--plan"),
    Option("plan_top_k", int, "also return the plan's K largest entries per row (sparse)", flag="--top-k",
           metavar="K"),
    Option("return_barycentric_map", bool, "also return where each source point is sent (points only)",
           flag="--barycentric-map"),
)


def sinkhorn(x=None, y=None, a=None, b=None, *, cost_matrix=None, reg_m: float | tuple[float, float] | None = None,
             **settings) -> sinkhorn_pb2.SinkhornRequest:
    """A SinkhornRequest; see `Client.sinkhorn` for the meaning of each argument.
    `settings` are SINKHORN_OPTIONS's (epsilon=..., method=...)."""
    request = sinkhorn_pb2.SinkhornRequest()
    set_options(request, SINKHORN_OPTIONS, settings, "sinkhorn")
    _set_arrays(request, x=x, y=y, a=a, b=b, cost_matrix=cost_matrix)
    _set_reg_m(request, reg_m)
    return request


def sinkhorn_batch(problems, **settings) -> sinkhorn_pb2.SinkhornBatchRequest:
    """A SinkhornBatchRequest; see `Client.sinkhorn_batch`. Each problem is a
    SinkhornRequest (sent as it is), a tuple (x, y) or (x, y, a, b), or a dict of
    `sinkhorn`'s arguments; `settings` (epsilon=..., ...) apply to those built here."""
    built = []
    for index, problem in enumerate(problems):
        if isinstance(problem, sinkhorn_pb2.SinkhornRequest):
            built.append(problem)
        elif isinstance(problem, dict):
            built.append(sinkhorn(**(settings | problem)))
        elif isinstance(problem, (tuple, list)) and len(problem) in (2, 4):
            built.append(sinkhorn(*problem, **settings))
        else:
            raise TypeError(f"problems[{index}]: expected a SinkhornRequest, (x, y), (x, y, a, b) or a dict, "
                            f"got {type(problem).__name__}")
    return sinkhorn_pb2.SinkhornBatchRequest(problems=built)


SINKHORN_DIVERGENCE_OPTIONS = tuple(option for option in SINKHORN_OPTIONS
                                    if option.name in ("cost", "epsilon", "threshold", "max_iterations"))


def sinkhorn_divergence(x, y, a=None, b=None, *, reg_m: float | tuple[float, float] | None = None,
                        **settings) -> sinkhorn_pb2.SinkhornDivergenceRequest:
    """A SinkhornDivergenceRequest; see `Client.sinkhorn_divergence`."""
    request = sinkhorn_pb2.SinkhornDivergenceRequest()
    set_options(request, SINKHORN_DIVERGENCE_OPTIONS, settings, "sinkhorn_divergence")
    _set_arrays(request, x=x, y=y, a=a, b=b)
    _set_reg_m(request, reg_m)
    return request


EXACT_OPTIONS = (
    Option("cost", str, "squared Euclidean (W_2) or Euclidean (W_1); leave it unset with --p", choices=_COSTS),
    Option("p", float, "W_p with cost |x - y|^p"),
    Option("method", str, "auto: sorting for 1-D points, else the network simplex", choices=_EXACT_METHODS),
    Option("max_iterations", int, "network simplex pivot cap"),
)


def exact_transport(x=None, y=None, a=None, b=None, *, cost_matrix=None,
                    **settings) -> exact_pb2.ExactTransportRequest:
    """An ExactTransportRequest; see `Client.exact_transport`."""
    request = exact_pb2.ExactTransportRequest()
    set_options(request, EXACT_OPTIONS, settings, "exact_transport")
    _set_arrays(request, x=x, y=y, a=a, b=b, cost_matrix=cost_matrix)
    return request


SPARSITY_CONSTRAINED_OPTIONS = (
    Option("cost", str, "cost between points (ignored with a cost matrix)", choices=_COSTS),
    Option("k", int, "most nonzeros per column of the plan"),
    Option("gamma", float, "quadratic regularisation weight"),
    Option("formulation", str, "semi_dual or dual", choices=_FORMULATIONS),
    Option("threshold", float, "stop when the L1 marginal error is at most this"),
    Option("max_iterations", int, "L-BFGS iteration cap"),
)


def sparsity_constrained(x=None, y=None, a=None, b=None, *, cost_matrix=None,
                         **settings) -> sparsity_constrained_pb2.SparsityConstrainedTransportRequest:
    """A SparsityConstrainedTransportRequest; see `Client.sparsity_constrained`."""
    request = sparsity_constrained_pb2.SparsityConstrainedTransportRequest()
    set_options(request, SPARSITY_CONSTRAINED_OPTIONS, settings, "sparsity_constrained")
    _set_arrays(request, x=x, y=y, a=a, b=b, cost_matrix=cost_matrix)
    return request


for _builder, _options in ((sinkhorn, SINKHORN_OPTIONS), (sinkhorn_divergence, SINKHORN_DIVERGENCE_OPTIONS),
                           (exact_transport, EXACT_OPTIONS), (sparsity_constrained, SPARSITY_CONSTRAINED_OPTIONS)):
    with_keywords(_builder, _options)


# -- probability-flow ODEs ----------------------------------------------------------------


def _enum_names(enum_type) -> dict[str, int]:
    """{"heun": ODE_SAMPLER_HEUN, ...}: value names without the type prefix, lower case."""
    prefix = enum_type.Name(0).removesuffix("UNSPECIFIED")
    return {name.removeprefix(prefix).lower(): number for name, number in enum_type.items() if number != 0}


_SCHEDULES = _enum_names(pfode_pb2.NoiseSchedule)
_TIME_GRIDS = _enum_names(pfode_pb2.TimeGrid)
_SAMPLERS = _enum_names(pfode_pb2.OdeSampler)
_PREDICTIONS = _enum_names(pfode_pb2.PredictionType)
_PRIORS = _enum_names(pfode_pb2.LatentPrior)
_DIVERGENCES = _enum_names(pfode_pb2.DivergenceEstimator)
_DTYPES = {"float32": tensor_pb2.DTYPE_FLOAT32, "float64": tensor_pb2.DTYPE_FLOAT64}


def _dtype(value) -> int:
    if value is None:
        return tensor_pb2.DTYPE_UNSPECIFIED
    return _choice("dtype", np.dtype(value).name, _DTYPES)


def schedule(kind: str = "vp", **parameters: float) -> pfode_pb2.DiffusionSchedule:
    """A noising schedule: "vp" (beta_min, beta_max), "ve" (sigma_min, sigma_max) or
    "edm" (sigma_min, sigma_max, rho); parameters left out take the server's defaults."""
    message = pfode_pb2.DiffusionSchedule(kind=_choice("schedule", kind, _SCHEDULES))
    for name, value in parameters.items():
        if value is not None:
            setattr(message, name, float(value))
    return message


def _as_schedule(value) -> pfode_pb2.DiffusionSchedule:
    return schedule(value) if isinstance(value, str) else value


def gaussian_mixture(means, covariances, weights=None) -> pfode_pb2.GaussianMixture:
    """An analytic source: means (K, d), covariances (K, d, d), weights (K,) summing to one
    (uniform when None)."""
    message = pfode_pb2.GaussianMixture()
    _set_arrays(message, means=means, covariances=covariances, weights=weights)
    return message


def gaussian(mean, covariance) -> pfode_pb2.GaussianMixture:
    """A single Gaussian N(mean, covariance) as a one-component mixture."""
    return gaussian_mixture(np.asarray(mean)[None], np.asarray(covariance)[None])


def mlp_model(weights: dict, *, hidden, prediction: str, dim: int | None = None,
              time_embedding_dim: int = 16) -> pfode_pb2.MlpScoreModel:
    """Weights for the built-in MLP ("layers.i.w", "layers.i.b"; see MlpScoreModel) with
    its sizes and what its output means ("score", "noise", "data" or "velocity"). `dim`
    defaults to the length of the last bias."""
    hidden = [int(h) for h in hidden]
    if dim is None:
        last = weights.get(f"layers.{len(hidden)}.b")
        if last is None:
            raise ValueError(f"dim: give it, or include the weight layers.{len(hidden)}.b")
        dim = int(np.shape(last)[0])
    return pfode_pb2.MlpScoreModel(
        dim=dim, hidden=hidden, time_embedding_dim=time_embedding_dim,
        prediction=_choice("prediction", prediction, _PREDICTIONS),
        weights={name: encode(_as_float(w)) for name, w in weights.items()},
    )


def exported_model(model, *, prediction: str, event_shape=None, dtype="float32", platforms=("cpu", "cuda"),
                   vjp: bool = True) -> pfode_pb2.ExportedModel:
    """Your own network as a source: f(x, t) -> prediction, with x (batch, *event_shape),
    t (batch,) the schedule's time of each row (EDM: sigma), the output of x's shape;
    `prediction` says what it means ("noise", "score", "data" or "velocity").

    `model` is one of:
    - a `jax.export.Exported` of f, with a symbolic batch dimension: serialized here,
      with its VJP (log-likelihoods need it) when it has one and `vjp`;
    - its `serialize()` bytes, sent as they are;
    - a Python callable f: exported here with `jax.export` for `platforms` (by default
      cpu and cuda, so that any server runs it), x of shape (b, *event_shape) and t of
      shape (b,) in `dtype` with b symbolic; `event_shape` is then required.
    The dtype must be the request's (float32 unless the request says float64; exporting
    float64 needs jax_enable_x64). Only the StableHLO and its signature travel: no
    Python, no pickles.
    """
    kind = _choice("prediction", prediction, _PREDICTIONS)
    if isinstance(model, (bytes, bytearray, memoryview)):
        artifact = bytes(model)
        exported = None
    else:
        from jax import export

        exported = model if isinstance(model, export.Exported) else _export_callable(model, event_shape, dtype,
                                                                                     platforms)
        artifact = bytes(exported.serialize(vjp_order=1 if vjp and exported.has_vjp() else 0))
    if event_shape is None:
        if exported is None:
            from jax import export

            exported = export.deserialize(bytearray(artifact))
        event_shape = exported.in_avals[0].shape[1:]
    event_shape = (event_shape,) if np.isscalar(event_shape) else tuple(event_shape)
    return pfode_pb2.ExportedModel(artifact=artifact, prediction=kind, event_shape=[int(e) for e in event_shape])


def _export_callable(fn, event_shape, dtype, platforms):
    if not callable(fn):
        raise TypeError(f"model: expected a jax.export.Exported, its serialized bytes or a function f(x, t), "
                        f"got {type(fn).__name__}")
    if event_shape is None:
        raise ValueError("event_shape: give the shape of one sample, e.g. (d,), to export a function")
    import jax
    from jax import export

    event_shape = (event_shape,) if np.isscalar(event_shape) else tuple(event_shape)
    dtype = np.dtype(dtype)
    (batch,) = export.symbolic_shape("b")
    jitted = fn if hasattr(fn, "lower") else jax.jit(fn)
    return export.export(jitted, platforms=tuple(platforms))(
        jax.ShapeDtypeStruct((batch, *event_shape), dtype), jax.ShapeDtypeStruct((batch,), dtype))


def probability_flow_model(source, *, schedule="vp", prior: str = "noise", t_start: float | None = None,
                           t_end: float | None = None) -> pfode_pb2.ProbabilityFlowModel:
    """The model sampled or evaluated. `source`: a `gaussian_mixture(...)`/`gaussian(...)`,
    an `mlp_model(...)`, an `exported_model(...)`, a trained model id (str), or a
    `TrainedScoreModel` (by its id); `schedule`: a name or a `schedule(...)`."""
    message = pfode_pb2.ProbabilityFlowModel(prior=_choice("prior", prior, _PRIORS))
    message.schedule.CopyFrom(_as_schedule(schedule))
    if isinstance(source, pfode_pb2.GaussianMixture):
        message.gaussian_mixture.CopyFrom(source)
    elif isinstance(source, pfode_pb2.MlpScoreModel):
        message.mlp.CopyFrom(source)
    elif isinstance(source, pfode_pb2.ExportedModel):
        message.exported.CopyFrom(source)
    elif isinstance(source, str):
        message.trained_model_id = source
    elif isinstance(getattr(source, "model_id", None), str):
        message.trained_model_id = source.model_id
    else:
        raise TypeError(f"source: expected gaussian_mixture(...), mlp_model(...), exported_model(...) or a "
                        f"model id, got {type(source).__name__}")
    if t_start is not None:
        message.t_start = float(t_start)
    if t_end is not None:
        message.t_end = float(t_end)
    return message


def _likelihood_options(divergence, num_probes, rtol, atol) -> pfode_pb2.LogLikelihoodOptions:
    options = pfode_pb2.LogLikelihoodOptions(divergence=_choice("divergence", divergence, _DIVERGENCES))
    for name, value in (("num_probes", num_probes), ("rtol", rtol), ("atol", atol)):
        if value is not None:
            setattr(options, name, value)
    return options


def sample_probability_flow(
    source,
    *,
    num_samples: int,
    schedule="vp",
    sampler: str = "heun",
    steps: int | None = None,
    nfe: int | None = None,
    time_grid: str | None = None,
    seed: int = 0,
    dtype="float32",
    rtol: float | None = None,
    atol: float | None = None,
    prior: str = "noise",
    t_start: float | None = None,
    t_end: float | None = None,
    return_trajectory: bool = False,
    log_likelihood: str | bool | None = None,
    num_probes: int | None = None,
    likelihood_rtol: float | None = None,
    likelihood_atol: float | None = None,
) -> pfode_pb2.SampleProbabilityFlowRequest:
    """A SampleProbabilityFlowRequest; see `Client.sample_probability_flow`."""
    if steps is not None and nfe is not None:
        raise ValueError("give steps or nfe, not both")
    request = pfode_pb2.SampleProbabilityFlowRequest(
        model=probability_flow_model(source, schedule=schedule, prior=prior, t_start=t_start, t_end=t_end),
        sampler=_choice("sampler", sampler, _SAMPLERS),
        num_samples=num_samples, seed=seed, dtype=_dtype(dtype), return_trajectory=return_trajectory,
    )
    if time_grid is not None:
        request.time_grid = _choice("time_grid", time_grid, _TIME_GRIDS)
    if steps is not None:
        request.steps = steps
    if nfe is not None:
        request.nfe = nfe
    if rtol is not None:
        request.rtol = rtol
    if atol is not None:
        request.atol = atol
    if log_likelihood:
        divergence = "exact" if log_likelihood is True else log_likelihood
        request.log_likelihood.CopyFrom(_likelihood_options(divergence, num_probes, likelihood_rtol, likelihood_atol))
    return request


def probability_flow_log_likelihood(
    source,
    points,
    *,
    schedule="vp",
    divergence: str = "exact",
    num_probes: int | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
    dtype=None,
    prior: str = "noise",
    t_start: float | None = None,
    t_end: float | None = None,
    max_steps: int | None = None,
) -> pfode_pb2.ProbabilityFlowLogLikelihoodRequest:
    """A ProbabilityFlowLogLikelihoodRequest; see `Client.probability_flow_log_likelihood`."""
    request = pfode_pb2.ProbabilityFlowLogLikelihoodRequest(
        model=probability_flow_model(source, schedule=schedule, prior=prior, t_start=t_start, t_end=t_end),
        options=_likelihood_options(divergence, num_probes, rtol, atol),
        seed=seed, dtype=_dtype(dtype),
    )
    _set_arrays(request, points=points)
    if max_steps is not None:
        request.max_steps = max_steps
    return request


def train_score_model(
    samples,
    *,
    hidden=(128, 128),
    time_embedding_dim: int = 16,
    prediction: str = "noise",
    schedule="vp",
    steps: int = 2000,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    t_min: float | None = None,
    t_max: float | None = None,
    report_every: int = 100,
    seed: int = 0,
) -> pfode_pb2.TrainScoreModelRequest:
    """A TrainScoreModelRequest (a job item); see `Client.train_score_model`."""
    request = pfode_pb2.TrainScoreModelRequest(
        hidden=[int(h) for h in hidden], time_embedding_dim=time_embedding_dim,
        prediction=_choice("prediction", prediction, _PREDICTIONS),
        steps=steps, batch_size=batch_size, learning_rate=learning_rate, report_every=report_every, seed=seed,
    )
    request.schedule.CopyFrom(_as_schedule(schedule))
    _set_arrays(request, samples=samples)
    if t_min is not None:
        request.t_min = t_min
    if t_max is not None:
        request.t_max = t_max
    return request
