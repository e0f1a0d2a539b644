from scheduler.v1 import topology_pb2 as _topology_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SetLinkStatusRequest(_message.Message):
    __slots__ = ("ids", "up")
    IDS_FIELD_NUMBER: _ClassVar[int]
    UP_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    up: bool
    def __init__(self, ids: _Optional[_Iterable[str]] = ..., up: _Optional[bool] = ...) -> None: ...

class LinkOverride(_message.Message):
    __slots__ = ("id", "up")
    ID_FIELD_NUMBER: _ClassVar[int]
    UP_FIELD_NUMBER: _ClassVar[int]
    id: str
    up: bool
    def __init__(self, id: _Optional[str] = ..., up: _Optional[bool] = ...) -> None: ...

class SetLinkStatusResponse(_message.Message):
    __slots__ = ("topology_version", "down_cables", "overrides")
    TOPOLOGY_VERSION_FIELD_NUMBER: _ClassVar[int]
    DOWN_CABLES_FIELD_NUMBER: _ClassVar[int]
    OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    topology_version: str
    down_cables: _containers.RepeatedScalarFieldContainer[str]
    overrides: _containers.RepeatedCompositeFieldContainer[LinkOverride]
    def __init__(self, topology_version: _Optional[str] = ..., down_cables: _Optional[_Iterable[str]] = ..., overrides: _Optional[_Iterable[_Union[LinkOverride, _Mapping]]] = ...) -> None: ...

class ReloadTopologyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReloadTopologyResponse(_message.Message):
    __slots__ = ("topology_version", "result")
    TOPOLOGY_VERSION_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    topology_version: str
    result: _topology_pb2.ReloadResult
    def __init__(self, topology_version: _Optional[str] = ..., result: _Optional[_Union[_topology_pb2.ReloadResult, _Mapping]] = ...) -> None: ...
