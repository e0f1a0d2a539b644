"""The transportation LP under both the fleet plan and the joint batch solve, stated the OR-Tools way.

Demand groups g (interchangeable traffic) ship `supply[g]` units to targets t. Variables: x[g,t] >= 0 for each
feasible pair, u[g] >= 0 unserved. Constraints: every group's supply is shipped or left unserved; each pool's
accelerators and each cable's Gbps are not exceeded. Objective: cost + a penalty on unserved units large enough
that serving anything feasible always beats leaving it.

The model is written straight into an MPModelProto with array calls (no Python object per variable) and solved by
GLOP; the answer carries the capacity rows' duals as nonnegative prices, which the batch solver uses to steer its
assignment and to compute a Lagrangian lower bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ortools.linear_solver import linear_solver_pb2, pywraplp

UNSERVED_PENALTY_FACTOR = 1000.0
_EMPTY = np.zeros(0)


@dataclass(frozen=True)
class TransportProblem:
    supply: np.ndarray  # (G,) units
    cost: np.ndarray  # (G, T) CNY per unit; inf where the pair is infeasible
    load: np.ndarray  # (G, T) accelerators per unit on the target's pool
    pool: np.ndarray  # (T,) pool index
    pool_free: np.ndarray  # (P,) accelerators free
    cable_use: np.ndarray  # (G, T, C) bool or share: the pair's route crosses cable c
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
    pool_price: np.ndarray = field(default_factory=lambda: _EMPTY)  # (P,) CNY per accelerator, >= 0
    cable_price: np.ndarray = field(default_factory=lambda: _EMPTY)  # (C,) CNY per Gbps, >= 0


def unserved_penalty(unit_cost: np.ndarray) -> float:
    """Far above any feasible unit cost, so serving anything feasible always beats saving money."""
    finite = unit_cost[np.isfinite(unit_cost)]
    return UNSERVED_PENALTY_FACTOR * (float(finite.max(initial=0.0)) + 1e-6)


def solve(p: TransportProblem, glop_parameters: str = "") -> TransportSolution:
    """`glop_parameters`: GLOP's own parameters in text format (e.g. \"use_dual_simplex: true\")."""
    G, T = p.cost.shape
    P, C = len(p.pool_free), len(p.cable_free)
    gs, ts = np.nonzero(np.isfinite(p.cost) & (p.supply[:, None] > 0))
    n = len(gs)
    inf = float("inf")
    model = linear_solver_pb2.MPModelProto()
    add = model.variable.add
    for c in p.cost[gs, ts].tolist():
        add(lower_bound=0.0, upper_bound=inf, objective_coefficient=c)
    for _ in range(G):
        add(lower_bound=0.0, upper_bound=inf, objective_coefficient=float(p.penalty))

    def row(lo: float, hi: float, idx, coef) -> None:
        ct = model.constraint.add(lower_bound=lo, upper_bound=hi)
        ct.var_index.extend(idx)
        ct.coefficient.extend(coef)

    by_group = np.argsort(gs, kind="stable")
    cuts = np.searchsorted(gs[by_group], np.arange(G + 1))
    for g in range(G):
        idx = by_group[cuts[g]:cuts[g + 1]].tolist()
        row(float(p.supply[g]), float(p.supply[g]), idx + [n + g], [1.0] * (len(idx) + 1))
    load = p.load[gs, ts]
    pools = p.pool[ts]
    by_pool = np.argsort(pools, kind="stable")
    pcuts = np.searchsorted(pools[by_pool], np.arange(P + 1))
    for q in range(P):  # one row per pool, empty or not, so that row P+q's dual is pool q's
        idx = by_pool[pcuts[q]:pcuts[q + 1]]
        row(-inf, float(max(p.pool_free[q], 0.0)), idx.tolist(), load[idx].tolist())
    cable_rows = []
    if C and n:
        use = p.cable_use[gs, ts].astype(float)  # (n, C): bool, or the share of the group's traffic crossing
        for c in range(C):
            if np.isfinite(p.cable_free[c]):
                idx = np.flatnonzero(use[:, c] > 0)
                if len(idx):
                    row(-inf, float(max(p.cable_free[c], 0.0)), idx.tolist(), (use[idx, c] * p.gbps[gs[idx]]).tolist())
                    cable_rows.append(c)

    request = linear_solver_pb2.MPModelRequest(
        model=model, solver_type=linear_solver_pb2.MPModelRequest.GLOP_LINEAR_PROGRAMMING,
        solver_specific_parameters=glop_parameters)
    response = linear_solver_pb2.MPSolutionResponse()
    pywraplp.Solver.SolveWithProto(request, response)  # GLOP: single-threaded and deterministic
    status = {linear_solver_pb2.MPSOLVER_OPTIMAL: "OPTIMAL",
              linear_solver_pb2.MPSOLVER_FEASIBLE: "FEASIBLE"}.get(response.status, "ERROR")
    flow = np.zeros((G, T))
    unserved = np.zeros(G)
    pool_price = np.zeros(P)
    cable_price = np.zeros(C)
    objective = 0.0
    if status != "ERROR":
        values = np.asarray(response.variable_value)
        flow[gs, ts] = np.maximum(values[:n], 0.0)
        unserved = np.maximum(values[n:n + G], 0.0)
        duals = np.asarray(response.dual_value)
        pool_price = np.maximum(-duals[G:G + P], 0.0)
        cable_price[cable_rows] = np.maximum(-duals[G + P:G + P + len(cable_rows)], 0.0)
        objective = float(response.objective_value)
    cost = float((flow * np.where(np.isfinite(p.cost), p.cost, 0.0)).sum())
    return TransportSolution(status, flow, unserved, objective, cost, pool_price, cable_price)
