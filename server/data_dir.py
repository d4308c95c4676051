"""One server per data dir: an exclusive lock held for the server's lifetime.

Two servers on one data dir would both run its queued jobs (each re-queues the other's
running ones as interrupted). The lock is `flock` on `<data dir>/server.lock`, so the OS
drops it when the process dies, however it dies: a restart after a crash takes the dir
and re-queues what was running. The file names the holder (pid and address) for the
refusal's message.
"""

from __future__ import annotations

import fcntl
import json
import os
import pathlib

LOCK_NAME = "server.lock"


class DataDirInUse(RuntimeError):
    """Another live server holds the data dir."""


class DataDirLock:
    def __init__(self, data_dir):
        self.path = pathlib.Path(data_dir) / LOCK_NAME
        self._file = None

    def acquire(self, address: str) -> "DataDirLock":
        """Take the lock, or raise DataDirInUse naming the dir and its holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = open(self.path, "a+")
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = _holder(file.read())
            file.close()
            raise DataDirInUse(f"data dir {self.path.parent} is in use by another monge server ({holder}); "
                               "stop it, or give this one its own --data-dir") from None
        self._file = file
        self.describe(address)
        return self

    def describe(self, address: str) -> None:
        """Name this process as the holder (again once the port is known)."""
        self._file.seek(0)
        self._file.truncate()
        self._file.write(json.dumps({"pid": os.getpid(), "address": address}))
        self._file.flush()

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def _holder(text: str) -> str:
    try:
        described = json.loads(text)
        return f"pid {described['pid']}, listening on {described['address']}"
    except (ValueError, KeyError, TypeError):
        return "its pid and address unknown"
