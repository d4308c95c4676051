"""Jobs: submit requests built with `monge.client.requests`, follow them, fetch results."""

from __future__ import annotations

import time
import uuid

import grpc

from monge.client import errors
from monge.client.jobs import JobInfo
from monge.v1 import jobs_pb2


class JobCalls:
    """`Client` methods of the job service."""

    def submit(self, requests_, *, request_id: str | None = None, priority: int = 0,
               timeout: float | None = None) -> JobInfo:
        """Queue one request (built with `monge.client.requests`) or a list of them as one
        job, and return at once. The same `request_id` always names the same job; one is
        generated when not given, so retries never run the work twice. `priority`: the
        queue level of its items, 1 the highest (0: the server's lowest, batch); a running
        item gives way to waiting calls above it between its steps."""
        items = [requests_] if not isinstance(requests_, (list, tuple)) else list(requests_)
        request = jobs_pb2.SubmitJobRequest(request_id=request_id or uuid.uuid4().hex, priority=priority)
        for item in items:
            kind = _ITEM_FIELDS.get(type(item).DESCRIPTOR.full_name)
            if kind is None:
                raise TypeError(f"cannot submit a {type(item).__name__}; build requests with monge.client.requests")
            getattr(request.items.add(), kind).CopyFrom(item)
        reply = self._call(self._jobs.SubmitJob, request, timeout, retry_when_busy=True)
        return JobInfo.from_proto(reply.job)

    def job(self, job, *, include_results: bool = False, timeout: float | None = None) -> JobInfo:
        """A job's current state."""
        request = jobs_pb2.GetJobRequest(job_id=_job_id(job), include_results=include_results)
        return JobInfo.from_proto(self._call(self._jobs.GetJob, request, timeout).job)

    def jobs(self, state: str | None = None, *, page_size: int = 50, timeout: float | None = None) -> list[JobInfo]:
        """All jobs, newest first (optionally only those in `state`), fetched page by page."""
        state_number = jobs_pb2.JobState.Value(f"JOB_STATE_{state.upper()}") if state else 0
        found, token = [], ""
        while True:
            request = jobs_pb2.ListJobsRequest(state=state_number, page_size=page_size, page_token=token)
            reply = self._call(self._jobs.ListJobs, request, timeout)
            found += [JobInfo.from_proto(job) for job in reply.jobs]
            token = reply.next_page_token
            if not token:
                return found

    def cancel(self, job, *, timeout: float | None = None) -> JobInfo:
        """Stop a queued or running job; its worker is freed within about a second."""
        request = jobs_pb2.CancelJobRequest(job_id=_job_id(job))
        return JobInfo.from_proto(self._call(self._jobs.CancelJob, request, timeout).job)

    def wait(self, job, *, timeout: float | None = None, include_results: bool = True) -> JobInfo:
        """Block until the job is done (or `timeout` passes), then return it with results."""
        timeout = self.timeout if timeout is None else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = 60.0 if deadline is None else deadline - time.monotonic()
            slice_ = max(0.0, min(remaining, 60.0))
            request = jobs_pb2.WaitJobRequest(job_id=_job_id(job), timeout_seconds=slice_,
                                              include_results=include_results)
            info = JobInfo.from_proto(self._call(self._jobs.WaitJob, request, slice_ + 10.0).job)
            if info.done or (deadline is not None and time.monotonic() >= deadline):
                return info

    def watch(self, job, *, timeout: float | None = None):
        """Yield the job at each progress event; the last one is done, with results."""
        request = jobs_pb2.WatchJobRequest(job_id=_job_id(job))
        stream = self._jobs.WatchJob(request, timeout=self.timeout if timeout is None else timeout)
        try:
            for event in stream:
                yield JobInfo.from_proto(event.job)
        except grpc.RpcError as error:
            raise errors.from_rpc_error(error) from None
        finally:
            stream.cancel()

    def result(self, job, *, timeout: float | None = None):
        """Wait for the job; a one-item job gives its result (or raises its error), a
        batch gives a list of `ItemResult`s in item order."""
        info = self.wait(job, timeout=timeout, include_results=True)
        if not info.done:
            raise errors.DeadlineExceededError(f"job {info.job_id} is still {info.state}")
        if info.state != "succeeded":
            raise info.error or errors.MongeError(f"job {info.job_id} {info.state}")
        if info.item_count == 1:
            return info.results[0].unwrap()
        return list(info.results)


_ITEM_FIELDS = {
    field.message_type.full_name: field.name
    for field in jobs_pb2.JobItem.DESCRIPTOR.oneofs_by_name["request"].fields
}


def _job_id(job) -> str:
    return job.job_id if isinstance(job, JobInfo) else str(job)
