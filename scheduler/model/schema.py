"""Pydantic schema of a topology file: what an operator may write, and every check that needs no graph.

Unknown keys are refused (``extra="forbid"``) so a typo never silently turns into a default.
Cross-reference checks live in ``Topology``'s model validator and report the path of the offending
field, so the loader can turn them into ``FILE:LINE: field.path: message``.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import networkx as nx

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from scheduler.queueing import DEFAULT_PERCENTILE, PERCENTILES

Id = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$", min_length=1, max_length=64)]
Hour = Annotated[int, Field(ge=0, le=24)]
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]


def _known_percentile(value: float) -> float:
    if value not in PERCENTILES:
        raise PydanticCustomError("percentile", "must be one of {allowed}, got {value}",
                                  {"allowed": ", ".join(f"{p:g}" for p in PERCENTILES), "value": value})
    return value


# An SLO's percentile: a number (a quoted '95' is refused, as in a request), one of PERCENTILES.
Percentile = Annotated[float, Field(strict=True), AfterValidator(_known_percentile)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Status(str, Enum):
    up = "up"
    down = "down"
    planned = "planned"  # exists in the file for what-if scenarios, carries no traffic until brought up


class Accelerator(Strict):
    """An accelerator type; power and amortization are per device."""

    id: Id
    name: str = ""
    watts: Positive
    cny_per_hour: NonNegative = Field(description="capital amortization + maintenance per device-hour")


class Throughput(Strict):
    """Aggregate tokens/s one accelerator of a type sustains for a model at a moderate batch size."""

    prefill_tokens_per_s: Positive
    decode_tokens_per_s: Positive


class LLM(Strict):
    """A class of served model. Throughput is per accelerator type, overridable per site pool."""

    id: Id
    name: str = ""
    throughput: dict[Id, Throughput] = Field(min_length=1, description="accelerator id -> throughput")
    stream_tokens_per_s: Positive = Field(40.0, description="decode speed one request sees")
    prefill_parallelism: Annotated[int, Field(ge=1, le=64)] = Field(
        8, description="accelerators one request's prefill is spread over (one server)"
    )
    joules_per_token: Positive | None = Field(
        None, description="measured energy per output-equivalent token; derived from watts if absent"
    )


class PriceBand(Strict):
    """A time-of-use band [start, end) in local hours; bands may wrap midnight (start > end)."""

    start: Hour
    end: Hour
    cny_per_kwh: NonNegative


class Tariff(Strict):
    """Electricity for large data centers in one province: a flat price with optional time-of-use bands."""

    id: Id
    name: str = ""
    cny_per_kwh: NonNegative
    bands: list[PriceBand] = []
    carbon_g_per_kwh: Annotated[float, Field(ge=0, le=1500)]
    green_share: Annotated[float, Field(ge=0, le=1)] = 0.0


class Pool(Strict):
    """A set of identical accelerators at a site."""

    accelerator: Id
    count: Annotated[int, Field(ge=1)]
    models: list[Id] | None = Field(None, description="models served; default: all with throughput for it")
    throughput: dict[Id, Throughput] = Field({}, description="model id -> site-specific throughput")


class Site(Strict):
    id: Id
    name: str
    province: str
    hub: str = ""
    cluster: str = ""
    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]
    pue: Annotated[float, Field(ge=1.0, le=3.0)]
    tariff: Id
    carbon_g_per_kwh: Annotated[float, Field(ge=0, le=1500)] | None = Field(
        None, description="overrides the tariff's grid figure, e.g. for contracted green power"
    )
    green_share: Annotated[float, Field(ge=0, le=1)] | None = None
    tags: list[Id] = []
    status: Status = Status.up
    pools: list[Pool] = Field(min_length=1)


class NodeKind(str, Enum):
    pop = "pop"  # backbone point of presence
    landing = "landing"  # cable landing station


class Node(Strict):
    id: Id
    kind: NodeKind
    name: str = ""
    country: Annotated[str, Field(min_length=2, max_length=2)]
    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]


class Slo(Strict):
    """A region's default latency bounds, met by `percentile` % of requests (p95 unless stated)."""

    ttft_ms: Positive | None = None
    e2e_ms: Positive | None = None
    percentile: Percentile = DEFAULT_PERCENTILE

    @model_validator(mode="after")
    def _some_bound(self) -> Slo:
        if self.ttft_ms is None and self.e2e_ms is None:
            raise PydanticCustomError("slo", "give ttft_ms, e2e_ms or both")
        return self


class Region(Strict):
    """Where users are: a Southeast Asian metro, itself a node of the network."""

    id: Id
    name: str
    country: Annotated[str, Field(min_length=2, max_length=2)]
    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]
    utc_offset_hours: Annotated[float, Field(ge=-12, le=14)] = 8.0
    slo: Slo


class LinkBase(Strict):
    length_km: Positive
    latency_ms: Positive | None = Field(None, description="measured one-way latency; overrides length")
    capacity_gbps: Positive | None = Field(None, description="bandwidth the scheduler may use; None = unbounded")
    transit_cny_per_gb: NonNegative = 0.0
    status: Status = Status.up


class Link(LinkBase):
    """A terrestrial fiber route between two nodes."""

    a: Id
    b: Id


class Segment(Strict):
    a: Id
    b: Id
    length_km: Positive
    latency_ms: Positive | None = None
    status: Status = Status.up


class Cable(Strict):
    """A submarine cable: named segments that fail together when the cable is cut."""

    id: Id
    name: str
    capacity_gbps: Positive | None = None
    transit_cny_per_gb: NonNegative = 0.0
    status: Status = Status.up
    segments: list[Segment] = Field(min_length=1)


class DataClass(Strict):
    """Which sites may process a class of data: a site qualifies if it has any of the tags (none = all)."""

    id: Id
    name: str = ""
    allowed_tags: list[Id] = []


class Settings(Strict):
    bytes_per_token: Positive = Field(50.0, description="wire bytes per token, streaming overhead included")
    fiber_ms_per_km: Positive = Field(0.005, description="one-way propagation in fiber")
    max_utilization: Annotated[float, Field(gt=0, le=1)] = 0.9


def _loc(*parts: str | int) -> tuple[str | int, ...]:
    return tuple(parts)


class Topology(Strict):
    name: str
    description: str = ""
    settings: Settings = Settings()
    accelerators: list[Accelerator] = Field(min_length=1)
    models: list[LLM] = Field(min_length=1)
    tariffs: list[Tariff] = Field(min_length=1)
    data_classes: list[DataClass] = Field(min_length=1)
    sites: list[Site] = Field(min_length=1)
    nodes: list[Node] = []
    regions: list[Region] = Field(min_length=1)
    links: list[Link] = []
    cables: list[Cable] = []

    @model_validator(mode="after")
    def _cross_references(self) -> Topology:
        errors: list[InitErrorDetails] = []

        def err(loc: tuple[str | int, ...], msg: str) -> None:
            errors.append(
                InitErrorDetails(type=PydanticCustomError("reference", msg), loc=loc, input=None)  # type: ignore[arg-type]
            )

        def unique(items: list, field: str, namespace: dict[str, tuple]) -> None:
            for i, item in enumerate(items):
                if item.id in namespace:
                    err(_loc(field, i, "id"), f"duplicate id {item.id!r} (first defined at {namespace[item.id][0]}[{namespace[item.id][1]}])")
                else:
                    namespace[item.id] = (field, i)

        unique(self.accelerators, "accelerators", accels := {})
        unique(self.models, "models", models := {})
        unique(self.tariffs, "tariffs", tariffs := {})
        unique(self.data_classes, "data_classes", {})
        unique(self.cables, "cables", {})
        nodes: dict[str, tuple] = {}
        for field in ("sites", "nodes", "regions"):
            unique(getattr(self, field), field, nodes)

        for i, m in enumerate(self.models):
            for acc in m.throughput:
                if acc not in accels:
                    err(_loc("models", i, "throughput", acc), f"unknown accelerator {acc!r}")
        for i, s in enumerate(self.sites):
            if s.tariff not in tariffs:
                err(_loc("sites", i, "tariff"), f"unknown tariff {s.tariff!r}")
            for j, p in enumerate(s.pools):
                if p.accelerator not in accels:
                    err(_loc("sites", i, "pools", j, "accelerator"), f"unknown accelerator {p.accelerator!r}")
                for k, mid in enumerate(p.models or []):
                    if mid not in models:
                        err(_loc("sites", i, "pools", j, "models", k), f"unknown model {mid!r}")
                    elif p.accelerator not in self.models[models[mid][1]].throughput and mid not in p.throughput:
                        err(
                            _loc("sites", i, "pools", j, "models", k),
                            f"model {mid!r} has no throughput for accelerator {p.accelerator!r}; add it under throughput",
                        )
                for mid in p.throughput:
                    if mid not in models:
                        err(_loc("sites", i, "pools", j, "throughput", mid), f"unknown model {mid!r}")
        for i, link in enumerate(self.links):
            for end in ("a", "b"):
                if getattr(link, end) not in nodes:
                    err(_loc("links", i, end), f"unknown node {getattr(link, end)!r}")
            if link.a == link.b:
                err(_loc("links", i, "b"), "a link must join two different nodes")
        for i, cable in enumerate(self.cables):
            for j, seg in enumerate(cable.segments):
                for end in ("a", "b"):
                    if getattr(seg, end) not in nodes:
                        err(_loc("cables", i, "segments", j, end), f"unknown node {getattr(seg, end)!r}")
                if seg.a == seg.b:
                    err(_loc("cables", i, "segments", j, "b"), "a segment must join two different nodes")
        for i, tariff in enumerate(self.tariffs):
            for j, band in enumerate(tariff.bands):
                if band.start == band.end:
                    err(_loc("tariffs", i, "bands", j, "end"), "an empty band: start equals end")
        if not errors:
            self._check_reachability(err)
        if errors:
            raise ValidationError.from_exception_data("Topology", errors)
        return self

    def _check_reachability(self, err) -> None:
        """Every region must reach an up site over up links, or no request from it can ever be placed."""
        graph = nx.Graph()
        graph.add_nodes_from(n.id for n in (*self.sites, *self.nodes, *self.regions))
        graph.add_edges_from((link.a, link.b) for link in self.links if link.status is Status.up)
        for cable in self.cables:
            if cable.status is Status.up:
                graph.add_edges_from((s.a, s.b) for s in cable.segments if s.status is Status.up)
        up_sites = {s.id for s in self.sites if s.status is Status.up}
        for i, region in enumerate(self.regions):
            if not up_sites & nx.node_connected_component(graph, region.id):
                err(_loc("regions", i, "id"), f"region {region.id!r} reaches no up site over up links")

    # Lookups used everywhere below the schema; cheap enough to rebuild on demand.
    def site(self, site_id: str) -> Site:
        return next(s for s in self.sites if s.id == site_id)

    def region(self, region_id: str) -> Region:
        return next(r for r in self.regions if r.id == region_id)

