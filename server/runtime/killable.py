"""Run host functions in a child process that can be killed mid-call.

Some solvers are one uninterruptible C call (POT's network simplex): the stop flag of
a cancelled or expired call cannot reach them, and they would hold their worker for as
long as they run. A worker runs such calls through a `KillableRunner` instead: one
child process, a fresh interpreter started on first use (the worker has JAX loaded, so
it must not fork, and as a daemonic multiprocessing process it may not start
multiprocessing children) and kept for later calls, which the worker polls while it
waits. When the stop flag rises the child is killed, the worker is free
within one poll, and a fresh child is started for the next call.

The child imports what the functions it runs import: for the network simplex,
`monge.solvers.exact` (so JAX is imported, though never used; the child is kept on the
CPU whatever the worker's device) and POT, whose optional JAX, PyTorch, TensorFlow and
CuPy backends are switched off there. Measured here: about 2 s to start, about 250 MB.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection

POLL_SECONDS = 0.05
# POT imports every array library it finds unless told not to; JAX, imported with the
# solvers' package, must never take a GPU from the worker.
_CHILD_ENV = {f"POT_BACKEND_DISABLE_{name}": "1"
              for name in ("JAX", "PYTORCH", "TENSORFLOW", "CUPY")} | {
    "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""}


class Cancelled(Exception):
    """The stop flag rose while the child was running; it has been killed."""


class ChildFailed(RuntimeError):
    """The function raised in the child (the message holds its traceback), or the
    child died."""


def received(connection: Connection):
    """The tasks a parent sends down `connection`, until it sends None or goes away."""
    while True:
        try:
            task = connection.recv()
        except EOFError:
            return
        if task is None:
            return
        yield task


def _child_main(connection: Connection) -> None:
    parent = os.getppid()

    def orphaned():  # a killed worker leaves no simplex running behind it
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=orphaned, daemon=True).start()
    for function, args in received(connection):
        try:
            reply = ("ok", function(*args))
        except BaseException:  # noqa: BLE001 - reported to the worker, which raises
            reply = ("error", traceback.format_exc())
        connection.send(reply)


class KillableRunner:
    """`runner(function, *args)` runs `function(*args)` in the child and returns its
    result; raises `Cancelled` when `stop.is_set()` becomes true first. One call at a
    time (a worker runs one task at a time)."""

    def __init__(self, stop=None):
        self.stop = stop
        self._process = None
        self._connection = None
        self._lock = threading.Lock()

    def __call__(self, function, *args):
        with self._lock:
            self._start()
            self._connection.send((function, args))
            while not self._connection.poll(POLL_SECONDS):
                if self.stop is not None and self.stop.is_set():
                    self.kill()
                    self._start()  # a fresh child warms up while the worker moves on
                    raise Cancelled("cancelled: the solve was stopped mid-call")
                if self._process.poll() is not None:
                    code = self._process.returncode
                    self._forget()
                    raise ChildFailed(f"the solver process died (exit code {code})")
            try:
                status, value = self._connection.recv()
            except (EOFError, OSError) as error:
                self.kill()
                raise ChildFailed(f"the solver process died ({error})") from None
            if status == "error":
                raise ChildFailed(value)
            return value

    def _start(self):
        if self._process is not None and self._process.poll() is None:
            return
        self._forget()
        child_in, parent_out = os.pipe()  # os.pipe() is (read end, write end)
        parent_in, child_out = os.pipe()
        process = subprocess.Popen(
            [sys.executable, "-m", "monge.server.runtime.killable", str(child_in), str(child_out)],
            pass_fds=(child_in, child_out), env={**os.environ, **_CHILD_ENV},
            stdin=subprocess.DEVNULL,
        )
        os.close(child_in)
        os.close(child_out)
        self._process = process
        self._connection = _Duplex(Connection(parent_in, writable=False),
                                   Connection(parent_out, readable=False))

    def kill(self):
        """Kill the child now (SIGKILL) and wait for it; the next call starts another."""
        if self._process is not None:
            self._process.kill()
            self._process.wait(5)
        self._forget()

    def close(self):
        """Ask the child to exit, then make sure it has."""
        if self._connection is not None:
            try:
                self._connection.send(None)
            except (OSError, ValueError):
                pass
        if self._process is not None:
            try:
                self._process.wait(2)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def _forget(self):
        if self._connection is not None:
            self._connection.close()
        self._process = self._connection = None


class _Duplex:
    """Two one-way connections (the child's pipes) used as one."""

    def __init__(self, incoming: Connection, outgoing: Connection):
        self.incoming, self.outgoing = incoming, outgoing

    def send(self, value):
        self.outgoing.send(value)

    def recv(self):
        return self.incoming.recv()

    def poll(self, timeout):
        return self.incoming.poll(timeout)

    def close(self):
        self.incoming.close()
        self.outgoing.close()


_shared: KillableRunner | None = None


def runner(stop) -> KillableRunner:
    """This process's runner, bound to the current call's stop flag (its child is
    reused from call to call, and killed when this process exits)."""
    global _shared
    if _shared is None:
        _shared = KillableRunner()
        atexit.register(_shared.kill)
    _shared.stop = stop
    return _shared


if __name__ == "__main__":  # the child: python -m monge.server.runtime.killable IN_FD OUT_FD
    _child_main(_Duplex(Connection(int(sys.argv[1]), writable=False),
                        Connection(int(sys.argv[2]), readable=False)))
