"""Many-cell fleet plans, planned as groups (scheduler/engine/fleet/groups.py): every member keeps its SLO, the bound
stays valid, and the plan stays close to the exact optimum where the oracle can still run."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from ortools.linear_solver import pywraplp

import fleet_oracle
from scheduler.engine.core import Engine
from scheduler.engine.fleet import groups, optimal
from scheduler.engine.request import DemandCell
from scheduler.model.loader import load_topology
from scheduler.paths import DEFAULT_TOPOLOGY
from test_engine_fleet_exact import fleet_problem_of, shares_of, slo_problems
from engine_fixtures import SMALL_DIVISOR, small_fleet

plan_module = importlib.import_module("scheduler.engine.fleet.plan")


def varied_cells(eng: Engine, n: int, load: float, seed: int) -> list[DemandCell]:
    """`n` cells of every shape: regions, models, request sizes and SLOs drawn at random (seeded)."""
    topo = eng.catalog.topology
    rng = np.random.default_rng(seed)
    regions, models = [r.id for r in topo.regions], [m.id for m in topo.models]
    return [DemandCell(regions[rng.integers(len(regions))], models[rng.integers(len(models))],
                       float(rng.uniform(0.5, 1.5)) * load * 30e6 / n * 2,
                       input_tokens=int(rng.integers(200, 4000)), output_tokens=int(rng.integers(50, 1000)),
                       ttft_ms=float(rng.uniform(600, 2000))) for _ in range(n)]


@pytest.fixture(scope="module")
def eng() -> Engine:
    return Engine.from_topology(load_topology(DEFAULT_TOPOLOGY).value, "test")


@pytest.fixture(scope="module")
def small() -> Engine:
    """Pools 1/SMALL_DIVISOR as large: few servers each, so SLO ceilings bind below the capacity cap."""
    return Engine.from_topology(small_fleet(), "test")


@pytest.mark.parametrize("load", [0.4, 0.9])
def test_grouped_plans_match_the_exact_optimum_on_small_cases(eng, monkeypatch, load):
    """Forced into groups (12 to plan, 8 to bound) on 24 cells, where the oracle still runs: the plan is a real plan
    of the cells (never below the optimum, every SLO kept) within 0.5 % of it, and the bound is below it."""
    monkeypatch.setattr(plan_module, "MAX_GROUPS", 12)
    monkeypatch.setattr(plan_module, "BOUND_GROUPS", 8)
    cells = varied_cells(eng, 24, load, seed=3)
    plan = eng.plan(cells, hour=14)
    fp = fleet_problem_of(eng, cells, 14)
    exact = fleet_oracle.solve(fp, "levels")
    assert exact.status == pywraplp.Solver.OPTIMAL
    objective = exact.objective * 3600.0
    assert groups.conservative(fp, 12) is not None  # the grouped path ran
    assert plan.objective_cny_per_hour >= objective * (1 - 1e-6)
    assert plan.objective_cny_per_hour <= objective * 1.005
    assert plan.bound_cny_per_hour <= objective * (1 + 1e-6)
    assert slo_problems(eng.catalog, shares_of(eng, plan), 14) == []


def test_a_thousand_cells_plan_as_groups_keep_every_slo_and_a_valid_bound(eng):
    cells = varied_cells(eng, 1000, 0.5, seed=1)
    plan = eng.plan(cells, hour=14)
    assert plan.status in ("OPTIMAL", "FEASIBLE")
    assert plan.unserved_tokens_per_s == pytest.approx(0.0, abs=1e-6)
    assert slo_problems(eng.catalog, shares_of(eng, plan), 14) == []
    # The cells' own search (no groups) is a plan too: the bound must lie below it.
    alone = optimal.solve(fleet_problem_of(eng, cells, 14))
    assert plan.bound_cny_per_hour <= alone.objective * 3600.0 * (1 + 1e-9)
    assert plan.objective_cny_per_hour <= alone.objective * 3600.0 * 1.005
    assert plan.gap <= 0.01


def test_members_of_a_group_share_its_fractions(eng):
    cells = varied_cells(eng, 600, 0.3, seed=2)
    fp = fleet_problem_of(eng, cells, 14)
    grouping = groups.conservative(fp, 50)
    assert grouping is not None and len(grouping.cells.supply) <= 60
    assert np.allclose(np.bincount(grouping.member_of, weights=fp.supply), grouping.cells.supply)
    flow = grouping.spread(optimal.solve(grouping.cells).flow, fp)
    share = flow / fp.supply[:, None]
    for g in range(len(grouping.cells.supply)):
        members = np.flatnonzero(grouping.member_of == g)
        assert np.allclose(share[members], share[members[0]])
        # Every member may use every pool its group uses, up to the group's load there.
        used = flow[members].sum(axis=0) > 0
        assert np.isfinite(fp.cost[np.ix_(members, np.flatnonzero(used))]).all()


def test_a_start_at_the_optimum_s_levels_returns_the_optimum(small):
    """`optimal.solve(start=...)` tries the given levels (how the groups' plan seeds the cells' own search): started
    at the levels of the exact optimum, it must return the optimum even with no LP to spare for searching. On pools
    1/64 as large (the same 60 % load of them), where the cells' ceilings bind."""
    cells = varied_cells(small, 24, 0.6 / SMALL_DIVISOR, seed=4)  # unaided: 4e-4 above the optimum
    fp = fleet_problem_of(small, cells, 14)
    exact = fleet_oracle.solve(fp, "levels")
    start = optimal.serving_levels(fp, exact.flow)
    s = optimal.solve(fp, max_solves=3, start=start)
    assert s.objective == pytest.approx(exact.objective, rel=1e-6)
    unaided = optimal.solve(fp, max_solves=2)
    assert unaided.objective > exact.objective * (1 + 1e-6)  # the case needs the start
