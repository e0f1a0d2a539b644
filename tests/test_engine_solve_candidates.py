"""candidates.py: each batch's cheapest targets, split between those the levels allow and those they bar; and the
large solve on shortlists that leave targets out (as on 200 sites) stays feasible, deterministic and bounded."""

from __future__ import annotations

import numpy as np
import pytest
from engine_fixtures import assert_feasible, binding_pairs, contended, engine, problem

from scheduler import synth
from scheduler.engine.solve import problem as joint
from scheduler.engine.solve import candidates, greedy, group_prices, pipeline, pool_levels
from scheduler.model.loader import load_topology
from scheduler.paths import DEFAULT_TOPOLOGY


@pytest.fixture(scope="module")
def wide():
    """400 batches on 60 generated sites: each model has far more targets than a shortlist holds."""
    topo = synth.generate(sites=60, regions=12, seed=4)
    p = problem(engine(topo), synth.random_batches(topo, 400, seed=4), 14)
    penalty = joint.penalty_of(p)
    parts = greedy.parts_of(p)
    return p, parts, group_prices.price(p, parts, penalty)


def test_a_part_no_wider_than_keep_all_keeps_every_target_in_column_order():
    eng = engine(load_topology(DEFAULT_TOPOLOGY).value)
    p = problem(eng, synth.random_batches(eng.catalog.topology, 300, seed=1), 14)
    parts = greedy.parts_of(p)
    lp = group_prices.price(p, parts, joint.penalty_of(p))
    assert candidates.complete(parts)
    for s in candidates.shortlists(p, parts, lp.pool_price, lp.cable_price, p.pool_cap.astype(float)):
        assert s.col.shape[1] == s.part.ok.shape[1] <= candidates.KEEP_ALL
        assert (s.col == np.arange(s.col.shape[1])).all()
        assert np.array_equal(np.isfinite(s.cost), s.part.ok)


@pytest.mark.parametrize("barred", [0, 3, 6])
def test_each_batch_keeps_its_cheapest_allowed_and_its_cheapest_barred_targets(wide, barred):
    p, parts, lp = wide
    width = 10
    level = p.used + 0.7 * (p.pool_cap - p.used)
    assert not candidates.complete(parts, width)
    for s in candidates.shortlists(p, parts, lp.pool_price, lp.cable_price, level, width=width, barred=barred):
        part = s.part
        assert part.ok.shape[1] > candidates.KEEP_ALL and s.col.shape[1] == width
        rc = greedy.priced_cost(part, lp.pool_price, lp.cable_price)
        allowed = part.ceiling >= level[part.pool][None, :] - 1e-9
        for r in range(len(part.rows)):
            kept = s.col[r][np.isfinite(s.cost[r])]
            assert len(set(kept.tolist())) == len(kept)  # each target once
            assert np.allclose(s.cost[r][np.isfinite(s.cost[r])], part.cabled(lp.cable_price)[r, kept])
            for among, n in ((allowed[r], width - barred), (~allowed[r], barred)):
                options = np.flatnonzero(among & part.ok[r])
                mine = kept[among[kept]]
                assert len(mine) == min(n, len(options))
                if len(mine) and len(mine) < len(options):  # none left out is cheaper than one kept
                    left = np.setdiff1d(options, mine)
                    assert rc[r, left].min() >= rc[r, mine].max() - 1e-12


def test_the_solve_on_shortlists_that_leave_targets_out(monkeypatch):
    """2,000 contended batches on the small fleet (the default topology's 21 targets, pools 1/64 as large and the
    demand scaled with them, so that ceilings bind: on the default topology's M/M/c pools of hundreds of servers
    they hardly ever do) with shortlists of 6 of the 21 targets: the level search runs on them, places everything
    through the full fit rule, gives the same answer twice (the bounds run in a second thread) and keeps its bound
    under its objective; the ceiling-aware bound on such lists (ceiling_aware.py priced at the capacity prices) raises it."""
    p = contended(2000, seed=3)
    assert binding_pairs(p) > 0
    penalty = joint.penalty_of(p)
    monkeypatch.setattr(candidates, "KEEP_ALL", 4)
    monkeypatch.setattr(candidates, "WIDTH", 6)
    monkeypatch.setattr(candidates, "BARRED", 2)
    seen, relevel = [], pool_levels.relevel

    def recorded(p, lists, *args, **kwargs):
        seen.append(lists)
        return relevel(p, lists, *args, **kwargs)

    monkeypatch.setattr(pool_levels, "relevel", recorded)
    runs = [pipeline.heuristic(p, penalty, 2.0) for _ in range(2)]
    assert len(seen) == 2 and seen[0][0].col.shape[1] == 6
    assert np.array_equal(runs[0].target, runs[1].target) and runs[0].bound == runs[1].bound
    target, bound = runs[0].target, runs[0].bound
    assert_feasible(p, target)
    assert bound <= joint.objective_of(p, target, penalty) + 1e-9
    monkeypatch.setattr(pipeline, "HULL_ASIDE_STEPS", 0)
    again = pipeline.heuristic(p, penalty, 2.0)
    same, without = again.target, again.bound
    assert np.array_equal(target, same)  # the bound does not change the answer
    stuck = joint.unavoidable_penalty(p, penalty)
    assert bound - stuck > (without - stuck) * (1 + 1e-3)
