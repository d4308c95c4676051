"""`Client`: a typed facade over the generated stub. numpy in, result dataclasses out.

    with Client("127.0.0.1:50051") as c:
        r = c.sinkhorn(x, y, epsilon=0.05)

Every call takes `timeout=` (seconds; the default is the client's `timeout`). Failed
calls raise a `MongeError` subclass carrying the status code and the field at fault.

A server with TLS and tokens:

    Client("solver.example:50051", root_certificates="ca.pem", token=os.environ["MONGE_TOKEN"])
"""

from __future__ import annotations

import os
import random
import time
import uuid
from typing import Sequence

import grpc

from monge.client import errors, options, requests
from monge.client.channel import open_channel
from monge.client.jobs import JobInfo
from monge.client.results import (
    ExactTransportResult,
    ProbabilityFlowLikelihood,
    ProbabilityFlowSamples,
    ServerInfo,
    SinkhornBatchResult,
    SinkhornDivergenceResult,
    SinkhornResult,
    SparsityConstrainedResult,
)
from monge.client.results import RuotQueryResult
from monge.v1.ruot_codec import RuotExport, snapshot_from_proto
from monge.v1 import jobs_pb2, jobs_pb2_grpc, ruot_pb2, service_pb2, service_pb2_grpc

DEFAULT_MAX_MESSAGE_BYTES = 512 << 20


class Client:
    """A connection to a Monge server. Use as a context manager, or call `close()`."""

    def __init__(
        self,
        target: str = "127.0.0.1:50051",
        *,
        timeout: float | None = 600.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, object]] = (),
        root_certificates: bytes | str | os.PathLike | None = None,
        token: str | None = None,
    ):
        """root_certificates: PEM bytes or a file of the CAs to trust; turns on TLS
        (`credentials` is the alternative for other channel credentials). token: the
        bearer token sent on every call, streams included."""
        channel_options = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            *options,
        ]
        self._channel = open_channel(target, options=channel_options, credentials=credentials,
                                     root_certificates=root_certificates, token=token)
        self._stub = service_pb2_grpc.SolverServiceStub(self._channel)
        self._jobs = jobs_pb2_grpc.JobServiceStub(self._channel)
        self.target = target
        self.timeout = timeout

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method, request, timeout, *, retry_when_busy: bool = False):
        """One call; with `retry_when_busy` (only for calls safe to repeat), a full queue
        (RESOURCE_EXHAUSTED) is retried with exponential backoff within the timeout."""
        timeout = self.timeout if timeout is None else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.05
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return method(request, timeout=remaining)
            except grpc.RpcError as rpc_error:
                error = errors.from_rpc_error(rpc_error)
            if not (retry_when_busy and isinstance(error, errors.ResourceExhaustedError)):
                raise error
            delay = min(max(delay * 2, error.retry_after or 0.0), 5.0) * random.uniform(0.8, 1.2)
            if deadline is not None and time.monotonic() + delay >= deadline:
                raise error
            time.sleep(delay)

    def info(self, *, timeout: float | None = None) -> ServerInfo:
        """Version, JAX backend and devices, and the solvers offered."""
        reply = self._call(self._stub.GetServerInfo, service_pb2.GetServerInfoRequest(), timeout)
        return ServerInfo.from_proto(reply)

    def sinkhorn(
        self,
        x=None,
        y=None,
        a=None,
        b=None,
        *,
        cost_matrix=None,
        cost: str | None = None,
        epsilon: float | None = None,
        threshold: float | None = None,
        reg_m: float | tuple[float, float] | None = None,
        max_iterations: int | None = None,
        return_plan: bool | None = None,
        method: str | None = None,
        plan_top_k: int | None = None,
        return_barycentric_map: bool | None = None,
        overrelaxation: str | None = None,
        scaling_stages: int | None = None,
        timeout: float | None = None,
    ) -> SinkhornResult:
        """Entropic OT between the rows of x and y (or under a given cost matrix).

        Settings left None take the server's defaults, those of
        `monge.solvers.SinkhornConfig` (squared Euclidean cost unless `cost` says
        otherwise). threshold bounds the L1 marginal error; epsilon is absolute, in cost units (POT's `reg`); a and b default to uniform;
        reg_m (one number or a (source, target) pair) makes the problem unbalanced with
        POT's KL semantics; `result.cost` is <P, C> of the returned plan.
        method: "auto", "kernel" or "log" Sinkhorn iterations, or "sns"
        (Sinkhorn-Newton-Sparse, balanced problems only; `result.newton` then holds
        its Newton statistics).
        overrelaxation: None (the server's default: "adaptive", plain sweeps for
        "sns"), "adaptive" (a factor in [1, 2) estimated from the error's decay:
        several times fewer iterations at small epsilon) or "off" (plain Sinkhorn
        updates, as POT's and ott-jax's).
        scaling_stages=k: epsilon scaling, solving first at epsilon / 0.3**k, ...,
        epsilon / 0.3, each to a loose tolerance and warm-starting the next (0 or None:
        none; not with "sns").
        Views of the plan, on request: `return_plan` the dense (n, m) plan (small
        problems); `plan_top_k=k` its k largest entries per row as
        `result.sparse_plan` (a `scipy.sparse.coo_array`, any size: computed in blocks
        of rows); `return_barycentric_map` the (n, d) `result.barycentric_map`,
        (P y)_i / (P 1)_i (points only).
        """
        settings = options.given(locals(), requests.SINKHORN_OPTIONS)
        request = requests.sinkhorn(x, y, a, b, cost_matrix=cost_matrix, reg_m=reg_m, **settings)
        reply = self._call(self._stub.Sinkhorn, request, timeout, retry_when_busy=True)
        return SinkhornResult.from_proto(reply)

    def sinkhorn_batch(self, problems, *, timeout: float | None = None, **settings) -> SinkhornBatchResult:
        """Many Sinkhorn problems in one call; results in the order given.

        Each problem is a `requests.sinkhorn(...)` (its own settings), a tuple (x, y) or
        (x, y, a, b), or a dict of `sinkhorn`'s arguments; `settings` (epsilon=...,
        reg_m=..., plan_top_k=...) apply to the tuples and dicts. The server pads
        problems that share their settings, dtype, dimension and size bucket with
        zero-weight points and solves them together as one vectorised program (which
        changes no answer); the others one after another.
        """
        request = requests.sinkhorn_batch(problems, **settings)
        reply = self._call(self._stub.SinkhornBatch, request, timeout, retry_when_busy=True)
        return SinkhornBatchResult.from_proto(reply)

    def sinkhorn_divergence(
        self,
        x,
        y,
        a=None,
        b=None,
        *,
        cost: str = "sqeuclidean",
        epsilon: float = 0.05,
        threshold: float = 1e-6,
        max_iterations: int = 10_000,
        reg_m: float | tuple[float, float] | None = None,
        timeout: float | None = None,
    ) -> SinkhornDivergenceResult:
        """The debiased Sinkhorn divergence OT(a, b) - (OT(a, a) + OT(b, b)) / 2 between
        the rows of x and y (OT the regularised objective; GeomLoss's and ott-jax's
        `sinkhorn_divergence`). Balanced: a and b (uniform by default) must have equal
        totals. epsilon is absolute, in cost units. With `reg_m` (one number or a
        (source, target) pair) it is unbalanced, with ott-jax's semantics: its tau =
        reg_m / (reg_m + epsilon), plus epsilon (|a| - |b|)^2 / 2.
        """
        request = requests.sinkhorn_divergence(
            x, y, a, b, cost=cost, epsilon=epsilon, threshold=threshold, max_iterations=max_iterations,
            reg_m=reg_m,
        )
        reply = self._call(self._stub.SinkhornDivergence, request, timeout, retry_when_busy=True)
        return SinkhornDivergenceResult.from_proto(reply)

    def exact_transport(
        self,
        x=None,
        y=None,
        a=None,
        b=None,
        *,
        cost_matrix=None,
        cost: str | None = None,
        p: float | None = None,
        method: str = "auto",
        max_iterations: int | None = None,
        timeout: float | None = None,
    ) -> ExactTransportResult:
        """Exact (unregularised) OT between the rows of x and y, or under a cost matrix.

        The cost is squared Euclidean (`cost="sqeuclidean"`, the default: `distance`
        is W_2), Euclidean (`cost="euclidean"`: W_1), or |x - y|^p for W_p with `p`
        (then leave `cost` unset). a and b default to uniform and must have equal
        totals. method: "auto" (sorting for 1-D points, else network simplex),
        "network_simplex" or "sorting_1d"; max_iterations is the network simplex's
        pivot cap. `result.plan` is a `scipy.sparse.coo_array`.
        """
        request = requests.exact_transport(
            x, y, a, b, cost_matrix=cost_matrix, cost=cost, p=p, method=method,
            max_iterations=max_iterations,
        )
        reply = self._call(self._stub.ExactTransport, request, timeout, retry_when_busy=True)
        return ExactTransportResult.from_proto(reply)

    def sparsity_constrained(
        self,
        x=None,
        y=None,
        a=None,
        b=None,
        *,
        cost_matrix=None,
        cost: str = "sqeuclidean",
        k: int = 2,
        gamma: float = 1.0,
        formulation: str = "semi_dual",
        threshold: float = 1e-8,
        max_iterations: int = 10_000,
        timeout: float | None = None,
    ) -> SparsityConstrainedResult:
        """Quadratically regularised OT with at most k nonzeros per column of the plan
        (POT's `smooth_ot_semi_dual(..., reg_type="sparsity_constrained", max_nz=k)`,
        gamma its `reg`). a and b must have equal totals; formulation: "semi_dual" or
        "dual". `result.plan` is a `scipy.sparse.coo_array`.
        """
        request = requests.sparsity_constrained(
            x, y, a, b, cost_matrix=cost_matrix, cost=cost, k=k, gamma=gamma,
            formulation=formulation, threshold=threshold, max_iterations=max_iterations,
        )
        reply = self._call(self._stub.SparsityConstrainedTransport, request, timeout, retry_when_busy=True)
        return SparsityConstrainedResult.from_proto(reply)

    def sample_probability_flow(
        self,
        source,
        *,
        num_samples: int = 1000,
        schedule="vp",
        sampler: str = "heun",
        steps: int | None = None,
        nfe: int | None = None,
        time_grid: str | None = None,
        seed: int = 0,
        dtype="float32",
        rtol: float | None = None,
        atol: float | None = None,
        prior: str = "noise",
        t_start: float | None = None,
        t_end: float | None = None,
        return_trajectory: bool = False,
        log_likelihood: str | bool | None = None,
        num_probes: int | None = None,
        likelihood_rtol: float | None = None,
        likelihood_atol: float | None = None,
        timeout: float | None = None,
    ) -> ProbabilityFlowSamples:
        """Samples of a diffusion model by integrating its probability-flow ODE from
        noise (t_start) to data (t_end).

        source: `requests.gaussian(mean, cov)` / `requests.gaussian_mixture(means, covs,
        weights)` (exact score), `requests.mlp_model(weights, hidden=..., prediction=...)`
        (the built-in MLP with your weights), or a trained model (its id, or the
        `TrainedScoreModel` from `train_score_model`). schedule: "vp", "ve", "edm" or
        `requests.schedule(kind, **parameters)`. sampler: "euler", "heun", "ddim",
        "dpm_solver_pp_2m", "dpm_solver_pp_3m" or "dopri5" (rtol, atol). Budget: `steps`
        or `nfe` score evaluations (default 20 steps). time_grid: "uniform", "log_snr",
        "karras" (default: the sampler's for the schedule). The PRNG key is
        `jax.random.key(seed)`: the same request gives the same samples as
        `monge.solvers.pfode.sample` in-process. log_likelihood: "exact" (or True) or
        "hutchinson" (num_probes) also returns log p_{t_end} of every sample.
        """
        request = requests.sample_probability_flow(
            source, num_samples=num_samples, schedule=schedule, sampler=sampler, steps=steps, nfe=nfe,
            time_grid=time_grid, seed=seed, dtype=dtype, rtol=rtol, atol=atol, prior=prior, t_start=t_start,
            t_end=t_end, return_trajectory=return_trajectory, log_likelihood=log_likelihood,
            num_probes=num_probes, likelihood_rtol=likelihood_rtol, likelihood_atol=likelihood_atol,
        )
        reply = self._call(self._stub.SampleProbabilityFlow, request, timeout, retry_when_busy=True)
        return ProbabilityFlowSamples.from_proto(reply)

    def probability_flow_log_likelihood(
        self,
        source,
        points,
        *,
        schedule="vp",
        divergence: str = "exact",
        num_probes: int | None = None,
        rtol: float | None = None,
        atol: float | None = None,
        seed: int = 0,
        dtype=None,
        prior: str = "noise",
        t_start: float | None = None,
        t_end: float | None = None,
        max_steps: int | None = None,
        timeout: float | None = None,
    ) -> ProbabilityFlowLikelihood:
        """log p_{t_end}(points) under a diffusion model (source and schedule as in
        `sample_probability_flow`), by the instantaneous change of variables along the
        probability-flow ODE (adaptive Dopri5, rtol/atol). divergence: "exact" (d
        Jacobian-vector products) or "hutchinson" (num_probes random probes; the result
        carries standard errors). dtype defaults to the points' dtype.
        """
        request = requests.probability_flow_log_likelihood(
            source, points, schedule=schedule, divergence=divergence, num_probes=num_probes, rtol=rtol,
            atol=atol, seed=seed, dtype=dtype, prior=prior, t_start=t_start, t_end=t_end, max_steps=max_steps,
        )
        reply = self._call(self._stub.ProbabilityFlowLogLikelihood, request, timeout, retry_when_busy=True)
        return ProbabilityFlowLikelihood.from_proto(reply)

    def train_score_model(
        self,
        samples,
        *,
        hidden=(128, 128),
        time_embedding_dim: int = 16,
        prediction: str = "noise",
        schedule="vp",
        steps: int = 2000,
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        t_min: float | None = None,
        t_max: float | None = None,
        report_every: int = 100,
        seed: int = 0,
        request_id: str | None = None,
        timeout: float | None = None,
    ) -> JobInfo:
        """Submit a denoising-score-matching job for the built-in MLP on `samples` (n, d)
        and return at once. Follow it with `watch` (progress carries `iteration` and
        `loss`); `result(job)` gives a `TrainedScoreModel` whose `model_id` later
        sampling requests may name as their source. Cancelling stops training at the
        next report. Training runs in the samples' dtype: send float32 for speed.
        """
        request = requests.train_score_model(
            samples, hidden=hidden, time_embedding_dim=time_embedding_dim, prediction=prediction,
            schedule=schedule, steps=steps, batch_size=batch_size, learning_rate=learning_rate, t_min=t_min,
            t_max=t_max, report_every=report_every, seed=seed,
        )
        return self.submit(request, request_id=request_id, timeout=timeout)

    # -- Var-RUOT ----------------------------------------------------------------------

    def ruot_fit(self, snapshots, *, growth: str = "quadratic", laplacian: str = "auto",
                 reconstruction: str | None = None, request_id: str | None = None, timeout: float | None = None,
                 **settings) -> JobInfo:
        """Submit a Var-RUOT fit as a job and return at once.

        snapshots: [(time, points (n, d)[, mass]), ...] or `RuotSnapshot`s, at least two,
        times increasing; mass is the total mass (a cell count; default n). growth:
        "quadratic" (psi = g^2/2), "paper" (|g|^(2/15)) or "none". Settings left out take
        the paper's values for the growth penalty: alpha, sigma, dt, gamma_hjb,
        gamma_action, gamma_mass, ot_epsilon, width, residual_blocks, steps,
        report_every, particles, learning_rate, weight_decay, clip_norm (0: off), seed,
        growth_linear_below, laplacian ("auto", "exact", "hutchinson"),
        laplacian_probes, laplacian_max_exact_dim. reconstruction: the distance
        between simulated particles and each snapshot, "energy" (the energy distance)
        or "sinkhorn" (the debiased Sinkhorn divergence at ot_epsilon, relative to the
        data's total variance; default 0.01); unset, the energy distance unless
        ot_epsilon is given. The energy distance fitted the 2-D gene data better, the
        Sinkhorn divergence the 10-D EMT data (at about twice the time per step).

        Follow the job with `watch` (progress: `iteration` = steps done, `loss`, and
        `loss_terms` {ot, mass, hjb, action}, every `report_every` steps); `result(job)`
        gives a `RuotFitResult` with the stored `model_id` and the model, exported.
        Cancelling stops training after the block of steps in progress.
        """
        request = requests.ruot_fit(snapshots, growth=growth, laplacian=laplacian, reconstruction=reconstruction,
                                    **settings)
        return self.submit(request, request_id=request_id, timeout=timeout)

    def ruot_query(
        self,
        model,
        *,
        trajectories=None,
        points=None,
        times=None,
        hjb_residual: bool = False,
        mass_times=None,
        action=None,
        population_time: float | None = None,
        initial_points=None,
        seed: int = 0,
        timeout: float | None = None,
    ) -> RuotQueryResult:
        """Ask a fitted Var-RUOT model; any combination of queries in one call.

        model: a model id on this server, a `RuotExport` (sent inline: works on any
        server), or a `RuotFitResult`. trajectories: True (the snapshot times) or a list
        of increasing times -> points, weights, mass, growth and action. points (n, d)
        with times (scalar or (n,)) -> lambda, velocity, growth (and the HJB residual
        with hjb_residual=True). mass_times -> mass relative to the initial mass.
        action: True (up to the last snapshot) or an end time. population_time -> the
        predicted population then. Simulations start from `initial_points` (default the
        first snapshot's cells) at the first snapshot time; `seed` draws their noise,
        as `seed=` of `monge.solvers.ruot`'s functions does in-process.
        """
        request = requests.ruot_query(
            model, trajectories=trajectories, points=points, times=times, hjb_residual=hjb_residual,
            mass_times=mass_times, action=action, population_time=population_time,
            initial_points=initial_points, seed=seed,
        )
        reply = self._call(self._stub.QueryRUOT, request, timeout, retry_when_busy=True)
        return RuotQueryResult.from_proto(reply)

    def ruot_export(self, model_id: str, *, include_snapshots: bool = False,
                    timeout: float | None = None) -> RuotExport:
        """A stored model's arrays and settings (and its training snapshots when asked):
        `.save(path)` keeps it, `ruot_query` on any server takes it inline, and
        `monge.solvers.ruot.RuotModel.from_arrays(e.arrays, e.settings)` loads it in-process."""
        request = ruot_pb2.ExportRUOTModelRequest(model_id=model_id, include_snapshots=include_snapshots)
        reply = self._call(self._stub.ExportRUOTModel, request, timeout, retry_when_busy=True)
        snapshots = [snapshot_from_proto(s, f"snapshots[{k}]") for k, s in enumerate(reply.snapshots)]
        return RuotExport.from_proto(reply.model, model_id=model_id, snapshots=snapshots)

    # -- jobs ------------------------------------------------------------------------

    def submit(self, requests_, *, request_id: str | None = None, timeout: float | None = None) -> JobInfo:
        """Queue one request (built with `monge.client.requests`) or a list of them as one
        job, and return at once. The same `request_id` always names the same job; one is
        generated when not given, so retries never run the work twice."""
        items = [requests_] if not isinstance(requests_, (list, tuple)) else list(requests_)
        request = jobs_pb2.SubmitJobRequest(request_id=request_id or uuid.uuid4().hex)
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

