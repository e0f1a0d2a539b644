"""ceiling_aware.py: the ceiling-aware bound never exceeds the true optimum, and it is tighter than the capacity prices."""

from __future__ import annotations

import numpy as np
import pytest
from engine_fixtures import binding_pairs, contended, priced_instance, small_instances

from scheduler.engine.solve import problem as joint
from scheduler.engine.solve import candidates, pipeline, pool_levels
from scheduler.engine.solve.bounds import ceiling_aware

INSTANCES = small_instances()

@pytest.mark.parametrize("lists,priced_at", [("all", None), ("all", "lp"), ("two", "lp"), ("two", "random")])
@pytest.mark.parametrize("grid", [ceiling_aware.LEVELS, 2])
@pytest.mark.parametrize("name,topology,batches,hour", INSTANCES, ids=[i[0] for i in INSTANCES])
def test_the_hull_bound_never_exceeds_the_true_optimum(monkeypatch, name, topology, batches, hour, grid, lists,
                                                       priced_at):
    """Weak duality at any multipliers: at the batches' values under the LP's prices, at random ones around them
    (above and below), and after the ascent; with a grid of levels fine enough to hold every ceiling on these small
    instances, and with a coarse one (levels between grid points relaxed); with every pair listed and with two per
    batch (the others held off by the multipliers' caps); priced at zero, at the LP's prices or at random ones."""
    monkeypatch.setattr(ceiling_aware, "LEVELS", grid)
    p, penalty, best, parts, lp = priced_instance(topology, batches, hour)
    rng = np.random.default_rng(len(name))
    mu = {None: None, "lp": lp.pool_price, "random": rng.uniform(0.0, 2.0, len(lp.pool_price)) * lp.pool_price.max()
          }[priced_at]
    anywhere = np.full(len(p.pool_cap), -np.inf)
    if lists == "two":
        monkeypatch.setattr(candidates, "KEEP_ALL", 0)
        short = candidates.shortlists(p, parts, lp.pool_price, lp.cable_price, anywhere, width=2, barred=0)
        assert any(s.col.shape[1] < s.part.ok.shape[1] for s in short)
    else:
        short = candidates.shortlists(p, parts, lp.pool_price, lp.cable_price, anywhere)
    h = ceiling_aware.Hull(p, short, penalty, mu)
    start = pool_levels.values(p, short, anywhere, lp.pool_price if mu is None else mu, penalty)
    tolerance = 1e-7 * max(1.0, abs(best.objective))
    for lam in [start] + [start * rng.uniform(0.0, f, len(start)) for f in (1.0, 2.0, 5.0)]:
        assert h.value(lam)[0] <= best.objective + tolerance
    for target in (best.objective * 1.01 + 1e-6, best.objective * 1.5):
        assert ceiling_aware.bound(h, start, target, 60) <= best.objective + tolerance


def test_on_a_fleet_the_ceilings_cap_the_hull_bound_is_tighter_than_the_capacity_prices(monkeypatch):
    # The small fleet (pools 1/64 of the default topology's, 2,000 batches scaled with it): on the default
    # topology's M/M/c pools of hundreds of servers the ceilings hardly ever bind below the capacity cap.
    p = contended(2000, seed=3)
    assert binding_pairs(p) > 0
    penalty = joint.penalty_of(p)
    found = pipeline.heuristic(p, penalty, 2.0)
    target, with_hull = found.target, found.bound
    monkeypatch.setattr(pipeline, "HULL_STEPS", 0)
    again = pipeline.heuristic(p, penalty, 2.0)
    same, without = again.target, again.bound
    assert np.array_equal(target, same)  # the bound does not change the answer
    stuck = joint.unavoidable_penalty(p, penalty)
    # Measured: 0.4-0.6 % higher (more of the gap closed) on such instances.
    assert with_hull - stuck > (without - stuck) * (1 + 1e-3)
    assert with_hull <= joint.objective_of(p, target, penalty)
