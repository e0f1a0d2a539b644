"""core.py, the facade: place_many reserves what the solve chose and reports latency with everything running;
its decisions and decision table are what one-by-one placement would give."""

from __future__ import annotations

import numpy as np
import pytest

from scheduler import synth
from scheduler.engine.ledger import Reservation
from scheduler.engine.place import Decision
from scheduler.engine.request import Batch
from scheduler.model.loader import load_topology
from scheduler.paths import DEFAULT_TOPOLOGY
from engine_fixtures import TINY, engine, random_batches, recheck, shrink


def test_place_many_reserves_and_reports_latency_with_everything_running():
    topo = synth.generate(sites=10, regions=4, seed=2)
    eng = engine(topo)
    batches = synth.random_batches(topo, 300, seed=2)
    result = eng.place_many(batches, hour=9)
    assert result.placed == sum(d.placed for d in result.decisions) > 250
    assert recheck(eng.catalog, result.decisions, 9) == []
    snapshot = eng.ledger.snapshot()
    held = {}
    for d in result.decisions:
        if d.placed:
            held[d.pool] = held.get(d.pool, 0.0) + d.load
            assert d.reservation_ids
    assert {k: v for k, v in snapshot.items() if not k.startswith("cable:")} == pytest.approx(held)
    # A second wave is placed around the first without breaking any promise of either.
    more = eng.place_many(synth.random_batches(topo, 300, seed=3), hour=9)
    assert recheck(eng.catalog, result.decisions + more.decisions, 9) == []


def test_batch_reservations_are_the_items_place_would_reserve_one_by_one():
    """place_many books every placement in one ledger call; per decision its ids must still be its pool item (with
    the ceiling) and then one per cable of its route, in the route's order, with the same amounts and holds."""
    clock = lambda: 500.0  # noqa: E731
    eng = engine(load_topology(DEFAULT_TOPOLOGY).value, clock=clock)
    cat = eng.catalog
    batches = synth.random_batches(eng.catalog.topology, 400, seed=5)
    result = eng.place_many(batches, hour=14)
    placed = [d for d in result.decisions if d.placed]
    assert len(placed) > 300 and any(d.route.cables for d in placed)
    live = eng.ledger.reservations()
    ids = [rid for d in placed for rid in d.reservation_ids]
    assert ids == list(range(ids[0], ids[0] + len(ids))) and len(live) == len(ids)
    for d in placed:
        items = eng.holds_of(d, cat)
        assert len(d.reservation_ids) == len(items) == 1 + len(d.route.cables)
        for rid, item in zip(d.reservation_ids, items):
            assert live[rid] == Reservation(rid, item[0], item[1], 500.0 + item[2],
                                            item[3] if len(item) > 3 else float("inf"))
    # Each decision's ids free exactly its own items.
    d = max(placed, key=lambda d: len(d.route.cables))
    before = eng.ledger.snapshot()
    eng.release(list(d.reservation_ids))
    after = eng.ledger.snapshot()
    for key, amount, *_ in eng.holds_of(d, cat):
        assert after.get(key, 0.0) == pytest.approx(before[key] - amount, abs=1e-9)
    assert {k for k in before if after.get(k, 0.0) != before[k]} == {item[0] for item in eng.holds_of(d, cat)}


@pytest.mark.parametrize("reserve", [True, False])
def test_batch_decisions_are_ordinary_decisions(reserve):
    """Decisions are built in bulk (no dataclass __init__): each must equal the one its own fields construct, with
    lists of its own, placed or not."""
    eng = engine(shrink(TINY, counts={"zhongwei": 12, "shaoguan": 8, "shantou": 6}))
    batches = random_batches(eng.catalog.topology, 40, 7, requests=(3, 25), ttft=(250, 1500))
    decisions = eng.place_many(batches, hour=3, reserve=reserve).decisions
    assert any(d.placed for d in decisions) and any(not d.placed for d in decisions)
    for d, b in zip(decisions, batches):
        assert d.batch is b
        assert list(vars(d)) == list(Decision.__dataclass_fields__)
        assert d == Decision(**vars(d))
        assert d.alternatives == [] and d.rejections == []
        assert bool(d.reservation_ids) == (reserve and d.placed)
        if not d.placed:
            assert d == Decision(batch=b, placed=False, reason=d.reason, message=d.reason.label,
                                 topology_version=eng.catalog.version, hour=3, slo=eng.check(b))
    assert len({id(d.alternatives) for d in decisions} | {id(d.rejections) for d in decisions}) == 2 * len(decisions)


@pytest.mark.parametrize("reserve", [True, False])
def test_the_decision_table_holds_what_the_decisions_hold(reserve):
    """BatchResult.table is the decisions column by column (for callers that write them out a column at a time);
    the decisions are built from it on first use, once."""
    eng = engine(load_topology(DEFAULT_TOPOLOGY).value)
    batches = synth.random_batches(eng.catalog.topology, 1200, seed=8)
    big = Batch("singapore", batches[0].model, 4000, 10, ttft_ms=1.0)  # no site answers in 1 ms: unplaced
    result = eng.place_many(batches + [big], hour=14, reserve=reserve)
    t, decisions = result.table, result.decisions
    assert result.decisions is decisions and len(t) == len(decisions) == len(batches) + 1
    assert not decisions[-1].placed and result.placed == sum(d.placed for d in decisions) == int(t.placed.sum())
    at = 0
    for i, d in enumerate(decisions):
        assert t.batches[i] is d.batch and t.slo[i] is d.slo and bool(t.placed[i]) == d.placed
        assert t.reason[i] is d.reason and t.message[i] == d.message
        assert (t.site[i], t.pool[i], t.route[i]) == (d.site, d.pool, d.route)
        for name in ("rtt_ms", "ttft_ms", "e2e_ms", "cost_cny", "kwh", "g_co2", "load", "hold_s", "ceiling"):
            value = getattr(t, name)[i]
            assert value == getattr(d, name) or (np.isnan(value) and np.isnan(getattr(d, name))), name
        n = int(t.reservation_count[i])
        assert tuple(t.reservation_ids[at:at + n].tolist()) == d.reservation_ids
        at += n
    assert at == len(t.reservation_ids) and (at > len(batches)) == reserve


def test_a_pool_s_budget_of_new_holds_steers_placements_elsewhere():
    """Cluster mode: a pool whose budget of new holds (until the next claim) is used up is judged full, so Place and
    PlaceBatch go to the next site instead of retrying a reservation the ledger must refuse."""
    eng = engine(load_topology(DEFAULT_TOPOLOGY).value)
    cat = eng.catalog
    caps = eng.capacities(cat)
    eng.ledger.set_shares(caps, {k: 0.0 for k in caps}, {})
    batch = Batch("singapore", "llm-70b", 500, 200, requests=400)
    first = eng.place(batch, hour=20, reserve=False)
    budget = {k: v for k, v in caps.items() if k != first.pool}
    budget[first.pool] = 0.5 * first.load
    eng.ledger.announce(lambda pace: budget, 1.0, 4)
    moved = eng.place(batch, hour=20)
    assert moved.placed and moved.pool != first.pool and moved.reservation_ids
    many = eng.place_many([batch] * 3, hour=20)
    assert many.placed == 3 and first.pool not in {d.pool for d in many.decisions}


def test_a_budget_of_new_holds_is_not_recorded_as_a_promise():
    """The budget caps a pool's load for now; a placement's ceiling (what it is promised, binding every later
    placement) stays its SLO's, or a joint placement made under a tight budget would cap the pool for its whole
    hold."""
    plain, budgeted = (engine(load_topology(DEFAULT_TOPOLOGY).value) for _ in range(2))
    caps = plain.capacities(plain.catalog)
    for eng in (plain, budgeted):
        eng.ledger.set_shares(caps, {k: 0.0 for k in caps}, {})
    batches = [Batch("singapore", "llm-70b", 500, 200, requests=400)] * 5
    budgeted.ledger.announce(lambda pace: {k: 0.9 * v for k, v in caps.items()}, 1.0, 4)
    a, b = plain.place_many(batches, hour=20), budgeted.place_many(batches, hour=20)
    assert [d.pool for d in a.decisions] == [d.pool for d in b.decisions]
    assert [d.ceiling for d in a.decisions] == [d.ceiling for d in b.decisions]
    assert budgeted.ledger.own_ceilings() == plain.ledger.own_ceilings()
