"""What client calls return: frozen dataclasses of numpy arrays and plain values."""

from __future__ import annotations

import dataclasses

import numpy as np

from monge.v1.codec import decode
from monge.v1 import diagnostics_pb2, exact_pb2, pfode_pb2, ruot_pb2, tensor_pb2
from monge.v1.ruot_codec import RuotExport


@dataclasses.dataclass(frozen=True)
class Diagnostics:
    """How an iterative solve went."""

    status: str  # converged, max_iterations, diverged, cancelled
    message: str
    converged: bool
    iterations: int
    error: float
    solve_seconds: float

    @classmethod
    def from_proto(cls, d: diagnostics_pb2.SolverDiagnostics) -> "Diagnostics":
        name = diagnostics_pb2.SolverStatus.Name(d.status).removeprefix("SOLVER_STATUS_").lower()
        return cls(name, d.message, d.converged, d.iterations, d.error, d.solve_seconds)


@dataclasses.dataclass(frozen=True)
class NewtonStatistics:
    """How a Sinkhorn-Newton-Sparse solve split its work (method="sns")."""

    sinkhorn_iterations: int
    newton_iterations: int
    cg_iterations: int
    newton_failures: int
    kept_per_row: int

    @classmethod
    def from_proto(cls, n) -> "NewtonStatistics":
        return cls(n.sinkhorn_iterations, n.newton_iterations, n.cg_iterations, n.newton_failures,
                   n.kept_per_row)


def sparse_plan(m: tensor_pb2.SparseMatrix, field: str = "plan"):
    """A SparseMatrix as a `scipy.sparse.coo_array` (imported here: scipy only when used)."""
    import scipy.sparse

    values = decode(m.values, f"{field}.values")
    rows = decode(m.rows, f"{field}.rows")
    cols = decode(m.cols, f"{field}.cols")
    return scipy.sparse.coo_array((values, (rows, cols)), shape=tuple(m.shape))


def _optional(message, field):
    return decode(getattr(message, field), field) if message.HasField(field) else None


class _SolverResult:
    """Shortcuts into `diagnostics` shared by the transport results (converged: for exact
    transport, the plan is optimal)."""

    @property
    def converged(self) -> bool:
        return self.diagnostics.converged

    @property
    def iterations(self) -> int:
        return self.diagnostics.iterations

    @property
    def message(self) -> str:
        return self.diagnostics.message


@dataclasses.dataclass(frozen=True)
class SinkhornResult(_SolverResult):
    """Entropic OT solution. `cost` is <P, C>; f, g are KL-convention potentials:
    P = diag(a) exp((f + g - C) / epsilon) diag(b). The views of the plan are None
    unless asked for: `plan` (n, m) dense, `sparse_plan` the k largest entries of each
    row (a `scipy.sparse.coo_array`), `barycentric_map` (n, d) where each source point
    is sent."""

    cost: float
    objective: float
    f: np.ndarray
    g: np.ndarray
    marginal_error: float
    plan: np.ndarray | None
    diagnostics: Diagnostics
    newton: NewtonStatistics | None = None  # set for method="sns"
    sparse_plan: "scipy.sparse.coo_array | None" = None  # noqa: F821
    barycentric_map: np.ndarray | None = None

    @classmethod
    def from_proto(cls, r) -> "SinkhornResult":
        return cls(
            cost=r.cost,
            objective=r.objective,
            f=decode(r.f, "f"),
            g=decode(r.g, "g"),
            marginal_error=r.marginal_error,
            plan=_optional(r, "plan"),
            diagnostics=Diagnostics.from_proto(r.diagnostics),
            newton=NewtonStatistics.from_proto(r.newton) if r.HasField("newton") else None,
            sparse_plan=sparse_plan(r.sparse_plan, "sparse_plan") if r.HasField("sparse_plan") else None,
            barycentric_map=_optional(r, "barycentric_map"),
        )


@dataclasses.dataclass(frozen=True)
class SinkhornBatchResult:
    """The results of a batch, in the order of its problems (index or iterate it), and
    how the server split the work."""

    results: tuple[SinkhornResult, ...]
    vectorized_groups: int  # vmapped solves of two or more problems
    single_solves: int  # problems solved alone

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self):
        return iter(self.results)

    def __getitem__(self, index):
        return self.results[index]

    @classmethod
    def from_proto(cls, r) -> "SinkhornBatchResult":
        return cls(tuple(SinkhornResult.from_proto(one) for one in r.results), r.vectorized_groups,
                   r.single_solves)


@dataclasses.dataclass(frozen=True)
class SinkhornDivergenceTerm:
    """One of a divergence's three solves: its regularised objective, <P, C>, diagnostics."""

    objective: float
    cost: float
    diagnostics: Diagnostics

    @classmethod
    def from_proto(cls, t) -> "SinkhornDivergenceTerm":
        return cls(t.objective, t.cost, Diagnostics.from_proto(t.diagnostics))


@dataclasses.dataclass(frozen=True)
class SinkhornDivergenceResult:
    """S(a, b) = xy.objective - (xx.objective + yy.objective) / 2 + epsilon (|a| - |b|)^2 / 2
    (debiased; the last term is zero when balanced)."""

    divergence: float
    converged: bool  # all three solves
    xy: SinkhornDivergenceTerm
    xx: SinkhornDivergenceTerm
    yy: SinkhornDivergenceTerm

    @classmethod
    def from_proto(cls, r) -> "SinkhornDivergenceResult":
        terms = (SinkhornDivergenceTerm.from_proto(t) for t in (r.xy, r.xx, r.yy))
        return cls(r.divergence, r.converged, *terms)


@dataclasses.dataclass(frozen=True)
class ExactTransportResult(_SolverResult):
    """Exact OT solution. `cost` is <P, C> (W_p^p for points), `distance` W_p (None for
    a cost matrix); `plan` is a `scipy.sparse.coo_array` of the optimal plan; f, g are
    the network simplex's dual potentials (None for sorting)."""

    cost: float
    distance: float | None
    plan: "scipy.sparse.coo_array"  # noqa: F821
    f: np.ndarray | None
    g: np.ndarray | None
    marginal_error: float
    method: str  # network_simplex or sorting_1d
    pivot_cap: int
    diagnostics: Diagnostics

    @classmethod
    def from_proto(cls, r) -> "ExactTransportResult":
        return cls(
            cost=r.cost,
            distance=r.distance if r.HasField("distance") else None,
            plan=sparse_plan(r.plan),
            f=_optional(r, "f"),
            g=_optional(r, "g"),
            marginal_error=r.marginal_error,
            method=exact_pb2.ExactMethod.Name(r.method).removeprefix("EXACT_METHOD_").lower(),
            pivot_cap=r.pivot_cap,
            diagnostics=Diagnostics.from_proto(r.diagnostics),
        )


@dataclasses.dataclass(frozen=True)
class SparsityConstrainedResult(_SolverResult):
    """Sparsity-constrained OT solution: `plan` (a `scipy.sparse.coo_array`) has at most
    k nonzeros per column; `cost` is <P, C>, `objective` adds (gamma / 2) |P|^2."""

    plan: "scipy.sparse.coo_array"  # noqa: F821
    cost: float
    objective: float
    dual_objective: float
    marginal_error: float
    max_nonzeros_per_column: int
    alpha: np.ndarray
    beta: np.ndarray
    support_iterations: int
    diagnostics: Diagnostics

    @classmethod
    def from_proto(cls, r) -> "SparsityConstrainedResult":
        return cls(
            plan=sparse_plan(r.plan),
            cost=r.cost,
            objective=r.objective,
            dual_objective=r.dual_objective,
            marginal_error=r.marginal_error,
            max_nonzeros_per_column=r.max_nonzeros_per_column,
            alpha=_optional(r, "alpha"),
            beta=_optional(r, "beta"),
            support_iterations=r.support_iterations,
            diagnostics=Diagnostics.from_proto(r.diagnostics),
        )


@dataclasses.dataclass(frozen=True)
class ProbabilityFlowDiagnostics:
    """How a probability-flow integration went."""

    status: str  # success, max_steps, nonfinite, solver_failed, cancelled
    message: str
    ok: bool
    solve_seconds: float

    @classmethod
    def from_proto(cls, d: pfode_pb2.ProbabilityFlowDiagnostics) -> "ProbabilityFlowDiagnostics":
        name = pfode_pb2.SampleStatus.Name(d.status).removeprefix("SAMPLE_STATUS_").lower()
        return cls(name, d.message, d.ok, d.solve_seconds)


@dataclasses.dataclass(frozen=True)
class ProbabilityFlowSamples:
    """Samples (num_samples, d) at t_end; `nfe` score evaluations over `steps` grid steps
    (`times`); `trajectory` (steps + 1, num_samples, d), `log_likelihood` and its
    standard error (num_samples,) when asked for, else None."""

    samples: np.ndarray
    nfe: int
    steps: int
    times: np.ndarray
    trajectory: np.ndarray | None
    log_likelihood: np.ndarray | None
    log_likelihood_stderr: np.ndarray | None
    diagnostics: ProbabilityFlowDiagnostics

    @property
    def ok(self) -> bool:
        return self.diagnostics.ok

    @property
    def message(self) -> str:
        return self.diagnostics.message

    @classmethod
    def from_proto(cls, r) -> "ProbabilityFlowSamples":
        return cls(
            samples=_optional(r, "samples"),
            nfe=r.nfe,
            steps=r.steps,
            times=_optional(r, "times"),
            trajectory=_optional(r, "trajectory"),
            log_likelihood=_optional(r, "log_likelihood"),
            log_likelihood_stderr=_optional(r, "log_likelihood_standard_error"),
            diagnostics=ProbabilityFlowDiagnostics.from_proto(r.diagnostics),
        )


@dataclasses.dataclass(frozen=True)
class ProbabilityFlowLikelihood:
    """log p_{t_end}(points) (n,), its standard error (zeros for the exact divergence),
    the prior's part, the points pushed back to t_start, and the evaluations used."""

    log_likelihood: np.ndarray
    standard_error: np.ndarray
    prior_log_likelihood: np.ndarray
    latents: np.ndarray
    nfe: int
    diagnostics: ProbabilityFlowDiagnostics

    @property
    def ok(self) -> bool:
        return self.diagnostics.ok

    @classmethod
    def from_proto(cls, r) -> "ProbabilityFlowLikelihood":
        return cls(
            log_likelihood=_optional(r, "log_likelihood"),
            standard_error=_optional(r, "standard_error"),
            prior_log_likelihood=_optional(r, "prior_log_likelihood"),
            latents=_optional(r, "latents"),
            nfe=r.nfe,
            diagnostics=ProbabilityFlowDiagnostics.from_proto(r.diagnostics),
        )


@dataclasses.dataclass(frozen=True)
class TrainedScoreModel:
    """A score model trained on the server. Sample from it by passing it (or `model_id`)
    as the source; `upload()` gives the weights as an `mlp_model` source for another
    server. `model_id` is empty when training diverged (nothing was stored)."""

    model_id: str
    weights: dict[str, np.ndarray]
    dim: int
    hidden: tuple[int, ...]
    time_embedding_dim: int
    prediction: str  # score, noise, data or velocity
    losses: np.ndarray  # mean loss of each block of report_every steps
    final_loss: float
    diagnostics: Diagnostics

    @property
    def ok(self) -> bool:
        """True when training ran all its steps with finite losses (the model is stored)."""
        return self.diagnostics.status == "max_iterations" and bool(self.model_id)

    def upload(self) -> pfode_pb2.MlpScoreModel:
        from monge.client import requests

        return requests.mlp_model(self.weights, hidden=self.hidden, prediction=self.prediction, dim=self.dim,
                                  time_embedding_dim=self.time_embedding_dim)

    @classmethod
    def from_proto(cls, r) -> "TrainedScoreModel":
        m = r.model
        return cls(
            model_id=r.model_id,
            weights={name: decode(t, f"model.weights[{name}]") for name, t in sorted(m.weights.items())},
            dim=m.dim,
            hidden=tuple(m.hidden),
            time_embedding_dim=m.time_embedding_dim,
            prediction=pfode_pb2.PredictionType.Name(m.prediction).removeprefix("PREDICTION_TYPE_").lower(),
            losses=_optional(r, "losses"),
            final_loss=r.final_loss,
            diagnostics=Diagnostics.from_proto(r.diagnostics),
        )


@dataclasses.dataclass(frozen=True)
class DeviceInfo:
    id: int
    platform: str
    kind: str


@dataclasses.dataclass(frozen=True)
class WorkerInfo:
    index: int
    pid: int
    devices: tuple[DeviceInfo, ...]
    busy: bool
    tasks_done: int
    address: str


@dataclasses.dataclass(frozen=True)
class ServerInfo:
    version: str
    jax_version: str
    backend: str
    devices: tuple[DeviceInfo, ...]
    solvers: tuple[str, ...]
    max_message_bytes: int
    workers: tuple[WorkerInfo, ...]
    cluster: str

    @classmethod
    def from_proto(cls, r) -> "ServerInfo":
        def devices(ds):
            return tuple(DeviceInfo(d.id, d.platform, d.kind) for d in ds)

        return cls(
            r.version, r.jax_version, r.backend, devices(r.devices),
            tuple(r.solvers), r.max_message_bytes,
            tuple(WorkerInfo(w.index, w.pid, devices(w.devices), w.busy, w.tasks_done, w.address)
                  for w in r.workers),
            r.cluster,
        )


# -- Var-RUOT ----------------------------------------------------------------------------


def _array(message, field):
    return decode(getattr(message, field), field) if message.HasField(field) else None


@dataclasses.dataclass(frozen=True)
class RuotHoldOut:
    """How a fit predicts a snapshot it did not see, at `time`: exact W1 of its predicted
    population to the held-out cells (`w1`), beside the W1 between two random halves of
    those cells (`noise_floor`) and that of the balanced McCann interpolation between
    the neighbouring snapshots (`interpolation_w1`); masses relative to the first
    snapshot's, predicted and observed."""

    time: float
    w1: float
    noise_floor: float
    interpolation_w1: float
    predicted_mass: float
    observed_mass: float

    @classmethod
    def from_proto(cls, r) -> "RuotHoldOut":
        return cls(r.time, r.w1, r.noise_floor, r.interpolation_w1, r.predicted_mass, r.observed_mass)


@dataclasses.dataclass(frozen=True)
class RuotFitResult:
    """A finished fit: the stored model's id ("" when cancelled), the model itself,
    the mean losses of every block (blocks, len(loss_names)), how training went
    (`diagnostics.iterations` are optimiser steps, `.error` the final total loss) and
    a `RuotHoldOut` for each held-out time, in the order asked."""

    model_id: str
    model: RuotExport
    loss_history: np.ndarray
    loss_names: tuple[str, ...]
    final_losses: dict[str, float]
    diagnostics: Diagnostics
    hold_out: tuple[RuotHoldOut, ...] = ()

    @property
    def status(self) -> str:
        return self.model.status

    @classmethod
    def from_proto(cls, reply: ruot_pb2.RUOTFitResponse) -> "RuotFitResult":
        model = RuotExport.from_proto(reply.model, model_id=reply.model_id)
        names = tuple(reply.loss_names)
        final = {name: reply.final_losses[name] for name in names if name in reply.final_losses}  # in order
        return cls(reply.model_id, model, _array(reply, "loss_history"), names, final,
                   Diagnostics.from_proto(reply.diagnostics), tuple(RuotHoldOut.from_proto(r) for r in reply.hold_out))


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
