"""The fleet plan: routing fractions per demand cell (region x model x data class) over sites, for an hour's prices.

Routers apply the fractions locally between re-plans. Every policy keeps each pool at or below the ceiling of
every cell it routes there (problem.py), so every share's SLO holds at the loads the plan itself produces; the
shares report latency at exactly those loads. Policies: `optimal` (optimal.py) and the baselines `cheapest-greedy`
and `nearest` (greedy.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from scheduler.engine.catalog import Catalog
from scheduler.engine.estimate import latency_at, mean_ttft_ms, within_slo
import scheduler.engine.fleet.greedy as greedy
import scheduler.engine.fleet.groups as groups
import scheduler.engine.fleet.optimal as optimal
from scheduler.engine.fleet.problem import FleetProblem, build
from scheduler.engine.request import DemandCell, Reason, Slo

POLICIES = ("optimal", "cheapest-greedy", "nearest")
MAX_GROUPS = 200  # more demand cells than this are planned as this many groups (groups.py)
BOUND_GROUPS = 400  # and bounded with this many
SEARCH_PAIRS = 30_000  # up to this many (cell, target) pairs, the cells' own search runs too, from the groups' plan
HEURISTIC = "HEURISTIC"


@dataclass(frozen=True)
class Share:
    site: str
    pool: str
    fraction: float
    tokens_per_s: float
    cny_per_mtok: float  # per million tokens as demanded (input + output), like tokens_per_s
    rtt_ms: float
    ttft_ms: float  # at the SLO's percentile, at the pool loads the plan produces
    cables: tuple[str, ...]
    e2e_ms: float = math.nan
    kwh_per_hour: float = 0.0
    g_co2_per_hour: float = 0.0
    green_share: float = 0.0
    ttft_mean_ms: float = math.nan  # with the mean wait
    within_slo: float = math.nan  # the share of its requests that meet the SLO there (at least its percentile)


@dataclass(frozen=True)
class PlanRow:
    cell: DemandCell
    shares: list[Share]
    unserved_tokens_per_s: float
    reason: Reason  # OK when fully served; else why the rest is not


@dataclass(frozen=True)
class FleetPlan:
    topology_version: str
    hour: int
    policy: str
    status: str  # OPTIMAL / FEASIBLE (optimal, by its gap), HEURISTIC (baselines), ERROR (no solver answer)
    rows: list[PlanRow]
    cost_cny_per_hour: float
    pool_utilization: dict[str, float]
    cable_load_gbps: dict[str, float]
    seconds: float
    objective_cny_per_hour: float = math.nan  # cost + the penalty on refused demand
    bound_cny_per_hour: float = math.nan  # no plan keeping every SLO has a lower objective (NaN: not computed)
    solves: int = 0  # LPs the optimal policy ran

    @property
    def gap(self) -> float:
        """(objective - bound) / cost: what a better plan could save, as a share of what this one costs (refused
        demand counted at its penalty); NaN for the baselines."""
        if not (math.isfinite(self.bound_cny_per_hour) and math.isfinite(self.objective_cny_per_hour)):
            return math.nan
        return max(0.0, self.objective_cny_per_hour - self.bound_cny_per_hour) / max(self.cost_cny_per_hour, 1e-300)

    @property
    def served_tokens_per_s(self) -> float:
        return sum(s.tokens_per_s for r in self.rows for s in r.shares)

    @property
    def unserved_tokens_per_s(self) -> float:
        return sum(r.unserved_tokens_per_s for r in self.rows)

    @property
    def kwh_per_hour(self) -> float:
        return sum(s.kwh_per_hour for r in self.rows for s in r.shares)


def plan(cat: Catalog, cells: list[DemandCell], slos: list[Slo], hour: int, policy: str = "optimal",
         pool_used: np.ndarray | None = None, pool_cap: np.ndarray | None = None,
         cable_used: np.ndarray | None = None) -> FleetPlan:
    """Route steady demand. `pool_used` / `cable_used`: load already held (default none); `pool_cap`: the most
    load each pool may carry (default its capacity; lower where live placements' SLOs say so)."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")
    start = time.perf_counter()
    P = len(cat.pools)
    used = np.zeros(P) if pool_used is None else np.asarray(pool_used, float)
    cap = cat.pool_capacity if pool_cap is None else np.minimum(cat.pool_capacity, pool_cap)
    fp = build(cat, cells, slos, hour, used, cap, np.zeros(len(cat.cables)) if cable_used is None else cable_used)
    if policy == "optimal":
        flow, status, objective, bound, solves = _optimal(fp)
    else:
        flow, status, bound, solves = greedy.fill(fp, greedy.preference(fp, policy)), HEURISTIC, math.nan, 0
        objective = fp.objective(flow)
    return _report(fp, flow, policy, status, objective, bound, solves, start)


def _optimal(fp: FleetProblem) -> tuple[np.ndarray, str, float, float, int]:
    """Flows, status, objective and bound (CNY/s), LPs run; many cells as groups (groups.py)."""
    grouping = groups.conservative(fp, MAX_GROUPS)
    if grouping is None:
        s = optimal.solve(fp)
        return s.flow, s.status, s.objective, s.bound, s.solves
    s = optimal.solve(grouping.cells)
    if s.status == "ERROR":
        return np.zeros_like(fp.cost), s.status, np.inf, -np.inf, s.solves
    flow = grouping.spread(s.flow, fp)
    objective = fp.objective(flow)
    solves = s.solves
    bound = -np.inf
    if int(fp.candidate.sum()) <= SEARCH_PAIRS:
        # The cells' own search, also started from the groups' plan (every member of a group fits its levels).
        alone = optimal.solve(fp, start=optimal.serving_levels(grouping.cells, s.flow))
        solves += alone.solves
        bound = alone.bound
        if alone.status != "ERROR" and alone.objective < objective:
            flow, objective = alone.flow, alone.objective
    bound = min(max(bound, optimal.lower_bound(groups.optimistic(fp, BOUND_GROUPS).cells)), objective)
    status = optimal.status_of(objective, bound, fp.cost_of(flow))
    return flow, status, objective, bound, solves + 1


def _report(fp: FleetProblem, flow: np.ndarray, policy: str, status: str, objective: float, bound: float,
            solves: int, start: float) -> FleetPlan:
    cat = fp.cat
    pool_load = fp.pool_load(flow)
    ttft, e2e = np.full(fp.cost.shape, np.inf), np.full(fp.cost.shape, np.inf)
    mean, within = np.full(fp.cost.shape, np.inf), np.zeros(fp.cost.shape)
    for m in fp.models:
        mt, est, rows = cat.by_model[m], fp.estimates[m], fp.rows[m]
        cols = slice(fp.offset[m], fp.offset[m] + len(mt))
        ttft[rows, cols], e2e[rows, cols] = latency_at(cat, mt, est, pool_load)
        mean[rows, cols] = mean_ttft_ms(cat, mt, est, pool_load)
        slos = [fp.slos[g] for g in rows.tolist()]
        within[rows, cols] = within_slo(cat, mt, est, pool_load, np.array([s.ttft_ms for s in slos]),
                                        np.array([s.e2e_ms for s in slos]))
    failed = status == "ERROR"
    # A cell whose every candidate route crosses a cable the plan fills is short of bandwidth, not accelerators.
    if fp.cable_use.size:
        full = fp.cable_load(flow) >= fp.cable_free * (1 - 1e-9) - 1e-12
        cut_off = ~(fp.candidate & ~(fp.cable_use & full[None, None, :]).any(axis=2)).any(axis=1)
    else:
        cut_off = np.zeros(len(fp.cells), bool)
    rows = []
    total = 0.0
    for g, cell in enumerate(fp.cells):
        shares = []
        wire = float(fp.wire_per_unit[g])
        for t in np.flatnonzero(flow[g] > 1e-9).tolist():
            site = cat.sites[fp.site[t]]
            route = cat.route(cell.region, site)
            x = float(flow[g, t])
            per_hour = x * 3600.0
            shares.append(Share(
                site, cat.pools[fp.pool[t]].key, x / float(fp.supply[g]), x * wire, float(fp.cost[g, t]) * 1e6 / wire,
                float(fp.rtt_ms[g, t]), float(ttft[g, t]), route.cables if route else (), float(e2e[g, t]),
                float(fp.kwh[g, t]) * per_hour, float(fp.g_co2[g, t]) * per_hour, float(fp.green_share[t]),
                float(mean[g, t]), float(within[g, t])))
            total += float(fp.cost[g, t]) * per_hour
        shares.sort(key=lambda s: -s.fraction)
        left = max(0.0, float(fp.supply[g] - flow[g].sum()))
        if left <= 1e-9 * max(float(fp.supply[g]), 1.0):
            reason = Reason.OK
        elif failed:
            reason = Reason.SOLVER_FAILED
        elif fp.candidate[g].any():
            reason = Reason.CABLE if cut_off[g] else Reason.CAPACITY
        else:
            reason = Reason(int(fp.reason[g].max())) if fp.reason.shape[1] else Reason.NOT_SERVED
        rows.append(PlanRow(cell, shares, left * wire, reason))
    util = {pl.key: float((pool_load[i] - fp.used[i]) / pl.count) for i, pl in enumerate(cat.pools)}
    cables = dict(zip(cat.cables, fp.cable_load(flow).tolist()))
    return FleetPlan(cat.version, fp.hour, policy, status, rows, total, util, cables, time.perf_counter() - start,
                     objective * 3600.0, bound * 3600.0, solves)
