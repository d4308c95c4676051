"""`monge ruot ...`: Var-RUOT (dynamic unbalanced OT from snapshots) from the shell.

    monge ruot fit DATA [--steps N] [--growth paper] [...] [--out MODEL.npz] [--no-wait]
    monge ruot fit CELLS.h5ad --time-key KEY [--embedding X_pca] [--mass-key KEY] [--dims N]
                              [--out-h5ad ANNOTATED.h5ad] [...]
    monge ruot query MODEL [--trajectories [T ...]] [--points P.npy --time T] [--mass T ...]
                           [--action [UNTIL]] [--population T ...] [--out RESULT.npz|POP.h5ad]
    monge ruot export MODEL_ID --out MODEL.npz
    monge ruot plot MODEL --out PLOT.png

DATA is a .csv whose first column is each cell's time (the data sets of
shared/data/ruot: `samples,x1,x2,...`; a header row is skipped) and whose other columns
are its coordinates, or an .npz with `times` (K,), `points_0` ... `points_<K-1>` and
optionally `masses` (K,) (an exported model with its snapshots also works), or an
AnnData .h5ad: each cell's time from `obs[--time-key]` (numeric, or categories that are
numbers), its coordinates from `obsm[--embedding]` (or X), and with --mass-key an obs
column of per-cell weights summed per time (see `monge.client.cells`). A snapshot's
mass is its cell count unless masses are given. MODEL is a model id on the server or an
exported model file (sent inline, so it works on any server).

`fit --out-h5ad` writes the input AnnData with the fitted velocity and growth rate at
each cell's own time (obsm["velocity_ruot"], obs["growth_rate_ruot"]) and the model in
uns["ruot"]; `query --out POP.h5ad` writes the predicted populations (--population T,
several allowed) as an AnnData: obs time and weight, positions in obsm[--embedding].
Input that cannot be used (a file, a key, a flag) prints one line `monge: ...`, exit 2.

`fit` submits a job and prints the loss terms as they stream, then the model id; exit 0
when training completed, 3 when it diverged or was cancelled. `plot` draws the snapshots
(the first two coordinates), trajectories coloured by growth rate, and the mass over
time to a PNG; it needs matplotlib (`pip install 'monge[plot]'`).
"""

from __future__ import annotations

import csv
import math
import os
import re
import sys

import numpy as np

from monge.client import cells
from monge.client.cli_common import connection, load_array
from monge.v1.ruot_codec import FIT_SETTINGS, GROWTH_PENALTIES, LAPLACIANS, RECONSTRUCTIONS, RuotExport, RuotSnapshot

_MODEL_ID = re.compile(r"[0-9a-f]{32}")
PLOT_INSTALL_HINT = ("monge: `monge ruot plot` needs matplotlib, which is not installed; "
                     "install it with: pip install 'monge[plot]'  (or: pip install matplotlib)")


# -- input files --------------------------------------------------------------------------


def _read_csv(path: str, dims: int | None) -> list[RuotSnapshot]:
    with open(path, newline="") as file:
        rows = [row for row in csv.reader(file) if row]
    if rows and not _numeric(rows[0]):
        rows = rows[1:]
    if not rows:
        raise ValueError("has no data rows")
    try:
        table = np.asarray(rows, dtype=np.float64)
    except ValueError:
        raise ValueError("every row after the header must be numbers: time, then coordinates") from None
    if table.ndim != 2 or table.shape[1] < 2:
        raise ValueError("needs a time column and at least one coordinate column")
    coords = table[:, 1:] if dims is None else table[:, 1:1 + dims]
    return [RuotSnapshot(float(t), coords[table[:, 0] == t]) for t in np.unique(table[:, 0])]


def _numeric(row) -> bool:
    try:
        [float(value) for value in row]
    except ValueError:
        return False
    return True


def _read_npz(path: str, dims: int | None) -> list[RuotSnapshot]:
    with np.load(path, allow_pickle=False) as stored:
        arrays = {name: stored[name] for name in stored.files}
    prefix = "snapshot_" if "snapshot_times" in arrays else ""
    if prefix + "times" not in arrays:
        raise ValueError("needs arrays times, points_0, points_1, ... (and optionally masses)")
    times = arrays[prefix + "times"]
    masses = arrays.get(prefix + "masses")
    out = []
    for k, t in enumerate(times):
        name = f"{prefix}points_{k}"
        if name not in arrays:
            raise ValueError(f"has {len(times)} times but no array {name}")
        mass = None if masses is None or math.isnan(masses[k]) else float(masses[k])
        points = arrays[name] if dims is None else arrays[name][:, :dims]
        out.append(RuotSnapshot(float(t), points, mass))
    return out


def read_snapshots(path: str, dims: int | None = None) -> list[RuotSnapshot]:
    """The snapshots in a .csv or .npz file; SystemExit with one line if unusable."""
    try:
        if path.endswith(".csv"):
            return _read_csv(path, dims)
        return _read_npz(path, dims)
    except (OSError, ValueError) as error:
        raise SystemExit(f"monge: {path}: {error}") from None


def _model(spec: str):
    """A model id, or an exported model file (loaded here, sent inline)."""
    if os.path.exists(spec):
        try:
            return RuotExport.load(spec)
        except (OSError, ValueError) as error:
            raise SystemExit(f"monge: {spec}: {error}") from None
    if _MODEL_ID.fullmatch(spec):
        return spec
    raise SystemExit(f"monge: {spec!r} is neither a model id (32 hex digits) nor an exported model file")


# -- verbs ----------------------------------------------------------------------------------


def _loss_line(progress: dict, steps: int | None) -> str:
    step = f"step {progress['iteration']}" + (f"/{steps}" if steps else "")
    terms = "  ".join(f"{name} {value:.4g}" for name, value in sorted(progress.get("loss_terms", {}).items()))
    return f"{step}  loss {progress['loss']:.5g}  {terms}  {progress['elapsed_seconds']:.1f} s"


class _Refused(Exception):
    """Input that cannot be used: `monge: <message>` on stderr, exit 2."""


def _refusing(verb):
    def run(args) -> int:
        try:
            return verb(args)
        except _Refused as error:
            print(f"monge: {error}", file=sys.stderr)
            return 2
    return run


_CELL_FLAGS = ("time_key", "embedding", "mass_key", "out_h5ad")


def _fit_input(args):
    """(snapshots, the AnnData or None) of `fit`'s DATA."""
    if not cells.is_anndata(args.data):
        given = [f"--{name.replace('_', '-')}" for name in _CELL_FLAGS if getattr(args, name) is not None]
        if given:
            raise _Refused(f"{' '.join(given)} {'apply' if len(given) > 1 else 'applies'} only to an AnnData "
                           f".h5ad, not {args.data}")
        return read_snapshots(args.data, args.dims), None
    if args.mass_key is not None and args.masses:
        raise _Refused("give --mass-key or --masses, not both")
    if args.out_h5ad and args.no_wait:
        raise _Refused("--out-h5ad writes the fitted fields, which --no-wait does not wait for")
    try:
        adata = cells.read(args.data)
        return cells.snapshots(adata, time_key=args.time_key, embedding=args.embedding, mass_key=args.mass_key,
                               dims=args.dims), adata
    except cells.AnnDataInputError as error:
        flag = {"time_key": " (--time-key)", "embedding": " (--embedding)", "mass_key": " (--mass-key)",
                "dims": " (--dims)"}.get(error.argument, "")
        raise _Refused(f"{args.data}: {error}{flag}") from None


def _annotate(client, args, adata, result) -> None:
    """`fit --out-h5ad`: the fitted fields onto the input cells, written to the file."""
    if result.status != "completed" or not result.model_id:
        print(f"monge: not writing {args.out_h5ad}: the fit ended {result.status}", file=sys.stderr)
        return
    try:
        cells.annotate(adata, result, client=client, time_key=args.time_key, embedding=args.embedding,
                       dims=args.dims, timeout=args.timeout)
        adata.write_h5ad(args.out_h5ad)
    except cells.AnnDataInputError as error:
        raise _Refused(f"{args.data}: {error}") from None
    except OSError as error:
        raise _Refused(f"cannot write {args.out_h5ad}: {error}") from None
    print(f"saved {adata.n_obs} cells with obsm[{cells.VELOCITY_KEY!r}], obs[{cells.GROWTH_KEY!r}] and "
          f"uns[{cells.UNS_KEY!r}] to {args.out_h5ad}")


def _fit(args) -> int:
    from monge.client import Client

    snapshots, adata = _fit_input(args)
    if args.masses:
        if len(args.masses) != len(snapshots):
            raise SystemExit(f"monge: --masses has {len(args.masses)} values for {len(snapshots)} snapshots")
        snapshots = [RuotSnapshot(s.time, s.points, m) for s, m in zip(snapshots, args.masses)]
    settings = {name: getattr(args, name) for name in FIT_SETTINGS if getattr(args, name, None) is not None}
    with Client(args.target, timeout=args.timeout, **connection(args)) as client:
        job = client.ruot_fit(snapshots, growth=args.growth, laplacian=args.laplacian,
                              reconstruction=args.reconstruction, hold_out=args.hold_out or (),
                              request_id=args.request_id, timeout=60.0, **settings)
        sizes = ", ".join(str(len(s.points)) for s in snapshots)
        print(f"monge: job {job.job_id}: Var-RUOT fit of {len(snapshots)} snapshots "
              f"({snapshots[0].points.shape[1]}-D; {sizes} cells)", flush=True)
        if args.no_wait:
            return 0
        last = None
        for info in client.watch(job, timeout=args.timeout):
            if info.done:
                break
            if info.state == "running" and info.progress["iteration"] and info.progress["iteration"] != last:
                print(_loss_line(info.progress, args.steps), flush=True)
                last = info.progress["iteration"]
        result = client.result(job, timeout=60.0)
        d = result.diagnostics
        print(f"model {result.model_id or '(none stored)'}: {result.status} after {d.iterations} steps "
              f"in {d.solve_seconds:.1f} s")
        print("final losses  " + "  ".join(f"{k} {v:.5g}" for k, v in result.final_losses.items()))
        for report in result.hold_out:
            print(f"held out t={report.time:g}: W1 {report.w1:.4g} (noise floor {report.noise_floor:.4g}, "
                  f"McCann interpolation {report.interpolation_w1:.4g}); mass {report.predicted_mass:.4g} "
                  f"predicted, {report.observed_mass:.4g} observed")
        if args.out:
            held = {report.time for report in result.hold_out}
            fitted = tuple(s for s in snapshots if s.time not in held)
            RuotExport(result.model.arrays, result.model.settings, result.model_id, fitted).save(args.out)
            print(f"saved model to {args.out}")
        if args.out_h5ad:
            _annotate(client, args, adata, result)
    return 0 if result.status == "completed" else 3


def _query(args) -> int:
    from monge.client import Client

    model = _model(args.model)
    points = load_array(args.points, "--points")
    if (points is None) != (args.time is None and args.times is None):
        raise SystemExit("monge: give --points with --time T (all points) or --times T.npy (one per point)")
    times = args.time if args.time is not None else load_array(args.times, "--times")
    action = None if args.action is None else (True if args.action == "last" else _number(args.action, "--action"))
    trajectories = None if args.trajectories is None else (args.trajectories or True)
    if all(q is None for q in (trajectories, points, args.mass, action, args.population)):
        raise SystemExit("monge: ask for something: --trajectories, --points, --mass, --action or --population")
    to_h5ad = bool(args.out) and cells.is_anndata(args.out)
    if to_h5ad and not args.population:
        raise _Refused(f"--out {args.out}: an .h5ad holds predicted populations; ask for --population T")
    if args.embedding is not None and not to_h5ad:
        raise _Refused("--embedding names the positions' obsm key in an .h5ad --out")
    populations = args.population or [None]
    initial_points = load_array(args.initial_points, "--initial-points")
    with Client(args.target, **connection(args)) as client:
        r = client.ruot_query(model, trajectories=trajectories, points=points, times=times, hjb_residual=args.hjb,
                              mass_times=args.mass, action=action, population_time=populations[0],
                              initial_points=initial_points, seed=args.seed, timeout=args.timeout)
        # One population per query: the others, with the same start and seed.
        found = [r.population] + [client.ruot_query(model, population_time=when, initial_points=initial_points,
                                                    seed=args.seed, timeout=args.timeout).population
                                  for when in populations[1:]]
        exported = None
        if to_h5ad:
            exported = model if isinstance(model, RuotExport) else client.ruot_export(model, timeout=args.timeout)
    arrays = {"snapshot_times": r.snapshot_times, "snapshot_relative_mass": r.snapshot_relative_mass}
    if r.trajectories is not None:
        t = r.trajectories
        print(f"trajectories  {t.points.shape[1]} particles at {len(t.times)} times; mass "
              + ", ".join(f"{m:.4g}" for m in t.mass) + f"; action {t.action:.6g}")
        arrays.update(trajectory_times=t.times, trajectory_points=t.points, trajectory_weights=t.weights,
                      trajectory_mass=t.mass, trajectory_growth=t.growth, trajectory_action=np.float64(t.action))
    if r.fields is not None:
        f = r.fields
        print(f"fields        {len(f.potential)} points: |u| mean {np.linalg.norm(f.velocity, axis=1).mean():.4g}, "
              f"growth in [{f.growth.min():.4g}, {f.growth.max():.4g}]")
        arrays.update(potential=f.potential, velocity=f.velocity, growth=f.growth)
        if f.hjb_residual is not None:
            arrays["hjb_residual"] = f.hjb_residual
    if r.mass is not None:
        print("mass          " + ", ".join(f"t={t:g}: {m:.4g}" for t, m in zip(r.mass_times, r.mass)))
        arrays.update(mass_times=r.mass_times, mass=r.mass)
    if r.action is not None:
        print(f"action        {r.action:.6g} (to t={r.action_until:g})")
        arrays.update(action=np.float64(r.action), action_until=np.float64(r.action_until))
    found = [p for p in found if p is not None]
    for p in found:
        print(f"population    t={p.time:g}: {len(p.weights)} particles, mass {p.mass:.4g}")
    if len(found) == 1:
        p = found[0]
        arrays.update(population_time=np.float64(p.time), population_points=p.points, population_weights=p.weights)
    elif found:
        arrays.update(population_times=np.asarray([p.time for p in found]),
                      population_mass=np.asarray([p.mass for p in found]))
        for k, p in enumerate(found):
            arrays.update({f"population_points_{k}": p.points, f"population_weights_{k}": p.weights})
    if to_h5ad:
        embedding = args.embedding or cells.POSITIONS_KEY
        adata = cells.populations_anndata(found, embedding=embedding, model=exported, seed=args.seed)
        try:
            adata.write_h5ad(args.out)
        except OSError as error:
            raise _Refused(f"cannot write {args.out}: {error}") from None
        print(f"saved {adata.n_obs} particles at {len(found)} times (obs time, weight; obsm[{embedding!r}]) "
              f"to {args.out}" + ("; the other answers are not kept in it (an .npz --out keeps them)"
                                  if any(q is not None for q in (trajectories, points, args.mass, action)) else ""))
    elif args.out:
        np.savez(args.out, **arrays)
        print(f"saved {args.out}")
    return 0


def _export(args) -> int:
    from monge.client import Client

    with Client(args.target, **connection(args)) as client:
        exported = client.ruot_export(args.model_id, include_snapshots=not args.no_snapshots, timeout=args.timeout)
    exported.save(args.out)
    print(f"saved model {args.model_id} ({exported.dim}-D, {exported.status}, "
          f"{exported.settings['steps_trained']} steps; {len(exported.snapshots)} snapshots) to {args.out}")
    return 0


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise SystemExit(f"monge: {what} takes a time, got {text!r}") from None


def _plot(args) -> int:
    try:
        import matplotlib
    except ImportError:
        print(PLOT_INSTALL_HINT, file=sys.stderr)
        return 1
    matplotlib.use("Agg")
    from monge.client import Client

    model = _model(args.model)
    with Client(args.target, **connection(args)) as client:
        exported = model if isinstance(model, RuotExport) else client.ruot_export(model, include_snapshots=True,
                                                                                  timeout=args.timeout)
        t0, t1 = float(exported.times[0]), float(exported.times[-1])
        times = np.linspace(t0, t1, args.frames)
        start = exported.initial_points
        if len(start) > args.particles:
            start = start[np.random.default_rng(0).choice(len(start), args.particles, replace=False)]
        r = client.ruot_query(model, trajectories=times, initial_points=start, seed=args.seed, timeout=args.timeout)
        # Mass and action of the whole first snapshot, not only of the trajectories drawn.
        whole = client.ruot_query(model, mass_times=times, action=True, seed=args.seed, timeout=args.timeout)
    draw(exported, r, whole, args.out)
    print(f"saved {args.out}: {len(exported.snapshots) or len(exported.times)} snapshots, "
          f"{len(start)} trajectories over t = {t0:g}..{t1:g}, final mass {whole.mass[-1]:.4g} "
          f"(observed {whole.snapshot_relative_mass[-1]:.4g})")
    return 0


def draw(exported: RuotExport, r, whole, path: str) -> None:
    """Trajectories coloured by growth under the snapshots (first two coordinates), and
    mass over time (`whole`'s mass line, observed ratios as dots), to `path`."""
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection
    from matplotlib.colors import TwoSlopeNorm

    traj = r.trajectories
    dim = exported.dim
    fig, (ax, mass_ax) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [3, 2]})
    snaps = exported.snapshots or (RuotSnapshot(float(exported.times[0]), exported.initial_points),)
    colors = plt.cm.viridis(np.linspace(0, 1, max(len(snaps), 2)))
    for snap, color in zip(snaps, colors):
        pts = np.asarray(snap.points)
        if dim == 1:
            pts = np.column_stack([pts[:, 0], np.zeros(len(pts))])
        ax.scatter(pts[:, 0], pts[:, 1], s=7, color=color, alpha=0.5, linewidths=0, label=f"t = {snap.time:g}",
                   zorder=3)
    path_xy = traj.points[..., :2] if dim > 1 else np.stack([traj.points[..., 0], np.zeros_like(traj.weights)], -1)
    segments = np.stack([path_xy[:-1], path_xy[1:]], axis=2)  # (T-1, n, 2, 2)
    segments = segments.transpose(1, 0, 2, 3).reshape(-1, 2, 2)
    growth = traj.growth[:-1].T.reshape(-1)
    limit = float(np.max(np.abs(growth))) or 1.0
    lines = LineCollection(segments, cmap="coolwarm", norm=TwoSlopeNorm(0.0, -limit, limit), linewidths=0.6,
                           alpha=0.6, zorder=2)
    lines.set_array(growth)
    ax.add_collection(lines)
    ax.autoscale()
    fig.colorbar(lines, ax=ax, label="growth rate g")
    coords = "" if dim <= 2 else f" (first two of {dim} coordinates)"
    ax.set_title(f"Var-RUOT: snapshots and trajectories{coords}")
    legend = ax.legend(loc="best", fontsize=8, markerscale=2)
    for handle in legend.legend_handles:
        handle.set_alpha(1.0)
    mass_ax.plot(whole.mass_times, whole.mass, color="C0", label="predicted")
    mass_ax.plot(r.snapshot_times, r.snapshot_relative_mass, "o", color="C3", label="observed")
    mass_ax.set_xlabel("time")
    mass_ax.set_ylabel("mass relative to the first snapshot")
    mass_ax.set_title(f"mass over time (path action {whole.action:.3g})")
    mass_ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- parser ---------------------------------------------------------------------------------


def register(commands, remote) -> None:
    """Add `ruot` and its verbs to the `monge` parser's subparsers; `remote(p, timeout)`
    adds the server address, timeout and connection options."""
    ruot = commands.add_parser("ruot", help="Var-RUOT: fit dynamics to snapshots, query, export, plot")
    verbs = ruot.add_subparsers(dest="ruot_command", required=True)

    fit = verbs.add_parser("fit", help="fit a model to snapshots (a job; losses stream as it trains)")
    remote(fit, None)
    fit.add_argument("data", help=".csv (time, coordinates...), .npz (times, points_<k>[, masses]) or an "
                                  "AnnData .h5ad (with --time-key)")
    fit.add_argument("--dims", type=int, help="use only the first N coordinates")
    cell = fit.add_argument_group("AnnData (.h5ad) input")
    cell.add_argument("--time-key", metavar="KEY", help="obs column of each cell's time: numeric, or categories "
                                                        "that are numbers")
    cell.add_argument("--embedding", metavar="KEY", help="obsm key of the coordinates, or X "
                                                         f"(default {cells.DEFAULT_EMBEDDING})")
    cell.add_argument("--mass-key", metavar="KEY", help="obs column of per-cell weights; a snapshot's mass is their "
                                                        "sum (default: cell counts)")
    cell.add_argument("--out-h5ad", metavar="FILE", help="write the input with the fitted velocity "
                                                         f"(obsm[{cells.VELOCITY_KEY}]) and growth rate "
                                                         f"(obs[{cells.GROWTH_KEY}]) at each cell's time, and the "
                                                         f"model in uns[{cells.UNS_KEY}]")
    fit.add_argument("--masses", type=float, nargs="+", help="total mass of each snapshot (default: cell counts)")
    fit.add_argument("--growth", default="quadratic", choices=sorted(GROWTH_PENALTIES),
                     help="growth penalty: quadratic (g^2/2), paper (|g|^(2/15)) or none")
    fit.add_argument("--laplacian", default="auto", choices=sorted(LAPLACIANS))
    fit.add_argument("--reconstruction", choices=sorted(RECONSTRUCTIONS),
                     help="distance to each snapshot: energy (default) or sinkhorn (the debiased Sinkhorn "
                          "divergence at --ot-epsilon; default when --ot-epsilon is given)")
    for name in FIT_SETTINGS:
        kind = int if name in ("width", "residual_blocks", "steps", "report_every", "particles", "seed",
                               "laplacian_probes", "laplacian_max_exact_dim") else float
        fit.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, help="default: the paper's")
    fit.add_argument("--out", help="also save the fitted model (with the snapshots) to this .npz")
    fit.add_argument("--no-wait", action="store_true", help="print the job id and return")
    fit.add_argument("--hold-out", type=float, action="append", metavar="T",
                     help="leave the snapshot at time T out of the fit and report how well the fit predicts it "
                          "(W1 beside a noise floor and the McCann interpolation); repeatable")
    fit.add_argument("--request-id", help="idempotency key: a retry returns the same job")
    fit.set_defaults(run=_refusing(_fit))

    query = verbs.add_parser("query", help="ask a fitted model: trajectories, fields, mass, action, population")
    remote(query, 600.0)
    query.add_argument("model", help="model id, or an exported model .npz")
    query.add_argument("--trajectories", type=float, nargs="*", metavar="T",
                       help="trajectories at these times (none given: the snapshot times)")
    query.add_argument("--points", help="fields at these points, .npy (n, d)")
    query.add_argument("--time", type=float, help="time of the --points")
    query.add_argument("--times", help="time of each of the --points, .npy (n,)")
    query.add_argument("--hjb", action="store_true", help="also the HJB residual at the --points")
    query.add_argument("--mass", type=float, nargs="+", metavar="T", help="mass at these times")
    query.add_argument("--action", nargs="?", const="last", metavar="UNTIL",
                       help="the path action (to the last snapshot, or to UNTIL)")
    query.add_argument("--population", type=float, nargs="+", action="extend", metavar="T",
                       help="the predicted population at T (several times: one query each)")
    query.add_argument("--initial-points", help="start simulations here, .npy (n, d) (default: the first snapshot)")
    query.add_argument("--seed", type=int, default=0, help="seed of the particles' noise")
    query.add_argument("--out", help="save every answer's arrays to this .npz, or the populations to this "
                                     ".h5ad (an AnnData: obs time and weight, positions in obsm)")
    query.add_argument("--embedding", metavar="KEY", help="obsm key of the positions in an .h5ad --out "
                                                          f"(default {cells.POSITIONS_KEY})")
    query.set_defaults(run=_refusing(_query))

    export = verbs.add_parser("export", help="save a stored model (and its snapshots) to a file")
    remote(export, 120.0)
    export.add_argument("model_id")
    export.add_argument("--out", required=True, help="the .npz to write")
    export.add_argument("--no-snapshots", action="store_true", help="leave the training snapshots out")
    export.set_defaults(run=_export)

    plot = verbs.add_parser("plot", help="draw snapshots, trajectories coloured by growth, and mass over time")
    remote(plot, 600.0)
    plot.add_argument("model", help="model id, or an exported model .npz")
    plot.add_argument("--out", required=True, help="the .png to write")
    plot.add_argument("--frames", type=int, default=41, help="times along each trajectory (default 41)")
    plot.add_argument("--particles", type=int, default=300, help="trajectories drawn at most (default 300)")
    plot.add_argument("--seed", type=int, default=0)
    plot.set_defaults(run=_plot)
