"""Var-RUOT: regularised unbalanced optimal transport through snapshots, one network.

Minimise the action  int_0^T int (|u|^2 / 2 + alpha psi(g)) rho dx dt  subject to
d rho/dt = -div(rho u) + (sigma^2 / 2) Laplacian rho + g rho, rho matching unnormalised
snapshots. The optimality conditions u = grad lambda and alpha psi'(g) = lambda make a
scalar network lambda(x, t) the whole search space (`model`); the loss is

    sum_k [ D(particles_k, snapshot_k) + gamma_mass (mass_k - N_k / N_0)^2 ]
    + gamma_hjb * mean HJB residual^2 along the particles + gamma_action * action,

with D the `config.reconstruction` between the weight-normalised particles and the
snapshot: the energy distance by default (unbiased for any particle batch, no inner
solver), or our debiased Sinkhorn divergence (differentiable in points and weights by
the envelope theorem). The learning rate follows `config.optimizer.schedule`
(warm-up, then cosine decay), and `config.pretrain_fraction` of the steps can fit the
snapshots alone before the HJB and action terms join.

    model = fit([(0.0, x0), (1.0, x1, 2.0 * len(x1))], RuotConfig(steps=500),
                progress=lambda step, losses: print(step, losses) or True)
    pop = predict(model, 0.5)                       # points, weights, mass at t = 0.5
    arrays, settings = model.to_arrays(), model.settings_dict()
    same = RuotModel.from_arrays(arrays, settings)
    report = hold_out_report(model, 0.5, x_half, 1.5, (0.0, x0), (1.0, x1))  # a fit without t = 0.5

Training runs as jitted blocks of `report_every` steps (`lax.scan`); between blocks the
host calls `progress(step, losses)`, and a `False` return stops training. A
`should_stop()` callable, when given, is asked before every step, so a stop is heard
within one step (the service uses it for cancellation and its wall-time limit; the
steps then run one compiled step at a time, `training.run_block`). Queries are pure
functions of the model.

The settings and strategy objects live in `config`, the network and its dynamics in
`model`, training and the queries in `solver`.
"""

from monge.solvers.ruot.config import (
    AbstractGrowth,
    AbstractLaplacian,
    AbstractSchedule,
    ConstantSchedule,
    WarmupCosineSchedule,
    AbstractReconstruction,
    EnergyDistance,
    SinkhornDivergence,
    AutoLaplacian,
    ExactLaplacian,
    HutchinsonLaplacian,
    NetworkConfig,
    NoGrowth,
    OptimizerConfig,
    PaperGrowth,
    QuadraticGrowth,
    RuotConfig,
    Snapshot,
    paper_config,
    SnapshotData,
    validate_snapshots,
)
from monge.solvers.ruot.model import (
    RuotModel,
    RuotSettings,
    Fields,
    Normaliser,
    init_params,
    simulate,
    time_grid,
    fields,
    hjb_residual,
    potential,
)
from monge.solvers.ruot.solver import (
    Population,
    Trajectories,
    LOSS_NAMES,
    fit,
    potential_at,
    velocity_at,
    growth_at,
    hjb_residual_at,
    trajectories,
    predict,
    mass_over_time,
    path_action,
)
from monge.solvers.ruot.evaluation import HoldOutReport, hold_out_report, mccann_interpolation

__all__ = [
    "AbstractGrowth",
    "AbstractLaplacian",
    "AbstractSchedule",
    "ConstantSchedule",
    "WarmupCosineSchedule",
    "AbstractReconstruction",
    "EnergyDistance",
    "SinkhornDivergence",
    "AutoLaplacian",
    "ExactLaplacian",
    "HutchinsonLaplacian",
    "NetworkConfig",
    "NoGrowth",
    "OptimizerConfig",
    "PaperGrowth",
    "QuadraticGrowth",
    "RuotConfig",
    "RuotModel",
    "RuotSettings",
    "Snapshot",
    "Population",
    "Trajectories",
    "LOSS_NAMES",
    "fit",
    "paper_config",
    "potential_at",
    "velocity_at",
    "growth_at",
    "hjb_residual_at",
    "trajectories",
    "predict",
    "mass_over_time",
    "path_action",
    "HoldOutReport",
    "hold_out_report",
    "mccann_interpolation",
    "Fields",
    "Normaliser",
    "SnapshotData",
    "validate_snapshots",
    "init_params",
    "simulate",
    "time_grid",
    "fields",
    "hjb_residual",
    "potential",
]
