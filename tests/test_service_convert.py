"""The message translation the servicers' fast paths rely on: decisions written in place field by field must be
exactly the messages the field list describes, batches decoded without the dataclass __init__ must be the same
batches, and a compact (column by column) PlaceBatch answer must carry the same decisions as the full one."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from scheduler.engine.core import Engine
from scheduler.engine.request import Batch, Slo
from scheduler.service import convert, gate
from scheduler.service.client import Client
from scheduler.service.server import ControlPlane
from scheduler.v1 import placement_pb2, types_pb2

TINY = Path(__file__).resolve().parent.parent / "topology" / "tiny.yaml"
HOUR = 14


def reference_decision(d) -> types_pb2.Decision:
    """What a Decision message holds, spelled out field by field (the declarative form the fast path must match)."""
    slo = (types_pb2.Slo(ttft_ms=d.slo.ttft_ms if math.isfinite(d.slo.ttft_ms) else None,
                         e2e_ms=d.slo.e2e_ms if math.isfinite(d.slo.e2e_ms) else None,
                         percentile=d.slo.percentile) if d.slo else None)
    out = dict(batch_id=d.batch.id, placed=d.placed, reason=convert.REASON_TO_PB[d.reason], message=d.message,
               slo=slo, reservation_ids=d.reservation_ids)
    if d.placed:
        r = d.route
        out.update(site=d.site, pool=d.pool, rtt_ms=d.rtt_ms, ttft_ms=d.ttft_ms, e2e_ms=d.e2e_ms,
                   cost_cny=d.cost_cny, energy_kwh=d.kwh, g_co2=d.g_co2, accelerators=d.load, hold_s=d.hold_s,
                   ttft_mean_ms=d.ttft_mean_ms, route=types_pb2.Route(region=r.region, site=r.site, rtt_ms=r.rtt_ms, nodes=r.nodes, links=r.edges,
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
        assert cache.slo(s) == types_pb2.Slo(ttft_ms=s.ttft_ms, percentile=s.percentile)
    assert len(cache._slos) <= 3


def test_compact_columns_hold_the_same_decisions_as_the_full_answer(engine):
    decisions = [d for d in sample_decisions(engine) if not d.alternatives and not d.rejections]
    assert any(d.placed for d in decisions) and any(not d.placed for d in decisions)
    assert convert.columnar(decisions) and not convert.columnar(sample_decisions(engine))
    full = placement_pb2.PlaceBatchResponse()
    convert.add_decisions(full.decisions, decisions)
    compact = placement_pb2.PlaceBatchResponse()
    convert.fill_columns(compact.columns, compact.routes, decisions)
    assert not compact.decisions and compact.HasField("columns") and not full.HasField("columns")
    assert convert.decisions_of(compact) == convert.decisions_of(full) == list(full.decisions)
    assert convert.decision_count(compact) == convert.decision_count(full) == len(decisions)
    assert convert.reservation_ids_of(compact) == convert.reservation_ids_of(full)
    routed = [d for d in decisions if d.placed and d.route is not None]
    assert len(compact.routes) == len({id(d.route) for d in routed}) < len(routed)  # each route listed once
    assert len(compact.columns.sites) == len({d.site for d in routed} | {""})
    assert compact.ByteSize() < full.ByteSize()


def test_answers_written_from_the_engine_table_are_those_from_its_decisions(engine):
    sg = dict(region="singapore", model="llm-70b", input_tokens=2000, output_tokens=500)
    batches = [Batch(**{**sg, "input_tokens": 100 + i}, id=f"m{i}") for i in range(8)]
    batches += [Batch(region="manila", model="llm-70b", input_tokens=300, output_tokens=50, id="mnl"),
                Batch(**sg, id="huge", requests=1_000_000), Batch(**sg, id="tight", ttft_ms=1.0)]
    for reserve in (True, False):
        result = engine.place_many(batches, reserve=reserve)
        assert 0 < result.placed < len(batches)
        from_table = placement_pb2.PlaceBatchResponse()
        convert.fill_columns_from_table(from_table.columns, from_table.routes, result.table)
        from_decisions = placement_pb2.PlaceBatchResponse()
        convert.fill_columns(from_decisions.columns, from_decisions.routes, result.decisions)
        assert from_table == from_decisions
        full = placement_pb2.PlaceBatchResponse()
        convert.add_decisions(full.decisions, result.decisions)
        assert convert.decisions_of(from_table) == list(full.decisions)
        full_from_table = placement_pb2.PlaceBatchResponse()
        convert.add_decisions_from_table(full_from_table.decisions, result.table)
        assert full_from_table == full
        assert list(full.decisions) == [reference_decision(d) for d in result.decisions]
        engine.ledger.clear()


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
        assert not full.HasField("columns") and not full.routes and len(full.decisions) == len(batches)
        assert compact.HasField("columns") and compact.routes and not compact.decisions
        assert compact.placed == full.placed == 30
        assert (compact.topology_version, compact.hour, compact.solver_status) == (
            full.topology_version, full.hour, full.solver_status)
        assert convert.decisions_of(compact) == list(full.decisions)
        # reserving: the compact answer holds the same capacity and its ids release as usual
        held = c.place_batch(batches, compact=True)
        ids = convert.reservation_ids_of(held)
        snapshot = plane.engine.ledger.snapshot()
        assert ids and snapshot
        assert c.release(ids).released == len(ids)
        assert not any(plane.engine.ledger.snapshot().values())
        held_full = c.place_batch(batches)  # the full form of the same call holds as much, in as many holds
        assert plane.engine.ledger.snapshot() == pytest.approx(snapshot)
        assert len(convert.reservation_ids_of(held_full)) == len(ids)
        for a, b in zip(convert.decisions_of(held), held_full.decisions):
            assert len(a.reservation_ids) == len(b.reservation_ids)
            a.ClearField("reservation_ids")
            b.ClearField("reservation_ids")
            assert a == b
