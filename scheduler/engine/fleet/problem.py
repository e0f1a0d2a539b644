"""The fleet plan's inputs as arrays: every demand cell against every target, with each pair's ceiling.

A unit of flow is one output-equivalent token per second of the cell's typical request (costs.py), so a pair's cost
and pool load are per unit and add up linearly. Latency depends on the load of the pool, so a pair is a *candidate*
when it meets its SLO at some load the pool can still reach: its ceiling (estimate.ceilings, the highest pool load
at which the cell's typical request still meets its SLO) lies above the pool's current load. A plan may route a
cell to a pool only while the pool's final load stays at or below that cell's ceiling there.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from scheduler import costs
from scheduler.engine import transport
from scheduler.engine.catalog import Catalog
from scheduler.engine.estimate import BatchArrays, Estimates, ceilings, estimate
from scheduler.engine.request import DemandCell, Reason, Slo

# A pair is a candidate only if its ceiling leaves at least this share of an accelerator above the current load.
MIN_ROOM = 1e-9
LATENCY_REASONS = (int(Reason.OK), int(Reason.TTFT), int(Reason.E2E))


@dataclass(frozen=True)
class FleetProblem:
    """G cells x T targets (the targets of every model side by side; a cell's model owns its columns)."""

    cat: Catalog
    cells: list[DemandCell]
    slos: list[Slo]
    hour: int
    supply: np.ndarray  # (G,) units demanded
    cost: np.ndarray  # (G, T) CNY per unit; inf where the pair is not a candidate
    load: np.ndarray  # (G, T) accelerators per unit on the target's pool
    ceiling: np.ndarray  # (G, T) the most load of the pool at which the pair meets its SLO, at most the pool's cap
    reason: np.ndarray  # (G, T) why a pair is not a candidate (OK where it is)
    pool: np.ndarray  # (T,) pool of each target
    site: np.ndarray  # (T,) site of each target
    used: np.ndarray  # (P,) accelerators already held on each pool
    cap: np.ndarray  # (P,) the most load each pool may carry
    cable_use: np.ndarray  # (G, T, C) the pair's route crosses the cable
    gbps: np.ndarray  # (G,) Gbps per unit
    cable_free: np.ndarray  # (C,) Gbps left on each cable
    wire_per_unit: np.ndarray  # (G,) tokens on the wire (input + output) per unit
    rtt_ms: np.ndarray  # (G, T)
    kwh: np.ndarray  # (G, T) per unit (per output-equivalent token)
    g_co2: np.ndarray  # (G, T)
    green_share: np.ndarray  # (T,)
    models: list[str]  # models with cells, in catalog order
    rows: dict[str, np.ndarray]  # each model's cells
    offset: dict[str, int]  # each model's first target
    estimates: dict[str, Estimates]  # each model's cells against its targets, for latency at other loads
    penalty: float  # CNY per unserved unit: far above any candidate's cost, so serving anything feasible always wins

    @cached_property
    def candidate(self) -> np.ndarray:
        return np.isfinite(self.cost)

    def cost_of(self, flow: np.ndarray) -> float:
        """CNY/s the flow costs (penalties aside)."""
        return float((flow * np.where(self.candidate, self.cost, 0.0)).sum())

    def objective(self, flow: np.ndarray) -> float:
        """CNY/s: the flow's cost and the penalty on what it leaves unserved, what every policy is judged by."""
        return self.cost_of(flow) + self.penalty * float(np.maximum(self.supply - flow.sum(axis=1), 0.0).sum())

    def pool_load(self, flow: np.ndarray) -> np.ndarray:
        """(P,) each pool's final load: what it held plus what the flow adds."""
        return self.used + np.bincount(self.pool, weights=(flow * self.load).sum(axis=0), minlength=len(self.used))

    def cable_load(self, flow: np.ndarray) -> np.ndarray:
        """(C,) Gbps the flow adds to each cable."""
        if not self.cable_use.size:
            return np.zeros(self.cable_use.shape[2])
        return np.einsum("gt,gtc->c", flow * self.gbps[:, None], self.cable_use)


def build(cat: Catalog, cells: list[DemandCell], slos: list[Slo], hour: int, used: np.ndarray, cap: np.ndarray,
          cable_used: np.ndarray) -> FleetProblem:
    """Score every cell's typical request against every target of its model at the current loads."""
    G = len(cells)
    by_model: dict[str, list[int]] = {}
    for g, c in enumerate(cells):
        by_model.setdefault(c.model, []).append(g)
    models = [m for m in cat.by_model if m in by_model]
    T = sum(len(cat.by_model[m]) for m in models)
    cost = np.full((G, T), np.inf)
    load = np.zeros((G, T))
    ceiling = np.full((G, T), -np.inf)
    reason = np.full((G, T), int(Reason.NOT_SERVED), dtype=np.int8)
    rtt = np.full((G, T), np.inf)
    kwh = np.zeros((G, T))
    g_co2 = np.zeros((G, T))
    gbps = np.zeros(G)
    weight = np.zeros(G)
    wire = np.array([c.input_tokens + c.output_tokens for c in cells], dtype=float)
    pools, sites, green, rows, offset, estimates = [], [], [], {}, {}, {}
    region = np.array([cat.region_index[c.region] for c in cells], dtype=np.int64).reshape(G)
    n = 0
    for m in models:
        mt = cat.by_model[m]
        idx = np.array(by_model[m], dtype=np.int64)
        arrays = BatchArrays(
            region=region[idx], input_tokens=np.array([cells[g].input_tokens for g in idx], dtype=float),
            output_tokens=np.array([cells[g].output_tokens for g in idx], dtype=float), requests=np.ones(len(idx)),
            ttft_slo=np.array([slos[g].ttft_ms for g in idx]), e2e_slo=np.array([slos[g].e2e_ms for g in idx]),
            data_class=[cells[g].data_class for g in idx], percentile=np.array([slos[g].percentile for g in idx]))
        e = estimate(cat, mt, arrays, hour, used)
        top, binding = ceilings(cat, mt, e, arrays.ttft_slo, arrays.e2e_slo)
        top = np.minimum(top, cap[mt.pool][None, :])
        w = costs.token_weight(arrays.input_tokens, arrays.output_tokens, mt.speedup)  # per request
        cols = slice(n, n + len(mt))
        static = np.isin(e.reason, LATENCY_REASONS)  # every check that does not depend on load passes
        roomy = top > used[mt.pool][None, :] + MIN_ROOM
        ok = static & roomy
        r = e.reason.copy()
        # Out of reach: the SLO even on an idle pool (the bound that binds), else the pool's load already.
        r[static & ~roomy] = np.where(np.isfinite(top), int(Reason.CAPACITY), binding)[static & ~roomy]
        r[ok] = int(Reason.OK)
        reason[idx, cols] = r
        cost[idx, cols] = np.where(ok, e.cost_cny / w[:, None], np.inf)
        load[idx, cols] = 1.0 / mt.decode_tps[None, :]
        ceiling[idx, cols] = np.where(ok, top, -np.inf)
        rtt[idx, cols] = e.rtt_ms
        kwh[idx, cols] = e.kwh / w[:, None]
        g_co2[idx, cols] = e.g_co2 / w[:, None]
        gbps[idx] = e.gbps * e.hold_s / w  # a request's gigabits over its weight: Gbps per unit
        weight[idx] = w
        pools.append(mt.pool)
        sites.append(mt.site)
        green.append(mt.green_share)
        rows[m], offset[m], estimates[m] = idx, n, e
        n += len(mt)
    pool = np.concatenate(pools) if pools else np.zeros(0, np.int64)
    site = np.concatenate(sites) if sites else np.zeros(0, np.int64)
    C = len(cat.cables)
    cable_use = cat.route_cables[region][:, site] if C else np.zeros((G, T, 0), bool)
    supply = np.array([c.tokens_per_s for c in cells], dtype=float) * weight / np.maximum(wire, 1.0)
    return FleetProblem(
        cat, cells, slos, hour, supply, cost, load, ceiling, reason, pool, site, used.astype(float),
        cap.astype(float), cable_use, gbps, cat.cable_capacity_gbps - cable_used, wire / np.where(weight > 0, weight, 1.0),
        rtt, kwh, g_co2, np.concatenate(green) if green else np.zeros(0), models, rows, offset, estimates,
        transport.unserved_penalty(cost))
