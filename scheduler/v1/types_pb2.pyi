from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Reason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REASON_UNSPECIFIED: _ClassVar[Reason]
    REASON_OK: _ClassVar[Reason]
    REASON_NOT_SERVED: _ClassVar[Reason]
    REASON_SITE_DOWN: _ClassVar[Reason]
    REASON_UNREACHABLE: _ClassVar[Reason]
    REASON_DATA_CLASS: _ClassVar[Reason]
    REASON_TTFT: _ClassVar[Reason]
    REASON_E2E: _ClassVar[Reason]
    REASON_CAPACITY: _ClassVar[Reason]
    REASON_CABLE: _ClassVar[Reason]
    REASON_SOLVER_FAILED: _ClassVar[Reason]
REASON_UNSPECIFIED: Reason
REASON_OK: Reason
REASON_NOT_SERVED: Reason
REASON_SITE_DOWN: Reason
REASON_UNREACHABLE: Reason
REASON_DATA_CLASS: Reason
REASON_TTFT: Reason
REASON_E2E: Reason
REASON_CAPACITY: Reason
REASON_CABLE: Reason
REASON_SOLVER_FAILED: Reason

class Batch(_message.Message):
    __slots__ = ("id", "region", "model", "input_tokens", "output_tokens", "requests", "ttft_ms", "e2e_ms", "data_class", "priority", "percentile")
    ID_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    TTFT_MS_FIELD_NUMBER: _ClassVar[int]
    E2E_MS_FIELD_NUMBER: _ClassVar[int]
    DATA_CLASS_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    PERCENTILE_FIELD_NUMBER: _ClassVar[int]
    id: str
    region: str
    model: str
    input_tokens: int
    output_tokens: int
    requests: int
    ttft_ms: float
    e2e_ms: float
    data_class: str
    priority: int
    percentile: float
    def __init__(self, id: _Optional[str] = ..., region: _Optional[str] = ..., model: _Optional[str] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., requests: _Optional[int] = ..., ttft_ms: _Optional[float] = ..., e2e_ms: _Optional[float] = ..., data_class: _Optional[str] = ..., priority: _Optional[int] = ..., percentile: _Optional[float] = ...) -> None: ...

class Slo(_message.Message):
    __slots__ = ("ttft_ms", "e2e_ms", "percentile")
    TTFT_MS_FIELD_NUMBER: _ClassVar[int]
    E2E_MS_FIELD_NUMBER: _ClassVar[int]
    PERCENTILE_FIELD_NUMBER: _ClassVar[int]
    ttft_ms: float
    e2e_ms: float
    percentile: float
    def __init__(self, ttft_ms: _Optional[float] = ..., e2e_ms: _Optional[float] = ..., percentile: _Optional[float] = ...) -> None: ...

class Route(_message.Message):
    __slots__ = ("region", "site", "rtt_ms", "nodes", "links", "cables", "transit_cny_per_gb")
    REGION_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    RTT_MS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    CABLES_FIELD_NUMBER: _ClassVar[int]
    TRANSIT_CNY_PER_GB_FIELD_NUMBER: _ClassVar[int]
    region: str
    site: str
    rtt_ms: float
    nodes: _containers.RepeatedScalarFieldContainer[str]
    links: _containers.RepeatedScalarFieldContainer[str]
    cables: _containers.RepeatedScalarFieldContainer[str]
    transit_cny_per_gb: float
    def __init__(self, region: _Optional[str] = ..., site: _Optional[str] = ..., rtt_ms: _Optional[float] = ..., nodes: _Optional[_Iterable[str]] = ..., links: _Optional[_Iterable[str]] = ..., cables: _Optional[_Iterable[str]] = ..., transit_cny_per_gb: _Optional[float] = ...) -> None: ...

class Alternative(_message.Message):
    __slots__ = ("site", "pool", "cost_cny", "rtt_ms", "ttft_ms", "e2e_ms")
    SITE_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    COST_CNY_FIELD_NUMBER: _ClassVar[int]
    RTT_MS_FIELD_NUMBER: _ClassVar[int]
    TTFT_MS_FIELD_NUMBER: _ClassVar[int]
    E2E_MS_FIELD_NUMBER: _ClassVar[int]
    site: str
    pool: str
    cost_cny: float
    rtt_ms: float
    ttft_ms: float
    e2e_ms: float
    def __init__(self, site: _Optional[str] = ..., pool: _Optional[str] = ..., cost_cny: _Optional[float] = ..., rtt_ms: _Optional[float] = ..., ttft_ms: _Optional[float] = ..., e2e_ms: _Optional[float] = ...) -> None: ...

class Rejection(_message.Message):
    __slots__ = ("site", "reason", "detail")
    SITE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    site: str
    reason: Reason
    detail: str
    def __init__(self, site: _Optional[str] = ..., reason: _Optional[_Union[Reason, str]] = ..., detail: _Optional[str] = ...) -> None: ...

class Decision(_message.Message):
    __slots__ = ("batch_id", "placed", "reason", "message", "site", "pool", "route", "rtt_ms", "ttft_ms", "e2e_ms", "cost_cny", "energy_kwh", "g_co2", "accelerators", "hold_s", "slo", "alternatives", "rejections", "reservation_ids", "ttft_mean_ms")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    PLACED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    RTT_MS_FIELD_NUMBER: _ClassVar[int]
    TTFT_MS_FIELD_NUMBER: _ClassVar[int]
    E2E_MS_FIELD_NUMBER: _ClassVar[int]
    COST_CNY_FIELD_NUMBER: _ClassVar[int]
    ENERGY_KWH_FIELD_NUMBER: _ClassVar[int]
    G_CO2_FIELD_NUMBER: _ClassVar[int]
    ACCELERATORS_FIELD_NUMBER: _ClassVar[int]
    HOLD_S_FIELD_NUMBER: _ClassVar[int]
    SLO_FIELD_NUMBER: _ClassVar[int]
    ALTERNATIVES_FIELD_NUMBER: _ClassVar[int]
    REJECTIONS_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_IDS_FIELD_NUMBER: _ClassVar[int]
    TTFT_MEAN_MS_FIELD_NUMBER: _ClassVar[int]
    batch_id: str
    placed: bool
    reason: Reason
    message: str
    site: str
    pool: str
    route: Route
    rtt_ms: float
    ttft_ms: float
    e2e_ms: float
    cost_cny: float
    energy_kwh: float
    g_co2: float
    accelerators: float
    hold_s: float
    slo: Slo
    alternatives: _containers.RepeatedCompositeFieldContainer[Alternative]
    rejections: _containers.RepeatedCompositeFieldContainer[Rejection]
    reservation_ids: _containers.RepeatedScalarFieldContainer[int]
    ttft_mean_ms: float
    def __init__(self, batch_id: _Optional[str] = ..., placed: _Optional[bool] = ..., reason: _Optional[_Union[Reason, str]] = ..., message: _Optional[str] = ..., site: _Optional[str] = ..., pool: _Optional[str] = ..., route: _Optional[_Union[Route, _Mapping]] = ..., rtt_ms: _Optional[float] = ..., ttft_ms: _Optional[float] = ..., e2e_ms: _Optional[float] = ..., cost_cny: _Optional[float] = ..., energy_kwh: _Optional[float] = ..., g_co2: _Optional[float] = ..., accelerators: _Optional[float] = ..., hold_s: _Optional[float] = ..., slo: _Optional[_Union[Slo, _Mapping]] = ..., alternatives: _Optional[_Iterable[_Union[Alternative, _Mapping]]] = ..., rejections: _Optional[_Iterable[_Union[Rejection, _Mapping]]] = ..., reservation_ids: _Optional[_Iterable[int]] = ..., ttft_mean_ms: _Optional[float] = ...) -> None: ...

class DecisionColumns(_message.Message):
    __slots__ = ("batch_id", "placed", "reason", "message", "site", "pool", "route", "rtt_ms", "ttft_ms", "e2e_ms", "cost_cny", "energy_kwh", "g_co2", "accelerators", "hold_s", "slo", "reservation_count", "reservation_ids", "messages", "sites", "pools", "slos", "ttft_mean_ms")
    BATCH_ID_FIELD_NUMBER: _ClassVar[int]
    PLACED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    RTT_MS_FIELD_NUMBER: _ClassVar[int]
    TTFT_MS_FIELD_NUMBER: _ClassVar[int]
    E2E_MS_FIELD_NUMBER: _ClassVar[int]
    COST_CNY_FIELD_NUMBER: _ClassVar[int]
    ENERGY_KWH_FIELD_NUMBER: _ClassVar[int]
    G_CO2_FIELD_NUMBER: _ClassVar[int]
    ACCELERATORS_FIELD_NUMBER: _ClassVar[int]
    HOLD_S_FIELD_NUMBER: _ClassVar[int]
    SLO_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_COUNT_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_IDS_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    SITES_FIELD_NUMBER: _ClassVar[int]
    POOLS_FIELD_NUMBER: _ClassVar[int]
    SLOS_FIELD_NUMBER: _ClassVar[int]
    TTFT_MEAN_MS_FIELD_NUMBER: _ClassVar[int]
    batch_id: _containers.RepeatedScalarFieldContainer[str]
    placed: _containers.RepeatedScalarFieldContainer[bool]
    reason: _containers.RepeatedScalarFieldContainer[Reason]
    message: _containers.RepeatedScalarFieldContainer[int]
    site: _containers.RepeatedScalarFieldContainer[int]
    pool: _containers.RepeatedScalarFieldContainer[int]
    route: _containers.RepeatedScalarFieldContainer[int]
    rtt_ms: _containers.RepeatedScalarFieldContainer[float]
    ttft_ms: _containers.RepeatedScalarFieldContainer[float]
    e2e_ms: _containers.RepeatedScalarFieldContainer[float]
    cost_cny: _containers.RepeatedScalarFieldContainer[float]
    energy_kwh: _containers.RepeatedScalarFieldContainer[float]
    g_co2: _containers.RepeatedScalarFieldContainer[float]
    accelerators: _containers.RepeatedScalarFieldContainer[float]
    hold_s: _containers.RepeatedScalarFieldContainer[float]
    slo: _containers.RepeatedScalarFieldContainer[int]
    reservation_count: _containers.RepeatedScalarFieldContainer[int]
    reservation_ids: _containers.RepeatedScalarFieldContainer[int]
    messages: _containers.RepeatedScalarFieldContainer[str]
    sites: _containers.RepeatedScalarFieldContainer[str]
    pools: _containers.RepeatedScalarFieldContainer[str]
    slos: _containers.RepeatedCompositeFieldContainer[Slo]
    ttft_mean_ms: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, batch_id: _Optional[_Iterable[str]] = ..., placed: _Optional[_Iterable[bool]] = ..., reason: _Optional[_Iterable[_Union[Reason, str]]] = ..., message: _Optional[_Iterable[int]] = ..., site: _Optional[_Iterable[int]] = ..., pool: _Optional[_Iterable[int]] = ..., route: _Optional[_Iterable[int]] = ..., rtt_ms: _Optional[_Iterable[float]] = ..., ttft_ms: _Optional[_Iterable[float]] = ..., e2e_ms: _Optional[_Iterable[float]] = ..., cost_cny: _Optional[_Iterable[float]] = ..., energy_kwh: _Optional[_Iterable[float]] = ..., g_co2: _Optional[_Iterable[float]] = ..., accelerators: _Optional[_Iterable[float]] = ..., hold_s: _Optional[_Iterable[float]] = ..., slo: _Optional[_Iterable[int]] = ..., reservation_count: _Optional[_Iterable[int]] = ..., reservation_ids: _Optional[_Iterable[int]] = ..., messages: _Optional[_Iterable[str]] = ..., sites: _Optional[_Iterable[str]] = ..., pools: _Optional[_Iterable[str]] = ..., slos: _Optional[_Iterable[_Union[Slo, _Mapping]]] = ..., ttft_mean_ms: _Optional[_Iterable[float]] = ...) -> None: ...

class DemandCell(_message.Message):
    __slots__ = ("region", "model", "tokens_per_s", "data_class", "input_tokens", "output_tokens", "ttft_ms", "e2e_ms", "percentile")
    REGION_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_S_FIELD_NUMBER: _ClassVar[int]
    DATA_CLASS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TTFT_MS_FIELD_NUMBER: _ClassVar[int]
    E2E_MS_FIELD_NUMBER: _ClassVar[int]
    PERCENTILE_FIELD_NUMBER: _ClassVar[int]
    region: str
    model: str
    tokens_per_s: float
    data_class: str
    input_tokens: int
    output_tokens: int
    ttft_ms: float
    e2e_ms: float
    percentile: float
    def __init__(self, region: _Optional[str] = ..., model: _Optional[str] = ..., tokens_per_s: _Optional[float] = ..., data_class: _Optional[str] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., ttft_ms: _Optional[float] = ..., e2e_ms: _Optional[float] = ..., percentile: _Optional[float] = ...) -> None: ...

class Share(_message.Message):
    __slots__ = ("site", "pool", "fraction", "tokens_per_s", "cny_per_mtok", "rtt_ms", "ttft_ms", "cables", "e2e_ms", "kwh_per_hour", "g_co2_per_hour", "green_share", "ttft_mean_ms", "within_slo")
    SITE_FIELD_NUMBER: _ClassVar[int]
    POOL_FIELD_NUMBER: _ClassVar[int]
    FRACTION_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_S_FIELD_NUMBER: _ClassVar[int]
    CNY_PER_MTOK_FIELD_NUMBER: _ClassVar[int]
    RTT_MS_FIELD_NUMBER: _ClassVar[int]
    TTFT_MS_FIELD_NUMBER: _ClassVar[int]
    CABLES_FIELD_NUMBER: _ClassVar[int]
    E2E_MS_FIELD_NUMBER: _ClassVar[int]
    KWH_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    G_CO2_PER_HOUR_FIELD_NUMBER: _ClassVar[int]
    GREEN_SHARE_FIELD_NUMBER: _ClassVar[int]
    TTFT_MEAN_MS_FIELD_NUMBER: _ClassVar[int]
    WITHIN_SLO_FIELD_NUMBER: _ClassVar[int]
    site: str
    pool: str
    fraction: float
    tokens_per_s: float
    cny_per_mtok: float
    rtt_ms: float
    ttft_ms: float
    cables: _containers.RepeatedScalarFieldContainer[str]
    e2e_ms: float
    kwh_per_hour: float
    g_co2_per_hour: float
    green_share: float
    ttft_mean_ms: float
    within_slo: float
    def __init__(self, site: _Optional[str] = ..., pool: _Optional[str] = ..., fraction: _Optional[float] = ..., tokens_per_s: _Optional[float] = ..., cny_per_mtok: _Optional[float] = ..., rtt_ms: _Optional[float] = ..., ttft_ms: _Optional[float] = ..., cables: _Optional[_Iterable[str]] = ..., e2e_ms: _Optional[float] = ..., kwh_per_hour: _Optional[float] = ..., g_co2_per_hour: _Optional[float] = ..., green_share: _Optional[float] = ..., ttft_mean_ms: _Optional[float] = ..., within_slo: _Optional[float] = ...) -> None: ...

class PlanRow(_message.Message):
    __slots__ = ("cell", "shares", "unserved_tokens_per_s", "reason")
    CELL_FIELD_NUMBER: _ClassVar[int]
    SHARES_FIELD_NUMBER: _ClassVar[int]
    UNSERVED_TOKENS_PER_S_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    cell: DemandCell
    shares: _containers.RepeatedCompositeFieldContainer[Share]
    unserved_tokens_per_s: float
    reason: Reason
    def __init__(self, cell: _Optional[_Union[DemandCell, _Mapping]] = ..., shares: _Optional[_Iterable[_Union[Share, _Mapping]]] = ..., unserved_tokens_per_s: _Optional[float] = ..., reason: _Optional[_Union[Reason, str]] = ...) -> None: ...
