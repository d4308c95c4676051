"""What client calls return: frozen dataclasses of numpy arrays and plain values."""

from __future__ import annotations

import dataclasses

import numpy as np

from monge.client.tensors import decode
from monge.v1 import diagnostics_pb2


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
