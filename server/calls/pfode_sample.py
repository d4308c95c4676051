"""SampleProbabilityFlowRequest -> validated call -> `pfode.sample` -> response, and the
parsing the other probability-flow calls share (model, schedule, score sources).

`parse` runs in the server process too, before a request takes a queue slot, so it uses
numpy only: no JAX arrays (which would start a JAX backend there). It turns names into
the solver registries' keys (`monge.solvers.pfode.SCHEDULES`, `SAMPLERS`, ...) and
checks every field, naming it; `run` builds the solver objects on the worker and runs
the solver in chunks of steps (`run_steps`, through `chunked.run_in_chunks`), so that
`stop` (a cancelled call, an expired deadline) frees the worker within about a chunk:
a quarter of a second of work, estimated from the request's size and grown while chunks
run faster than that.

Of an exported network (`ProbabilityFlowModel.exported`) `parse` checks what the request
says: its size, prediction and event shape. Deserializing the artifact needs JAX, so it
is checked on the worker when `run` builds the source (`monge.server.models.exported`),
its refusals InvalidArgument naming the field all the same.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from monge.v1.codec import TensorError, decode, encode
from monge.server.statuses import sample_status
from monge.server import limits
from monge.server.models import exported as exported_models
from monge.server.models import score as pfode_models
from monge.server.calls import common as v
from monge.server.runtime.chunked import run_in_chunks
from monge.server.config import ServerConfig
from monge.server.auth import ANONYMOUS
from monge.server.errors import InvalidArgument, NotFound
from monge.solvers.status import Status
from monge.solvers.pfode import (
    PREDICTIONS,
    SAMPLERS,
    SCHEDULES,
    TIME_GRIDS,
    KarrasTimeGrid,
    LogSNRTimeGrid,
    MLPArchitecture,
)
from monge.v1 import pfode_pb2 as pb, tensor_pb2

DEFAULT_STEPS = 20
DEFAULT_PROBES = 16
MAX_DIM = 4096
MAX_COMPONENTS = 10_000
MAX_LAYERS = 16
MAX_WIDTH = 8192
MAX_EMBEDDING = 1024
MAX_PARAMETERS = 50_000_000
MAX_PROBES = 1024
MAX_LIKELIHOOD_STEPS = 100_000
MAX_EVENT_RANK = 8  # dimensions of an exported model's event shape
MIXTURE_WEIGHT_TOLERANCE = 1e-6  # as monge.solvers.pfode.sources.GaussianMixture

# Which schedule parameters each schedule has (the fields of DiffusionSchedule).
SCHEDULE_PARAMETERS = {
    "vp": ("beta_min", "beta_max"),
    "ve": ("sigma_min", "sigma_max"),
    "edm": ("sigma_min", "sigma_max", "rho"),
}
_ALL_PARAMETERS = ("beta_min", "beta_max", "sigma_min", "sigma_max", "rho")
_DTYPES = {tensor_pb2.DTYPE_FLOAT32: np.dtype(np.float32), tensor_pb2.DTYPE_FLOAT64: np.dtype(np.float64)}


# -- specs: validated, plain data; `build()` makes the solver object on the worker ------


@dataclasses.dataclass(frozen=True)
class ScheduleSpec:
    name: str  # a key of SCHEDULES
    parameters: dict

    def build(self):
        return SCHEDULES[self.name](**self.parameters)


@dataclasses.dataclass(frozen=True)
class MixtureSpec:
    means: np.ndarray  # (K, d)
    covariances: np.ndarray  # (K, d, d)
    weights: np.ndarray | None  # (K,)

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def build(self):
        from monge.solvers.pfode import GaussianMixture

        return GaussianMixture(self.means, self.covariances, self.weights)


@dataclasses.dataclass(frozen=True)
class MlpSpec:
    architecture: MLPArchitecture  # static sizes only, no arrays
    prediction: str  # a key of PREDICTIONS
    weights: dict

    @property
    def dim(self) -> int:
        return self.architecture.dim

    def build(self):
        from monge.solvers.pfode import MLPModel

        return MLPModel(self.architecture, self.weights, PREDICTIONS[self.prediction]())


@dataclasses.dataclass(frozen=True)
class ExportedSpec:
    """A caller's jax.export artifact; what the call computes (dtype, batch sizes,
    gradients) is filled in by `ModelSpec.for_call` once the call is parsed."""

    artifact: bytes
    prediction: str  # a key of PREDICTIONS
    event_shape: tuple[int, ...]
    field: str  # the artifact's request field, for the worker's refusals
    dtype: np.dtype = np.dtype(np.float32)
    batch_sizes: tuple[int, ...] = ()
    gradients: bool = False

    @property
    def dim(self) -> int:
        return math.prod(self.event_shape)

    def build(self):
        """Deserialize and check the artifact (InvalidArgument on `field`): on the worker only."""
        return exported_models.load(self.artifact, prediction=self.prediction, event_shape=self.event_shape,
                                    dtype=self.dtype, batch_sizes=self.batch_sizes, gradients=self.gradients,
                                    field=self.field)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    schedule: ScheduleSpec
    source: MixtureSpec | MlpSpec | ExportedSpec
    prior: str  # noise or marginal
    t_start: float | None  # None: the schedule's default
    t_end: float | None

    @property
    def dim(self) -> int:
        return self.source.dim

    @property
    def event_shape(self) -> tuple[int, ...]:
        """The shape of one sample on the wire: (d,), or an exported model's event shape."""
        return self.source.event_shape if isinstance(self.source, ExportedSpec) else (self.dim,)

    def for_call(self, dtype, batch_sizes, gradients: bool) -> "ModelSpec":
        """The model as the call evaluates it: an exported network is checked against the
        call's dtype, the batch sizes it will see and whether it is differentiated."""
        if not isinstance(self.source, ExportedSpec):
            return self
        source = dataclasses.replace(self.source, dtype=np.dtype(dtype), gradients=bool(gradients),
                                     batch_sizes=tuple(sorted({int(b) for b in batch_sizes})))
        return dataclasses.replace(self, source=source)

    def batch_sizes(self, n: int, likelihood: "LikelihoodSpec | None") -> tuple[int, ...]:
        """Rows per network evaluation: n, and for a likelihood of an exported network n
        times its probes (reverse-mode divergences stack the probes along the batch)."""
        return (n,) if likelihood is None else (n, n * likelihood.probes(self.dim))

    def build(self):
        """(source, schedule, prior) solver objects."""
        from monge.solvers.pfode import MarginalPrior, NoisePrior

        prior = MarginalPrior() if self.prior == "marginal" else NoisePrior()
        return self.source.build(), self.schedule.build(), prior


@dataclasses.dataclass(frozen=True)
class LikelihoodSpec:
    divergence: str  # exact or hutchinson
    num_probes: int
    rtol: float | None  # None: the entry point's default
    atol: float | None

    def build(self):
        from monge.solvers.pfode import ExactDivergence, HutchinsonDivergence

        return HutchinsonDivergence(self.num_probes) if self.divergence == "hutchinson" else ExactDivergence()

    def probes(self, dim: int) -> int:
        return self.num_probes if self.divergence == "hutchinson" else dim


# -- field helpers ---------------------------------------------------------------------


def enum_choice(value: int, enum_type, field: str, names, default: str) -> str:
    """The registry key an enum value names (its name without the type prefix, lower
    case), `default` for the unspecified zero value."""
    v.known_enum(value, enum_type, field)
    if value == 0:
        return default
    full = enum_type.Name(value)
    prefix = enum_type.Name(0).removesuffix("UNSPECIFIED")
    name = full.removeprefix(prefix).lower()
    if name not in names:
        raise InvalidArgument.field(field, f"{full} is not offered by this server")
    return name


def finite(value: float, field: str) -> float:
    if not math.isfinite(value):
        raise InvalidArgument.field(field, f"must be a finite number, got {value}")
    return float(value)


def float_dtype(value: int, field: str, default) -> np.dtype:
    v.known_enum(value, tensor_pb2.Dtype, field)
    if value == tensor_pb2.DTYPE_UNSPECIFIED:
        return np.dtype(default)
    if value not in _DTYPES:
        raise InvalidArgument.field(field, f"must be DTYPE_FLOAT32 or DTYPE_FLOAT64, got {tensor_pb2.Dtype.Name(value)}")
    return _DTYPES[value]


def seed(value: int, field: str) -> int:
    if value < 0:
        raise InvalidArgument.field(field, f"must be >= 0, got {value}")
    return int(value)


def _float_array(tensor: tensor_pb2.Tensor, field: str) -> np.ndarray:
    """A finite float32/float64 array from a Tensor that is not a message field (a map value)."""
    try:
        array = decode(tensor, field)
    except TensorError as error:
        raise InvalidArgument.field(error.field, error.description) from None
    if array.dtype not in v.FLOAT_DTYPES:
        raise InvalidArgument.field(field, f"dtype must be float32 or float64, got {array.dtype.name}")
    if not np.all(np.isfinite(array)):
        raise InvalidArgument.field(field, f"has {int(array.size - np.count_nonzero(np.isfinite(array)))} "
                                           "NaN or infinite entries")
    return array


# -- schedule, sources, model ------------------------------------------------------------


def parse_schedule(message: pb.DiffusionSchedule | None, prefix: str, errors: v.Violations) -> ScheduleSpec:
    """`message` None (an absent field) is VP with its defaults."""
    if message is None:
        return ScheduleSpec("vp", {})
    name = "vp"
    with errors.check():
        name = enum_choice(message.kind, pb.NoiseSchedule, f"{prefix}kind", SCHEDULES, "vp")
    allowed = SCHEDULE_PARAMETERS[name]
    parameters = {}
    for parameter in _ALL_PARAMETERS:
        if not message.HasField(parameter):
            continue
        field = prefix + parameter
        if parameter not in allowed:
            errors.add(field, f"is not a parameter of the {name.upper()} schedule (it has {', '.join(allowed)})")
            continue
        value = getattr(message, parameter)
        may_be_zero = parameter == "beta_min" or (parameter == "sigma_min" and name == "edm")
        if not math.isfinite(value) or value < 0 or (value == 0 and not may_be_zero):
            errors.add(field, f"must be a finite number {'>= 0' if may_be_zero else '> 0'}, got {value}")
            continue
        parameters[parameter] = float(value)
    spec = ScheduleSpec(name, parameters)
    if name in ("ve", "edm") and not any(f.startswith(prefix) for f, _ in errors.items):
        schedule = spec.build()
        if not schedule.sigma_max > schedule.sigma_min:
            errors.add(prefix + "sigma_max", f"must be greater than sigma_min ({schedule.sigma_min}), "
                                             f"got {schedule.sigma_max}")
    return spec


def parse_mixture(message: pb.GaussianMixture, prefix: str, config: ServerConfig) -> MixtureSpec:
    errors = v.Violations()
    means = covariances = weights = None
    with errors.check():
        means = v.float_tensor(message, "means", ndim=2, prefix=prefix, required="is required (K, d)")
    with errors.check():
        covariances = v.float_tensor(message, "covariances", ndim=3, prefix=prefix,
                                     required="is required (K, d, d)")
    with errors.check():
        weights = v.float_tensor(message, "weights", ndim=1, prefix=prefix)
    errors.raise_if_any()
    k, d = means.shape
    if d > MAX_DIM:
        errors.add(prefix + "means", f"dimension {d} is over the limit of {MAX_DIM}")
    if k > MAX_COMPONENTS:
        errors.add(prefix + "means", f"{k} components are over the limit of {MAX_COMPONENTS}")
    if covariances.shape != (k, d, d):
        errors.add(prefix + "covariances", f"must have shape {[k, d, d]} (means are {[k, d]}), "
                                           f"got {list(covariances.shape)}")
    elif k * d * d > config.max_dense_elements:
        errors.add(prefix + "covariances", limits.over_limit(f"{k * d * d:,} entries", config.max_dense_elements,
                                                             "max_dense_elements"))
    if weights is not None:
        if weights.shape != (k,):
            errors.add(prefix + "weights", f"must have shape {[k]} (one per component), got {list(weights.shape)}")
        elif np.any(weights < 0):
            errors.add(prefix + "weights", f"has {int(np.sum(weights < 0))} negative entries")
        elif not abs(float(np.sum(weights, dtype=np.float64)) - 1.0) <= MIXTURE_WEIGHT_TOLERANCE:
            errors.add(prefix + "weights", f"must sum to one, got {float(np.sum(weights, dtype=np.float64))!r}")
    errors.raise_if_any()
    covariances = covariances.astype(np.float64)
    transposed = np.swapaxes(covariances, 1, 2)
    asymmetric = ~np.all(np.isclose(covariances, transposed, rtol=1e-8, atol=1e-10), axis=(1, 2))
    if np.any(asymmetric):
        bad = int(np.argmax(asymmetric))
        errors.add(prefix + "covariances", f"covariances[{bad}] is not symmetric")
    else:
        smallest = np.linalg.eigvalsh(0.5 * (covariances + transposed)).min(axis=1)
        if not np.all(smallest > 0):
            bad = int(np.argmin(smallest))
            errors.add(prefix + "covariances", f"covariances[{bad}] is not positive definite "
                                               f"(smallest eigenvalue {smallest[bad]:.3g})")
    errors.raise_if_any()
    return MixtureSpec(means, covariances, weights)


def parse_architecture(dim: int, hidden, time_embedding_dim: int, prefix: str, errors: v.Violations,
                       dim_field: str = "dim") -> MLPArchitecture | None:
    """The built-in MLP's sizes, or None with the violations added."""
    start = len(errors.items)
    if not 1 <= dim <= MAX_DIM:
        errors.add(prefix + dim_field, f"must be in [1, {MAX_DIM}], got {dim}")
    if not 1 <= len(hidden) <= MAX_LAYERS:
        errors.add(prefix + "hidden", f"must list 1 to {MAX_LAYERS} layer widths, got {len(hidden)}")
    elif any(not 1 <= h <= MAX_WIDTH for h in hidden):
        errors.add(prefix + "hidden", f"widths must be in [1, {MAX_WIDTH}], got {list(hidden)}")
    if not (2 <= time_embedding_dim <= MAX_EMBEDDING and time_embedding_dim % 2 == 0):
        errors.add(prefix + "time_embedding_dim", f"must be even and in [2, {MAX_EMBEDDING}], got {time_embedding_dim}")
    if len(errors.items) > start:
        return None
    architecture = MLPArchitecture(dim=int(dim), hidden=tuple(int(h) for h in hidden),
                                   time_embedding_dim=int(time_embedding_dim))
    parameters = sum(math.prod(shape) for shape in architecture.weight_shapes().values())
    if parameters > MAX_PARAMETERS:
        errors.add(prefix + "hidden", f"{parameters:,} weights are over the limit of {MAX_PARAMETERS:,}")
        return None
    return architecture


def _check_weights(architecture: MLPArchitecture, weights: dict, prefix: str, errors: v.Violations):
    expected = architecture.weight_shapes()
    sizes = (f"dim={architecture.dim}, hidden={list(architecture.hidden)}, "
             f"time_embedding_dim={architecture.time_embedding_dim}")
    for name, shape in expected.items():
        if name not in weights:
            errors.add(f"{prefix}weights[{name}]", f"is missing (shape {list(shape)} for {sizes})")
        elif tuple(weights[name].shape) != shape:
            errors.add(f"{prefix}weights[{name}]", f"has shape {list(weights[name].shape)} but {sizes} "
                                                    f"needs {list(shape)}")
    for name in sorted(set(weights) - set(expected)):
        errors.add(f"{prefix}weights[{name}]", f"is not a weight of this architecture (it has "
                                                f"{', '.join(expected)})")


def parse_mlp(message: pb.MlpScoreModel, prefix: str) -> MlpSpec:
    errors = v.Violations()
    embedding = message.time_embedding_dim if message.HasField("time_embedding_dim") else 16
    architecture = parse_architecture(message.dim, list(message.hidden), embedding, prefix, errors)
    prediction = None
    with errors.check():
        prediction = enum_choice(message.prediction, pb.PredictionType, prefix + "prediction", PREDICTIONS, "")
        if not prediction:
            errors.add(prefix + "prediction", "is required: what the network's output means")
    weights = {}
    for name in sorted(message.weights):
        with errors.check():
            weights[name] = _float_array(message.weights[name], f"{prefix}weights[{name}]")
    if architecture is not None and not errors.items:
        _check_weights(architecture, weights, prefix, errors)
    errors.raise_if_any()
    return MlpSpec(architecture, prediction, weights)


def parse_exported(message: pb.ExportedModel, prefix: str, config: ServerConfig) -> ExportedSpec:
    """What the server process can check of an exported network (numpy only: no JAX
    here): its size, prediction and event shape. The artifact itself is checked on the
    worker (`monge.server.models.exported.load`)."""
    errors = v.Violations()
    size = len(message.artifact)
    if size == 0:
        errors.add(prefix + "artifact", "is required: the bytes of jax.export.Exported.serialize()")
    elif size > config.max_exported_model_bytes:
        errors.add(prefix + "artifact", limits.over_limit(f"{size:,} bytes", config.max_exported_model_bytes,
                                                          "max_exported_model_bytes"))
    prediction = None
    with errors.check():
        prediction = enum_choice(message.prediction, pb.PredictionType, prefix + "prediction", PREDICTIONS, "")
        if not prediction:
            errors.add(prefix + "prediction", "is required: what the network's output means")
    shape = list(message.event_shape)
    if not 1 <= len(shape) <= MAX_EVENT_RANK:
        errors.add(prefix + "event_shape", f"must list 1 to {MAX_EVENT_RANK} dimensions (the shape of one sample), "
                                           f"got {len(shape)}")
    elif any(e < 1 for e in shape):
        errors.add(prefix + "event_shape", f"dimensions must be >= 1, got {shape}")
    elif math.prod(shape) > config.max_dense_elements:
        errors.add(prefix + "event_shape", limits.over_limit(f"one sample of shape {shape} has "
                                                             f"{math.prod(shape):,} values",
                                                             config.max_dense_elements, "max_dense_elements"))
    errors.raise_if_any()
    return ExportedSpec(bytes(message.artifact), prediction, tuple(int(e) for e in shape), prefix + "artifact")


def load_trained(model_id: str, field: str, config: ServerConfig, owner: str = ANONYMOUS) -> MlpSpec:
    """The caller's trained model: NotFound for an id with no model, or another owner's."""
    try:
        stored = pfode_models.load(config.data_dir, model_id, owner)
    except pfode_models.ModelNotFound as error:
        raise NotFound(str(error), field) from None
    errors = v.Violations()
    architecture = parse_architecture(stored.dim, stored.hidden, stored.time_embedding_dim, "", errors)
    if architecture is not None:
        _check_weights(architecture, stored.weights, "", errors)
    if errors.items or stored.prediction not in PREDICTIONS:
        raise InvalidArgument.field(field, f"the stored model {model_id} is damaged and cannot be used")
    return MlpSpec(architecture, stored.prediction, stored.weights)


def default_interval(schedule: ScheduleSpec) -> tuple[float, float]:
    start, end = schedule.build().default_interval()
    return float(start), float(end)


def sigma_is_zero(schedule: ScheduleSpec, t: float) -> bool:
    """Whether sigma(t) = 0 (no noise: the score is undefined there)."""
    # VE: sigma(t) >= sigma_min > 0. VP: the integral of beta > 0 for t > 0 (beta_max > 0).
    # EDM: sigma(t) = t.
    return schedule.name != "ve" and t == 0


def parse_model(request, config: ServerConfig, errors: v.Violations, prefix: str = "model.",
                owner: str = ANONYMOUS) -> ModelSpec:
    """The request's `model` (a ProbabilityFlowModel); raises the violations found so far,
    then NotFound for a trained model id that is not the caller's (`owner`): a stored
    model is looked up only for a request that is otherwise valid."""
    model = request.model if request.HasField("model") else pb.ProbabilityFlowModel()
    schedule = parse_schedule(model.schedule if model.HasField("schedule") else None, prefix + "schedule.", errors)
    source = None
    which = model.WhichOneof("source")
    with errors.check():
        if which is None:
            raise InvalidArgument.field(prefix + "source", "is required: gaussian_mixture, mlp, trained_model_id "
                                                           "or exported")
        if which == "gaussian_mixture":
            source = parse_mixture(model.gaussian_mixture, prefix + "gaussian_mixture.", config)
        elif which == "mlp":
            source = parse_mlp(model.mlp, prefix + "mlp.")
        elif which == "exported":
            source = parse_exported(model.exported, prefix + "exported.", config)
        elif not pfode_models.valid_id(model.trained_model_id):
            raise InvalidArgument.field(prefix + "trained_model_id", f"{model.trained_model_id!r} is not a model "
                                                                     "id (32 lower-case hex digits)")
    prior = "noise"
    with errors.check():
        prior = enum_choice(model.prior, pb.LatentPrior, prefix + "prior", ("noise", "marginal"), "noise")
        if prior == "marginal" and which != "gaussian_mixture":
            errors.add(prefix + "prior", "LATENT_PRIOR_MARGINAL needs a gaussian_mixture source")
    t_start = t_end = None
    with errors.check():
        if model.HasField("t_start"):
            t_start = finite(model.t_start, prefix + "t_start")
    with errors.check():
        if model.HasField("t_end"):
            t_end = finite(model.t_end, prefix + "t_end")
    errors.raise_if_any()
    start, end = default_interval(schedule)
    start = start if t_start is None else t_start
    end = end if t_end is None else t_end
    if end < 0:
        errors.add(prefix + "t_end", f"must be >= 0, got {end}")
    elif not start > end:
        errors.add(prefix + ("t_start" if t_start is not None else "t_end"),
                   f"t_start ({start}) must be greater than t_end ({end})")
    errors.raise_if_any()
    if which == "trained_model_id":
        source = load_trained(model.trained_model_id, prefix + "trained_model_id", config, owner)
    return ModelSpec(schedule, source, prior, t_start, t_end)


def model_interval(model: ModelSpec) -> tuple[float, float]:
    start, end = default_interval(model.schedule)
    return (start if model.t_start is None else model.t_start), (end if model.t_end is None else model.t_end)


def parse_likelihood_options(message: pb.LogLikelihoodOptions | None, prefix: str,
                             errors: v.Violations) -> LikelihoodSpec:
    message = message if message is not None else pb.LogLikelihoodOptions()
    divergence = "exact"
    with errors.check():
        divergence = enum_choice(message.divergence, pb.DivergenceEstimator, prefix + "divergence",
                                 ("exact", "hutchinson"), "exact")
    probes = DEFAULT_PROBES
    if message.HasField("num_probes"):
        if divergence != "hutchinson":
            errors.add(prefix + "num_probes", "applies to DIVERGENCE_ESTIMATOR_HUTCHINSON only")
        else:
            with errors.check():
                probes = v.integer_in_range(message.num_probes, prefix + "num_probes", 2, MAX_PROBES)
    tolerances = {}
    for name in ("rtol", "atol"):
        if message.HasField(name):
            with errors.check():
                tolerances[name] = v.positive(getattr(message, name), prefix + name)
    return LikelihoodSpec(divergence, probes, tolerances.get("rtol"), tolerances.get("atol"))


def check_likelihood_end(model: ModelSpec, prefix: str, errors: v.Violations):
    """Log densities need noise at t_end: the score is undefined where sigma = 0."""
    _, end = model_interval(model)
    if sigma_is_zero(model.schedule, end):
        errors.add(prefix + "t_end", f"log-likelihoods need sigma(t_end) > 0; t_end = {end} has no noise "
                                     f"under the {model.schedule.name.upper()} schedule")


def check_probe_memory(likelihood: LikelihoodSpec, n: int, dim: int, field: str, config: ServerConfig,
                       errors: v.Violations):
    entries = n * likelihood.probes(dim) * dim
    if entries > config.max_dense_elements:
        errors.add(field, limits.over_limit(f"the divergence needs {entries:,} probe entries (points x probes x d)",
                                            config.max_dense_elements, "max_dense_elements")
                   + "; use fewer points or Hutchinson with fewer probes")


# -- the sampling call -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SampleCall:
    model: ModelSpec
    sampler: str  # a key of SAMPLERS
    rtol: float | None  # Dopri5 only; None: its default
    atol: float | None
    grid: str | None  # a key of TIME_GRIDS; None: the sampler's default
    steps: int
    nfe: int | None  # the budget when given as evaluations (Dopri5 is capped to it)
    num_samples: int
    seed: int
    dtype: np.dtype
    return_trajectory: bool
    likelihood: LikelihoodSpec | None

    def build_sampler(self):
        if self.sampler == "dopri5":
            tolerances = {k: val for k, val in (("rtol", self.rtol), ("atol", self.atol)) if val is not None}
            return SAMPLERS["dopri5"](**tolerances)
        return SAMPLERS[self.sampler]()

    def build_grid(self, schedule):
        if self.grid is None:
            return None
        if self.grid == "karras":
            return TIME_GRIDS["karras"](rho=float(getattr(schedule, "rho", 7.0)))
        return TIME_GRIDS[self.grid]()


def parse(request: pb.SampleProbabilityFlowRequest, config: ServerConfig, owner: str = ANONYMOUS) -> SampleCall:
    errors = v.Violations()
    sampler = grid = None
    with errors.check():
        sampler = enum_choice(request.sampler, pb.OdeSampler, "sampler", SAMPLERS, "heun")
    with errors.check():
        grid = enum_choice(request.time_grid, pb.TimeGrid, "time_grid", TIME_GRIDS, "") or None
    tolerances = {}
    for name in ("rtol", "atol"):
        if request.HasField(name):
            if sampler is not None and sampler != "dopri5":
                errors.add(name, "applies to ODE_SAMPLER_DOPRI5 only (the other samplers take fixed steps)")
                continue
            with errors.check():
                tolerances[name] = v.positive(getattr(request, name), name)
    dtype = np.dtype(np.float32)
    with errors.check():
        dtype = float_dtype(request.dtype, "dtype", np.float32)
    with errors.check():
        seed(request.seed, "seed")
    num_samples = None
    with errors.check():
        num_samples = v.integer_in_range(request.num_samples, "num_samples", 1, config.max_samples,
                                         limit="max_samples")
    model = parse_model(request, config, errors, owner=owner)
    errors.raise_if_any()

    call = SampleCall(model=model, sampler=sampler, rtol=tolerances.get("rtol"), atol=tolerances.get("atol"),
                      grid=grid, steps=0, nfe=None, num_samples=num_samples, seed=int(request.seed), dtype=dtype,
                      return_trajectory=request.return_trajectory, likelihood=None)
    solver = call.build_sampler()
    schedule = model.schedule.build()
    _, end = model_interval(model)
    effective_grid = call.build_grid(schedule) or solver.default_grid(schedule)
    to_zero = sigma_is_zero(model.schedule, end) or (
        isinstance(effective_grid, KarrasTimeGrid) and effective_grid.append_zero)
    budget = request.WhichOneof("budget")
    steps, nfe = DEFAULT_STEPS, None
    if budget == "steps":
        with errors.check():
            steps = v.integer_in_range(request.steps, "steps", 1, config.max_iterations, limit="max_iterations")
    elif budget == "nfe":
        if request.nfe < 1:
            errors.add("nfe", f"must be at least 1 score evaluation, got {request.nfe}")
        else:
            nfe = int(min(request.nfe, 2**62))
            steps = solver.steps_for_nfe(nfe, to_zero)
            try:
                solver.with_nfe_cap(nfe, to_zero)  # adaptive samplers: one step must fit
            except ValueError:
                steps = 0
            if steps < 1:
                errors.add("nfe", f"{request.nfe} score evaluations are not enough for one step of {sampler}")
            elif steps > config.max_iterations:
                errors.add("nfe", limits.over_limit(f"{request.nfe:,} score evaluations are {steps:,} steps of "
                                                    f"{sampler}", config.max_iterations, "max_iterations"))

    d = model.dim
    itemsize = dtype.itemsize
    if num_samples * d > config.max_dense_elements:
        errors.add("num_samples", limits.over_limit(f"{num_samples:,} samples of dimension {d} are "
                                                    f"{num_samples * d:,} values", config.max_dense_elements,
                                                    "max_dense_elements"))
    elif num_samples * d * itemsize > config.max_message_bytes:
        errors.add("num_samples", limits.over_limit(f"the samples would take {num_samples * d * itemsize:,} bytes",
                                                    config.max_message_bytes, "max_message_bytes"))
    if request.return_trajectory and not errors.items:
        size = (steps + 1) * num_samples * d
        if size > config.max_trajectory_elements:
            errors.add("return_trajectory", limits.over_limit(
                f"the trajectory would hold {size:,} values ({steps + 1:,} times x {num_samples:,} samples x {d})",
                config.max_trajectory_elements, "max_trajectory_elements"))
        elif size * itemsize > config.max_message_bytes:
            errors.add("return_trajectory", limits.over_limit(f"the trajectory would take {size * itemsize:,} bytes",
                                                              config.max_message_bytes, "max_message_bytes"))

    if sigma_is_zero(model.schedule, end) and isinstance(effective_grid, LogSNRTimeGrid):
        errors.add("model.t_end", f"the log-SNR grid (the default of {sampler} on this schedule) needs "
                                  f"sigma(t_end) > 0; t_end = {end} has no noise")
    likelihood = None
    if request.HasField("log_likelihood"):
        likelihood = parse_likelihood_options(request.log_likelihood, "log_likelihood.", errors)
        check_likelihood_end(model, "model.", errors)
        check_probe_memory(likelihood, num_samples, d, "log_likelihood.divergence", config, errors)
    errors.raise_if_any()
    model = model.for_call(dtype, model.batch_sizes(num_samples, likelihood), gradients=likelihood is not None)
    return dataclasses.replace(call, model=model, steps=steps, nfe=nfe, likelihood=likelihood)


# -- running in chunks -------------------------------------------------------------------

# Work units a step of one sample costs per score evaluation, and how many a CPU core
# does in a second at the least (conservative: chunks grow when they run faster).
SECONDS_PER_UNIT = 5e-9
CHUNK_SECONDS = 0.25
LARGEST_FIRST_CHUNK = 40  # chunks grow from here while they run fast: no recompile


def evaluation_cost(model: ModelSpec) -> float:
    """Work units of one score evaluation for one sample: a mixture rotates into each
    component's eigenbasis and back, an MLP multiplies by its weights."""
    d = model.dim
    if isinstance(model.source, MixtureSpec):
        return model.source.means.shape[0] * d * (4 * d + 8)
    if isinstance(model.source, ExportedSpec):
        # Unknown; a network's weights are constants of its module, about 4 bytes each,
        # and each costs a multiply-add per row. Chunks grow from here when they run fast.
        return 2 * len(model.source.artifact) / 4 + 16 * d
    shapes = model.source.architecture.weight_shapes().values()
    return 2 * sum(math.prod(shape) for shape in shapes) + 16 * d


def first_chunk(step_work: float) -> int:
    """Steps in the first chunk: about CHUNK_SECONDS of `step_work` units, at least one."""
    wanted = CHUNK_SECONDS / max(step_work * SECONDS_PER_UNIT, 1e-12)
    return int(max(1, min(wanted, LARGEST_FIRST_CHUNK)))


@dataclasses.dataclass(frozen=True)
class _Chunk:
    """What `run_in_chunks` needs of a chunk: the steps it took and whether to go on."""

    state: object
    iterations: int
    status: int  # Status.MAX_ITERATIONS while steps remain


def run_steps(job, stop, progress, step_work: float):
    """Run a `SampleRun` or `LikelihoodRun` (start, advance, finished) in chunks of
    steps until it finishes or `stop` is set. -> (state, cancelled)."""
    initial = job.start()

    def solve_chunk(iterations, state):
        state = initial if state is None else state
        before = job.progress(state)
        state = job.advance(state, iterations)  # blocks until the device is done
        status = Status.CONVERGED if job.finished(state) else Status.MAX_ITERATIONS
        return _Chunk(state, job.progress(state) - before, int(status))

    out = run_in_chunks(solve_chunk, lambda chunk: chunk.state, max_iterations=job.max_progress, stop=stop,
                        first_chunk=first_chunk(step_work), target_seconds=CHUNK_SECONDS,
                        progress=None if progress is None else (lambda iteration, error: progress(iteration=iteration)))
    return out.state, int(out.status) == Status.CANCELLED


def cancelled_result(message: str, seconds: float):
    return {"cancelled": message}, seconds


def run(call: SampleCall, stop, progress=None):
    """Sample on this process's JAX device in chunks of steps, then (if asked) the
    samples' log-likelihood in chunks of Dopri5 steps; `stop` ends either between chunks."""
    import jax

    from monge.solvers.pfode import SampleRun

    if stop.is_set():
        return cancelled_result("cancelled before the solve started", 0.0)
    started = time.perf_counter()
    source, schedule, prior = call.model.build()
    options = {}
    if call.likelihood is not None:
        options["likelihood"] = call.likelihood.build()
        if call.likelihood.rtol is not None:
            options["likelihood_rtol"] = call.likelihood.rtol
        if call.likelihood.atol is not None:
            options["likelihood_atol"] = call.likelihood.atol
    budget = {"nfe": call.nfe} if call.nfe is not None else {"steps": call.steps}
    job = SampleRun(
        source, schedule, call.build_sampler(),
        num_samples=call.num_samples, key=jax.random.key(call.seed), **budget,
        grid=call.build_grid(schedule), t_start=call.model.t_start, t_end=call.model.t_end, prior=prior,
        dtype=call.dtype, save_trajectory=call.return_trajectory, **options,
    )
    per_step = {"heun": 2, "dopri5": 6}.get(call.sampler, 1)
    state, cancelled = run_steps(job, stop, progress, per_step * call.num_samples * evaluation_cost(call.model))
    if cancelled:
        return cancelled_result(f"cancelled after {job.progress(state)} of {job.max_progress} steps",
                          time.perf_counter() - started)
    out = job.finish(state)
    log_prob = stderr = None
    likelihood = job.likelihood_run(out)
    if likelihood is not None:
        probes = call.likelihood.probes(call.model.dim)
        lik_state, cancelled = run_steps(likelihood, stop, None,
                                         6 * probes * call.num_samples * 3 * evaluation_cost(call.model))
        if cancelled:
            return cancelled_result(f"cancelled during the log-likelihood, after {likelihood.progress(lik_state)} "
                              "adaptive steps", time.perf_counter() - started)
        lik = likelihood.finish(lik_state)
        log_prob, stderr = np.asarray(lik.log_prob), np.asarray(lik.stderr)
        if int(lik.status) != 0 and int(out.status) == 0:
            out = dataclasses.replace(out, status=lik.status)
    result = {
        name: None if getattr(out, name) is None else np.asarray(getattr(out, name))
        for name in ("samples", "nfe", "times", "status", "trajectory")
    } | {"log_prob": log_prob, "log_prob_stderr": stderr, "message": out.message}
    event = call.model.event_shape
    for name in ("samples", "trajectory"):  # flat states (..., d) to (..., *event_shape)
        if result[name] is not None:
            result[name] = result[name].reshape(result[name].shape[:-1] + event)
    return result, time.perf_counter() - started


def cancelled(out) -> str | None:
    """The message of a result `run` cut short (see `cancelled_result`), else None."""
    return out.get("cancelled") if isinstance(out, dict) else None


def diagnostics(status: int | None, message: str, seconds: float) -> pb.ProbabilityFlowDiagnostics:
    """From the solver's Status (None when stopped from outside)."""
    if status is None:
        return pb.ProbabilityFlowDiagnostics(status=pb.SAMPLE_STATUS_CANCELLED, ok=False, message=message,
                                             solve_seconds=seconds)
    return pb.ProbabilityFlowDiagnostics(status=sample_status(status), message=message,
                                         ok=status == Status.CONVERGED, solve_seconds=seconds)


def encode_response(result) -> pb.SampleProbabilityFlowResponse:
    out, seconds = result
    if cancelled(out):
        return pb.SampleProbabilityFlowResponse(diagnostics=diagnostics(None, cancelled(out), seconds))
    response = pb.SampleProbabilityFlowResponse(
        samples=encode(out["samples"]),
        nfe=int(out["nfe"]),
        steps=int(out["times"].shape[0]) - 1,
        times=encode(out["times"]),
        diagnostics=diagnostics(int(out["status"]), out["message"], seconds),
    )
    if out["trajectory"] is not None:
        response.trajectory.CopyFrom(encode(out["trajectory"]))
    if out["log_prob"] is not None:
        response.log_likelihood.CopyFrom(encode(out["log_prob"]))
        response.log_likelihood_standard_error.CopyFrom(encode(out["log_prob_stderr"]))
    return response


__all__ = ["SampleCall", "parse", "run", "run_steps", "encode_response", "parse_model", "parse_schedule",
           "parse_exported"]
