from monge.v1 import exact_pb2 as _exact_pb2
from monge.v1 import pfode_pb2 as _pfode_pb2
from monge.v1 import ruot_pb2 as _ruot_pb2
from monge.v1 import sinkhorn_pb2 as _sinkhorn_pb2
from monge.v1 import sparsity_constrained_pb2 as _sparsity_constrained_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetServerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Device(_message.Message):
    __slots__ = ("id", "platform", "kind")
    ID_FIELD_NUMBER: _ClassVar[int]
    PLATFORM_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    id: int
    platform: str
    kind: str
    def __init__(self, id: _Optional[int] = ..., platform: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class Worker(_message.Message):
    __slots__ = ("index", "pid", "devices", "busy", "tasks_done", "address")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    BUSY_FIELD_NUMBER: _ClassVar[int]
    TASKS_DONE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    index: int
    pid: int
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    busy: bool
    tasks_done: int
    address: str
    def __init__(self, index: _Optional[int] = ..., pid: _Optional[int] = ..., devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ..., busy: _Optional[bool] = ..., tasks_done: _Optional[int] = ..., address: _Optional[str] = ...) -> None: ...

class GetServerInfoResponse(_message.Message):
    __slots__ = ("version", "jax_version", "backend", "devices", "solvers", "max_message_bytes", "workers", "cluster")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    JAX_VERSION_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    DEVICES_FIELD_NUMBER: _ClassVar[int]
    SOLVERS_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    version: str
    jax_version: str
    backend: str
    devices: _containers.RepeatedCompositeFieldContainer[Device]
    solvers: _containers.RepeatedScalarFieldContainer[str]
    max_message_bytes: int
    workers: _containers.RepeatedCompositeFieldContainer[Worker]
    cluster: str
    def __init__(self, version: _Optional[str] = ..., jax_version: _Optional[str] = ..., backend: _Optional[str] = ..., devices: _Optional[_Iterable[_Union[Device, _Mapping]]] = ..., solvers: _Optional[_Iterable[str]] = ..., max_message_bytes: _Optional[int] = ..., workers: _Optional[_Iterable[_Union[Worker, _Mapping]]] = ..., cluster: _Optional[str] = ...) -> None: ...
