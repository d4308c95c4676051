"""FedWadService against a real server: parties in threads of this process (the
two-process version is tests/client/test_fedwad_party.py), N-party matrix, disconnects,
expiry, and bad input named by field and party."""

import threading
import time

import grpc
import numpy as np
import pytest

from monge.client import (
    AbortedError,
    FedWadParty,
    FedWadSessions,
    InvalidArgumentError,
    NotFoundError,
)
from monge.v1.codec import encode
from monge.solvers.fedwad import FedWadConfig, fedwad, pairwise_fedwad
from monge.v1 import fedwad_pb2, fedwad_pb2_grpc


@pytest.fixture
def sessions(server):
    with FedWadSessions(server.target, timeout=30) as s:
        yield s


class PartyThread(threading.Thread):
    """Runs FedWadParty.join in a thread; `result` or `error` afterwards."""

    def __init__(self, target, session_id, data, name, **join):
        super().__init__(daemon=True)
        self.party = FedWadParty(data, name=name)
        self.args, self.join_kwargs = (target, session_id), join
        self.result = self.error = None
        self.start()

    def run(self):
        try:
            self.result = self.party.join(*self.args, timeout=60, **self.join_kwargs)
        except Exception as error:  # noqa: BLE001 - the test inspects it
            self.error = error

    def finish(self):
        self.join(60)
        assert not self.is_alive()
        return self


class RawParty:
    """A hand-driven Participate stream, for what a well-behaved party never sends."""

    def __init__(self, target):
        self.channel = grpc.insecure_channel(target)
        self.outbox = []
        self.condition = threading.Condition()
        self.call = fedwad_pb2_grpc.FedWadServiceStub(self.channel).Participate(self._requests(), timeout=30)

    def _requests(self):
        while True:
            with self.condition:
                self.condition.wait_for(lambda: self.outbox)
                message = self.outbox.pop(0)
            if message is None:
                return
            yield message

    def send(self, **message):
        with self.condition:
            self.outbox.append(fedwad_pb2.ParticipateRequest(**message))
            self.condition.notify()

    def join(self, session_id, party, dimension=2, sample_size=10):
        self.send(join=fedwad_pb2.FedWadJoin(session_id=session_id, party=party, dimension=dimension,
                                             sample_size=sample_size))

    def close(self):
        with self.condition:
            self.outbox.append(None)
            self.condition.notify()
        self.call.cancel()
        self.channel.close()


def _wait_for(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_two_parties_equal_the_simulation(server, sessions, rng):
    x, y = rng.normal(size=(15, 2)), rng.normal(size=(12, 2)) + 1.0
    session = sessions.create(["alice", "bob"], rounds=15, seed=7)
    assert session.state == "waiting" and session.estimate is None
    parties = [PartyThread(server.target, session.session_id, d, n) for n, d in (("alice", x), ("bob", y))]
    for party in parties:
        assert party.finish().error is None, party.error
    final = sessions.get(session.session_id)
    reference = fedwad(x, y, config=FedWadConfig(rounds=15, seed=7))
    assert final.state == "completed"
    assert final.estimate == reference.estimate
    np.testing.assert_array_equal(final.bound_history, reference.bound_history)
    np.testing.assert_array_equal(final.pairs[0].t_history, reference.t_history)
    assert final.pairs[0].best_round == reference.best_round
    assert final.pairs[0].support_size == 15
    assert parties[0].result.estimate == reference.estimate  # what a party is told at the end


def test_three_parties_pairwise_matrix(server, sessions, rng):
    samples = [rng.normal(size=(8, 3)) + shift for shift in (0.0, 1.0, 3.0)]
    names = ["a", "b", "c"]
    session = sessions.create(names, rounds=6, seed=2, t=0.5)
    parties = [PartyThread(server.target, session.session_id, s, n) for n, s in zip(names, samples)]
    for party in parties:
        assert party.finish().error is None, party.error
    final = sessions.get(session.session_id)
    reference = pairwise_fedwad(samples, FedWadConfig(rounds=6, seed=2, t=0.5))
    assert final.state == "completed"
    np.testing.assert_array_equal(final.distances, reference.distances)
    assert [(p.first, p.second) for p in final.pairs] == [("a", "b"), ("a", "c"), ("b", "c")]


def test_unnamed_parties_take_free_slots_in_order(server, sessions, rng):
    x, y = rng.normal(size=(6, 2)), rng.normal(size=(6, 2))
    session = sessions.create(["first", "second"], rounds=2)
    one = PartyThread(server.target, session.session_id, x, "")
    _wait_for(lambda: sessions.get(session.session_id).joined == ("first",))
    two = PartyThread(server.target, session.session_id, y, "")
    assert one.finish().error is None and two.finish().error is None
    assert sessions.get(session.session_id).estimate == fedwad(x, y, config=FedWadConfig(rounds=2)).estimate


def _alice_beside_raw_bob(server, sessions, rng, alice_points: int, **session):
    """A session of alice (a well-behaved party) and bob (hand-driven): (the session,
    alice, bob, bob's replies)."""
    created = sessions.create(["alice", "bob"], **session)
    alice = PartyThread(server.target, created.session_id, rng.normal(size=(alice_points, 2)), "alice")
    bob = RawParty(server.target)
    bob.join(created.session_id, "bob")
    return created, alice, bob, iter(bob.call)


def test_party_disconnect_mid_session_ends_it_for_the_others(server, sessions, rng):
    session, alice, bob, replies = _alice_beside_raw_bob(server, sessions, rng, 10, rounds=1000, dimension=2)
    assert next(replies).WhichOneof("message") == "joined"
    assert next(replies).WhichOneof("message") == "round"  # the session is running
    bob.close()  # bob goes away without answering
    alice.finish()
    assert isinstance(alice.error, AbortedError), alice.error
    assert alice.error.code == grpc.StatusCode.ABORTED
    assert "party 'bob' disconnected" in str(alice.error)
    final = sessions.get(session.session_id)
    assert final.state == "failed" and "bob" in final.message


def test_inactive_session_expires(server, sessions, rng):
    session = sessions.create(["alice", "bob"], rounds=5, inactivity_timeout=0.5)
    started = time.monotonic()
    alice = PartyThread(server.target, session.session_id, rng.normal(size=(5, 2)), "alice").finish()
    assert isinstance(alice.error, AbortedError)
    assert "expired" in str(alice.error) and "no activity for 0.5 s" in str(alice.error)
    assert time.monotonic() - started < 10
    final = sessions.get(session.session_id)
    assert final.state == "expired"
    with pytest.raises(Exception) as caught:  # an ended session takes no more joins
        FedWadParty(rng.normal(size=(5, 2)), name="bob").join(server.target, session.session_id, timeout=10)
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION


def test_cancel_ends_parties_with_aborted(server, sessions, rng):
    session = sessions.create(["alice", "bob"], rounds=5)
    alice = PartyThread(server.target, session.session_id, rng.normal(size=(5, 2)), "alice")
    _wait_for(lambda: sessions.get(session.session_id).joined == ("alice",))
    assert sessions.cancel(session.session_id).state == "cancelled"
    assert isinstance(alice.finish().error, AbortedError) and "cancelled" in str(alice.error)


# --- bad input, each named by field and party ---------------------------------------------


def _violation(error):
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT, error
    return {v.field: v.description for v in error.violations}


@pytest.mark.parametrize("kwargs, field", [
    ({"parties": ["solo"]}, "parties"),
    ({"parties": ["a", "a"]}, "parties"),
    ({"parties": ["a", "b c"]}, "parties[1]"),
    ({"rounds": 0}, "config.rounds"),
    ({"t": 1.0}, "config.t"),
    ({"p": 0.5}, "config.p"),
    ({"support_size": 0}, "config.support_size"),
    ({"inactivity_timeout": -1.0}, "inactivity_timeout_seconds"),
])
def test_create_rejects_bad_config(sessions, kwargs, field):
    kwargs = {"parties": ["a", "b"], **kwargs}
    with pytest.raises(InvalidArgumentError) as caught:
        sessions.create(kwargs.pop("parties"), **kwargs)
    assert field in _violation(caught.value)


def test_dimension_mismatch_names_the_party(server, sessions, rng):
    session = sessions.create(["alice", "bob"], rounds=3)
    alice = RawParty(server.target)
    alice.join(session.session_id, "alice", dimension=2)
    assert next(iter(alice.call)).WhichOneof("message") == "joined"  # alice sets dimension 2
    with pytest.raises(InvalidArgumentError) as caught:
        FedWadParty(rng.normal(size=(5, 3)), name="bob").join(server.target, session.session_id, timeout=10)
    description = _violation(caught.value)["parties[bob].dimension"]
    assert "dimension 3" in description and "dimension is 2" in description
    alice.close()


def test_unknown_session_and_party(server, sessions, rng):
    party = FedWadParty(rng.normal(size=(5, 2)), name="carol")
    with pytest.raises(NotFoundError):
        party.join(server.target, "no-such-session", timeout=10)
    session = sessions.create(["alice", "bob"])
    with pytest.raises(InvalidArgumentError) as caught:
        party.join(server.target, session.session_id, timeout=10)
    assert "'carol' is not a party" in _violation(caught.value)["join.party"]
    with pytest.raises(NotFoundError):
        sessions.get("no-such-session")


@pytest.mark.parametrize("make, description", [
    (lambda rng: np.empty((0, 2)), "is empty"),
    (lambda rng: np.where(np.arange(10)[:, None] == 3, np.nan, rng.normal(size=(10, 2))), "NaN"),
    (lambda rng: rng.normal(size=10), "2-D"),
])
def test_bad_data_is_refused_before_anything_is_sent(rng, make, description):
    with pytest.raises(InvalidArgumentError) as caught:
        FedWadParty(make(rng), name="alice")
    assert description in _violation(caught.value)["parties[alice].data"]


def test_server_refuses_an_empty_sample(server, sessions):
    session = sessions.create(["alice", "bob"])
    raw = RawParty(server.target)
    raw.join(session.session_id, "alice", sample_size=0)
    with pytest.raises(grpc.RpcError) as caught:
        list(raw.call)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "parties[alice].sample_size" in caught.value.details()
    raw.close()


def test_nan_answer_fails_the_session_naming_the_party(server, sessions, rng):
    session, alice, bob, replies = _alice_beside_raw_bob(server, sessions, rng, 6, rounds=3, support_size=4)
    next(replies)
    round_ = next(replies).round
    bad = np.full((4, 2), np.nan)
    bob.send(answer=fedwad_pb2.FedWadAnswer(pair_index=round_.pair_index, round=round_.round,
                                            points=encode(bad), weights=encode(np.full(4, 0.25)),
                                            distance=1.0, optimal=True))
    with pytest.raises(grpc.RpcError) as caught:
        list(replies)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "parties[bob].answer.points" in caught.value.details()
    assert isinstance(alice.finish().error, AbortedError)
    assert "party 'bob' sent an invalid answer" in str(alice.error)
    bob.close()
