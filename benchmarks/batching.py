"""Dynamic batching on and off: concurrent clients sending small Sinkhorn problems.

    .venv/bin/python benchmarks/batching.py            # 64 clients, 30 s measured per mode
    .venv/bin/python benchmarks/batching.py --quick    # 16 clients, 8 s per mode

For each mode a real `monge serve` process is started on loopback (one CPU or GPU
worker, its own data dir and compile cache), warmed up with the
same load until a round compiles nothing new, then measured: completed calls per second
and p50/p99 latency as the clients see them, the mean batch size and the XLA compiles
during the measured window (from the server's Prometheus metrics). Problems: n and m
drawn uniformly in [256, 1024], 2-D Gaussian clouds, epsilon 0.05 (absolute, on costs
of order 1), threshold 1e-3, float32 (the precision a throughput user asks for).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import grpc
import numpy as np

from monge.client import requests
from monge.v1 import service_pb2, service_pb2_grpc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def problems(count: int, seed: int = 0, low: int = 256, high: int = 1024):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        n, m = rng.integers(low, high + 1, size=2)
        x = rng.standard_normal((n, 2)).astype(np.float32)
        y = (0.6 * rng.standard_normal((m, 2)) + 0.5).astype(np.float32)
        out.append(requests.sinkhorn(x, y, epsilon=0.05, threshold=1e-3).SerializeToString())
    return out


def scrape(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    values = {}
    for line in text.splitlines():
        match = re.match(r"^(monge_batch_size_(?:sum|count)|monge_xla_compiles_total)(\{[^}]*\})? (\S+)$", line)
        if match:
            values[match.group(1)] = values.get(match.group(1), 0.0) + float(match.group(3))
    return values


async def load(target: str, payloads: list[bytes], clients: int, seconds: float):
    """`clients` concurrent callers, each sending its next problem when the last returns."""
    latencies, errors = [], {}
    deadline = time.monotonic() + seconds
    async with grpc.aio.insecure_channel(target, options=[
        ("grpc.max_receive_message_length", 1 << 28), ("grpc.max_send_message_length", 1 << 28),
    ]) as channel:
        call = channel.unary_unary("/monge.v1.SolverService/Sinkhorn",
                                   request_serializer=lambda b: b, response_deserializer=lambda b: b)

        async def client(index: int):
            i = index
            while time.monotonic() < deadline:
                started = time.monotonic()
                try:
                    await call(payloads[i % len(payloads)], timeout=120)
                    latencies.append(time.monotonic() - started)
                except grpc.aio.AioRpcError as error:
                    errors[error.code().name] = errors.get(error.code().name, 0) + 1
                    await asyncio.sleep(0.05)
                i += clients

        began = time.monotonic()
        await asyncio.gather(*(client(i) for i in range(clients)))
        elapsed = time.monotonic() - began
    return latencies, errors, elapsed


def run_mode(name: str, max_batch: int, args, payloads) -> dict:
    port, metrics_port = free_port(), free_port()
    data_dir = tempfile.mkdtemp(prefix=f"monge-bench-{name}-")
    command = [os.path.join(os.path.dirname(sys.executable), "monge"), "serve", "--port", str(port),
               "--data-dir", data_dir, "--max-batch", str(max_batch), "--batch-delay-ms", "2",
               "--metrics-port", str(metrics_port), "--queue-limit", str(4 * args.clients),
               "--log-level", "warning"]
    server = subprocess.Popen(command)
    target = f"127.0.0.1:{port}"
    try:
        grpc.channel_ready_future(grpc.insecure_channel(target)).result(timeout=300)
        stub = service_pb2_grpc.SolverServiceStub(grpc.insecure_channel(target))
        for _ in range(600):  # the worker is up once GetServerInfo lists it ready
            if stub.GetServerInfo(service_pb2.GetServerInfoRequest()).workers:
                break
            time.sleep(0.5)
        for _ in range(args.max_warmups):  # until a round compiles nothing new
            before = scrape(metrics_port).get("monge_xla_compiles_total", 0.0)
            asyncio.run(load(target, payloads, args.clients, args.warmup))
            if scrape(metrics_port).get("monge_xla_compiles_total", 0.0) == before:
                break
        before = scrape(metrics_port)
        latencies, errors, elapsed = asyncio.run(load(target, payloads, args.clients, args.seconds))
        after = scrape(metrics_port)
    finally:
        server.terminate()
        server.wait(30)
    batches = after.get("monge_batch_size_count", 0) - before.get("monge_batch_size_count", 0)
    batched = after.get("monge_batch_size_sum", 0) - before.get("monge_batch_size_sum", 0)
    lat = np.sort(np.asarray(latencies)) if latencies else np.asarray([np.nan])
    return dict(
        mode=name, calls=len(latencies), per_second=len(latencies) / elapsed,
        p50=float(np.percentile(lat, 50)), p99=float(np.percentile(lat, 99)),
        mean_batch=batched / batches if batches else 1.0,
        compiles=after.get("monge_xla_compiles_total", 0) - before.get("monge_xla_compiles_total", 0),
        errors=errors,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds per warm-up round")
    parser.add_argument("--max-warmups", type=int, default=6)
    parser.add_argument("--quick", action="store_true", help="16 clients, 8 s per mode")
    args = parser.parse_args()
    if args.quick:
        args.clients, args.seconds, args.warmup = 16, 8.0, 8.0
    payloads = problems(4 * args.clients)
    rows = [run_mode("batching on", 32, args, payloads), run_mode("batching off", 1, args, payloads)]

    print(f"\n{args.clients} clients, {args.seconds:g} s measured per mode; Sinkhorn n, m in "
          f"[256, 1024], float32; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs")
    print(f"{'mode':<14}{'calls':>7}{'calls/s':>9}{'p50 s':>8}{'p99 s':>8}{'batch':>7}"
          f"{'compiles':>9}  errors")
    for r in rows:
        print(f"{r['mode']:<14}{r['calls']:>7}{r['per_second']:>9.2f}{r['p50']:>8.3f}{r['p99']:>8.3f}"
              f"{r['mean_batch']:>7.1f}{r['compiles']:>9.0f}  {r['errors'] or '-'}")
    on, off = rows
    print(f"throughput on/off: {on['per_second'] / off['per_second']:.2f}x; "
          f"p99 on/off: {on['p99'] / off['p99']:.2f}x")


if __name__ == "__main__":
    main()
