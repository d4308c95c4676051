"""What the `monge` subcommands share: reading problems, writing results, one-line errors.

A problem file is an .npz with arrays `x` and `y` (points, (n, d) and (m, d)) and
optionally `a`, `b` (weights), or `cost` (an (n, m) matrix) instead of the points.
A result file is an .npz of the result's numbers and arrays; a sparse plan is saved as
`plan_rows`, `plan_cols`, `plan_values` and `plan_shape` (coordinates), a dense one as `plan`;
a Sinkhorn plan's top entries per row as `sparse_plan_rows`, ... (the same four), its
barycentric map as `barycentric_map`; a trained score model's weights as
`weights.layers.0.w`, ...
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import numpy as np

from monge.client.errors import MongeError
from monge.client import results

PROBLEM_KEYS = ("x", "y", "a", "b", "cost")


class InputError(Exception):
    """A local file that cannot be used; the message is one line for the user."""


def load_array(path: str | None, what: str):
    """An .npy argument (None when not given); SystemExit with one line if unreadable."""
    if path is None:
        return None
    try:
        return np.load(path)
    except (OSError, ValueError) as error:
        raise SystemExit(f"monge: cannot read {what} from {path}: {error}") from None


@dataclasses.dataclass(frozen=True)
class Problem:
    """The arrays of one problem, as the client's calls take them."""

    x: np.ndarray | None = None
    y: np.ndarray | None = None
    a: np.ndarray | None = None
    b: np.ndarray | None = None
    cost_matrix: np.ndarray | None = None

    def arrays(self) -> dict:
        return {"x": self.x, "y": self.y, "a": self.a, "b": self.b, "cost_matrix": self.cost_matrix}


def load_problem(path: str) -> Problem:
    """The problem in an .npz file; InputError naming what is wrong."""
    try:
        with open(path, "rb") as file:
            magic = file.read(4)
    except OSError as error:
        raise InputError(f"cannot read: {error.strerror or error}") from None
    if magic != b"PK\x03\x04":
        raise InputError("not an .npz archive (expected arrays x, y[, a, b] or cost)")
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {key: stored[key] for key in stored.files}
    except Exception as error:  # noqa: BLE001 - a corrupt archive raises zipfile, OS or value errors
        raise InputError(f"cannot read: {type(error).__name__}: {error}") from None
    unknown = sorted(set(arrays) - set(PROBLEM_KEYS))
    if unknown:
        raise InputError(f"unexpected arrays {unknown}; a problem has x, y[, a, b] or cost")
    if "cost" in arrays and ("x" in arrays or "y" in arrays):
        raise InputError("give points (x, y) or a cost matrix (cost), not both")
    if "cost" not in arrays and not ("x" in arrays and "y" in arrays):
        raise InputError("needs arrays x and y, or cost")
    return Problem(arrays.get("x"), arrays.get("y"), arrays.get("a"), arrays.get("b"), arrays.get("cost"))


def problem_from_args(args) -> Problem:
    """`--problem P.npz`, or `--x/--y/--a/--b/--cost-matrix` .npy files."""
    if args.problem:
        if any(getattr(args, k) is not None for k in ("x", "y", "a", "b", "cost_matrix")):
            raise SystemExit("monge: give --problem, or --x/--y/--a/--b/--cost-matrix, not both")
        try:
            return load_problem(args.problem)
        except InputError as error:
            raise SystemExit(f"monge: {args.problem}: {error}") from None
    problem = Problem(load_array(args.x, "--x"), load_array(args.y, "--y"), load_array(args.a, "--a"),
                      load_array(args.b, "--b"), load_array(args.cost_matrix, "--cost-matrix"))
    if problem.cost_matrix is None and (problem.x is None or problem.y is None):
        raise SystemExit("monge: give --x and --y, or --cost-matrix, or --problem")
    return problem


def error_line(error: MongeError, strip_field_prefix: str = "") -> str:
    """A failed call as one line: `CODE: field: description; ...` (or `CODE: message`).
    `strip_field_prefix` drops a prefix such as `items[2].sinkhorn.` from field names."""
    if error.violations:
        detail = "; ".join(f"{v.field.removeprefix(strip_field_prefix)}: {v.description}"
                           for v in error.violations)
    else:
        detail = error.message
    return f"{error.code.name}: {' '.join(detail.split())}"


def summary(result) -> str:
    """One line for a result: its cost and how the solve went."""
    if isinstance(result, results.SinkhornDivergenceResult):
        terms = ", ".join(f"OT_{name} {getattr(result, name).objective:.10g}" for name in ("xy", "xx", "yy"))
        state = "converged" if result.converged else "not converged"
        return f"divergence {result.divergence:.10g}, {state} ({terms})"
    if isinstance(result, results.SinkhornBatchResult):
        converged = sum(one.converged for one in result)
        return (f"{len(result)} problems, {converged} converged; costs "
                + " ".join(f"{one.cost:.6g}" for one in result))
    d = result.diagnostics
    if isinstance(result, results.ProbabilityFlowSamples):
        shape = "" if result.samples is None else f"{result.samples.shape[0]} samples of dimension " \
                                                  f"{result.samples.shape[1]}, "
        return f"{shape}{result.nfe} score evaluations, {d.status}"
    if isinstance(result, results.ProbabilityFlowLikelihood):
        count = "" if result.log_likelihood is None else f"{result.log_likelihood.shape[0]} log-likelihoods, "
        return f"{count}{result.nfe} evaluations, {d.status}"
    if isinstance(result, results.TrainedScoreModel):
        return (f"model {result.model_id or '(not stored)'}, final loss {result.final_loss:.6g}, "
                f"{d.status} after {d.iterations} steps")
    if isinstance(result, results.RuotFitResult):
        losses = "  ".join(f"{name} {value:.4g}" for name, value in result.final_losses.items())
        model = f"model {result.model_id}" if result.model_id else "no model stored"
        return f"{model}: {result.status} after {d.iterations} steps in {d.solve_seconds:.1f} s; {losses}"
    if isinstance(result, results.ExactTransportResult):
        distance = "" if result.distance is None else f", distance {result.distance:.10g}"
        return (f"cost {result.cost:.10g}{distance}, {d.status} ({result.method}), "
                f"marginal error {result.marginal_error:.3g}, {result.plan.nnz} nonzeros")
    if isinstance(result, results.SparsityConstrainedResult):
        return (f"cost {result.cost:.10g}, {d.status} after {d.iterations} iterations, "
                f"marginal error {result.marginal_error:.3g}, "
                f"at most {result.max_nonzeros_per_column} nonzeros per column")
    return (f"cost {result.cost:.10g}, {d.status} after {d.iterations} iterations, "
            f"marginal error {result.marginal_error:.3g}")


def _sparse(arrays: dict, plan, name: str = "plan") -> None:
    arrays.update({f"{name}_rows": np.asarray(plan.row), f"{name}_cols": np.asarray(plan.col),
                   f"{name}_values": np.asarray(plan.data), f"{name}_shape": np.asarray(plan.shape, dtype=np.int64)})


def _probability_flow_arrays(result) -> dict:
    d = result.diagnostics
    if isinstance(result, results.TrainedScoreModel):
        arrays = {"model_id": np.str_(result.model_id), "final_loss": np.float64(result.final_loss),
                  "iterations": np.int64(d.iterations), "status": np.str_(d.status),
                  "solve_seconds": np.float64(d.solve_seconds), "prediction": np.str_(result.prediction),
                  "hidden": np.asarray(result.hidden, dtype=np.int64),
                  "time_embedding_dim": np.int64(result.time_embedding_dim)}
        if result.losses is not None:
            arrays["losses"] = result.losses
        arrays.update({f"weights.{name}": w for name, w in result.weights.items()})
        return arrays
    arrays = {"nfe": np.int64(result.nfe), "status": np.str_(d.status), "ok": np.bool_(d.ok),
              "solve_seconds": np.float64(d.solve_seconds)}
    names = (("samples", "times", "trajectory", "log_likelihood", "log_likelihood_stderr")
             if isinstance(result, results.ProbabilityFlowSamples)
             else ("log_likelihood", "standard_error", "prior_log_likelihood", "latents"))
    arrays.update({name: getattr(result, name) for name in names if getattr(result, name) is not None})
    return arrays


def result_arrays(result) -> dict:
    """The arrays saved for a result (see the module docstring). A Var-RUOT fit is saved
    as its exported model (`monge.client.RuotExport.load` reads it back)."""
    if isinstance(result, (results.ProbabilityFlowSamples, results.ProbabilityFlowLikelihood,
                           results.TrainedScoreModel)):
        return _probability_flow_arrays(result)
    if isinstance(result, results.RuotFitResult):
        return result.model.file_arrays()
    if isinstance(result, results.SinkhornDivergenceResult):
        arrays = {"divergence": np.float64(result.divergence), "converged": np.bool_(result.converged)}
        for name in ("xy", "xx", "yy"):
            term = getattr(result, name)
            arrays.update({f"{name}_objective": np.float64(term.objective), f"{name}_cost": np.float64(term.cost),
                           f"{name}_iterations": np.int64(term.diagnostics.iterations),
                           f"{name}_status": np.str_(term.diagnostics.status)})
        return arrays
    if isinstance(result, results.SinkhornBatchResult):  # one entry per problem, in order
        return {"cost": np.array([one.cost for one in result], np.float64),
                "marginal_error": np.array([one.marginal_error for one in result], np.float64),
                "iterations": np.array([one.diagnostics.iterations for one in result], np.int64),
                "converged": np.array([one.converged for one in result], np.bool_),
                "status": np.array([one.diagnostics.status for one in result], np.str_)}
    d = result.diagnostics
    arrays = {"cost": np.float64(result.cost), "marginal_error": np.float64(result.marginal_error),
              "iterations": np.int64(d.iterations), "converged": np.bool_(d.converged),
              "status": np.str_(d.status), "solve_seconds": np.float64(d.solve_seconds)}
    if isinstance(result, results.SinkhornResult):
        arrays.update(f=result.f, g=result.g, objective=np.float64(result.objective))
        if result.plan is not None:
            arrays["plan"] = result.plan
        if result.sparse_plan is not None:
            _sparse(arrays, result.sparse_plan, "sparse_plan")
        if result.barycentric_map is not None:
            arrays["barycentric_map"] = result.barycentric_map
    elif isinstance(result, results.ExactTransportResult):
        arrays["method"] = np.str_(result.method)
        if result.distance is not None:
            arrays["distance"] = np.float64(result.distance)
        if result.f is not None:
            arrays.update(f=result.f, g=result.g)
        _sparse(arrays, result.plan)
    elif isinstance(result, results.SparsityConstrainedResult):
        arrays.update(objective=np.float64(result.objective), dual_objective=np.float64(result.dual_objective),
                      max_nonzeros_per_column=np.int64(result.max_nonzeros_per_column))
        if result.alpha is not None:
            arrays["alpha"] = result.alpha
        if result.beta is not None:
            arrays["beta"] = result.beta
        _sparse(arrays, result.plan)
    else:
        raise TypeError(f"no file format for {type(result).__name__}")
    return arrays


def save_result(path, result) -> None:
    """Write a result as .npz; InputError with one line if the file cannot be written."""
    try:
        np.savez(path, **result_arrays(result))
    except OSError as error:
        raise InputError(f"cannot write {path}: {error}") from None


def saved(path, result, label: str) -> bool:
    """save_result, telling the user on stderr (under `label`) and returning False if it fails."""
    try:
        save_result(path, result)
    except InputError as error:
        print(f"monge: {label}: {error}", file=sys.stderr)
        return False
    return True


DEFAULT_TARGET = "127.0.0.1:50051"


def _level(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a queue level is a whole number from 1, not {text!r}")
    return int(text)


def remote(p, timeout: float | None = 600.0) -> None:
    """The options every command that calls a server takes."""
    p.add_argument("--target", default=DEFAULT_TARGET, help=f"server address (default {DEFAULT_TARGET})")
    p.add_argument("--timeout", type=float, default=timeout,
                   help="seconds" + (f" (default {timeout:g})" if timeout else " (default: no limit)"))
    p.add_argument("--priority", type=_level, metavar="LEVEL",
                   help="queue level, 1 first (default: 1 for calls, the server's lowest for jobs); "
                        "running lower-level work gives way to it between steps")
    add_connection_arguments(p)


def connection(args) -> dict:
    """Client keyword arguments from --tls-ca, --token-file (or MONGE_TOKEN) and --priority."""
    from monge.client.channel import read_token_file

    token = os.environ.get("MONGE_TOKEN") or None
    if getattr(args, "token_file", None):
        try:
            token = read_token_file(args.token_file)
        except (OSError, ValueError) as error:
            raise SystemExit(f"monge: cannot read --token-file: {error}") from None
    chosen = {"root_certificates": getattr(args, "tls_ca", None), "token": token}
    if getattr(args, "priority", None) is not None:
        chosen["priority"] = args.priority
    return chosen


def add_connection_arguments(parser) -> None:
    parser.add_argument("--tls-ca", help="PEM file of the CA(s) to trust; turns on TLS")
    parser.add_argument("--token-file", help="file holding the bearer token (default: $MONGE_TOKEN)")
