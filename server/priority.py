"""Queue priorities, as Triton's priority_levels: level 1 is served first, then 2, and so
on up to `--priority-levels`; within a level, oldest first. A call that names none is
interactive (level 1); a job item that names none runs at its job's level, which is the
lowest (batch) unless the job names one. A running item of a lower level gives its worker
to waiting higher-level work between its steps (server/runtime/pool.py)."""

from __future__ import annotations

import time

from monge.server.errors import InvalidArgument

INTERACTIVE = 1
UNSET = 0


def batch_level(config) -> int:
    return config.priority_levels


def level(requested: int, config, *, default: int, field: str = "priority") -> int:
    """The level a request's `priority` asks for (`default` when unset), or INVALID_ARGUMENT
    naming `field`."""
    if requested == UNSET:
        return default
    if not 1 <= requested <= config.priority_levels:
        raise InvalidArgument.field(field, f"must be between 1 (highest) and {config.priority_levels} "
                                           f"(the server's --priority-levels), or 0 for the default; "
                                           f"got {requested}")
    return requested


def give_way(stop) -> float:
    """A point between steps (no computation in flight) where a running lower-priority
    task lets waiting higher-priority calls run on its worker, then goes on where it was.
    Returns the seconds it gave; 0 at once when nothing waits (or `stop` cannot yield)."""
    hook = getattr(stop, "give_way", None)
    return hook() if hook is not None else 0.0


class OwnTime:
    """A training's own time: its wall time less the time it gave way. `should_stop()`,
    asked before every step, gives way first, then says whether the task was stopped or
    has run past `max_seconds` of its own time (`over_time`)."""

    def __init__(self, stop, max_seconds: float):
        self._stop, self._max_seconds = stop, max_seconds
        self._started, self._given = time.perf_counter(), 0.0
        self.over_time = False

    def seconds(self) -> float:
        return time.perf_counter() - self._started - self._given

    def should_stop(self) -> bool:
        self._given += give_way(self._stop)
        if self._stop.is_set():
            return True
        self.over_time = self.seconds() > self._max_seconds
        return self.over_time
