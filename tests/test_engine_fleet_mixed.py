"""Fleet plans over cells of different SLOs and request shapes sharing pools (where a search over pool levels alone
fell 0.9-24 % short of the optimum in an outside check), and the reasons a plan gives for what it refuses."""

from __future__ import annotations

import numpy as np
import pytest
from ortools.linear_solver import pywraplp

import fleet_oracle
from scheduler.engine.core import Engine
from scheduler.engine.request import DemandCell, Reason
from scheduler.model.loader import load_topology
from scheduler.paths import DEFAULT_TOPOLOGY
from test_engine_fleet_exact import fleet_problem_of, oracle_wire, shares_of, slo_problems


@pytest.fixture(scope="module")
def eng() -> Engine:
    return Engine.from_topology(load_topology(DEFAULT_TOPOLOGY).value, "test")


def against_oracle(eng: Engine, cells: list[DemandCell], hour: int) -> None:
    plan = eng.plan(cells, hour=hour)
    fp = fleet_problem_of(eng, cells, hour)
    exact = fleet_oracle.solve(fp, "levels")
    assert exact.status == pywraplp.Solver.OPTIMAL
    served = oracle_wire(fp, exact.flow)
    text = (f"plan cost {plan.cost_cny_per_hour:.3f} vs {exact.cost * 3600:.3f}, objective "
            f"{plan.objective_cny_per_hour:.3f} vs {exact.objective * 3600:.3f}, served {plan.served_tokens_per_s:.1f} "
            f"vs {served:.1f}, status {plan.status}, gap {plan.gap:.2e}")
    assert plan.served_tokens_per_s >= served * (1 - 1e-4), text
    # The search stops within 0.1 % of its bound, measured on the cost: so within that of the optimum.
    assert plan.objective_cny_per_hour - exact.objective * 3600 <= 1e-3 * plan.cost_cny_per_hour + 1e-6, text
    assert plan.cost_cny_per_hour <= exact.cost * 3600 * 1.005 + 1e-6, text
    assert plan.bound_cny_per_hour <= exact.objective * 3600 * (1 + 1e-6), text
    assert slo_problems(eng.catalog, shares_of(eng, plan), hour) == []


def test_two_models_of_different_shapes_and_slos(eng):
    against_oracle(eng, [
        DemandCell("ho-chi-minh-city", "llm-8b", 34553592.0, input_tokens=4000, output_tokens=200, ttft_ms=500),
        DemandCell("singapore", "llm-70b", 11161414.0, input_tokens=500, output_tokens=800, ttft_ms=500)], 3)


def test_three_cells_that_overload_the_shared_pools(eng):
    against_oracle(eng, [
        DemandCell("kuala-lumpur", "llm-70b", 8301792.0, input_tokens=2000, output_tokens=500, ttft_ms=900),
        DemandCell("ho-chi-minh-city", "llm-8b", 128539930.0, input_tokens=4000, output_tokens=200, ttft_ms=350),
        DemandCell("bangkok", "llm-70b", 7536193.0, input_tokens=800, output_tokens=300, ttft_ms=900)], 23)


@pytest.mark.parametrize("seed", range(12))
def test_random_mixes_of_shapes_and_slos(eng, seed):
    rng = np.random.default_rng(seed)
    regions = [r.id for r in eng.catalog.topology.regions]
    cells = []
    for _ in range(int(rng.integers(2, 7))):
        model = ("llm-70b", "llm-8b")[int(rng.integers(2))]
        capacity = 29.9e6 if model == "llm-70b" else 239.3e6
        cells.append(DemandCell(regions[int(rng.integers(len(regions)))], model,
                                float(capacity * rng.uniform(0.05, 0.5)), input_tokens=int(rng.integers(200, 4001)),
                                output_tokens=int(rng.integers(50, 1001)),
                                ttft_ms=float(rng.choice([350, 500, 700, 900, 1200, 2000]))))
    against_oracle(eng, cells, int(rng.integers(24)))


def test_an_slo_no_site_can_meet_is_refused_as_such_not_as_capacity(eng):
    plan = eng.plan([DemandCell("singapore", "llm-70b", 3e6, ttft_ms=10.0)], hour=3)
    assert plan.rows[0].reason is Reason.TTFT
    assert plan.rows[0].reason is eng.place(plan.rows[0].cell.as_batch(), hour=3, reserve=False).reason


def test_demand_cut_off_by_full_cables_is_refused_as_cable(eng):
    regions = [r.id for r in eng.catalog.topology.regions]
    plan = eng.plan([DemandCell(r, "llm-8b", 0.95 * 239.3e6 / 7) for r in regions], hour=3)
    short = {r.cell.region: r.reason for r in plan.rows if r.unserved_tokens_per_s > 1e-6 * r.cell.tokens_per_s}
    assert short and set(short.values()) == {Reason.CABLE}
    assert any(u < 0.5 for u in plan.pool_utilization.values())  # accelerators were left: bandwidth ran out


def test_a_plan_that_refuses_what_it_could_serve_is_not_called_optimal(eng):
    """With demand far past capacity the penalty dwarfs the cost, so a gap measured on the objective looked tiny
    while the plan refused 0.055 % more than it had to: the gap is measured against the plan's cost."""
    regions = [r.id for r in eng.catalog.topology.regions]
    cells = [DemandCell(r, "llm-70b", 1e12) for r in regions]
    plan = eng.plan(cells, hour=3)
    fp = fleet_problem_of(eng, cells, 3)
    exact = fleet_oracle.solve(fp, "levels")
    served = oracle_wire(fp, exact.flow)
    if plan.status == "OPTIMAL":
        assert plan.served_tokens_per_s >= served * (1 - 1e-6)
    assert plan.served_tokens_per_s >= served * (1 - 1e-4)
