"""The fleet plan: routing fractions per demand cell, utilization, cable load, and how they move with prices."""

from __future__ import annotations

import pytest

from scheduler import queueing, synth
from scheduler.engine.fleet import POLICIES
from scheduler.engine.request import DemandCell, Reason
from engine_fixtures import TINY, engine


def cells(scale: float = 1.0) -> list[DemandCell]:
    return [DemandCell("singapore", "llm-70b", 3000 * scale), DemandCell("manila", "llm-70b", 2000 * scale),
            DemandCell("manila", "llm-70b", 200 * scale, data_class="offshore-processing")]


@pytest.mark.parametrize("policy", POLICIES)
def test_fractions_sum_to_one_when_capacity_suffices_and_pools_stay_under_their_cap(policy):
    eng = engine(TINY)
    plan = eng.plan(cells(), hour=3, policy=policy)
    assert plan.policy == policy and plan.hour == 3 and plan.topology_version == "test"
    for row in plan.rows:
        assert row.reason is Reason.OK and row.unserved_tokens_per_s == pytest.approx(0.0, abs=1e-6)
        assert sum(s.fraction for s in row.shares) == pytest.approx(1.0)
        assert sum(s.tokens_per_s for s in row.shares) == pytest.approx(row.cell.tokens_per_s)
    offshore = plan.rows[2]
    assert {s.site for s in offshore.shares} == {"shantou"}
    max_u = TINY.settings.max_utilization
    assert all(0 <= u <= max_u + 1e-9 for u in plan.pool_utilization.values())
    assert plan.cost_cny_per_hour > 0


@pytest.mark.parametrize("policy", POLICIES)
def test_overload_leaves_demand_unserved_but_never_overfills(policy):
    eng = engine(TINY)
    plan = eng.plan(cells(scale=30), hour=3, policy=policy)
    assert plan.unserved_tokens_per_s > 0
    assert any(r.reason is Reason.CAPACITY for r in plan.rows)
    assert all(u <= TINY.settings.max_utilization + 1e-9 for u in plan.pool_utilization.values())


def test_the_optimal_plan_is_never_dearer_than_the_baselines():
    eng = engine(TINY)
    for hour in (3, 11, 16):
        costs = {p: eng.plan(cells(), hour=hour, policy=p).cost_cny_per_hour for p in POLICIES}
        assert costs["optimal"] <= costs["cheapest-greedy"] * (1 + 1e-9)
        assert costs["optimal"] <= costs["nearest"] * (1 + 1e-9)


def test_a_cut_cable_carries_nothing():
    eng = engine(TINY)
    before = eng.plan(cells(), hour=3)
    used = {c for c, g in before.cable_load_gbps.items() if g > 0}
    assert used
    eng.set_links(sorted(used)[:1], up=False)
    after = eng.plan(cells(), hour=3)
    cut = sorted(used)[0]
    assert after.cable_load_gbps[cut] == 0.0
    assert all(cut not in s.cables for r in after.rows for s in r.shares)
    assert after.served_tokens_per_s == pytest.approx(before.served_tokens_per_s)


def test_traffic_follows_the_hour_s_prices():
    # Guangdong is cheapest in its night valley and dearest at its 10:00-12:00 peak; Ningxia is flat.
    eng = engine(TINY)
    demand = [DemandCell("singapore", "llm-70b", 3000)]
    share = {}
    for hour in (3, 11):
        row = eng.plan(demand, hour=hour).rows[0]
        share[hour] = sum(s.fraction for s in row.shares if s.site == "zhongwei")
    assert share[3] < 0.5 < share[11]


def test_a_large_plan_balances_load_over_many_sites():
    topo = synth.generate(sites=40, regions=10, seed=1)
    eng = engine(topo)
    demand = [DemandCell(r.id, m.id, 80_000.0) for r in topo.regions for m in topo.models]
    plan = eng.plan(demand, hour=14)
    assert plan.status in ("OPTIMAL", "FEASIBLE") and plan.gap <= 1e-3
    assert plan.unserved_tokens_per_s == pytest.approx(0.0, abs=1e-6)
    assert len({s.site for r in plan.rows for s in r.shares}) > 3
    assert all(u <= topo.settings.max_utilization + 1e-9 for u in plan.pool_utilization.values())
    for c, g in plan.cable_load_gbps.items():
        cap = next(x.capacity_gbps for x in topo.cables if x.id == c)
        assert cap is None or g <= cap + 1e-9


@pytest.mark.parametrize("policy", POLICIES)
def test_share_prices_are_per_token_as_demanded_and_add_up_to_the_plan_cost(policy):
    """Regression: shares were priced per output-equivalent token while their rates are input + output tokens."""
    eng = engine(TINY)
    plan = eng.plan(cells(), hour=14, policy=policy)
    total = sum(s.cny_per_mtok * s.tokens_per_s / 1e6 * 3600 for r in plan.rows for s in r.shares)
    assert total == pytest.approx(plan.cost_cny_per_hour, rel=1e-9)
    # And the same price a single placement of the cell's typical request pays at that site.
    row = plan.rows[0]
    d = eng.place(row.cell.as_batch(), hour=14, reserve=False)
    wire = row.cell.input_tokens + row.cell.output_tokens
    placed = {d.site: d.cost_cny, **{a.site: a.cost_cny for a in d.alternatives}}  # every site, on tiny
    assert row.shares
    for share in row.shares:
        assert share.cny_per_mtok == pytest.approx(placed[share.site] / wire * 1e6, rel=1e-6)


@pytest.mark.parametrize("policy", POLICIES)
def test_every_share_keeps_its_percentile_of_requests_within_the_slo(policy):
    """Share.within_slo, recomputed from the M/M/c formula at the plan's own pool loads: at least the SLO's
    percentile for every share, and below 1 where a pool fills up to a ceiling (tight SLOs, p99)."""
    eng = engine(TINY)
    cat = eng.catalog
    demand = [DemandCell("singapore", "llm-70b", 4000, input_tokens=6000, ttft_ms=650, percentile=99.0),
              DemandCell("manila", "llm-70b", 3000, input_tokens=6000, ttft_ms=700, percentile=90.0),
              DemandCell("manila", "llm-70b", 2000, percentile=99.9)]
    plan = eng.plan(demand, hour=3, policy=policy)
    load = {pl.key: plan.pool_utilization[pl.key] * pl.count for pl in cat.pools}
    shares = [(row.cell, s) for row in plan.rows for s in row.shares]
    assert shares
    for cell, s in shares:
        mt = cat.by_model[cell.model]
        t = next(k for k in range(len(mt)) if cat.pools[mt.pool[k]].key == s.pool)
        prefill = 1000.0 * cell.input_tokens / (mt.prefill_tps[t] * mt.parallelism)
        u = load[s.pool] / cat.pool_count[mt.pool[t]]
        slo = eng.check(cell.as_batch())
        budget = slo.ttft_ms - s.rtt_ms - prefill
        share = float(queueing.within_probability(budget, prefill, mt.servers[t], u))
        assert s.within_slo == pytest.approx(share, abs=1e-9)
        assert s.within_slo >= slo.percentile / 100 - 1e-9
        assert s.ttft_ms <= slo.ttft_ms + 1e-6 and s.ttft_mean_ms > s.rtt_ms
    assert any(s.within_slo < 1 - 1e-4 for _, s in shares)  # the ceilings bind somewhere
