"""Probability-flow calls: sampling, log-likelihoods, and score-model training jobs."""

from __future__ import annotations

from monge.client import requests
from monge.client.jobs import JobInfo
from monge.client.results import ProbabilityFlowLikelihood, ProbabilityFlowSamples


class ProbabilityFlowCalls:
    """`Client` methods of the probability-flow family."""

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
        (the built-in MLP with your weights), `requests.exported_model(f_or_exported,
        prediction=..., event_shape=...)` (your own network, exported with jax.export;
        samples then have shape (num_samples, *event_shape)), or a trained model (its
        id, or the `TrainedScoreModel` from `train_score_model`). schedule: "vp", "ve", "edm" or
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
        carries standard errors). dtype defaults to the points' dtype. An exported
        source (`requests.exported_model`) takes points (n, *event_shape) and needs its
        VJP (exported_model serializes it).
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
