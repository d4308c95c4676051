"""Entropic optimal transport (Sinkhorn): the family's public face.

`solve(problem, config)` is the jit-compiled core (`solver`); `sinkhorn(x, y, ...)` the
convenience entry with the client's keywords; `solve_batch` many problems at once
(`batch`); `sinkhorn_divergence` the debiased divergence (`divergence`). The iterations'
building blocks live in `ops`, the adaptive over-relaxation in `overrelaxation` and the
implicit differentiation in `implicit`.
"""

from monge.solvers.problem import OTProblem, make_problem, pad_problem, power_of_two_bucket, size_bucket
from monge.solvers.sinkhorn import implicit, ops, overrelaxation
from monge.solvers.sinkhorn.batch import default_vectorization, solve_batch
from monge.solvers.sinkhorn.divergence import (
    SinkhornDivergenceOutput, divergence_term, divergence_weights, sinkhorn_divergence,
)
from monge.solvers.sinkhorn.solver import (
    METHODS, OVERRELAXATION, STALL_PATIENCE, ScaledPotentials, SinkhornConfig, SinkhornOutput, sinkhorn, solve,
)

__all__ = [
    "METHODS", "OVERRELAXATION", "STALL_PATIENCE", "OTProblem", "ScaledPotentials", "SinkhornConfig",
    "SinkhornDivergenceOutput", "SinkhornOutput", "default_vectorization", "divergence_term", "divergence_weights",
    "implicit", "make_problem", "ops", "overrelaxation", "pad_problem", "power_of_two_bucket", "sinkhorn",
    "sinkhorn_divergence", "size_bucket", "solve", "solve_batch",
]
