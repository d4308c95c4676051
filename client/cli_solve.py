"""`monge solve ...`: one problem through a server, answered at once.

    monge solve sinkhorn --x X.npy --y Y.npy [--epsilon 0.05] [--method sns] [--out R.npz]
    monge solve exact --x X.npy --y Y.npy [--cost euclidean | --p P] [--out R.npz]
    monge solve sparsity --x X.npy --y Y.npy [--k 2] [--gamma 1.0] [--out R.npz]

Each takes points (`--x`, `--y`, optional weights `--a`, `--b`), a `--cost-matrix`, or a
`--problem P.npz` (arrays x, y[, a, b] or cost). Exit 0 when the solve converged, 3 when
it returned without converging, 2 when the server refused it.
"""

from __future__ import annotations

from monge.client import options, requests
from monge.client.cli_common import InputError, problem_from_args, save_result, connection
from monge.client.results import ExactTransportResult, SparsityConstrainedResult


def _report(args, result) -> int:
    d = result.diagnostics
    print(f"cost <P,C>      {result.cost:.10g}")
    if isinstance(result, ExactTransportResult):
        if result.distance is not None:
            print(f"distance        {result.distance:.10g}")
        print(f"method          {result.method}")
    else:
        print(f"objective       {result.objective:.10g}")
    iterations = "" if isinstance(result, ExactTransportResult) else f"{d.iterations} iterations, "
    print(f"status          {d.status} ({iterations}marginal error {result.marginal_error:.3g})")
    if isinstance(result, ExactTransportResult):
        print(f"plan            {result.plan.shape[0]} x {result.plan.shape[1]}, {result.plan.nnz} nonzeros")
    if isinstance(result, SparsityConstrainedResult):
        print(f"plan            {result.plan.shape[0]} x {result.plan.shape[1]}, {result.plan.nnz} nonzeros, "
              f"at most {result.max_nonzeros_per_column} per column")
    if getattr(result, "newton", None) is not None:
        n = result.newton
        print(f"newton          {n.sinkhorn_iterations} Sinkhorn sweeps, {n.newton_iterations} Newton steps")
    print(f"solve time      {d.solve_seconds:.3f} s")
    if args.out:
        try:
            save_result(args.out, result)
        except InputError as error:
            raise SystemExit(f"monge: {error}") from None
        print(f"saved           {args.out}")
    return 0 if d.converged else 3


# `monge solve NAME`: the help, the Client method, and the request's settings table.
SOLVERS = {
    "sinkhorn": ("entropic OT (balanced, or unbalanced with --reg-m)", "sinkhorn", requests.SINKHORN_OPTIONS),
    "exact": ("exact (unregularised) OT: network simplex, or sorting in 1-D", "exact_transport",
              requests.EXACT_OPTIONS),
    "sparsity": ("quadratic OT with at most k nonzeros per plan column", "sparsity_constrained",
                 requests.SPARSITY_CONSTRAINED_OPTIONS),
}


def _solve(args) -> int:
    from monge.client import Client

    _, method, table = SOLVERS[args.solver]
    problem = problem_from_args(args)
    extra = {}
    if getattr(args, "reg_m", None):
        extra["reg_m"] = args.reg_m[0] if len(args.reg_m) == 1 else tuple(args.reg_m)
    with Client(args.target, **connection(args)) as client:
        result = getattr(client, method)(**problem.arrays(), timeout=args.timeout, **extra,
                                         **options.from_args(args, table))
    return _report(args, result)


def _inputs(p) -> None:
    p.add_argument("--x", help="source points, .npy (n, d)")
    p.add_argument("--y", help="target points, .npy (m, d)")
    p.add_argument("--a", help="source weights, .npy (n,)")
    p.add_argument("--b", help="target weights, .npy (m,)")
    p.add_argument("--cost-matrix", help="cost matrix .npy (n, m), instead of points")
    p.add_argument("--problem", help="the whole problem in one .npz (arrays x, y[, a, b] or cost)")
    p.add_argument("--out", help="save the result to this .npz")


def register(commands, remote) -> None:
    """Add `solve` and its solvers to the `monge` parser's subparsers; `remote(p)` adds
    the server address and timeout options."""
    solve = commands.add_parser("solve", help="solve one problem through a server")
    solvers = solve.add_subparsers(dest="solver", required=True)

    for name, (help_text, _, table) in SOLVERS.items():
        parser = solvers.add_parser(name, help=help_text)
        remote(parser)
        _inputs(parser)
        for option in table:  # each flag left out: the server's default
            option.add_flag(parser)
        if name == "sinkhorn":
            parser.add_argument("--reg-m", type=float, nargs="+",
                                help="KL marginal penalty (one, or source and target)")
        parser.set_defaults(run=_solve)
