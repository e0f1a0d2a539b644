"""The transportation LP under both the fleet plan and the joint batch solve, stated the OR-Tools way.

Demand groups g (interchangeable traffic) ship `supply[g]` units to targets t. Variables: x[g,t] >= 0 for each
feasible pair, u[g] >= 0 unserved. Constraints: every group's supply is shipped or left unserved; each pool's
accelerators and each cable's Gbps are not exceeded. Objective: cost + a penalty on unserved units large enough
that serving anything feasible always beats leaving it.

The model is written straight into an MPModelProto with array calls (no Python object per variable). Callers work
in tokens/s and CNY per token, about 1e5 and 1e-6: GLOP, given those, sometimes gives up (ABNORMAL). So the model
is stated in units that keep its coefficients near 1 (`Units`: a flow unit that loads about one accelerator, a cost
unit that makes it cost about 1) and every answer is converted back. The answer carries the rows' duals as
nonnegative prices: the batch solver steers its assignment by the capacity prices, the fleet plan bounds its
optimum with all of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from ortools.linear_solver import linear_solver_pb2, pywraplp

UNSERVED_PENALTY_FACTOR = 1000.0
_EMPTY = np.zeros(0)
# GLOP's parameter sets, tried in turn until one answers OPTIMAL. Its presolve occasionally ends a small, well-scaled
# LP as ABNORMAL (the fleet's hull LP, tests/test_engine_transport.py); without presolve, or with the dual simplex,
# the same LP solves. HiGHS's simplex is the last resort.
NO_PRESOLVE = "use_preprocessing: false"
GLOP_RETRIES = ("", NO_PRESOLVE, "use_dual_simplex: true", "use_scaling: false")


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
    supply_price: np.ndarray = field(default_factory=lambda: _EMPTY)  # (G,) CNY per unit: what one more costs


@dataclass(frozen=True)
class Units:
    """The model's units: one model flow unit is `flow` caller units, one model cost unit `cost` CNY (powers of 2,
    so converting back and forth is exact)."""

    flow: float
    cost: float

    @classmethod
    def of(cls, p: TransportProblem) -> Units:
        feasible = np.isfinite(p.cost) & (p.load > 0)
        if not feasible.any():
            return cls(1.0, 1.0)
        flow = _power_of_two(1.0 / float(np.median(p.load[feasible])))
        return cls(flow, _power_of_two(1.0 / (float(np.median(p.cost[feasible])) * flow)))


def _power_of_two(x: float) -> float:
    return 2.0 ** round(math.log2(x)) if x > 0 and math.isfinite(x) else 1.0


@dataclass(frozen=True)
class Layout:
    """Where each part of the problem sits in the model: variables 0..n-1 are the pairs (gs[i], ts[i]), n..n+G-1
    the unserved; rows 0..G-1 supply, G..G+P-1 pools (one per pool, empty or not), then the bounded cables."""

    gs: np.ndarray
    ts: np.ndarray
    cable_rows: list[int]
    units: Units

    @property
    def n(self) -> int:
        return len(self.gs)


def unserved_penalty(unit_cost: np.ndarray) -> float:
    """Far above any feasible unit cost, so serving anything feasible always beats saving money."""
    finite = unit_cost[np.isfinite(unit_cost)]
    return UNSERVED_PENALTY_FACTOR * (float(finite.max(initial=0.0)) + 1e-6)


def model(p: TransportProblem) -> tuple[linear_solver_pb2.MPModelProto, Layout]:
    """The LP in model units, and where everything sits in it."""
    G, T = p.cost.shape
    P, C = len(p.pool_free), len(p.cable_free)
    units = Units.of(p)
    gs, ts = np.nonzero(np.isfinite(p.cost) & (p.supply[:, None] > 0))
    n = len(gs)
    inf = float("inf")
    proto = linear_solver_pb2.MPModelProto()
    add = proto.variable.add
    per_unit = units.flow * units.cost
    for c in (p.cost[gs, ts] * per_unit).tolist():
        add(lower_bound=0.0, upper_bound=inf, objective_coefficient=c)
    for _ in range(G):
        add(lower_bound=0.0, upper_bound=inf, objective_coefficient=float(p.penalty) * per_unit)

    def row(lo: float, hi: float, idx, coef) -> None:
        ct = proto.constraint.add(lower_bound=lo, upper_bound=hi)
        ct.var_index.extend(idx)
        ct.coefficient.extend(coef)

    by_group = np.argsort(gs, kind="stable")
    cuts = np.searchsorted(gs[by_group], np.arange(G + 1))
    for g in range(G):
        idx = by_group[cuts[g]:cuts[g + 1]].tolist()
        supply = float(p.supply[g]) / units.flow
        row(supply, supply, idx + [n + g], [1.0] * (len(idx) + 1))
    load = p.load[gs, ts] * units.flow
    pools = p.pool[ts]
    by_pool = np.argsort(pools, kind="stable")
    pcuts = np.searchsorted(pools[by_pool], np.arange(P + 1))
    for q in range(P):  # one row per pool, empty or not, so that row G+q's dual is pool q's
        idx = by_pool[pcuts[q]:pcuts[q + 1]]
        row(-inf, float(max(p.pool_free[q], 0.0)), idx.tolist(), load[idx].tolist())
    cable_rows = []
    if C and n:
        use = p.cable_use[gs, ts].astype(float)  # (n, C): bool, or the share of the group's traffic crossing
        for c in range(C):
            if np.isfinite(p.cable_free[c]):
                idx = np.flatnonzero(use[:, c] > 0)
                if len(idx):
                    row(-inf, float(max(p.cable_free[c], 0.0)), idx.tolist(),
                        (use[idx, c] * p.gbps[gs[idx]] * units.flow).tolist())
                    cable_rows.append(c)
    return proto, Layout(gs, ts, cable_rows, units)


def solve(p: TransportProblem, glop_parameters: str = "") -> TransportSolution:
    """`glop_parameters`: GLOP's own parameters in text format (e.g. \"use_dual_simplex: true\"), tried first."""
    proto, layout = model(p)
    return decode(p, layout, solve_model(proto, glop_parameters))


def solve_model(proto: linear_solver_pb2.MPModelProto, glop_parameters: str = "") -> linear_solver_pb2.MPSolutionResponse:
    """An LP, by GLOP (single-threaded and deterministic) under each of GLOP_RETRIES until one answers OPTIMAL,
    then by HiGHS; the last answer if none does."""
    response = linear_solver_pb2.MPSolutionResponse()
    request = linear_solver_pb2.MPModelRequest(
        model=proto, solver_type=linear_solver_pb2.MPModelRequest.GLOP_LINEAR_PROGRAMMING)
    for parameters in dict.fromkeys((glop_parameters, *GLOP_RETRIES)):
        request.solver_specific_parameters = parameters
        pywraplp.Solver.SolveWithProto(request, response)
        if response.status == linear_solver_pb2.MPSOLVER_OPTIMAL:
            return response
    request.solver_type = linear_solver_pb2.MPModelRequest.HIGHS_LINEAR_PROGRAMMING
    request.solver_specific_parameters = ""
    pywraplp.Solver.SolveWithProto(request, response)
    return response


def decode(p: TransportProblem, layout: Layout, response: linear_solver_pb2.MPSolutionResponse) -> TransportSolution:
    """The solver's answer in the caller's units."""
    G, T = p.cost.shape
    P, C = len(p.pool_free), len(p.cable_free)
    status = {linear_solver_pb2.MPSOLVER_OPTIMAL: "OPTIMAL",
              linear_solver_pb2.MPSOLVER_FEASIBLE: "FEASIBLE"}.get(response.status, "ERROR")
    flow = np.zeros((G, T))
    unserved = np.zeros(G)
    pool_price, cable_price, supply_price = np.zeros(P), np.zeros(C), np.zeros(G)
    objective = 0.0
    if status != "ERROR":
        u, n = layout.units, layout.n
        values = np.asarray(response.variable_value) * u.flow
        flow[layout.gs, layout.ts] = np.maximum(values[:n], 0.0)
        unserved = np.maximum(values[n:n + G], 0.0)
        duals = np.asarray(response.dual_value)
        if len(duals):
            supply_price = duals[:G] / (u.flow * u.cost)
            pool_price = np.maximum(-duals[G:G + P], 0.0) / u.cost
            cable_price[layout.cable_rows] = np.maximum(-duals[G + P:G + P + len(layout.cable_rows)], 0.0) / u.cost
        objective = float(response.objective_value) / u.cost
    cost = float((flow * np.where(np.isfinite(p.cost), p.cost, 0.0)).sum())
    return TransportSolution(status, flow, unserved, objective, cost, pool_price, cable_price, supply_price)
