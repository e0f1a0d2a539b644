"""transport.py: the transportation LP under the fleet plan and the batch solver: optimal flows within the pools'
and cables' room, unserved demand at the penalty, and duals that price what binds."""

from __future__ import annotations

import numpy as np
import pytest

from scheduler.engine import transport


def _problem(pool_free, cable_free=np.zeros(0), penalty=100.0, cable_use=None, gbps=None):
    # Two groups, two targets on two pools: group 0 is cheaper on target 0, group 1 on target 1; both load 1 a unit.
    cost = np.array([[1.0, 3.0], [2.0, 1.5]])
    load = np.ones((2, 2))
    C = len(cable_free)
    return transport.TransportProblem(
        supply=np.array([4.0, 4.0]), cost=cost, load=load, pool=np.array([0, 1]), pool_free=np.asarray(pool_free, float),
        cable_use=np.zeros((2, 2, C), bool) if cable_use is None else cable_use,
        gbps=np.zeros(2) if gbps is None else gbps, cable_free=cable_free, penalty=penalty)


def test_uncontended_every_group_takes_its_cheapest_target_and_nothing_is_priced():
    s = transport.solve(_problem([10.0, 10.0]))
    assert s.status == "OPTIMAL"
    assert s.flow == pytest.approx(np.array([[4.0, 0.0], [0.0, 4.0]]))
    assert s.objective == pytest.approx(4 * 1.0 + 4 * 1.5) and s.cost == pytest.approx(s.objective)
    assert s.pool_price == pytest.approx(np.zeros(2))


def test_a_full_pool_is_priced_and_its_overflow_goes_to_the_next_best_target():
    s = transport.solve(_problem([5.0, 10.0]))
    # pool 0 takes 4 of group 0 and at most 1 more; group 1 stays on pool 1 (1.5 < 2): nothing to move
    assert s.flow.sum(axis=1) == pytest.approx([4.0, 4.0])
    s = transport.solve(_problem([3.0, 10.0]))  # now group 0 overflows: 1 unit to target 1 at 3.0 instead of 1.0
    assert s.flow[0] == pytest.approx([3.0, 1.0])
    assert s.objective == pytest.approx(3 * 1.0 + 1 * 3.0 + 4 * 1.5)
    assert s.pool_price[0] == pytest.approx(2.0)  # one more accelerator on pool 0 saves 3.0 - 1.0


def test_demand_past_all_room_is_unserved_at_the_penalty():
    s = transport.solve(_problem([2.0, 2.0], penalty=50.0))
    assert s.unserved.sum() == pytest.approx(4.0)
    assert (s.flow.sum(axis=0) <= np.array([2.0, 2.0]) + 1e-9).all()
    assert s.objective == pytest.approx(s.cost + 50.0 * 4.0)


def test_a_cable_caps_the_flows_that_cross_it():
    use = np.zeros((2, 2, 1), bool)
    use[:, 0, 0] = True  # every route to target 0 crosses the cable
    s = transport.solve(_problem([10.0, 10.0], cable_free=np.array([2.0]), cable_use=use, gbps=np.array([1.0, 1.0])))
    assert s.flow[:, 0].sum() == pytest.approx(2.0)
    assert s.cable_price[0] > 0


def test_the_penalty_is_far_above_any_unit_cost():
    assert transport.unserved_penalty(np.array([1e-6, 3e-6])) >= transport.UNSERVED_PENALTY_FACTOR * 3e-6
