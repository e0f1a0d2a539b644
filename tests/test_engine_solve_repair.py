"""repair.py: re-packing with CP-SAT around the batches the greedy left out lowers the cost (a re-pack is kept only
if cheaper) and keeps every rule."""

from __future__ import annotations


from engine_fixtures import NARROW, SMALL, assert_feasible, engine, problem, random_batches
from scheduler.engine.solve import greedy, group_prices, repair
from scheduler.engine.solve import problem as joint


def test_repair_lowers_the_cost_and_keeps_every_rule():
    for topology, seed, hour in ((SMALL, 0, 14), (SMALL, 2, 14), (NARROW, 3, 3)):  # pools, or cables, bind
        p = problem(engine(topology), random_batches(topology, 30, seed, requests=(3, 25), ttft=(250, 1500)), hour)
        penalty = joint.penalty_of(p)
        parts = greedy.parts_of(p)
        prices = group_prices.price(p, parts, penalty)
        state = greedy.greedy(p, parts, prices.pool_price, prices.cable_price)
        before = joint.objective_of(p, state.target, penalty)
        repair.repair(p, parts, state, penalty, 2.0)
        assert joint.objective_of(p, state.target, penalty) < before - 1.0  # the re-packs found cheaper room
        assert_feasible(p, state.target)
