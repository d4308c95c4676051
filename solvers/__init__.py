"""Monge's solvers: pure, jit-compiled functions of arrays and frozen configs.

No I/O and no gRPC here; the service and users' pipelines call the same functions.
"""

from monge.solvers.geometry import Geometry
from monge.solvers.loop import Status, status_message
from monge.solvers.sinkhorn import OTProblem, SinkhornConfig, SinkhornOutput, sinkhorn

__all__ = [
    "Geometry",
    "OTProblem",
    "SinkhornConfig",
    "SinkhornOutput",
    "Status",
    "sinkhorn",
    "status_message",
]
