"""Dynamic batching: concurrent small Sinkhorn requests merged into one vmapped call.

Requests that share a batch key (same settings, dtype, dimension and size bucket) wait
in a per-key list. A list is sent to the workers as one batch when it is full, or when
a worker is free and its oldest request has waited `max_delay` seconds. Under load the
workers are busy, so lists grow while they wait and batches get larger on their own;
when idle, a lone request waits at most `max_delay`. A batch of one takes the ordinary
path (chunked, cancellable, with progress), so an idle server behaves as without
batching. Other solver calls pass straight through to the executor.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Callable

from monge.server.runtime import sinkhorn_batch
from monge.server.calls import sinkhorn as sinkhorn_call
from monge.server.auth import ANONYMOUS
from monge.server.errors import LimitExceeded
from monge.server.priority import INTERACTIVE
from monge.v1 import sinkhorn_pb2


AUTO_MAX_BATCH = 32


@dataclasses.dataclass(eq=False)
class _Waiting:
    payload: bytes
    future: asyncio.Future
    progress: Callable[[dict], None] | None
    since: float
    batch: list[_Waiting] | None = None  # set when sent
    task: asyncio.Task | None = None


class DynamicBatcher:
    """Wraps an executor (local pool or Dask) with the same interface: `run`,
    `capacity`, `queue_depth`, `describe`, `start`, `close`."""

    def __init__(self, executor, config, *, max_batch: int | None, max_delay: float,
                 on_batch: Callable[[int], None] | None = None):
        """`max_batch` None: AUTO_MAX_BATCH when the workers have accelerators, else 1
        (off): on CPU a vmapped batch computes no faster than its calls one by one, and
        it pads and waits for the slowest member (see benchmarks/RESULTS.md)."""
        if (max_batch is not None and max_batch < 1) or max_delay < 0:
            raise ValueError("max_batch must be at least 1 and max_delay at least 0")
        self._executor = executor
        self._config = config
        self._max_batch = max_batch
        self._max_delay = max_delay
        self._max_waiting = config.queue_limit
        self._on_batch = on_batch
        self._waiting: dict[tuple, list[_Waiting]] = {}
        self._in_flight = 0
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task] = set()

    # -- the executor interface --------------------------------------------------------

    async def start(self) -> None:
        await self._executor.start()
        if self._max_batch is None:
            platforms = {d["platform"] for w in self._executor.describe() for d in w["devices"]}
            self._max_batch = AUTO_MAX_BATCH if platforms - {"cpu"} else 1

    @property
    def max_batch(self) -> int | None:
        return self._max_batch

    async def close(self) -> None:
        for entries in self._waiting.values():
            for entry in entries:
                entry.future.cancel()
        self._waiting.clear()
        await self._executor.close()

    @property
    def inner(self):
        """The executor behind the batcher."""
        return self._executor

    @property
    def capacity(self) -> int:
        return self._executor.capacity

    @property
    def queue_depth(self) -> int:
        return self._executor.queue_depth + sum(len(e) for e in self._waiting.values())

    def describe(self) -> list[dict]:
        return self._executor.describe()

    def __getattr__(self, name):  # anything else an executor offers (e.g. `cluster`)
        return getattr(self._executor, name)

    async def run(self, kind: str, payload: bytes, progress=None, owner: str = ANONYMOUS, *, parsed=None,
                  priority: int = INTERACTIVE) -> bytes:
        """`parsed`: the call the servicer already parsed from `payload` (else parsed here).
        Calls of one priority level are batched together, and go at that level."""
        key = self._key(kind, payload, parsed, priority)
        if key is None:
            return await self._executor.run(kind, payload, progress, owner, priority=priority)
        if sum(len(e) for e in self._waiting.values()) >= self._max_waiting:
            raise LimitExceeded(
                f"the batching queue is full ({self._max_waiting} waiting); retry shortly",
                retry_after_seconds=1.0,
            )
        entry = _Waiting(payload, asyncio.get_running_loop().create_future(), progress,
                         time.monotonic())
        self._waiting.setdefault(key, []).append(entry)
        self._flush()
        try:
            return await entry.future
        except asyncio.CancelledError:
            waiting = self._waiting.get(key, [])
            if entry in waiting:  # not sent yet: it costs nothing
                waiting.remove(entry)
                if not waiting:
                    del self._waiting[key]
            elif entry.task is not None and all(e.future.cancelled() for e in entry.batch):
                entry.task.cancel()  # nobody wants this batch any more: free the worker
            raise

    # -- grouping and flushing ---------------------------------------------------------

    def _key(self, kind: str, payload: bytes, call, priority: int):
        if kind != "sinkhorn" or self._max_batch == 1:
            return None
        if call is None:  # a job item: its bytes were validated when the job was submitted
            try:
                call = sinkhorn_call.parse(sinkhorn_pb2.SinkhornRequest.FromString(payload), self._config)
            except Exception:  # noqa: BLE001 - the ordinary path reports it properly
                return None
        key = sinkhorn_batch.batch_key(call)
        if key is None:
            return None
        # Requests asking for the same views wait together, so that the batch size
        # counts the views' output (top-k entries, barycentric map) in its memory.
        dimension = call.x.shape[1] if call.barycentric_map else 0
        return priority, key, call.top_k, dimension

    def _flush(self) -> None:
        """Send full lists at once; the oldest ripe list whenever a worker is free."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for key in [k for k, entries in self._waiting.items() if len(entries) >= self._largest(k)]:
            self._send(key)
        now = time.monotonic()
        while self._waiting and self._in_flight < self._executor.capacity:
            key = min(self._waiting, key=lambda k: (k[0], self._waiting[k][0].since))  # level, then age
            ripe_at = self._waiting[key][0].since + self._max_delay
            if ripe_at > now:
                self._timer = asyncio.get_running_loop().call_later(ripe_at - now, self._flush)
                return
            self._send(key)

    def _largest(self, key) -> int:
        """The batch size for this key: the setting, or less where memory requires."""
        _, solver_key, top_k, dimension = key
        return min(self._max_batch, sinkhorn_batch.max_batch_for_memory(
            solver_key, self._config.max_request_memory_bytes, top_k=top_k, dimension=dimension))

    def _send(self, key) -> None:
        entries = self._waiting.pop(key)
        largest = self._largest(key)
        batch, rest = entries[:largest], entries[largest:]
        if rest:
            self._waiting[key] = rest
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._solve(batch, priority=key[0]))
        for entry in batch:
            entry.batch, entry.task = batch, task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _solve(self, batch: list[_Waiting], priority: int) -> None:
        try:
            if self._on_batch is not None:
                self._on_batch(len(batch))
            if len(batch) == 1:
                replies = [await self._executor.run("sinkhorn", batch[0].payload, batch[0].progress,
                                                    priority=priority)]
            else:
                framed = sinkhorn_batch.frame([entry.payload for entry in batch])
                replies = sinkhorn_batch.unframe(
                    await self._executor.run(sinkhorn_batch.KIND, framed, None, priority=priority))
            for entry, reply in zip(batch, replies):
                if not entry.future.done():
                    entry.future.set_result(reply)
        except BaseException as error:  # noqa: BLE001 - every waiter hears of it
            for entry in batch:
                if not entry.future.done():
                    if isinstance(error, asyncio.CancelledError):
                        entry.future.cancel()
                    else:
                        entry.future.set_exception(error)
            if not isinstance(error, Exception):
                raise
        finally:
            self._in_flight -= 1
            self._flush()
