"""The transportation LP under both the fleet plan and the joint batch solve, stated the OR-Tools way.

Demand groups g (interchangeable traffic) ship `supply[g]` units to targets t. Variables: x[g,t] >= 0 for each
feasible pair, u[g] >= 0 unserved. Constraints: every group's supply is shipped or left unserved; each pool's
accelerators and each cable's Gbps are not exceeded. Objective: cost + a penalty on unserved units large enough
that serving anything feasible always beats leaving it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ortools.linear_solver import pywraplp

UNSERVED_PENALTY_FACTOR = 1000.0


@dataclass(frozen=True)
class TransportProblem:
    supply: np.ndarray  # (G,) units
    cost: np.ndarray  # (G, T) CNY per unit; inf where the pair is infeasible
    load: np.ndarray  # (G, T) accelerators per unit on the target's pool
    pool: np.ndarray  # (T,) pool index
    pool_free: np.ndarray  # (P,) accelerators free
    cable_use: np.ndarray  # (G, T, C) bool: the pair's route crosses cable c
    gbps: np.ndarray  # (G,) Gbps per unit
    cable_free: np.ndarray  # (C,) Gbps free (inf = unbounded)
    penalty: float  # CNY per unserved unit


@dataclass(frozen=True)
class TransportSolution:
    status: str
    flow: np.ndarray  # (G, T)
    unserved: np.ndarray  # (G,)
    objective: float  # cost + penalties
    cost: float  # cost of the flow alone


def unserved_penalty(unit_cost: np.ndarray) -> float:
    """Far above any feasible unit cost, so serving anything feasible always beats saving money."""
    finite = unit_cost[np.isfinite(unit_cost)]
    return UNSERVED_PENALTY_FACTOR * (float(finite.max(initial=0.0)) + 1e-6)


def solve(p: TransportProblem) -> TransportSolution:
    G, T = p.cost.shape
    solver = pywraplp.Solver.CreateSolver("GLOP")
    solver.SetNumThreads(1)  # determinism
    gs, ts = np.nonzero(np.isfinite(p.cost) & (p.supply[:, None] > 0))
    inf = solver.infinity()

    x = [solver.NumVar(0.0, inf, "") for _ in range(len(gs))]
    u = [solver.NumVar(0.0, inf, "") for _ in range(G)]

    supply_rows = [solver.Constraint(float(s), float(s)) for s in p.supply]
    for g in range(G):
        supply_rows[g].SetCoefficient(u[g], 1.0)
    pool_rows = {int(q): solver.Constraint(-inf, float(max(p.pool_free[q], 0.0))) for q in np.unique(p.pool[ts])}
    cable_rows = {
        c: solver.Constraint(-inf, float(max(p.cable_free[c], 0.0)))
        for c in range(len(p.cable_free)) if np.isfinite(p.cable_free[c]) and p.cable_use[:, :, c].any()
    }
    objective = solver.Objective()
    for k, (g, t) in enumerate(zip(gs.tolist(), ts.tolist())):
        supply_rows[g].SetCoefficient(x[k], 1.0)
        pool_rows[int(p.pool[t])].SetCoefficient(x[k], float(p.load[g, t]))
        for c in np.flatnonzero(p.cable_use[g, t]).tolist():
            if c in cable_rows:
                cable_rows[c].SetCoefficient(x[k], float(p.gbps[g]))
        objective.SetCoefficient(x[k], float(p.cost[g, t]))
    for g in range(G):
        objective.SetCoefficient(u[g], p.penalty)
    objective.SetMinimization()

    code = solver.Solve()
    status = {pywraplp.Solver.OPTIMAL: "OPTIMAL", pywraplp.Solver.FEASIBLE: "FEASIBLE"}.get(code, "ERROR")
    flow = np.zeros((G, T))
    if len(gs):
        flow[gs, ts] = np.maximum([v.solution_value() for v in x], 0.0)
    unserved = np.maximum([v.solution_value() for v in u], 0.0) if G else np.zeros(0)
    cost = float((flow * np.where(np.isfinite(p.cost), p.cost, 0.0)).sum())
    return TransportSolution(status, flow, np.asarray(unserved), float(objective.Value()), cost)
