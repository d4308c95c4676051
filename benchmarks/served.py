"""A real `monge serve` on loopback for the benchmarks' served columns.

    with served_client() as client:
        client.sinkhorn(x, y, epsilon=0.1)

Starts the server as a subprocess (one worker on this machine's default device, a fresh
data dir and compile cache, as a new user's first server has), waits until it answers,
and stops it on exit. What a served column times is what a user's remote call costs:
encoding, the RPC over loopback, the worker's queue and solve, and decoding.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time


@contextlib.contextmanager
def served_client(workers: int = 1, timeout: float = 600.0, extra: tuple[str, ...] = ()):
    from monge.client import Client

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as data_dir, tempfile.TemporaryDirectory() as cache_dir:
        command = [sys.executable, "-m", "monge.client.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                   "--data-dir", data_dir, "--compile-cache-dir", cache_dir, "--workers", str(workers), *extra]
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            with Client(f"127.0.0.1:{port}", timeout=timeout) as client:
                deadline = time.monotonic() + 180
                while True:
                    try:
                        client.info(timeout=1)
                        break
                    except Exception:  # noqa: BLE001 - not up yet
                        if server.poll() is not None or time.monotonic() > deadline:
                            raise SystemExit("the benchmark's server did not start") from None
                        time.sleep(0.2)
                yield client
        finally:
            server.terminate()
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
