"""An exact mixed-integer optimum of the fleet plan's model, written independently of the engine's search.

Over the arrays of a FleetProblem (cost, load, ceiling, pool, used, cap, cables, supply), with the engine's
objective (cost plus the penalty on unserved units), in one of two formulations:
- "big-m": one binary per (cell, pool) pair whose ceiling lies below the pool's cap says "this pool serves this
  cell"; then the pool's final load stays at or below that ceiling (a big-M row, M = cap - ceiling). The plain
  statement of the rule, with nothing of the engine's rungs, hull or search in it; slow (seconds) under load.
- "levels": one binary per pool and distinct ceiling L on it, at most one on per pool: the pool carries at most
  L and serves only cells whose ceiling is at least L. The same feasible plans, a much tighter LP, solved in
  tens of milliseconds; the tests check that both give the same optimum.
Solved by SCIP (big-m) or HiGHS (levels) through OR-Tools to a relative gap of 1e-9.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ortools.linear_solver import pywraplp

from scheduler.engine.fleet.problem import FleetProblem


@dataclass(frozen=True)
class Exact:
    status: int
    objective: float  # CNY/s, cost + penalty on unserved units
    cost: float  # CNY/s
    unserved: float  # units
    flow: np.ndarray


def solve(fp: FleetProblem, formulation: str = "levels", time_limit_s: float = 120.0) -> Exact:
    G, T = fp.cost.shape
    solver = pywraplp.Solver.CreateSolver("SCIP" if formulation == "big-m" else "HIGHS")
    solver.SetNumThreads(1)
    solver.SetTimeLimit(int(time_limit_s * 1000))
    # Units that keep coefficients near 1: flows in kilo-units, money in CNY per hour.
    unit = 1000.0
    pairs = [(g, t) for g, t in zip(*np.nonzero(fp.candidate & (fp.supply[:, None] > 0)))]
    x = {p: solver.NumVar(0.0, solver.infinity(), "") for p in pairs}
    unserved = [solver.NumVar(0.0, solver.infinity(), "") for _ in range(G)]
    for g in range(G):
        solver.Add(sum(x[p] for p in pairs if p[0] == g) + unserved[g] == float(fp.supply[g]) / unit)
    on_pool: dict[int, list] = {}
    for (g, t), v in x.items():
        on_pool.setdefault(int(fp.pool[t]), []).append(float(fp.load[g, t]) * unit * v)
    for q, terms in on_pool.items():
        load = sum(terms)
        room = float(fp.cap[q] - fp.used[q])
        solver.Add(load <= room)
        mine = [(g, t) for (g, t) in x if fp.pool[t] == q]
        if formulation == "big-m":
            for g, t in mine:
                if fp.ceiling[g, t] >= fp.cap[q]:
                    continue
                serves = solver.BoolVar("")
                solver.Add(x[g, t] <= min(float(fp.supply[g]), room / float(fp.load[g, t])) / unit * serves)
                slack = float(fp.cap[q] - fp.ceiling[g, t])
                solver.Add(load <= float(fp.ceiling[g, t] - fp.used[q]) + slack * (1 - serves))
        else:
            levels = sorted({float(fp.ceiling[g, t]) for g, t in mine})
            on = {level: solver.BoolVar("") for level in levels}
            solver.Add(sum(on.values()) <= 1)
            solver.Add(load <= sum((level - float(fp.used[q])) * z for level, z in on.items()))
            for g, t in mine:
                most = min(float(fp.supply[g]), (float(fp.ceiling[g, t]) - float(fp.used[q])) / float(fp.load[g, t]))
                solver.Add(x[g, t] <= most / unit * sum(z for level, z in on.items() if level <= fp.ceiling[g, t]))
    for c in range(len(fp.cable_free)):
        if np.isfinite(fp.cable_free[c]):
            terms = [float(fp.gbps[g]) * unit * v for (g, t), v in x.items() if fp.cable_use[g, t, c]]
            if terms:
                solver.Add(sum(terms) <= float(fp.cable_free[c]))
    hourly = 3600.0 * unit
    solver.Minimize(sum(float(fp.cost[g, t]) * hourly * v for (g, t), v in x.items())
                    + sum(fp.penalty * hourly * u for u in unserved))
    if formulation == "big-m":
        solver.SetSolverSpecificParametersAsString("limits/gap = 1e-9\nlimits/absgap = 1e-9\n")
    else:
        solver.SetSolverSpecificParametersAsString("mip_rel_gap = 1e-9\nmip_abs_gap = 1e-9\noutput_flag = false\n")
    status = solver.Solve()
    flow = np.zeros((G, T))
    for (g, t), v in x.items():
        flow[g, t] = v.solution_value() * unit
    cost = float((flow * np.where(fp.candidate, fp.cost, 0.0)).sum())
    left = float(sum(u.solution_value() for u in unserved)) * unit
    return Exact(status, solver.Objective().Value() / 3600.0, cost, left, flow)
