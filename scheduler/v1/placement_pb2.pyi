from scheduler.v1 import types_pb2 as _types_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class PlaceRequest(_message.Message):
    __slots__ = ("batch", "hour", "dry_run")
    BATCH_FIELD_NUMBER: _ClassVar[int]
    HOUR_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    batch: _types_pb2.Batch
    hour: int
    dry_run: bool
    def __init__(self, batch: _Optional[_Union[_types_pb2.Batch, _Mapping]] = ..., hour: _Optional[int] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class PlaceResponse(_message.Message):
    __slots__ = ("topology_version", "hour", "decision")
    TOPOLOGY_VERSION_FIELD_NUMBER: _ClassVar[int]
    HOUR_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    topology_version: str
    hour: int
    decision: _types_pb2.Decision
    def __init__(self, topology_version: _Optional[str] = ..., hour: _Optional[int] = ..., decision: _Optional[_Union[_types_pb2.Decision, _Mapping]] = ...) -> None: ...

class PlaceBatchRequest(_message.Message):
    __slots__ = ("batches", "hour", "dry_run", "time_limit_ms", "compact")
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    HOUR_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    TIME_LIMIT_MS_FIELD_NUMBER: _ClassVar[int]
    COMPACT_FIELD_NUMBER: _ClassVar[int]
    batches: _containers.RepeatedCompositeFieldContainer[_types_pb2.Batch]
    hour: int
    dry_run: bool
    time_limit_ms: int
    compact: bool
    def __init__(self, batches: _Optional[_Iterable[_Union[_types_pb2.Batch, _Mapping]]] = ..., hour: _Optional[int] = ..., dry_run: _Optional[bool] = ..., time_limit_ms: _Optional[int] = ..., compact: _Optional[bool] = ...) -> None: ...

class PlaceBatchResponse(_message.Message):
    __slots__ = ("topology_version", "hour", "decisions", "placed", "solver_status", "method", "cost_cny", "gap", "solve_seconds", "routes", "columns")
    TOPOLOGY_VERSION_FIELD_NUMBER: _ClassVar[int]
    HOUR_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    PLACED_FIELD_NUMBER: _ClassVar[int]
    SOLVER_STATUS_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    COST_CNY_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    SOLVE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    topology_version: str
    hour: int
    decisions: _containers.RepeatedCompositeFieldContainer[_types_pb2.Decision]
    placed: int
    solver_status: str
    method: str
    cost_cny: float
    gap: float
    solve_seconds: float
    routes: _containers.RepeatedCompositeFieldContainer[_types_pb2.Route]
    columns: _types_pb2.DecisionColumns
    def __init__(self, topology_version: _Optional[str] = ..., hour: _Optional[int] = ..., decisions: _Optional[_Iterable[_Union[_types_pb2.Decision, _Mapping]]] = ..., placed: _Optional[int] = ..., solver_status: _Optional[str] = ..., method: _Optional[str] = ..., cost_cny: _Optional[float] = ..., gap: _Optional[float] = ..., solve_seconds: _Optional[float] = ..., routes: _Optional[_Iterable[_Union[_types_pb2.Route, _Mapping]]] = ..., columns: _Optional[_Union[_types_pb2.DecisionColumns, _Mapping]] = ...) -> None: ...

class GetPlanRequest(_message.Message):
    __slots__ = ("demand", "hour", "policy", "use_ledger")
    DEMAND_FIELD_NUMBER: _ClassVar[int]
    HOUR_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    USE_LEDGER_FIELD_NUMBER: _ClassVar[int]
    demand: _containers.RepeatedCompositeFieldContainer[_types_pb2.DemandCell]
    hour: int
    policy: str
    use_ledger: bool
    def __init__(self, demand: _Optional[_Iterable[_Union[_types_pb2.DemandCell, _Mapping]]] = ..., hour: _Optional[int] = ..., policy: _Optional[str] = ..., use_ledger: _Optional[bool] = ...) -> None: ...

class GetPlanResponse(_message.Message):
    __slots__ = ("topology_version", "hour", "policy", "status", "rows", "cost_cny_per_hour", "pool_utilization", "cable_load_gbps", "served_tokens_per_s", "unserved_tokens_per_s", "solve_seconds", "objective_cny_per_hour", "bound_cny_per_hour", "gap")
    class PoolUtilizationEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class CableLoadGbpsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TOPOLOGY_VERSION_FIELD_NUMBER: _ClassVar[int]
    HOUR_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COST_CNY_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    POOL_UTILIZATION_FIELD_NUMBER: _ClassVar[int]
    CABLE_LOAD_GBPS_FIELD_NUMBER: _ClassVar[int]
    SERVED_TOKENS_PER_S_FIELD_NUMBER: _ClassVar[int]
    UNSERVED_TOKENS_PER_S_FIELD_NUMBER: _ClassVar[int]
    SOLVE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_CNY_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    BOUND_CNY_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    topology_version: str
    hour: int
    policy: str
    status: str
    rows: _containers.RepeatedCompositeFieldContainer[_types_pb2.PlanRow]
    cost_cny_per_hour: float
    pool_utilization: _containers.ScalarMap[str, float]
    cable_load_gbps: _containers.ScalarMap[str, float]
    served_tokens_per_s: float
    unserved_tokens_per_s: float
    solve_seconds: float
    objective_cny_per_hour: float
    bound_cny_per_hour: float
    gap: float
    def __init__(self, topology_version: _Optional[str] = ..., hour: _Optional[int] = ..., policy: _Optional[str] = ..., status: _Optional[str] = ..., rows: _Optional[_Iterable[_Union[_types_pb2.PlanRow, _Mapping]]] = ..., cost_cny_per_hour: _Optional[float] = ..., pool_utilization: _Optional[_Mapping[str, float]] = ..., cable_load_gbps: _Optional[_Mapping[str, float]] = ..., served_tokens_per_s: _Optional[float] = ..., unserved_tokens_per_s: _Optional[float] = ..., solve_seconds: _Optional[float] = ..., objective_cny_per_hour: _Optional[float] = ..., bound_cny_per_hour: _Optional[float] = ..., gap: _Optional[float] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("reservation_ids",)
    RESERVATION_IDS_FIELD_NUMBER: _ClassVar[int]
    reservation_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, reservation_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ("topology_version", "released")
    TOPOLOGY_VERSION_FIELD_NUMBER: _ClassVar[int]
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    topology_version: str
    released: int
    def __init__(self, topology_version: _Optional[str] = ..., released: _Optional[int] = ...) -> None: ...
