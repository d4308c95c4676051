"""Federated Wasserstein (FedWaD) over gRPC: a party that keeps its data, and sessions.

    # whoever sets it up (the "creator")
    with FedWadSessions("server:50051") as sessions:
        session = sessions.create(["alice", "bob"], rounds=100, seed=0)

    # each party, in its own process, on its own machine
    FedWadParty(x, name="alice").join("server:50051", session.session_id)

    # anyone with the id
    sessions.get(session.session_id).estimate

The party runs `monge.solvers.fedwad.party_step` locally: its points never leave it;
only the measure at fraction t from the server's xi towards them, and W_p(xi, points),
do. That is NOT privacy in any formal sense: FedWaD is not differentially private, and
the server, which knows xi and t, can invert an answer (with uniform weights and a
support size equal to the sample size it recovers the sample exactly). See
`FedWadSessions.create`.

Failures raise `monge.client` errors: `InvalidArgumentError` (bad data is caught here,
before anything is sent, and named `parties[NAME].data`), `AbortedError` when the
session ends early (a party disconnected, expiry, cancellation), `NotFoundError` for an
unknown session.
"""

from __future__ import annotations

import dataclasses
import queue
import time
from typing import Sequence

import grpc
import numpy as np

from monge.client import errors
from monge.client.channel import open_channel
from monge.v1.codec import decode, encode
from monge.v1 import fedwad_pb2, fedwad_pb2_grpc

DEFAULT_MAX_MESSAGE_BYTES = 512 << 20
_ENDED = ("completed", "failed", "expired", "cancelled")


@dataclasses.dataclass(frozen=True)
class FedWadPairResult:
    """The estimate between parties `first` and `second` (names) and its history.

    estimate: smallest bound so far, an upper bound of W_p (None before round 1).
    bound_history: (rounds_done,) W_p(first, xi_k) + W_p(xi_k, second).
    """

    first: str
    second: str
    rounds_done: int
    rounds: int
    support_size: int
    seed: int
    estimate: float | None
    best_round: int
    bound_history: np.ndarray
    first_distance_history: np.ndarray
    second_distance_history: np.ndarray
    t_history: np.ndarray
    suboptimal_ot_calls: int


@dataclasses.dataclass(frozen=True)
class FedWadSessionInfo:
    """A session as the server reports it.

    state: waiting, running, completed, failed, expired or cancelled.
    message: why, in a sentence (who disconnected, how long it was idle).
    distances: (N, N) estimates, NaN where a pair has none yet.
    """

    session_id: str
    state: str
    message: str
    parties: tuple[str, ...]
    joined: tuple[str, ...]
    dimension: int
    inactivity_timeout_seconds: float
    pairs: tuple[FedWadPairResult, ...]
    distances: np.ndarray

    @property
    def ended(self) -> bool:
        return self.state in _ENDED

    @property
    def estimate(self) -> float | None:
        """The estimate of a two-party session (the first pair's otherwise)."""
        return self.pairs[0].estimate if self.pairs else None

    @property
    def bound_history(self) -> np.ndarray:
        return self.pairs[0].bound_history

    @classmethod
    def from_proto(cls, s: fedwad_pb2.FedWadSession) -> "FedWadSessionInfo":
        names = tuple(p.name for p in s.parties)
        pairs = tuple(
            FedWadPairResult(
                first=names[p.first], second=names[p.second], rounds_done=p.rounds_done,
                rounds=p.rounds, support_size=p.support_size, seed=p.seed,
                estimate=p.estimate if p.HasField("estimate") else None, best_round=p.best_round,
                bound_history=decode(p.bound_history, "bound_history"),
                first_distance_history=decode(p.first_distance_history, "first_distance_history"),
                second_distance_history=decode(p.second_distance_history, "second_distance_history"),
                t_history=decode(p.t_history, "t_history"),
                suboptimal_ot_calls=p.suboptimal_ot_calls,
            )
            for p in s.pairs
        )
        return cls(
            session_id=s.session_id,
            state=fedwad_pb2.FedWadSessionState.Name(s.state).removeprefix("FED_WAD_SESSION_STATE_").lower(),
            message=s.status_message, parties=names,
            joined=tuple(p.name for p in s.parties if p.joined), dimension=s.dimension,
            inactivity_timeout_seconds=s.inactivity_timeout_seconds, pairs=pairs,
            distances=decode(s.distances, "distances"),
        )


def _channel(target, max_message_bytes, credentials, root_certificates=None, token=None):
    options = [("grpc.max_receive_message_length", max_message_bytes),
               ("grpc.max_send_message_length", max_message_bytes)]
    return open_channel(target, options=options, credentials=credentials,
                        root_certificates=root_certificates, token=token)


class FedWadSessions:
    """Creates, reads and cancels sessions. Use as a context manager, or `close()`."""

    def __init__(self, target: str = "127.0.0.1:50051", *, timeout: float | None = 60.0,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 credentials: grpc.ChannelCredentials | None = None,
                 root_certificates: bytes | str | None = None, token: str | None = None):
        """root_certificates and token: as for `Client`."""
        self._channel = _channel(target, max_message_bytes, credentials, root_certificates, token)
        self._stub = fedwad_pb2_grpc.FedWadServiceStub(self._channel)
        self.target, self.timeout = target, timeout

    def __enter__(self) -> "FedWadSessions":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method, request, timeout):
        try:
            return method(request, timeout=self.timeout if timeout is None else timeout)
        except grpc.RpcError as error:
            raise errors.from_rpc_error(error) from None

    def create(
        self,
        parties: Sequence[str],
        *,
        rounds: int = 100,
        support_size: int | None = None,
        t: float | None = None,
        seed: int = 0,
        p: float = 2.0,
        dimension: int | None = None,
        inactivity_timeout: float | None = None,
        timeout: float | None = None,
    ) -> FedWadSessionInfo:
        """Open a session for the named parties (in order; pair (i, j) treats party i as
        the first measure) and return it; parties join with its `session_id`.

        What it protects, plainly: each party's points stay on its machine, and only
        interpolating measures and distances travel. What it does not: FedWaD is NOT
        differentially private. The server learns every interpolating measure and knows
        xi and t, so it can invert an answer into the barycentric projection of the
        party's sample onto xi; with uniform weights and `support_size` equal to the
        sample size (the default when `support_size` is None and the sizes are equal)
        that IS the party's sample, exactly, from a single round. Smaller support sizes
        reveal an S-point quantisation (cluster means) instead. A party receiving the
        next xi can likewise recover its peer's answer. Use it only where the server
        and the parties are trusted not to look.

        rounds, support_size, t (None: drawn each round), seed, p: as
        `monge.solvers.fedwad.FedWadConfig`; with two parties the result equals
        `fedwad(x, y, config)`, with more `pairwise_fedwad(samples, config)`.
        dimension: the data's dimension (None: set by the first party to join).
        inactivity_timeout: seconds without activity before the session expires
        (None: the server's default, 600 s).
        """
        config = fedwad_pb2.FedWadConfig(rounds=rounds, seed=seed, p=p)
        if support_size is not None:
            config.support_size = support_size
        if t is not None:
            config.t = t
        request = fedwad_pb2.CreateSessionRequest(parties=list(parties), config=config)
        if dimension is not None:
            request.dimension = dimension
        if inactivity_timeout is not None:
            request.inactivity_timeout_seconds = inactivity_timeout
        reply = self._call(self._stub.CreateSession, request, timeout)
        return FedWadSessionInfo.from_proto(reply.session)

    def get(self, session_id: str, *, timeout: float | None = None) -> FedWadSessionInfo:
        """The session now: state, estimates, per-round history."""
        reply = self._call(self._stub.GetSession, fedwad_pb2.GetSessionRequest(session_id=session_id), timeout)
        return FedWadSessionInfo.from_proto(reply.session)

    def cancel(self, session_id: str, *, timeout: float | None = None) -> FedWadSessionInfo:
        """End a waiting or running session; its parties get `AbortedError`."""
        reply = self._call(self._stub.CancelSession, fedwad_pb2.CancelSessionRequest(session_id=session_id),
                           timeout)
        return FedWadSessionInfo.from_proto(reply.session)

    def wait(self, session_id: str, *, timeout: float | None = None, poll: float = 0.2) -> FedWadSessionInfo:
        """Poll until the session has ended (in any state) and return it; raises
        `DeadlineExceededError` after `timeout` seconds (None: the client's timeout)."""
        limit = self.timeout if timeout is None else timeout
        deadline = None if limit is None else time.monotonic() + limit
        while True:
            session = self.get(session_id)
            if session.ended:
                return session
            if deadline is not None and time.monotonic() > deadline:
                raise errors.DeadlineExceededError(
                    f"session {session_id} still {session.state} after {limit:g} s")
            time.sleep(poll)


class FedWadParty:
    """One party: its points (n, d) and optional weights (n,), which stay here.

    The data is checked at construction; a problem raises `InvalidArgumentError` naming
    `parties[NAME].data` or `parties[NAME].weights`, as the server names fields.
    """

    def __init__(self, data, weights=None, *, name: str = ""):
        self.name = name
        label = f"parties[{name or '?'}]"
        points = np.asarray(data)
        problems = []
        if points.ndim != 2:
            problems.append((f"{label}.data", f"must be 2-D (n, d), got shape {list(points.shape)}"))
        elif points.shape[0] == 0 or points.shape[1] == 0:
            problems.append((f"{label}.data", f"is empty (shape {list(points.shape)})"))
        elif not np.issubdtype(points.dtype, np.number):
            problems.append((f"{label}.data", f"must be numeric, got dtype {points.dtype}"))
        elif not np.all(np.isfinite(points)):
            bad = int(points.size - np.count_nonzero(np.isfinite(points)))
            problems.append((f"{label}.data", f"has {bad} NaN or infinite entries"))
        if weights is not None and not problems:
            w = np.asarray(weights, dtype=np.float64)
            if w.shape != (points.shape[0],):
                problems.append((f"{label}.weights", f"must have shape ({points.shape[0]},), got {list(w.shape)}"))
            elif not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
                problems.append((f"{label}.weights", "must be finite, nonnegative, with a positive total"))
        if problems:
            raise errors.InvalidArgumentError(
                "; ".join(f"{f}: {d}" for f, d in problems),
                violations=[errors.FieldViolation(f, d) for f, d in problems],
            )
        from monge.solvers.fedwad import _as_measure  # normalised exactly as fedwad() does

        self._measure = _as_measure(points, weights, name or "party")

    @property
    def dimension(self) -> int:
        return int(self._measure.points.shape[1])

    @property
    def sample_size(self) -> int:
        return int(self._measure.points.shape[0])

    def join(
        self,
        target: str,
        session_id: str,
        *,
        timeout: float | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        on_round=None,
        root_certificates: bytes | str | None = None,
        token: str | None = None,
    ) -> FedWadSessionInfo:
        """Take this party's slot (its `name`, or the first free one when the name is
        empty) and answer every round until the session completes; returns the final
        session. `timeout`: seconds for the whole session (None: no limit; the server
        expires idle sessions). `on_round(round_message)` is called before each answer.
        Raises `AbortedError` if the session ends early, with the reason."""
        from monge.solvers.fedwad import party_step

        outbox: queue.Queue = queue.Queue()
        outbox.put(fedwad_pb2.ParticipateRequest(join=fedwad_pb2.FedWadJoin(
            session_id=session_id, party=self.name, dimension=self.dimension,
            sample_size=self.sample_size)))

        def requests():
            while (message := outbox.get()) is not None:
                yield message

        channel = _channel(target, max_message_bytes, credentials, root_certificates, token)
        try:
            call = fedwad_pb2_grpc.FedWadServiceStub(channel).Participate(requests(), timeout=timeout)
            name = self.name
            for reply in call:
                kind = reply.WhichOneof("message")
                if kind == "joined":
                    name = reply.joined.party
                elif kind == "round":
                    r = reply.round
                    if on_round is not None:
                        on_round(r)
                    answer = party_step(
                        decode(r.xi_points, "xi_points"), decode(r.xi_weights, "xi_weights"),
                        *self._measure, r.t, p=r.p, party=name,
                    )
                    outbox.put(fedwad_pb2.ParticipateRequest(answer=fedwad_pb2.FedWadAnswer(
                        pair_index=r.pair_index, round=r.round, points=encode(answer.points),
                        weights=encode(answer.weights), distance=answer.distance,
                        optimal=answer.optimal)))
                elif kind == "finished":
                    return FedWadSessionInfo.from_proto(reply.finished)
            raise errors.MongeError("the server ended the session without a result",
                                    code=grpc.StatusCode.UNKNOWN)
        except grpc.RpcError as error:
            raise errors.from_rpc_error(error) from None
        finally:
            outbox.put(None)
            channel.close()


__all__ = ["FedWadPairResult", "FedWadParty", "FedWadSessionInfo", "FedWadSessions"]
