"""Probability-flow ODE sampling and likelihoods: one family, two entry points.

    out = sample(source, schedule, sampler, num_samples=1000, key=jax.random.key(0), nfe=20)
    out.samples, out.nfe, out.status, out.trajectory, out.log_prob

    lik = log_likelihood(source, schedule, points, divergence=HutchinsonDivergence(16), key=key)
    lik.log_prob, lik.stderr

Composed from small strategy objects (all `equinox.Module`s, frozen, pytrees):
    schedule   VPSchedule | VESchedule | EDMSchedule                 (schedules)
    grid       UniformTimeGrid | LogSNRTimeGrid | KarrasTimeGrid      (schedules)
    source     GaussianMixture | MLPModel(architecture, weights, prediction)
               | FunctionModel(fn, event_shape, prediction) | FunctionModel.from_exported(exported,
                 prediction)                                         (sources)
    sampler    Euler | Heun | ExponentialEuler | DPMSolverPlusPlus(order) | Dopri5 | Diffrax
    prior      NoisePrior | MarginalPrior
    divergence ExactDivergence | HutchinsonDivergence
Training a model: `train_dsm(samples, architecture, prediction, schedule, DSMConfig(...),
key=..., callback=...) -> DSMOutput(weights, losses, final_loss)` (train).

Static versus traced: the number of samples, steps, probes, dtype and the sampler's
structure are static; schedule parameters, mixture parameters, model weights, times and
tolerances are traced, so one compiled program serves every request of a shape.

The entry points and their runs live in `flow`; the strategy objects in `schedules`,
`sources` and `samplers`; step-size control in `adaptive`; closed-form checks in `metrics`.
"""

from monge.solvers.pfode.flow import (
    AbstractDivergence,
    AbstractPrior,
    ExactDivergence,
    grid_ends_at_zero,
    HutchinsonDivergence,
    LIKELIHOOD_MAX_STEPS,
    LikelihoodOutput,
    LikelihoodRun,
    LikelihoodState,
    log_likelihood,
    MarginalPrior,
    NoisePrior,
    sample,
    SampleOutput,
    SampleRun,
)
from monge.solvers.pfode.samplers import (
    SAMPLERS,
    AbstractExponentialSampler,
    AbstractFixedGridSampler,
    AbstractSampler,
    Diffrax,
    Dopri5,
    DPMSolverPlusPlus,
    Euler,
    ExponentialEuler,
    Heun,
    IntegrationState,
)
from monge.solvers.pfode.schedules import (
    SCHEDULES,
    TIME_GRIDS,
    AbstractSchedule,
    AbstractTimeGrid,
    EDMSchedule,
    KarrasTimeGrid,
    LogSNRTimeGrid,
    UniformTimeGrid,
    VESchedule,
    VPSchedule,
)
from monge.solvers.pfode.sources import (
    PREDICTIONS,
    AbstractPrediction,
    AbstractScoreSource,
    DataPrediction,
    FunctionModel,
    GaussianMixture,
    MLPArchitecture,
    MLPModel,
    NoisePrediction,
    ScorePrediction,
    VelocityPrediction,
)
from monge.solvers.pfode.train import (
    DSMConfig,
    DSMOutput,
    train_dsm,
)

__all__ = [
    "AbstractDivergence",
    "AbstractExponentialSampler",
    "AbstractFixedGridSampler",
    "AbstractPrediction",
    "AbstractPrior",
    "AbstractSampler",
    "AbstractSchedule",
    "AbstractScoreSource",
    "AbstractTimeGrid",
    "DataPrediction",
    "Diffrax",
    "Dopri5",
    "DPMSolverPlusPlus",
    "DSMConfig",
    "DSMOutput",
    "EDMSchedule",
    "Euler",
    "ExactDivergence",
    "ExponentialEuler",
    "FunctionModel",
    "GaussianMixture",
    "grid_ends_at_zero",
    "Heun",
    "HutchinsonDivergence",
    "IntegrationState",
    "KarrasTimeGrid",
    "LIKELIHOOD_MAX_STEPS",
    "LikelihoodOutput",
    "LikelihoodRun",
    "LikelihoodState",
    "log_likelihood",
    "LogSNRTimeGrid",
    "MarginalPrior",
    "MLPArchitecture",
    "MLPModel",
    "NoisePrediction",
    "NoisePrior",
    "PREDICTIONS",
    "sample",
    "SampleOutput",
    "SAMPLERS",
    "SampleRun",
    "SCHEDULES",
    "ScorePrediction",
    "TIME_GRIDS",
    "train_dsm",
    "UniformTimeGrid",
    "VelocityPrediction",
    "VESchedule",
    "VPSchedule",
]
