"""One batch: the cheapest feasible site with live capacity, and why every other site lost."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from scheduler.engine.catalog import Catalog, ModelTargets
from scheduler.engine.estimate import BatchArrays, Estimates, estimate
from scheduler.engine.request import Batch, Reason, Slo
from scheduler.network import Route


@dataclass(frozen=True)
class Alternative:
    site: str
    pool: str
    cost_cny: float
    rtt_ms: float
    ttft_ms: float
    e2e_ms: float


@dataclass(frozen=True)
class Rejection:
    site: str
    reason: Reason
    detail: str


@dataclass(frozen=True)
class Decision:
    batch: Batch
    placed: bool
    reason: Reason  # OK when placed; otherwise why nothing was
    message: str
    topology_version: str
    hour: int
    site: str | None = None
    pool: str | None = None
    route: Route | None = None
    rtt_ms: float = math.nan
    ttft_ms: float = math.nan
    e2e_ms: float = math.nan
    cost_cny: float = math.nan
    kwh: float = math.nan
    g_co2: float = math.nan
    load: float = 0.0  # accelerators held on the pool
    hold_s: float = 0.0
    slo: Slo | None = None
    alternatives: list[Alternative] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    reservation_ids: tuple[int, ...] = ()


def single(batch: Batch, slo: Slo, cat: Catalog) -> BatchArrays:
    return BatchArrays(
        region=np.array([cat.region_index[batch.region]]),
        input_tokens=np.array([float(batch.input_tokens)]),
        output_tokens=np.array([float(batch.output_tokens)]),
        requests=np.array([float(batch.requests)]),
        ttft_slo=np.array([slo.ttft_ms]),
        e2e_slo=np.array([slo.e2e_ms]),
        data_class=[batch.data_class],
    )


def capacity_reasons(
    cat: Catalog, mt: ModelTargets, est: Estimates, region: np.ndarray, used: np.ndarray, cable_used: np.ndarray
) -> np.ndarray:
    """The reason array with CAPACITY / CABLE filled in where every other check passed, given live usage."""
    reason = est.reason.copy()
    no_room = used[mt.pool][None, :] + est.load > cat.pool_capacity[mt.pool][None, :] + 1e-9
    if len(cat.cables):
        crosses = cat.route_cables[region][:, mt.site, :]  # (B, T, C)
        full = cable_used[None, :] + est.gbps[:, None] > cat.cable_capacity_gbps[None, :] + 1e-12  # (B, C)
        no_cable = (crosses & full[:, None, :]).any(axis=2)
        reason[(reason == Reason.OK) & no_cable] = Reason.CABLE
    reason[(reason == Reason.OK) & no_room] = Reason.CAPACITY
    return reason


def _detail(reason: Reason, est: Estimates, slo: Slo, used: np.ndarray, cat: Catalog, mt: ModelTargets, t: int) -> str:
    if reason is Reason.TTFT:
        return f"ttft {est.ttft_ms[0, t]:.0f} ms > SLO {slo.ttft_ms:.0f} ms"
    if reason is Reason.E2E:
        return f"end-to-end {est.e2e_ms[0, t]:.0f} ms > SLO {slo.e2e_ms:.0f} ms"
    if reason is Reason.CAPACITY:
        p = mt.pool[t]
        return f"pool {cat.pools[p].key} holds {used[p]:.1f} of {cat.pool_capacity[p]:.1f} accelerators, needs {est.load[0, t]:.2f}"
    return reason.label


def decide(
    batch: Batch, slo: Slo, cat: Catalog, hour: int, used: np.ndarray, cable_used: np.ndarray
) -> tuple[Decision, list[int]]:
    """Filter, score and rank; returns the decision (unreserved) and the candidate targets, cheapest first."""
    mt = cat.by_model[batch.model]
    b = single(batch, slo, cat)
    est = estimate(cat, mt, b, hour, used)
    reason = capacity_reasons(cat, mt, est, b.region, used, cable_used)[0]
    ok = np.flatnonzero(reason == Reason.OK)
    order = ok[np.lexsort((est.rtt_ms[0, ok], est.cost_cny[0, ok]))]
    base = dict(batch=batch, topology_version=cat.version, hour=hour, slo=slo)

    # Per site, the target that got furthest through the checks speaks for it.
    rejections = []
    best_per_site: dict[int, int] = {}
    rank = np.where(reason == Reason.OK, 100, reason)
    for t in range(len(mt)):
        s = int(mt.site[t])
        if s not in best_per_site or rank[t] > rank[best_per_site[s]]:
            best_per_site[s] = t
    for s, site in enumerate(cat.sites):
        t = best_per_site.get(s)
        if t is None:
            rejections.append(Rejection(site, Reason.NOT_SERVED, Reason.NOT_SERVED.label))
        elif reason[t] != Reason.OK:
            r = Reason(int(reason[t]))
            rejections.append(Rejection(site, r, _detail(r, est, slo, used, cat, mt, t)))

    alternatives = [
        Alternative(cat.sites[mt.site[t]], cat.pools[mt.pool[t]].key, float(est.cost_cny[0, t]),
                    float(est.rtt_ms[0, t]), float(est.ttft_ms[0, t]), float(est.e2e_ms[0, t]))
        for t in order
    ]
    if len(order) == 0:
        return _unplaced(base, reason, est, slo, cat, mt, rejections), []
    t = int(order[0])
    site = cat.sites[mt.site[t]]
    decision = Decision(
        placed=True, reason=Reason.OK, message=f"cheapest of {len(order)} feasible targets",
        site=site, pool=cat.pools[mt.pool[t]].key, route=cat.route(batch.region, site),
        rtt_ms=float(est.rtt_ms[0, t]), ttft_ms=float(est.ttft_ms[0, t]), e2e_ms=float(est.e2e_ms[0, t]),
        cost_cny=float(est.cost_cny[0, t]), kwh=float(est.kwh[0, t]), g_co2=float(est.g_co2[0, t]),
        load=float(est.load[0, t]), hold_s=float(est.hold_s[0]),
        alternatives=alternatives[1:6], rejections=rejections, **base,
    )
    return decision, [int(x) for x in order]


def _unplaced(base: dict, reason: np.ndarray, est: Estimates, slo: Slo, cat: Catalog, mt: ModelTargets,
              rejections: list[Rejection]) -> Decision:
    """No feasible target: say whether capacity, the SLO or eligibility is to blame, naming the closest miss."""
    if np.any(reason >= Reason.CAPACITY):
        r = Reason.CAPACITY if np.any(reason == Reason.CAPACITY) else Reason.CABLE
        message = f"every site that meets the SLO is full ({r.label})"
    elif np.any((reason == Reason.TTFT) | (reason == Reason.E2E)):
        latency = (reason == Reason.TTFT) | (reason == Reason.E2E)
        over = np.where(reason == Reason.TTFT, est.ttft_ms[0] / slo.ttft_ms, est.e2e_ms[0] / slo.e2e_ms)
        t = int(np.flatnonzero(latency)[np.argmin(over[latency])])
        r = Reason(int(reason[t]))
        site = cat.sites[mt.site[t]]
        what = (f"ttft {est.ttft_ms[0, t]:.0f} ms > {slo.ttft_ms:.0f} ms" if r is Reason.TTFT
                else f"end-to-end {est.e2e_ms[0, t]:.0f} ms > {slo.e2e_ms:.0f} ms")
        message = f"no site meets the SLO; closest miss: {site} with {what}"
    else:
        r = Reason(int(reason.max())) if len(reason) else Reason.NOT_SERVED
        message = f"no eligible site: {r.label}" + ("" if len(reason) else " (no pool serves this model)")
    return Decision(placed=False, reason=r, message=message, rejections=rejections, **base)
