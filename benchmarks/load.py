"""Load: N concurrent clients for T seconds against a `monge serve` on loopback.

    .venv/bin/python benchmarks/load.py                    # 8 clients, 60 s
    .venv/bin/python benchmarks/load.py --quick            # 4 clients, 10 s: a smoke test
    .venv/bin/python benchmarks/load.py --clients 16 --seconds 600 --large-fraction 0.1
    .venv/bin/python benchmarks/load.py --background score   # calls while a training runs
    .venv/bin/python benchmarks/load.py --background ruot    # calls while a Var-RUOT fit runs

Starts `monge serve` as a subprocess on 127.0.0.1 with a fresh data dir and its metrics
port, warms it up (the same load, in rounds of a few seconds, until a round causes no
new XLA compilation: compiling is start-up cost, not load), then runs N client threads,
each with its own channel, for T seconds. Each client sends Sinkhorn requests back to
back: "small" (64 x 64 points, which the server merges into batches when its dynamic
batching is on: by default only with GPU workers, or with --serve-arg=--max-batch=32)
or, with probability --large-fraction, "large" (1200 x 1200 points, never batched). Calls
go through the raw stub, not the client's retrying facade, so that every
RESOURCE_EXHAUSTED is counted. Printed: throughput, latency percentiles by kind,
errors by status code, and the resident memory of the server process and of its
workers after start-up, after the warm-up, at the peak and at the end (psutil if
installed, else /proc), and the compilations and batch sizes seen during the run.

With --background (score or ruot) it measures priorities instead: 500 x 500 Sinkhorn
calls from the clients on an idle server; then the training (a score model's or a
Var-RUOT fit, submitted as a job at the job's default level) alone; then the same
training again with the clients calling until it finishes. Printed side by side: the
calls' p50 and p99 idle and beside the training (targets: at most 2x and 4x), and the
training's wall time alone and beside the calls, with the time it spent yielded.
"""

from __future__ import annotations

import argparse
import collections
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import grpc
import numpy as np

from monge.client.requests import sinkhorn as sinkhorn_request
from monge.v1 import service_pb2_grpc

SIZES = {"small": 64, "large": 1200}
EPSILON = {"small": 0.1, "large": 0.1}


# -- memory ------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    try:
        import psutil

        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except ImportError:
        pass
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == pid:
                found.append(int(entry))
    return found + [grandchild for child in found for grandchild in _children(child)]


def rss_bytes(pid: int) -> int:
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss
    except ImportError:
        pass
    except Exception:  # noqa: BLE001 - the process is gone
        return 0
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def memory(pid: int) -> tuple[int, int]:
    """(server process RSS, total RSS of its workers and their children)."""
    return rss_bytes(pid), sum(rss_bytes(child) for child in _children(pid))


class MemorySampler(threading.Thread):
    def __init__(self, pid: int, every: float = 0.5):
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.peak = (0, 0)
        self._halt = threading.Event()

    def run(self):
        while not self._halt.wait(self.every):
            server, workers = memory(self.pid)
            self.peak = (max(self.peak[0], server), max(self.peak[1], workers))

    def stop(self):
        self._halt.set()
        self.join()


# -- the server --------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_dir: str, workers: int, log_path: str, extra: list[str],
                 metrics_port: int) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    log = open(log_path, "ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "monge.client.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
         "--data-dir", data_dir, "--workers", str(workers), "--grace", "5",
         "--metrics-port", str(metrics_port), *extra],
        stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu")),
    )
    target = f"127.0.0.1:{port}"
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited; see {log_path}")
        try:
            with grpc.insecure_channel(target) as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return process, target
        except grpc.RpcError:
            pass
        time.sleep(0.3)
    process.kill()
    raise SystemExit(f"the server did not start; see {log_path}")


def stop_server(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


def scrape(metrics_port: int, name: str) -> float:
    """The sum of a Prometheus metric's samples (all labels)."""
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and not line.startswith("#"))


# -- the clients -------------------------------------------------------------------


def make_requests(seed: int = 0) -> dict[str, list]:
    """A few requests of each kind (different data, same shapes)."""
    rng = np.random.default_rng(seed)
    made = {}
    for kind, n in SIZES.items():
        made[kind] = []
        for _ in range(4):
            x, y = rng.normal(size=(n, 2)), rng.normal(size=(n, 2)) + 1.0
            made[kind].append(sinkhorn_request(x, y, epsilon=EPSILON[kind], threshold=1e-6))
    return made


def client_loop(target, requests_by_kind, large_fraction, stop_at, timeout, seed, records, lock):
    rng = np.random.default_rng(seed)
    with grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 512 << 20)]) as channel:
        call = service_pb2_grpc.SolverServiceStub(channel).Sinkhorn
        while time.monotonic() < stop_at:
            kind = "large" if rng.random() < large_fraction else "small"
            choices = requests_by_kind[kind]
            request = choices[rng.integers(len(choices))]
            started = time.monotonic()
            try:
                call(request, timeout=timeout)
                code = "OK"
            except grpc.RpcError as error:
                code = error.code().name
                if code == "RESOURCE_EXHAUSTED":
                    time.sleep(0.05)  # what a polite client does; still counted
            except Exception as error:  # noqa: BLE001 - counted, not fatal
                code = type(error).__name__
            finished = time.monotonic()
            with lock:
                records.append((kind, code, started, finished))


def run_load(target, raw, args, seconds) -> list[tuple]:
    """`args.clients` threads sending for `seconds`; (kind, code, started, finished) per call."""
    records, lock = [], threading.Lock()
    stop_at = time.monotonic() + seconds
    threads = [threading.Thread(target=client_loop, args=(target, raw, args.large_fraction, stop_at,
                                                          args.timeout, seed, records, lock))
               for seed in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return records


# -- the report --------------------------------------------------------------------


def mib(nbytes: int) -> str:
    return f"{nbytes / (1 << 20):.0f} MiB"


def percentile(values, q):
    return float(np.percentile(values, q)) * 1000 if len(values) else float("nan")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return (f"{cpu}, {os.cpu_count()} cores, Linux {platform.release()}, Python {platform.python_version()}; "
            f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} at the start")


def report(records, seconds, clients, memory_rows, settings) -> str:
    lines = [f"{clients} clients for {seconds:.0f} s; {settings}", ""]
    lines += ["| requests | count | per second | p50 ms | p95 ms | p99 ms | max ms |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for kind in ("small", "large", "all"):
        chosen = [r for r in records if kind in ("all", r[0])]
        ok = [finished - started for k, code, started, finished in chosen if code == "OK"]
        lines.append(f"| {kind} (OK) | {len(ok)} | {len(ok) / seconds:.1f} | {percentile(ok, 50):.0f} | "
                     f"{percentile(ok, 95):.0f} | {percentile(ok, 99):.0f} | "
                     f"{max(ok) * 1000 if ok else float('nan'):.0f} |")
    codes = collections.Counter(code for _, code, _, _ in records)
    lines += ["", "| status | count |", "| --- | ---: |"]
    lines += [f"| {code} | {count} |" for code, count in sorted(codes.items(), key=lambda item: -item[1])]
    lines += ["", "| server memory (RSS) | server process | workers |", "| --- | ---: | ---: |"]
    lines += [f"| {name} | {mib(server)} | {mib(workers)} |" for name, (server, workers) in memory_rows]
    start, end = memory_rows[1][1], memory_rows[-1][1]
    growth = (sum(end) - sum(start)) / max(sum(start), 1) * 100
    lines += ["", f"Memory growth from after the warm-up to the end: {growth:+.1f}% (server and workers together)."]
    return "\n".join(lines)


# -- calls beside a training (--background) ------------------------------------------

CALL_POINTS = 500
CALL_EPSILON = 0.5  # 0.1 x the mean cost of these clouds: ~40 iterations


def call_requests(seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [sinkhorn_request(x, x + 1.0 + 0.1 * rng.normal(size=x.shape), epsilon=CALL_EPSILON, threshold=1e-6)
            for x in (rng.normal(size=(CALL_POINTS, 2)) for _ in range(4))]


def submit_training(client, kind: str, steps: int | None = None):
    """The background job: a score model's training or a Var-RUOT fit, tens of seconds alone."""
    rng = np.random.default_rng(0)
    if kind == "score":
        samples = np.concatenate([rng.normal(size=(256, 2)) - 2.0, rng.normal(size=(256, 2)) + 2.0]).astype(np.float32)
        return client.train_score_model(samples, hidden=(64, 64), time_embedding_dim=8, steps=steps or 10000,
                                        batch_size=256, report_every=100, seed=0)
    # A population that drifts and splits, at four times.
    snapshots = []
    for step in range(4):
        centres = np.array([[step, step], [step, -step]]) * 0.5
        points = centres[rng.integers(2, size=200)] + 0.3 * rng.normal(size=(200, 2))
        snapshots.append((float(step), points.astype(np.float32), 200.0 * (1.0 + 0.2 * step)))
    return client.ruot_fit(snapshots, width=64, residual_blocks=1, steps=steps or 300, particles=256, report_every=25,
                           seed=0)


def calls_until(target, raw, clients, done, timeout) -> list[tuple]:
    """`clients` threads calling back to back until `done()`; (kind, code, started, finished) per call."""
    records, lock = [], threading.Lock()
    halt = threading.Event()

    def loop(seed):
        rng = np.random.default_rng(seed)
        with grpc.insecure_channel(target) as channel:
            call = service_pb2_grpc.SolverServiceStub(channel).Sinkhorn
            while not halt.is_set():
                started = time.monotonic()
                try:
                    call(raw[rng.integers(len(raw))], timeout=timeout)
                    code = "OK"
                except grpc.RpcError as error:
                    code = error.code().name
                finished = time.monotonic()
                with lock:
                    records.append(("call", code, started, finished))

    threads = [threading.Thread(target=loop, args=(seed,)) for seed in range(clients)]
    for thread in threads:
        thread.start()
    while not done():
        time.sleep(0.1)
    halt.set()
    for thread in threads:
        thread.join()
    return records


def background_report(idle, loaded, alone, beside, kind) -> str:
    def latencies(records):
        ok = [finished - started for _, code, started, finished in records if code == "OK"]
        failed = sum(code != "OK" for _, code, _, _ in records)
        return ok, failed

    idle_ok, idle_failed = latencies(idle)
    loaded_ok, loaded_failed = latencies(loaded)
    lines = ["| calls (500 x 500 Sinkhorn) | count | failed | p50 ms | p90 ms | p99 ms | max ms |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, ok, failed in (("idle server", idle_ok, idle_failed), (f"beside the {kind} job", loaded_ok, loaded_failed)):
        lines.append(f"| {name} | {len(ok)} | {failed} | {percentile(ok, 50):.0f} | {percentile(ok, 90):.0f} | "
                     f"{percentile(ok, 99):.0f} | {percentile(ok, 100):.0f} |")
    p50 = percentile(loaded_ok, 50) / percentile(idle_ok, 50)
    p99 = percentile(loaded_ok, 99) / percentile(idle_ok, 99)
    lines.append(f"| ratio (target p50 <= 2x, p99 <= 4x) | | | {p50:.2f}x {'met' if p50 <= 2 else 'MISSED'} | | "
                 f"{p99:.2f}x {'met' if p99 <= 4 else 'MISSED'} | |")
    lines += ["", "| the job | state | wall s | yielded s | steps |", "| --- | --- | ---: | ---: | ---: |"]
    for name, (info, wall) in (("alone", alone), ("beside the calls", beside)):
        lines.append(f"| {name} | {info.state} | {wall:.1f} | {info.progress['yielded_seconds']:.1f} | "
                     f"{info.progress['iteration']} |")
    lines.append(f"\nThe job's slowdown beside the calls: {beside[1] / alone[1]:.2f}x.")
    return "\n".join(lines)


def run_background(args) -> int:
    from monge.client import Client

    print(f"machine: {machine()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="monge-load-") as data_dir:
        log_path = os.path.join(data_dir, "server.log")
        process, target = start_server(data_dir, args.workers, log_path, args.serve_arg, _free_port())
        try:
            raw = call_requests()
            with Client(target, timeout=600) as client:
                stub = service_pb2_grpc.SolverServiceStub(client._channel)
                for request in raw:  # compiled before anything is timed
                    stub.Sinkhorn(request, timeout=600)
                warm = client.wait(submit_training(client, args.background, args.steps))  # compiles the training
                if warm.state != "succeeded":
                    raise SystemExit(f"the warm-up {args.background} job {warm.state}: {warm.error}")
                began = time.monotonic()
                idle = calls_until(target, raw, args.clients, lambda: time.monotonic() - began > args.seconds,
                                   args.timeout)

                def ran(info):
                    return info, info.end_time - info.start_time  # from start to end, queueing left out

                alone = ran(client.wait(submit_training(client, args.background, args.steps)))
                job = submit_training(client, args.background, args.steps)
                loaded = calls_until(target, raw, args.clients, lambda: client.job(job).done, args.timeout)
                beside = ran(client.wait(job))
            print(f"{args.clients} clients, {args.workers} worker(s), float64 calls at epsilon {CALL_EPSILON} "
                  f"(0.1 x mean cost), threshold 1e-6; the {args.background} job at the job default level")
            print(background_report(idle, loaded, alone, beside, args.background))
        finally:
            stop_server(process)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--large-fraction", type=float, default=0.05,
                        help="share of requests that are large (1200 x 1200)")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--timeout", type=float, default=120.0, help="deadline of each call, seconds")
    parser.add_argument("--warmup-round", type=float, default=5.0,
                        help="seconds of load per warm-up round; rounds go on until one compiles nothing")
    parser.add_argument("--max-warmup", type=float, default=180.0, help="longest warm-up, seconds")
    parser.add_argument("--quick", action="store_true", help="4 clients for 10 s, at most 60 s of warm-up")
    parser.add_argument("--background", choices=("score", "ruot"),
                        help="measure calls beside a training job of this kind (see above)")
    parser.add_argument("--steps", type=int, help="--background: the training's steps (default 10000 score, 300 ruot)")
    parser.add_argument("--serve-arg", action="append", default=[],
                        help="extra `monge serve` argument (repeatable), e.g. --serve-arg=--queue-limit=16")
    args = parser.parse_args(argv)
    if args.quick:
        args.clients, args.seconds, args.max_warmup = 4, 10.0, 60.0
    if args.background:
        if "--clients" not in " ".join(argv or sys.argv):
            args.clients = 4
        return run_background(args)

    print(f"machine: {machine()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="monge-load-") as data_dir:
        log_path = os.path.join(data_dir, "server.log")
        metrics_port = _free_port()
        process, target = start_server(data_dir, args.workers, log_path, args.serve_arg, metrics_port)
        try:
            started_memory = memory(process.pid)
            raw = make_requests()
            with grpc.insecure_channel(target) as channel:
                call = service_pb2_grpc.SolverServiceStub(channel).Sinkhorn
                for kind in SIZES:  # compile the unbatched programs
                    call(raw[kind][0], timeout=600)
            # Then the load itself, in rounds, until a round compiles nothing new (batches
            # of every size the load makes): compilation is start-up cost, not load.
            warm_started = time.monotonic()
            rounds = 0
            while time.monotonic() - warm_started < args.max_warmup:
                before = scrape(metrics_port, "monge_xla_compiles_total")
                run_load(target, raw, args, args.warmup_round)
                rounds += 1
                if scrape(metrics_port, "monge_xla_compiles_total") == before:
                    break
            print(f"warm-up: {time.monotonic() - warm_started:.1f} s, {rounds} round(s) of "
                  f"{args.warmup_round:.0f} s", flush=True)
            warm_memory = memory(process.pid)
            compiles_before = scrape(metrics_port, "monge_xla_compiles_total")
            batches_before = (scrape(metrics_port, "monge_batch_size_count"),
                              scrape(metrics_port, "monge_batch_size_sum"))
            sampler = MemorySampler(process.pid)
            sampler.start()
            began = time.monotonic()
            records = run_load(target, raw, args, args.seconds)
            elapsed = time.monotonic() - began
            sampler.stop()
            end_memory = memory(process.pid)
            compiles = scrape(metrics_port, "monge_xla_compiles_total") - compiles_before
            batches = (scrape(metrics_port, "monge_batch_size_count") - batches_before[0],
                       scrape(metrics_port, "monge_batch_size_sum") - batches_before[1])
            settings = (f"{args.workers} worker(s), {args.large_fraction:.0%} large requests "
                        f"({SIZES['large']} x {SIZES['large']}), the rest small ({SIZES['small']} x {SIZES['small']}), "
                        f"epsilon {EPSILON['small']}, threshold 1e-6, float64")
            rows = [("after start-up", started_memory), ("after the warm-up", warm_memory),
                    ("peak during the run", sampler.peak), ("at the end", end_memory)]
            print(report(records, elapsed, args.clients, rows, settings))
            batching = (f"{batches[1]:.0f} small requests in {batches[0]:.0f} worker calls (dynamic batching)"
                        if batches[0] else "dynamic batching off")
            print(f"\nXLA compilations during the run: {compiles:.0f}; {batching}.")
        finally:
            stop_server(process)
    return 0


if __name__ == "__main__":
    sys.exit(main())
