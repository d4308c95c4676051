"""Monge's solvers: pure, jit-compiled functions of arrays and frozen configs.

No I/O and no gRPC here; the service and users' pipelines call the same functions.
Every family's entry point, config and output is reachable from here:

    from monge.solvers import sinkhorn, SNSConfig, wasserstein, sample, RuotConfig, fedwad
    fedwad.fedwad(x, y)            # a family whose entry has its name: the module is exported

Static OT shares `OTProblem` (`problem`), `Geometry` and one `Status`. The families
other than Sinkhorn load on first use, so importing this package stays cheap.
"""

import importlib

from monge.solvers.geometry import Geometry
from monge.solvers.status import Status, status_message
from monge.solvers.problem import OTProblem
from monge.solvers.sinkhorn import (
    SinkhornConfig, SinkhornDivergenceOutput, SinkhornOutput, sinkhorn, sinkhorn_divergence, solve_batch,
)

# name -> the module (under monge.solvers) it comes from; None: the family module itself
# (a submodule import binds that name on this package, so it can only be the module).
_FAMILIES = {
    "sns": None, "SNSConfig": "sns", "SNSOutput": "sns",
    "exact": None, "ExactConfig": "exact", "ExactOutput": "exact", "emd": "exact", "wasserstein": "exact",
    "sparsity_constrained": None, "SparsityConstrainedConfig": "sparsity_constrained",
    "SparsityConstrainedOutput": "sparsity_constrained",
    "fedwad": None, "pairwise_fedwad": "fedwad", "FedWadConfig": "fedwad", "FedWadOutput": "fedwad",
    "PairwiseFedWadOutput": "fedwad",
    "pfode": None, "sample": "pfode", "log_likelihood": "pfode", "SampleOutput": "pfode",
    "LikelihoodOutput": "pfode", "train_dsm": "pfode", "DSMConfig": "pfode", "DSMOutput": "pfode",
    "ruot": None, "RuotConfig": "ruot", "RuotModel": "ruot",
}

__all__ = [
    "Geometry", "OTProblem", "SinkhornConfig", "SinkhornDivergenceOutput", "SinkhornOutput", "Status",
    "sinkhorn", "sinkhorn_divergence", "solve_batch", "status_message", *_FAMILIES,
]


def __getattr__(name):
    if name not in _FAMILIES:
        raise AttributeError(f"module 'monge.solvers' has no attribute {name!r}")
    module = importlib.import_module(f"monge.solvers.{_FAMILIES[name] or name}")
    value = module if _FAMILIES[name] is None else getattr(module, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_FAMILIES))
