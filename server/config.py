"""The server's settings, one frozen object built from the command line or by tests."""

from __future__ import annotations

import dataclasses

MIB = 1 << 20


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """host/port: where to listen (port 0 picks a free one).
    max_message_bytes: largest request or response, both directions.
    solver_threads: threads running solver calls off the event loop.
    max_dense_elements: largest n * m for which a dense cost matrix or plan is built.
    max_iterations: largest iteration cap a request may ask for.
    grace_seconds: how long in-flight calls may finish after SIGTERM/SIGINT.
    """

    host: str = "127.0.0.1"
    port: int = 50051
    max_message_bytes: int = 512 * MIB
    solver_threads: int = 1
    max_dense_elements: int = 100_000_000
    max_iterations: int = 1_000_000
    grace_seconds: float = 10.0

    def __post_init__(self):
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in [0, 65535], got {self.port}")
        if self.max_message_bytes < MIB:
            raise ValueError("max_message_bytes must be at least 1 MiB")
        if self.solver_threads < 1:
            raise ValueError("solver_threads must be at least 1")
