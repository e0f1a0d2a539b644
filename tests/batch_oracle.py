"""An exact optimum of the batch problem, written independently of the engine's solver: a plain MIP (SCIP through
OR-Tools) over a BatchProblem's pairs, the reference the property tests hold `solve.pipeline.solve` to.

One binary per feasible (batch, target) pair and one per batch for "unplaced", exactly one of them on per batch;
per pool its load stays under its cap, and under the ceiling of every pair used on it (a big-M row per pair whose
ceiling is below the cap, M = cap - ceiling: the plain statement of the rule); per cable its Gbps under its room.
Objective: the engine's, cost of the placed batches plus the penalty per unplaced output-equivalent token. Nothing
of the engine's prices, greedy, levels or CP-SAT model is in it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ortools.linear_solver import pywraplp

from scheduler.engine.solve.problem import BatchProblem


@dataclass(frozen=True)
class Exact:
    optimal: bool
    objective: float  # CNY, cost + penalty on unplaced weight
    target: np.ndarray  # (B,) global target or -1


def solve(p: BatchProblem, penalty: float, time_limit_s: float = 60.0) -> Exact:
    pairs = p.pairs()
    solver = pywraplp.Solver.CreateSolver("SCIP")
    solver.SetNumThreads(1)
    solver.SetTimeLimit(int(time_limit_s * 1000))
    n, B = len(pairs.batch), len(p.batches)
    x = [solver.BoolVar("") for _ in range(n)]
    unplaced = [solver.BoolVar("") for _ in range(B)]
    mine: dict[int, list[int]] = {}
    for k, b in enumerate(pairs.batch.tolist()):
        mine.setdefault(b, []).append(k)
    for b in range(B):
        solver.Add(sum(x[k] for k in mine.get(b, [])) + unplaced[b] == 1)
    on_pool: dict[int, list[int]] = {}
    for k, t in enumerate(pairs.target.tolist()):
        on_pool.setdefault(int(p.pool[t]), []).append(k)
    for q, ks in on_pool.items():
        load = sum(float(pairs.load[k]) * x[k] for k in ks)
        cap, used = float(p.pool_cap[q]), float(p.used[q])
        solver.Add(used + load <= cap)
        for k in ks:
            ceiling = float(pairs.ceiling[k])
            if ceiling < cap:
                solver.Add(used + load <= ceiling + (cap - ceiling) * (1 - x[k]))
    if len(p.cable_free):
        crosses = p.crosses(pairs.batch, pairs.target)
        gbps = p.gbps()[pairs.batch]
        for c in np.flatnonzero(np.isfinite(p.cable_free)).tolist():
            ks = np.flatnonzero(crosses[:, c]).tolist()
            if ks:
                solver.Add(sum(float(gbps[k]) * x[k] for k in ks) <= float(p.cable_free[c]))
    solver.Minimize(sum(float(pairs.cost[k]) * x[k] for k in range(n))
                    + sum(float(penalty * p.weight[b]) * unplaced[b] for b in range(B)))
    solver.SetSolverSpecificParametersAsString("limits/gap = 1e-9\nlimits/absgap = 1e-9\n")
    status = solver.Solve()
    assert status in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE), status
    target = np.full(B, -1, dtype=np.int64)
    for k in range(n):
        if x[k].solution_value() > 0.5:
            target[pairs.batch[k]] = pairs.target[k]
    return Exact(status == pywraplp.Solver.OPTIMAL, solver.Objective().Value(), target)
