import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from scheduler.v1 import topology_pb2 as _topology_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Hold(_message.Message):
    __slots__ = ("id", "pool", "amount", "expires_at", "owner", "replica", "ceiling")
    ID_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    CEILING_FIELD_NUMBER: _ClassVar[int]
    id: int
    pool: str
    amount: float
    expires_at: _timestamp_pb2.Timestamp
    owner: str
    replica: str
    ceiling: float
    def __init__(self, id: _Optional[int] = ..., pool: _Optional[str] = ..., amount: _Optional[float] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., owner: _Optional[str] = ..., replica: _Optional[str] = ..., ceiling: _Optional[float] = ...) -> None: ...

class ListHoldsRequest(_message.Message):
    __slots__ = ("owner", "pool", "limit")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    owner: str
    pool: str
    limit: int
    def __init__(self, owner: _Optional[str] = ..., pool: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListHoldsResponse(_message.Message):
    __slots__ = ("topology_version", "holds", "total", "accelerators_by_owner", "amount_by_pool", "unreachable")
    class AcceleratorsByOwnerEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class AmountByPoolEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TOPOLOGY_VERSION_FIELD_NUMBER: _ClassVar[int]
    HOLDS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    ACCELERATORS_BY_OWNER_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_BY_POOL_FIELD_NUMBER: _ClassVar[int]
    UNREACHABLE_FIELD_NUMBER: _ClassVar[int]
    topology_version: str
    holds: _containers.RepeatedCompositeFieldContainer[Hold]
    total: int
    accelerators_by_owner: _containers.ScalarMap[str, float]
    amount_by_pool: _containers.ScalarMap[str, float]
    unreachable: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, topology_version: _Optional[str] = ..., holds: _Optional[_Iterable[_Union[Hold, _Mapping]]] = ..., total: _Optional[int] = ..., accelerators_by_owner: _Optional[_Mapping[str, float]] = ..., amount_by_pool: _Optional[_Mapping[str, float]] = ..., unreachable: _Optional[_Iterable[str]] = ...) -> None: ...

class ReleaseHoldsRequest(_message.Message):
    __slots__ = ("ids", "owner", "pool")
    IDS_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[int]
    owner: str
    pool: str
    def __init__(self, ids: _Optional[_Iterable[int]] = ..., owner: _Optional[str] = ..., pool: _Optional[str] = ...) -> None: ...

class ReleaseHoldsResponse(_message.Message):
    __slots__ = ("topology_version", "released", "unreachable")
    TOPOLOGY_VERSION_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    UNREACHABLE_FIELD_NUMBER: _ClassVar[int]
    topology_version: str
    released: int
    unreachable: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, topology_version: _Optional[str] = ..., released: _Optional[int] = ..., unreachable: _Optional[_Iterable[str]] = ...) -> None: ...

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
