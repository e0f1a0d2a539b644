"""Translation between scheduler.v1 messages and engine types; no placement logic lives here."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from operator import attrgetter

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
    decisions name theirs by index (-1: none)."""

    def __init__(self, target, cache: MessageCache = SHARED) -> None:
        self._target = target
        self._cache = cache
        self._index: dict[int, int] = {}
        self._keep: list[Route] = []  # the keys are ids: keep their objects alive while the table is

    def index(self, r: Route | None) -> int:
        if r is None:
            return -1
        i = self._index.get(id(r))
        if i is None:
            i = self._index[id(r)] = len(self._keep)
            self._keep.append(r)
            self._target.add().CopyFrom(self._cache.route(r))
        return i


def fill_decision(m: types_pb2.Decision, d: Decision, cache: MessageCache = SHARED) -> types_pb2.Decision:
    """Write `d` into the (empty) message `m` in place, field by field: no Decision built on the side and then
    copied into its parent (a PlaceResponse, or one of a PlaceBatchResponse's decisions)."""
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
            m.route.CopyFrom(cache.route(d.route))
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


def add_decisions(target, decisions: Iterable[Decision]) -> None:
    """Append decisions to a repeated Decision field, built in place (no copy per message)."""
    add = target.add
    fill = fill_decision
    cache = SHARED
    for d in decisions:
        fill(add(), d, cache)


def columnar(decisions: Sequence[Decision]) -> bool:
    """Whether DecisionColumns can hold these decisions (it has no room for alternatives and rejections)."""
    return not any(d.alternatives or d.rejections for d in decisions)


def _interned(values: Sequence[str], table) -> list[int]:
    index: dict[str, int] = {}
    out = [index.setdefault(v, len(index)) for v in values]
    table.extend(index)
    return out


_ROW = attrgetter("placed", "reason", "message", "site", "pool", "route", "slo", "reservation_ids", "rtt_ms",
                  "ttft_ms", "e2e_ms", "cost_cny", "kwh", "g_co2", "load", "hold_s")
_NUMBERS = ("rtt_ms", "ttft_ms", "e2e_ms", "cost_cny", "energy_kwh", "g_co2", "accelerators", "hold_s")
_BATCH_ID = attrgetter("batch.id")


def fill_columns(cols: types_pb2.DecisionColumns, routes, decisions: Sequence[Decision],
                 cache: MessageCache = SHARED) -> None:
    """Write decisions (which `columnar` accepts) into the empty `cols` and their routes into `routes`
    (PlaceBatchResponse.routes): the fields read a decision at a time in C (attrgetter), then handed to the
    message a column at a time."""
    (placed, reason, message, site, pool, route, slo, held, *numbers) = zip(*map(_ROW, decisions))
    everywhere = all(placed)

    def when_placed(column: tuple, empty):
        return column if everywhere else [x if p else empty for x, p in zip(column, placed)]

    cols.batch_id.extend(list(map(_BATCH_ID, decisions)))
    cols.placed.extend(placed)
    to_pb = REASON_TO_PB
    cols.reason.extend([to_pb[r] for r in reason])
    cols.message.extend(_interned(message, cols.messages))
    cols.site.extend(_interned(when_placed(site, ""), cols.sites))
    cols.pool.extend(_interned(when_placed(pool, ""), cols.pools))
    table = RouteTable(routes, cache)
    cols.route.extend(list(map(table.index, when_placed(route, None))))
    for name, column in zip(_NUMBERS, numbers):
        getattr(cols, name).extend(when_placed(column, 0.0))
    # Keyed by object (most decisions share a few Slo objects; equal ones that are not the same object just get
    # entries of their own): hashing the dataclass per decision would cost more than the rest of this column.
    slo_index: dict[int, int] = {}
    slo_column = []
    for x in slo:
        i = slo_index.get(id(x)) if x is not None else -1
        if i is None:
            i = slo_index[id(x)] = len(slo_index)
            cols.slos.add().CopyFrom(cache.slo(x))
        slo_column.append(i)
    cols.slo.extend(slo_column)
    cols.reservation_count.extend(list(map(len, held)))
    cols.reservation_ids.extend([r for ids in held for r in ids])


def decisions_of(response: placement_pb2.PlaceBatchResponse) -> list[types_pb2.Decision]:
    """A PlaceBatch answer's decisions as Decision messages, from the full or the compact form alike (the compact
    one is expanded here: the same messages the full answer carries)."""
    if not response.HasField("columns"):
        return list(response.decisions)
    c = response.columns
    routes, slos = response.routes, c.slos
    out = []
    at = 0
    for i, (batch_id, placed, reason, message, n) in enumerate(zip(c.batch_id, c.placed, c.reason, c.message,
                                                                    c.reservation_count)):
        m = types_pb2.Decision(batch_id=batch_id, placed=placed, reason=reason, message=c.messages[message],
                               reservation_ids=c.reservation_ids[at:at + n])
        at += n
        if c.slo[i] >= 0:
            m.slo.CopyFrom(slos[c.slo[i]])
        if placed:
            m.site, m.pool = c.sites[c.site[i]], c.pools[c.pool[i]]
            if c.route[i] >= 0:
                m.route.CopyFrom(routes[c.route[i]])
            m.rtt_ms, m.ttft_ms, m.e2e_ms, m.cost_cny = c.rtt_ms[i], c.ttft_ms[i], c.e2e_ms[i], c.cost_cny[i]
            m.energy_kwh, m.g_co2, m.accelerators, m.hold_s = (c.energy_kwh[i], c.g_co2[i], c.accelerators[i],
                                                               c.hold_s[i])
        out.append(m)
    return out


def decision_count(response: placement_pb2.PlaceBatchResponse) -> int:
    """How many decisions a PlaceBatch answer holds, full or compact."""
    return len(response.columns.batch_id) if response.HasField("columns") else len(response.decisions)


def reservation_ids_of(response: placement_pb2.PlaceBatchResponse) -> list[int]:
    """Every hold a PlaceBatch answer made, full or compact (what to Release when done)."""
    if response.HasField("columns"):
        return list(response.columns.reservation_ids)
    return [r for d in response.decisions for r in d.reservation_ids]


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
