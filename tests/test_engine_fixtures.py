"""engine_fixtures.py: the helpers the engine tests judge the engine by are right themselves."""

from __future__ import annotations

import math

import numpy as np

from engine_fixtures import TINY, engine, exhaustive, problem, recheck, shrink
from scheduler.engine.request import Batch, Reason
from scheduler.engine.solve import problem as joint


def test_exhaustive_finds_the_obvious_optimum():
    # One batch, three sites, no capacity pressure: the optimum is the single cheapest feasible target.
    eng = engine(TINY)
    p = problem(eng, [Batch("singapore", "llm-70b", 1000, 200, 2)], hour=3)
    best = exhaustive(p, joint.penalty_of(p))
    cheapest = int(np.argmin(np.where(p.reason["llm-70b"][0] == Reason.OK, p.est["llm-70b"].cost_cny[0], np.inf)))
    assert best.target == (cheapest,) and best.unplaced == 0


def test_recheck_catches_an_overloaded_pool():
    eng = engine(shrink(TINY, counts={"zhongwei": 2, "shaoguan": 2, "shantou": 2}))
    d = eng.place(Batch("singapore", "llm-70b", 1000, 200, 1), hour=3, reserve=False)
    assert d.placed and recheck(eng.catalog, [d], 3) == []
    crowded = [d] * 40  # the same placement forty times over fills the pool past its capacity
    assert any("capacity" in msg for msg in recheck(eng.catalog, crowded, 3))
    assert math.isfinite(d.ceiling)
