"""The large solve's internals: the greedy's ranking, and the local search that unblocks capped pools."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_engine_support import (assert_feasible, binding_pairs, contended, engine, problem, random_batches,
                                  shrink, small_fleet, small_fleet_batches)

from scheduler import synth
from scheduler.engine.solve import problem as joint
from scheduler.engine.solve import greedy, group_prices, local_search, pipeline
from scheduler.engine.request import Reason
from scheduler.model.loader import load_topology
from scheduler.paths import DEFAULT_TOPOLOGY


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(1, 80), st.integers(0, 2**32 - 1))
def test_ranking_heads_each_row_like_a_stable_argsort_of_its_feasible_targets(rows, cols, seed):
    rng = np.random.default_rng(seed)
    rc = rng.integers(0, 6, size=(rows, cols)).astype(float)  # few values: many ties, also at the RANKED-th
    rc[rng.random((rows, cols)) < 0.3] = np.inf  # infeasible pairs
    top = greedy._Ranking(rc).top(np.arange(rows))
    assert top.shape == (rows, greedy.RANKED)
    for r in range(rows):
        expected = np.argsort(rc[r], kind="stable")[: int(np.isfinite(rc[r]).sum())][: greedy.RANKED].tolist()
        assert top[r][top[r] >= 0].tolist() == expected
        assert (top[r][len(expected):] == -1).all()


# On the small fleet (pools 1/64 of the default topology's, the batches scaled with it), where ceilings cap pools: on
# the default topology's M/M/c pools of hundreds of servers they hardly ever bind below the capacity cap.
@pytest.mark.parametrize("n, seed", [(2000, 3), (1500, 8)])
def test_unblocking_pools_lowers_the_cost_and_keeps_capacity_ceilings_and_cables(n, seed):
    p = contended(n, seed)
    assert binding_pairs(p) > 0
    penalty = joint.penalty_of(p)
    parts = greedy.parts_of(p)
    prices = group_prices.price(p, parts, penalty)
    state = greedy.greedy(p, parts, prices.pool_price, prices.cable_price)
    before = joint.objective_of(p, state.target, penalty)
    placed_before = int((state.target >= 0).sum())
    saved = local_search.unblock(p, parts, state, greedy.where_of(parts), prices.pool_price, penalty, rounds=3)
    after = joint.objective_of(p, state.target, penalty)
    assert saved > 0 and after == pytest.approx(before - saved)
    assert int((state.target >= 0).sum()) >= placed_before
    assert_feasible(p, state.target)
    # The running state agrees with the assignment it holds.
    placed = np.flatnonzero(state.target >= 0)
    for q, members in enumerate(state.members):
        assert sorted(members) == placed[p.pool[state.target[placed]] == q].tolist()


@pytest.mark.parametrize("topology, n", [("default", 6000), ("synth", 3000), ("thin cables", 2000)])
def test_the_greedy_settles_runs_at_once_exactly_as_one_by_one(monkeypatch, topology, n):
    topo = synth.generate(sites=40, regions=8, seed=2) if topology == "synth" else load_topology(DEFAULT_TOPOLOGY).value
    batches = synth.random_batches(topo, n, seed=5)
    if topology == "thin cables":
        # The small fleet (pools 1/64 of the default topology's, the batches scaled with it), every cable 0.08 Gbps
        # (a fifth of what all the batches would send): bandwidth runs out on some cables, and ceilings cap pools, as
        # they hardly ever do on the default topology's M/M/c pools of hundreds of servers.
        topo = shrink(small_fleet(), cable_gbps={c.id: 0.08 for c in small_fleet().cables})
        batches = small_fleet_batches(n, seed=5)
    eng = engine(topo)
    p = problem(eng, batches, 14)
    parts = greedy.parts_of(p)
    prices = group_prices.price(p, parts, joint.penalty_of(p))
    runs = greedy.greedy(p, parts, prices.pool_price, prices.cable_price)
    if topology == "thin cables":
        assert (runs.cable_room < 0.01 * 0.08).any()  # some cable is (all but) full
        assert (runs.cap < p.pool_cap - 1e-6).any()  # and some pool capped under its capacity by a ceiling
    monkeypatch.setattr(greedy, "CHUNK", 0)  # every batch goes one by one through place_first
    one_by_one = greedy.greedy(p, parts, prices.pool_price, prices.cable_price)
    assert (runs.target == one_by_one.target).all() and (runs.target >= 0).sum() > n // 2
    assert runs.members == one_by_one.members
    np.testing.assert_allclose(runs.load, one_by_one.load, rtol=0, atol=1e-9)
    np.testing.assert_allclose(runs.cable_room, one_by_one.cable_room, rtol=0, atol=1e-9)
    assert (runs.cap == one_by_one.cap).all()


def test_when_unblocking_pays_every_candidate_assignment_is_unblocked_and_the_cheapest_kept(monkeypatch):
    p = contended(2000, seed=3)  # the small fleet, as above
    penalty = joint.penalty_of(p)
    calls = []
    real = local_search.unblock
    monkeypatch.setattr(local_search, "unblock", lambda p_, parts, state, *a: calls.append((state, real(p_, parts, state, *a)))
                        or calls[-1][1])
    monkeypatch.setattr(pipeline, "RELEVEL_PAIRS_PER_S", 0)  # retries (and so several candidates) only without it
    target = pipeline.heuristic(p, penalty, 2.0).target
    first, saved = calls[0]
    assert saved >= pipeline.UNBLOCK_ALL_SHARE * joint.assigned_cost(p, first.target)  # ceilings bind on this fleet
    assert len(calls) == 3  # the best greedy, then the two others (two retries under a 2 s limit)
    assert joint.objective_of(p, target, penalty) == min(joint.objective_of(p, s.target, penalty) for s, _ in calls)


@pytest.mark.parametrize("cable_gbps, shortcut", [(None, True), (0.01, False)])
def test_an_uncontended_instance_is_answered_at_everyones_cheapest_target_without_pricing(
        monkeypatch, cable_gbps, shortcut):
    topo = load_topology(DEFAULT_TOPOLOGY).value
    if cable_gbps is not None:  # thin cables: the cheapest targets no longer fit together
        topo = shrink(topo, cable_gbps={c.id: cable_gbps for c in topo.cables})
    eng = engine(topo)
    p = problem(eng, random_batches(topo, 400, seed=9, requests=(1, 2)), 14)
    penalty = joint.penalty_of(p)
    priced_calls = []
    real = group_prices.price
    monkeypatch.setattr(group_prices, "price", lambda *a: priced_calls.append(1) or real(*a))
    found = pipeline.heuristic(p, penalty, 1.0)
    target, status, bound = found.target, found.status, found.bound
    assert (not priced_calls) == shortcut
    if shortcut:
        assert status == "OPTIMAL" and bound == pytest.approx(joint.objective_of(p, target, penalty))
        for m in p.models:  # each at its own cheapest feasible target
            cost = np.where(p.reason[m] == Reason.OK, p.est[m].cost_cny, np.inf)
            t = target[p.rows[m]]
            assert (t - p.offset[m] == np.argmin(cost, axis=1)).all()
    assert_feasible(p, target)
