"""`monge batch FILES...`: many problems as one batch job, with a progress bar.

    monge batch p1.npz p2.npz ... [--solver sinkhorn|exact|sparsity] [--epsilon 0.05]
                [--out DIR] [--no-wait] [--request-id KEY]

Each FILE is an .npz with arrays x, y[, a, b] or cost. The readable files go to the
server as one job with one item per file; each item has its own status, so a bad file
fails alone: its error is printed on one line (file, code, field, message) and the
others are solved. With `--out DIR` each result is written to DIR/NAME.result.npz.
`--no-wait` prints the job id and returns (follow it with `monge jobs watch ID`, fetch
it with `monge jobs get ID --out DIR`).

Exit 0 when every file was solved and converged, 3 when some file failed or did not
converge, 2 when the server refused the job itself.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

from monge.client import requests
from monge.client.cli_common import InputError, error_line, load_problem, saved, summary, connection
from monge.client.errors import InvalidArgumentError

# The request builder for each --solver, the job item field it fills, and its settings.
SOLVERS = {
    "sinkhorn": (requests.sinkhorn, "sinkhorn", requests.SINKHORN_OPTIONS),
    "exact": (requests.exact_transport, "exact_transport", requests.EXACT_OPTIONS),
    "sparsity": (requests.sparsity_constrained, "sparsity_constrained", requests.SPARSITY_CONSTRAINED_OPTIONS),
}


def _flags() -> dict:
    """One flag per setting name over all solvers: name -> (its rows by solver)."""
    rows = {}
    for solver, (_, _, table) in SOLVERS.items():
        for option in table:
            rows.setdefault(option.name, {})[solver] = option
    return rows


FLAGS = _flags()


def _solver_options(args) -> dict:
    """The options given on the command line, checked against the solver; SystemExit
    with one line when one does not apply or has a bad value."""
    builder, _, table = SOLVERS[args.solver]
    allowed = {option.name for option in table} | ({"reg_m"} if args.solver == "sinkhorn" else set())
    given = {name: getattr(args, name) for name in [*FLAGS, "reg_m"] if getattr(args, name) is not None}
    for name in sorted(set(given) - allowed):
        flag = next(iter(FLAGS[name].values())).flag_name if name in FLAGS else "--reg-m"
        raise SystemExit(f"monge: {flag} does not apply to --solver {args.solver}")
    if "reg_m" in given:
        reg_m = given["reg_m"]
        given["reg_m"] = reg_m[0] if len(reg_m) == 1 else tuple(reg_m)
    try:
        builder(**given)  # no arrays: checks the options once, not once per file
    except (ValueError, TypeError) as error:
        raise SystemExit(f"monge: {error}") from None
    return given


def _output_paths(files: list[str], out_dir: str | None) -> list[pathlib.Path | None]:
    """DIR/NAME.result.npz for each file; a name seen before gets its position appended."""
    if out_dir is None:
        return [None] * len(files)
    seen, paths = set(), []
    for index, file in enumerate(files):
        name = pathlib.Path(file).name.removesuffix(".npz")
        if name in seen:
            name = f"{name}-{index}"
        seen.add(name)
        paths.append(pathlib.Path(out_dir) / f"{name}.result.npz")
    return paths


class ProgressBar:
    """Items done out of the batch, on stderr: tqdm when it is installed, else a plain
    carriage-return bar."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.enabled, self.done, self._bar = total, enabled, 0, None
        if not enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            self._draw("")
            return
        self._bar = tqdm(total=total, unit="item", desc="batch", file=sys.stderr, dynamic_ncols=True)

    def update(self, done: int, note: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(done - self._bar.n)
            self._bar.set_postfix_str(note, refresh=True)
        else:
            self._draw(note, done)
        self.done = done

    def _draw(self, note: str, done: int = 0) -> None:
        filled = 30 * done // max(1, self.total)
        sys.stderr.write(f"\rbatch [{'#' * filled}{'.' * (30 - filled)}] {done}/{self.total} {note}\033[K")
        sys.stderr.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled:
            sys.stderr.write("\n")


def _note(info) -> str:
    p = info.progress
    if info.state != "running":
        return info.state
    return f"item {p['item']}: iteration {p['iteration']}, error {p['error']:.2e}"


def _run(args) -> int:
    from monge.client import Client

    builder, kind, _ = SOLVERS[args.solver]
    options = _solver_options(args)
    outputs = _output_paths(args.files, args.out)
    if args.out:
        pathlib.Path(args.out).mkdir(parents=True, exist_ok=True)

    # Read every file first: an unreadable one is reported and left out of the job.
    items, failed = [], 0  # (file, output path, request)
    for file, output in zip(args.files, outputs):
        try:
            problem = load_problem(file)
            items.append((file, output, builder(**problem.arrays(), **options)))
        except InputError as error:
            print(f"monge: {file}: {error}", file=sys.stderr)
            failed += 1
        except (ValueError, TypeError) as error:  # arrays that cannot be encoded
            print(f"monge: {file}: cannot encode: {error}", file=sys.stderr)
            failed += 1
    if not items:
        print("monge: no problem to submit", file=sys.stderr)
        return 3

    with Client(args.target, timeout=args.timeout, **connection(args)) as client:
        try:
            job = client.submit([request for _, _, request in items], request_id=args.request_id)
        except InvalidArgumentError as error:
            if len(items) > 1:
                raise
            # A job of one item is checked at submission: that is the file's own error.
            print(f"monge: {items[0][0]}: {error_line(error, f'items[0].{kind}.')}", file=sys.stderr)
            return 3
        if not args.wait:
            print(job.job_id)
            print(f"monge: job {job.job_id} submitted with {len(items)} items; "
                  f"`monge jobs watch {job.job_id}` follows it", file=sys.stderr)
            return 3 if failed else 0
        print(f"monge: job {job.job_id}: {len(items)} items", file=sys.stderr)
        enabled = sys.stderr.isatty() if args.progress is None else args.progress
        bar, info = ProgressBar(len(items), enabled), job
        try:
            for info in client.watch(job):
                done = info.item_count if info.state == "succeeded" else info.progress["items_done"]
                bar.update(done, _note(info))
        except KeyboardInterrupt:
            bar.close()
            print(f"monge: stopped watching; job {job.job_id} goes on (`monge jobs cancel {job.job_id}` "
                  "stops it)", file=sys.stderr)
            return 130
        bar.close()

    if not info.done:
        print(f"monge: the watch of job {info.job_id} ended while it was {info.state}; "
              f"`monge jobs watch {info.job_id}` follows it", file=sys.stderr)
        return 2
    if info.state != "succeeded":
        reason = f": {error_line(info.error)}" if info.error is not None else ""
        print(f"monge: job {info.job_id} {info.state}{reason}", file=sys.stderr)
        return 3
    for index, ((file, output, _), item) in enumerate(zip(items, info.results)):
        if not item.ok:
            print(f"monge: {file}: {error_line(item.error, f'items[{index}].{kind}.')}", file=sys.stderr)
            failed += 1
            continue
        where = ""
        if output is not None:
            if not saved(output, item.value, file):
                failed += 1
                continue
            where = f" -> {output}"
        print(f"{file}: {summary(item.value)}{where}")
        if not item.value.converged:
            failed += 1
    return 3 if failed else 0


def register(commands, remote) -> None:
    """Add `batch` to the `monge` parser's subparsers; `remote(p, timeout)` adds the
    server address and timeout options."""
    batch = commands.add_parser("batch", help="solve many .npz problems as one job, with a progress bar",
                                description=__doc__.split("\n\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    remote(batch, None)
    batch.add_argument("files", nargs="+", metavar="FILE", help="problem .npz: arrays x, y[, a, b] or cost")
    batch.add_argument("--solver", default="sinkhorn", choices=sorted(SOLVERS))
    batch.add_argument("--out", metavar="DIR", help="write each result to DIR/NAME.result.npz")
    batch.add_argument("--wait", action=argparse.BooleanOptionalAction, default=True,
                       help="wait for the results (default), or print the job id and return")
    batch.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="progress bar on stderr (default: when stderr is a terminal)")
    batch.add_argument("--request-id", help="idempotency key: the same key returns the same job")
    solver = batch.add_argument_group("solver options (each applies to the solvers named)")
    for rows in FLAGS.values():  # each flag left out: the server's default
        solvers, first = sorted(rows), next(iter(rows.values()))
        # A setting whose values differ between solvers (--method) is checked by the builder.
        same_choices = len({tuple(sorted(row.choices or ())) for row in rows.values()}) == 1
        if len({row.help for row in rows.values()}) == 1:
            first.add_flag(solver, help_prefix=", ".join(solvers) + ": ", choices=same_choices)
        else:
            first.add_flag(solver, choices=same_choices,
                           help="; ".join(f"{name}: {rows[name].help}" for name in solvers))
    solver.add_argument("--reg-m", type=float, nargs="+", help="sinkhorn: KL marginal penalty (unbalanced)")
    batch.set_defaults(run=_run)
