"""Var-RUOT on the RUOT literature's snapshot data, beside the paper's numbers.

    .venv/bin/python benchmarks/ruot.py                       # gene data and EMT, full settings
    .venv/bin/python benchmarks/ruot.py --quick               # small nets, 1500 (gene) and 400 (EMT)
                                                              # steps: ~8 + ~9 min on 2 CPU cores
                                                              # (per-data-set settings in DATASETS)
    .venv/bin/python benchmarks/ruot.py --dataset emt --steps 3000 --data-dir /path/to/ruot

Data: ../shared/data/ruot relative to the repository (override with --data-dir). The
model starts from the first snapshot's cells; W1 is exact (POT's network simplex)
between the weight-normalised predicted particles and each later snapshot, the mass
error is |predicted mass - N_k / N_0|, the path action is the model's action from the
first to the last snapshot time. Targets (from the task): gene data W1 at or below
DeepRUOT's at every time and path action <= 1.25; EMT W1 <= 0.29 at every time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import time

import numpy as np
import ot

from monge.solvers import ruot
from monge.solvers.ruot import NetworkConfig, OptimizerConfig, RuotConfig
# --reconstruction (these names): the training's distance between particles and each
# snapshot (the evaluation is always exact W1), as the service's RUOTFitSettings.reconstruction.
from monge.solvers.ruot.config import RECONSTRUCTIONS

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "ruot"

DATASETS = {
    "gene": dict(file="simulation_gene_data.csv",
                 paper_w1={"Var-RUOT": [0.0452, 0.0385, 0.0445, 0.0572], "DeepRUOT": [0.0569, 0.0811, 0.1246, 0.1538]},
                 paper_action={"Var-RUOT": 1.1105, "DeepRUOT": 1.4058, "TIGON": 1.2442},
                 w1_target=[0.0569, 0.0811, 0.1246, 0.1538], action_target=1.25, quick_lr=3e-3,
                 # 0.0625 (the paper's): action 1.260 +- 0.001 over 10 seeds at 1000 steps,
                 # 0.125: 1.212-1.223 with every W1 still below DeepRUOT's (RESULTS.md).
                 # 1500 steps: every target met on training seeds 0, 1 and 2 (W1 at t = 1
                 # 0.045-0.048; at 1000 steps seed 1 missed it, 0.0608), 445-501 s here.
                 quick_gamma_action=0.125, quick_steps=1500, quick_width=64, quick_sigma=0.1,
                 quick_reconstruction="energy"),
    "emt": dict(file="emt.csv",
                paper_w1={"Var-RUOT": [0.254, 0.267, 0.268]},
                paper_action={"Var-RUOT": 0.3544, "DeepRUOT": 0.4857, "TIGON": 0.4672},
                w1_target=[0.29, 0.29, 0.29], action_target=None,
                # 3e-3 blew the mass up within 100 steps on EMT (10-D, quadratic growth);
                # 1e-3 (with the settings below) diverged early on training seed 2 (HJB and
                # action ran away, W1 0.51-0.72) while seeds 0 and 1 met the target; 5e-4
                # meets it on seeds 0, 1 and 2 (RESULTS.md). Still check the log's hjb and
                # action before trusting a number: three seeds are not a guarantee.
                quick_lr=5e-4, quick_gamma_action=0.0625,
                # The Sinkhorn divergence, sigma 0.02 and width 128 at 400 steps (peak lr
                # 1e-3): W1 0.251 / 0.256 / 0.247 (training seed 0) and 0.249 / 0.252 / 0.243
                # (seed 1) against 0.265 / 0.299 / 0.300 with the energy distance.
                # sigma in data units: EMT's per-coordinate spread is 0.09-0.18.
                quick_steps=400, quick_width=128, quick_sigma=0.02, quick_reconstruction="sinkhorn"),
}


def load(path: pathlib.Path):
    table = np.genfromtxt(path, delimiter=",", skip_header=1)
    times = np.unique(table[:, 0])
    return [ruot.Snapshot(float(t), table[table[:, 0] == t, 1:], float(np.sum(table[:, 0] == t))) for t in times]


def split_holdout(snapshots, fraction, seed=0):
    """(training, held-out) snapshots: `fraction` of each later snapshot's cells, drawn at
    random, are kept out of training. The first snapshot stays whole (the model starts
    from its cells) and every training snapshot keeps its full cell count as its mass,
    so the mass targets do not change."""
    rng = np.random.default_rng(seed)
    train, held = [snapshots[0]], [snapshots[0]]
    for snap in snapshots[1:]:
        order = rng.permutation(len(snap.points))
        cut = len(order) - max(1, round(fraction * len(order)))
        train.append(ruot.Snapshot(snap.time, snap.points[order[:cut]], snap.mass))
        held.append(ruot.Snapshot(snap.time, snap.points[order[cut:]], snap.mass))
    return train, held


def exact_w1(x, weights, y):
    cost = ot.dist(x, y, metric="euclidean")
    a = weights / weights.sum()
    b = np.full(len(y), 1.0 / len(y))
    return float(ot.emd2(a, b, cost, numItermax=10**7))


def _mean_se(values):
    values = np.asarray(values, np.float64)
    se = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else float("nan")
    return float(values.mean()), float(se)


def effective_sample_size(weights):
    """(sum w)^2 / sum w^2: how many equally weighted particles the weighted ones are worth.
    W1 against a finite snapshot rises as it falls (EMT: two disjoint random sets of 150,
    300, 440 cells of one snapshot are 0.31, 0.28, 0.27 apart), so weights that
    concentrate cost W1 even when the shape is right."""
    return float(weights.sum() ** 2 / np.sum(weights ** 2))


def evaluate(model, snapshots, seeds):
    """W1 per later snapshot, mass error per time, effective sample size per time and path
    action for each simulation seed (the seed draws the Brownian noise; the start is
    always all of the first snapshot's cells): arrays (seeds, K - 1) x 3, (seeds,)."""
    w1, mass_err, ess, action = [], [], [], []
    for seed in seeds:
        traj = ruot.trajectories(model, seed=seed)
        w1.append([exact_w1(traj.points[k], traj.weights[k], snapshots[k].points) for k in range(1, len(snapshots))])
        mass_err.append(np.abs(traj.mass - model.relative_mass)[1:])
        ess.append([effective_sample_size(traj.weights[k]) for k in range(1, len(snapshots))])
        action.append(traj.action)
    return np.asarray(w1), np.asarray(mass_err), np.asarray(ess), np.asarray(action)


def make_config(spec, args):
    quick, steps, seed = args.quick, args.steps, args.seed
    if quick:
        config = RuotConfig(network=NetworkConfig(width=spec["quick_width"], residual_blocks=1),
                            steps=steps or spec["quick_steps"], report_every=50, particles=128,
                            sigma=spec["quick_sigma"], gamma_action=spec["quick_gamma_action"],
                            reconstruction=RECONSTRUCTIONS[spec["quick_reconstruction"]](),
                            optimizer=OptimizerConfig(learning_rate=spec["quick_lr"], weight_decay=0.0), seed=seed)
    else:
        # The paper's quadratic-psi settings, except the learning rate: the paper's 1e-4
        # needs far more steps than a 15-minute CPU budget allows.
        config = RuotConfig(steps=steps or 2000, report_every=100, particles=256,
                            optimizer=OptimizerConfig(learning_rate=1e-3), seed=seed)
    # Explicit overrides (None: the setting above).
    over = {}
    if args.width is not None:
        over["network"] = dataclasses.replace(over.get("network", config.network), width=args.width)
    if args.readout_scale is not None:
        over["network"] = dataclasses.replace(over.get("network", config.network), readout_scale=args.readout_scale)
    if args.snapshot_jumps is not None:
        over["network"] = dataclasses.replace(over.get("network", config.network),
                                              snapshot_jumps=args.snapshot_jumps == "on")
    if args.lr is not None:
        over["optimizer"] = dataclasses.replace(config.optimizer, learning_rate=args.lr)
    if args.reconstruction is not None:
        over["reconstruction"] = RECONSTRUCTIONS[args.reconstruction]()
    for name in ("sigma", "particles", "gamma_mass", "gamma_hjb", "gamma_action", "pretrain_fraction", "ot_epsilon"):
        if getattr(args, name) is not None:
            over[name] = getattr(args, name)
    return dataclasses.replace(config, **over)


def run(name: str, args):
    spec = DATASETS[name]
    snapshots = load(args.data_dir / spec["file"])
    training = snapshots
    if args.holdout is not None:
        # The default evaluation scores the very cells the model was fitted to (as the
        # paper's tables do); held-out cells tell a fit of the population from a fit of
        # the sample.
        training, snapshots = split_holdout(snapshots, args.holdout)
        print(f"hold-out: {args.holdout:g} of each later snapshot's cells kept out of training; "
              f"W1 below is against them")
    if args.load:
        arrays = dict(np.load(args.load / f"{name}.npz"))
        settings = json.loads((args.load / f"{name}.json").read_text())
        model = ruot.RuotModel.from_arrays(arrays, settings)
        fit_s, cpu_s, width = float("nan"), float("nan"), model.settings.width
        print(f"loaded {args.load / name}.npz")
    else:
        config = make_config(spec, args)
        print(f"config: {config}", flush=True)
        start, cpu0 = time.perf_counter(), os.times()
        model = ruot.fit(training, config,
                         progress=lambda s, l: print(f"  step {s:5d} " + " ".join(f"{k}={v:.4g}" for k, v in l.items()),
                                                     flush=True))
        fit_s = time.perf_counter() - start
        cpu1 = os.times()
        cpu_s = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
        width = config.network.width
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            np.savez(args.save / f"{name}.npz", **model.to_arrays())
            (args.save / f"{name}.json").write_text(json.dumps(model.settings_dict()))
    seeds = list(range(args.seed, args.seed + args.eval_seeds))
    w1_all, mass_all, ess_all, action_all = evaluate(model, snapshots, seeds)
    w1 = w1_all.mean(axis=0)
    mass_err = mass_all.mean(axis=0)
    ess = ess_all.mean(axis=0)
    w1_se = (w1_all.std(axis=0, ddof=1) / np.sqrt(len(seeds))) if len(seeds) > 1 else np.full_like(w1, np.nan)
    action, action_se = _mean_se(action_all)
    print(f"\n{name}: {len(snapshots)} snapshots, d={model.settings.dim}, steps={model.settings.steps_trained} "
          f"({model.settings.status}), width={width}, fit {fit_s:.1f} s wall, {cpu_s:.1f} s cpu, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"evaluation: mean (standard error) over {len(seeds)} simulation seed(s) {seeds[0]}..{seeds[-1]}, "
          f"{len(snapshots[0].points)} particles each (every cell of the first snapshot); "
          f"ESS: effective sample size of the weights")
    print(f"{'time':>6} {'W1 ours':>9} {'(se)':>8} " + " ".join(f"{m + ' W1':>13}" for m in spec["paper_w1"])
          + f" {'target':>8} {'mass err':>9} {'ESS':>6}")
    for k, value in enumerate(w1):
        paper = " ".join(f"{v[k]:13.4f}" for v in spec["paper_w1"].values())
        ok = "ok" if value <= spec["w1_target"][k] else "MISS"
        print(f"{snapshots[k + 1].time:6.1f} {value:9.4f} {w1_se[k]:8.4f} {paper} {spec['w1_target'][k]:8.4f} "
              f"{mass_err[k]:9.4f} {ess[k]:6.0f} {ok}")
    paper_action = ", ".join(f"{m} {v}" for m, v in spec["paper_action"].items())
    target = spec["action_target"]
    verdict = "" if target is None else (" ok" if action <= target else " MISS") + f" (target <= {target})"
    print(f"path action {action:.4f} (se {action_se:.4f}){verdict}; paper: {paper_action}")
    if training is not snapshots:
        w1_training = evaluate(model, training, seeds)[0].mean(axis=0)
        print("W1 against the training cells: " + " / ".join(f"{v:.4f}" for v in w1_training))
    if len(seeds) > 1:
        print("per seed: action " + " ".join(f"{v:.4f}" for v in action_all)
              + "; worst-seed W1 " + " ".join(f"{v:.4f}" for v in w1_all.max(axis=0)))
    return dict(w1=w1, mass_err=mass_err, action=action, fit_s=fit_s)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=[*DATASETS, "all"], default="all")
    parser.add_argument("--data-dir", type=pathlib.Path, default=DEFAULT_DATA)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="small network, a few hundred steps")
    parser.add_argument("--seed", type=int, default=0, help="training seed and first evaluation seed")
    parser.add_argument("--eval-seeds", type=int, default=5,
                        help="simulation seeds the evaluation averages over (W1, mass error, action: mean and "
                             "standard error); each simulates the first snapshot's cells with new noise")
    overrides = parser.add_argument_group("overrides of the (quick or full) settings")
    overrides.add_argument("--width", type=int, default=None)
    overrides.add_argument("--particles", type=int, default=None)
    overrides.add_argument("--sigma", type=float, default=None,
                           help="diffusion of the simulated particles (RuotConfig.sigma)")
    overrides.add_argument("--readout-scale", type=float, default=None,
                           help="initial read-out weight scale (NetworkConfig.readout_scale)")
    overrides.add_argument("--snapshot-jumps", choices=["on", "off"], default=None,
                           help="lambda may jump at the interior snapshot times (NetworkConfig.snapshot_jumps)")
    overrides.add_argument("--lr", type=float, default=None, help="peak learning rate")
    overrides.add_argument("--gamma-mass", type=float, default=None)
    overrides.add_argument("--gamma-hjb", type=float, default=None)
    overrides.add_argument("--gamma-action", type=float, default=None)
    overrides.add_argument("--pretrain-fraction", type=float, default=None)
    overrides.add_argument("--reconstruction", choices=sorted(RECONSTRUCTIONS), default=None,
                           help="training reconstruction term (RuotConfig.reconstruction; quick EMT: sinkhorn, else energy)")
    overrides.add_argument("--ot-epsilon", type=float, default=None,
                           help="entropic weight of the sinkhorn reconstruction, x the data's total variance "
                                "(RuotConfig.ot_epsilon)")
    parser.add_argument("--holdout", type=float, default=None,
                        help="keep this fraction of each later snapshot's cells out of training and score W1 "
                             "against them (the default scores the cells the model was fitted to)")
    parser.add_argument("--save", type=pathlib.Path, default=None, help="write DIR/<dataset>.npz and .json")
    parser.add_argument("--load", type=pathlib.Path, default=None,
                        help="evaluate DIR/<dataset>.npz and .json (from --save) instead of training")
    args = parser.parse_args()
    if args.eval_seeds < 1:
        parser.error("--eval-seeds must be at least 1")
    if args.holdout is not None and not 0 < args.holdout < 1:
        parser.error("--holdout must lie in (0, 1)")
    names = list(DATASETS) if args.dataset == "all" else [args.dataset]
    for name in names:
        run(name, args)


if __name__ == "__main__":
    main()
