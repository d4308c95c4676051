"""Send solver calls to a Dask distributed cluster instead of local worker processes.

`DaskExecutor` has the interface of `workers.WorkerPool` (start/close, capacity,
queue_depth, describe, `await run(kind, payload, progress)`), so the servicers and the
job manager do not know which one they use. What travels to the cluster is our own
module-level function `run_call` (pickled by reference, so the workers need monge
installed) with the request bytes; what comes back is a `worker.Outcome`. Dask does the
scheduling:

- a worker that dies mid-call has its calls rescheduled on another worker by the
  scheduler (up to its `distributed.scheduler.allowed-failures`, after which the call
  fails with KilledWorker, answered here as INTERNAL); a call that raised (a worker
  without monge, say) is retried `max_attempts - 1` times through `retries=`;
- calls ask for `resources={"GPU": 1}` when the cluster's workers advertise GPUs, so
  each GPU runs one call at a time;
- a cancelled call has its future cancelled (the scheduler releases it) and a
  `distributed.Event` named after the call set, which the running call polls between
  chunks of iterations, so its worker is freed at the next chunk;
- progress and "started"/"ended" notices come back as Dask events on a topic of this
  executor (`Worker.log_event`, `Client.subscribe_topic`): that is how the executor knows
  which worker runs what, for `monge info`.

A `WorkerPlugin` configures JAX once in every worker process, as soon as it joins
(float64 on request, the persistent compilation cache).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import numbers
import math
import os
import pathlib
import time
import uuid
from typing import Callable

import distributed
from distributed.client import FutureCancelledError

from monge.server.auth import ANONYMOUS
from monge.server.priority import INTERACTIVE
from monge.server.errors import INTERNAL, UNAVAILABLE, LimitExceeded, TaskFailed
from monge.server.runtime.worker import Outcome, compile_count, configure_jax, devices, execute

log = logging.getLogger("monge.server")

_REFRESH_SECONDS = 2.0
_CANCEL_EVENT_SECONDS = 30.0  # how long a cancel flag is kept for a call that never ends
_RECONNECT_SECONDS = 30.0  # how long a lost call waits for the scheduler to come back


def _cancel_event_name(task_id: str) -> str:
    return f"monge-cancel-{task_id}"


# -- what runs on the Dask workers ---------------------------------------------------


def _configure(cache_dir: str | None) -> None:
    """configure_jax, falling back to this machine's own data dir when the server's
    cache folder cannot be created here (a worker on another machine)."""
    try:
        configure_jax(cache_dir)
    except OSError:
        from monge.server.config import default_data_dir

        fallback = str(pathlib.Path(default_data_dir()) / "jax-cache")
        log.warning("cannot use the compile cache %s on this worker; using %s", cache_dir, fallback)
        configure_jax(fallback)


class JaxSetup(distributed.WorkerPlugin):
    """Configures JAX in each worker process when it joins (off the worker's event loop:
    importing JAX takes seconds and the worker must keep answering heartbeats)."""

    name = "monge-jax"

    def __init__(self, cache_dir: str | None):
        self.cache_dir = cache_dir

    async def setup(self, worker) -> None:
        await asyncio.to_thread(_configure, self.cache_dir)


async def worker_facts(cache_dir: str | None) -> dict:
    """Run on each worker by `Client.run`: its pid and JAX devices, for `monge info`."""

    def facts():
        _configure(cache_dir)
        return dict(pid=os.getpid(), devices=devices())

    return await asyncio.to_thread(facts)


class _ClusterStopFlag:
    """`is_set()` when the server set this call's cancel Event. A running solve asks
    often (a watched one about every 20 ms), and each reading is a round trip to the
    scheduler, so the Event is read at most every READ_SECONDS and the last answer
    given in between."""

    READ_SECONDS = 0.1

    def __init__(self, task_id: str):
        self._name = _cancel_event_name(task_id)
        self._event: distributed.Event | None = None
        self._read_at, self._set = -math.inf, False

    def is_set(self) -> bool:
        now = time.monotonic()
        if self._set or now - self._read_at < self.READ_SECONDS:
            return self._set
        self._read_at = now
        if self._event is None:
            self._event = distributed.Event(self._name)  # through this worker's client
        try:
            self._set = bool(self._event.is_set())
        except Exception:  # noqa: BLE001 - the scheduler is unreachable: keep solving
            log.warning("could not read the cancel flag %s", self._name, exc_info=True)
        return self._set


def _plain(fields: dict) -> dict:
    """Progress fields as msgpack-able numbers (a solver may report a NumPy or JAX
    scalar); a dict of named numbers (Var-RUOT's loss_terms) is kept as one; a field
    that is not a number or a string is left out."""
    plain = {}
    for name, value in fields.items():
        if value is None or isinstance(value, str):
            plain[name] = value
        elif isinstance(value, dict):
            plain[name] = _plain(value)
        elif isinstance(value, (bool, numbers.Integral)):
            plain[name] = int(value)
        else:
            try:
                plain[name] = float(value)
            except (TypeError, ValueError):
                continue
    return plain


def run_call(kind: str, payload: bytes, task_id: str, topic: str, limits, cache_dir: str | None,
             owner: str = ANONYMOUS):
    """The Dask task: one solver call, request bytes in; out: the worker's address, the
    `Outcome` (with the XLA compilations it caused) and the seconds it computed."""
    worker = distributed.get_worker()
    _configure(cache_dir)

    def notify(event: str, **fields):
        worker.log_event(topic, dict(task=task_id, event=event, address=worker.address, fields=_plain(fields)))

    notify("start")
    started, compiled_before = time.perf_counter(), compile_count()
    try:
        outcome = execute(kind, payload, _ClusterStopFlag(task_id), lambda **f: notify("progress", **f), limits,
                          owner)
    finally:
        notify("end")
    outcome = dataclasses.replace(outcome, compiles=compile_count() - compiled_before)
    return worker.address, outcome, time.perf_counter() - started


# -- the server side -----------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class _Call:
    task_id: str
    kind: str
    progress: Callable[[dict], None] | None
    future: distributed.Future | None = None
    submitted: float = dataclasses.field(default_factory=time.monotonic)


@dataclasses.dataclass(eq=False)
class _ClusterWorker:
    index: int
    address: str
    nthreads: int
    resources: dict
    pid: int | None = None
    devices: list = dataclasses.field(default_factory=list)
    tasks_done: int = 0
    asked: bool = False  # for its pid and devices


class DaskExecutor:
    """`await executor.run(kind, payload)` -> response bytes, computed on a Dask cluster;
    raises TaskFailed or LimitExceeded like the local pool."""

    def __init__(self, limits, *, cache_dir: str | None = None, address: str | None = None,
                 queue_limit: int | None = None, max_attempts: int | None = None):
        self._limits = limits
        self._address = address or limits.cluster
        self._queue_limit = queue_limit if queue_limit is not None else limits.queue_limit
        self._max_attempts = max_attempts if max_attempts is not None else limits.max_attempts
        self._cache_dir = cache_dir
        self._topic = f"monge-calls-{uuid.uuid4().hex}"
        self._client: distributed.Client | None = None
        self._calls: dict[str, _Call] = {}
        self._running: dict[str, str] = {}  # task id -> worker address, from the workers' notices
        self._cancelled: set[str] = set()  # task ids whose cancel Event is set
        self._workers: dict[str, _ClusterWorker] = {}
        self._indices = iter(range(1 << 30))
        self._background: set[asyncio.Task] = set()
        self._refresher: asyncio.Task | None = None
        self._closing = False
        self._stale = False  # the connection was lost since we last subscribed
        # on_task_done(kind, queued_seconds, compute_seconds, outcome): for metrics.
        self.on_task_done: Callable[[str, float, float, Outcome], None] | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self, timeout: float = 180.0) -> None:
        await self._connect(timeout=min(timeout, 30.0))
        try:
            await self._client.wait_for_workers(1, timeout=timeout)
        except (TimeoutError, asyncio.TimeoutError):
            await self._client.close()
            raise TimeoutError(f"no Dask worker joined {self._address} within {timeout:.0f} s") from None
        await self._refresh()
        self._refresher = asyncio.create_task(self._watch_forever())
        log.info("using the Dask cluster at %s: %d worker(s), %d call(s) at once%s", self._address,
                 len(self._workers), self.capacity, " (one per GPU)" if self._gpu else "")

    async def _connect(self, timeout: float) -> None:
        """A client of the scheduler, subscribed to our topic, with the JAX plugin in place
        (again after a scheduler restart: a new scheduler knows neither)."""
        if self._client is not None:
            await self._client.close()
        self._client = await distributed.Client(self._address, asynchronous=True, set_as_default=False,
                                                timeout=timeout)
        self._stale = False
        await self._subscribe()

    async def _subscribe(self) -> None:
        self._client.subscribe_topic(self._topic, self._on_event)
        await self._client.register_plugin(JaxSetup(self._cache_dir))

    @property
    def _connected(self) -> bool:
        return self._client is not None and self._client.status == "running"

    async def close(self, timeout: float = 10.0) -> None:
        self._closing = True
        if self._refresher is not None:
            self._refresher.cancel()
        calls = list(self._calls.values())
        for call in calls:
            self._cancel(call)
        if self._background:
            await asyncio.wait(list(self._background), timeout=timeout)
        # Give the cancelled calls a moment to notice their flags, then drop the flags.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(timeout, 5.0)
        while self._running and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if self._connected:
            for task_id in list(self._cancelled):
                await self._clear_cancel(task_id)
        if self._client is not None:
            await self._client.close(timeout=timeout)

    # -- what callers use ------------------------------------------------------------

    @property
    def _gpu(self) -> bool:
        return any(w.resources.get("GPU", 0) > 0 for w in self._workers.values())

    @property
    def capacity(self) -> int:
        """Calls that can run at once: one per advertised GPU, else one per worker thread."""
        if self._gpu:
            return sum(int(w.resources.get("GPU", 0)) for w in self._workers.values())
        return sum(w.nthreads for w in self._workers.values())

    @property
    def queue_depth(self) -> int:
        """Calls waiting for a free slot: those beyond what the cluster runs at once (the
        workers' "started" notices lag, so a call sent to an idle worker is not counted)."""
        return max(0, len(self._calls) - self.capacity)

    def describe(self) -> list[dict]:
        busy = set(self._running.values())
        return [
            dict(index=w.index, pid=w.pid, devices=w.devices, ready=w.pid is not None,
                 busy=w.address in busy, tasks_done=w.tasks_done, address=w.address)
            for w in self._workers.values()
        ]

    async def run(self, kind: str, payload: bytes, progress: Callable[[dict], None] | None = None,
                  owner: str = ANONYMOUS, *, parsed=None, priority: int = INTERACTIVE) -> bytes:
        """`parsed` (the call as the servicer parsed it) is not sent: the worker parses the
        bytes once in its own process. `priority` (1 first) becomes Dask's own task
        priority (higher runs first); a running task does not give way on Dask."""
        if self._closing:
            raise LimitExceeded("the server is shutting down", retry_after_seconds=5.0)
        if self.queue_depth >= self._queue_limit:
            raise LimitExceeded(
                f"the solver queue is full ({self._queue_limit} waiting); retry shortly",
                retry_after_seconds=1.0,
            )
        if not self._connected:
            raise LimitExceeded(f"the Dask scheduler at {self._address} is unreachable; retry shortly",
                                retry_after_seconds=5.0)
        call = _Call(uuid.uuid4().hex, kind, progress)
        self._calls[call.task_id] = call
        try:
            for attempt in range(1, self._max_attempts + 1):
                call.future = self._client.submit(
                    run_call, kind, payload, call.task_id, self._topic, self._limits, self._cache_dir, owner,
                    key=f"monge-{kind}-{call.task_id}-{attempt}", pure=False, retries=self._max_attempts - 1,
                    resources={"GPU": 1} if self._gpu else None, priority=-priority,
                )
                outcome = await self._outcome(call)
                if outcome is not None:
                    break
                # The scheduler connection was lost and the call with it: send it again
                # once the client is back (a new scheduler has none of our state).
                if attempt == self._max_attempts or not await self._reconnected(_RECONNECT_SECONDS):
                    outcome = Outcome(code=UNAVAILABLE, message=f"lost the Dask scheduler at {self._address} "
                                                       f"{attempt} time(s) while running this call; retry")
                    break
                log.warning("call %s lost with the scheduler connection; sending it again (attempt %d of %d)",
                            call.task_id, attempt + 1, self._max_attempts)
        except asyncio.CancelledError:
            self._cancel(call)
            raise
        finally:
            self._calls.pop(call.task_id, None)
        if not outcome.ok:
            raise TaskFailed(outcome)
        return outcome.response

    async def _outcome(self, call: _Call) -> Outcome | None:
        """Wait for the call; failures of the cluster become an Outcome with a status, and
        None means the scheduler connection was lost (the call may be sent again)."""
        try:
            address, outcome, computed = await call.future
        except FutureCancelledError as error:  # not us: the cluster dropped it
            log.error("the Dask cluster cancelled call %s: %s", call.task_id, error)
            return None
        except OSError as error:  # CommClosedError: the scheduler went away mid-wait
            log.warning("call %s: lost the connection to the Dask cluster (%s)", call.task_id, error)
            return None
        except distributed.KilledWorker as error:
            log.error("call %s: %s", call.task_id, error)
            return Outcome(code=INTERNAL, message="the Dask workers running this call died too many times; "
                                            "giving up")
        except Exception as error:  # noqa: BLE001 - the task itself raised on the worker
            error_id = uuid.uuid4().hex[:12]
            log.error("internal error %s: call %s failed on the Dask cluster", error_id, call.task_id,
                      exc_info=error)
            return Outcome(code=INTERNAL, message=f"internal error (id {error_id}); see the server log")
        worker = self._workers.get(address)
        if worker is not None:
            worker.tasks_done += 1
        if self.on_task_done is not None:
            queued = time.monotonic() - call.submitted - computed  # with the trips to and from the cluster
            self.on_task_done(call.kind, queued, computed, outcome)
        return outcome

    def _cancel(self, call: _Call) -> None:
        """Release the call's future and raise its cancel flag; the running call stops at
        its next chunk."""
        if call.future is None:
            return
        task = asyncio.get_running_loop().create_task(self._stop(call))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _stop(self, call: _Call) -> None:
        if not self._connected:
            return  # the scheduler dropped the call with the connection
        try:
            # The flag first: the call may have started without our hearing of it yet.
            self._cancelled.add(call.task_id)
            await distributed.Event(_cancel_event_name(call.task_id), client=self._client).set()
            await call.future.cancel()
        except Exception:  # noqa: BLE001 - a lost scheduler drops the call anyway
            log.warning("could not cancel call %s on the cluster", call.task_id, exc_info=True)
            return
        # A call that never starts sends no "end": drop its flag after a while regardless.
        asyncio.get_running_loop().call_later(_CANCEL_EVENT_SECONDS, self._forget_cancel, call.task_id)

    def _forget_cancel(self, task_id: str) -> None:
        if task_id in self._cancelled and not self._closing:
            task = asyncio.get_running_loop().create_task(self._clear_cancel(task_id))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _clear_cancel(self, task_id: str) -> None:
        if task_id not in self._cancelled:
            return
        self._cancelled.discard(task_id)
        self._running.pop(task_id, None)  # a cancelled call has ended by now
        try:
            await distributed.Event(_cancel_event_name(task_id), client=self._client).clear()
        except Exception:  # noqa: BLE001 - the scheduler forgets it when it restarts
            log.debug("could not clear the cancel flag of %s", task_id, exc_info=True)

    # -- notices from the workers, on the event loop ---------------------------------

    def _on_event(self, event) -> None:
        _, message = event
        task_id, kind = message["task"], message["event"]
        if kind == "start":
            self._running[task_id] = message["address"]
        elif kind == "progress":
            call = self._calls.get(task_id)
            if call is not None and call.progress is not None:
                call.progress(message["fields"])
        elif kind == "end":
            if self._running.get(task_id) == message["address"]:
                del self._running[task_id]
            if task_id in self._cancelled and not self._closing:
                self._forget_cancel(task_id)

    # -- the cluster's workers -------------------------------------------------------

    async def _reconnected(self, timeout: float) -> bool:
        """Wait for the client to be connected again, then subscribe again."""
        self._stale = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._connected and loop.time() < deadline:
            await asyncio.sleep(0.1)
        await self._resubscribe()
        return self._connected

    async def _resubscribe(self) -> None:
        """After a lost connection the scheduler (perhaps a new one) has forgotten our topic
        and plugin; the client reconnects by itself but does not tell them again."""
        if self._connected and self._stale:
            self._stale = False
            log.warning("reconnected to the Dask scheduler at %s", self._address)
            await self._subscribe()

    async def _watch_forever(self) -> None:
        """Notice lost connections at once; refresh the worker list every few seconds."""
        loop = asyncio.get_running_loop()
        next_refresh = loop.time() + _REFRESH_SECONDS
        while True:
            await asyncio.sleep(0.1)
            try:
                if self._client.status == "closed":  # it gave up reconnecting: start again
                    log.warning("reconnecting to the Dask scheduler at %s", self._address)
                    await self._connect(timeout=_RECONNECT_SECONDS)
                elif not self._connected:
                    self._stale = True
                else:
                    await self._resubscribe()
                    if loop.time() >= next_refresh:
                        next_refresh = loop.time() + _REFRESH_SECONDS
                        await self._refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the client reconnects; try again later
                log.warning("trouble with the Dask scheduler at %s", self._address, exc_info=True)
                await asyncio.sleep(_REFRESH_SECONDS)

    async def _refresh(self) -> None:
        """Follow workers joining and leaving; ask new ones for their pid and devices."""
        identity = await self._client.scheduler.identity()
        listed = identity["workers"]
        for address in [a for a in self._workers if a not in listed]:
            del self._workers[address]
            log.warning("Dask worker %s left the cluster", address)
            for task_id, where in list(self._running.items()):
                if where == address:  # the scheduler runs it again elsewhere
                    del self._running[task_id]
        for task_id in [t for t in self._running if t not in self._calls and t not in self._cancelled]:
            del self._running[task_id]  # its "end" notice was lost with a connection
        for address, facts in listed.items():
            if address not in self._workers:
                self._workers[address] = _ClusterWorker(next(self._indices), address, facts["nthreads"],
                                                        dict(facts.get("resources") or {}))
            else:
                self._workers[address].resources = dict(facts.get("resources") or {})
        unknown = [w.address for w in self._workers.values() if not w.asked]
        if unknown:
            try:
                answers = await self._client.run(worker_facts, self._cache_dir, workers=unknown, on_error="return")
            except Exception:  # noqa: BLE001 - a worker left meanwhile; ask again next time
                log.debug("could not ask %s for their devices", unknown, exc_info=True)
                return
            for address, answer in answers.items():
                worker = self._workers.get(address)
                if worker is None:
                    continue
                worker.asked = True
                if isinstance(answer, BaseException):
                    log.warning("Dask worker %s could not describe itself: %r", address, answer)
                    continue
                worker.pid, worker.devices = answer["pid"], answer["devices"]
                log.info("Dask worker %s ready (pid %d, %s)", address, worker.pid,
                         ", ".join(f"{d['platform']}:{d['id']}" for d in worker.devices))
