"""Jobs: accepted at once, run on the workers, followed by watchers, kept in the store.

A job is a list of items (solver requests). Items run concurrently up to the executor's
capacity; each has its own status, so one bad item fails alone. After a restart, jobs
that were queued or running are queued again, except those whose result file was
written before the crash: they are marked done without running twice.

Every job has an owner (the identity of the token that submitted it; ANONYMOUS with
auth off). Each verb takes the caller's identity, and another owner's job answers
NOT_FOUND exactly as a missing one does, so job ids do not leak. Items run as their job's
owner: a model an item trains is stored as the owner's, and an item may use only the
owner's trained models (another's is NOT_FOUND, as for the RPCs).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from monge.server import errors, limits, priority
from monge.server.jobs import store as jobstore
from monge.server.auth import ANONYMOUS
from monge.server.errors import InvalidArgument, LimitExceeded, NotFound, TaskFailed
from monge.server.registry import CALLS
from monge.v1 import diagnostics_pb2, jobs_pb2

log = logging.getLogger("monge.server")

_STATES = {
    jobstore.QUEUED: jobs_pb2.JOB_STATE_QUEUED,
    jobstore.RUNNING: jobs_pb2.JOB_STATE_RUNNING,
    jobstore.SUCCEEDED: jobs_pb2.JOB_STATE_SUCCEEDED,
    jobstore.FAILED: jobs_pb2.JOB_STATE_FAILED,
    jobstore.CANCELLED: jobs_pb2.JOB_STATE_CANCELLED,
}
STATE_NAMES = {number: name for name, number in _STATES.items()}
_PROGRESS_WRITE_SECONDS = 1.0


# The registry's name of an item's call where it differs from the JobItem field: the
# name "sinkhorn_batch" is the dynamic batcher's worker kind (and metrics label).
_CALL_NAMES = {"sinkhorn_batch": "sinkhorn_batch_rpc"}


def call_name(kind: str) -> str:
    """The `registry.CALLS` name of the JobItem field `kind`."""
    return _CALL_NAMES.get(kind, kind)


def _item_request(item: jobs_pb2.JobItem, index: int):
    kind = item.WhichOneof("request")
    if kind is None:
        raise InvalidArgument.field(f"items[{index}]", "no request is set")
    return kind, getattr(item, kind)


def _validate_item(item, index, config, owner: str = ANONYMOUS,
                   job_level: int | None = None) -> tuple[str, object, int]:
    """The item's kind (its JobItem field), request and queue level (its own priority, else
    `job_level`); InvalidArgument (or NotFound, for a stored model that is not the
    owner's) with fields prefixed by the item."""
    kind, request = _item_request(item, index)
    try:
        CALLS[call_name(kind)].parse(request, config, owner)
        # Training requests have no priority field of their own: they run at the job's.
        item_level = priority.level(getattr(request, "priority", priority.UNSET), config,
                                    default=job_level or priority.batch_level(config))
    except InvalidArgument as error:
        raise InvalidArgument(*[(f"items[{index}].{kind}.{f}", d) for f, d in error.violations]) from None
    except NotFound as error:
        raise error.within(f"items[{index}].{kind}.") from None
    return kind, request, item_level


def _job_level(request: jobs_pb2.SubmitJobRequest, config) -> int:
    """The queue level of a stored job's items (within the levels this server has: it may
    have restarted with fewer)."""
    return min(request.priority or priority.batch_level(config), config.priority_levels)


def _error_status(code: int, message: str, violations=()) -> diagnostics_pb2.ErrorStatus:
    return diagnostics_pb2.ErrorStatus(
        code=code, message=message,
        field_violations=[diagnostics_pb2.FieldViolation(field=f, description=d) for f, d in violations],
    )


class JobManager:
    def __init__(self, store: jobstore.JobStore, executor, config, *, retention_seconds: float,
                 max_unfinished_jobs: int, max_jobs_per_owner: int | None = None):
        self._store = store
        self._executor = executor
        self._config = config
        self._retention = retention_seconds
        self._max_unfinished = max_unfinished_jobs
        self._max_per_owner = max_jobs_per_owner or max_unfinished_jobs
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._running: dict[str, asyncio.Task] = {}
        self._cancel_requested: set[str] = set()
        self._watchers: dict[str, set[asyncio.Queue]] = {}
        self._progress: dict[str, dict] = {}
        self._progress_written: dict[str, float] = {}
        self._background: list[asyncio.Task] = []
        # Items handed to the executor at once: enough to keep every worker busy (and, with
        # dynamic batching, to fill a batch per worker), few enough that a large batch job
        # does not fill the queue that unary calls share.
        workers = max(1, executor.capacity)
        batch = getattr(executor, "max_batch", None) or 1
        self._in_flight = asyncio.Semaphore(max(2 * workers, min(batch * workers, config.queue_limit // 2)))

    def count_by_state(self) -> dict[str, int]:
        return self._store.count_by_state()

    @property
    def watcher_count(self) -> int:
        """Open WatchJob and WaitJob calls; each ends with its call, however it ends."""
        return sum(len(queues) for queues in self._watchers.values())

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        for record in self._store.unfinished():
            if self._store.read_result(record.job_id) is not None:
                results = jobs_pb2.Job.FromString(self._store.read_result(record.job_id)).results
                failed = sum(1 for r in results if r.status.code != errors.OK)
                self._store.update(record.job_id, state=jobstore.SUCCEEDED, failed_items=failed,
                                   finished=time.time())
                log.info("job %s had finished before the restart; marked done", record.job_id)
                continue
            self._store.update(record.job_id, state=jobstore.QUEUED)
            self._queue.put_nowait(record.job_id)
            log.info("job %s re-queued after a restart", record.job_id)
        runners = max(1, self._executor.capacity)
        self._background = [asyncio.create_task(self._run_jobs()) for _ in range(runners)]
        self._background.append(asyncio.create_task(self._expire_forever()))

    async def close(self) -> None:
        """Stop without marking anything: unfinished jobs run again after a restart."""
        for task in [*self._background, *self._running.values()]:
            task.cancel()
        await asyncio.gather(*self._background, *self._running.values(), return_exceptions=True)
        self._store.close()

    # -- the verbs -------------------------------------------------------------------

    def _record(self, job_id: str, owner: str) -> jobstore.JobRecord:
        """The owner's job, or NotFound (also for another owner's job)."""
        record = self._store.get(job_id)
        if record is None or record.owner != owner:
            raise NotFound(f"no job {job_id!r}")
        return record

    def submit(self, request: jobs_pb2.SubmitJobRequest, owner: str = ANONYMOUS) -> jobs_pb2.Job:
        if not request.items:
            raise InvalidArgument.field("items", "at least one item is required")
        if len(request.items) > self._config.max_job_items:
            raise InvalidArgument.field("items", limits.over_limit(
                f"{len(request.items):,} items", self._config.max_job_items, "max_job_items"))
        if request.request_id:
            existing = self._store.by_request_id(request.request_id, owner)
            if existing is not None:
                return self.describe(existing)
        job_level = priority.level(request.priority, self._config, default=priority.batch_level(self._config))
        if len(request.items) == 1:
            _validate_item(request.items[0], 0, self._config, owner, job_level)  # a lone bad request fails now
        else:
            for index, item in enumerate(request.items):
                _item_request(item, index)  # bad items of a batch fail alone, when run
        if self._store.count_unfinished() >= self._max_unfinished:
            raise LimitExceeded(f"{self._max_unfinished} jobs are already waiting or running; retry later",
                                retry_after_seconds=5.0)
        if self._store.count_unfinished(owner) >= self._max_per_owner:
            raise LimitExceeded(f"max_jobs_per_owner: you already have {self._max_per_owner} jobs waiting or "
                                "running; retry when some finish", retry_after_seconds=5.0)
        record, created = self._store.create(request.SerializeToString(), len(request.items),
                                             request.request_id or None, owner)
        if created:
            self._queue.put_nowait(record.job_id)
        return self.describe(record)

    def get(self, job_id: str, include_results: bool = False, owner: str = ANONYMOUS) -> jobs_pb2.Job:
        return self.describe(self._record(job_id, owner), include_results)

    def list(self, state: int, page_size: int, page_token: str,
             owner: str = ANONYMOUS) -> tuple[list[jobs_pb2.Job], str]:
        """The owner's jobs only, newest first."""
        if page_size < 0 or page_size > 1000:
            raise InvalidArgument.field("page_size", f"must be in [0, 1000], got {page_size}")
        if state and state not in STATE_NAMES:
            raise InvalidArgument.field("state", f"unknown value {state}")
        try:
            before = int(page_token) if page_token else None
        except ValueError:
            raise InvalidArgument.field("page_token", "is not a token this server issued") from None
        limit = page_size or 50
        records = self._store.list(STATE_NAMES.get(state), limit, before, owner=owner)
        token = str(records[-1].sequence) if len(records) == limit else ""
        return [self.describe(r) for r in records], token

    async def cancel(self, job_id: str, owner: str = ANONYMOUS) -> jobs_pb2.Job:
        record = self._record(job_id, owner)
        if record.done:
            return self.describe(record)
        self._cancel_requested.add(job_id)
        task = self._running.get(job_id)
        if task is not None:
            task.cancel()  # reaches the worker through the executor
            await asyncio.wait([task], timeout=5.0)
        else:
            self._finish_cancelled(job_id)
        return self.describe(self._store.get(job_id))

    async def wait(self, job_id: str, timeout: float, include_results: bool,
                   owner: str = ANONYMOUS) -> jobs_pb2.Job:
        self._record(job_id, owner)
        queue = self._subscribe(job_id)
        try:
            deadline = time.monotonic() + timeout
            while not self._store.get(job_id).done:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            return self.get(job_id, include_results, owner)
        finally:
            self._unsubscribe(job_id, queue)

    async def watch(self, job_id: str, owner: str = ANONYMOUS):
        """Yield the job now, at each progress event, and finally done with results."""
        self._record(job_id, owner)
        queue = self._subscribe(job_id)
        try:
            job = self.get(job_id, owner=owner)
            while not self._store.get(job_id).done:
                yield job
                await queue.get()
                job = self.get(job_id, owner=owner)
            yield self.get(job_id, include_results=True, owner=owner)
        finally:
            self._unsubscribe(job_id, queue)

    # -- running ---------------------------------------------------------------------

    async def _run_jobs(self) -> None:
        while True:
            job_id = await self._queue.get()
            record = self._store.get(job_id)
            if record is None or record.done:
                continue
            task = asyncio.create_task(self._run(job_id))
            self._running[job_id] = task
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if not task.done():  # the manager is closing, not the job
                    raise
            finally:
                self._running.pop(job_id, None)

    async def _run(self, job_id: str) -> None:
        record = self._store.start_attempt(job_id)
        self._publish(job_id)
        request = jobs_pb2.SubmitJobRequest.FromString(self._store.read_request(job_id))
        started = time.monotonic()
        done_count = 0
        job_level = _job_level(request, self._config)
        yielded = [0.0] * len(request.items)  # seconds each item gave way to higher-priority calls

        async def run_item(index, item):
            nonlocal done_count
            try:
                result = await self._run_item(job_id, index, item, started, record.owner, job_level, yielded)
            except Exception:  # noqa: BLE001 - a bug fails its item, never leaves the job running
                error_id = uuid.uuid4().hex[:12]
                log.exception("internal error %s in job %s item %d", error_id, job_id, index)
                result = jobs_pb2.JobItemResult(status=_error_status(
                    13, f"internal error (id {error_id}); see the server log"))
            done_count += 1
            self._set_progress(job_id, items_done=done_count, force=True)
            return result

        try:
            results = await asyncio.gather(*(run_item(i, item) for i, item in enumerate(request.items)))
        except asyncio.CancelledError:
            if job_id in self._cancel_requested:
                self._finish_cancelled(job_id)
                return
            raise  # shutting down: the job stays unfinished and runs again after a restart
        failed = sum(1 for r in results if r.status.code != errors.OK)
        self._store.finish(job_id, jobstore.SUCCEEDED, jobs_pb2.Job(results=results).SerializeToString(),
                           failed_items=failed)
        log.info("job %s done: %d items, %d failed, attempt %d", job_id, len(results), failed, record.attempts)
        self._publish(job_id)

    async def _run_item(self, job_id, index, item, started, owner: str, job_level: int,
                        yielded: list[float]) -> jobs_pb2.JobItemResult:
        try:
            kind, request, item_level = _validate_item(item, index, self._config, owner, job_level)
        except InvalidArgument as error:
            return jobs_pb2.JobItemResult(status=_error_status(3, str(error), error.violations))
        except NotFound as error:
            return jobs_pb2.JobItemResult(status=_error_status(5, str(error)))
        payload = request.SerializeToString()

        def progress(fields):
            if "yielded_seconds" in fields:  # this item's, on this attempt: the job shows the sum
                yielded[index] = fields["yielded_seconds"]
                fields = {**fields, "yielded_seconds": sum(yielded)}
            self._set_progress(job_id, item=index, elapsed_seconds=time.monotonic() - started, **fields)

        while True:
            try:
                async with self._in_flight:
                    reply = await self._executor.run(call_name(kind), payload, progress, owner,
                                                     priority=item_level)
            except LimitExceeded as full:  # unary calls took the queue: wait, don't fail the job
                await asyncio.sleep(full.retry_after_seconds)
                continue
            except TaskFailed as error:
                outcome = error.outcome
                if outcome.not_found is not None:  # a stored model gone since validation
                    missing = NotFound(outcome.not_found[1], outcome.not_found[0])
                    return jobs_pb2.JobItemResult(
                        status=_error_status(5, str(missing.within(f"items[{index}].{kind}."))))
                violations = [(f"items[{index}].{kind}.{f}", d) for f, d in outcome.violations]
                return jobs_pb2.JobItemResult(status=_error_status(outcome.code, outcome.message, violations))
            response = CALLS[call_name(kind)].response_type.FromString(reply)
            return jobs_pb2.JobItemResult(status=_error_status(0, ""), **{kind: response})

    def _finish_cancelled(self, job_id: str) -> None:
        self._store.finish(job_id, jobstore.CANCELLED, error_code=errors.CANCELLED, error_message="cancelled by a caller")
        self._cancel_requested.discard(job_id)
        self._publish(job_id)

    async def _expire_forever(self) -> None:
        period = min(60.0, max(1.0, self._retention / 10))
        while True:
            removed = self._store.delete_finished_before(time.time() - self._retention)
            if removed:
                log.info("removed %d finished job(s) older than %.0f s", removed, self._retention)
            await asyncio.sleep(period)

    # -- progress and watchers -------------------------------------------------------

    def _set_progress(self, job_id: str, force: bool = False, **fields) -> None:
        progress = self._progress.setdefault(job_id, {})
        progress.update(fields)
        now = time.monotonic()
        if force or now - self._progress_written.get(job_id, 0.0) >= _PROGRESS_WRITE_SECONDS:
            self._store.update(job_id, progress=progress)
            self._progress_written[job_id] = now
        self._publish(job_id)

    def _subscribe(self, job_id: str) -> asyncio.Queue:
        if self._store.get(job_id) is None:
            raise NotFound(f"no job {job_id!r}")
        queue: asyncio.Queue = asyncio.Queue(maxsize=1)
        self._watchers.setdefault(job_id, set()).add(queue)
        return queue

    def _unsubscribe(self, job_id: str, queue: asyncio.Queue) -> None:
        watchers = self._watchers.get(job_id)
        if watchers is not None:
            watchers.discard(queue)
            if not watchers:
                del self._watchers[job_id]

    def _publish(self, job_id: str) -> None:
        """Wake watchers; a slow watcher skips intermediate events, never the last one."""
        for queue in self._watchers.get(job_id, ()):
            if queue.empty():
                queue.put_nowait(None)

    # -- conversion ------------------------------------------------------------------

    def describe(self, record: jobstore.JobRecord, include_results: bool = False) -> jobs_pb2.Job:
        progress = {**record.progress, **self._progress.get(record.job_id, {})}
        job = jobs_pb2.Job(
            job_id=record.job_id,
            request_id=record.request_id or "",
            state=_STATES[record.state],
            item_count=record.item_count,
            failed_items=record.failed_items,
            attempts=record.attempts,
            progress=jobs_pb2.JobProgress(**{k: v for k, v in progress.items()
                                             if k in jobs_pb2.JobProgress.DESCRIPTOR.fields_by_name}),
        )
        if record.error_code:
            job.error.CopyFrom(_error_status(record.error_code, record.error_message))
        for field, value in (("create_time", record.created), ("start_time", record.started),
                             ("end_time", record.finished)):
            if value is not None:
                getattr(job, field).FromNanoseconds(int(value * 1e9))
        if include_results and record.state == jobstore.SUCCEEDED:
            stored = self._store.read_result(record.job_id)
            if stored is not None:
                job.results.extend(jobs_pb2.Job.FromString(stored).results)
        return job
