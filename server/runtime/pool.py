"""A pool of worker processes, one per device, fed from a bounded queue.

Workers are started with `spawn` (a process that has loaded JAX must not fork) and each
is pinned to its device through its environment before JAX loads. The pool keeps the
queue in the parent, sends a task only to an idle worker, and so always knows which
worker runs which task: cancelling a task raises that worker's cancel flag, and a worker
that dies has its task retried on a fresh worker a bounded number of times.
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
from monge.server.errors import INTERNAL, LimitExceeded, TaskFailed
from monge.server.runtime.worker import Outcome, process_main

log = logging.getLogger("monge.server")
_context = multiprocessing.get_context("spawn")


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
    attempts: int = 0
    queued_at: float = dataclasses.field(default_factory=time.monotonic)
    started_at: float | None = None


@dataclasses.dataclass(eq=False)
class _Worker:
    index: int
    env: dict
    process: multiprocessing.process.BaseProcess
    inbox: multiprocessing.connection.Connection
    outbox: multiprocessing.connection.Connection
    cancelled: object  # shared int: the sequence number to stop
    pid: int | None = None
    devices: list = dataclasses.field(default_factory=list)
    ready: bool = False
    task: _Task | None = None
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
        self._pending: collections.deque[_Task] = collections.deque()
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
        for task in list(self._pending):
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
        process = _context.Process(
            target=process_main,
            args=(index, env, task_reader, result_writer, cancelled, self._limits, self._cache_dir),
            name=f"monge-worker-{index}",
            daemon=True,
        )
        process.start()
        task_reader.close()
        result_writer.close()
        return _Worker(index, env, process, task_writer, result_reader, cancelled)

    # -- what callers use ------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """Tasks that can run at once."""
        return len(self._workers)

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    def describe(self) -> list[dict]:
        return [
            dict(index=w.index, pid=w.pid, devices=w.devices, ready=w.ready, busy=w.task is not None,
                 tasks_done=w.tasks_done)
            for w in self._workers
        ]

    async def run(self, kind: str, payload: bytes, progress: Callable[[dict], None] | None = None,
                  owner: str = ANONYMOUS, *, parsed=None) -> bytes:
        """`parsed` (the call as the servicer parsed it) is not sent: the worker parses the
        bytes once in its own process."""
        if self._closing:
            raise LimitExceeded("the server is shutting down", retry_after_seconds=5.0)
        if len(self._pending) >= self._queue_limit:
            raise LimitExceeded(
                f"the solver queue is full ({self._queue_limit} waiting); retry shortly",
                retry_after_seconds=1.0,
            )
        task = _Task(next(self._sequence), kind, payload, self._loop.create_future(), progress, owner)
        self._pending.append(task)
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
        if task in self._pending:
            self._pending.remove(task)
            return
        for worker in self._workers:
            if worker.task is task:
                worker.cancelled.value = task.sequence  # the worker stops at its next chunk

    # -- dispatch, on the event loop -------------------------------------------------

    def _dispatch(self) -> None:
        for worker in self._workers:
            if not self._pending:
                return
            if worker.ready and worker.task is None and not worker.dead:
                task = self._pending.popleft()
                task.attempts += 1
                task.started_at = time.monotonic()
                worker.task = task
                try:
                    worker.inbox.send((task.sequence, task.kind, task.payload, task.owner))
                except (OSError, ValueError):
                    worker.task = None
                    self._pending.appendleft(task)
                    task.attempts -= 1

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
        elif kind == "progress":
            _, sequence, fields = message
            task = worker.task
            if task is not None and task.sequence == sequence and task.progress is not None:
                task.progress(fields)
        elif kind == "done":
            _, sequence, outcome = message
            task, worker.task = worker.task, None
            worker.tasks_done += 1
            if task is not None and task.sequence == sequence:
                if self.on_task_done is not None:
                    now = time.monotonic()
                    self.on_task_done(task.kind, task.started_at - task.queued_at,
                                      now - task.started_at, outcome)
                if not task.future.done():
                    task.future.set_result(outcome)
        self._dispatch()

    def _on_death(self, worker: _Worker) -> None:
        if self._closing:
            return
        log.error("worker %d (pid %s) died with exit code %s; starting a replacement",
                  worker.index, worker.pid, worker.process.exitcode)
        task = worker.task
        with self._lock:
            replacement = self._spawn(worker.index, worker.env)
            self._workers[self._workers.index(worker)] = replacement
        if task is not None and not task.future.done():
            if task.attempts < self._max_attempts:
                log.warning("retrying task %d on a fresh worker (attempt %d of %d)",
                            task.sequence, task.attempts + 1, self._max_attempts)
                self._pending.appendleft(task)
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
                        message = worker.outbox.recv()
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
                self._loop.call_soon_threadsafe(self._on_message, worker, worker.outbox.recv())
        except (EOFError, OSError):
            pass
