"""What client calls return: frozen dataclasses of numpy arrays and plain values."""

from __future__ import annotations

import dataclasses

import numpy as np

from monge.client.tensors import decode
from monge.v1 import diagnostics_pb2, exact_pb2, tensor_pb2


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


@dataclasses.dataclass(frozen=True)
class SinkhornResult:
    """Entropic OT solution. `cost` is <P, C>; f, g are KL-convention potentials:
    P = diag(a) exp((f + g - C) / epsilon) diag(b)."""

    cost: float
    objective: float
    f: np.ndarray
    g: np.ndarray
    marginal_error: float
    plan: np.ndarray | None
    diagnostics: Diagnostics
    newton: NewtonStatistics | None = None  # set for method="sns"

    @property
    def converged(self) -> bool:
        return self.diagnostics.converged

    @property
    def iterations(self) -> int:
        return self.diagnostics.iterations

    @property
    def message(self) -> str:
        return self.diagnostics.message

    @classmethod
    def from_proto(cls, r) -> "SinkhornResult":
        return cls(
            cost=r.cost,
            objective=r.objective,
            f=decode(r.f, "f"),
            g=decode(r.g, "g"),
            marginal_error=r.marginal_error,
            plan=decode(r.plan, "plan") if r.HasField("plan") else None,
            diagnostics=Diagnostics.from_proto(r.diagnostics),
            newton=NewtonStatistics.from_proto(r.newton) if r.HasField("newton") else None,
        )


@dataclasses.dataclass(frozen=True)
class ExactTransportResult:
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

    @property
    def converged(self) -> bool:
        """True when the plan is optimal."""
        return self.diagnostics.converged

    @property
    def message(self) -> str:
        return self.diagnostics.message

    @classmethod
    def from_proto(cls, r) -> "ExactTransportResult":
        return cls(
            cost=r.cost,
            distance=r.distance if r.HasField("distance") else None,
            plan=sparse_plan(r.plan),
            f=decode(r.f, "f") if r.HasField("f") else None,
            g=decode(r.g, "g") if r.HasField("g") else None,
            marginal_error=r.marginal_error,
            method=exact_pb2.ExactMethod.Name(r.method).removeprefix("EXACT_METHOD_").lower(),
            pivot_cap=r.pivot_cap,
            diagnostics=Diagnostics.from_proto(r.diagnostics),
        )


@dataclasses.dataclass(frozen=True)
class SparsityConstrainedResult:
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

    @property
    def converged(self) -> bool:
        return self.diagnostics.converged

    @property
    def iterations(self) -> int:
        return self.diagnostics.iterations

    @property
    def message(self) -> str:
        return self.diagnostics.message

    @classmethod
    def from_proto(cls, r) -> "SparsityConstrainedResult":
        return cls(
            plan=sparse_plan(r.plan),
            cost=r.cost,
            objective=r.objective,
            dual_objective=r.dual_objective,
            marginal_error=r.marginal_error,
            max_nonzeros_per_column=r.max_nonzeros_per_column,
            alpha=decode(r.alpha, "alpha") if r.HasField("alpha") else None,
            beta=decode(r.beta, "beta") if r.HasField("beta") else None,
            support_iterations=r.support_iterations,
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
