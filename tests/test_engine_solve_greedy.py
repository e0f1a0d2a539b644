"""greedy.py: the ranking of each batch's cheapest targets, and whole runs of the queue settled at once exactly as
one by one would settle them."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from engine_fixtures import engine, problem, shrink, small_fleet, small_fleet_batches

from scheduler import synth
from scheduler.engine.solve import problem as joint
from scheduler.engine.solve import greedy, group_prices
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
