"""Queue priorities, as Triton's priority_levels: level 1 is served first, then 2, and so
on up to `--priority-levels`; within a level, oldest first. A call that names none is
interactive (level 1); a job item that names none runs at its job's level, which is the
lowest (batch) unless the job names one. A running item of a lower level gives its worker
to waiting higher-level work between its steps (server/runtime/pool.py)."""

from __future__ import annotations

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
