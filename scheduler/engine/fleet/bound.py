"""A lower bound on every fleet plan that keeps the ceilings: the LP over each pool's convex hull of rungs.

Pool q at rung k may carry up to r_k accelerators and serve only the cells whose ceiling reaches r_k. A plan picks
one rung per pool; the disjunctive (Balas) formulation gives each rung its own copy of the pool's flows, scaled by a
weight z_qk in [0, 1] with sum_k z_qk <= 1:
    sum_t load x_qk <= (r_k - used_q) z_qk,    x_qkgt <= supply_g z_qk,    x_gt = sum_k x_qkgt.
With z binary this is the exact model; with z fractional it is the tightest LP of each pool taken alone, far tighter
than letting every pool fill to its highest ceiling (on an overloaded default topology the relaxation is 6 %
under the optimum, this one 0.5 %). The rung weights also say which rung the LP leans to, a good start for the
search in optimal.py.

The bound must cover every level, not only the rungs the search tries (optimal.rungs keeps at most MAX_RUNGS): a
level between rungs r_{k-1} < L <= r_k carries at most r_k and serves only cells whose ceiling passes r_{k-1}, so
rung k here admits the cells above r_{k-1} (the least rung: every cell). With every distinct ceiling a rung, that
is the exact rule. Pools outside `exact`, and every pool when the LP would pass MAX_ITEMS flow copies, take one
rung at their highest ceiling admitting every cell: the relaxation's terms, weaker but still valid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ortools.linear_solver import linear_solver_pb2, pywraplp

from scheduler.engine import transport
from scheduler.engine.fleet.problem import FleetProblem


@dataclass(frozen=True)
class HullBound:
    value: float  # CNY/s: no plan keeping the ceilings has a lower objective (-inf when the LP gave no answer)
    weight: list[np.ndarray]  # per pool, each rung's weight z_qk in the LP's answer


MAX_ITEMS = 4000  # flow copies in the LP (~5 ms at 600 on the default topology's 17 cells)


@dataclass(frozen=True)
class _Model:
    proto: linear_solver_pb2.MPModelProto
    first_rung: np.ndarray  # (P + 1,) where each pool's rung weights start among the variables
    exact: np.ndarray  # (P,) the pools given their rungs
    g: np.ndarray  # (n,) each flow copy's cell
    t: np.ndarray  # (n,) and target
    x0: int  # the first flow copy's variable
    units: transport.Units


@dataclass(frozen=True)
class ExactPlan:
    """The disjunctive model with integer rung choices, solved by a MIP solver (`exact_plan`)."""

    status: str  # OPTIMAL, FEASIBLE (time ran out), or ERROR (no solution)
    flow: np.ndarray  # (G, T)
    objective: float  # CNY/s
    bound: float  # CNY/s: the solver's best bound


def hull_bound(fp: FleetProblem, ladder: list[np.ndarray], units: transport.Units,
               crowded: np.ndarray | None = None) -> HullBound:
    """Every pool given its rungs if the LP stays within MAX_ITEMS, else only the `crowded` ones (P,: those whose
    ceilings the relaxation broke), else none."""
    items = np.bincount(fp.pool[np.nonzero(fp.candidate)[1]], minlength=len(ladder)) * np.array([len(r) for r in ladder])
    exact = np.ones(len(ladder), bool)
    if items.sum() > MAX_ITEMS:
        exact = crowded.copy() if crowded is not None and items[crowded].sum() <= MAX_ITEMS else ~exact
    m = _model(fp, ladder, units, exact)
    response = transport.solve_model(m.proto, transport.NO_PRESOLVE)  # presolve gains nothing at this size
    if response.status != linear_solver_pb2.MPSOLVER_OPTIMAL:
        return HullBound(-np.inf, [np.zeros(0) for _ in ladder])
    weights = np.asarray(response.variable_value)[:m.first_rung[-1]]
    # GLOP's optimum is exact up to its tolerances (1e-7 relative at most): shade it so the bound stays valid.
    value = float(response.objective_value) / units.cost
    return HullBound(value - 1e-7 * abs(value), [weights[m.first_rung[q]:m.first_rung[q + 1]] if m.exact[q]
                                                 else np.zeros(0) for q in range(len(ladder))])


def exact_plan(fp: FleetProblem, ladder: list[np.ndarray], units: transport.Units, nodes: int,
               time_limit_s: float) -> ExactPlan:
    """The exact model, one rung per pool as a binary choice, by HiGHS within `nodes` branch-and-bound nodes (a
    limit that gives the same answer on every machine; `time_limit_s` is only a safety net). `ladder` must hold
    every distinct ceiling of each pool (optimal.rungs with no limit) for the answer to be the optimum."""
    m = _model(fp, ladder, units, np.ones(len(ladder), bool))
    for i in range(m.first_rung[-1]):
        m.proto.variable[i].is_integer = True
    request = linear_solver_pb2.MPModelRequest(
        model=m.proto, solver_type=linear_solver_pb2.MPModelRequest.HIGHS_MIXED_INTEGER_PROGRAMMING,
        solver_time_limit_seconds=time_limit_s,
        solver_specific_parameters=f"mip_rel_gap = 1e-7\nmip_max_nodes = {nodes}\nthreads = 1\noutput_flag = false\n")
    response = linear_solver_pb2.MPSolutionResponse()
    pywraplp.Solver.SolveWithProto(request, response)
    status = {linear_solver_pb2.MPSOLVER_OPTIMAL: "OPTIMAL", linear_solver_pb2.MPSOLVER_FEASIBLE: "FEASIBLE"}.get(
        response.status, "ERROR")
    flow = np.zeros_like(fp.cost)
    if status == "ERROR":
        return ExactPlan(status, flow, np.inf, -np.inf)
    values = np.asarray(response.variable_value)
    np.add.at(flow, (m.g, m.t), np.maximum(values[m.x0:m.x0 + len(m.g)], 0.0) * units.flow)
    # A MIP solver's answer carries crumbs within its tolerances (1e-9 of a unit on a pair its rung choice rules
    # out): drop them, so no share breaks a ceiling by rounding.
    flow[flow <= 1e-7 * fp.supply[:, None]] = 0.0
    bound = float(response.best_objective_bound) / units.cost
    return ExactPlan(status, flow, float(response.objective_value) / units.cost, bound - 1e-7 * abs(bound))


def _model(fp: FleetProblem, ladder: list[np.ndarray], units: transport.Units, exact: np.ndarray) -> _Model:
    """The disjunctive LP (module docstring); pools outside `exact` take one rung admitting every cell."""
    G = len(fp.supply)
    ladder = [r if e or not len(r) else r[-1:] for r, e in zip(ladder, exact.tolist())]
    inf = float("inf")
    gs, ts = np.nonzero(fp.candidate & (fp.supply[:, None] > 0))
    # Items: one copy of a pair per rung of its pool that admits it. Variables: the rungs' weights, then the items,
    # then the unserved.
    first_rung = np.cumsum([0] + [len(r) for r in ladder])
    level = np.concatenate(ladder) if first_rung[-1] else np.zeros(0)
    rung_pool = np.repeat(np.arange(len(ladder)), [len(r) for r in ladder])
    pair_of, rung_of = [], []
    for q, r in enumerate(ladder):
        on = np.flatnonzero(fp.pool[ts] == q)
        if len(r) and len(on):
            above = np.concatenate([[-np.inf], r[:-1]]) if exact[q] else np.array([-np.inf])
            admits = fp.ceiling[gs[on], ts[on]][None, :] > above[:, None]  # (rungs, pairs)
            k, j = np.nonzero(admits)
            pair_of.append(on[j])
            rung_of.append(first_rung[q] + k)
    pair = np.concatenate(pair_of) if pair_of else np.zeros(0, np.int64)
    rung = np.concatenate(rung_of) if rung_of else np.zeros(0, np.int64)
    R, n = len(level), len(pair)
    g, t = gs[pair], ts[pair]
    x0, u0 = R, R + n

    proto = linear_solver_pb2.MPModelProto()
    var = proto.variable.add
    for _ in range(R):
        var(lower_bound=0.0, upper_bound=1.0)
    for c in (fp.cost[g, t] * units.flow * units.cost).tolist():
        var(lower_bound=0.0, upper_bound=inf, objective_coefficient=c)
    penalty = fp.penalty * units.flow * units.cost
    for _ in range(G):
        var(lower_bound=0.0, upper_bound=inf, objective_coefficient=penalty)

    def row(lo: float, hi: float, idx: list[int], coef: list[float]) -> None:
        ct = proto.constraint.add(lower_bound=lo, upper_bound=hi)
        ct.var_index.extend(idx)
        ct.coefficient.extend(coef)

    def groups(keys: np.ndarray, count: int) -> list[list[int]]:
        order = np.argsort(keys, kind="stable")
        cuts = np.searchsorted(keys[order], np.arange(count + 1))
        return [order[cuts[i]:cuts[i + 1]].tolist() for i in range(count)]

    for g_, members in enumerate(groups(g, G)):
        supply = float(fp.supply[g_]) / units.flow
        row(supply, supply, [x0 + i for i in members] + [u0 + g_], [1.0] * (len(members) + 1))
    for q in range(len(ladder)):
        if first_rung[q + 1] > first_rung[q]:
            row(-inf, 1.0, list(range(first_rung[q], first_rung[q + 1])), [1.0] * (first_rung[q + 1] - first_rung[q]))
    load = (fp.load[g, t] * units.flow).tolist()
    room = np.maximum(level - fp.used[rung_pool], 0.0).tolist()
    for k, members in enumerate(groups(rung, R)):
        row(-inf, 0.0, [x0 + i for i in members] + [k], [load[i] for i in members] + [-room[k]])
    # x <= supply z, where the rung's own row does not already imply it (supply x load >= room: heavy demand).
    most = fp.supply[g] / units.flow
    for i in np.flatnonzero(most * np.asarray(load) < np.asarray(room)[rung]).tolist():
        row(-inf, 0.0, [x0 + i, int(rung[i])], [1.0, -float(most[i])])
    if fp.cable_use.size and n:
        crossing = fp.cable_use[g, t]
        gbps = fp.gbps[g] * units.flow
        for c in np.flatnonzero(np.isfinite(fp.cable_free) & crossing.any(axis=0)).tolist():
            on = np.flatnonzero(crossing[:, c])
            row(-inf, max(float(fp.cable_free[c]), 0.0), (x0 + on).tolist(), gbps[on].tolist())

    return _Model(proto, first_rung, exact, g, t, x0, units)
