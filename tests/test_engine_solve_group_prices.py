"""group_prices.py: the price stage's group LP prices only what is scarce, and its prices are nonnegative."""

from __future__ import annotations

import numpy as np

from engine_fixtures import contended, engine, problem
from scheduler import synth
from scheduler.engine.solve import greedy, group_prices
from scheduler.engine.solve import problem as joint
from scheduler.model.loader import load_topology
from scheduler.paths import DEFAULT_TOPOLOGY


def test_nothing_scarce_nothing_priced():
    topo = load_topology(DEFAULT_TOPOLOGY).value
    p = problem(engine(topo), synth.random_batches(topo, 50, seed=1), 14)
    parts = greedy.parts_of(p)
    s = group_prices.price(p, parts, joint.penalty_of(p))
    assert s.status == "OPTIMAL"
    assert np.allclose(s.pool_price, 0.0) and np.allclose(s.cable_price, 0.0)


def test_a_contended_fleet_prices_its_full_pools():
    p = contended(2000, seed=3)
    parts = greedy.parts_of(p)
    s = group_prices.price(p, parts, joint.penalty_of(p))
    assert s.status == "OPTIMAL"
    assert (s.pool_price >= 0).all() and (s.cable_price >= 0).all()
    assert (s.pool_price > 0).any()
    # far fewer rows than batches: the groups are coarse
    assert len(s.flow) < len(p.batches) / 4
