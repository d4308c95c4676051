"""Shared fixtures. float64 is enabled for the whole session: references (POT, closed
forms) are compared in float64; float32 tests pass float32 arrays explicitly."""

import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


# One compilation cache for every server the tests start: workers compile a solver
# program once per session, not once per server.
_COMPILE_CACHE = __import__("tempfile").mkdtemp(prefix="monge-test-jax-cache-")


class ServerThread:
    """A real Monge server on 127.0.0.1 with an ephemeral port, in a background thread
    with its own event loop, so synchronous tests can call it through the real client."""

    def __init__(self, interceptors=(), **config):
        import asyncio
        import threading

        from monge.server.app import start
        from monge.server.config import ServerConfig

        import tempfile

        config.setdefault("data_dir", tempfile.mkdtemp(prefix="monge-test-"))
        config.setdefault("compile_cache_dir", _COMPILE_CACHE)
        config.setdefault("workers", 1)
        self.config = ServerConfig(host="127.0.0.1", port=0, **config)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.running = self.run(start(self.config, interceptors=interceptors))
        self.target = self.running.target

    def run(self, coroutine, timeout=60):
        import asyncio

        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self, grace=1.0):
        if not self.thread.is_alive():  # stopped already (a test may stop one early)
            return
        self.run(self.running.stop(grace))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="session")
def server():
    running = ServerThread(grace_seconds=1.0)
    yield running
    running.stop()


@pytest.fixture
def client(server):
    from monge.client import Client

    with Client(server.target, timeout=60) as c:
        yield c


def _servers():
    started = []

    def make(**config):
        started.append(ServerThread(**config))
        return started[-1]

    yield make
    for running in started:
        running.stop()


@pytest.fixture
def make_server():
    """Start extra servers with their own settings; all are stopped after the test."""
    yield from _servers()


@pytest.fixture(scope="module")
def make_module_server():
    """As `make_server`, for a server that the tests of one module share."""
    yield from _servers()
