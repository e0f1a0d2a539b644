"""The `optimal` fleet plan: the cheapest routing in which every pool stays at or below the ceiling of every cell
it serves, with a valid lower bound on what any such routing costs.

A pool's *level* is the most load it may reach. At level L it may serve only the cells whose ceiling there is at
least L, and only up to L. With every pool's level fixed the plan is a transportation LP (transport.py), and the
levels worth trying are the ceilings themselves: a pool's *rungs*. The search:

1. The relaxation: every candidate pair, each pool up to its highest rung. Its cost is a lower bound; when its
   flows keep every pool under the ceilings of the cells it serves, it is the optimum.
2. Local search: move one pool one rung up (dropping the cells whose ceiling it passes, for more room) or down
   (admitting the next cells, for less room); re-solve from the last basis; keep the first move that lowers the
   cost, most promising first by the LP's prices; stop when none does or MAX_SOLVES LPs have run.
   The search starts from the better of two: each pool at the least ceiling of the cells the relaxation sent there,
   and each pool at the rung the hull LP (bound.py) weighs most.
3. The bound: the best of the relaxation and the hull LP, which sees the ceilings. The search stops once it is
   within SEARCH_GAP of it (measured against the plan's cost).
4. Exact, when still short: on a small plan (rungs x cells <= EXACT_ITEMS) the disjunctive model with binary rungs
   (bound.exact_plan), by a MIP solver within EXACT_NODES nodes; its answer and bound are kept where better.

The tests compare the answer with an exact mixed-integer optimum of the same model (tests/fleet_oracle.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ortools.linear_solver import linear_solver_pb2, pywraplp

from scheduler.engine import transport
from scheduler.engine.fleet.bound import exact_plan, hull_bound
from scheduler.engine.fleet.problem import FleetProblem

MAX_SOLVES = 40  # LPs per plan, the relaxation included (each ~0.3 ms on the default topology)
PAIR_SOLVES = 200_000  # and at most this many (cell, target) pairs x LPs: an LP over 40k pairs takes ~0.4 s
MAX_RUNGS = 16  # levels tried per pool; more cells than this on a pool share rungs (every level stays feasible)
OPTIMAL_GAP = 1e-6  # relative gap to the bound under which a plan is reported OPTIMAL
SEARCH_GAP = 1e-3  # the search stops once this close to the bound (relative to the cost): within 0.1 % of the optimum
EXACT_ITEMS = 20_000  # rungs x cells up to which a plan still short of its bound is solved exactly (bound.exact_plan)
EXACT_NODES = 5000  # branch-and-bound nodes the exact model may take (deterministic: nodes, not seconds)
EXACT_SECONDS = 20.0  # a safety net on its time (small-pool plans at full load take 3-5 s within the nodes)
# GLOP's presolve ends these LPs ABNORMAL now and then (on 1,000 cells, most re-solves); without it they solve.
GLOP_PARAMETERS = transport.NO_PRESOLVE
_FLOWING = 1e-9  # share of a cell's supply below which a flow does not count as using a pool


@dataclass(frozen=True)
class Solution:
    """A plan's flows, with how good they are known to be."""

    status: str  # OPTIMAL (proved within OPTIMAL_GAP), FEASIBLE (gap above it) or ERROR (no LP answer)
    flow: np.ndarray  # (G, T) units
    unserved: np.ndarray  # (G,)
    objective: float  # CNY/s: cost + penalty on unserved units
    bound: float  # CNY/s: no plan that keeps every ceiling has a lower objective
    solves: int  # LPs run

    cost: float = 0.0  # CNY/s of the flows, penalties aside

    @property
    def gap(self) -> float:
        """(objective - bound) / cost: what a better plan could save, as a share of what this one costs."""
        return max(0.0, self.objective - self.bound) / max(self.cost, 1e-300)


def rungs(fp: FleetProblem, most: int = MAX_RUNGS) -> list[np.ndarray]:
    """Per pool, the levels tried, ascending: the distinct ceilings of its candidate pairs, or `most` of them
    spread evenly (the least and the highest always) where there are more."""
    ok = fp.candidate
    out = []
    for q in range(len(fp.cap)):
        cols = fp.pool == q
        r = np.unique(fp.ceiling[:, cols][ok[:, cols]])
        if len(r) > most:
            r = r[np.unique(np.linspace(0, len(r) - 1, most).round().astype(np.int64))]
        out.append(r)
    return out


class LevelLP:
    """The transportation LP loaded into GLOP once: a change of levels changes only bounds, so each re-solve starts
    from the previous basis."""

    def __init__(self, fp: FleetProblem):
        self.fp = fp
        self.problem = transport.TransportProblem(
            fp.supply, fp.cost, fp.load, fp.pool, np.maximum(fp.cap - fp.used, 0.0), fp.cable_use, fp.gbps,
            fp.cable_free, fp.penalty)
        proto, self.layout = transport.model(self.problem)
        self.solver = pywraplp.Solver.CreateSolver("GLOP")
        self.solver.LoadModelFromProto(proto)
        self.solver.SetSolverSpecificParametersAsString(GLOP_PARAMETERS)
        variables, constraints = self.solver.variables(), self.solver.constraints()
        G, P = len(fp.supply), len(fp.cap)
        self._pairs = variables[:self.layout.n]
        self._rows = constraints[G:G + P]
        self.pair_ceiling = fp.ceiling[self.layout.gs, self.layout.ts]
        self.pair_pool = fp.pool[self.layout.ts]
        self._admitted = np.ones(self.layout.n, bool)
        self._level = fp.cap.copy()
        self.solves = 0

    def admitted(self, level: np.ndarray) -> np.ndarray:
        return self.pair_ceiling >= level[self.pair_pool]

    def solve(self, level: np.ndarray, admit: np.ndarray | None = None) -> transport.TransportSolution:
        """Each pool up to `level`, serving the pairs `admit` (default: those whose ceiling reaches the level)."""
        admit = self.admitted(level) if admit is None else admit
        for i in np.flatnonzero(admit != self._admitted).tolist():
            self._pairs[i].SetUb(self.solver.infinity() if admit[i] else 0.0)
        for q in np.flatnonzero(level != self._level).tolist():
            self._rows[q].SetUb(max(float(level[q] - self.fp.used[q]), 0.0))
        self._admitted, self._level = admit.copy(), level.copy()
        self.solves += 1
        status = self.solver.Solve()
        if status != pywraplp.Solver.OPTIMAL:  # from scratch, with transport.solve's retries
            return transport.solve(self._restricted(level, admit), GLOP_PARAMETERS)
        response = linear_solver_pb2.MPSolutionResponse()
        self.solver.FillSolutionResponseProto(response)
        return transport.decode(self.problem, self.layout, response)

    def _restricted(self, level: np.ndarray, admit: np.ndarray) -> transport.TransportProblem:
        cost = np.full_like(self.fp.cost, np.inf)
        g, t = self.layout.gs[admit], self.layout.ts[admit]
        cost[g, t] = self.fp.cost[g, t]
        free = np.maximum(level - self.fp.used, 0.0)
        p = self.problem
        return transport.TransportProblem(p.supply, cost, p.load, p.pool, free, p.cable_use, p.gbps, p.cable_free,
                                          p.penalty)


def keeps_ceilings(fp: FleetProblem, flow: np.ndarray) -> bool:
    """Every pool's final load is at or below the ceiling of every cell it serves."""
    return not _crowded(fp, flow).any()


def solve(fp: FleetProblem, max_solves: int | None = None, start: np.ndarray | None = None) -> Solution:
    """`max_solves`: LPs at most (default MAX_SOLVES, fewer on large plans: see PAIR_SOLVES; never fewer than 2,
    the relaxation and one plan that keeps the ceilings). `start` (P,): pool levels of a plan known to keep the
    ceilings (e.g. the groups' plan, groups.py), tried as one more start."""
    if max_solves is None:
        max_solves = int(np.clip(PAIR_SOLVES // max(int(fp.candidate.sum()), 1), 2, MAX_SOLVES))
    if not fp.candidate.any() or not (fp.supply > 0).any():
        unserved = fp.supply.copy()
        objective = fp.penalty * float(unserved.sum())
        return Solution("OPTIMAL", np.zeros_like(fp.cost), unserved, objective, objective, 0)
    ladder = rungs(fp)
    if start is not None:
        ladder = [np.union1d(r, [s]) if len(r) and r[0] <= s <= r[-1] else r for r, s in zip(ladder, start.tolist())]
    top, lp, relaxed = _relax(fp, ladder)
    if relaxed.status != "OPTIMAL":
        return Solution("ERROR", np.zeros_like(fp.cost), fp.supply.copy(), np.inf, -np.inf, lp.solves)
    if keeps_ceilings(fp, relaxed.flow):
        return Solution("OPTIMAL", relaxed.flow, relaxed.unserved, relaxed.objective, relaxed.objective, lp.solves,
                        fp.cost_of(relaxed.flow))

    bound = relaxed.objective
    rung = _rungs_served(fp, ladder, relaxed.flow)
    best = lp.solve(_levels(ladder, rung, top))
    if best.status != "OPTIMAL":
        return Solution("ERROR", np.zeros_like(fp.cost), fp.supply.copy(), np.inf, bound, lp.solves)
    if start is not None:
        given = np.array([int(np.searchsorted(r, s)) if len(r) else 0 for r, s in zip(ladder, start.tolist())])
        sol = lp.solve(_levels(ladder, given, top))
        if sol.status == "OPTIMAL" and sol.objective < best.objective:
            best, rung = sol, given
    if not _close(best.objective, bound, fp, best.flow):
        hull = hull_bound(fp, ladder, lp.layout.units, _crowded(fp, relaxed.flow))
        bound = max(bound, hull.value)
        for other in (_rungs_weighted(ladder, hull.weight, rung), np.array([len(r) - 1 for r in ladder]).clip(0)):
            if (other != rung).any():
                sol = lp.solve(_levels(ladder, other, top))
                if sol.status == "OPTIMAL" and sol.objective < best.objective:
                    best, rung = sol, other
    tried: set[tuple[int, int]] = set()  # (pool, rung) moves that did not help: not tried again
    while lp.solves < max_solves and not _close(best.objective, bound, fp, best.flow):
        for q, step in _moves(fp, ladder, rung, best):
            if lp.solves >= max_solves:
                break
            if (q, int(rung[q]) + step) in tried:
                continue
            trial = rung.copy()
            trial[q] += step
            sol = lp.solve(_levels(ladder, trial, top))
            if sol.status == "OPTIMAL" and sol.objective < best.objective * (1 - 1e-9) - 1e-15:
                rung, best = trial, sol
                break
            tried.add((q, int(trial[q])))
        else:
            break
    flow, unserved, objective = best.flow, best.unserved, best.objective
    if not _close(objective, bound, fp, flow):
        full = rungs(fp, most=len(fp.supply) + 1)
        if sum(len(r) for r in full) * len(fp.supply) <= EXACT_ITEMS:
            # Still short of its bound on a small plan (cells of different SLOs and shapes sharing pools): the
            # exact model, as a MIP. Its answer keeps every ceiling too; its bound is valid.
            exact = exact_plan(fp, full, lp.layout.units, EXACT_NODES, EXACT_SECONDS)
            if exact.status != "ERROR":
                bound = max(bound, exact.bound)
                if exact.objective < objective:
                    flow = exact.flow
                    unserved = np.maximum(fp.supply - flow.sum(axis=1), 0.0)
                    objective = fp.objective(flow)  # of the tidied flows
    cost, bound = fp.cost_of(flow), min(bound, objective)
    return Solution(status_of(objective, bound, cost), flow, unserved, objective, bound, lp.solves, cost)


def lower_bound(fp: FleetProblem) -> float:
    """CNY/s: the relaxation, and the hull LP where the relaxation breaks a ceiling (-inf: no LP answered)."""
    if not fp.candidate.any() or not (fp.supply > 0).any():
        return fp.penalty * float(fp.supply.sum())
    ladder = rungs(fp)
    _, lp, relaxed = _relax(fp, ladder)
    if relaxed.status != "OPTIMAL":
        return -np.inf
    if keeps_ceilings(fp, relaxed.flow):
        return relaxed.objective
    return max(relaxed.objective, hull_bound(fp, ladder, lp.layout.units, _crowded(fp, relaxed.flow)).value)


def _relax(fp: FleetProblem, ladder: list[np.ndarray]) -> tuple[np.ndarray, LevelLP, transport.TransportSolution]:
    """Each pool's highest rung, the LP loaded, and the relaxation: every candidate pair, each pool up to its top."""
    top = np.array([r[-1] if len(r) else c for r, c in zip(ladder, fp.cap)])
    lp = LevelLP(fp)
    return top, lp, lp.solve(top, np.ones(lp.layout.n, bool))


def serving_levels(fp: FleetProblem, flow: np.ndarray) -> np.ndarray:
    """(P,) each pool at the least ceiling of the cells `flow` sends there, and at its least ceiling if none."""
    ladder = rungs(fp, most=len(fp.supply) + 1)
    return _levels(ladder, _rungs_served(fp, ladder, flow), fp.cap)


def _rungs_served(fp: FleetProblem, ladder: list[np.ndarray], flow: np.ndarray) -> np.ndarray:
    """Each pool at the least ceiling of the cells `flow` sends there (its lowest rung if none): keeps them all."""
    least = _least_ceiling(fp, flow)
    return np.array([int(np.searchsorted(r, c)) if len(r) and np.isfinite(c) else 0
                     for r, c in zip(ladder, least.tolist())], dtype=np.int64)


def _rungs_weighted(ladder: list[np.ndarray], weight: list[np.ndarray], rung: np.ndarray) -> np.ndarray:
    """Each pool the hull LP modelled at the rung it weighs most (others, and those it left unused, at `rung`)."""
    return np.array([int(np.argmax(w)) if len(w) and w.max() > 0 else k for w, k in zip(weight, rung.tolist())],
                    dtype=np.int64)


def _crowded(fp: FleetProblem, flow: np.ndarray) -> np.ndarray:
    """(P,) the pools whose load under `flow` passes the ceiling of a cell it serves: where the rungs matter."""
    least = _least_ceiling(fp, flow)
    return fp.pool_load(flow) > least + 1e-9 * np.maximum(least, 1.0)


def _least_ceiling(fp: FleetProblem, flow: np.ndarray) -> np.ndarray:
    """(P,) the least ceiling of the cells `flow` sends to each pool (inf: none)."""
    least = np.full(len(fp.cap), np.inf)
    g, t = np.nonzero(flow > _FLOWING * np.maximum(fp.supply[:, None], 1.0))
    np.minimum.at(least, fp.pool[t], fp.ceiling[g, t])
    return least


def _close(objective: float, bound: float, fp: FleetProblem, flow: np.ndarray) -> bool:
    """Within SEARCH_GAP of the bound, measured against the plan's cost (not its penalties: a plan that refuses
    demand it could serve is far from close, however large its objective)."""
    return objective - bound <= SEARCH_GAP * fp.cost_of(flow)


def status_of(objective: float, bound: float, cost: float) -> str:
    """OPTIMAL within OPTIMAL_GAP of the bound, measured against the cost as `Solution.gap` is, else FEASIBLE."""
    return "OPTIMAL" if objective - bound <= OPTIMAL_GAP * cost else "FEASIBLE"


def _levels(ladder: list[np.ndarray], rung: np.ndarray, top: np.ndarray) -> np.ndarray:
    return np.array([r[k] if len(r) else t for r, k, t in zip(ladder, rung.tolist(), top)])


def _moves(fp: FleetProblem, ladder: list[np.ndarray], rung: np.ndarray,
           s: transport.TransportSolution) -> list[tuple[int, int]]:
    """Rung moves worth an LP, most promising first: up where a pool is full and priced (its price times the room
    gained), then down where a cell the level keeps out would serve cheaper than it does now (by how much)."""
    load = fp.pool_load(s.flow)
    level = _levels(ladder, rung, np.zeros(len(rung)))
    up, down = [], []
    reduced = _reduced_costs(fp, s.supply_price, s.cable_price) + fp.load * s.pool_price[fp.pool][None, :]
    for q in range(len(rung)):
        k, r = int(rung[q]), ladder[q]
        if not len(r):
            continue
        if k + 1 < len(r) and s.pool_price[q] > 0 and load[q] >= level[q] - 1e-9 * max(level[q], 1.0):
            up.append((-s.pool_price[q] * (r[k + 1] - r[k]), q, 1))
        if k > 0:
            cols = fp.pool == q
            entering = fp.candidate[:, cols] & (fp.ceiling[:, cols] == r[k - 1])
            gain = reduced[:, cols][entering]
            if len(gain) and gain.min() < 0:
                down.append((float(gain.min()), q, -1))
    return [(q, step) for _, q, step in sorted(up) + sorted(down)]


def _reduced_costs(fp: FleetProblem, supply_price: np.ndarray, cable_price: np.ndarray) -> np.ndarray:
    """(G, T) each pair's cost with its cables priced, less what its cell's next unit is worth (inf: no pair)."""
    priced = fp.cost.copy()
    if fp.cable_use.size and cable_price.any():
        priced += fp.gbps[:, None] * (fp.cable_use @ cable_price)
    return priced - supply_price[:, None]
