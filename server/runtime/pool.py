"""A pool of worker processes, one per device, fed from a bounded priority queue.

Workers are started with `spawn` (a process that has loaded JAX must not fork) and each
is pinned to its device through its environment before JAX loads. The pool keeps the
queue in the parent, sends a task only to an idle worker, and so always knows which
worker runs which task: cancelling a task raises that worker's cancel flag, and a worker
that dies has its task retried on a fresh worker a bounded number of times.

Priorities (server/priority.py): the queue serves level 1 first, oldest first within a
level. When higher-level work waits and every worker is busy, a worker running a
lower-level task is asked to give way: at the task's next step boundary
(`worker.give_way`) the worker runs the waiting calls itself, then resumes the task where
it was, its state still on the device. A task keeps at least `batch_share` of its
worker's time over the last SHARE_WINDOW seconds, so waiting calls cannot starve it.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import subprocess
import threading
import time
from typing import Callable

from monge.server.auth import ANONYMOUS
from monge.server.priority import INTERACTIVE
from monge.server.errors import INTERNAL, LimitExceeded, TaskFailed
from monge.server.runtime.shared_bytes import take
from monge.server.runtime.worker import Outcome, process_main

log = logging.getLogger("monge.server")
_context = multiprocessing.get_context("spawn")
SHARE_WINDOW = 10.0  # seconds over which a lower-priority task's share of its worker is measured
RECHECK_SECONDS = 0.05  # how soon a task kept running for its share is asked again


def count_gpus() -> int:
    """NVIDIA GPUs visible on this machine, without loading JAX in the server process."""
    if os.environ.get("JAX_PLATFORMS", "").strip().lower() == "cpu" or not shutil.which("nvidia-smi"):
        return 0
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(line.startswith("GPU ") for line in listing.stdout.splitlines())


def worker_environments(workers: int | None) -> list[dict]:
    """One environment per worker: a GPU each when there are GPUs, else CPU workers."""
    gpus = count_gpus()
    if gpus:
        count = gpus if workers is None else workers
        return [{"CUDA_VISIBLE_DEVICES": str(i % gpus)} for i in range(count)]
    return [{"JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")} for _ in range(workers or 1)]


@dataclasses.dataclass(eq=False)
class _Task:
    sequence: int
    kind: str
    payload: bytes
    future: asyncio.Future
    progress: Callable[[dict], None] | None
    owner: str = ANONYMOUS  # the caller's identity: trained models are stored as theirs
    priority: int = INTERACTIVE
    attempts: int = 0
    queued_at: float = dataclasses.field(default_factory=time.monotonic)
    started_at: float | None = None
    yielded: list = dataclasses.field(default_factory=list)  # [start, end or None] periods given way
    yielded_seconds: float = 0.0  # in all, on this attempt
    cancel_on_resume: bool = False

    def share(self, now: float) -> float:
        """The fraction of the last SHARE_WINDOW seconds (or of its run, if shorter) this
        task ran rather than gave way."""
        since = max(self.started_at or now, now - SHARE_WINDOW)
        span = now - since
        if span <= 0:
            return 1.0
        given = sum((now if end is None else end) - max(start, since)
                    for start, end in self.yielded if end is None or end > since)
        return 1.0 - given / span


@dataclasses.dataclass(eq=False)
class _Worker:
    index: int
    env: dict
    process: multiprocessing.process.BaseProcess
    inbox: multiprocessing.connection.Connection
    outbox: multiprocessing.connection.Connection
    cancelled: object  # shared int: the sequence number to stop
    yield_wanted: object  # shared int: the sequence number asked to give way
    pid: int | None = None
    devices: list = dataclasses.field(default_factory=list)
    ready: bool = False
    task: _Task | None = None  # running now (a call it gave way to, while `yielded_task` is set)
    yielded_task: _Task | None = None  # given way, resumes when nothing above it waits
    asked_to_yield: bool = False
    dead: bool = False
    tasks_done: int = 0


class WorkerPool:
    """`await pool.run(kind, payload)` -> response bytes; raises TaskFailed or LimitExceeded."""

    def __init__(self, limits, *, workers: int | None = None, queue_limit: int = 64,
                 max_attempts: int = 2, cache_dir: str | None = None):
        self._limits = limits
        self._queue_limit = queue_limit
        self._max_attempts = max_attempts
        self._cache_dir = cache_dir
        self._environments = worker_environments(workers)
        self._pending: dict[int, collections.deque[_Task]] = collections.defaultdict(collections.deque)
        self._batch_share = limits.batch_share
        self._recheck: asyncio.TimerHandle | None = None
        self._workers: list[_Worker] = []
        self._sequence = itertools.count(1)
        self._lock = threading.Lock()
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._all_ready: asyncio.Event | None = None
        self._reader: threading.Thread | None = None
        # on_task_done(kind, queued_seconds, compute_seconds, outcome): for metrics.
        self.on_task_done: Callable[[str, float, float, Outcome], None] | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def start(self, timeout: float = 180.0) -> None:
        self._loop = asyncio.get_running_loop()
        self._all_ready = asyncio.Event()
        self._workers = [self._spawn(i, env) for i, env in enumerate(self._environments)]
        self._reader = threading.Thread(target=self._read_forever, name="monge-pool-reader", daemon=True)
        self._reader.start()
        await asyncio.wait_for(self._all_ready.wait(), timeout)

    async def close(self, timeout: float = 10.0) -> None:
        self._closing = True
        for queue in self._pending.values():
            for task in queue:
                task.future.cancel()
        self._pending.clear()
        for worker in self._workers:
            if worker.task is not None:
                worker.cancelled.value = worker.task.sequence
            try:
                worker.inbox.send(None)
            except (OSError, ValueError):
                pass
        await asyncio.to_thread(self._join_all, timeout)

    def _join_all(self, timeout):
        for worker in self._workers:
            worker.process.join(timeout)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(5)

    def _spawn(self, index: int, env: dict) -> _Worker:
        task_reader, task_writer = _context.Pipe(duplex=False)
        result_reader, result_writer = _context.Pipe(duplex=False)
        cancelled = _context.Value("q", 0, lock=False)
        yield_wanted = _context.Value("q", 0, lock=False)
        process = _context.Process(
            target=process_main,
            args=(index, env, task_reader, result_writer, cancelled, yield_wanted, self._limits, self._cache_dir),
            name=f"monge-worker-{index}",
            daemon=True,
        )
        process.start()
        task_reader.close()
        result_writer.close()
        return _Worker(index, env, process, task_writer, result_reader, cancelled, yield_wanted)

    # -- what callers use ------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """Tasks that can run at once."""
        return len(self._workers)

    @property
    def queue_depth(self) -> int:
        return sum(len(queue) for queue in self._pending.values())

    def describe(self) -> list[dict]:
        return [
            dict(index=w.index, pid=w.pid, devices=w.devices, ready=w.ready,
                 busy=w.task is not None or w.yielded_task is not None, tasks_done=w.tasks_done)
            for w in self._workers
        ]

    async def run(self, kind: str, payload: bytes, progress: Callable[[dict], None] | None = None,
                  owner: str = ANONYMOUS, *, parsed=None, priority: int = INTERACTIVE) -> bytes:
        """`parsed` (the call as the servicer parsed it) is not sent: the worker parses the
        bytes once in its own process. `priority`: its queue level (1 first)."""
        if self._closing:
            raise LimitExceeded("the server is shutting down", retry_after_seconds=5.0)
        if self.queue_depth >= self._queue_limit:
            raise LimitExceeded(
                f"the solver queue is full ({self._queue_limit} waiting); retry shortly",
                retry_after_seconds=1.0,
            )
        task = _Task(next(self._sequence), kind, payload, self._loop.create_future(), progress, owner, priority)
        self._pending[priority].append(task)
        self._dispatch()
        try:
            outcome: Outcome = await task.future
        except asyncio.CancelledError:
            self._cancel(task)
            raise
        if not outcome.ok:
            raise TaskFailed(outcome)
        return outcome.response

    def _cancel(self, task: _Task) -> None:
        queue = self._pending.get(task.priority)
        if queue is not None and task in queue:
            queue.remove(task)
            self._dispatch()  # a worker asked to give way for it may go on
            return
        for worker in self._workers:
            if worker.task is task:
                worker.cancelled.value = task.sequence  # the worker stops at its next chunk
            elif worker.yielded_task is task:
                task.cancel_on_resume = True  # stopped as soon as the call it gave way to ends

    # -- dispatch, on the event loop -------------------------------------------------

    def _dispatch(self) -> None:
        now = time.monotonic()
        for worker in self._workers:
            if not worker.ready or worker.task is not None or worker.dead:
                continue
            given_way = worker.yielded_task
            if given_way is None:
                task = self._take()
            elif given_way.cancel_on_resume or not self._may_stay_yielded(given_way, now):
                task = None
            else:
                task = self._take(above=given_way.priority)
            if task is not None:
                self._send(worker, task)
            elif given_way is not None:
                self._resume(worker, now)
        self._ask_to_give_way(now)

    def _take(self, above: int | None = None) -> _Task | None:
        """The oldest task of the highest waiting level (only levels above `above`)."""
        for level in sorted(self._pending):
            if above is not None and level >= above:
                return None
            if self._pending[level]:
                return self._pending[level].popleft()
        return None

    def _send(self, worker: _Worker, task: _Task) -> None:
        task.attempts += 1
        task.started_at = time.monotonic()
        task.yielded, task.yielded_seconds = [], 0.0
        worker.task = task
        try:
            worker.inbox.send((task.sequence, task.kind, task.payload, task.owner))
        except (OSError, ValueError):
            worker.task = None
            self._pending[task.priority].appendleft(task)
            task.attempts -= 1

    def _may_stay_yielded(self, task: _Task, now: float) -> bool:
        return self._batch_share == 0 or task.share(now) > self._batch_share

    def _resume(self, worker: _Worker, now: float) -> None:
        task, worker.yielded_task = worker.yielded_task, None
        period = task.yielded[-1]
        period[1] = now
        task.yielded_seconds += now - period[0]
        task.yielded = [p for p in task.yielded if p[1] > now - SHARE_WINDOW]
        if task.cancel_on_resume:
            worker.cancelled.value = task.sequence
        worker.task = task
        try:
            worker.inbox.send(("resume", task.sequence))
        except (OSError, ValueError):
            return  # its sentinel reports the death, and the task is retried
        if task.progress is not None:
            task.progress({"yielded_seconds": task.yielded_seconds})

    def _ask_to_give_way(self, now: float) -> None:
        """Ask workers running lower-level tasks to give way to waiting higher-level ones
        (as many as wait); withdraw the ask when nothing waits above the task any more."""
        waiting = sorted(level for level, queue in self._pending.items() if queue)
        asked = 0  # workers asked (or kept asked) so far, lowest-level tasks first
        recheck = False
        for worker in sorted(self._workers, key=lambda w: -(w.task.priority if w.task else 0)):
            task = worker.task
            if task is None or worker.yielded_task is not None or worker.dead:
                continue  # idle, or running a call it gave way to (which does not yield)
            # Only calls above this task count: lower or equal ones wait their turn.
            above = sum(len(self._pending[level]) for level in waiting if level < task.priority)
            if worker.asked_to_yield:
                if above:
                    asked += 1
                else:
                    worker.yield_wanted.value, worker.asked_to_yield = 0, False
            elif above > asked:
                if self._may_stay_yielded(task, now):
                    worker.yield_wanted.value, worker.asked_to_yield = task.sequence, True
                    asked += 1
                else:
                    recheck = True  # it is owed its share: ask again shortly
        if recheck and self._recheck is None:
            self._recheck = self._loop.call_later(RECHECK_SECONDS, self._rechecked)

    def _rechecked(self) -> None:
        self._recheck = None
        self._dispatch()

    def _on_message(self, worker: _Worker, message) -> None:
        kind = message[0]
        if kind == "ready":
            _, worker.pid, worker.devices = message
            worker.ready = True
            if all(w.ready for w in self._workers):
                self._all_ready.set()
            log.info("worker %d ready (pid %d, %s)", worker.index, worker.pid,
                     ", ".join(f"{d['platform']}:{d['id']}" for d in worker.devices))
        elif kind == "failed":
            log.error("worker %d failed to start:\n%s", worker.index, message[2])
        elif kind == "yielded":
            _, sequence = message
            task = worker.task
            worker.yield_wanted.value, worker.asked_to_yield = 0, False
            if task is not None and task.sequence == sequence:
                worker.task, worker.yielded_task = None, task
                task.yielded.append([time.monotonic(), None])
        elif kind == "progress":
            _, sequence, fields = message
            task = worker.task
            if task is not None and task.sequence == sequence and task.progress is not None:
                task.progress(fields)
        elif kind == "done":
            _, sequence, outcome = message
            task, worker.task = worker.task, None
            if worker.yielded_task is None:  # an ask to give way it finished before seeing
                worker.yield_wanted.value, worker.asked_to_yield = 0, False
            worker.tasks_done += 1
            if task is not None and task.sequence == sequence:
                if self.on_task_done is not None:
                    now = time.monotonic()
                    self.on_task_done(task.kind, task.started_at - task.queued_at,
                                      now - task.started_at - task.yielded_seconds, outcome)
                if not task.future.done():
                    task.future.set_result(outcome)
        self._dispatch()

    def _on_death(self, worker: _Worker) -> None:
        if self._closing:
            return
        log.error("worker %d (pid %s) died with exit code %s; starting a replacement",
                  worker.index, worker.pid, worker.process.exitcode)
        with self._lock:
            replacement = self._spawn(worker.index, worker.env)
            self._workers[self._workers.index(worker)] = replacement
        for task in (worker.task, worker.yielded_task):
            if task is None or task.future.done():
                continue
            if task.attempts < self._max_attempts and not task.cancel_on_resume:
                log.warning("retrying task %d on a fresh worker (attempt %d of %d)",
                            task.sequence, task.attempts + 1, self._max_attempts)
                self._pending[task.priority].appendleft(task)
            else:
                task.future.set_result(Outcome(
                    code=INTERNAL,
                    message=f"the worker running this call died {task.attempts} times; giving up",
                ))

    # -- the reader thread ------------------------------------------------------------

    def _read_forever(self) -> None:
        while not self._closing:
            with self._lock:
                workers = [w for w in self._workers if not w.dead]
            waitables = {}
            for worker in workers:
                waitables[worker.outbox] = worker
                waitables[worker.process.sentinel] = worker
            for ready in multiprocessing.connection.wait(list(waitables), timeout=0.5):
                worker = waitables[ready]
                if ready is worker.outbox:
                    try:
                        message = _received(worker.outbox.recv())
                    except (EOFError, OSError):
                        continue  # its sentinel reports the death
                    self._loop.call_soon_threadsafe(self._on_message, worker, message)
                elif not worker.dead:
                    worker.dead = True
                    self._drain(worker)
                    self._loop.call_soon_threadsafe(self._on_death, worker)

    def _drain(self, worker: _Worker) -> None:
        """Deliver what a dead worker sent before it died (it may have finished its task)."""
        try:
            while worker.outbox.poll():
                self._loop.call_soon_threadsafe(self._on_message, worker, _received(worker.outbox.recv()))
        except (EOFError, OSError):
            pass


def _received(message):
    """A worker's message with a reply it left in shared memory read back (and the
    segment freed), in the reader thread rather than on the event loop."""
    if message[0] == "done" and message[2].response is not None:
        return (*message[:2], dataclasses.replace(message[2], response=take(message[2].response)))
    return message
