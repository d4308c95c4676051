"""Probability-flow ODE samplers side by side: accuracy against NFE, and throughput.

    .venv/bin/python benchmarks/pfode.py                 # full grid: d in {2, 16, 64}, NFE {10, 20, 50, 100}
    .venv/bin/python benchmarks/pfode.py --dims 16       # one part of it (--targets, --samplers too)
    .venv/bin/python benchmarks/pfode.py --quick         # d = 2, NFE {10, 20}, small sample counts
    .venv/bin/python benchmarks/pfode.py --reference     # the issue's d = 10 reference points, explained

Rows: the VP schedule with our samplers (Euler, Heun, DDIM, DPM-Solver++ 2M / 3M, Dopri5),
EDM's schedule with Heun and Dopri5 (Karras grid, last step onto sigma = 0), and plain
diffrax solves of the same VP ODE on the same grid (diffrax Heun, Tsit5) as the
reference. Fixed-step rows get the column's NFE as their budget (`sample(nfe=...)`);
Dopri5 cannot be held to an accuracy by NFE, so its columns are rtol = atol in
{1e-2, 1e-3, 1e-4, 1e-5} and the cell shows the NFE it used.

Errors:
- Gaussian targets: the exact W2 between the samples' law and the target. Every sampler
  is an affine map of the prior draw, so the law is pushed forward in closed form
  (float64, d + 1 points) and compared by the Bures formula. Runs start from the usual
  noise prior N(0, sigma_T^2 I), so this includes what no integrator removes: the prior
  mismatch at t_start (VP: alpha(1) = 0.0066 times the data mean is missing) and the
  noise left at t_end (VP: sigma(1e-3) = 0.01). The "exact ODE" rows (Dopri5 at 1e-10)
  show that floor per schedule.
- Gaussian-mixture targets: the integration error alone, as an upper bound on the W2
  between the sampler's law and the exact ODE's: sqrt(mean |x - x_ref|^2) over
  `--coupling-samples` draws, x_ref the exact ODE (Dopri5 at 1e-10) from the same
  initial noise; "[k]": k of the draws ended more than 1 away from the exact endpoint,
  almost always in another component (one such draw of 1000 at distance 15 alone
  makes the RMS 0.47). An empirical W2 to the target would measure mostly sampling noise: on
  the d = 2 mixture two draws of 1000 target samples are 0.18 to 0.41 apart (POT emd2,
  eight seed pairs), as wrong mode weights of a few per cent cost sqrt(share) x distance.
Throughput: `--throughput-samples` (default 10^5) float32 samples with the NFE-20 setting
of each row (Dopri5: 1e-3): the best of three timed calls after one that compiles.
"served/s" is the same through a real `monge serve` on loopback (benchmarks/served.py),
as a remote user asks for them, the samples coming back over the RPC (diffrax rows:
not a service sampler; `--no-served` leaves the column out).
`--no-throughput` and `--throughput-only` split a run in two.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

import diffrax  # noqa: E402

from monge.solvers.pfode import (  # noqa: E402
    Diffrax,
    Dopri5,
    DPMSolverPlusPlus,
    EDMSchedule,
    Euler,
    ExponentialEuler,
    GaussianMixture,
    Heun,
    VPSchedule,
    sample,
)
from monge.solvers.pfode.metrics import affine_pushforward, gaussian_w2  # noqa: E402

DOPRI_TOLERANCES = [1e-2, 1e-3, 1e-4, 1e-5, 1e-6]
EXACT = Dopri5(rtol=1e-10, atol=1e-10, max_steps=100_000)
FAR = 1.0  # a mixture draw ending this far from the exact ODE's endpoint: another component, mostly


def samplers():
    """name -> (schedule, sampler or None for Dopri5 by tolerance)."""
    vp, edm = VPSchedule(), EDMSchedule()
    return {
        "VP Euler": (vp, Euler()),
        "VP Heun": (vp, Heun()),
        "VP DDIM": (vp, ExponentialEuler()),
        "VP DPM++2M": (vp, DPMSolverPlusPlus(2)),
        "VP DPM++3M": (vp, DPMSolverPlusPlus(3)),
        "VP Dopri5": (vp, None),
        "EDM Heun": (edm, Heun()),  # EDM's grid: 80 .. 0.002, then a last Euler step onto 0
        "EDM Dopri5": (edm, None),
        "diffrax Heun": (vp, Diffrax(diffrax.Heun())),
        "diffrax Tsit5": (vp, Diffrax(diffrax.Tsit5())),
    }


def budget(sampler, nfe, column):
    """(sampler, sample() budget kwargs) for a column, or (None, None) if it does not fit."""
    if sampler is None:
        tol = DOPRI_TOLERANCES[min(column, len(DOPRI_TOLERANCES) - 1)]
        return Dopri5(rtol=tol, atol=tol), {"steps": 4}
    try:
        sample_kwargs = {"nfe": nfe}
        sampler.steps_for_nfe(nfe)
    except ValueError:
        return None, None
    return sampler, sample_kwargs


def make_targets(d, rng):
    factor = rng.normal(size=(d, d)) / np.sqrt(d)
    gaussian = GaussianMixture.gaussian(rng.normal(size=d), factor @ factor.T + 0.1 * np.eye(d))
    k = 4
    factors = rng.normal(size=(k, d, d)) * 0.4 / np.sqrt(d)
    mixture = GaussianMixture(
        rng.normal(size=(k, d)) * 2.0, factors @ np.swapaxes(factors, 1, 2) + 0.05 * np.eye(d),
        np.array([0.1, 0.2, 0.3, 0.4]),
    )
    return {"Gaussian": gaussian, "GMM(4)": mixture}


def _prior_std(schedule):
    t_start, _ = schedule.default_interval()
    return float(schedule.sigma(jnp.asarray(float(t_start))))


def _run(target, schedule, sampler, kwargs, x_init, dtype=jnp.float64):
    out = sample(target, schedule, sampler, num_samples=x_init.shape[0], key=jax.random.key(0),
                 x_init=jnp.asarray(x_init, dtype), dtype=dtype, **kwargs)
    if int(out.status) != 0:
        raise RuntimeError(out.message)
    return np.asarray(out.samples), int(out.nfe)


def gaussian_error(target, schedule, sampler, kwargs, prior="noise"):
    """Exact W2 to the target (prior "noise") or, for prior "marginal", the integration
    error alone: from the exact law at t_start, against the exact law at t_end."""
    d = target.dim
    t_start, t_end = schedule.default_interval()
    mean_t, cov_t = np.asarray(target.means[0]), np.asarray(target.covariances[0])
    if prior == "noise":
        mean0, cov0 = np.zeros(d), _prior_std(schedule) ** 2 * np.eye(d)
    else:
        mean0, cov0 = (np.asarray(a) for a in target.marginal_mean_cov(float(t_start), schedule))
        mean_t, cov_t = (np.asarray(a) for a in target.marginal_mean_cov(float(t_end), schedule))
    used = []

    def push(points):
        samples, nfe = _run(target, schedule, sampler, kwargs, points)
        used.append(nfe)
        return samples

    mean, cov = affine_pushforward(push, mean0, cov0)
    return gaussian_w2(mean, cov, mean_t, cov_t), used[0]


class Coupling:
    """Integration error on a mixture: RMS distance to the exact ODE from the same noise."""

    def __init__(self, target, n, seed):
        self.target, self.n, self.seed = target, n, seed
        self._noise, self._reference = {}, {}

    def noise(self, schedule):
        key = type(schedule).__name__
        if key not in self._noise:
            z = np.random.default_rng(self.seed).normal(size=(self.n, self.target.dim))
            self._noise[key] = _prior_std(schedule) * z
        return self._noise[key]

    def reference(self, schedule):
        key = type(schedule).__name__
        if key not in self._reference:
            self._reference[key] = _run(self.target, schedule, EXACT, {"steps": 8}, self.noise(schedule))
        return self._reference[key]

    def error(self, schedule, sampler, kwargs):
        samples, nfe = _run(self.target, schedule, sampler, kwargs, self.noise(schedule))
        reference, _ = self.reference(schedule)
        distance = np.sqrt(np.sum((samples - reference) ** 2, axis=-1))
        return float(np.sqrt(np.mean(distance**2))), nfe, int(np.sum(distance > FAR))


def throughput(target, schedule, sampler, kwargs, n, repeats=3):
    def once():
        out = sample(target, schedule, sampler, num_samples=n, key=jax.random.key(3), dtype=jnp.float32, **kwargs)
        out.samples.block_until_ready()

    once()  # compile
    best = float("inf")
    for _ in range(repeats):  # the best of a few: the machine may be shared
        start = time.perf_counter()
        once()
        best = min(best, time.perf_counter() - start)
    return n / best


SERVICE_SAMPLERS = {"VP Euler": ("vp", "euler"), "VP Heun": ("vp", "heun"), "VP DDIM": ("vp", "ddim"),
                    "VP DPM++2M": ("vp", "dpm_solver_pp_2m"), "VP DPM++3M": ("vp", "dpm_solver_pp_3m"),
                    "VP Dopri5": ("vp", "dopri5"), "EDM Heun": ("edm", "heun"), "EDM Dopri5": ("edm", "dopri5")}


def served_throughput(client, target, name, n, repeats=3):
    """Samples per second of the row's NFE-20 setting (Dopri5: 1e-3) asked of the server."""
    from monge.client import requests

    schedule, sampler = SERVICE_SAMPLERS[name]
    budget_kwargs = {"rtol": 1e-3, "atol": 1e-3} if sampler == "dopri5" else {"nfe": 20}
    source = requests.gaussian_mixture(np.asarray(target.means), np.asarray(target.covariances),
                                       np.asarray(target.weights))

    def once():
        return client.sample_probability_flow(source, num_samples=n, schedule=schedule, sampler=sampler,
                                              seed=3, dtype="float32", **budget_kwargs)

    once()  # compiles on the worker
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        once()
        best = min(best, time.perf_counter() - start)
    return n / best


def reference():
    """The issue's reference points (d = 10 Gaussian: VP-Heun 20 steps W2 0.014, VP-Euler
    0.143, EDM-Heun 18 steps / 35 evaluations 0.17-0.20), three ways: W2 to the target
    from the noise prior (what a user gets), the floor of that (the exact ODE from the
    same prior), and the integration error alone (from the exact law at t_start, against
    the exact law at t_end). The quoted target is not known; ours is
    `make_targets(10, default_rng(0))["Gaussian"]`."""
    target = make_targets(10, np.random.default_rng(0))["Gaussian"]
    vp, edm = VPSchedule(), EDMSchedule()
    print(f"{'d=10 Gaussian':<14} {'steps':>5} {'NFE':>4}  {'W2 to target':>12}  {'exact-ODE floor':>15}  "
          f"{'integration only':>16}  quoted")
    floors = {name: gaussian_error(target, s, EXACT, {"steps": 8})[0] for name, s in (("VP", vp), ("EDM", edm))}
    for name, schedule, sampler, steps, quoted in [
        ("VP Heun", vp, Heun(), 20, "0.014"),
        ("VP Euler", vp, Euler(), 20, "0.143"),
        ("EDM Heun", edm, Heun(), 18, "0.17-0.20"),
    ]:
        w2, used = gaussian_error(target, schedule, sampler, {"steps": steps})
        alone, _ = gaussian_error(target, schedule, sampler, {"steps": steps}, prior="marginal")
        floor = floors[name.split()[0]]
        print(f"{name:<14} {steps:>5} {used:>4}  {w2:>12.4f}  {floor:>15.4f}  {alone:>16.4f}  {quoted}")


def _cell(value, nfe, column_nfe, dopri):
    if value is None:
        return "-"
    text = f"{value:.2e}" if value < 1e-3 else f"{value:.4f}"
    return text + (f" ({nfe})" if dopri or nfe != column_nfe else "")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="d=2, NFE 10 and 20, small sample counts")
    parser.add_argument("--dims", type=int, nargs="+", default=None)
    parser.add_argument("--nfe", type=int, nargs="+", default=None)
    parser.add_argument("--samplers", nargs="+", default=None, help="row names, e.g. 'VP Heun'")
    parser.add_argument("--targets", nargs="+", default=None, choices=["Gaussian", "GMM(4)"])
    parser.add_argument("--coupling-samples", type=int, default=None, help="draws for mixture errors (1000)")
    parser.add_argument("--throughput-samples", type=int, default=None, help="samples for samples/s (1e5)")
    parser.add_argument("--no-throughput", action="store_true")
    parser.add_argument("--throughput-only", action="store_true", help="only the samples/s column")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    parser.add_argument("--reference", action="store_true", help="only the d = 10 reference points, explained")
    parser.add_argument("--no-served", action="store_true", help="leave out the served samples/s column")
    args = parser.parse_args(argv)
    if args.reference:
        return reference()
    with contextlib.ExitStack() as stack:
        client = None
        if not (args.no_served or args.no_throughput):
            from served import served_client

            client = stack.enter_context(served_client())
        grid(args, parser, client)


def grid(args, parser, client):

    dims = args.dims or ([2] if args.quick else [2, 16, 64])
    budgets = args.nfe or ([10, 20] if args.quick else [10, 20, 50, 100])
    coupling_n = args.coupling_samples or (300 if args.quick else 1000)
    tp_n = args.throughput_samples or (2000 if args.quick else 100_000)
    rows = samplers()
    names = args.samplers or list(rows)
    unknown = set(names) - set(rows)
    if unknown:
        parser.error(f"unknown samplers {sorted(unknown)}; choose from {list(rows)}")

    columns = [f"NFE {n}" for n in budgets] + ["samples/s"] + (["served/s"] if client is not None else [])
    if args.markdown:
        print("| target | d | sampler | " + " | ".join(columns) + " |")
        print("| --- | ---: | --- | " + " | ".join("---:" for _ in columns) + " |")
    else:
        print(f"{'target':<9} {'d':>3}  {'sampler':<18}" + "".join(f"{c:>17}" for c in columns))

    def emit(tname, d, name, cells):
        if args.markdown:
            print(f"| {tname} | {d} | {name} | " + " | ".join(cells) + " |", flush=True)
        else:
            print(f"{tname:<9} {d:>3}  {name:<18}" + "".join(f"{c:>17}" for c in cells), flush=True)

    rng = np.random.default_rng(0)
    for d in dims:
        targets = make_targets(d, rng)
        for tname, target in targets.items():
            if args.targets and tname not in args.targets:
                continue
            started = time.perf_counter()
            gaussian = tname == "Gaussian"
            coupling = None if gaussian else Coupling(target, coupling_n, seed=d)
            for schedule_name, schedule in (("VP", VPSchedule()), ("EDM", EDMSchedule())):
                if not any(n.startswith(schedule_name) or (schedule_name == "VP" and n.startswith("diffrax"))
                           for n in names):
                    continue
                if gaussian and not args.throughput_only:
                    floor, _ = gaussian_error(target, schedule, EXACT, {"steps": 8})
                    emit(tname, d, f"{schedule_name} exact ODE", [f"{floor:.4f}"] + [""] * (len(columns) - 2)
                         + ["floor: W2 of the exact ODE from the noise prior"])
            for name in names:
                schedule, base = rows[name]
                cells = []
                for column, nfe in enumerate(budgets):
                    sampler, kwargs = budget(base, nfe, column)
                    if sampler is None or args.throughput_only:
                        cells.append("-")
                        continue
                    far = 0
                    if gaussian:
                        error, used = gaussian_error(target, schedule, sampler, kwargs)
                    else:
                        error, used, far = coupling.error(schedule, sampler, kwargs)
                    cells.append(_cell(error, used, nfe, base is None) + (f" [{far}]" if far else ""))
                rate = served_rate = "-"
                if not args.no_throughput:
                    sampler, kwargs = budget(base, 20, 1)
                    if sampler is not None:
                        rate = f"{throughput(target, schedule, sampler, kwargs, tp_n):,.0f}"
                    if client is not None and name in SERVICE_SAMPLERS:
                        served_rate = f"{served_throughput(client, target, name, tp_n):,.0f}"
                emit(tname, d, name, cells + [rate] + ([served_rate] if client is not None else []))
            print(f"# {tname} d={d}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    print(
        "\nGaussian: exact W2 to the target (Bures, closed-form pushforward), noise prior. "
        f"GMM(4): sqrt(mean |x - x_exact|^2) over {coupling_n} draws, x_exact the exact ODE from the same "
        "noise (integration error only; an upper bound on W2 to the exact ODE's law); [k]: draws ending more "
        f"than {FAR:g} away. "
        "'(k)': NFE used when it differs from the column; Dopri5 columns are rtol = atol 1e-2, 1e-3, 1e-4, 1e-5. "
        f"samples/s: {tp_n:,} float32 samples at NFE 20 (Dopri5: 1e-3)."
    )


if __name__ == "__main__":
    main()
