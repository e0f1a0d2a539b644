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


def batch_from_pb(b: types_pb2.Batch) -> Batch:
    return Batch(
        region=b.region, model=b.model, input_tokens=b.input_tokens, output_tokens=b.output_tokens,
        requests=b.requests or 1, ttft_ms=_opt(b, "ttft_ms"), e2e_ms=_opt(b, "e2e_ms"),
        data_class=b.data_class or DEFAULT_DATA_CLASS, priority=b.priority, id=b.id,
    )


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
    """Decisions of one response share a handful of Route and Slo objects; build each message once (a 10,000
    decision PlaceBatch answer otherwise spends most of its encoding time rebuilding the same few routes)."""

    def __init__(self) -> None:
        self._routes: dict[int, tuple[Route, types_pb2.Route]] = {}
        self._slos: dict[tuple[float, float], types_pb2.Slo] = {}

    def route(self, r: Route) -> types_pb2.Route:
        hit = self._routes.get(id(r))
        if hit is None or hit[0] is not r:
            hit = (r, route_to_pb(r))
            self._routes[id(r)] = hit
        return hit[1]

    def slo(self, slo: Slo) -> types_pb2.Slo:
        key = (slo.ttft_ms, slo.e2e_ms)
        msg = self._slos.get(key)
        if msg is None:
            msg = self._slos[key] = types_pb2.Slo(ttft_ms=_finite(slo.ttft_ms), e2e_ms=_finite(slo.e2e_ms))
        return msg


def decision_fields(d: Decision, cache: MessageCache) -> dict:
    """Keyword arguments of a types_pb2.Decision (so callers can construct it in place with `repeated.add`)."""
    out = dict(batch_id=d.batch.id, placed=d.placed, reason=REASON_TO_PB[d.reason], message=d.message,
               slo=cache.slo(d.slo) if d.slo else None, reservation_ids=d.reservation_ids)
    if d.placed:
        out.update(site=d.site, pool=d.pool, route=cache.route(d.route) if d.route is not None else None,
                   rtt_ms=d.rtt_ms, ttft_ms=d.ttft_ms, e2e_ms=d.e2e_ms, cost_cny=d.cost_cny, energy_kwh=d.kwh,
                   g_co2=d.g_co2, accelerators=d.load, hold_s=d.hold_s)
    if d.alternatives:
        out["alternatives"] = [types_pb2.Alternative(site=a.site, pool=a.pool, cost_cny=a.cost_cny, rtt_ms=a.rtt_ms,
                                                     ttft_ms=a.ttft_ms, e2e_ms=a.e2e_ms) for a in d.alternatives]
    if d.rejections:
        out["rejections"] = [types_pb2.Rejection(site=r.site, reason=REASON_TO_PB[r.reason], detail=r.detail)
                             for r in d.rejections]
    return out


def decision_to_pb(d: Decision) -> types_pb2.Decision:
    return types_pb2.Decision(**decision_fields(d, MessageCache()))


def add_decisions(target, decisions: Iterable[Decision]) -> None:
    """Append decisions to a repeated Decision field, built in place (no copy per message)."""
    cache = MessageCache()
    add = target.add
    for d in decisions:
        add(**decision_fields(d, cache))


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
