"""The message translation the servicers' fast paths rely on: decisions written in place field by field must be
exactly the messages the field list describes, batches decoded without the dataclass __init__ must be the same
batches, and a compact PlaceBatch answer must carry the same decisions as the full one."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from scheduler.engine.core import Engine
from scheduler.engine.request import Batch, Slo
from scheduler.model.loader import load_topology
from scheduler.service import convert, gate
from scheduler.service.client import Client
from scheduler.service.server import ControlPlane
from scheduler.v1 import placement_pb2, types_pb2

TINY = Path(__file__).resolve().parent.parent / "topology" / "tiny.yaml"
HOUR = 14


def reference_decision(d) -> types_pb2.Decision:
    """What a Decision message holds, spelled out field by field (the declarative form the fast path must match)."""
    slo = (types_pb2.Slo(ttft_ms=d.slo.ttft_ms if math.isfinite(d.slo.ttft_ms) else None,
                         e2e_ms=d.slo.e2e_ms if math.isfinite(d.slo.e2e_ms) else None) if d.slo else None)
    out = dict(batch_id=d.batch.id, placed=d.placed, reason=convert.REASON_TO_PB[d.reason], message=d.message,
               slo=slo, reservation_ids=d.reservation_ids)
    if d.placed:
        r = d.route
        out.update(site=d.site, pool=d.pool, rtt_ms=d.rtt_ms, ttft_ms=d.ttft_ms, e2e_ms=d.e2e_ms,
                   cost_cny=d.cost_cny, energy_kwh=d.kwh, g_co2=d.g_co2, accelerators=d.load, hold_s=d.hold_s,
                   route=types_pb2.Route(region=r.region, site=r.site, rtt_ms=r.rtt_ms, nodes=r.nodes, links=r.edges,
                                         cables=r.cables, transit_cny_per_gb=r.transit_cny_per_gb))
    out["alternatives"] = [types_pb2.Alternative(site=a.site, pool=a.pool, cost_cny=a.cost_cny, rtt_ms=a.rtt_ms,
                                                 ttft_ms=a.ttft_ms, e2e_ms=a.e2e_ms) for a in d.alternatives]
    out["rejections"] = [types_pb2.Rejection(site=x.site, reason=convert.REASON_TO_PB[x.reason], detail=x.detail)
                         for x in d.rejections]
    return types_pb2.Decision(**out)


@pytest.fixture(scope="module")
def engine(tiny):
    return Engine.from_topology(tiny.value, tiny.version, hour=lambda: HOUR)


def sample_decisions(engine: Engine) -> list:
    sg = dict(region="singapore", model="llm-70b", input_tokens=2000, output_tokens=500)
    out = [
        engine.place(Batch(**sg, id="reserved")),                                # placed, with reservation ids
        engine.place(Batch(**sg, id="dry"), reserve=False),                      # placed, dry run
        engine.place(Batch(**sg, ttft_ms=1.0)),                                  # unplaced: every site rejected
        engine.place(Batch(**sg, ttft_ms=900.0), reserve=False),                 # the request's own SLO
        engine.place(Batch(region="manila", model="llm-70b", input_tokens=300, output_tokens=50), reserve=False),
    ]
    many = engine.place_many([Batch(**{**sg, "input_tokens": 100 + i}, id=f"m{i}") for i in range(5)]
                             + [Batch(**sg, id="huge", requests=1_000_000)], reserve=False)
    out += many.decisions
    engine.ledger.clear()
    return out


def test_decisions_written_in_place_are_the_reference_messages(engine):
    decisions = sample_decisions(engine)
    # the samples cover what the field list distinguishes
    assert any(d.placed and d.reservation_ids for d in decisions)
    assert any(d.placed and not d.reservation_ids for d in decisions)
    assert any(not d.placed and d.rejections for d in decisions)
    assert any(d.alternatives for d in decisions)
    assert any(d.slo and math.isinf(d.slo.e2e_ms) for d in decisions)  # tiny's regions set no e2e SLO
    for d in decisions:
        expected = reference_decision(d)
        assert convert.decision_to_pb(d) == expected
        assert convert.fill_decision(types_pb2.Decision(), d) == expected
        # twice in a row: the cached Route and Slo messages are copied, never shared or altered
        assert convert.decision_to_pb(d).SerializeToString() == expected.SerializeToString()
    resp = placement_pb2.PlaceBatchResponse()
    convert.add_decisions(resp.decisions, decisions)
    assert list(resp.decisions) == [reference_decision(d) for d in decisions]


def test_the_shared_message_cache_is_bounded():
    cache = convert.MessageCache(limit=3)
    slos = [Slo(100.0 + i, math.inf) for i in range(10)]
    for s in slos:
        assert cache.slo(s) == types_pb2.Slo(ttft_ms=s.ttft_ms)
    assert len(cache._slos) <= 3


def test_compact_routes_name_a_table_entry_and_expand_to_the_full_message(engine):
    decisions = sample_decisions(engine)
    full = placement_pb2.PlaceBatchResponse()
    convert.add_decisions(full.decisions, decisions)
    compact = placement_pb2.PlaceBatchResponse()
    convert.add_decisions(compact.decisions, decisions, convert.RouteTable(compact.routes))
    routed = [d for d in decisions if d.placed and d.route is not None]
    assert len(compact.routes) == len({id(d.route) for d in routed}) < len(routed)  # each route listed once
    for c, f in zip(compact.decisions, full.decisions):
        assert not c.HasField("route")
        assert c.HasField("route_index") == f.HasField("route")
        assert convert.route_of(compact, c) == (f.route if f.HasField("route") else None)
        assert convert.route_of(full, f) == (f.route if f.HasField("route") else None)
    assert compact.ByteSize() < full.ByteSize()
    assert convert.expand_routes(compact) == full
    assert convert.expand_routes(full) == full  # a full answer is left as it is


@pytest.mark.parametrize("fields", [
    dict(region="singapore", model="llm-70b", input_tokens=2000, output_tokens=500),
    dict(id="b-1", region="manila", model="llm-8b", input_tokens=1, output_tokens=0, requests=7, ttft_ms=250.0,
         e2e_ms=0.0, data_class="pii", priority=-3),
    dict(region="x", model="y", input_tokens=-5, output_tokens=10**12, ttft_ms=math.inf, e2e_ms=math.nan),
])
def test_batches_decoded_directly_are_the_dataclass_batches(fields):
    msg = types_pb2.Batch(**fields)
    direct = convert.batch_from_pb(msg)
    via_init = convert._batch_from_pb_init(msg)
    assert type(direct) is Batch
    assert list(vars(direct)) == list(vars(via_init)) and repr(direct) == repr(via_init)  # NaN != NaN
    if not any(isinstance(v, float) and math.isnan(v) for v in vars(via_init).values()):
        assert direct == via_init and hash(direct) == hash(via_init)
    assert convert.batch_from_pb is convert._batch_from_pb_direct  # Batch is still a plain dataclass
    with pytest.raises(AttributeError):
        direct.region = "elsewhere"  # still frozen


def test_made_up_request_ids_are_unique_16_hex_digits():
    ids = [gate.new_request_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids)


def test_compact_place_batch_over_the_wire_matches_the_full_answer():
    batches = [types_pb2.Batch(id=f"s{i}", region="singapore", model="llm-70b", input_tokens=100 + i,
                               output_tokens=500) for i in range(15)]
    batches += [types_pb2.Batch(id=f"m{i}", region="manila", model="llm-70b", input_tokens=300, output_tokens=50)
                for i in range(15)]
    batches.append(types_pb2.Batch(id="huge", region="singapore", model="llm-70b", input_tokens=2000,
                                   output_tokens=500, requests=1_000_000))
    with ControlPlane(TINY, port=0, hour=lambda: HOUR) as plane, Client(plane.target, timeout=20) as c:
        full = c.place_batch(batches, dry_run=True)
        compact = c.place_batch(batches, dry_run=True, compact=True)
        assert not full.routes and all(not d.HasField("route_index") for d in full.decisions)
        assert compact.routes and all(not d.HasField("route") for d in compact.decisions)
        assert compact.placed == full.placed == 30
        for d in compact.decisions:
            if d.placed:
                assert convert.route_of(compact, d).nodes[-1] == d.site
        assert convert.expand_routes(compact).decisions == full.decisions
        # reserving: the compact answer holds the same capacity and its ids release as usual
        held = c.place_batch(batches, compact=True)
        ids = [r for d in held.decisions for r in d.reservation_ids]
        assert ids and plane.engine.ledger.snapshot()
        assert c.release(ids).released == len(ids)
