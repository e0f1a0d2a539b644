"""pool_levels.py: pool levels searched and assigned at by LP, always feasible, kept only when cheaper."""

from __future__ import annotations

import numpy as np
import pytest
from engine_fixtures import (
    assert_feasible, binding_pairs, contended, engine, recheck, small_fleet, small_fleet_batches,
)

from scheduler import synth
from scheduler.engine.solve import problem as joint
from scheduler.engine.solve import candidates, greedy, group_prices, pipeline, pool_levels
from scheduler.engine.core import Engine
from scheduler.engine.request import Reason
from scheduler.model.loader import load_topology
from scheduler.model.schema import Topology
from scheduler.paths import DEFAULT_TOPOLOGY


@pytest.fixture(scope="module", name="contended")
def contended_fixture():
    """2,000 batches on the small fleet (pools 1/64 of the default topology's, demand scaled with them) at the
    peak hour: ceilings cap several pools. (On the default topology's M/M/c pools of hundreds of servers they
    hardly ever bind below the capacity cap.)"""
    p = contended(2000, seed=3)
    assert binding_pairs(p) > 0
    return p, joint.penalty_of(p)


def _members_agree(p, state) -> None:
    placed = np.flatnonzero(state.target >= 0)
    for q, members in enumerate(state.members):
        assert sorted(members) == placed[p.pool[state.target[placed]] == q].tolist()


def test_levels_of_an_assignment_are_the_least_ceiling_on_each_pool(contended):
    p, penalty = contended
    parts = greedy.parts_of(p)
    prices = group_prices.price(p, parts, penalty)
    state = greedy.greedy(p, parts, prices.pool_price, prices.cable_price)
    level = pool_levels.levels_of(p, parts, state.target)
    for q in range(len(p.pool_cap)):
        ceilings = [greedy.pair_of(parts, greedy.where_of(parts), state, p, i) for i in state.members[q]]
        least = min((part.ceiling[r, k] for part, r, k in ceilings), default=p.pool_cap[q])
        assert level[q] == pytest.approx(max(least, p.used[q]))
        assert state.load[q] <= level[q] + 1e-6


def test_the_level_search_beats_the_greedy_and_local_search_and_stays_feasible(contended, monkeypatch):
    p, penalty = contended
    with_levels = pipeline.heuristic(p, penalty, 2.0).target
    monkeypatch.setattr(pipeline, "RELEVEL_PAIRS_PER_S", 0)
    without = pipeline.heuristic(p, penalty, 2.0).target
    # Measured: 0.3-0.6 % cheaper on such instances (benchmarks/placement.py has the figures). The penalty of the
    # batches no target can take is the same for both and left out.
    stuck = joint.unavoidable_penalty(p, penalty)
    assert (joint.objective_of(p, with_levels, penalty) - stuck
            < (joint.objective_of(p, without, penalty) - stuck) * (1 - 1e-3))
    assert int((with_levels >= 0).sum()) >= int((without >= 0).sum())
    assert_feasible(p, with_levels)
    # Ceilings cap several pools of the answer below their capacity (the search has levels to set).
    assert (pool_levels.levels_of(p, greedy.parts_of(p), with_levels) < p.pool_cap - 1e-6).sum() >= 3


@pytest.mark.parametrize("share", [0.5, 0.8, 1.0])
def test_assigning_at_any_levels_keeps_capacity_every_ceiling_and_cables(contended, share):
    p, penalty = contended
    parts = greedy.parts_of(p)
    prices = group_prices.price(p, parts, penalty)
    level = p.used + share * (p.pool_cap - p.used)
    lists = candidates.shortlists(p, parts, prices.pool_price, prices.cable_price, level)
    state = pool_levels.assign_at(p, lists, level, prices.pool_price, penalty)
    assert_feasible(p, state.target)
    _members_agree(p, state)
    # Every batch that still had a feasible target it fits alone at the end was placed, or the room was gone.
    assert (state.target >= 0).sum() > 0.5 * len(p.batches)


def test_a_pool_capped_by_tight_batches_is_lifted_when_that_pays(contended):
    """Start from levels that cap every pool at 60 % of its room: the search raises the ones whose capacity is
    worth more than moving the batches that needed the low level."""
    p, penalty = contended
    parts = greedy.parts_of(p)
    prices = group_prices.price(p, parts, penalty)
    low = p.used + 0.6 * (p.pool_cap - p.used)
    lists = candidates.shortlists(p, parts, prices.pool_price, prices.cable_price, low)
    start = pool_levels.assign_at(p, lists, low, prices.pool_price, penalty)
    upper = joint.objective_of(p, start.target, penalty)
    after = pool_levels.relevel(p, lists, start.target, prices.pool_price, penalty, upper)[0]
    assert joint.objective_of(p, after.target, penalty) < upper
    assert (pool_levels.levels_of(p, parts, after.target) > pool_levels.levels_of(p, parts, start.target) + 1e-6).any()
    assert_feasible(p, after.target)


def test_same_levels_same_answer(contended):
    p, penalty = contended
    parts = greedy.parts_of(p)
    prices = group_prices.price(p, parts, penalty)
    state = greedy.greedy(p, parts, prices.pool_price, prices.cable_price)
    upper = joint.objective_of(p, state.target, penalty)
    level = pool_levels.levels_of(p, parts, state.target)
    lists = candidates.shortlists(p, parts, prices.pool_price, prices.cable_price, level)
    runs = [pool_levels.relevel(p, lists, state.target, prices.pool_price, penalty, upper, moves=2)[0] for _ in range(2)]
    assert np.array_equal(runs[0].target, runs[1].target)


def test_a_contended_call_with_a_model_no_pool_serves():
    """Regression: the large path crashed (argmin of an empty row) when one model had no target at all."""
    default = load_topology(DEFAULT_TOPOLOGY).value
    data = default.model_dump(mode="json")
    served, unserved = default.models[0].id, default.models[1].id
    for site in data["sites"]:
        for pool in site["pools"]:
            pool["models"] = [served]
    topo = Topology.model_validate(data)
    eng = Engine.from_topology(topo, "one-model")
    batches = synth.random_batches(topo, 6000, seed=3)
    result = eng.place_many(batches, hour=14, reserve=False)
    assert result.solution.method == "lp-priced-greedy"
    for b, d in zip(batches, result.decisions):
        if b.model == unserved:
            assert not d.placed and d.reason is Reason.NOT_SERVED
    assert 0 < result.placed < sum(b.model == served for b in batches) + 1
    assert result.solution.best_bound <= result.solution.objective


def test_with_live_reservations_the_levels_respect_their_promises(monkeypatch):
    """A second contended call on a fleet that already carries 1,000 placements (their load, and the ceilings their
    SLOs put on the pools; the small fleet, whose few-server pools let those ceilings bind below capacity):
    everything placed by both calls meets its SLO once all of it runs, and pool_levels.py's answer is no dearer than the
    greedy and local search alone on the same state."""
    topo = small_fleet()
    costs = {}
    for relevel in (False, True):
        monkeypatch.setattr(pipeline, "RELEVEL_PAIRS_PER_S", 0)
        eng = engine(topo)
        first = eng.place_many(small_fleet_batches(1000, seed=21), hour=14, reserve=True)
        live = eng.ceilings()
        assert (live < eng.catalog.pool_capacity - 1e-9).any()  # the first call's promises cap some pool
        if relevel:
            monkeypatch.undo()
        second = eng.place_many(small_fleet_batches(2000, seed=22), hour=14, reserve=True)
        assert second.solution.method == "lp-priced-greedy"
        assert recheck(eng.catalog, first.decisions + second.decisions, 14) == []
        assert second.solution.best_bound <= second.solution.objective
        costs[relevel] = second.solution.objective
    assert costs[True] <= costs[False]


def test_move_estimates_match_a_pool_by_pool_count(contended):
    """_candidates prices every pool's moves at once; here each pool's best move is found again pair by pair: the
    capacity a raise frees at the pool's price less what the batches it bars lose, or what a lowering admits less
    the capacity it gives up."""
    p, penalty = contended
    parts = greedy.parts_of(p)
    prices = group_prices.price(p, parts, penalty)
    state = greedy.greedy(p, parts, prices.pool_price, prices.cable_price)
    level = pool_levels.levels_of(p, parts, state.target)
    lists = candidates.shortlists(p, parts, prices.pool_price, prices.cable_price, level)
    view = pool_levels._LevelChoices(p, lists, level, prices.pool_price, penalty)
    found = {q: (change, new) for change, q, new in pool_levels._candidates(p, lists, level, prices.pool_price, view)}
    pairs = {q: [] for q in range(len(level))}
    for s, raw, k, value, second, go in zip(lists, view.raw, view.first, view.value, view.second, view.takes):
        for r, n in zip(*np.nonzero(np.isfinite(s.cost))):
            q = int(s.pool[r, n])
            mine = bool(go[r]) and int(s.pool[r, k[r]]) == q
            pairs[q].append((s.ceiling[r, n], second[r] - value[r] if mine else 0.0, max(value[r] - raw[r, n], 0.0)))
    for q, items in pairs.items():
        here, price = level[q], prices.pool_price[q]
        t, loss, gain = (np.array(x, dtype=float).reshape(-1) for x in zip(*items)) if items else (np.zeros(0),) * 3
        new = np.unique(np.append(t[t >= p.used[q]], p.pool_cap[q]))
        new = new[np.abs(new - here) > 1e-9]
        barred = (t[None, :] >= here - 1e-9) & (t[None, :] < new[:, None] - 1e-9)  # by a raise to each new level
        admitted = (t[None, :] >= new[:, None] - 1e-9) & (t[None, :] < here - 1e-9)  # by a lowering
        change = np.where(new > here, (barred * loss).sum(axis=1) - price * (new - here),
                          price * (here - new) - (admitted * gain).sum(axis=1))
        if not len(change) or change.min() >= -1e-12:
            assert q not in found or found[q][0] >= -1e-9
        else:
            assert found[q][0] == pytest.approx(change.min(), rel=1e-6, abs=1e-12)


def test_no_batch_is_left_unplaced_where_it_fits_under_the_real_caps():
    """The searched level caps a pool only while the search chooses what it serves: afterwards a batch that fits
    under the pool's capacity and every ceiling it holds is placed, not left at full penalty (on this instance 28
    such batches stayed unplaced when the final fill kept the level's cap)."""
    p = contended(3000, seed=3)
    target = pipeline.heuristic(p, joint.penalty_of(p), 2.0).target
    assert_feasible(p, target)
    parts = greedy.parts_of(p)
    where = greedy.where_of(parts)
    state = greedy.fresh_state(p)
    for i in np.flatnonzero(target >= 0).tolist():
        j, r = where[i]
        greedy.take(p, parts[j], state, i, r, int(target[i]) - p.offset[parts[j].m])
    unplaced = np.flatnonzero(target < 0).tolist()
    assert unplaced  # the instance leaves some demand out: the check below is not empty
    for i in unplaced:
        j, r = where[i]
        part = parts[j]
        assert not any(greedy.fits(p, part, state, r, k) for k in np.flatnonzero(part.ok[r]).tolist()), i
