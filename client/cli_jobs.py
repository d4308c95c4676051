"""`monge jobs ...`: follow the server's jobs from the shell.

    monge jobs list [--state running] [--json]         newest first
    monge jobs get ID [--json] [--out DIR]             state, progress, per-item results
    monge jobs watch ID                                progress events, then the final status
    monge jobs cancel ID                               stop a queued or running job

`watch` exits 0 when the job succeeded with every item, 3 when it failed, was cancelled
or some item failed; `cancel` exits 0 when the job is cancelled, 3 when it had already
finished. Any verb exits 2 when the server refuses the call (one line: code and message).
"""

from __future__ import annotations

import json
import pathlib
import sys
import time

from monge.client.cli_common import error_line, result_arrays, saved, summary, connection

STATES = ("queued", "running", "succeeded", "failed", "cancelled")


def _when(seconds: float | None) -> str:
    return "-" if seconds is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def _items(count: int) -> str:
    return f"{count} item" + "s" * (count != 1)


def _ran(info) -> float | None:
    if info.start_time is None:
        return None
    return (info.end_time or time.time()) - info.start_time


def _error_dict(error) -> dict | None:
    if error is None:
        return None
    return {"code": error.code.name, "message": error.message, "field": error.field,
            "violations": [{"field": v.field, "description": v.description} for v in error.violations]}


def _item_dict(index: int, item) -> dict:
    if not item.ok:
        return {"index": index, "ok": False, "error": _error_dict(item.error)}
    scalars = {key: value.item() for key, value in result_arrays(item.value).items()
               if getattr(value, "ndim", 1) == 0}
    return {"index": index, "ok": True, **scalars}


def job_dict(info) -> dict:
    """A job as plain JSON values (results as their scalar numbers, no arrays)."""
    out = {"job_id": info.job_id, "request_id": info.request_id, "state": info.state,
           "item_count": info.item_count, "failed_items": info.failed_items, "attempts": info.attempts,
           "progress": info.progress, "error": _error_dict(info.error), "create_time": info.create_time,
           "start_time": info.start_time, "end_time": info.end_time}
    if info.results is not None:
        out["results"] = [_item_dict(i, item) for i, item in enumerate(info.results)]
    return out


def progress_line(info) -> str:
    """Where a running job is: item, iteration, error (and loss), elapsed."""
    p = info.progress
    parts = [f"item {p['item']}"] if info.item_count == 1 else [f"items done {p['items_done']}/{info.item_count}",
                                                                  f"item {p['item']}"]
    parts.append(f"iteration {p['iteration']}")
    if not p.get("loss_terms"):  # training jobs have losses, not a stopping error
        parts.append(f"error {p['error']:.3e}")
    if p.get("loss"):
        parts.append(f"loss {p['loss']:.6g}")
    parts += [f"{name} {value:.4g}" for name, value in sorted(p.get("loss_terms", {}).items())]
    parts.append(f"elapsed {p['elapsed_seconds']:.1f} s")
    if p.get("yielded_seconds"):
        parts.append(f"yielded {p['yielded_seconds']:.1f} s")
    return "  ".join(parts)


def _outcome_line(info) -> str:
    ran = _ran(info)
    text = f"job {info.job_id}: {info.state}"
    if ran is not None and info.done:
        text += f" in {ran:.2f} s"
    text += f" ({_items(info.item_count)}, {info.failed_items} failed"
    if info.attempts > 1:
        text += f", {info.attempts} attempts"
    text += ")"
    if info.error is not None:
        text += f": {error_line(info.error)}"
    return text


def _print_items(info) -> None:
    for index, item in enumerate(info.results or ()):
        text = summary(item.value) if item.ok else error_line(item.error)
        print(f"  item {index}: {text}")


def _exit_code(info) -> int:
    return 0 if info.state == "succeeded" and info.failed_items == 0 else 3


def _list(args) -> int:
    from monge.client import Client

    with Client(args.target, timeout=args.timeout, **connection(args)) as client:
        jobs = client.jobs(args.state)
    if args.json:
        print(json.dumps([job_dict(j) for j in jobs], indent=2))
        return 0
    if not jobs:
        print("no jobs" + (f" {args.state}" if args.state else ""))
        return 0
    width = max(len(j.job_id) for j in jobs)
    print(f"{'JOB':<{width}}  {'STATE':<9}  {'ITEMS':>5}  {'FAILED':>6}  {'CREATED':<19}  RAN")
    for j in jobs:
        ran = _ran(j)
        print(f"{j.job_id:<{width}}  {j.state:<9}  {j.item_count:>5}  {j.failed_items:>6}  "
              f"{_when(j.create_time):<19}  {'-' if ran is None else f'{ran:.2f} s'}")
    return 0


def _write_results(info, out_dir: str) -> int:
    """Each item's result as DIR/item-NNN.npz; returns how many could not be written."""
    directory = pathlib.Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    failures = 0
    for index, item in enumerate(info.results or ()):
        if not item.ok:
            continue
        path = directory / f"item-{index:03d}.npz"
        if not saved(path, item.value, f"item {index}"):
            failures += 1
            continue
        print(f"saved item {index} to {path}")
    return failures


def _get(args) -> int:
    from monge.client import Client

    with Client(args.target, timeout=args.timeout, **connection(args)) as client:
        info = client.job(args.id, include_results=True)
    if args.json:
        print(json.dumps(job_dict(info), indent=2))
    else:
        print(f"job         {info.job_id}")
        if info.request_id:
            print(f"request id  {info.request_id}")
        print(f"state       {info.state} ({_items(info.item_count)}, {info.failed_items} failed, "
              f"attempt {info.attempts})")
        print(f"created     {_when(info.create_time)}")
        print(f"started     {_when(info.start_time)}")
        ran = _ran(info)
        print(f"ended       {_when(info.end_time)}" + ("" if ran is None or not info.done else f" (ran {ran:.2f} s)"))
        if info.state == "running":
            print(f"progress    {progress_line(info)}")
        if info.error is not None:
            print(f"error       {error_line(info.error)}")
        _print_items(info)
    if args.out:
        if not info.done:
            print(f"monge: job {info.job_id} is {info.state}; its results come when it is done", file=sys.stderr)
            return 3
        return 3 if _write_results(info, args.out) else 0
    return 0


def _watch(args) -> int:
    from monge.client import Client

    last, info = None, None
    with Client(args.target, timeout=args.timeout, **connection(args)) as client:
        for info in client.watch(args.id):
            if info.done:
                break
            line = f"{info.state:<9} {progress_line(info)}" if info.state == "running" else info.state
            if line != last:
                print(line, flush=True)
                last = line
    if info is None or not info.done:
        state = "unknown" if info is None else info.state
        print(f"monge: the watch of job {args.id} ended while it was {state}", file=sys.stderr)
        return 2
    print(_outcome_line(info))
    _print_items(info)
    return _exit_code(info)


def _cancel(args) -> int:
    from monge.client import Client

    with Client(args.target, timeout=args.timeout, **connection(args)) as client:
        info = client.cancel(args.id)
    if info.state == "cancelled":
        print(f"job {info.job_id}: cancelled")
        return 0
    print(f"job {info.job_id}: already {info.state}, not cancelled")
    return 3


def register(commands, remote) -> None:
    """Add `jobs` and its verbs to the `monge` parser's subparsers; `remote(p, timeout)`
    adds the server address and timeout options."""
    jobs = commands.add_parser("jobs", help="list, inspect, watch and cancel jobs")
    verbs = jobs.add_subparsers(dest="jobs_command", required=True)

    listing = verbs.add_parser("list", help="jobs, newest first")
    remote(listing, 60.0)
    listing.add_argument("--state", choices=STATES, help="only jobs in this state")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=_list)

    get = verbs.add_parser("get", help="one job: state, progress, and per-item results once done")
    remote(get, 60.0)
    get.add_argument("id", help="job id")
    get.add_argument("--json", action="store_true")
    get.add_argument("--out", metavar="DIR", help="write each item's result to DIR/item-NNN.npz")
    get.set_defaults(run=_get)

    watch = verbs.add_parser("watch", help="print progress as it streams, then the final status")
    remote(watch, None)
    watch.add_argument("id", help="job id")
    watch.set_defaults(run=_watch)

    cancel = verbs.add_parser("cancel", help="stop a queued or running job")
    remote(cancel, 60.0)
    cancel.add_argument("id", help="job id")
    cancel.set_defaults(run=_cancel)
