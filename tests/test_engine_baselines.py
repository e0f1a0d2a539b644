"""Batch baselines: `nearest` takes the lowest RTT, `cheapest-greedy` the lowest cost, in request order, under the
same rules as the engine; the joint solve is never dearer than either on instances it solves exactly."""

from __future__ import annotations

import numpy as np
import pytest

from scheduler import synth
from scheduler.engine import baselines
from scheduler.engine.solve import pipeline
from scheduler.engine.core import batch_decisions
from scheduler.engine.request import Batch, InvalidRequest, Reason
from engine_fixtures import TINY, engine, problem, random_batches, recheck, shrink

SMALL = shrink(TINY, counts={"zhongwei": 12, "shaoguan": 8, "shantou": 6})


def test_one_batch_goes_to_the_lowest_rtt_or_the_lowest_cost():
    eng = engine(TINY)
    b = Batch("singapore", "llm-70b", 1000, 200, 2)
    p = problem(eng, [b], 12)  # Guangdong at peak price: the cheapest site is far, the nearest is dear
    e = p.est["llm-70b"]
    near = baselines.solve(p, "nearest")
    cheap = baselines.solve(p, "cheapest-greedy")
    assert near.target[0] == int(np.argmin(e.rtt_ms[0])) and cheap.target[0] == int(np.argmin(e.cost_cny[0]))
    assert near.target[0] != cheap.target[0]
    assert near.method == "nearest" and cheap.status == "HEURISTIC" and np.isnan(cheap.best_bound)
    assert cheap.cost == pytest.approx(e.cost_cny[0].min())


def test_in_request_order_without_look_ahead():
    # Two pools: zhongwei holds 10.8 accelerators, shaoguan 7.2 (and is the cheaper at 03:00).
    eng = engine(shrink(SMALL, down=("shantou",)))
    big = Batch("singapore", "llm-70b", 500, 40, 30, ttft_ms=30_000)  # 6.75 accelerators
    small = Batch("singapore", "llm-70b", 500, 40, 4, ttft_ms=30_000)  # 0.9
    p = problem(eng, [small, big, big], 3)
    cheap = baselines.solve(p, "cheapest-greedy")
    shaoguan = eng.catalog.sites.index("shaoguan")
    assert p.site[cheap.target[0]] == shaoguan  # the small one takes the cheapest pool first...
    # ... so the second big one finds no room, where the joint solve, seeing all three, places everything.
    assert cheap.target.tolist()[2] == -1 and cheap.reason[2] == Reason.CAPACITY
    best = pipeline.solve(p)
    assert (best.target >= 0).all() and best.objective < cheap.objective


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("policy", baselines.POLICIES)
def test_baselines_keep_every_rule(seed, policy):
    topo = synth.generate(sites=6, regions=3, seed=seed)
    topo = shrink(topo, counts={s.id: 24 for s in topo.sites})
    eng = engine(topo)
    batches = random_batches(topo, 40, seed, requests=(1, 20), ttft=(300, 2500),
                             classes=("public", "public", "offshore-processing", "hub-only"))
    p = problem(eng, batches, 13)
    a = baselines.solve(p, policy)
    decisions = batch_decisions(p, a, [eng.check(b) for b in batches])
    assert recheck(eng.catalog, decisions, 13) == []
    exact = pipeline.solve(p)
    assert exact.objective <= a.objective * (1 + 1e-9)


def test_engine_runs_baselines_with_reservations():
    topo = synth.generate(sites=8, regions=3, seed=5)
    eng = engine(topo)
    batches = synth.random_batches(topo, 200, seed=5)
    r = eng.place_baseline(batches, "cheapest-greedy", hour=20)
    assert r.solution.method == "cheapest-greedy" and r.placed > 150
    assert all(d.reservation_ids for d in r.decisions if d.placed)
    assert recheck(eng.catalog, r.decisions, 20) == []
    with pytest.raises(InvalidRequest):
        eng.place_baseline(batches, "random", hour=20)


def test_without_the_ceilings_later_placements_break_earlier_promises():
    # The check the other tests rely on can fail: a greedy that ignores earlier batches' ceilings breaks them.
    eng = engine(shrink(TINY, counts={"zhongwei": 16, "shaoguan": 16, "shantou": 16}))
    batches = [Batch("singapore", "llm-70b", 3000, 300, 2, ttft_ms=450)] + [
        Batch("singapore", "llm-70b", 200, 1000, 6, ttft_ms=30_000, id=f"f{i}") for i in range(60)]
    p = problem(eng, batches, 3)
    slos = [eng.check(b) for b in batches]
    naive = baselines.solve(p, "cheapest-greedy", keep_promises=False)
    broken = recheck(eng.catalog, batch_decisions(p, naive, slos), 3)
    assert broken and all("over SLO" in msg for msg in broken)
    kept = baselines.solve(p, "cheapest-greedy")
    assert recheck(eng.catalog, batch_decisions(p, kept, slos), 3) == []
    assert naive.method == "cheapest-greedy (no promises)"
