"""One batch: cheapest feasible site, the explanation, the closest miss, capacity, data class, promises kept."""

from __future__ import annotations

import numpy as np
import pytest

from scheduler.engine.core import RESERVE_RETRIES, SERIAL_RETRIES, Overloaded
from scheduler.engine.estimate import BatchArrays, estimate
from scheduler.engine.request import Batch, InvalidRequest, Reason
from engine_fixtures import TINY, engine, recheck, shrink


def test_cheapest_feasible_site_with_ranked_alternatives_and_every_rejection():
    eng = engine(TINY)
    d = eng.place(Batch("singapore", "llm-70b", 2000, 300, 4), hour=3, reserve=False)
    cat = eng.catalog
    mt = cat.by_model["llm-70b"]
    a = BatchArrays(np.array([cat.region_index["singapore"]]), np.array([2000.0]), np.array([300.0]),
                    np.array([4.0]), np.array([1000.0]), np.array([np.inf]), ["public"])
    e = estimate(cat, mt, a, 3, np.zeros(len(cat.pools)))
    costs = {cat.sites[mt.site[k]]: e.cost_cny[0, k] for k in range(len(mt))}
    assert d.placed and d.reason is Reason.OK and d.site == min(costs, key=costs.get)
    assert d.cost_cny == pytest.approx(costs[d.site])
    # Alternatives: the other feasible sites, cheapest first; nothing rejected on a quiet network.
    assert [x.site for x in d.alternatives] == sorted((s for s in costs if s != d.site), key=costs.get)
    assert d.rejections == []
    # The explanation: route and cables, and the estimates that add up.
    assert d.route.region == "singapore" and d.route.site == d.site and d.route.cables
    assert d.rtt_ms == pytest.approx(d.route.rtt_ms)
    assert d.rtt_ms < d.ttft_ms < d.e2e_ms
    assert d.e2e_ms - d.ttft_ms == pytest.approx(1000 * 300 / 40)  # the answer streams at 40 tokens/s
    assert d.kwh > 0 and d.g_co2 > 0 and d.load > 0 and d.hold_s == pytest.approx(300 / 40)
    assert d.topology_version == "test" and d.hour == 3 and d.slo.ttft_ms == 1000


def test_every_rejected_site_names_its_first_failing_check():
    eng = engine(shrink(TINY, down=("shaoguan",)))
    d = eng.place(Batch("singapore", "llm-70b", 1000, 100, 1, data_class="offshore-processing"), hour=3,
                  reserve=False)
    assert d.placed and d.site == "shantou"
    assert {(r.site, r.reason) for r in d.rejections} == {("zhongwei", Reason.DATA_CLASS),
                                                          ("shaoguan", Reason.SITE_DOWN)}
    assert all(r.detail for r in d.rejections)


def test_no_site_meets_the_slo_is_a_result_naming_the_closest_miss():
    eng = engine(TINY)
    d = eng.place(Batch("manila", "llm-70b", 3000, 100, 1, ttft_ms=60.0), hour=3, reserve=False)
    assert not d.placed and d.reason is Reason.TTFT
    ttft = {r.site: float(r.detail.split()[1]) for r in d.rejections}
    closest = min(ttft, key=ttft.get)
    assert set(ttft) == {"zhongwei", "shaoguan", "shantou"}
    assert f"closest miss: {closest}" in d.message and "> 60 ms" in d.message


def test_capacity_runs_out_and_then_every_site_says_so():
    eng = engine(shrink(TINY, counts={"zhongwei": 8, "shaoguan": 8, "shantou": 8}))
    batch = Batch("singapore", "llm-70b", 500, 2000, 20, ttft_ms=30_000)  # tolerant: only capacity can say no
    placed = []
    for _ in range(50):
        d = eng.place(batch, hour=3)
        if not d.placed:
            break
        placed.append(d)
    assert placed and not d.placed and d.reason is Reason.CAPACITY
    assert "closest miss" in d.message
    assert {r.reason for r in d.rejections} == {Reason.CAPACITY}
    snapshot = eng.ledger.snapshot()
    caps = eng.capacities(eng.catalog)
    assert all(snapshot[k] <= caps[k] + 1e-9 for k in snapshot)
    # Full means full: no pool has room for one more.
    assert all(caps[p.key] - snapshot.get(p.key, 0.0) < placed[0].load for p in eng.catalog.pools)
    assert recheck(eng.catalog, placed, 3) == []


def test_a_batch_is_judged_with_its_own_load_on_the_pool():
    # A huge batch: alone it fits every pool, but its own queueing pushes the small pools past the SLO.
    eng = engine(TINY)
    batch = Batch("singapore", "llm-70b", 4000, 200, 30, ttft_ms=300)
    d = eng.place(batch, hour=3, reserve=False)
    cat = eng.catalog
    mt = cat.by_model["llm-70b"]
    a = BatchArrays(np.array([cat.region_index["singapore"]]), np.array([4000.0]), np.array([200.0]),
                    np.array([30.0]), np.array([300.0]), np.array([np.inf]), ["public"])
    idle = estimate(cat, mt, a, 3, np.zeros(len(cat.pools)))
    assert np.all(idle.reason == Reason.OK)  # at today's (zero) load every site would do
    rejected = {r.site: r.reason for r in d.rejections}
    assert rejected and set(rejected.values()) == {Reason.TTFT}
    assert d.placed and d.site not in rejected and d.ttft_ms <= 300
    assert all("with this batch on the pool" in r.detail for r in d.rejections)
    assert recheck(cat, [d], 3) == []


def test_later_placements_never_break_a_promise_already_made():
    eng = engine(shrink(TINY, counts={"zhongwei": 16, "shaoguan": 16, "shantou": 16}))
    tight = eng.place(Batch("singapore", "llm-70b", 3000, 300, 2, ttft_ms=450), hour=3)
    assert tight.placed and tight.ceiling < eng.catalog.pool_capacity[0]
    flood = []
    for i in range(200):
        d = eng.place(Batch("singapore", "llm-70b", 200, 1000, 6, ttft_ms=30_000, id=f"f{i}"), hour=3)
        if d.placed:
            flood.append(d)
    assert flood
    assert eng.ledger.snapshot()[tight.pool] <= tight.ceiling + 1e-9
    assert recheck(eng.catalog, [tight, *flood], 3) == []


def test_dry_run_reserves_nothing_and_release_frees():
    eng = engine(TINY)
    b = Batch("singapore", "llm-70b", 1000, 300, 3)
    assert not eng.place(b, hour=3, reserve=False).reservation_ids and eng.ledger.snapshot() == {}
    d = eng.place(b, hour=3)
    assert d.reservation_ids and eng.ledger.snapshot()[d.pool] == pytest.approx(d.load)
    eng.release(list(d.reservation_ids))
    assert eng.ledger.snapshot() == {}


def test_a_placement_whose_reservation_keeps_failing_is_never_reported_placed(monkeypatch):
    """Regression: after the reservation retries ran out, `place` returned a placed decision with nothing held."""
    eng = engine(TINY)
    calls = []
    monkeypatch.setattr(eng.ledger, "try_reserve", lambda *a, **k: calls.append(1))  # always "someone was faster"
    with pytest.raises(Overloaded):
        eng.place(Batch("singapore", "llm-70b", 1000, 300), hour=3)
    assert len(calls) == RESERVE_RETRIES + SERIAL_RETRIES  # optimistic tries, then the serialized ones
    assert eng.ledger.snapshot() == {}


@pytest.mark.parametrize("batch,field", [
    (Batch("atlantis", "llm-70b", 10, 10), "region"),
    (Batch("singapore", "gpt-9", 10, 10), "model"),
    (Batch("singapore", "llm-70b", 10, 10, data_class="secret"), "data_class"),
    (Batch("singapore", "llm-70b", -1, 10), "input_tokens"),
    (Batch("singapore", "llm-70b", 0, 0), "output_tokens"),
    (Batch("singapore", "llm-70b", 10, 10, requests=0), "requests"),
    (Batch("singapore", "llm-70b", 10, 10, ttft_ms=-5), "ttft_ms"),
])
def test_bad_requests_name_the_field(batch, field):
    with pytest.raises(InvalidRequest) as err:
        engine(TINY).place(batch, hour=3)
    assert err.value.field == field
