"""Var-RUOT calls: fit jobs, queries of a fitted model, exports."""

from __future__ import annotations

from monge.client import cells, requests
from monge.client.jobs import JobInfo
from monge.client.results import RuotQueryResult
from monge.v1 import ruot_pb2
from monge.v1.ruot_codec import RuotExport, snapshot_from_proto


class RuotCalls:
    """`Client` methods of the Var-RUOT family."""

    def ruot_fit(self, snapshots, *, time_key: str | None = None, embedding: str | None = None,
                 mass_key: str | None = None, dims: int | None = None, growth: str = "quadratic",
                 laplacian: str = "auto", reconstruction: str | None = None, request_id: str | None = None,
                 timeout: float | None = None, **settings) -> JobInfo:
        """Submit a Var-RUOT fit as a job and return at once.

        snapshots: [(time, points (n, d)[, mass]), ...] or `RuotSnapshot`s, at least two,
        times increasing; mass is the total mass (a cell count; default n). Or an AnnData
        (or the path of an .h5ad file) with `time_key` (the obs column of each cell's
        time: numeric, or categories that are numbers), `embedding` (the obsm key of the
        coordinates, default "X_pca", or "X"), optionally `dims` (its first N columns) and
        `mass_key` (an obs column of per-cell weights, summed per time: each snapshot's
        mass; default the cell counts); see `monge.client.cells`, whose
        `AnnDataInputError` (a ValueError) names the key at fault. growth:
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
        if cells.is_anndata(snapshots):
            snapshots = cells.snapshots(snapshots, time_key=time_key, embedding=embedding, mass_key=mass_key,
                                        dims=dims)
        elif any(value is not None for value in (time_key, embedding, mass_key, dims)):
            raise TypeError("time_key, embedding, mass_key and dims apply only to an AnnData or an .h5ad path")
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
