"""The stepping loop on the tiny topology: events change what they should, tokens are conserved, demand is what the
scenario says, and world states are built once."""

from __future__ import annotations

import numpy as np
import pytest

from scheduler.sim.demand import generate
from scheduler.sim.loop import simulate
from scheduler.sim.metrics import summarize, weighted_percentiles
from scheduler.sim.scenario import Scenario
from scheduler.sim.world import World


def scenario(profiles: list[dict], events: list[dict] = (), duration: str = "6h", step: str = "30m",
             burstiness: float = 0.0, seed: int = 3) -> Scenario:
    return Scenario.model_validate({
        "name": "t", "duration": duration, "step": step, "seed": seed,
        "demand": {"burstiness": burstiness, "profiles": profiles}, "events": list(events),
    })


FLAT_SG = [{"region": "singapore", "model": "llm-70b", "tokens_per_day": 1.0e9, "shape": "flat"}]


def steps_between(run, start_min: float, end_min: float) -> np.ndarray:
    return np.flatnonzero((run.minutes >= start_min) & (run.minutes < end_min))


def test_after_a_cut_no_placement_crosses_the_cable_and_repair_restores_the_first_state(tiny):
    s = scenario(FLAT_SG, [{"at": "02:00", "cut": ["cable-b"]}, {"at": "04:00", "repair": ["cable-b"]}])
    run = simulate(s, tiny.value, tiny.version)
    j = run.cables.index("cable-b")
    before, during, after = steps_between(run, 0, 120), steps_between(run, 120, 240), steps_between(run, 240, 360)
    for policy, t in run.traces.items():
        for i in during:
            assert "cable-b" not in t.cables_used[i], (policy, i)
            assert t.cable_gbps[i, j] == 0.0
            assert t.refused_tps[i] == pytest.approx(0.0, abs=1e-6)  # rerouted over cable-a, not dropped
    # The cut mattered: the optimal plan used cable-b before and after it.
    opt = run.traces["optimal"]
    assert all("cable-b" in opt.cables_used[i] and opt.cable_gbps[i, j] > 0 for i in [*before, *after])
    assert run.state[before[0]] == run.state[after[0]] != run.state[during[0]]
    assert [step for step, _, _ in run.transitions] == [0, 4, 8]


def test_after_a_price_spike_traffic_leaves_the_site_for_a_cheaper_feasible_one(tiny):
    # From 08:00 Guangdong's tariff is above Ningxia's, so Zhongwei is the cheapest site until the spike.
    s = scenario(FLAT_SG, [{"at": "12:00", "price": {"tariff": "ningxia", "factor": 5.0}}], duration="16h",
                 step="1h")
    run = simulate(s, tiny.value, tiny.version)
    z = run.sites.index("zhongwei")
    before, after = steps_between(run, 8 * 60, 12 * 60), steps_between(run, 12 * 60, 16 * 60)
    for policy in ("optimal", "cheapest-greedy"):
        t = run.traces[policy]
        assert (t.site_tps[before, z] > 0).all(), policy  # cheapest before the spike
        assert (t.site_tps[after, z] == 0).all(), policy  # nothing left there after it
        assert t.refused_tps[after] == pytest.approx(0.0, abs=1e-6)
    # The nearest policy never cared about price: its placement does not move.
    near = run.traces["nearest"]
    assert np.array_equal(near.site_tps[before[-1]], near.site_tps[after[0]])


def test_site_outage_and_added_accelerators(tiny):
    heavy = [{"region": "singapore", "model": "llm-70b", "tokens_per_day": 20.0e9, "shape": "flat"}]
    s = scenario(heavy, [{"at": "01:00", "site_down": "zhongwei"}, {"at": "02:00", "site_up": "zhongwei"},
                         {"at": "03:00", "add_accelerators": {"site": "shantou", "accelerator": "ascend-910b",
                                                              "count": 64}}])
    run = simulate(s, tiny.value, tiny.version)
    z = run.sites.index("zhongwei")
    down, up, grown = steps_between(run, 60, 120), steps_between(run, 120, 180), steps_between(run, 180, 360)
    opt = run.traces["optimal"]
    for t in run.traces.values():
        assert (t.site_tps[down, z] == 0).all()
        assert (t.site_util[down, z] == 0).all()
    assert (opt.site_tps[up, z] > 0).all()
    # Demand is flat and over capacity: the 64 new accelerators serve more and refuse less.
    assert opt.refused_tps[up[0]] > 0
    assert opt.refused_tps[grown[0]] < opt.refused_tps[up[0]]
    assert opt.served_tps[grown[0]] > opt.served_tps[up[0]]
    shantou = [p for p in run.transitions[-1][1].catalog.pools if p.site == "shantou"]
    assert [p.count for p in shantou] == [16 + 64]


def test_tokens_are_conserved_per_step_and_in_total(tiny):
    profiles = [
        {"region": "singapore", "model": "llm-70b", "tokens_per_day": 8.0e9, "shape": "consumer"},
        {"region": "manila", "model": "llm-70b", "tokens_per_day": 5.0e9, "shape": "business"},
        {"region": "manila", "model": "llm-70b", "data_class": "offshore-processing", "tokens_per_day": 2.0e9},
    ]
    run = simulate(scenario(profiles, duration="24h", step="30m", burstiness=0.2), tiny.value, tiny.version)
    demand = run.demand.rates.sum(axis=1)
    for policy, t in run.traces.items():
        np.testing.assert_allclose(t.demand_tps, demand, rtol=1e-12)
        np.testing.assert_allclose(t.served_tps + t.refused_tps, demand, rtol=1e-9)
        assert (t.within_slo_tps <= t.served_tps + 1e-6).all()
        s = summarize(t)
        assert s.tokens_served + s.tokens_refused == pytest.approx(s.tokens_demanded, rel=1e-9)
        assert s.tokens_demanded == pytest.approx(demand.sum() * 1800, rel=1e-12)
        assert s.slo_attainment_pct <= 100 * s.tokens_served / s.tokens_demanded + 1e-9
    # The test means something: the evening peak is more than the tiny topology can serve.
    assert summarize(run.traces["optimal"]).tokens_refused > 0


def test_demand_volume_shape_growth_and_local_time(tiny, china_sea):
    s = scenario([{"region": "singapore", "model": "llm-70b", "tokens_per_day": 3.0e9, "shape": "consumer"}],
                 duration="24h", step="1m")
    d = generate(s, tiny.value)
    assert d.rates[:, 0].sum() * 60 == pytest.approx(3.0e9, rel=1e-9)  # the shape keeps the daily volume
    g = generate(scenario([{"region": "singapore", "model": "llm-70b", "tokens_per_day": 1.0e9, "shape": "flat",
                            "growth": {"factor": 10, "over": "2d"}}], duration="4d", step="1h"), tiny.value)
    assert g.rates[48, 0] / g.rates[0, 0] == pytest.approx(10.0) and g.rates[96 - 1, 0] > g.rates[48, 0]
    # Jakarta (UTC+7) peaks an hour later in China time than Singapore (UTC+8) with the same local shape.
    both = scenario([{"region": "singapore", "model": "llm-70b", "tokens_per_day": 1e9},
                     {"region": "jakarta", "model": "llm-70b", "tokens_per_day": 1e9}], duration="24h", step="1m")
    r = generate(both, china_sea.value).rates
    assert int(np.argmax(r[:, 1])) - int(np.argmax(r[:, 0])) == 60


def test_burstiness_is_seeded_and_per_profile(tiny):
    one = [{"region": "singapore", "model": "llm-70b", "tokens_per_day": 1e9, "shape": "flat"}]
    two = [*one, {"region": "manila", "model": "llm-70b", "tokens_per_day": 1e9}]
    a = generate(scenario(one, duration="24h", step="5m", burstiness=0.3, seed=5), tiny.value).rates
    b = generate(scenario(two, duration="24h", step="5m", burstiness=0.3, seed=5), tiny.value).rates
    c = generate(scenario(one, duration="24h", step="5m", burstiness=0.3, seed=6), tiny.value).rates
    assert np.array_equal(a[:, 0], b[:, 0])  # adding a profile leaves the others' noise alone
    assert not np.allclose(a, c)
    assert a.std() / a.mean() > 0.1 and abs(a.mean() / (1e9 / 86400) - 1) < 0.2


def test_world_builds_each_state_once(tiny):
    s = scenario(FLAT_SG, [{"at": "01:00", "cut": "cable-b"}, {"at": "02:00", "repair": "cable-b"},
                           {"at": "03:00", "cut": "cable-b"}, {"at": "04:00", "repair": "cable-b"}])
    world = World(tiny.value, tiny.version)
    snaps = [snap for _, snap, _ in world.timeline(s)]
    assert len({id(x) for x in snaps}) == 2
    assert snaps[0] is snaps[2] is snaps[4] and snaps[1] is snaps[3]
    # Price x1.0 is the file's price: the same state as no event at all.
    same = world.timeline(scenario(FLAT_SG, [{"at": "01:00", "price": {"tariff": "ningxia", "factor": 1.0}}]))
    assert same[-1][1] is snaps[0]


def test_weighted_percentiles():
    v = np.array([300.0, 100.0, 200.0])
    assert weighted_percentiles(v, np.array([1.0, 1.0, 98.0])) == [200.0, 200.0, 200.0]
    assert weighted_percentiles(v, np.array([0.0, 50.0, 50.0]), (50.0, 99.0)) == [100.0, 200.0]
    assert all(np.isnan(weighted_percentiles(v, np.zeros(3))))


