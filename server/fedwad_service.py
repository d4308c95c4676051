"""FedWadService: sessions of the federated Wasserstein protocol, orchestrated here.

The server only ever sees interpolating measures and distances; the parties run
`monge.solvers.fedwad.party_step` on their own machines. One asyncio task per running
session drives the rounds (`_drive`): for each pair i < j, the seeded schedule
(`server_schedule`), then per round the measure xi and t go to both parties, both
answers come back, and `server_step` (exact OT, off the event loop) moves xi. With two
parties this is `fedwad(x, y, config)` step for step; with N, `pairwise_fedwad`.

What this does NOT protect (said plainly, as in solvers/fedwad.py): FedWaD is not
differentially private. This server learns every answer and knows xi and t, so it can
invert an answer into the barycentric projection of the party's sample; with uniform
weights and support_size equal to the sample size that IS the sample, exactly, from a
single round. A party that receives the next xi can likewise recover its peer's answer
(it knows its own answer and t). Run sessions only where the server and the parties are
trusted not to look.

Session life: WAITING (parties join) -> RUNNING -> COMPLETED, or FAILED (a party
disconnected or sent an invalid answer), EXPIRED (no activity for the session's
inactivity timeout) or CANCELLED. A session that ends early ends every party's
Participate call with ABORTED and the reason; ended sessions stay readable for
`retention_seconds`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import enum
import logging
import math
import re
import time
import uuid

import grpc
import numpy as np

from monge.v1.codec import TensorError, check, encode
from monge.server.calls import common as v
from monge.server.errors import Aborted, FailedPrecondition, InvalidArgument, LimitExceeded, NotFound
from monge.server.errors import rpc
from monge.server.limits import over_limit
from monge.v1 import fedwad_pb2, fedwad_pb2_grpc

log = logging.getLogger("monge.server.fedwad")

DEFAULT_ROUNDS = 100
DEFAULT_P = 2.0
DEFAULT_INACTIVITY_SECONDS = 600.0
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_State = fedwad_pb2.FedWadSessionState


@dataclasses.dataclass(frozen=True, kw_only=True)
class FedWadLimits:
    """What a session may ask for on this server.

    max_sessions: sessions held at once (ended ones included until retention ends).
    max_parties, max_rounds, max_support_size, max_dimension: per session (the server
        lowers max_rounds to its max_iterations: `from_config`).
    max_elements: most values in the interpolating measure xi (support size x dimension),
        which the server holds and moves every round (the server's max_dense_elements).
    max_inactivity_seconds: the longest inactivity timeout a session may set.
    retention_seconds: how long an ended session stays readable.
    server_threads: threads running `server_step` off the event loop.
    """

    max_sessions: int = 256
    max_parties: int = 64
    max_rounds: int = 100_000
    max_support_size: int = 20_000
    max_dimension: int = 100_000
    max_elements: int = 100_000_000
    max_inactivity_seconds: float = 86_400.0
    retention_seconds: float = 3_600.0
    server_threads: int = 1

    @classmethod
    def from_config(cls, config) -> "FedWadLimits":
        """The defaults, with rounds capped by the server's max_iterations and xi's size
        by its max_dense_elements."""
        return cls(max_rounds=min(cls.max_rounds, config.max_iterations), max_elements=config.max_dense_elements)


class _Ended(enum.Enum):
    """Sentinel put in a party's outbox when its session ends."""

    END = 0


@dataclasses.dataclass
class _Pair:
    first: int
    second: int
    rounds: int
    seed: int
    support_size: int = 0
    bounds: list = dataclasses.field(default_factory=list)
    first_distances: list = dataclasses.field(default_factory=list)
    second_distances: list = dataclasses.field(default_factory=list)
    ts: list = dataclasses.field(default_factory=list)
    suboptimal: int = 0

    def to_proto(self) -> fedwad_pb2.FedWadPair:
        bounds = np.asarray(self.bounds, np.float64)
        message = fedwad_pb2.FedWadPair(
            first=self.first, second=self.second, rounds_done=len(self.bounds),
            rounds=self.rounds, support_size=self.support_size, seed=self.seed,
            bound_history=encode(bounds),
            first_distance_history=encode(np.asarray(self.first_distances, np.float64)),
            second_distance_history=encode(np.asarray(self.second_distances, np.float64)),
            t_history=encode(np.asarray(self.ts, np.float64)),
            suboptimal_ot_calls=self.suboptimal,
        )
        if bounds.size:
            message.estimate = float(bounds.min())
            message.best_round = int(np.argmin(bounds))
        return message


@dataclasses.dataclass
class _Party:
    name: str
    joined: bool = False
    sample_size: int = 0
    outbox: asyncio.Queue | None = None
    # The answer the driver waits for: (pair_index, round) -> future.
    expected: dict = dataclasses.field(default_factory=dict)
    error: Exception | None = None  # raised on this party's call when the session ends


class _Session:
    def __init__(self, session_id: str, names: list[str], request: fedwad_pb2.CreateSessionRequest,
                 config, dimension: int, inactivity: float):
        self.id = session_id
        self.parties = [_Party(name) for name in names]
        self.request_config = request.config
        self.config = config  # FedWadConfig with support_size possibly None
        self.dimension = dimension
        self.inactivity = inactivity
        self.state = _State.FED_WAD_SESSION_STATE_WAITING
        self.message = f"waiting for {len(names)} parties to join"
        self.pairs = [
            _Pair(i, j, config.rounds, _pair_seed(config.seed, i, j, len(names)))
            for i in range(len(names)) for j in range(i + 1, len(names))
        ]
        self.last_activity = time.monotonic()
        self.driver: asyncio.Task | None = None
        self.watchdog: asyncio.Task | None = None
        self.ended_at: float | None = None

    @property
    def active(self) -> bool:
        return self.state in (_State.FED_WAD_SESSION_STATE_WAITING, _State.FED_WAD_SESSION_STATE_RUNNING)

    def touch(self):
        self.last_activity = time.monotonic()

    def party(self, name: str) -> _Party:
        return next(p for p in self.parties if p.name == name)

    def end(self, state: int, message: str):
        """Leave the active states once; every connected party's call then ends."""
        if not self.active:
            return
        self.state, self.message, self.ended_at = state, message, time.monotonic()
        log.info("fedwad session %s %s: %s", self.id, _State.Name(state), message)
        for party in self.parties:
            for future in party.expected.values():
                if not future.done():
                    future.cancel()
            if party.outbox is not None:
                party.outbox.put_nowait(_Ended.END)
        current = asyncio.current_task()
        if self.driver is not None and self.driver is not current:
            self.driver.cancel()
        if self.watchdog is not None and self.watchdog is not current:
            self.watchdog.cancel()

    def to_proto(self) -> fedwad_pb2.FedWadSession:
        count = len(self.parties)
        distances = np.full((count, count), np.nan)
        np.fill_diagonal(distances, 0.0)
        for pair in self.pairs:
            if pair.bounds:
                distances[pair.first, pair.second] = distances[pair.second, pair.first] = min(pair.bounds)
        return fedwad_pb2.FedWadSession(
            session_id=self.id, state=self.state, status_message=self.message,
            parties=[fedwad_pb2.FedWadParty(name=p.name, joined=p.joined) for p in self.parties],
            config=self.request_config, dimension=self.dimension,
            inactivity_timeout_seconds=self.inactivity,
            pairs=[pair.to_proto() for pair in self.pairs],
            distances=encode(distances),
        )


def _pair_seed(seed: int, i: int, j: int, count: int) -> int:
    """Two parties: the session's seed (so the run is `fedwad(x, y, config)`); more: the
    seed `pairwise_fedwad` derives for pair (i, j)."""
    if count == 2:
        return seed
    return int(np.random.SeedSequence((seed, i, j)).generate_state(1)[0])


class FedWadServicer(fedwad_pb2_grpc.FedWadServiceServicer):
    def __init__(self, limits: FedWadLimits | None = None):
        self._limits = limits or FedWadLimits()
        self._sessions: dict[str, _Session] = {}
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self._limits.server_threads, thread_name_prefix="monge-fedwad"
        )

    # --- RPCs ---------------------------------------------------------------------

    @rpc
    async def CreateSession(self, request, context):
        names, config, dimension, inactivity = _parse_create(request, self._limits)
        self._forget_old()
        if sum(s.active for s in self._sessions.values()) >= self._limits.max_sessions:
            raise LimitExceeded(f"this server holds {self._limits.max_sessions} sessions already", 10.0)
        session = _Session(uuid.uuid4().hex, names, request, config, dimension, inactivity)
        self._sessions[session.id] = session
        session.watchdog = asyncio.create_task(self._watch(session))
        log.info("fedwad session %s created for %s", session.id, ", ".join(names))
        return fedwad_pb2.CreateSessionResponse(session=session.to_proto())

    @rpc
    async def GetSession(self, request, context):
        return fedwad_pb2.GetSessionResponse(session=self._get(request.session_id).to_proto())

    @rpc
    async def CancelSession(self, request, context):
        session = self._get(request.session_id)
        session.end(_State.FED_WAD_SESSION_STATE_CANCELLED, "cancelled by CancelSession")
        return fedwad_pb2.CancelSessionResponse(session=session.to_proto())

    @rpc
    async def Participate(self, request_iterator, context):
        first = await context.read()
        if first is grpc.aio.EOF or first.WhichOneof("message") != "join":
            raise InvalidArgument.field("join", "the first message must be a join")
        session, party = self._join(first.join)
        await context.write(fedwad_pb2.ParticipateResponse(joined=fedwad_pb2.FedWadJoined(
            session_id=session.id, party=party.name, parties=[p.name for p in session.parties])))
        if all(p.joined for p in session.parties) and session.driver is None:
            session.driver = asyncio.create_task(self._drive(session))
        reader = asyncio.create_task(self._read_answers(session, party, context))
        completed = False
        try:
            while True:
                message = await party.outbox.get()
                if message is _Ended.END:
                    break
                await context.write(message)
            completed = session.state == _State.FED_WAD_SESSION_STATE_COMPLETED
            if completed:
                await context.write(fedwad_pb2.ParticipateResponse(finished=session.to_proto()))
        finally:
            reader.cancel()
            party.outbox = None
            if not completed:
                party.joined = False
            if session.state == _State.FED_WAD_SESSION_STATE_RUNNING:
                session.end(_State.FED_WAD_SESSION_STATE_FAILED,
                            f"party '{party.name}' disconnected while the session was running")
            elif session.state == _State.FED_WAD_SESSION_STATE_WAITING:
                session.message = f"party '{party.name}' left before the start; its slot is free"
        if not completed:
            raise party.error or Aborted(f"session {session.id} {_state_word(session.state)}: {session.message}")

    # --- parties --------------------------------------------------------------------

    def _join(self, join: fedwad_pb2.FedWadJoin) -> tuple[_Session, _Party]:
        session = self._get(join.session_id, "join.session_id")
        if not session.active or session.state != _State.FED_WAD_SESSION_STATE_WAITING:
            raise FailedPrecondition(
                f"session {session.id} is {_state_word(session.state)}, no longer open to joins")
        if join.party:
            matches = [p for p in session.parties if p.name == join.party]
            if not matches:
                raise InvalidArgument.field(
                    "join.party", f"'{join.party}' is not a party of this session "
                                  f"({', '.join(p.name for p in session.parties)})")
            party = matches[0]
            if party.joined:
                raise FailedPrecondition(f"party '{party.name}' has already joined session {session.id}")
        else:
            free = [p for p in session.parties if not p.joined]
            if not free:
                raise FailedPrecondition(f"session {session.id} has no free party slot")
            party = free[0]
        field = f"parties[{party.name}]"
        errors = v.Violations()
        if join.sample_size < 1:
            errors.add(f"{field}.sample_size", f"party '{party.name}' has no data (sample_size "
                                               f"{join.sample_size}); it must be at least 1")
        if not 1 <= join.dimension <= self._limits.max_dimension:
            errors.add(f"{field}.dimension", f"party '{party.name}' sent dimension {join.dimension}; "
                                             f"it must be in [1, {self._limits.max_dimension}]")
        elif session.dimension and join.dimension != session.dimension:
            errors.add(f"{field}.dimension", f"party '{party.name}' has data of dimension {join.dimension} "
                                             f"but the session's dimension is {session.dimension}")
        # Without config.support_size, xi gets as many atoms as the larger sample.
        support = session.config.support_size or join.sample_size
        if session.config.support_size is None and join.sample_size > self._limits.max_support_size:
            errors.add(f"{field}.sample_size", over_limit(
                f"party '{party.name}' has {join.sample_size:,} points, which would be xi's support size (the "
                "session sets no config.support_size)", self._limits.max_support_size, "max_support_size"))
        elif not errors.items and support * join.dimension > self._limits.max_elements:
            errors.add(f"{field}.dimension", over_limit(
                f"xi of {support:,} atoms in {join.dimension:,} dimensions would hold {support * join.dimension:,} "
                "values", self._limits.max_elements, "max_dense_elements"))
        errors.raise_if_any()
        if not session.dimension:
            session.dimension = int(join.dimension)
        party.joined, party.sample_size, party.error = True, int(join.sample_size), None
        party.outbox = asyncio.Queue()
        joined = sum(p.joined for p in session.parties)
        session.message = f"{joined} of {len(session.parties)} parties joined"
        session.touch()
        return session, party

    async def _read_answers(self, session: _Session, party: _Party, context):
        """Hands each answer to the round that waits for it; a closed stream or a bad
        answer ends the session."""
        try:
            while True:
                message = await context.read()
                if message is grpc.aio.EOF:
                    break
                if not session.active:
                    continue  # a late answer to an ended session: the end says why
                session.touch()
                if message.WhichOneof("message") != "answer":
                    raise InvalidArgument.field(f"parties[{party.name}].answer",
                                                "after the join, a party sends only answers")
                answer = message.answer
                future = party.expected.get((answer.pair_index, answer.round))
                if future is None or future.done():
                    raise InvalidArgument.field(
                        f"parties[{party.name}].answer.round",
                        f"party '{party.name}' answered pair {answer.pair_index} round {answer.round}, "
                        f"which was not asked")
                support = session.pairs[answer.pair_index].support_size
                future.set_result(_parse_answer(answer, party.name, session.dimension, support))
        except InvalidArgument as error:
            party.error = error
            session.end(_State.FED_WAD_SESSION_STATE_FAILED,
                        f"party '{party.name}' sent an invalid answer: {error}")
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a broken stream is a disconnect
            pass
        if session.state == _State.FED_WAD_SESSION_STATE_RUNNING:
            session.end(_State.FED_WAD_SESSION_STATE_FAILED,
                        f"party '{party.name}' disconnected while the session was running")
        elif session.state == _State.FED_WAD_SESSION_STATE_WAITING and party.outbox is not None:
            party.error = Aborted(f"party '{party.name}' closed its stream before the session started")
            party.outbox.put_nowait(_Ended.END)

    # --- the rounds -----------------------------------------------------------------

    async def _drive(self, session: _Session):
        from monge.solvers.fedwad import server_schedule, server_step

        loop = asyncio.get_running_loop()
        session.state = _State.FED_WAD_SESSION_STATE_RUNNING
        try:
            for index, pair in enumerate(session.pairs):
                first, second = session.parties[pair.first], session.parties[pair.second]
                config = dataclasses.replace(
                    session.config, seed=pair.seed,
                    support_size=session.config.support_size or max(first.sample_size, second.sample_size),
                )
                pair.support_size = config.support_size
                xi, ts = await loop.run_in_executor(self._executor, server_schedule, session.dimension, config)
                for k, t in enumerate(ts.tolist()):
                    session.message = (f"pair {index + 1} of {len(session.pairs)} ({first.name}, "
                                       f"{second.name}): round {k + 1} of {config.rounds}")
                    answers = []
                    for party, peer in ((first, second), (second, first)):
                        future = loop.create_future()
                        party.expected = {(index, k): future}
                        answers.append(future)
                        party.outbox.put_nowait(fedwad_pb2.ParticipateResponse(round=fedwad_pb2.FedWadRound(
                            pair_index=index, peer=peer.name, round=k, xi_points=encode(xi.points),
                            xi_weights=encode(xi.weights), t=t, p=config.p)))
                    answer_first, answer_second = await asyncio.gather(*answers)
                    pair.first_distances.append(answer_first.distance)
                    pair.second_distances.append(answer_second.distance)
                    pair.bounds.append(answer_first.distance + answer_second.distance)
                    pair.ts.append(t)
                    pair.suboptimal += (not answer_first.optimal) + (not answer_second.optimal)
                    xi = await loop.run_in_executor(
                        self._executor, lambda: server_step(answer_first, answer_second, t, p=config.p))
                    session.touch()
            estimates = ", ".join(f"({session.parties[p.first].name}, {session.parties[p.second].name}) "
                                  f"{min(p.bounds):.6g}" for p in session.pairs)
            session.end(_State.FED_WAD_SESSION_STATE_COMPLETED, f"completed; estimates {estimates}")
        except asyncio.CancelledError:
            pass  # the session ended (disconnect, expiry, cancel); `end` said why
        except Exception as error:  # noqa: BLE001 - a bug must end the session, not hang it
            error_id = uuid.uuid4().hex[:12]
            log.error("internal error %s in fedwad session %s", error_id, session.id, exc_info=error)
            session.end(_State.FED_WAD_SESSION_STATE_FAILED,
                        f"internal error (id {error_id}); see the server log")

    async def _watch(self, session: _Session):
        """Expire the session after `inactivity` seconds without activity."""
        while session.active:
            idle = time.monotonic() - session.last_activity
            if idle >= session.inactivity:
                session.end(_State.FED_WAD_SESSION_STATE_EXPIRED,
                            f"no activity for {session.inactivity:g} s")
                return
            await asyncio.sleep(session.inactivity - idle)

    # --- registry -------------------------------------------------------------------

    def _get(self, session_id: str, field: str = "session_id") -> _Session:
        self._forget_old()
        session = self._sessions.get(session_id)
        if session is None:
            raise NotFound(f"no FedWaD session {session_id!r} on this server (ended sessions "
                           f"are kept {self._limits.retention_seconds:g} s)", field)
        return session

    def _forget_old(self):
        now = time.monotonic()
        for key in [k for k, s in self._sessions.items()
                    if s.ended_at is not None and now - s.ended_at > self._limits.retention_seconds]:
            del self._sessions[key]

    async def close(self):
        """End every active session (its parties get ABORTED) and stop the threads."""
        for session in list(self._sessions.values()):
            session.end(_State.FED_WAD_SESSION_STATE_CANCELLED, "the server is shutting down")
        await asyncio.sleep(0)
        self._executor.shutdown(wait=True, cancel_futures=True)


# --- parsing ----------------------------------------------------------------------------


def _parse_create(request: fedwad_pb2.CreateSessionRequest, limits: FedWadLimits):
    from monge.solvers.fedwad import FedWadConfig

    errors = v.Violations()
    names = list(request.parties)
    if not 2 <= len(names) <= limits.max_parties:
        errors.add("parties", f"must name 2 to {limits.max_parties} parties (max_parties), got {len(names)}")
    for index, name in enumerate(names):
        if not _NAME.match(name):
            errors.add(f"parties[{index}]", f"{name!r} is not a valid name (1 to 64 letters, digits, '-', '_', '.')")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        errors.add("parties", f"names must be unique; repeated: {', '.join(duplicates)}")
    c = request.config
    support_size = rounds = p = t = None
    with errors.check():
        if c.HasField("support_size"):
            support_size = v.integer_in_range(c.support_size, "config.support_size", 1, limits.max_support_size,
                                              limit="max_support_size")
    with errors.check():
        lowered = limits.max_rounds < FedWadLimits.max_rounds  # by the server's max_iterations
        rounds = v.integer_in_range(v.optional_value(c, "rounds", DEFAULT_ROUNDS), "config.rounds",
                                    1, limits.max_rounds, limit="max_iterations" if lowered else "max_rounds")
    with errors.check():
        if c.HasField("t"):
            t = c.t
            if not 0.0 < t < 1.0:
                raise InvalidArgument.field("config.t", f"must lie strictly between 0 and 1, got {t}")
    with errors.check():
        p = v.optional_value(c, "p", DEFAULT_P)
        if not (math.isfinite(p) and p >= 1):
            raise InvalidArgument.field("config.p", f"must be finite and >= 1, got {p}")
    dimension = 0
    with errors.check():
        if request.HasField("dimension"):
            dimension = v.integer_in_range(request.dimension, "dimension", 1, limits.max_dimension,
                                           limit="max_dimension")
    inactivity = DEFAULT_INACTIVITY_SECONDS
    with errors.check():
        if request.HasField("inactivity_timeout_seconds"):
            inactivity = v.positive(request.inactivity_timeout_seconds, "inactivity_timeout_seconds")
            if inactivity > limits.max_inactivity_seconds:
                raise InvalidArgument.field("inactivity_timeout_seconds",
                                            f"must be at most {limits.max_inactivity_seconds:g}, got {inactivity:g}")
    errors.raise_if_any()
    config = FedWadConfig(support_size=support_size, rounds=rounds, t=t, seed=int(c.seed), p=float(p))
    return names, config, dimension, inactivity


def _parse_answer(answer: fedwad_pb2.FedWadAnswer, party: str, dimension: int, support: int):
    """(points, weights, distance, optimal) of a valid answer, or InvalidArgument naming
    the field and the party. An answer lives on xi's support: `support` points, checked
    on the tensor's header before anything is decoded."""
    from monge.solvers.fedwad import PartyAnswer

    prefix = f"parties[{party}].answer."
    if answer.HasField("points"):
        try:
            _, shape = check(answer.points, prefix + "points")
        except TensorError as error:
            raise InvalidArgument.field(error.field, error.description) from None
        if len(shape) == 2 and shape[0] != support:
            raise InvalidArgument.field(prefix + "points", f"has {shape[0]:,} points but xi, which it answers, "
                                                           f"has {support:,}")
    points = v.float_tensor(answer, "points", ndim=2, prefix=prefix)
    weights = v.float_tensor(answer, "weights", ndim=1, prefix=prefix)
    if points is None or weights is None:
        raise InvalidArgument.field(prefix + ("points" if points is None else "weights"), "is required")
    if points.shape[1] != dimension:
        raise InvalidArgument.field(prefix + "points", f"has dimension {points.shape[1]}, the session's is {dimension}")
    if weights.shape[0] != points.shape[0]:
        raise InvalidArgument.field(prefix + "weights", f"has {weights.shape[0]} entries for {points.shape[0]} points")
    if np.any(weights < 0) or not weights.sum() > 0:
        raise InvalidArgument.field(prefix + "weights", "must be nonnegative with a positive total")
    if not (math.isfinite(answer.distance) and answer.distance >= 0):
        raise InvalidArgument.field(prefix + "distance", f"must be finite and >= 0, got {answer.distance}")
    return PartyAnswer(points.astype(np.float64), weights.astype(np.float64), float(answer.distance), answer.optimal)


def _state_word(state: int) -> str:
    return _State.Name(state).removeprefix("FED_WAD_SESSION_STATE_").lower()


__all__ = ["FedWadLimits", "FedWadServicer"]
