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
import time
import traceback
import uuid

from monge.server.errors import OK
from monge.server.runtime.killable import received
from monge.server.runtime.shared_bytes import share

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


class _StopFlag:
    """`is_set()` is true when the parent cancelled the task with this sequence number,
    or when the parent is gone (killed: nobody is left to want the answer) or closing.
    `give_way()` (top-level tasks only: the calls it runs do not yield in turn) runs the
    higher-priority calls the parent sends when it asked this task to give way."""

    def __init__(self, runner: "_Runner", sequence: int, may_yield: bool):
        self._runner, self._sequence, self._may_yield = runner, sequence, may_yield

    def is_set(self) -> bool:
        runner = self._runner
        return runner.cancelled.value == self._sequence or runner.closing or os.getppid() != runner.parent

    def give_way(self) -> float:
        if not self._may_yield or self._runner.yield_wanted.value != self._sequence:
            return 0.0
        return self._runner.host_while_yielded(self._sequence)


@dataclasses.dataclass
class _Runner:
    """One worker's loop: tasks from `inbox`, outcomes to `outbox`. Messages in: a task
    `(sequence, kind, payload, owner)`, `("resume", sequence)` after a give-way, or None
    (close). Out: ("progress", sequence, fields), ("yielded", sequence), ("done", sequence,
    outcome)."""

    inbox: object
    outbox: object
    cancelled: object  # shared int: the sequence number to stop
    yield_wanted: object  # shared int: the sequence number asked to give way
    parent: int
    limits: object
    closing: bool = False

    def serve(self) -> None:
        for sequence, kind, payload, owner in received(self.inbox):
            if not self.run(sequence, kind, payload, owner, may_yield=True) or self.closing:
                return

    def run(self, sequence, kind, payload, owner, *, may_yield: bool) -> bool:
        """Run one task and send its outcome; False when the parent is gone."""

        def progress(**fields):
            try:
                self.outbox.send(("progress", sequence, fields))
            except OSError:  # the parent is gone; the stop flag ends the solve
                pass

        compiled_before = compile_count()
        outcome = execute(kind, payload, _StopFlag(self, sequence, may_yield), progress, self.limits, owner)
        outcome = dataclasses.replace(outcome, compiles=compile_count() - compiled_before)
        try:
            # A large reply goes through shared memory: far faster than the pipe.
            self.outbox.send(("done", sequence, dataclasses.replace(outcome, response=share(outcome.response))))
        except OSError:
            log.warning("the server went away; worker exiting")
            return False
        return True

    def host_while_yielded(self, sequence: int) -> float:
        """Run what the parent sends until it says to resume task `sequence`."""
        started = time.perf_counter()
        try:
            self.outbox.send(("yielded", sequence))
        except OSError:
            return 0.0
        for message in received(self.inbox):
            if message[0] == "resume":
                return time.perf_counter() - started
            if not self.run(*message, may_yield=False):
                break
        self.closing = True  # the parent closed (or went away) while this task was yielded
        return time.perf_counter() - started


def process_main(index: int, env: dict, inbox, outbox, cancelled, yield_wanted, limits, cache_dir) -> None:
    """Entry point of a spawned worker process: one device, one task at a time (and, while
    a task gives way, the calls it gave way to).

    `inbox` and `outbox` are this worker's own pipe ends (one writer each, so a worker
    killed mid-write cannot block the others); `cancelled` holds the sequence number of
    the task the parent wants stopped, `yield_wanted` that of the task it wants to give way."""
    parent = os.getppid()
    os.environ.update(env)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s worker-{index} %(levelname)s: %(message)s")
    try:
        configure_jax(cache_dir)
        outbox.send(("ready", os.getpid(), devices()))
    except Exception:  # noqa: BLE001 - a worker that cannot start says so and exits
        outbox.send(("failed", os.getpid(), traceback.format_exc()))
        return
    _Runner(inbox, outbox, cancelled, yield_wanted, parent, limits).serve()
