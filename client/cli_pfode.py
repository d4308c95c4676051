"""`monge sample` and `monge loglik`: probability-flow sampling and log-likelihoods from the shell.

    monge sample SOURCE [--sampler heun] [--schedule vp] [--steps N | --nfe N] [-n 1000]
                        [--seed 0] [--trajectory] [--loglik exact|hutchinson] --out S.npy|S.npz
    monge loglik SOURCE --points P.npy [--divergence exact|hutchinson] [--probes 16] [--out R.npz]

SOURCE is one of
- a .json file with an analytic target: {"mean": [...], "cov": [[...]]} for a Gaussian,
  or {"means": [[...]], "covariances": [[[...]]], "weights": [...]} for a mixture;
- an .npz file: arrays `mean`, `cov` or `means`, `covariances`[, `weights`] (the same
  targets), or weights of the built-in MLP (`layers.0.w`, `layers.0.b`, ...; give
  `--hidden` and `--prediction` unless the file holds `hidden` and `prediction`, as the
  result file of a training job does, whose weights are `weights.layers.0.w`, ...);
- a .jaxexport file: your own network f(x, t), exported with `jax.export` and saved as
  `exported.serialize()` bytes (with `--prediction`; see docs/pfode.md);
- a trained model's id on the server (32 hex digits).

`sample --out` writes the samples to an .npy, or the whole result (samples, times,
trajectory, log-likelihoods, nfe, status) to an .npz; `loglik --out` the log-likelihoods
to an .npy, or the whole result to an .npz. Exit 0 when the integration succeeded, 3
when it did not (an adaptive step cap, a non-finite state), 2 when the server refused.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np

from monge.client.cli_common import InputError, connection, load_array, result_arrays, summary

_MODEL_ID = re.compile(r"[0-9a-f]{32}")
_SCHEDULE_PARAMETERS = ("beta_min", "beta_max", "sigma_min", "sigma_max", "rho")


def _mixture(arrays: dict, where: str):
    from monge.client import requests

    if "mean" in arrays or "cov" in arrays:
        if not ("mean" in arrays and "cov" in arrays):
            raise InputError(f"{where}: a Gaussian needs both mean and cov")
        return requests.gaussian(np.asarray(arrays["mean"], float), np.asarray(arrays["cov"], float))
    if not ("means" in arrays and "covariances" in arrays):
        raise InputError(f"{where}: needs mean and cov, or means, covariances[, weights]")
    weights = arrays.get("weights")
    return requests.gaussian_mixture(np.asarray(arrays["means"], float), np.asarray(arrays["covariances"], float),
                                     None if weights is None else np.asarray(weights, float))


def _mlp(arrays: dict, args, where: str):
    from monge.client import requests

    prefix = "weights." if any(name.startswith("weights.layers.") for name in arrays) else ""
    weights = {name.removeprefix(prefix): value for name, value in arrays.items()
               if name.startswith(prefix + "layers.")}
    hidden = args.hidden if args.hidden else arrays.get("hidden")
    prediction = args.prediction or (str(arrays["prediction"]) if "prediction" in arrays else None)
    if hidden is None or prediction is None:
        raise InputError(f"{where}: MLP weights need --hidden and --prediction (or arrays hidden, prediction)")
    embedding = args.time_embedding_dim or int(arrays.get("time_embedding_dim", 16))
    try:
        return requests.mlp_model(weights, hidden=[int(h) for h in np.atleast_1d(hidden)], prediction=prediction,
                                  time_embedding_dim=embedding)
    except ValueError as error:
        raise InputError(f"{where}: {error}") from None


def load_source(spec: str, args):
    """The score source a SOURCE argument names (see the module docstring)."""
    if not os.path.exists(spec):
        if _MODEL_ID.fullmatch(spec):
            return spec
        raise InputError(f"{spec!r} is neither a file nor a model id (32 hex digits)")
    if spec.endswith(".jaxexport"):
        return _exported(spec, args)
    try:
        if spec.endswith(".json"):
            with open(spec) as file:
                arrays = json.load(file)
            if not isinstance(arrays, dict):
                raise InputError(f"{spec}: expected a JSON object")
            return _mixture(arrays, spec)
        with np.load(spec, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read {spec}: {error}") from None
    if any(name.startswith(("layers.", "weights.layers.")) for name in arrays):
        return _mlp(arrays, args, spec)
    return _mixture(arrays, spec)


def _exported(spec: str, args):
    from monge.client import requests

    if args.prediction is None:
        raise InputError(f"{spec}: an exported network needs --prediction (what its output is)")
    try:
        with open(spec, "rb") as file:
            artifact = file.read()
        return requests.exported_model(artifact, prediction=args.prediction)
    except OSError as error:
        raise InputError(f"cannot read {spec}: {error}") from None
    except Exception as error:  # noqa: BLE001 - jax.export's own error for bytes that are not an artifact
        raise InputError(f"{spec}: not a jax.export artifact ({type(error).__name__}: {error})") from None


def _schedule(args):
    from monge.client import requests

    parameters = {name: getattr(args, name) for name in _SCHEDULE_PARAMETERS if getattr(args, name) is not None}
    return requests.schedule(args.schedule, **parameters)


def _source_or_exit(args):
    try:
        return load_source(args.source, args)
    except InputError as error:
        raise SystemExit(f"monge: {error}") from None


def _finish(args, result, single: str) -> int:
    """The solve time; the result saved to --out (`single`, one of its arrays, to an .npy,
    or every array to an .npz); the exit code from its status."""
    d = result.diagnostics
    print(f"solve time      {d.solve_seconds:.3f} s")
    if args.out:
        try:
            if args.out.endswith(".npy"):
                np.save(args.out, getattr(result, single))
            else:
                np.savez(args.out, **result_arrays(result))
        except OSError as error:
            raise SystemExit(f"monge: cannot write {args.out}: {error}") from None
        print(f"saved           {args.out}")
    return 0 if d.ok else 3


def _sample(args) -> int:
    from monge.client import Client

    source = _source_or_exit(args)
    if args.steps is not None and args.nfe is not None:
        raise SystemExit("monge: give --steps or --nfe, not both")
    with Client(args.target, **connection(args)) as client:
        result = client.sample_probability_flow(
            source, num_samples=args.num_samples, schedule=_schedule(args), sampler=args.sampler,
            steps=args.steps, nfe=args.nfe, time_grid=args.time_grid, seed=args.seed, dtype=args.dtype,
            rtol=args.rtol, atol=args.atol, prior=args.prior, t_start=args.t_start, t_end=args.t_end,
            return_trajectory=args.trajectory, log_likelihood=args.loglik, num_probes=args.probes,
            timeout=args.timeout,
        )
    d = result.diagnostics
    print(summary(result))
    print(f"message         {d.message}")
    if result.samples is not None and len(result.samples):
        print(f"mean            {np.array2string(result.samples.mean(0), precision=4, max_line_width=200)}")
        print(f"std             {np.array2string(result.samples.std(0), precision=4, max_line_width=200)}")
    if result.log_likelihood is not None:
        print(f"log-likelihood  mean {float(np.mean(result.log_likelihood)):.6g}")
    return _finish(args, result, "samples")


def _points(path: str) -> np.ndarray:
    if path.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as stored:
                for name in ("points", "samples", "x"):
                    if name in stored.files:
                        return stored[name]
        except (OSError, ValueError) as error:
            raise SystemExit(f"monge: cannot read --points from {path}: {error}") from None
        raise SystemExit(f"monge: {path}: needs an array points (or samples, x)")
    return load_array(path, "--points")


def _loglik(args) -> int:
    from monge.client import Client

    source = _source_or_exit(args)
    points = _points(args.points)
    with Client(args.target, **connection(args)) as client:
        result = client.probability_flow_log_likelihood(
            source, points, schedule=_schedule(args), divergence=args.divergence, num_probes=args.probes,
            rtol=args.rtol, atol=args.atol, seed=args.seed, dtype=args.dtype, prior=args.prior,
            t_start=args.t_start, t_end=args.t_end, max_steps=args.max_steps, timeout=args.timeout,
        )
    d = result.diagnostics
    print(summary(result))
    print(f"message         {d.message}")
    if result.log_likelihood is not None and len(result.log_likelihood):
        ll = result.log_likelihood
        print(f"log-likelihood  mean {float(np.mean(ll)):.6g}, min {float(np.min(ll)):.6g}, "
              f"max {float(np.max(ll)):.6g}")
        if args.divergence == "hutchinson":
            print(f"standard error  mean {float(np.mean(result.standard_error)):.3g}")
    return _finish(args, result, "log_likelihood")


def _model_options(p) -> None:
    p.add_argument("source", help="target .json/.npz, MLP weights .npz, an exported network .jaxexport, "
                                  "or a trained model id")
    p.add_argument("--schedule", default="vp", choices=["vp", "ve", "edm"])
    for name in _SCHEDULE_PARAMETERS:
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=float, help="schedule parameter")
    p.add_argument("--prior", default="noise", choices=["noise", "marginal"],
                   help="marginal: the exact noised law of an analytic target")
    p.add_argument("--t-start", type=float, help="where sampling starts (noise)")
    p.add_argument("--t-end", type=float, help="where sampling ends (data)")
    p.add_argument("--hidden", type=int, nargs="+", help="MLP hidden widths (uploaded weights)")
    p.add_argument("--prediction", choices=["score", "noise", "data", "velocity"],
                   help="what the MLP outputs (uploaded weights)")
    p.add_argument("--time-embedding-dim", type=int, help="MLP embedding width (default 16)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rtol", type=float, help="adaptive tolerance (Dopri5, likelihoods)")
    p.add_argument("--atol", type=float, help="adaptive tolerance (Dopri5, likelihoods)")


def register(commands, remote) -> None:
    """Add `sample` and `loglik` to the `monge` parser's subparsers; `remote(p, timeout)`
    adds the server address, timeout and connection options."""
    sample = commands.add_parser("sample", help="draw samples by integrating a probability-flow ODE")
    remote(sample, 600.0)
    _model_options(sample)
    sample.add_argument("--sampler", default="heun",
                        choices=["euler", "heun", "ddim", "dpm_solver_pp_2m", "dpm_solver_pp_3m", "dopri5"])
    sample.add_argument("--steps", type=int, help="grid steps (default 20 unless --nfe)")
    sample.add_argument("--nfe", type=int, help="score evaluations instead of --steps")
    sample.add_argument("--time-grid", choices=["uniform", "log_snr", "karras"],
                        help="default: the sampler's for the schedule")
    sample.add_argument("-n", "--num-samples", type=int, default=1000)
    sample.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    sample.add_argument("--trajectory", action="store_true", help="also return the states on the grid (.npz)")
    sample.add_argument("--loglik", choices=["exact", "hutchinson"], help="also the samples' log-likelihoods")
    sample.add_argument("--probes", type=int, help="Hutchinson probes (with --loglik hutchinson)")
    sample.add_argument("--out", help="samples .npy, or the whole result .npz")
    sample.set_defaults(run=_sample)

    loglik = commands.add_parser("loglik", help="log-likelihoods of points under a probability-flow model")
    remote(loglik, 600.0)
    _model_options(loglik)
    loglik.add_argument("--points", required=True, help="the points, .npy (n, d) or .npz with points")
    loglik.add_argument("--divergence", default="exact", choices=["exact", "hutchinson"])
    loglik.add_argument("--probes", type=int, help="Hutchinson probes (default 16)")
    loglik.add_argument("--max-steps", type=int, help="adaptive step cap (default 4096)")
    loglik.add_argument("--dtype", choices=["float32", "float64"], help="default: the points' dtype")
    loglik.add_argument("--out", help="log-likelihoods .npy, or the whole result .npz")
    loglik.set_defaults(run=_loglik)
