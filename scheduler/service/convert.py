"""Translation between scheduler.v1 messages and engine types; no placement logic lives here."""

from __future__ import annotations

import math
from collections.abc import Iterable

from google.protobuf.timestamp_pb2 import Timestamp

from scheduler.engine.fleet import FleetPlan, PlanRow
from scheduler.engine.place import Decision
from scheduler.engine.request import Batch, DemandCell, Reason, Slo
from scheduler.model.loader import Problem
from scheduler.network import Route
from scheduler.v1 import placement_pb2, topology_pb2, types_pb2

DEFAULT_DATA_CLASS = Batch.__dataclass_fields__["data_class"].default  # "public", as the engine defaults it

# By name, so the engine may renumber; a reason the API does not know yet reads REASON_UNSPECIFIED rather than
# breaking the server (tests/test_service.py fails until the proto gains it).
REASON_TO_PB: dict[Reason, int] = {
    r: types_pb2.Reason.Value(f"REASON_{r.name}") if f"REASON_{r.name}" in types_pb2.Reason.keys()
    else types_pb2.REASON_UNSPECIFIED
    for r in Reason
}


def _opt(msg, name: str) -> float | int | None:
    """proto3 `optional` scalar: None when unset, so the engine applies its own default."""
    return getattr(msg, name) if msg.HasField(name) else None


def hour_of(request) -> int | None:
    return _opt(request, "hour")  # type: ignore[return-value]


def _batch_from_pb_init(b: types_pb2.Batch) -> Batch:
    return Batch(
        region=b.region, model=b.model, input_tokens=b.input_tokens, output_tokens=b.output_tokens,
        requests=b.requests or 1, ttft_ms=_opt(b, "ttft_ms"), e2e_ms=_opt(b, "e2e_ms"),
        data_class=b.data_class or DEFAULT_DATA_CLASS, priority=b.priority, id=b.id,
    )


_BATCH_FIELDS = ("region", "model", "input_tokens", "output_tokens", "requests", "ttft_ms", "e2e_ms", "data_class",
                 "priority", "id")
_new = object.__new__


def _batch_from_pb_direct(b: types_pb2.Batch) -> Batch:
    # The frozen dataclass's __init__ sets each field through object.__setattr__, half the cost of a 10,000-batch
    # PlaceBatch's request decoding; filling the instance dict directly makes the same object (equal, same hash).
    obj = _new(Batch)
    f = obj.__dict__
    f["region"] = b.region
    f["model"] = b.model
    f["input_tokens"] = b.input_tokens
    f["output_tokens"] = b.output_tokens
    f["requests"] = b.requests or 1
    f["ttft_ms"] = b.ttft_ms if b.HasField("ttft_ms") else None
    f["e2e_ms"] = b.e2e_ms if b.HasField("e2e_ms") else None
    f["data_class"] = b.data_class or DEFAULT_DATA_CLASS
    f["priority"] = b.priority
    f["id"] = b.id
    return obj


# Only while Batch stays a plain dataclass of exactly these fields (no __post_init__, no slots); else its __init__.
batch_from_pb = (_batch_from_pb_direct
                 if tuple(Batch.__dataclass_fields__) == _BATCH_FIELDS and not hasattr(Batch, "__post_init__")
                 and "__slots__" not in vars(Batch) else _batch_from_pb_init)


def batch_to_pb(b: Batch) -> types_pb2.Batch:
    return types_pb2.Batch(id=b.id, region=b.region, model=b.model, input_tokens=b.input_tokens,
                           output_tokens=b.output_tokens, requests=b.requests, ttft_ms=b.ttft_ms, e2e_ms=b.e2e_ms,
                           data_class=b.data_class, priority=b.priority)


_CELL_DEFAULTS = DemandCell("", "", 0.0)


def cell_from_pb(c: types_pb2.DemandCell) -> DemandCell:
    return DemandCell(
        region=c.region, model=c.model, tokens_per_s=c.tokens_per_s, data_class=c.data_class or DEFAULT_DATA_CLASS,
        input_tokens=c.input_tokens if c.HasField("input_tokens") else _CELL_DEFAULTS.input_tokens,
        output_tokens=c.output_tokens if c.HasField("output_tokens") else _CELL_DEFAULTS.output_tokens,
        ttft_ms=_opt(c, "ttft_ms"), e2e_ms=_opt(c, "e2e_ms"),
    )


def cell_to_pb(c: DemandCell) -> types_pb2.DemandCell:
    return types_pb2.DemandCell(region=c.region, model=c.model, tokens_per_s=c.tokens_per_s, data_class=c.data_class,
                                input_tokens=c.input_tokens, output_tokens=c.output_tokens, ttft_ms=c.ttft_ms,
                                e2e_ms=c.e2e_ms)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def route_to_pb(r: Route) -> types_pb2.Route:
    return types_pb2.Route(region=r.region, site=r.site, rtt_ms=r.rtt_ms, nodes=r.nodes, links=r.edges,
                           cables=r.cables, transit_cny_per_gb=r.transit_cny_per_gb)


class MessageCache:
    """Route and Slo messages built once and copied into every decision that uses them.

    Decisions share a handful of Route objects (the catalog's, alive as long as its topology version) and SLOs, so
    the server keeps one process-wide cache (`SHARED`): a Place answer copies a ready Route message instead of
    rebuilding its node, link and cable lists every call. Bounded: past `limit` entries a table starts over (a
    reload retires the old version's routes). Safe to share between threads: entries are only ever read once
    stored, and a racing miss builds an equal message."""

    def __init__(self, limit: int = 4096) -> None:
        self._routes: dict[int, tuple[Route, types_pb2.Route]] = {}
        self._slos: dict[tuple[float, float], types_pb2.Slo] = {}
        self._limit = limit

    def route(self, r: Route) -> types_pb2.Route:
        hit = self._routes.get(id(r))
        if hit is None or hit[0] is not r:
            if len(self._routes) >= self._limit:
                self._routes = {}
            hit = (r, route_to_pb(r))
            self._routes[id(r)] = hit
        return hit[1]

    def slo(self, slo: Slo) -> types_pb2.Slo:
        key = (slo.ttft_ms, slo.e2e_ms)
        msg = self._slos.get(key)
        if msg is None:
            if len(self._slos) >= self._limit:
                self._slos = {}
            msg = self._slos[key] = types_pb2.Slo(ttft_ms=_finite(slo.ttft_ms), e2e_ms=_finite(slo.e2e_ms))
        return msg


SHARED = MessageCache()


class RouteTable:
    """The routes of one compact PlaceBatch answer, each listed once in `target` (PlaceBatchResponse.routes);
    decisions name theirs by index."""

    def __init__(self, target, cache: MessageCache = SHARED) -> None:
        self._target = target
        self._cache = cache
        self._index: dict[int, int] = {}
        self._keep: list[Route] = []  # the keys are ids: keep their objects alive while the table is

    def index(self, r: Route) -> int:
        i = self._index.get(id(r))
        if i is None:
            i = self._index[id(r)] = len(self._keep)
            self._keep.append(r)
            self._target.add().CopyFrom(self._cache.route(r))
        return i


def fill_decision(m: types_pb2.Decision, d: Decision, cache: MessageCache = SHARED,
                  routes: RouteTable | None = None) -> types_pb2.Decision:
    """Write `d` into the (empty) message `m` in place, field by field: no Decision built on the side and then
    copied into its parent (a PlaceResponse, or one of a PlaceBatchResponse's decisions). With `routes`, the route
    goes into that table and `m.route_index` names it (a compact answer)."""
    m.batch_id = d.batch.id
    m.placed = d.placed
    m.reason = REASON_TO_PB[d.reason]
    m.message = d.message
    if d.slo:
        m.slo.CopyFrom(cache.slo(d.slo))
    if d.reservation_ids:
        m.reservation_ids.extend(d.reservation_ids)
    if d.placed:
        if d.site is not None:
            m.site = d.site
        if d.pool is not None:
            m.pool = d.pool
        if d.route is not None:
            if routes is None:
                m.route.CopyFrom(cache.route(d.route))
            else:
                m.route_index = routes.index(d.route)
        m.rtt_ms = d.rtt_ms
        m.ttft_ms = d.ttft_ms
        m.e2e_ms = d.e2e_ms
        m.cost_cny = d.cost_cny
        m.energy_kwh = d.kwh
        m.g_co2 = d.g_co2
        m.accelerators = d.load
        m.hold_s = d.hold_s
    if d.alternatives:
        add = m.alternatives.add
        for a in d.alternatives:
            add(site=a.site, pool=a.pool, cost_cny=a.cost_cny, rtt_ms=a.rtt_ms, ttft_ms=a.ttft_ms, e2e_ms=a.e2e_ms)
    if d.rejections:
        add = m.rejections.add
        for r in d.rejections:
            add(site=r.site, reason=REASON_TO_PB[r.reason], detail=r.detail)
    return m


def decision_to_pb(d: Decision) -> types_pb2.Decision:
    return fill_decision(types_pb2.Decision(), d)


def add_decisions(target, decisions: Iterable[Decision], routes: RouteTable | None = None) -> None:
    """Append decisions to a repeated Decision field, built in place (no copy per message); with `routes`, compact
    (each decision's route_index into that table instead of its own copy of the route)."""
    add = target.add
    fill = fill_decision
    cache = SHARED
    for d in decisions:
        fill(add(), d, cache, routes)


def route_of(response: placement_pb2.PlaceBatchResponse, d: types_pb2.Decision) -> types_pb2.Route | None:
    """A decision's route, from a full or a compact PlaceBatch answer alike; None when it has none."""
    if d.HasField("route"):
        return d.route
    if d.HasField("route_index"):
        return response.routes[d.route_index]
    return None


def expand_routes(response: placement_pb2.PlaceBatchResponse) -> placement_pb2.PlaceBatchResponse:
    """Turn a compact PlaceBatch answer into the full form, in place: each decision gets a copy of its route
    (route_index cleared) and the route table is emptied. A full answer is returned as it is."""
    if not response.routes:
        return response
    routes = response.routes
    for d in response.decisions:
        if d.HasField("route_index"):
            d.route.CopyFrom(routes[d.route_index])
            d.ClearField("route_index")
    response.ClearField("routes")
    return response


def plan_row_to_pb(row: PlanRow) -> types_pb2.PlanRow:
    return types_pb2.PlanRow(
        cell=cell_to_pb(row.cell), unserved_tokens_per_s=row.unserved_tokens_per_s, reason=REASON_TO_PB[row.reason],
        shares=[types_pb2.Share(site=s.site, pool=s.pool, fraction=s.fraction, tokens_per_s=s.tokens_per_s,
                                cny_per_mtok=s.cny_per_mtok, rtt_ms=s.rtt_ms, ttft_ms=s.ttft_ms, cables=s.cables)
                for s in row.shares],
    )


def plan_to_pb(p: FleetPlan) -> placement_pb2.GetPlanResponse:
    return placement_pb2.GetPlanResponse(
        topology_version=p.topology_version, hour=p.hour, policy=p.policy, status=p.status,
        rows=[plan_row_to_pb(r) for r in p.rows], cost_cny_per_hour=p.cost_cny_per_hour,
        pool_utilization=p.pool_utilization, cable_load_gbps=p.cable_load_gbps,
        served_tokens_per_s=p.served_tokens_per_s, unserved_tokens_per_s=p.unserved_tokens_per_s,
        solve_seconds=p.seconds,
    )


def timestamp(unix_s: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(unix_s * 1e9))
    return ts


def problem_to_pb(p: Problem) -> topology_pb2.LoadProblem:
    return topology_pb2.LoadProblem(file=p.file, line=p.line, field=p.field, message=p.message, text=str(p))
