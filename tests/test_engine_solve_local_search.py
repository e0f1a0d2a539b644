"""local_search.py: the moves that lift the caps a few latency-tight batches put on priced pools."""

import numpy as np
import pytest
from engine_fixtures import assert_feasible, binding_pairs, contended

from scheduler.engine.solve import problem as joint
from scheduler.engine.solve import greedy, group_prices, local_search, pipeline


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
