"""Large replies from a worker process to the pool through shared memory, not the pipe.

A pipe moves bytes in small writes, each copied through the kernel, with pickling on
both ends: a 200 MB dense plan took 0.6 s to cross one on a 2-core machine, more than
the solve of some problems that produce it. A shared-memory segment costs one copy in
the worker and one in the pool. Small replies (most) still take the pipe.

The worker creates the segment and hands its name over; the pool copies the bytes out
and unlinks it (in its reader thread, for every reply it reads, wanted or not, so no
segment outlives its message).
"""

from __future__ import annotations

import dataclasses
from multiprocessing import resource_tracker, shared_memory

THRESHOLD = 1 << 20  # bytes: smaller replies take the pipe


@dataclasses.dataclass(frozen=True)
class SharedBytes:
    """A reply left in the shared-memory segment `name` (`size` bytes)."""

    name: str
    size: int


def share(data: bytes | None):
    """`data` itself when small (or None), else a `SharedBytes` holding a copy of it."""
    if data is None or len(data) < THRESHOLD:
        return data
    segment = shared_memory.SharedMemory(create=True, size=len(data))
    try:
        segment.buf[:len(data)] = data
        name = segment.name
    finally:
        segment.close()
    # The pool unlinks it; the worker's resource tracker must not (it would at exit).
    resource_tracker.unregister(segment._name, "shared_memory")
    return SharedBytes(name, len(data))


def take(value):
    """The bytes a `share` result stands for, unlinking its segment; others as they are."""
    if not isinstance(value, SharedBytes):
        return value
    segment = shared_memory.SharedMemory(name=value.name)
    try:
        return bytes(segment.buf[:value.size])
    finally:
        segment.close()
        segment.unlink()
