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


def setting(default=dataclasses.MISSING, *, help: str, flag: str | None = None, unit: float = 1,
            default_factory=dataclasses.MISSING, shown_default: str | None = None):
    """A ServerConfig field that is also a `monge serve` flag. `help` says what it sets;
    the flag is the field's name with dashes unless `flag` names another one (in `unit`s:
    the field holds the flag's value times `unit`, e.g. MiB -> bytes)."""
    metadata = {"help": help, "flag": flag, "unit": unit, "shown_default": shown_default}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """Every setting of the server, with its default; each field with help is a
    `monge serve` flag (`add_flags`, `from_flags`), so a default is stated here only."""

    host: str = setting("127.0.0.1", help="address to listen on")
    port: int = setting(50051, help="port to listen on (0 picks a free one)")
    max_message_bytes: int = setting(512 * MIB, flag="--max-message-mb", unit=MIB,
                                     help="largest request or response, both directions, in MiB")
    max_points: int = setting(10_000_000, help="most points in one measure (n and m each; rows and columns of "
                                               "a cost matrix), for every solver call")
    max_dense_elements: int = setting(100_000_000, help="largest n * m for which a dense cost matrix or plan "
                                                        "is built")
    max_request_memory_bytes: int = setting(
        4096 * MIB, flag="--max-request-memory-mb", unit=MIB,
        help="most memory (MiB) one solver call may need on its worker, estimated from its sizes before it runs "
             "(server/limits.py); a Sinkhorn call on points whose dense cost would not fit runs online (cost "
             "in blocks) instead, other calls over it are refused; also caps a dynamic batch")
    max_iterations: int = setting(1_000_000, help="largest iteration cap a request may ask for (Sinkhorn and "
                                                  "sparsity iterations, probability-flow steps, likelihood "
                                                  "solver steps, FedWaD rounds)")
    max_samples: int = setting(10_000_000, help="most samples or points one probability-flow request may ask "
                                                "for or send (sampling, likelihoods, training data)")
    max_training_steps: int = setting(1_000_000, help="most optimiser steps of a training job item (score "
                                                      "models, Var-RUOT fits); also caps report_every")
    max_training_seconds: float = setting(24 * 3600.0, help="longest a training item may run on its worker, "
                                                            "checked before every step; over it the item fails "
                                                            "RESOURCE_EXHAUSTED and nothing is stored")
    max_exported_model_bytes: int = setting(
        64 * MIB, flag="--max-exported-model-mb", unit=MIB,
        help="largest jax.export artifact (MiB) a probability-flow request may carry as its network "
             "(ProbabilityFlowModel.exported); the request's message must fit --max-message-mb too")
    max_trajectory_steps: int = setting(100_000, help="most time steps of one simulated Var-RUOT trajectory")
    max_trajectory_elements: int = setting(100_000_000, help="most values (steps x particles x dimension) of "
                                                             "one trajectory (Var-RUOT, probability-flow "
                                                             "return_trajectory)")
    max_job_items: int = setting(10_000, help="most items in one job, and problems in one SinkhornBatch call")
    grace_seconds: float = setting(10.0, flag="--grace", help="seconds in-flight calls may finish after "
                                                              "SIGTERM or SIGINT")
    workers: int | None = setting(None, help="worker processes", shown_default="one per GPU, or one CPU worker")
    queue_limit: int = setting(64, help="solver calls waiting for a worker before RESOURCE_EXHAUSTED")
    priority_levels: int = setting(2, help="queue priority levels a request may name (1 is served first); calls "
                                           "default to 1, job items to the lowest")
    batch_share: float = setting(0.2, help="a running lower-priority item (a training, a job's chunked solve) "
                                           "gives its worker to waiting higher-priority calls between its steps "
                                           "but keeps at least this share of the worker's time (0: none)")
    max_attempts: int = setting(2, help="runs of a call whose worker died, before it fails")
    data_dir: str = setting(default_factory=default_data_dir, shown_default="$XDG_DATA_HOME/monge or "
                            "~/.local/share/monge", help="job database, results and (unless "
                            "--compile-cache-dir) the JAX compilation cache")
    compile_cache_dir: str | None = setting(None, help="the JAX compilation cache", shown_default="DATA_DIR/jax-cache")
    cluster: str | None = setting(None, help="a Dask scheduler address (tcp://HOST:8786): work goes there "
                                             "instead of local workers")
    job_retention_seconds: float = setting(7 * 24 * 3600.0, help="how long finished jobs and their results "
                                                                 "are kept")
    max_unfinished_jobs: int = setting(10_000, help="queued or running jobs before submissions get "
                                                    "RESOURCE_EXHAUSTED")
    warmup: int = setting(0, help="before serving, compile the Sinkhorn programs of default-settings calls on "
                                  "n = m up to this many points (d = 2, float32 and float64) on every worker; "
                                  "0: none")
    max_batch_size: int | None = setting(None, flag="--max-batch", shown_default="32 on GPU workers, off on CPU",
                                         help="most concurrent small Sinkhorn calls merged into one vmapped call "
                                              "(dynamic batching; 1: off)")
    max_batch_delay_seconds: float = setting(0.002, flag="--batch-delay-ms", unit=1e-3,
                                             help="longest (ms) an idle server holds a call to batch it")
    metrics_port: int | None = setting(None, help="serve Prometheus metrics over HTTP on this port",
                                       shown_default="off")
    metrics_host: str = setting("127.0.0.1", help="address of the metrics endpoint; it has no TLS and no "
                                                  "tokens, so any other than loopback needs --insecure")
    max_jobs_per_owner: int = setting(1_000, help="queued or running jobs of one owner (token) before its "
                                                  "submissions get RESOURCE_EXHAUSTED (with auth off everyone "
                                                  "is one owner)")
    tls_cert: str | None = setting(None, help="PEM certificate (chain); with --tls-key the server speaks only TLS")
    tls_key: str | None = setting(None, help="PEM private key of --tls-cert")
    token_file: str | None = setting(None, help="bearer tokens, one a line: TOKEN or NAME:TOKEN (also "
                                                "$MONGE_TOKENS, comma-separated; see server/auth.py)")
    # More token entries: the MONGE_TOKENS variable, or tests. Not a flag (tokens stay out of `ps`).
    tokens: tuple[str, ...] = ()
    insecure: bool = setting(False, help="allow a host other than loopback without TLS and tokens")

    @classmethod
    def add_flags(cls, parser) -> None:
        """Add one `--flag` per setting to an argparse parser; unset flags keep the defaults above."""
        for field in _flag_fields():
            kind = field.type.replace(" | None", "")
            meta = field.metadata
            help_text = meta["help"]
            default = meta["shown_default"]
            if default is None and field.default is not dataclasses.MISSING and field.default is not None:
                default = _in_flag_units(field.default, meta["unit"])
            if default is not None and kind != "bool":
                help_text += f" (default: {default})"
            if kind == "bool":
                parser.add_argument(_flag_name(field), dest=field.name, action="store_true", default=None,
                                    help=help_text)
            else:
                parser.add_argument(_flag_name(field), dest=field.name, default=None, help=help_text,
                                    metavar=_flag_name(field)[2:].replace("-", "_").upper(), type={"int": int, "float": float, "str": str}[kind])

    @classmethod
    def from_flags(cls, args, **more) -> "ServerConfig":
        """The settings the parsed flags ask for (ValueError for bad ones); `more` adds fields that are not flags."""
        values = {}
        for field in _flag_fields():
            value = getattr(args, field.name, None)
            if value is not None:
                unit = field.metadata["unit"]
                values[field.name] = value * unit if unit != 1 else value
        return cls(**values, **more)

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
        if self.max_exported_model_bytes < 1:
            raise ValueError(f"max_exported_model_bytes must be at least 1, got {self.max_exported_model_bytes}")
        if self.workers is not None and self.workers < 1:
            raise ValueError("workers must be at least 1")
        if (self.max_batch_size is not None and self.max_batch_size < 1) or self.max_batch_delay_seconds < 0:
            raise ValueError("max_batch_size must be at least 1, max_batch_delay_seconds at least 0")
        if self.queue_limit < 1 or self.max_attempts < 1:
            raise ValueError("queue_limit and max_attempts must be at least 1")
        if self.priority_levels < 1:
            raise ValueError(f"priority_levels must be at least 1, got {self.priority_levels}")
        if not 0 <= self.batch_share <= 1:
            raise ValueError(f"batch_share must be in [0, 1], got {self.batch_share}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be at least 0, got {self.warmup}")
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


def _flag_fields():
    return [field for field in dataclasses.fields(ServerConfig) if "help" in field.metadata]


def _flag_name(field) -> str:
    return field.metadata["flag"] or "--" + field.name.replace("_", "-")


def _in_flag_units(value, unit):
    shown = value / unit if unit != 1 else value
    return int(shown) if isinstance(shown, float) and shown.is_integer() and unit != 1 else shown
