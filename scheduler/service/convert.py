"""Translation between scheduler.v1 messages and engine types; no placement logic lives here."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from scheduler.engine.core import DecisionTable
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
        data_class=b.data_class or DEFAULT_DATA_CLASS, priority=b.priority, id=b.id, percentile=_opt(b, "percentile"),
    )


_BATCH_FIELDS = ("region", "model", "input_tokens", "output_tokens", "requests", "ttft_ms", "e2e_ms", "data_class",
                 "priority", "id", "percentile")
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
    f["percentile"] = b.percentile if b.HasField("percentile") else None
    return obj


# Only while Batch stays a plain dataclass of exactly these fields (no __post_init__, no slots); else its __init__.
batch_from_pb = (_batch_from_pb_direct
                 if tuple(Batch.__dataclass_fields__) == _BATCH_FIELDS and not hasattr(Batch, "__post_init__")
                 and "__slots__" not in vars(Batch) else _batch_from_pb_init)


def batch_to_pb(b: Batch) -> types_pb2.Batch:
    return types_pb2.Batch(id=b.id, region=b.region, model=b.model, input_tokens=b.input_tokens,
                           output_tokens=b.output_tokens, requests=b.requests, ttft_ms=b.ttft_ms, e2e_ms=b.e2e_ms,
                           data_class=b.data_class, priority=b.priority, percentile=b.percentile)


_CELL_DEFAULTS = DemandCell("", "", 0.0)


def cell_from_pb(c: types_pb2.DemandCell) -> DemandCell:
    return DemandCell(
        region=c.region, model=c.model, tokens_per_s=c.tokens_per_s, data_class=c.data_class or DEFAULT_DATA_CLASS,
        input_tokens=c.input_tokens if c.HasField("input_tokens") else _CELL_DEFAULTS.input_tokens,
        output_tokens=c.output_tokens if c.HasField("output_tokens") else _CELL_DEFAULTS.output_tokens,
        ttft_ms=_opt(c, "ttft_ms"), e2e_ms=_opt(c, "e2e_ms"), percentile=_opt(c, "percentile"),
    )


def cell_to_pb(c: DemandCell) -> types_pb2.DemandCell:
    return types_pb2.DemandCell(region=c.region, model=c.model, tokens_per_s=c.tokens_per_s, data_class=c.data_class,
                                input_tokens=c.input_tokens, output_tokens=c.output_tokens, ttft_ms=c.ttft_ms,
                                e2e_ms=c.e2e_ms, percentile=c.percentile)


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
        key = (slo.ttft_ms, slo.e2e_ms, slo.percentile)
        msg = self._slos.get(key)
        if msg is None:
            if len(self._slos) >= self._limit:
                self._slos = {}
            msg = self._slos[key] = types_pb2.Slo(ttft_ms=_finite(slo.ttft_ms), e2e_ms=_finite(slo.e2e_ms),
                                                  percentile=slo.percentile)
        return msg


SHARED = MessageCache()


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
        m.ttft_mean_ms = d.ttft_mean_ms
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


def add_decisions_from_table(target, table: DecisionTable, cache: MessageCache = SHARED) -> None:
    """`add_decisions` straight from the engine's DecisionTable: the same messages, without a Decision object per
    batch on the way."""
    placed = table.placed.tolist()
    counts = table.reservation_count.tolist()
    ids = table.reservation_ids.tolist()
    numbers = [getattr(table, name).tolist() for name in _TABLE_NUMBERS]
    to_pb = REASON_TO_PB
    add = target.add
    at = 0
    for (batch, p, reason, message, site, pool, route, slo, n, rtt, ttft, e2e, cost, kwh, g_co2, load,
         hold, ttft_mean) in zip(table.batches, placed, table.reason, table.message, table.site, table.pool, table.route,
                      table.slo, counts, *numbers):
        m = add()
        m.batch_id = batch.id
        m.placed = p
        m.reason = to_pb[reason]
        m.message = message
        if slo is not None:
            m.slo.CopyFrom(cache.slo(slo))
        if n:
            m.reservation_ids.extend(ids[at:at + n])
            at += n
        if p:
            if site is not None:
                m.site = site
            if pool is not None:
                m.pool = pool
            if route is not None:
                m.route.CopyFrom(cache.route(route))
            m.rtt_ms = rtt
            m.ttft_ms = ttft
            m.e2e_ms = e2e
            m.cost_cny = cost
            m.energy_kwh = kwh
            m.g_co2 = g_co2
            m.accelerators = load
            m.hold_s = hold
            m.ttft_mean_ms = ttft_mean


def columnar(decisions: Sequence[Decision]) -> bool:
    """Whether DecisionColumns can hold these decisions (it has no room for alternatives and rejections)."""
    return not any(d.alternatives or d.rejections for d in decisions)


def _interned(values: Sequence[str], table) -> list[int]:
    """Each value's index in `table`, which gets every distinct value once, in order of first appearance."""
    index = {v: i for i, v in enumerate(dict.fromkeys(values))}
    table.extend([v if v is not None else "" for v in index])
    return list(map(index.__getitem__, values))


def _by_object(objects: Sequence, add: Callable[[object], None]) -> list[int]:
    """Each object's index among the distinct ones, by identity (equal but separate objects get entries of their
    own), with `add` called for each distinct one in order of first appearance; None is -1 and not added. The
    objects must stay alive while this runs (the decisions hold them): their ids are the keys."""
    keys = list(map(id, objects))
    index: dict[int, int] = {}
    for key, obj in dict(zip(keys, objects)).items():
        if obj is None:
            index[key] = -1
        else:
            index[key] = len(index) - (id(None) in index)
            add(obj)
    return list(map(index.__getitem__, keys))


_COLUMNS = tuple(map(attrgetter, ("placed", "reason", "message", "site", "pool", "route", "slo", "reservation_ids",
                                  "rtt_ms", "ttft_ms", "e2e_ms", "cost_cny", "kwh", "g_co2", "load", "hold_s",
                                  "ttft_mean_ms")))
_NUMBERS = ("rtt_ms", "ttft_ms", "e2e_ms", "cost_cny", "energy_kwh", "g_co2", "accelerators", "hold_s",
            "ttft_mean_ms")
_TABLE_NUMBERS = ("rtt_ms", "ttft_ms", "e2e_ms", "cost_cny", "kwh", "g_co2", "load", "hold_s", "ttft_mean_ms")
_BATCH_ID = attrgetter("batch.id")
_ID = attrgetter("id")


def fill_columns(cols: types_pb2.DecisionColumns, routes, decisions: Sequence[Decision],
                 cache: MessageCache = SHARED) -> None:
    """Write decisions (which `columnar` accepts) into the empty `cols` and their routes into `routes`
    (PlaceBatchResponse.routes): each field read for every decision in C (map of an attrgetter: no per-decision
    tuple for the collector to chase), then handed to the message a column at a time."""
    (placed, reason, message, site, pool, route, slo, held, *numbers) = [list(map(get, decisions))
                                                                         for get in _COLUMNS]
    if not all(placed):  # unplaced decisions read "" and 0, as their Decision messages do
        site = [x if p else "" for x, p in zip(site, placed)]
        pool = [x if p else "" for x, p in zip(pool, placed)]
        route = [x if p else None for x, p in zip(route, placed)]
        numbers = [[x if p else 0.0 for x, p in zip(column, placed)] for column in numbers]
    _write_columns(cols, routes, cache, list(map(_BATCH_ID, decisions)), placed, reason, message, site, pool,
                   route, numbers, slo, list(map(len, held)), [r for ids in held for r in ids])


def fill_columns_from_table(cols: types_pb2.DecisionColumns, routes, table: DecisionTable,
                            cache: MessageCache = SHARED) -> None:
    """`fill_columns` straight from the engine's DecisionTable (what `place_many` answers with): the same
    message, without a Decision object per batch, the numbers taken from the table's arrays whole."""
    placed = table.placed
    numbers = [np.where(placed, getattr(table, name), 0.0).tolist() for name in _TABLE_NUMBERS]
    _write_columns(cols, routes, cache, list(map(_ID, table.batches)), placed.tolist(), table.reason,
                   table.message, table.site, table.pool, table.route, numbers, table.slo,
                   table.reservation_count.tolist(), table.reservation_ids.tolist())


def _write_columns(cols: types_pb2.DecisionColumns, routes, cache: MessageCache, batch_id: list[str],
                   placed: list[bool], reason: Sequence[Reason], message: Sequence[str],
                   site: Sequence[str | None], pool: Sequence[str | None], route: Sequence[Route | None],
                   numbers: list[list[float]], slo: Sequence[Slo | None], counts: list[int], ids: list[int]) -> None:
    cols.batch_id.extend(batch_id)
    cols.placed.extend(placed)
    cols.reason.extend(list(map(REASON_TO_PB.__getitem__, reason)))
    cols.message.extend(_interned(message, cols.messages))
    cols.site.extend(_interned(site, cols.sites))
    cols.pool.extend(_interned(pool, cols.pools))
    cols.route.extend(_by_object(route, lambda r: routes.add().CopyFrom(cache.route(r))))
    for name, column in zip(_NUMBERS, numbers):
        getattr(cols, name).extend(column)
    cols.slo.extend(_by_object(slo, lambda x: cols.slos.add().CopyFrom(cache.slo(x))))
    cols.reservation_count.extend(counts)
    cols.reservation_ids.extend(ids)


def replace_decision(response: placement_pb2.PlaceBatchResponse, i: int, d: types_pb2.Decision) -> None:
    """Put `d` in place of batch i's decision, in the full or the compact form (cluster mode: a batch another
    replica placed, in the answer of the replica that passed it on)."""
    if not response.HasField("columns"):
        response.decisions[i].CopyFrom(d)
        return
    c = response.columns

    def index(table, value: str) -> int:
        for j, v in enumerate(table):
            if v == value:
                return j
        table.append(value)
        return len(table) - 1

    c.placed[i], c.reason[i], c.message[i] = d.placed, d.reason, index(c.messages, d.message)
    c.site[i], c.pool[i] = index(c.sites, d.site), index(c.pools, d.pool)
    if d.HasField("route"):
        response.routes.add().CopyFrom(d.route)
        c.route[i] = len(response.routes) - 1
    else:
        c.route[i] = -1
    for name in _NUMBERS:
        getattr(c, name)[i] = getattr(d, name)
    if d.HasField("slo"):
        c.slos.add().CopyFrom(d.slo)
        c.slo[i] = len(c.slos) - 1
    ids, at = [], 0
    for j, n in enumerate(c.reservation_count):
        ids.append(list(d.reservation_ids) if j == i else c.reservation_ids[at:at + n])
        at += n
    c.reservation_count[i] = len(d.reservation_ids)
    del c.reservation_ids[:]
    c.reservation_ids.extend(x for part in ids for x in part)


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
            if len(c.ttft_mean_ms) > i:  # absent from servers that predate it
                m.ttft_mean_ms = c.ttft_mean_ms[i]
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
                                cny_per_mtok=s.cny_per_mtok, rtt_ms=s.rtt_ms, ttft_ms=s.ttft_ms, cables=s.cables,
                                e2e_ms=s.e2e_ms, kwh_per_hour=s.kwh_per_hour, g_co2_per_hour=s.g_co2_per_hour,
                                green_share=s.green_share, ttft_mean_ms=s.ttft_mean_ms, within_slo=s.within_slo)
                for s in row.shares],
    )


def plan_to_pb(p: FleetPlan) -> placement_pb2.GetPlanResponse:
    return placement_pb2.GetPlanResponse(
        topology_version=p.topology_version, hour=p.hour, policy=p.policy, status=p.status,
        rows=[plan_row_to_pb(r) for r in p.rows], cost_cny_per_hour=p.cost_cny_per_hour,
        pool_utilization=p.pool_utilization, cable_load_gbps=p.cable_load_gbps,
        served_tokens_per_s=p.served_tokens_per_s, unserved_tokens_per_s=p.unserved_tokens_per_s,
        solve_seconds=p.seconds, objective_cny_per_hour=p.objective_cny_per_hour,
        bound_cny_per_hour=p.bound_cny_per_hour, gap=p.gap,
    )


def timestamp(unix_s: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(unix_s * 1e9))
    return ts


def problem_to_pb(p: Problem) -> topology_pb2.LoadProblem:
    return topology_pb2.LoadProblem(file=p.file, line=p.line, field=p.field, message=p.message, text=str(p))
