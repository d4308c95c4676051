"""What runs inside a worker process: set up one JAX device, then execute solver calls.

`execute` is shared by the local process pool and Dask workers. It never raises:
it returns either the serialized response or an `Outcome` describing the error, so
that errors cross process boundaries as plain data.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import traceback
import uuid

from monge.server.errors import OK
from monge.server.runtime.killable import received

log = logging.getLogger("monge.worker")

_configured = False
_compiles = 0
BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The result of one call: `response` bytes, or a status code with its message."""

    response: bytes | None = None
    code: int = OK  # a gRPC status code (server/errors.py names them)
    message: str = ""
    violations: tuple[tuple[str, str], ...] = ()
    # NOT_FOUND: the request field that named the missing object (its message starts
    # with it), so that a job can say which item's field it was.
    not_found: tuple[str, str] | None = None
    compiles: int = 0  # XLA compilations this call caused (persistent-cache misses)

    @property
    def ok(self) -> bool:
        return self.code == OK


def configure_jax(cache_dir: str | None) -> None:
    """Once per process: float64 on request, and the persistent compilation cache."""
    global _configured
    if _configured:
        return
    import jax

    jax.config.update("jax_enable_x64", True)
    jax.monitoring.register_event_duration_secs_listener(_count_compiles)
    if cache_dir:
        pathlib.Path(cache_dir).mkdir(parents=True, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", cache_dir)
        # Cache everything that took noticeable time to compile; solver programs do.
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    _configured = True


def _count_compiles(event: str, duration: float, **_) -> None:
    global _compiles
    if event == BACKEND_COMPILE_EVENT:
        _compiles += 1


def compile_count() -> int:
    """XLA compilations in this process since `configure_jax`."""
    return _compiles


def devices() -> list[dict]:
    import jax

    return [dict(id=d.id, platform=d.platform, kind=d.device_kind) for d in jax.devices()]


def execute(kind: str, payload: bytes, stop, progress, limits, owner: str = "") -> Outcome:
    """Parse, run and encode one solver call named `kind` (see registry.CALLS) for the
    caller `owner` (whose trained models it may read, and as whose it stores one)."""
    from monge.server.runtime import sinkhorn_batch
    from monge.server.errors import InvalidArgument, LimitExceeded, NotFound, worker_code
    from monge.server.registry import CALLS

    try:
        if kind == sinkhorn_batch.KIND:
            return Outcome(response=sinkhorn_batch.run_batch(payload, limits, stop, progress))
        call_type = CALLS[kind]
        module = call_type.load()
        request = call_type.request_type.FromString(payload)
        call = call_type.parse(request, limits, owner)
        result = module.run(call, stop, progress)
        return Outcome(response=module.encode_response(result).SerializeToString())
    except InvalidArgument as error:
        return Outcome(code=worker_code(error), message=str(error), violations=tuple(error.violations))
    except NotFound as error:  # a stored model named by the request has gone
        return Outcome(code=worker_code(error), message=str(error), not_found=(error.field, error.description))
    except LimitExceeded as error:
        return Outcome(code=worker_code(error), message=str(error))
    except Exception as error:  # noqa: BLE001 - reported as INTERNAL with an id, never a traceback
        error_id = uuid.uuid4().hex[:12]
        log.error("internal error %s in %s:\n%s", error_id, kind, traceback.format_exc())
        return Outcome(code=worker_code(error), message=f"internal error (id {error_id}); see the server log")


class _CancelFlag:
    """`is_set()` is true when the parent cancelled the task with this sequence number,
    or when the parent is gone (killed: nobody is left to want the answer)."""

    def __init__(self, shared, sequence, parent: int):
        self._shared, self._sequence, self._parent = shared, sequence, parent

    def is_set(self) -> bool:
        return self._shared.value == self._sequence or os.getppid() != self._parent


def process_main(index: int, env: dict, inbox, outbox, cancelled, limits, cache_dir) -> None:
    """Entry point of a spawned worker process: one device, one task at a time.

    `inbox` and `outbox` are this worker's own pipe ends (one writer each, so a worker
    killed mid-write cannot block the others); `cancelled` holds the sequence number of
    the task the parent wants stopped."""
    parent = os.getppid()
    os.environ.update(env)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s worker-{index} %(levelname)s: %(message)s")
    try:
        configure_jax(cache_dir)
        outbox.send(("ready", os.getpid(), devices()))
    except Exception:  # noqa: BLE001 - a worker that cannot start says so and exits
        outbox.send(("failed", os.getpid(), traceback.format_exc()))
        return
    for sequence, kind, payload, owner in received(inbox):

        def progress(**fields):
            try:
                outbox.send(("progress", sequence, fields))
            except OSError:  # the parent is gone; the stop flag ends the solve
                pass

        compiled_before = compile_count()
        outcome = execute(kind, payload, _CancelFlag(cancelled, sequence, parent), progress, limits, owner)
        outcome = dataclasses.replace(outcome, compiles=compile_count() - compiled_before)
        try:
            outbox.send(("done", sequence, outcome))
        except OSError:
            log.warning("the server went away; worker exiting")
            return
