"""The shipped scenarios on the default topology, at coarse steps: the optimal policy serves at least as much as the
others and, at equal service, never costs more; and each scenario's event does what it says."""

from __future__ import annotations

import numpy as np
import pytest

from scheduler.paths import SIMULATIONS_DIR
from scheduler.sim.loop import simulate
from scheduler.sim.metrics import summarize
from scheduler.sim.solver_logs import quiet_solver_logs
from scheduler.sim.scenario import load_scenario

COARSE = {"demand-growth-10x": 6 * 60.0}  # minutes per step; the rest run at 1 hour
REL = 1e-5  # GLOP's tolerances


@pytest.fixture(scope="module")
def runs():
    quiet_solver_logs()
    out = {}
    for path in sorted(SIMULATIONS_DIR.glob("*.yaml")):
        loaded = load_scenario(path)
        s = loaded.scenario.with_overrides(step=COARSE.get(path.stem, 60.0))
        out[path.stem] = simulate(s, loaded.topology, loaded.version)
    return out


def test_optimal_never_costs_more_at_equal_or_better_slo_attainment(runs):
    assert len(runs) >= 5
    for name, run in runs.items():
        opt = run.traces["optimal"]
        assert opt.failed == 0, name
        best = summarize(opt)
        for policy in ("nearest", "cheapest-greedy"):
            other = run.traces[policy]
            tol = REL * other.demand_tps
            # Per step: the LP serves at least as many tokens (all within SLO) ...
            assert (opt.served_tps >= other.served_tps - tol).all(), (name, policy)
            assert np.allclose(opt.within_slo_tps, opt.served_tps, rtol=1e-9)
            # ... and where it serves the same, it pays no more.
            same = np.abs(opt.served_tps - other.served_tps) <= tol
            assert (opt.cost_cny_per_hour[same] <= other.cost_cny_per_hour[same] * (1 + REL) + 1e-9).all(), (
                name, policy)
            # Over the run: at least the attainment; at equal attainment, at most the cost.
            s = summarize(other)
            assert best.slo_attainment_pct >= s.slo_attainment_pct - 1e-6, (name, policy)
            if best.slo_attainment_pct <= s.slo_attainment_pct + 1e-6:
                assert best.cost_cny <= s.cost_cny * (1 + REL), (name, policy)


def test_cable_cut_scenario_takes_the_busiest_cable_out_of_every_plan(runs):
    run = runs["cable-cut"]
    j = run.cables.index("apcn-2")
    cut = (run.minutes >= 14 * 60) & (run.minutes < 22 * 60)
    base = runs["baseline-day"]
    for policy, t in run.traces.items():
        assert all("apcn-2" not in t.cables_used[i] for i in np.flatnonzero(cut))
        assert (t.cable_gbps[cut, j] == 0).all() and (t.cable_gbps[~cut, j] > 0).all()
        # It is the busiest cable of the baseline day under every policy.
        b = base.traces[policy].cable_gbps.sum(axis=0)
        assert base.cables[int(np.argmax(b))] == "apcn-2"


def test_price_spike_raises_guangdong_cost_and_new_capacity_cuts_refusals(runs):
    spike, base = runs["guangdong-price-spike"], runs["baseline-day"]
    during = (spike.minutes >= 12 * 60) & (spike.minutes < 22 * 60)
    # Same demand (same seed): the nearest policy keeps its Guangdong sites and pays the spike.
    near_s, near_b = spike.traces["nearest"], base.traces["nearest"]
    np.testing.assert_allclose(near_s.demand_tps, near_b.demand_tps)
    assert (near_s.cost_cny_per_hour[during] > near_b.cost_cny_per_hour[during]).all()
    assert np.array_equal(near_s.cost_cny_per_hour[~during], near_b.cost_cny_per_hour[~during])
    grow = runs["western-hub-expansion"]
    day1, day2 = grow.minutes < 1440, grow.minutes >= 1440 + 6 * 60
    q = grow.sites.index("qingyang")
    for policy in ("optimal", "cheapest-greedy"):  # nearest starves the pilot at Shantou whatever Qingyang has
        t = grow.traces[policy]
        assert t.refused_tps[day1].max() > 0 and t.refused_tps[day2].max() == pytest.approx(0, abs=1e-3), policy
    assert grow.traces["optimal"].site_tps[day2, q].max() > grow.traces["optimal"].site_tps[day1, q].max()
