"""What a run measures, per step and per policy, and the run's summary.

Definitions (the report repeats them):
- tokens are input + output tokens on the wire, the unit of demand;
- served / refused: what the plan routed to a site / left unserved (no feasible site with room); served + refused =
  demanded at every step;
- SLO attainment % = tokens served within the SLO / tokens demanded x 100, so refusals count against it. Tokens
  served within the SLO are each share's tokens times the share of its requests that meet the SLO
  (Share.within_slo: the M/M/c wait's distribution at the pool loads the plan itself produces), not a yes/no per
  share: a pool filled to its ceiling keeps exactly the SLO's percentile of requests within it;
- TTFT percentiles are token-weighted over served tokens (per step, and over the whole run) of each share's TTFT at
  its SLO's percentile (Share.ttft_ms);
- energy and carbon follow each target's kWh and gCO2 per million output-equivalent tokens; green share is the
  kWh-weighted green share of the sites used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

from scheduler.engine.fleet import FleetPlan
from scheduler.sim.world import Snapshot

PERCENTILES = (50.0, 95.0, 99.0)


def weighted_percentiles(values: np.ndarray, weights: np.ndarray, qs=PERCENTILES) -> list[float]:
    """The smallest value at or below which q% of the weight lies (NaN when there is no weight)."""
    keep = weights > 0
    values, weights = values[keep], weights[keep]
    if not len(values):
        return [math.nan for _ in qs]
    order = np.argsort(values, kind="stable")
    v, c = values[order], np.cumsum(weights[order])
    idx = np.searchsorted(c, np.asarray(qs) / 100.0 * c[-1] * (1 - 1e-12), side="left")
    return [float(v[min(i, len(v) - 1)]) for i in idx]


class Trace:
    """Per-step metrics of one policy through one run, as arrays (rows = steps)."""

    SCALARS = ("demand_tps", "served_tps", "refused_tps", "within_slo_tps", "cost_cny_per_hour", "kwh_per_hour",
               "g_co2_per_hour", "green_kwh_per_hour", "ttft_p50_ms", "ttft_p95_ms", "ttft_p99_ms")

    def __init__(self, policy: str, steps: int, sites: list[str], cables: list[str], step_minutes: float):
        self.policy = policy
        self.sites = sites
        self.cables = cables
        self.step_hours = step_minutes / 60.0
        for name in self.SCALARS:
            setattr(self, name, np.zeros(steps))
        self.site_util = np.zeros((steps, len(sites)))
        self.site_tps = np.zeros((steps, len(sites)))
        self.cable_gbps = np.zeros((steps, len(cables)))
        self.cables_used: list[set[str]] = [set() for _ in range(steps)]  # cables any share crossed
        self.plan_seconds = 0.0  # wall time inside the engine (benchmarks; never written to outputs)
        self.failed = 0  # steps whose solver gave no answer: their demand counts as refused
        self.worst_gap = 0.0  # the largest gap to its bound a plan reported (NaN: a baseline, no bound)
        self._ttft: list[np.ndarray] = []
        self._tps: list[np.ndarray] = []
        self._site_index = {s: i for i, s in enumerate(sites)}
        self._cable_index = {c: i for i, c in enumerate(cables)}

    def record(self, i: int, plan: FleetPlan, snap: Snapshot) -> None:
        cat = snap.catalog
        ttft, tps = [], []
        demand = served = within = kwh = co2 = green = 0.0
        for g, row in enumerate(plan.rows):
            demand += row.cell.tokens_per_s
            for s in row.shares:
                served += s.tokens_per_s
                within += s.tokens_per_s * s.within_slo
                kwh += s.kwh_per_hour
                co2 += s.g_co2_per_hour
                green += s.kwh_per_hour * s.green_share
                self.site_tps[i, self._site_index[s.site]] += s.tokens_per_s
                self.cables_used[i].update(s.cables)
                ttft.append(s.ttft_ms)
                tps.append(s.tokens_per_s)
        self.demand_tps[i] = demand
        self.served_tps[i] = served
        self.refused_tps[i] = plan.unserved_tokens_per_s
        self.within_slo_tps[i] = within
        self.cost_cny_per_hour[i] = plan.cost_cny_per_hour
        self.kwh_per_hour[i] = kwh
        self.g_co2_per_hour[i] = co2
        self.green_kwh_per_hour[i] = green
        v, w = np.array(ttft, dtype=float), np.array(tps, dtype=float)
        self.ttft_p50_ms[i], self.ttft_p95_ms[i], self.ttft_p99_ms[i] = weighted_percentiles(v, w)
        self._ttft.append(v)
        self._tps.append(w)
        for site, pools in snap.site_pools.items():
            count = sum(cat.pools[p].count for p in pools)
            used = sum(plan.pool_utilization.get(cat.pools[p].key, 0.0) * cat.pools[p].count for p in pools)
            self.site_util[i, self._site_index[site]] = used / count if count else 0.0
        for cable, gbps in plan.cable_load_gbps.items():
            self.cable_gbps[i, self._cable_index[cable]] = gbps

    def note_solver(self, plan: FleetPlan) -> None:
        if plan.status == "ERROR":
            self.failed += 1
        self.worst_gap = max(self.worst_gap, plan.gap) if math.isfinite(plan.gap) else math.nan

    def copy_step(self, i: int, j: int) -> None:
        """Step i planned exactly what step j did (same state, hour and demand)."""
        for name in self.SCALARS:
            arr = getattr(self, name)
            arr[i] = arr[j]
        self.site_util[i] = self.site_util[j]
        self.site_tps[i] = self.site_tps[j]
        self.cable_gbps[i] = self.cable_gbps[j]
        self.cables_used[i] = set(self.cables_used[j])
        self._ttft.append(self._ttft[j])
        self._tps.append(self._tps[j])

    def samples(self) -> tuple[np.ndarray, np.ndarray]:
        """Every served share of every step: (TTFT ms, tokens/s), for run-wide percentiles."""
        if not self._ttft:
            return np.zeros(0), np.zeros(0)
        return np.concatenate(self._ttft), np.concatenate(self._tps)


@dataclass(frozen=True)
class Summary:
    """One policy's totals over a run: the row of the comparison table."""

    policy: str
    cost_cny: float
    cny_per_mtok: float
    slo_attainment_pct: float
    ttft_p50_ms: float
    ttft_p95_ms: float
    ttft_p99_ms: float
    tokens_demanded: float
    tokens_served: float
    tokens_refused: float
    energy_kwh: float
    green_share: float
    g_co2: float

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def values(self) -> list:
        return [getattr(self, n) for n in self.names()]


def summarize(t: Trace) -> Summary:
    seconds = t.step_hours * 3600.0
    demanded = float(t.demand_tps.sum() * seconds)
    served = float(t.served_tps.sum() * seconds)
    refused = float(t.refused_tps.sum() * seconds)
    within = float(t.within_slo_tps.sum() * seconds)
    cost = float(t.cost_cny_per_hour.sum() * t.step_hours)
    kwh = float(t.kwh_per_hour.sum() * t.step_hours)
    green = float(t.green_kwh_per_hour.sum() * t.step_hours)
    p50, p95, p99 = weighted_percentiles(*t.samples())
    return Summary(
        policy=t.policy,
        cost_cny=cost,
        cny_per_mtok=cost / served * 1e6 if served > 0 else math.nan,
        slo_attainment_pct=100.0 * within / demanded if demanded > 0 else math.nan,
        ttft_p50_ms=p50, ttft_p95_ms=p95, ttft_p99_ms=p99,
        tokens_demanded=demanded, tokens_served=served, tokens_refused=refused,
        energy_kwh=kwh,
        green_share=green / kwh if kwh > 0 else math.nan,
        g_co2=float(t.g_co2_per_hour.sum() * t.step_hours),
    )
