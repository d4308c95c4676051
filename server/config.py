"""The server's settings, one frozen object built from the command line or by tests."""

from __future__ import annotations

import dataclasses
import os
import pathlib

from monge.server.auth import BindPolicy, metrics_bind_refusal

MIB = 1 << 20


def default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or pathlib.Path.home() / ".local" / "share"
    return str(pathlib.Path(base) / "monge")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """host/port: where to listen (port 0 picks a free one).
    max_message_bytes: largest request or response, both directions.
    max_points: most points in one measure (n and m each; rows and columns of a cost
        matrix), for every solver call.
    max_dense_elements: largest n * m for which a dense cost matrix or plan is built.
    max_request_memory_bytes: most memory one solver call may need on its worker, as
        estimated from its sizes before it runs (`server/limits.py`). A Sinkhorn call on
        points whose dense cost would not fit runs online (cost computed in blocks)
        instead; other calls over it are refused. Also caps a dynamic batch.
    max_iterations: largest iteration cap a request may ask for (Sinkhorn and
        sparsity iterations, probability-flow steps, likelihood solver steps, FedWaD rounds).
    max_samples: most samples (or points) one probability-flow request may ask for or send
        (sampling, likelihoods, score-model training data).
    max_training_steps: most optimiser steps of a training job item (score-model
        training, Var-RUOT fits); also caps report_every.
    max_training_seconds: longest a training item may run on its worker; checked before
        every optimiser step, as a cancel is. Over it, the item fails RESOURCE_EXHAUSTED
        and nothing is stored.
    max_trajectory_steps: most time steps of one simulated Var-RUOT trajectory (QueryRUOT:
        trajectories, mass, action, population; dt apart from the first snapshot).
    max_trajectory_elements: most values one trajectory may hold (time steps x particles
        x dimension): Var-RUOT simulations, and probability-flow `return_trajectory`.
    max_job_items: most items in one job, and most problems in one SinkhornBatch call.
    grace_seconds: how long in-flight calls may finish after SIGTERM/SIGINT.
    workers: worker processes; None means one per GPU, or one CPU worker.
    queue_limit: solver calls waiting for a worker before RESOURCE_EXHAUSTED.
    max_attempts: runs of a call whose worker died, before it fails.
    data_dir: job database, results and (unless compile_cache_dir is set) the JAX
        compilation cache.
    cluster: a Dask scheduler address; work goes there instead of local workers.
    job_retention_seconds: how long finished jobs and their results are kept.
    max_unfinished_jobs: queued or running jobs before submissions get RESOURCE_EXHAUSTED.
    max_batch_size: most concurrent small Sinkhorn requests merged into one vmapped
        call (dynamic batching); 1 turns batching off; None: 32 when the workers have
        GPUs, off on CPU-only workers (where batching does not pay).
    max_batch_delay_seconds: longest an idle server holds a request to batch it.
    metrics_port: serve Prometheus metrics over HTTP on this port; None: off.
    metrics_host: where the metrics endpoint listens (default loopback). It has no TLS
        and no tokens, so any other address needs `insecure`, even when the gRPC port
        has TLS and tokens.
    max_jobs_per_owner: queued or running jobs of one owner (token) before its
        submissions get RESOURCE_EXHAUSTED; with auth off everyone is one owner.
    tls_cert, tls_key: PEM files; given both, the server speaks only TLS.
    token_file: bearer tokens, one a line (`token` or `name:token`); see server/auth.py.
    tokens: more token entries (the `MONGE_TOKENS` variable, or tests).
    insecure: allow a non-loopback host without TLS and tokens.
    """

    host: str = "127.0.0.1"
    port: int = 50051
    max_message_bytes: int = 512 * MIB
    max_points: int = 10_000_000
    max_dense_elements: int = 100_000_000
    max_request_memory_bytes: int = 4096 * MIB
    max_iterations: int = 1_000_000
    max_samples: int = 10_000_000
    max_training_steps: int = 1_000_000
    max_training_seconds: float = 24 * 3600.0
    max_trajectory_steps: int = 100_000
    max_trajectory_elements: int = 100_000_000
    max_job_items: int = 10_000
    grace_seconds: float = 10.0
    workers: int | None = None
    queue_limit: int = 64
    max_attempts: int = 2
    data_dir: str = dataclasses.field(default_factory=lambda: default_data_dir())
    compile_cache_dir: str | None = None
    cluster: str | None = None
    job_retention_seconds: float = 7 * 24 * 3600.0
    max_unfinished_jobs: int = 10_000
    max_batch_size: int | None = None
    max_batch_delay_seconds: float = 0.002
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    max_jobs_per_owner: int = 1_000
    tls_cert: str | None = None
    tls_key: str | None = None
    token_file: str | None = None
    tokens: tuple[str, ...] = ()
    insecure: bool = False

    @property
    def cache_dir(self) -> str:
        return self.compile_cache_dir or str(pathlib.Path(self.data_dir) / "jax-cache")

    def __post_init__(self):
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in [0, 65535], got {self.port}")
        if self.max_message_bytes < MIB:
            raise ValueError("max_message_bytes must be at least 1 MiB")
        counts = ("max_points", "max_dense_elements", "max_iterations", "max_samples", "max_training_steps",
                  "max_trajectory_steps", "max_trajectory_elements", "max_job_items")
        for name in counts:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.max_training_seconds > 0:
            raise ValueError(f"max_training_seconds must be positive, got {self.max_training_seconds}")
        if self.max_request_memory_bytes < MIB:
            raise ValueError("max_request_memory_bytes must be at least 1 MiB")
        if self.workers is not None and self.workers < 1:
            raise ValueError("workers must be at least 1")
        if (self.max_batch_size is not None and self.max_batch_size < 1) or self.max_batch_delay_seconds < 0:
            raise ValueError("max_batch_size must be at least 1, max_batch_delay_seconds at least 0")
        if self.queue_limit < 1 or self.max_attempts < 1:
            raise ValueError("queue_limit and max_attempts must be at least 1")
        if self.max_jobs_per_owner < 1:
            raise ValueError("max_jobs_per_owner must be at least 1")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("give both tls_cert and tls_key (--tls-cert, --tls-key), or neither")
        object.__setattr__(self, "tokens", tuple(self.tokens))
        refusal = BindPolicy(self.host, tls=self.tls, tokens=self.auth, insecure=self.insecure).refusal()
        if refusal:
            raise ValueError(refusal)
        if self.metrics_port is not None:
            refusal = metrics_bind_refusal(self.metrics_host, self.insecure)
            if refusal:
                raise ValueError(refusal)

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def auth(self) -> bool:
        """Whether bearer tokens are required (the tokens themselves are read at start)."""
        return bool(self.tokens or self.token_file)
