"""`monge serve --warmup N`: the first calls on a fresh server, with and without it.

    .venv/bin/python benchmarks/warmup.py               # N = 1024, first calls at n = 200 and 1000
    .venv/bin/python benchmarks/warmup.py --warmup 256  # a smaller warm-up

Starts a real `monge serve` on loopback twice, each with its own data dir and an empty
compile cache (a machine's first start): without --warmup, and with it. Prints how long
each took to report SERVING and the wall time of the first default-settings Sinkhorn call
(epsilon 0.5, 2-D Gaussian clouds, float64 and float32) at each size, as the client sees it.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

from monge.client import Client

MONGE = [sys.executable, "-m", "monge.client.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serving(target: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        probe = subprocess.run(MONGE + ["health", "--target", target, "--timeout", "1"], capture_output=True)
        if probe.returncode == 0:
            return
        time.sleep(0.5)
    raise SystemExit(f"the server at {target} did not report SERVING")


def run(warmup: int, sizes: list[int]) -> dict:
    port = _free_port()
    target = f"127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as data_dir, tempfile.TemporaryDirectory() as cache_dir:
        command = MONGE + ["serve", "--port", str(port), "--data-dir", data_dir, "--compile-cache-dir", cache_dir,
                           "--workers", "1", "--warmup", str(warmup)]
        started = time.monotonic()
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  env=dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu")))
        try:
            _serving(target, started + 900)
            row = {"serving after s": time.monotonic() - started}
            rng = np.random.default_rng(0)
            with Client(target, timeout=600) as client:
                for dtype in (np.float64, np.float32):
                    for n in sizes:
                        x = rng.normal(size=(n, 2)).astype(dtype)
                        y = rng.normal(size=(n, 2)).astype(dtype) + 1.0
                        t = time.perf_counter()
                        client.sinkhorn(x, y, epsilon=0.5)
                        row[f"first call n={n} {np.dtype(dtype).name} s"] = time.perf_counter() - t
            return row
        finally:
            server.terminate()
            server.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warmup", type=int, default=1024)
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000])
    args = parser.parse_args()
    rows = {"no warm-up": run(0, args.sizes), f"--warmup {args.warmup}": run(args.warmup, args.sizes)}
    columns = list(next(iter(rows.values())))
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}, "
          f"JAX_PLATFORMS={os.environ.get('JAX_PLATFORMS', 'cpu')}\n")
    print("| server | " + " | ".join(columns) + " |")
    print("| --- |" + " --- |" * len(columns))
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{row[c]:.3f}" for c in columns) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
