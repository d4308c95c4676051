"""SinkhornBatchRequest -> validated calls -> grouped solves -> SinkhornBatchResponse.

Many problems in one call, each a SinkhornRequest of its own (refusals name the
problem: `problems[3].epsilon`). On the worker, problems that share a batch key
(settings, dtype, dimension and power-of-two size bucket; `sinkhorn_batch.batch_key`)
are padded with zero-weight points and solved together as one vmapped program
(`sinkhorn_batch.solve_group`), as many at a time as the memory budget allows; the
others (SNS, online, large problems, or a key with one problem) are solved one after
another by `sinkhorn_call.run`. Results come back in the order of the request.
"""

from __future__ import annotations

import dataclasses

from monge.server import limits
from monge.server.runtime import sinkhorn_batch
from monge.server.calls import sinkhorn as sinkhorn_call
from monge.server.calls import common as v
from monge.server.config import ServerConfig
from monge.server.errors import InvalidArgument
from monge.server.priority import give_way
from monge.server.calls.sinkhorn import SinkhornCall
from monge.v1 import sinkhorn_pb2

@dataclasses.dataclass(frozen=True)
class BatchCall:
    """The problems of a batch, each validated; `memory_budget` caps each group."""

    calls: tuple[SinkhornCall, ...]
    memory_budget: int

    def plan(self) -> list[list[int]]:
        """The solves, as lists of problem indices: groups of two or more share one
        vmapped program (at most what fits the memory budget), lists of one run alone."""
        groups: dict[tuple, list[int]] = {}
        singles = []
        for index, call in enumerate(self.calls):
            key = sinkhorn_batch.batch_key(call)
            if key is None:
                singles.append([index])
            else:
                groups.setdefault(key, []).append(index)
        solves = []
        for key, indices in groups.items():
            members = [self.calls[i] for i in indices]
            largest = sinkhorn_batch.max_batch_for_memory(
                key, self.memory_budget, top_k=max(c.top_k for c in members),
                dimension=max(c.x.shape[1] if c.barycentric_map else 0 for c in members),
            )
            solves += [indices[start:start + largest] for start in range(0, len(indices), largest)]
        return solves + singles


def parse(request: sinkhorn_pb2.SinkhornBatchRequest, config: ServerConfig) -> BatchCall:
    count = len(request.problems)
    if count == 0:
        raise InvalidArgument.field("problems", "at least one problem is required")
    if count > config.max_job_items:  # as many as a job may hold
        raise InvalidArgument.field("problems", limits.over_limit(f"{count:,} problems", config.max_job_items,
                                                                  "max_job_items"))
    errors = v.Violations()
    calls = []
    for index, problem in enumerate(request.problems):
        try:
            calls.append(sinkhorn_call.parse(problem, config))
        except InvalidArgument as error:
            errors.items += [(f"problems[{index}].{field}", text) for field, text in error.violations]
    errors.raise_if_any()
    reply = sum(call.reply_bytes() for call in calls)
    if reply > config.max_message_bytes:
        raise InvalidArgument.field("problems", f"the results would take about {reply:,} bytes, over the "
                                                f"message limit of {config.max_message_bytes:,}; split the batch")
    return BatchCall(tuple(calls), config.max_request_memory_bytes)


def run(batch: BatchCall, stop, progress=None):
    """Each solve of `batch.plan()` in turn; `stop` is honoured between chunks of
    iterations, and problems not started when it is set come back cancelled."""
    results = [None] * len(batch.calls)
    groups = singles = 0
    for indices in batch.plan():
        calls = [batch.calls[i] for i in indices]
        give_way(stop)  # between solves: a batch job lets waiting calls through
        if stop.is_set():
            solved = [(sinkhorn_call._cancelled(call), {}, 0.0) for call in calls]
        elif len(calls) == 1:
            solved = [sinkhorn_call.run(calls[0], stop, progress)]
            singles += 1
        else:
            solved = sinkhorn_batch.solve_group(calls, stop, progress)
            groups += 1
        for index, result in zip(indices, solved):
            results[index] = result
    return results, groups, singles


def encode_response(result) -> sinkhorn_pb2.SinkhornBatchResponse:
    results, groups, singles = result
    return sinkhorn_pb2.SinkhornBatchResponse(
        results=[sinkhorn_call.encode_response(one) for one in results],
        vectorized_groups=groups, single_solves=singles,
    )
