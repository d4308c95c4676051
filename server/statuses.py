"""`monge.solvers.Status` on the wire: the one table per enum of the schema."""

from monge.solvers.status import Status
from monge.v1 import diagnostics_pb2, pfode_pb2

# Iterative solvers (Sinkhorn, SNS, exact, sparsity-constrained): SolverDiagnostics.status.
SOLVER_STATUS = {
    Status.CONVERGED: diagnostics_pb2.SOLVER_STATUS_CONVERGED,
    Status.MAX_ITERATIONS: diagnostics_pb2.SOLVER_STATUS_MAX_ITERATIONS,
    Status.DIVERGED: diagnostics_pb2.SOLVER_STATUS_DIVERGED,
    Status.CANCELLED: diagnostics_pb2.SOLVER_STATUS_CANCELLED,
    Status.STALLED: diagnostics_pb2.SOLVER_STATUS_STALLED,
}

# Integrations (probability-flow sampling and likelihoods): ProbabilityFlowDiagnostics.status.
SAMPLE_STATUS = {
    Status.CONVERGED: pfode_pb2.SAMPLE_STATUS_SUCCESS,
    Status.MAX_ITERATIONS: pfode_pb2.SAMPLE_STATUS_MAX_STEPS,
    Status.DIVERGED: pfode_pb2.SAMPLE_STATUS_NONFINITE,
    Status.FAILED: pfode_pb2.SAMPLE_STATUS_SOLVER_FAILED,
    Status.CANCELLED: pfode_pb2.SAMPLE_STATUS_CANCELLED,
}


def solver_status(status: int) -> int:
    return SOLVER_STATUS[Status(int(status))]


def sample_status(status: int) -> int:
    return SAMPLE_STATUS[Status(int(status))]
