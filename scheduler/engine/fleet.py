"""The fleet plan: routing fractions per demand cell (region x model x data class) over sites, for an hour's prices.

Routers apply the fractions locally between re-plans. Latency is judged at each pool's full planned utilization,
so a plan never promises an SLO that filling the pool would break. Three policies share the same inputs:
`optimal` (the transportation LP), and the baselines `nearest` and `cheapest-greedy`, which fill targets in their
order of preference and spill to the next when one is full.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from scheduler.engine import transport
from scheduler.engine.catalog import Catalog
from scheduler.engine.request import DemandCell, Reason, Slo
from scheduler.engine.batch import build

POLICIES = ("optimal", "cheapest-greedy", "nearest")


@dataclass(frozen=True)
class Share:
    site: str
    pool: str
    fraction: float
    tokens_per_s: float
    cny_per_mtok: float  # per million tokens as demanded (input + output), like tokens_per_s
    rtt_ms: float
    ttft_ms: float
    cables: tuple[str, ...]


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
    status: str
    rows: list[PlanRow]
    cost_cny_per_hour: float
    pool_utilization: dict[str, float]
    cable_load_gbps: dict[str, float]
    seconds: float

    @property
    def served_tokens_per_s(self) -> float:
        return sum(s.tokens_per_s for r in self.rows for s in r.shares)

    @property
    def unserved_tokens_per_s(self) -> float:
        return sum(r.unserved_tokens_per_s for r in self.rows)


def plan(cat: Catalog, cells: list[DemandCell], slos: list[Slo], hour: int, policy: str = "optimal",
         pool_used: np.ndarray | None = None) -> FleetPlan:
    """Route steady demand; `pool_used` is capacity already spoken for (default none)."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")
    start = time.perf_counter()
    used = np.zeros(len(cat.pools)) if pool_used is None else pool_used
    free = cat.pool_capacity - used
    full = cat.pool_capacity.copy()  # judge latency at full planned utilization
    p = build(cat, [c.as_batch() for c in cells], slos, hour, full, np.zeros(len(cat.cables)))
    G, T = len(cells), p.n_targets
    # Per unit = one output-equivalent token/s of the cell's typical request.
    cost = np.full((G, T), np.inf)
    load = np.zeros((G, T))
    rtt = np.full((G, T), np.inf)
    ttft = np.full((G, T), np.inf)
    gbps = np.zeros(G)
    feasible_reason = np.zeros((G, T), dtype=np.int8)
    for m in p.models:
        rows, e, off = p.rows[m], p.est[m], p.offset[m]
        cols = slice(off, off + e.cost_cny.shape[1])
        w = p.weight[rows]
        ok = (e.reason == Reason.OK)  # capacity is the LP's business here, not the filter's
        cost[rows, cols] = np.where(ok, e.cost_cny / w[:, None], np.inf)
        load[rows, cols] = 1.0 / p.cat.by_model[m].decode_tps[None, :]
        rtt[rows, cols] = e.rtt_ms
        ttft[rows, cols] = e.ttft_ms
        gbps[rows] = e.gbps * e.hold_s / w
        feasible_reason[rows, cols] = e.reason
    wire_ratio = np.array([(c.input_tokens + c.output_tokens) for c in cells], float)
    speedup = np.array([cat.by_model[c.model].speedup for c in cells])
    weight_ratio = np.array([(c.output_tokens + c.input_tokens / s) for c, s in zip(cells, speedup)])
    # Demand is given in wire tokens/s; the engine accounts in output-equivalent tokens.
    supply = np.array([c.tokens_per_s for c in cells], float) * weight_ratio / wire_ratio
    cable_use = cat.route_cables[p.region][:, p.site] if len(cat.cables) else np.zeros((G, T, 0), bool)
    problem = transport.TransportProblem(supply, cost, load, p.pool, free, cable_use, gbps,
                                         cat.cable_capacity_gbps.copy(), transport.unserved_penalty(cost))
    if policy == "optimal":
        sol = transport.solve(problem)
        flow, status = sol.flow, sol.status
    else:
        key = cost if policy == "cheapest-greedy" else np.where(np.isfinite(cost), rtt, np.inf)
        flow, status = _fill(problem, key), "HEURISTIC"
    return _report(cat, p, cells, supply, flow, cost, rtt, ttft, feasible_reason, load, gbps, cable_use, hour,
                   policy, status, wire_ratio / weight_ratio, start)


def _fill(p: transport.TransportProblem, preference: np.ndarray) -> np.ndarray:
    """Each cell in turn, its targets in order of preference, each filled to what the pool and cables allow."""
    flow = np.zeros_like(p.cost)
    pool_free = np.maximum(p.pool_free.copy(), 0.0)
    cable_free = p.cable_free.copy()
    for g in range(len(p.supply)):
        left = p.supply[g]
        for t in np.argsort(preference[g], kind="stable"):
            if left <= 1e-12 or not np.isfinite(preference[g, t]):
                break
            room = pool_free[p.pool[t]] / p.load[g, t]
            crossing = p.cable_use[g, t]
            if crossing.any() and p.gbps[g] > 0:
                room = min(room, float(cable_free[crossing].min()) / p.gbps[g])
            x = max(0.0, min(left, room))
            if x > 0:
                flow[g, t] = x
                left -= x
                pool_free[p.pool[t]] -= x * p.load[g, t]
                cable_free[crossing] -= x * p.gbps[g]
    return flow


def _report(cat: Catalog, p, cells, supply, flow, cost, rtt, ttft, reason, load, gbps, cable_use, hour, policy,
            status, wire_per_weight, start) -> FleetPlan:
    rows = []
    total = 0.0
    for g, cell in enumerate(cells):
        shares = []
        for t in np.flatnonzero(flow[g] > 1e-9):
            site = cat.sites[p.site[t]]
            route = cat.route(cell.region, site)
            shares.append(Share(site, cat.pools[p.pool[t]].key, float(flow[g, t] / supply[g]),
                                float(flow[g, t] * wire_per_weight[g]), float(cost[g, t] * 1e6 / wire_per_weight[g]), float(rtt[g, t]),
                                float(ttft[g, t]), route.cables if route else ()))
            total += float(flow[g, t] * cost[g, t]) * 3600
        shares.sort(key=lambda s: -s.fraction)
        left = max(0.0, float(supply[g] - flow[g].sum()))
        if left <= 1e-9 * max(supply[g], 1.0):
            r = Reason.OK
        elif np.isfinite(cost[g]).any():
            r = Reason.CAPACITY
        else:
            r = Reason(int(reason[g].max())) if reason.shape[1] else Reason.NOT_SERVED
        rows.append(PlanRow(cell, shares, left * float(wire_per_weight[g]), r))
    pool_load = np.zeros(len(cat.pools))
    np.add.at(pool_load, p.pool, (flow * load).sum(axis=0))
    util = {pl.key: float(pool_load[i] / pl.count) for i, pl in enumerate(cat.pools)}
    cable_load = (flow[:, :, None] * cable_use * gbps[:, None, None]).sum(axis=(0, 1)) if cable_use.size else []
    cables = {c: float(cable_load[i]) for i, c in enumerate(cat.cables)}
    return FleetPlan(cat.version, hour, policy, status, rows, total, util, cables, time.perf_counter() - start)
