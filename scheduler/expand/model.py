"""The expansion MIP, and the one cost function every set of additions is judged by.

Variables: n[o, d] >= 0 integer, accelerators of option o online from the start of day d (d >= 1 + lead time);
per representative step, x[g, t] in [0, 1] the share of cell g routed to target t and u[g] the share refused, as
in the fleet plan (problem.py: the same cells, targets, costs, loads, cables and ceilings). A pool's size at a
step is its base count plus every tranche online by that day; its load stays within max_utilization of that size,
and, where a cell's SLO caps it lower (a ceiling per accelerator below max_utilization), within that ceiling
while the cell uses the pool (a binary per such pair). Ceilings per accelerator are judged at the pool's size
before additions (a new pool: at its first tranche, which the model enforces): an M/M/c pool only waits less as it
grows, so the model never promises an SLO the larger pool breaks.

Objective (CNY over the horizon): additions (per accelerator-hour online) + sum over steps of weight x (serving
cost + penalty x refused), the fleet plan's penalty. With the additions fixed, the steps are independent, so
`evaluate` solves one LP per step (a small MIP where ceilings bind): the heuristics and the optimum are priced by
exactly this function.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from ortools.linear_solver import pywraplp

from scheduler.expand.steps import Instance, StepProblem

MIP_GAP = 0.002  # SCIP stops within 0.2 % of its bound (relative, deterministic)
MIP_SECONDS = 100.0  # a safety net only: SCIP is deterministic unless this clock cuts it
SECONDS_PER_HOUR = 3600.0
_ZERO = 1e-9


@dataclass(frozen=True)
class Additions:
    """Accelerators added per (option, day online by)."""

    counts: dict[tuple[int, int], int] = field(default_factory=dict)

    def size(self, option: int, day: int) -> int:
        """Accelerators of the option online on `day`."""
        return sum(n for (o, d), n in self.counts.items() if o == option and d <= day)

    def total(self, option: int) -> int:
        return sum(n for (o, _), n in self.counts.items() if o == option)

    @property
    def empty(self) -> bool:
        return not any(self.counts.values())

    def tranches(self) -> list[tuple[int, int, int]]:
        """(option, day, count) in option then day order, zero counts left out."""
        return sorted((o, d, n) for (o, d), n in self.counts.items() if n > 0)


@dataclass(frozen=True)
class Evaluation:
    """One set of additions priced over the representative steps."""

    additions: Additions
    additions_cny: float
    serving_cny: float
    penalty_cny: float
    unserved: list[np.ndarray]  # per step, (G,) units/s refused
    supply: list[np.ndarray]  # per step, (G,) units/s demanded
    flows: list[np.ndarray]  # per step, (G, T) units/s

    @property
    def total_cny(self) -> float:
        return self.additions_cny + self.serving_cny + self.penalty_cny

    def served_pct(self, inst: Instance) -> float:
        """Weighted share of demand (output-equivalent tokens) served at the representative steps."""
        w = np.array([s.weight_hours for s in inst.steps])
        demanded = sum(wi * float(d.sum()) for wi, d in zip(w, self.supply))
        refused = sum(wi * float(u.sum()) for wi, u in zip(w, self.unserved))
        return 100.0 * (1.0 - refused / demanded) if demanded > 0 else 100.0


@dataclass(frozen=True)
class Solution:
    """The optimum found, with how good it is known to be."""

    evaluation: Evaluation
    status: str  # OPTIMAL (within MIP_GAP), FEASIBLE (stopped by the clock), HEURISTIC (a baseline was cheaper)
    bound_cny: float
    seconds: float

    @property
    def gap(self) -> float:
        """(cost - bound) / cost: what a better plan could save at most, as a share of this plan's total cost."""
        total = self.evaluation.total_cny
        return max(0.0, total - self.bound_cny) / total if total > 0 else 0.0


def additions_cost(inst: Instance, a: Additions) -> float:
    """CNY the additions cost over the horizon: per accelerator-hour online."""
    return sum(n * inst.options[o].cny_per_hour * inst.hours_online(d) for o, d, n in a.tranches())


def spend(inst: Instance, a: Additions) -> float:
    """CNY the additions commit (purchases at their price, rentals for their hours): what --budget caps."""
    return sum(inst.options[o].spend(n, inst.hours_online(d)) for o, d, n in a.tranches())


class _Model:
    """The MIP written through pywraplp: additions' variables, then each step's routing."""

    def __init__(self, inst: Instance, solver: pywraplp.Solver):
        self.inst = inst
        self.solver = solver
        self.objective = solver.Objective()
        self.n: dict[tuple[int, int], pywraplp.Variable] = {}
        self.opened: dict[tuple[int, int], pywraplp.Variable] = {}
        self.steps: list[tuple[dict[tuple[int, int], pywraplp.Variable], dict[int, pywraplp.Variable]]] = []

    def additions(self, budget: float | None) -> None:
        inst, solver = self.inst, self.solver
        for o in inst.options:
            for d in range(o.first_day(), inst.days + 1):
                v = solver.IntVar(0, o.max_count, f"n_{o.index}_{d}")
                self.n[o.index, d] = v
                self.objective.SetCoefficient(v, o.cny_per_hour * inst.hours_online(d))
            mine = [self.n[o.index, d] for d in range(o.first_day(), inst.days + 1)]
            if mine:
                row = solver.Constraint(0, o.max_count)
                for v in mine:
                    row.SetCoefficient(v, 1)
            if o.new_pool and mine:
                self._first_tranche(o.index, o.first_day(), o.min_count, o.max_count)
        for site, headroom in inst.headroom_mw.items():
            row = solver.Constraint(-solver.infinity(), headroom)
            for (o, _), v in self.n.items():
                if inst.options[o].site == site:
                    row.SetCoefficient(v, inst.options[o].mw_per_accelerator)
        if budget is not None:
            row = solver.Constraint(-solver.infinity(), budget)
            for (o, d), v in self.n.items():
                row.SetCoefficient(v, inst.options[o].spend(1, inst.hours_online(d)))

    def _first_tranche(self, o: int, first: int, least: int, most: int) -> None:
        """A new pool, once open, holds at least its first tranche (its latency was judged at that size)."""
        solver, prev = self.solver, None
        for d in range(first, self.inst.days + 1):
            b = solver.BoolVar(f"open_{o}_{d}")
            self.opened[o, d] = b
            lo = solver.Constraint(0, solver.infinity())  # size(d) >= least x open(d)
            hi = solver.Constraint(-solver.infinity(), 0)  # size(d) <= most x open(d)
            for dd in range(first, d + 1):
                lo.SetCoefficient(self.n[o, dd], 1)
                hi.SetCoefficient(self.n[o, dd], 1)
            lo.SetCoefficient(b, -least)
            hi.SetCoefficient(b, -most)
            if prev is not None:
                c = solver.Constraint(0, solver.infinity())
                c.SetCoefficient(b, 1)
                c.SetCoefficient(prev, -1)
            prev = b

    def fix(self, a: Additions) -> None:
        for (o, d), v in self.n.items():
            k = a.counts.get((o, d), 0)
            v.SetBounds(k, k)

    def size_terms(self, s: StepProblem) -> dict[int, list[pywraplp.Variable]]:
        """Per pool, the tranche variables online at this step."""
        out: dict[int, list[pywraplp.Variable]] = {}
        for (o, d), v in self.n.items():
            if d <= s.day:
                out.setdefault(s.option_pool[o], []).append(v)
        return out

    def step(self, s: StepProblem, extra: np.ndarray, terms: dict[int, list[pywraplp.Variable]],
             most: np.ndarray) -> None:
        """One step's routing. `extra` (P,) accelerators already added (fixed); `terms` tranche variables per pool;
        `most` (P,) the largest the pool may grow to (for the ceilings' big-M)."""
        solver, fp = self.solver, s.fp
        inf = solver.infinity()
        scale = s.weight_hours * SECONDS_PER_HOUR
        u = s.max_utilization
        size0 = s.base + extra
        pool_rows = []
        for q in range(len(size0)):
            row = solver.Constraint(-inf, u * size0[q])
            for v in terms.get(q, []):
                row.SetCoefficient(v, -u)
            pool_rows.append(row)
        cable_rows = {c: solver.Constraint(-inf, float(fp.cable_free[c]))
                      for c in range(len(fp.cable_free)) if np.isfinite(fp.cable_free[c])}
        binding = s.binding
        xs: dict[tuple[int, int], pywraplp.Variable] = {}
        us: dict[int, pywraplp.Variable] = {}
        ceiling_rows: list[tuple[pywraplp.Constraint, int]] = []
        for g in np.flatnonzero(fp.supply > _ZERO).tolist():
            supply = float(fp.supply[g])
            row = solver.Constraint(1, 1)
            ug = solver.NumVar(0, 1, "")
            row.SetCoefficient(ug, 1)
            self.objective.SetCoefficient(ug, scale * supply * self.inst.penalty)
            us[g] = ug
            for t in np.flatnonzero(fp.candidate[g]).tolist():
                x = solver.NumVar(0, 1, "")
                xs[g, t] = x
                row.SetCoefficient(x, 1)
                self.objective.SetCoefficient(x, scale * supply * float(fp.cost[g, t]))
                q = int(fp.pool[t])
                pool_rows[q].SetCoefficient(x, supply * float(fp.load[g, t]))
                if fp.cable_use.size:
                    for c in np.flatnonzero(fp.cable_use[g, t]).tolist():
                        if c in cable_rows:
                            cable_rows[c].SetCoefficient(x, supply * float(fp.gbps[g]))
                if binding[g, t]:
                    ceiling_rows.append((self._ceiling(s, g, t, x, size0, terms, most), q))
        for row, q in ceiling_rows:  # every pair's load term on its pool's ceiling row
            for (g, t), x in xs.items():
                if int(fp.pool[t]) == q:
                    row.SetCoefficient(x, float(fp.supply[g]) * float(fp.load[g, t]))
        self.steps.append((xs, us))

    def _ceiling(self, s: StepProblem, g: int, t: int, x: pywraplp.Variable, size0: np.ndarray,
                 terms: dict[int, list[pywraplp.Variable]], most: np.ndarray) -> pywraplp.Constraint:
        """While g uses t (y = 1), the pool's load stays within g's ceiling per accelerator x the pool's size."""
        solver = self.solver
        q = int(s.fp.pool[t])
        phi = float(s.per_accelerator[g, t])
        big = s.max_utilization * float(most[q])
        y = solver.BoolVar("")
        link = solver.Constraint(-solver.infinity(), 0)  # x <= y
        link.SetCoefficient(x, 1)
        link.SetCoefficient(y, -1)
        row = solver.Constraint(-solver.infinity(), phi * float(size0[q]) + big)
        row.SetCoefficient(y, big)
        for v in terms.get(q, []):
            row.SetCoefficient(v, -phi)
        return row

    def read(self, s: StepProblem, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Step k's flows (G, T) and refusals (G,) in units/s."""
        xs, us = self.steps[k]
        fp = s.fp
        flow = np.zeros_like(fp.cost)
        for (g, t), x in xs.items():
            flow[g, t] = x.solution_value() * fp.supply[g]
        unserved = np.zeros(len(fp.supply))
        for g, ug in us.items():
            unserved[g] = max(0.0, ug.solution_value()) * fp.supply[g]
        return flow, unserved


def _most(inst: Instance, s: StepProblem, a: Additions | None) -> np.ndarray:
    """(P,) the largest each pool may be at this step."""
    most = s.base.copy()
    for o in inst.options:
        most[s.option_pool[o.index]] += o.max_count if a is None else a.size(o.index, s.day)
    return most


def evaluate(inst: Instance, a: Additions) -> Evaluation:
    """The additions priced over every representative step: one LP per step (SCIP where ceilings bind)."""
    flows, unserved, supply = [], [], []
    serving = penalty = 0.0
    for s in inst.steps:
        solver = pywraplp.Solver.CreateSolver("SCIP" if s.binding.any() else "GLOP")
        m = _Model(inst, solver)
        extra = np.zeros(len(s.base))
        for o in inst.options:
            extra[s.option_pool[o.index]] += a.size(o.index, s.day)
        m.step(s, extra, {}, _most(inst, s, a))
        status = solver.Solve()
        if status not in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
            raise RuntimeError(f"step {s.step}: the routing LP ended with status {status}")
        flow, left = m.read(s, 0)
        scale = s.weight_hours * SECONDS_PER_HOUR
        serving += scale * s.fp.cost_of(flow)
        penalty += scale * inst.penalty * float(left.sum())
        flows.append(flow)
        unserved.append(left)
        supply.append(s.fp.supply.copy())
    return Evaluation(a, additions_cost(inst, a), serving, penalty, unserved, supply, flows)


def optimize(inst: Instance, budget: float | None = None, hints: list[Evaluation] = ()) -> Solution:
    """The least-cost additions, started from the cheapest hint (a baseline's additions), never worse than it."""
    start = time.perf_counter()
    solver = pywraplp.Solver.CreateSolver("SCIP")
    solver.SetSolverSpecificParametersAsString(f"limits/gap = {MIP_GAP}\nrandomization/randomseedshift = 0\n")
    solver.SetTimeLimit(int(MIP_SECONDS * 1000))
    m = _Model(inst, solver)
    m.additions(budget)
    for s in inst.steps:
        m.step(s, np.zeros(len(s.base)), m.size_terms(s), _most(inst, s, None))
    m.objective.SetMinimization()
    feasible = [h for h in hints if budget is None or spend(inst, h.additions) <= budget + 1e-6]
    best_hint = min(feasible, key=lambda h: h.total_cny, default=None)
    if best_hint is not None:
        _hint(m, best_hint.additions)
    status = solver.Solve()
    if status in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
        counts = {k: int(round(v.solution_value())) for k, v in m.n.items() if round(v.solution_value()) > 0}
        found = evaluate(inst, Additions(counts))
        bound = solver.Objective().BestBound()
        label = "OPTIMAL" if status == pywraplp.Solver.OPTIMAL else "FEASIBLE"
    else:
        found, bound, label = None, -np.inf, "ERROR"
    if best_hint is not None and (found is None or best_hint.total_cny < found.total_cny):
        found, label = best_hint, "HEURISTIC"
    if found is None:
        found = evaluate(inst, Additions())
    return Solution(found, label, min(bound, found.total_cny), time.perf_counter() - start)


def _hint(m: _Model, a: Additions) -> None:
    """The baseline's additions as SCIP's first solution (tranches on days it cannot use move to the first it can)."""
    values: dict[pywraplp.Variable, float] = {v: 0.0 for v in m.n.values()}
    for o, d, n in a.tranches():
        day = max(d, m.inst.options[o].first_day())
        if (o, day) in m.n:
            values[m.n[o, day]] += n
    for (o, d), b in m.opened.items():
        values[b] = 1.0 if a.size(o, d) > 0 else 0.0
    m.solver.SetHint(list(values), list(values.values()))
