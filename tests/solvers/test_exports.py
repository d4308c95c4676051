"""`monge.solvers` reaches every family's entry point, config and output."""

import importlib
import subprocess
import sys

import monge.solvers


def test_every_exported_name_resolves():
    for name in monge.solvers.__all__:
        assert getattr(monge.solvers, name) is not None, name


def test_families_are_their_modules_whatever_was_imported_first():
    for family in ("sns", "exact", "sparsity_constrained", "fedwad", "pfode", "ruot"):
        assert getattr(monge.solvers, family) is importlib.import_module(f"monge.solvers.{family}")
    assert monge.solvers.sinkhorn is monge.solvers.sinkhorn  # the function, bound at import
    assert callable(monge.solvers.sinkhorn) and monge.solvers.sinkhorn.__module__ == "monge.solvers.sinkhorn.solver"


def test_entry_points_are_the_families_own():
    from monge.solvers import exact, pfode, ruot, sns

    assert monge.solvers.SNSConfig is sns.SNSConfig
    assert monge.solvers.wasserstein is exact.wasserstein
    assert monge.solvers.sample is pfode.sample and monge.solvers.DSMConfig is pfode.DSMConfig
    assert monge.solvers.RuotConfig is ruot.RuotConfig and monge.solvers.RuotModel is ruot.RuotModel


def test_importing_the_package_leaves_the_other_families_unloaded():
    code = ("import sys, monge.solvers; "
            "print(sorted(m for m in ('monge.solvers.pfode', 'monge.solvers.ruot', 'monge.solvers.fedwad') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
