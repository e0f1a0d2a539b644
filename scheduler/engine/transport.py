"""The transportation LP under both the fleet plan and the joint batch solve, stated the OR-Tools way.

Demand groups g (interchangeable traffic) ship `supply[g]` units to targets t. Variables: x[g,t] >= 0 for each
feasible pair, u[g] >= 0 unserved. Constraints: every group's supply is shipped or left unserved; each pool's
accelerators and each cable's Gbps are not exceeded. Objective: cost + a penalty on unserved units large enough
that serving anything feasible always beats leaving it.

With `levels`, pools have *modes*: queueing delay grows with a pool's load, so a pool run at load level l may only
carry pairs whose ceiling (the load up to which the pair meets its SLO) is high enough. Mode k of pool q offers
`levels[q,k] - base[q]` accelerators to pairs whose ceiling is at least the level of mode k-1, and a pool takes a
convex combination of its modes (y[q,k] >= 0, sum_k y[q,k] <= 1). Any assignment that keeps every pool at or below
the ceilings of the pairs on it is feasible here (take the lowest mode whose level is at least the pool's final
load), so this LP is a valid relaxation of the joint problem; its prices drive the batch solver's rounding and
its Lagrangian bound.

The model is written straight into an MPModelProto with array calls and solved by GLOP; the answer carries the
row duals as nonnegative prices.
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
    ceiling: np.ndarray | None = None  # (G, T) pool load up to which the pair meets its SLO (with levels)
    levels: np.ndarray | None = None  # (P, K) increasing pool load levels, one mode each; the last is the cap
    base: np.ndarray | None = None  # (P,) load already on each pool (levels are absolute)


@dataclass(frozen=True)
class TransportSolution:
    status: str
    flow: np.ndarray  # (G, T)
    unserved: np.ndarray  # (G,)
    objective: float  # cost + penalties
    cost: float  # cost of the flow alone
    pool_price: np.ndarray = field(default_factory=lambda: _EMPTY)  # (P,) CNY per accelerator, >= 0
    cable_price: np.ndarray = field(default_factory=lambda: _EMPTY)  # (C,) CNY per Gbps, >= 0
    mode_price: np.ndarray = field(default_factory=lambda: _EMPTY)  # (P, K) CNY per accelerator in mode k, >= 0
    mode_share: np.ndarray = field(default_factory=lambda: _EMPTY)  # (P, K) y
    mode_load: np.ndarray = field(default_factory=lambda: _EMPTY)  # (P, K) accelerators the flow puts in mode k


def unserved_penalty(unit_cost: np.ndarray) -> float:
    """Far above any feasible unit cost, so serving anything feasible always beats saving money."""
    finite = unit_cost[np.isfinite(unit_cost)]
    return UNSERVED_PENALTY_FACTOR * (float(finite.max(initial=0.0)) + 1e-6)


def mode_floor(levels: np.ndarray) -> np.ndarray:
    """(P, K) the least ceiling a pair needs to use mode k: the level of mode k-1 (-inf for the first mode)."""
    return np.concatenate([np.full((levels.shape[0], 1), -np.inf), levels[:, :-1]], axis=1)


def solve(p: TransportProblem) -> TransportSolution:
    G, T = p.cost.shape
    P, C = len(p.pool_free), len(p.cable_free)
    base = p.base if p.base is not None else np.zeros(P)
    feasible = np.isfinite(p.cost) & (p.supply[:, None] > 0)
    if p.levels is None:
        gs, ts = np.nonzero(feasible)
        ks = np.zeros(len(gs), np.int64)
        K = 1
        room = np.maximum(p.pool_free, 0.0)[:, None]
    else:
        K = p.levels.shape[1]
        open_mode = p.levels > base[:, None] + 1e-9  # (P, K)
        ok = (feasible[:, :, None] & (p.ceiling[:, :, None] >= mode_floor(p.levels)[p.pool][None, :, :])
              & open_mode[p.pool][None, :, :])
        gs, ts, ks = np.nonzero(ok)
        room = np.where(open_mode, np.maximum(p.levels - base[:, None], 0.0), 0.0)
    n = len(gs)
    inf = float("inf")
    model = linear_solver_pb2.MPModelProto()
    add = model.variable.add
    for c in p.cost[gs, ts].tolist():
        add(lower_bound=0.0, upper_bound=inf, objective_coefficient=c)
    for _ in range(G):
        add(lower_bound=0.0, upper_bound=inf, objective_coefficient=float(p.penalty))
    y0 = n + G
    if p.levels is not None:
        for _ in range(P * K):
            add(lower_bound=0.0, upper_bound=1.0, objective_coefficient=0.0)

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
    cell = p.pool[ts] * K + ks
    by_cell = np.argsort(cell, kind="stable")
    ccuts = np.searchsorted(cell[by_cell], np.arange(P * K + 1))
    for j in range(P * K):
        idx = by_cell[ccuts[j]:ccuts[j + 1]]
        if p.levels is None:
            row(-inf, float(room[j, 0]), idx.tolist(), load[idx].tolist())
        else:
            row(-inf, 0.0, idx.tolist() + [y0 + j], load[idx].tolist() + [-float(room.flat[j])])
    if p.levels is not None:
        for q in range(P):
            row(-inf, 1.0, list(range(y0 + q * K, y0 + (q + 1) * K)), [1.0] * K)
    cable_rows = []
    if C and n:
        use = p.cable_use[gs, ts].astype(float)  # (n, C)
        for c in range(C):
            if np.isfinite(p.cable_free[c]):
                idx = np.flatnonzero(use[:, c] > 0)
                if len(idx):
                    row(-inf, float(max(p.cable_free[c], 0.0)), idx.tolist(), (use[idx, c] * p.gbps[gs[idx]]).tolist())
                    cable_rows.append(c)

    request = linear_solver_pb2.MPModelRequest(
        model=model, solver_type=linear_solver_pb2.MPModelRequest.GLOP_LINEAR_PROGRAMMING)
    response = linear_solver_pb2.MPSolutionResponse()
    pywraplp.Solver.SolveWithProto(request, response)
    status = {linear_solver_pb2.MPSOLVER_OPTIMAL: "OPTIMAL",
              linear_solver_pb2.MPSOLVER_FEASIBLE: "FEASIBLE"}.get(response.status, "ERROR")
    flow = np.zeros((G, T))
    unserved = np.zeros(G)
    cell_price = np.zeros(P * K)
    cable_price = np.zeros(C)
    share = np.zeros((P, K))
    mode_load = np.zeros((P, K))
    objective = 0.0
    if status != "ERROR":
        values = np.asarray(response.variable_value)
        x = np.maximum(values[:n], 0.0)
        np.add.at(flow, (gs, ts), x)
        np.add.at(mode_load.reshape(-1), cell, x * load)
        unserved = np.maximum(values[n:n + G], 0.0)
        if p.levels is not None:
            share = values[y0:y0 + P * K].reshape(P, K)
        duals = np.asarray(response.dual_value)
        cell_price = np.maximum(-duals[G:G + P * K], 0.0)
        first_cable = G + P * K + (P if p.levels is not None else 0)
        cable_price[cable_rows] = np.maximum(-duals[first_cable:first_cable + len(cable_rows)], 0.0)
        objective = float(response.objective_value)
    cost = float((flow * np.where(np.isfinite(p.cost), p.cost, 0.0)).sum())
    if p.levels is None:
        return TransportSolution(status, flow, unserved, objective, cost, cell_price, cable_price)
    return TransportSolution(status, flow, unserved, objective, cost, _EMPTY, cable_price, cell_price.reshape(P, K),
                             share, mode_load)
