import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetTopologyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PoolInfo(_message.Message):
    __slots__ = ("key", "accelerator", "count", "capacity", "used", "used_here", "share", "ceiling", "ceiling_here")
    KEY_FIELD_NUMBER: _ClassVar[int]
    ACCELERATOR_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    USED_FIELD_NUMBER: _ClassVar[int]
    USED_HERE_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    CEILING_FIELD_NUMBER: _ClassVar[int]
    CEILING_HERE_FIELD_NUMBER: _ClassVar[int]
    key: str
    accelerator: str
    count: int
    capacity: float
    used: float
    used_here: float
    share: float
    ceiling: float
    ceiling_here: float
    def __init__(self, key: _Optional[str] = ..., accelerator: _Optional[str] = ..., count: _Optional[int] = ..., capacity: _Optional[float] = ..., used: _Optional[float] = ..., used_here: _Optional[float] = ..., share: _Optional[float] = ..., ceiling: _Optional[float] = ..., ceiling_here: _Optional[float] = ...) -> None: ...

class SiteInfo(_message.Message):
    __slots__ = ("id", "name", "province", "status", "pools")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PROVINCE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    POOLS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    province: str
    status: str
    pools: _containers.RepeatedCompositeFieldContainer[PoolInfo]
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., province: _Optional[str] = ..., status: _Optional[str] = ..., pools: _Optional[_Iterable[_Union[PoolInfo, _Mapping]]] = ...) -> None: ...

class RegionInfo(_message.Message):
    __slots__ = ("id", "name", "country", "ttft_ms", "e2e_ms", "slo_percentile")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    TTFT_MS_FIELD_NUMBER: _ClassVar[int]
    E2E_MS_FIELD_NUMBER: _ClassVar[int]
    SLO_PERCENTILE_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    country: str
    ttft_ms: float
    e2e_ms: float
    slo_percentile: float
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., country: _Optional[str] = ..., ttft_ms: _Optional[float] = ..., e2e_ms: _Optional[float] = ..., slo_percentile: _Optional[float] = ...) -> None: ...

class CableInfo(_message.Message):
    __slots__ = ("id", "name", "up", "capacity_gbps", "used_gbps")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    UP_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_GBPS_FIELD_NUMBER: _ClassVar[int]
    USED_GBPS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    up: bool
    capacity_gbps: float
    used_gbps: float
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., up: _Optional[bool] = ..., capacity_gbps: _Optional[float] = ..., used_gbps: _Optional[float] = ...) -> None: ...

class TopologyInfo(_message.Message):
    __slots__ = ("version", "path", "name", "description", "loaded_at", "sites", "regions", "models", "data_classes", "cables")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    LOADED_AT_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    REGIONS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    DATA_CLASSES_FIELD_NUMBER: _ClassVar[int]
    CABLES_FIELD_NUMBER: _ClassVar[int]
    version: str
    path: str
    name: str
    description: str
    loaded_at: _timestamp_pb2.Timestamp
    sites: _containers.RepeatedCompositeFieldContainer[SiteInfo]
    regions: _containers.RepeatedCompositeFieldContainer[RegionInfo]
    models: _containers.RepeatedScalarFieldContainer[str]
    data_classes: _containers.RepeatedScalarFieldContainer[str]
    cables: _containers.RepeatedCompositeFieldContainer[CableInfo]
    def __init__(self, version: _Optional[str] = ..., path: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., loaded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., sites: _Optional[_Iterable[_Union[SiteInfo, _Mapping]]] = ..., regions: _Optional[_Iterable[_Union[RegionInfo, _Mapping]]] = ..., models: _Optional[_Iterable[str]] = ..., data_classes: _Optional[_Iterable[str]] = ..., cables: _Optional[_Iterable[_Union[CableInfo, _Mapping]]] = ...) -> None: ...

class LoadProblem(_message.Message):
    __slots__ = ("file", "line", "field", "message", "text")
    FILE_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    file: str
    line: int
    field: str
    message: str
    text: str
    def __init__(self, file: _Optional[str] = ..., line: _Optional[int] = ..., field: _Optional[str] = ..., message: _Optional[str] = ..., text: _Optional[str] = ...) -> None: ...

class ReloadResult(_message.Message):
    __slots__ = ("ok", "path", "version", "errors", "at", "serving_version")
    OK_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    SERVING_VERSION_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    path: str
    version: str
    errors: _containers.RepeatedCompositeFieldContainer[LoadProblem]
    at: _timestamp_pb2.Timestamp
    serving_version: str
    def __init__(self, ok: _Optional[bool] = ..., path: _Optional[str] = ..., version: _Optional[str] = ..., errors: _Optional[_Iterable[_Union[LoadProblem, _Mapping]]] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., serving_version: _Optional[str] = ...) -> None: ...

class GetTopologyResponse(_message.Message):
    __slots__ = ("topology_version", "topology", "last_reload")
    TOPOLOGY_VERSION_FIELD_NUMBER: _ClassVar[int]
    TOPOLOGY_FIELD_NUMBER: _ClassVar[int]
    LAST_RELOAD_FIELD_NUMBER: _ClassVar[int]
    topology_version: str
    topology: TopologyInfo
    last_reload: ReloadResult
    def __init__(self, topology_version: _Optional[str] = ..., topology: _Optional[_Union[TopologyInfo, _Mapping]] = ..., last_reload: _Optional[_Union[ReloadResult, _Mapping]] = ...) -> None: ...

class WatchTopologyRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TopologyEvent(_message.Message):
    __slots__ = ("kind", "topology_version", "reload")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[TopologyEvent.Kind]
        KIND_CURRENT: _ClassVar[TopologyEvent.Kind]
        KIND_APPLIED: _ClassVar[TopologyEvent.Kind]
        KIND_REFUSED: _ClassVar[TopologyEvent.Kind]
    KIND_UNSPECIFIED: TopologyEvent.Kind
    KIND_CURRENT: TopologyEvent.Kind
    KIND_APPLIED: TopologyEvent.Kind
    KIND_REFUSED: TopologyEvent.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    TOPOLOGY_VERSION_FIELD_NUMBER: _ClassVar[int]
    RELOAD_FIELD_NUMBER: _ClassVar[int]
    kind: TopologyEvent.Kind
    topology_version: str
    reload: ReloadResult
    def __init__(self, kind: _Optional[_Union[TopologyEvent.Kind, str]] = ..., topology_version: _Optional[str] = ..., reload: _Optional[_Union[ReloadResult, _Mapping]] = ...) -> None: ...
