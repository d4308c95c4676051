"""The one status enumeration of every solver, and its readable sentences.

Iterative OT solvers stop CONVERGED, at MAX_ITERATIONS, DIVERGED, CANCELLED or STALLED;
an integration (probability-flow sampling, likelihoods) reads them as: integrated to
t_end (CONVERGED), out of steps (MAX_ITERATIONS), non-finite (DIVERGED), or FAILED.
The service maps them to the wire in one table (server/statuses.py).
"""

from __future__ import annotations

import enum


class Status(enum.IntEnum):
    """Why an iterative solver stopped. Stored as an int32 array under jit."""

    CONVERGED = 0
    MAX_ITERATIONS = 1
    DIVERGED = 2  # the error became NaN or infinite
    CANCELLED = 3  # stopped from outside (deadline or cancellation), between blocks
    STALLED = 4  # the error stopped decreasing above the threshold (see `loop.is_stalled`)
    FAILED = 5  # another failure the solver reported (an ODE solver's error)

    @property
    def message(self) -> str:
        return _MESSAGES[self]


_MESSAGES = {
    Status.CONVERGED: "converged: the error fell below the threshold",
    Status.MAX_ITERATIONS: "not converged: the iteration cap was reached before the threshold",
    Status.DIVERGED: "diverged: the error became NaN or infinite "
    "(epsilon may be too small for this precision)",
    Status.CANCELLED: "cancelled before convergence",
    Status.FAILED: "failed: the solver reported an error",
    Status.STALLED: "not converged: the error stopped decreasing before the threshold "
    "(a precision floor? float32 cannot reach a tight threshold on large problems)",
}


def status_message(status: int) -> str:
    """A readable sentence for a status code returned by a solver."""
    return Status(int(status)).message


_SAMPLE_MESSAGES = {
    Status.CONVERGED: "success: integrated to t_end",
    Status.MAX_ITERATIONS: "stopped: the adaptive solver reached max_steps before t_end",
    Status.DIVERGED: "failed: the state became NaN or infinite",
    Status.FAILED: "failed: the ODE solver reported an error",
    Status.CANCELLED: "cancelled before t_end",
}


def sample_message(status: int) -> str:
    """The sentence for the status of an integration (sampling or a likelihood)."""
    return _SAMPLE_MESSAGES[Status(int(status))]
