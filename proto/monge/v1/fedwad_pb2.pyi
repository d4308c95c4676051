from monge.v1 import tensor_pb2 as _tensor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class FedWadSessionState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FED_WAD_SESSION_STATE_UNSPECIFIED: _ClassVar[FedWadSessionState]
    FED_WAD_SESSION_STATE_WAITING: _ClassVar[FedWadSessionState]
    FED_WAD_SESSION_STATE_RUNNING: _ClassVar[FedWadSessionState]
    FED_WAD_SESSION_STATE_COMPLETED: _ClassVar[FedWadSessionState]
    FED_WAD_SESSION_STATE_FAILED: _ClassVar[FedWadSessionState]
    FED_WAD_SESSION_STATE_EXPIRED: _ClassVar[FedWadSessionState]
    FED_WAD_SESSION_STATE_CANCELLED: _ClassVar[FedWadSessionState]
FED_WAD_SESSION_STATE_UNSPECIFIED: FedWadSessionState
FED_WAD_SESSION_STATE_WAITING: FedWadSessionState
FED_WAD_SESSION_STATE_RUNNING: FedWadSessionState
FED_WAD_SESSION_STATE_COMPLETED: FedWadSessionState
FED_WAD_SESSION_STATE_FAILED: FedWadSessionState
FED_WAD_SESSION_STATE_EXPIRED: FedWadSessionState
FED_WAD_SESSION_STATE_CANCELLED: FedWadSessionState

class FedWadConfig(_message.Message):
    __slots__ = ("support_size", "rounds", "t", "seed", "p")
    SUPPORT_SIZE_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    T_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    P_FIELD_NUMBER: _ClassVar[int]
    support_size: int
    rounds: int
    t: float
    seed: int
    p: float
    def __init__(self, support_size: _Optional[int] = ..., rounds: _Optional[int] = ..., t: _Optional[float] = ..., seed: _Optional[int] = ..., p: _Optional[float] = ...) -> None: ...

class CreateSessionRequest(_message.Message):
    __slots__ = ("parties", "config", "dimension", "inactivity_timeout_seconds")
    PARTIES_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    INACTIVITY_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    parties: _containers.RepeatedScalarFieldContainer[str]
    config: FedWadConfig
    dimension: int
    inactivity_timeout_seconds: float
    def __init__(self, parties: _Optional[_Iterable[str]] = ..., config: _Optional[_Union[FedWadConfig, _Mapping]] = ..., dimension: _Optional[int] = ..., inactivity_timeout_seconds: _Optional[float] = ...) -> None: ...

class CreateSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: FedWadSession
    def __init__(self, session: _Optional[_Union[FedWadSession, _Mapping]] = ...) -> None: ...

class FedWadJoin(_message.Message):
    __slots__ = ("session_id", "party", "dimension", "sample_size")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PARTY_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_SIZE_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    party: str
    dimension: int
    sample_size: int
    def __init__(self, session_id: _Optional[str] = ..., party: _Optional[str] = ..., dimension: _Optional[int] = ..., sample_size: _Optional[int] = ...) -> None: ...

class FedWadAnswer(_message.Message):
    __slots__ = ("pair_index", "round", "points", "weights", "distance", "optimal")
    PAIR_INDEX_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    POINTS_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    OPTIMAL_FIELD_NUMBER: _ClassVar[int]
    pair_index: int
    round: int
    points: _tensor_pb2.Tensor
    weights: _tensor_pb2.Tensor
    distance: float
    optimal: bool
    def __init__(self, pair_index: _Optional[int] = ..., round: _Optional[int] = ..., points: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., weights: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., distance: _Optional[float] = ..., optimal: _Optional[bool] = ...) -> None: ...

class ParticipateRequest(_message.Message):
    __slots__ = ("join", "answer")
    JOIN_FIELD_NUMBER: _ClassVar[int]
    ANSWER_FIELD_NUMBER: _ClassVar[int]
    join: FedWadJoin
    answer: FedWadAnswer
    def __init__(self, join: _Optional[_Union[FedWadJoin, _Mapping]] = ..., answer: _Optional[_Union[FedWadAnswer, _Mapping]] = ...) -> None: ...

class FedWadJoined(_message.Message):
    __slots__ = ("session_id", "party", "parties")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PARTY_FIELD_NUMBER: _ClassVar[int]
    PARTIES_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    party: str
    parties: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, session_id: _Optional[str] = ..., party: _Optional[str] = ..., parties: _Optional[_Iterable[str]] = ...) -> None: ...

class FedWadRound(_message.Message):
    __slots__ = ("pair_index", "peer", "round", "xi_points", "xi_weights", "t", "p")
    PAIR_INDEX_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    XI_POINTS_FIELD_NUMBER: _ClassVar[int]
    XI_WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    T_FIELD_NUMBER: _ClassVar[int]
    P_FIELD_NUMBER: _ClassVar[int]
    pair_index: int
    peer: str
    round: int
    xi_points: _tensor_pb2.Tensor
    xi_weights: _tensor_pb2.Tensor
    t: float
    p: float
    def __init__(self, pair_index: _Optional[int] = ..., peer: _Optional[str] = ..., round: _Optional[int] = ..., xi_points: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., xi_weights: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., t: _Optional[float] = ..., p: _Optional[float] = ...) -> None: ...

class ParticipateResponse(_message.Message):
    __slots__ = ("joined", "round", "finished")
    JOINED_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    joined: FedWadJoined
    round: FedWadRound
    finished: FedWadSession
    def __init__(self, joined: _Optional[_Union[FedWadJoined, _Mapping]] = ..., round: _Optional[_Union[FedWadRound, _Mapping]] = ..., finished: _Optional[_Union[FedWadSession, _Mapping]] = ...) -> None: ...

class FedWadParty(_message.Message):
    __slots__ = ("name", "joined")
    NAME_FIELD_NUMBER: _ClassVar[int]
    JOINED_FIELD_NUMBER: _ClassVar[int]
    name: str
    joined: bool
    def __init__(self, name: _Optional[str] = ..., joined: _Optional[bool] = ...) -> None: ...

class FedWadPair(_message.Message):
    __slots__ = ("first", "second", "rounds_done", "rounds", "support_size", "seed", "estimate", "best_round", "bound_history", "first_distance_history", "second_distance_history", "t_history", "suboptimal_ot_calls")
    FIRST_FIELD_NUMBER: _ClassVar[int]
    SECOND_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_DONE_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    SUPPORT_SIZE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    ESTIMATE_FIELD_NUMBER: _ClassVar[int]
    BEST_ROUND_FIELD_NUMBER: _ClassVar[int]
    BOUND_HISTORY_FIELD_NUMBER: _ClassVar[int]
    FIRST_DISTANCE_HISTORY_FIELD_NUMBER: _ClassVar[int]
    SECOND_DISTANCE_HISTORY_FIELD_NUMBER: _ClassVar[int]
    T_HISTORY_FIELD_NUMBER: _ClassVar[int]
    SUBOPTIMAL_OT_CALLS_FIELD_NUMBER: _ClassVar[int]
    first: int
    second: int
    rounds_done: int
    rounds: int
    support_size: int
    seed: int
    estimate: float
    best_round: int
    bound_history: _tensor_pb2.Tensor
    first_distance_history: _tensor_pb2.Tensor
    second_distance_history: _tensor_pb2.Tensor
    t_history: _tensor_pb2.Tensor
    suboptimal_ot_calls: int
    def __init__(self, first: _Optional[int] = ..., second: _Optional[int] = ..., rounds_done: _Optional[int] = ..., rounds: _Optional[int] = ..., support_size: _Optional[int] = ..., seed: _Optional[int] = ..., estimate: _Optional[float] = ..., best_round: _Optional[int] = ..., bound_history: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., first_distance_history: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., second_distance_history: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., t_history: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ..., suboptimal_ot_calls: _Optional[int] = ...) -> None: ...

class FedWadSession(_message.Message):
    __slots__ = ("session_id", "state", "status_message", "parties", "config", "dimension", "inactivity_timeout_seconds", "pairs", "distances")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STATUS_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    PARTIES_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    DIMENSION_FIELD_NUMBER: _ClassVar[int]
    INACTIVITY_TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    DISTANCES_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    state: FedWadSessionState
    status_message: str
    parties: _containers.RepeatedCompositeFieldContainer[FedWadParty]
    config: FedWadConfig
    dimension: int
    inactivity_timeout_seconds: float
    pairs: _containers.RepeatedCompositeFieldContainer[FedWadPair]
    distances: _tensor_pb2.Tensor
    def __init__(self, session_id: _Optional[str] = ..., state: _Optional[_Union[FedWadSessionState, str]] = ..., status_message: _Optional[str] = ..., parties: _Optional[_Iterable[_Union[FedWadParty, _Mapping]]] = ..., config: _Optional[_Union[FedWadConfig, _Mapping]] = ..., dimension: _Optional[int] = ..., inactivity_timeout_seconds: _Optional[float] = ..., pairs: _Optional[_Iterable[_Union[FedWadPair, _Mapping]]] = ..., distances: _Optional[_Union[_tensor_pb2.Tensor, _Mapping]] = ...) -> None: ...

class GetSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class GetSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: FedWadSession
    def __init__(self, session: _Optional[_Union[FedWadSession, _Mapping]] = ...) -> None: ...

class CancelSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class CancelSessionResponse(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: FedWadSession
    def __init__(self, session: _Optional[_Union[FedWadSession, _Mapping]] = ...) -> None: ...
