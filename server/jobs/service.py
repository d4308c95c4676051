"""The JobService servicer: thin handlers over `jobs.JobManager`, each passing the
caller's identity (from its bearer token) so that a caller sees only its own jobs."""

from __future__ import annotations

import asyncio

import grpc

from monge.server.auth import Authenticator
from monge.server.errors import rpc, to_status
from monge.server.jobs.manager import JobManager
from monge.v1 import jobs_pb2, jobs_pb2_grpc


class JobServicer(jobs_pb2_grpc.JobServiceServicer):
    def __init__(self, manager: JobManager, authenticator: Authenticator | None = None):
        self._jobs = manager
        self._auth = authenticator or Authenticator({})

    @rpc
    async def SubmitJob(self, request, context):
        return jobs_pb2.SubmitJobResponse(job=self._jobs.submit(request, self._auth.owner(context)))

    @rpc
    async def GetJob(self, request, context):
        return jobs_pb2.GetJobResponse(job=self._jobs.get(request.job_id, request.include_results,
                                                      self._auth.owner(context)))

    @rpc
    async def ListJobs(self, request, context):
        jobs, token = self._jobs.list(request.state, request.page_size, request.page_token,
                                      self._auth.owner(context))
        return jobs_pb2.ListJobsResponse(jobs=jobs, next_page_token=token)

    @rpc
    async def CancelJob(self, request, context):
        return jobs_pb2.CancelJobResponse(job=await self._jobs.cancel(request.job_id, self._auth.owner(context)))

    @rpc
    async def WaitJob(self, request, context):
        timeout = request.timeout_seconds if request.timeout_seconds > 0 else 60.0
        remaining = context.time_remaining()
        if remaining is not None:
            timeout = min(timeout, max(0.0, remaining - 0.05))  # answer before the deadline
        job = await self._jobs.wait(request.job_id, timeout, request.include_results, self._auth.owner(context))
        return jobs_pb2.WaitJobResponse(job=job)

    async def WatchJob(self, request, context):
        try:
            async for job in self._jobs.watch(request.job_id, self._auth.owner(context)):
                yield jobs_pb2.WatchJobResponse(job=job)
        except (asyncio.CancelledError, grpc.aio.AbortError):
            raise
        except Exception as error:  # noqa: BLE001 - same mapping as the unary handlers
            await context.abort_with_status(to_status(error, "WatchJob"))
