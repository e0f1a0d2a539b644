"""One batch: the cheapest feasible site with live capacity, and why every other site lost."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field, replace

import numpy as np

from scheduler import costs, queueing
from scheduler.engine.catalog import Catalog, ModelTargets, OneBatchTables
from scheduler.engine.estimate import (
    CEILING_MARGIN, BatchArrays, Estimates, ceilings, estimate, latency_at, mean_ttft_ms,
)
from scheduler.engine.request import Batch, Reason, Slo
from scheduler.network import Route

# Reason codes as plain ints for the array work: IntEnum member lookups go through enum's __getattr__, which is slow
# on the per-placement hot path. Reasons handed to callers stay Reason members.
OK, CAPACITY, CABLE = int(Reason.OK), int(Reason.CAPACITY), int(Reason.CABLE)
ALTERNATIVES = 5  # runners-up a placed decision lists


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
    ceiling: float = math.inf  # the pool load (accelerators) up to which this placement's SLO holds
    ttft_mean_ms: float = math.nan  # TTFT with the mean wait; ttft_ms is at the SLO's percentile


def single(batch: Batch, slo: Slo, cat: Catalog) -> BatchArrays:
    return BatchArrays(
        region=np.array([cat.region_index[batch.region]]),
        input_tokens=np.array([float(batch.input_tokens)]),
        output_tokens=np.array([float(batch.output_tokens)]),
        requests=np.array([float(batch.requests)]),
        ttft_slo=np.array([slo.ttft_ms]),
        e2e_slo=np.array([slo.e2e_ms]),
        data_class=[batch.data_class],
        percentile=slo.percentile,
    )


def capacity_reasons(
    cat: Catalog, mt: ModelTargets, est: Estimates, region: np.ndarray, used: np.ndarray, cable_used: np.ndarray,
    cap: np.ndarray | None = None,
) -> np.ndarray:
    """The reason array with CAPACITY / CABLE filled in where every other check passed, given live usage.

    `cap` is the load each pool may reach (default its capacity; lower where live placements' ceilings say so).
    Capacity is checked before cable bandwidth, as the reasons are ordered.
    """
    reason = est.reason.copy()
    cap = cat.pool_capacity if cap is None else cap
    no_room = used[mt.pool][None, :] + est.load > cap[mt.pool][None, :] + 1e-9
    reason[(reason == OK) & no_room] = CAPACITY
    if len(cat.cables):
        full = cable_used[None, :] + est.gbps[:, None] > cat.cable_capacity_gbps[None, :] + 1e-12  # (B, C)
        view = cat.targets_view(mt.model)
        for c in np.flatnonzero(full.any(axis=0)).tolist():
            crossing = view.cables[region, :, c] & full[:, c][:, None]  # (B, T)
            reason[(reason == OK) & crossing] = CABLE
    return reason


def own_load_reasons(est: Estimates, reason: np.ndarray, theta: np.ndarray, binding: np.ndarray, mt: ModelTargets,
                     used: np.ndarray) -> np.ndarray:
    """`reason` with TTFT / E2E also where the pool has room but the batch's own load would push it past the
    pair's ceiling (the latency check again, with the batch itself counted in the queue)."""
    reason = reason.copy()
    over = (reason == OK) & (used[mt.pool][None, :] + est.load > theta + 1e-9)
    reason[over] = binding[over]
    return reason


def _detail(reason: Reason, est: Estimates, slo: Slo, used: np.ndarray, cat: Catalog, mt: ModelTargets, t: int,
            cap: np.ndarray, own_load: bool) -> str:
    own = " with this batch on the pool" if own_load else ""
    if reason is Reason.TTFT:
        return f"ttft {est.ttft_ms[0, t]:.0f} ms > SLO {slo.ttft_ms:.0f} ms{own}"
    if reason is Reason.E2E:
        return f"end-to-end {est.e2e_ms[0, t]:.0f} ms > SLO {slo.e2e_ms:.0f} ms{own}"
    if reason is Reason.CAPACITY:
        p = mt.pool[t]
        limit = (f"{cat.pool_capacity[p]:.1f} accelerators" if cap[p] >= cat.pool_capacity[p]
                 else f"{cap[p]:.1f} accelerators (SLOs already promised on it allow no more)")
        return f"pool {cat.pools[p].key} holds {used[p]:.1f} of {limit}, needs {est.load[0, t]:.2f}"
    return reason.label


def decide(
    batch: Batch, slo: Slo, cat: Catalog, hour: int, used: np.ndarray, cable_used: np.ndarray,
    ceiling: np.ndarray | None = None,
) -> tuple[Decision, list[int]]:
    """Filter, score and rank; returns the decision (unreserved) and the candidate targets, cheapest first.

    Latency is judged with the batch itself on the pool (its own load counts towards queueing), and a pool may not
    grow past `ceiling` (per pool: the least load at which some live placement would miss its SLO; default none).
    """
    mt = cat.by_model[batch.model]
    b = single(batch, slo, cat)
    now = estimate(cat, mt, b, hour, used)
    theta, binding = ceilings(cat, mt, now, b.ttft_slo, b.e2e_slo)
    cap = cat.pool_capacity if ceiling is None else np.minimum(cat.pool_capacity, ceiling)
    reason = own_load_reasons(now, capacity_reasons(cat, mt, now, b.region, used, cable_used, cap), theta, binding,
                              mt, used)[0]
    with_it = used.copy()
    with_it[mt.pool] += now.load[0]  # one target per pool and model, so this is each pool with this batch on it
    # What the batch will see, the numbers reported: only latency depends on load. The reason codes stay those
    # judged above (feasibility is decided there, with the batch's own load already counted).
    ttft, e2e = latency_at(cat, mt, now, with_it)
    est = replace(now, ttft_ms=ttft, e2e_ms=e2e)
    ok = np.flatnonzero(reason == OK)
    order = ok[np.lexsort((est.rtt_ms[0, ok], est.cost_cny[0, ok]))]
    base = dict(batch=batch, topology_version=cat.version, hour=hour, slo=slo)
    rejections = _rejections(reason, now.reason[0], est, slo, used, cat, mt, cap)
    if len(order) == 0:
        return _unplaced(base, reason, est, slo, cat, mt, rejections, used, cap), []
    t = int(order[0])
    site = cat.sites[mt.site[t]]
    decision = Decision(
        placed=True, reason=Reason.OK, message=f"cheapest of {len(order)} feasible targets",
        site=site, pool=cat.pools[mt.pool[t]].key, route=cat.route(batch.region, site),
        rtt_ms=float(est.rtt_ms[0, t]), ttft_ms=float(est.ttft_ms[0, t]), e2e_ms=float(est.e2e_ms[0, t]),
        cost_cny=float(est.cost_cny[0, t]), kwh=float(est.kwh[0, t]), g_co2=float(est.g_co2[0, t]),
        load=float(est.load[0, t]), hold_s=float(est.hold_s[0]), ceiling=float(theta[0, t]),
        ttft_mean_ms=float(mean_ttft_ms(cat, mt, now, with_it)[0, t]),
        alternatives=_alternatives(est, cat, mt, order[1:1 + ALTERNATIVES]), rejections=rejections, **base,
    )
    return decision, order.tolist()


def _rejections(reason: np.ndarray, before_own_load: np.ndarray, est: Estimates, slo: Slo, used: np.ndarray,
                cat: Catalog, mt: ModelTargets, cap: np.ndarray) -> list[Rejection]:
    """Why each site without a feasible target lost: per site, the target that got furthest through the checks
    speaks for it (a site serving the model on no pool is NOT_SERVED)."""
    best_per_site: dict[int, int] = {}
    rank = np.where(reason == OK, 100, reason).tolist()
    for t, s in enumerate(mt.site.tolist()):
        if s not in best_per_site or rank[t] > rank[best_per_site[s]]:
            best_per_site[s] = t
    codes = reason.tolist()
    rejections = []
    for s, site in enumerate(cat.sites):
        t = best_per_site.get(s)
        if t is None:
            rejections.append(Rejection(site, Reason.NOT_SERVED, Reason.NOT_SERVED.label))
        elif codes[t] != OK:
            r = Reason(codes[t])
            rejections.append(Rejection(site, r, _detail(r, est, slo, used, cat, mt, t, cap,
                                                         bool(before_own_load[t] == OK))))
    return rejections


def _alternatives(est: Estimates, cat: Catalog, mt: ModelTargets, targets: np.ndarray) -> list[Alternative]:
    """The runners-up, built only for the few targets a decision lists (not for every feasible one)."""
    cols = zip(mt.site[targets].tolist(), mt.pool[targets].tolist(), est.cost_cny[0, targets].tolist(),
               est.rtt_ms[0, targets].tolist(), est.ttft_ms[0, targets].tolist(), est.e2e_ms[0, targets].tolist())
    return [Alternative(cat.sites[s], cat.pools[p].key, cost, rtt, ttft, e2e) for s, p, cost, rtt, ttft, e2e in cols]


def _unplaced(base: dict, reason: np.ndarray, est: Estimates, slo: Slo, cat: Catalog, mt: ModelTargets,
              rejections: list[Rejection], used: np.ndarray, cap: np.ndarray) -> Decision:
    """No feasible target: say whether capacity, the SLO or eligibility is to blame, naming the closest miss."""
    if np.any(reason >= Reason.CAPACITY):
        r = Reason.CAPACITY if np.any(reason == Reason.CAPACITY) else Reason.CABLE
        full = np.flatnonzero(reason == r)
        if r is Reason.CAPACITY:  # the closest miss: the pool with the most room left
            t = int(full[np.argmax(cap[mt.pool[full]] - used[mt.pool[full]])])
            p = mt.pool[t]
            closest = (f"; closest miss: {cat.sites[mt.site[t]]} ({cat.pools[p].key}) has "
                       f"{max(cap[p] - used[p], 0.0):.2f} accelerators free, needs {est.load[0, t]:.2f}")
        else:
            closest = f"; e.g. {cat.sites[mt.site[int(full[0])]]}"
        message = f"every site that meets the SLO is full ({r.label}){closest}"
    elif np.any((reason == Reason.TTFT) | (reason == Reason.E2E)):
        latency = (reason == Reason.TTFT) | (reason == Reason.E2E)
        with np.errstate(invalid="ignore", divide="ignore"):
            over = np.where(reason == Reason.TTFT, est.ttft_ms[0] / slo.ttft_ms, est.e2e_ms[0] / slo.e2e_ms)
        t = int(np.flatnonzero(latency)[np.argmin(np.nan_to_num(over[latency], nan=np.inf))])
        r = Reason(int(reason[t]))
        site = cat.sites[mt.site[t]]
        what = (f"ttft {est.ttft_ms[0, t]:.0f} ms > {slo.ttft_ms:.0f} ms" if r is Reason.TTFT
                else f"end-to-end {est.e2e_ms[0, t]:.0f} ms > {slo.e2e_ms:.0f} ms")
        message = f"no site meets the SLO; closest miss: {site} with {what}"
    else:
        r = Reason(int(reason.max())) if len(reason) else Reason.NOT_SERVED
        message = f"no eligible site: {r.label}" + ("" if len(reason) else " (no pool serves this model)")
    return Decision(placed=False, reason=r, message=message, rejections=rejections, **base)


# --- one batch, without the (B, T) arrays ------------------------------------------------------------------------
# `decide` is written for arrays; for a single batch over a couple of dozen targets the per-call cost of numpy's
# small operations dominates. `decide_one` reaches the same decision with plain Python floats over the catalog's
# precomputed per-model tables (Catalog.one_batch), each quantity computed by the same IEEE operations in the same
# order as `estimate` / `ceilings` / `capacity_reasons` / `own_load_reasons` / `latency_at` do, and only where it
# is reported. A test compares it with `decide` field for field.

_INF = math.inf
_BIG = sys.float_info.max
_TTFT, _E2E = int(Reason.TTFT), int(Reason.E2E)
_GRID, _STEPS, _STEP_SCALE = queueing.GRID, queueing.STEPS, queueing.STEP_SCALE
_REASON = {int(r): r for r in Reason}
_new = object.__new__


def _ttft(pre: float, rtt: float, util: float, table: memoryview) -> float:
    """`estimate`'s TTFT at one target: the queue's wait per ms of service read from its table at the grid point
    at or above the utilization (queueing.grid_index); a saturated pool queues forever, even without prefill."""
    i = math.ceil(util * _GRID)
    per_ms = table[i if i < _GRID else _GRID]
    return rtt + (pre * per_ms if per_ms < _INF else _INF) + pre


def _ratio(a: float, b: float) -> float:
    """a / b as numpy divides floats (no exception at b == 0)."""
    if b:
        return a / b
    return math.nan if a != a or a == 0 else math.copysign(_INF, a) * math.copysign(1.0, b)


def _make(cls, **values):
    """A frozen dataclass instance without running its __init__ (which sets fields one by one, slowly)."""
    x = _new(cls)
    x.__dict__.update(values)
    return x


def decide_one(batch: Batch, slo: Slo, cat: Catalog, tables: OneBatchTables, hour: int, used: list[float],
               cable_used: list[float], ceiling: list[float]) -> Decision:
    """`decide(...)[0]` for one batch, from `cat.one_batch(batch.model)` (not None) and the ledger's state as lists
    (`used` over Catalog.ledger_keys' pools, `cable_used` per cable, `ceiling` per pool)."""
    T = tables
    r = cat.region_index[batch.region]
    rtts, static, rows, routes = T.region(r)
    waits, inverses = T.queues(slo.percentile)
    dc = cat.data_class_index[batch.data_class]
    static = static[dc]
    cny = T.hour(hour)
    pool, count = T.pool, T.count
    mt = T.mt
    # The batch's own numbers, as `estimate` computes them from float64 columns.
    fin, fout, freq = float(batch.input_tokens), float(batch.output_tokens), float(batch.requests)
    stream = mt.stream_tokens_per_s
    c_in = 1000.0 * fin
    dec = 1000.0 * fout / stream
    weight = (fout + fin / mt.speedup) * freq
    wire = (fout + fin) * freq
    hold = max(1.0, fout / stream)
    per_s = weight / hold
    gbps = wire * cat.topology.settings.bytes_per_token * 8 / hold / 1e9
    ttft_slo, e2e_slo = float(slo.ttft_ms), float(slo.e2e_ms)
    slack = min(ttft_slo, e2e_slo - dec)
    binding = _TTFT if ttft_slo <= e2e_slo - dec else _E2E
    full = ()
    if cable_used:  # the cables this batch's bandwidth would overfill (capacity_reasons)
        full = {c for c, u, limit in zip(range(len(cable_used)), cable_used, cat.cable_limit) if u + gbps > limit}

    n = T.n
    pre = [0.0] * n
    load = [0.0] * n
    theta: dict[int, float] = {}  # of the feasible targets
    before = list(static)  # reason before capacity (estimate's)
    reason = before[:]
    cap = [0.0] * n
    ok: list[tuple[float, float, int]] = []  # (cost, rtt, target) of the feasible targets
    mtok = costs.MTOK
    for t, p, rtt, cnt, capacity, prefill_tps, decode_tps, crossing, transit in rows[dc]:  # static lets them through
        u = used[p]
        pr = pre[t] = c_in / prefill_tps
        ld = load[t] = per_s / decode_tps
        c = ceiling[p]
        cp = cap[t] = c if c < capacity else capacity
        ttft = _ttft(pr, rtt, u / cnt, waits[t])
        if ttft > ttft_slo:
            before[t] = reason[t] = _TTFT
        elif ttft + dec > e2e_slo:
            before[t] = reason[t] = _E2E
        elif u + ld > cp + 1e-9:
            reason[t] = CAPACITY
        elif full and not full.isdisjoint(crossing):
            reason[t] = CABLE
        else:
            budget = slack - rtt  # `ceilings`: the most load at which the pair still meets its SLO
            if budget >= pr:  # queueing.PoolQueues.ceiling: its step in the inverse table
                h = budget / pr if pr else (_INF if budget > 0 else 1.0)  # as numpy divides (0 / 0: fmax'd to 1)
                h = math.log(h) * _STEP_SCALE if h > 1.0 else 0.0
                th = inverses[t][int(h) if h < _STEPS - 1 else _STEPS - 1]
            else:
                th = -_INF
            th = (th - CEILING_MARGIN) * cnt
            if u + ld > th + 1e-9:
                reason[t] = binding
            else:
                theta[t] = th
                ok.append(((weight * cny[t] + wire * transit) / mtok, rtt, t))

    def latency(t: int) -> tuple[float, float]:  # what the batch will see: its pool with it on
        ttft = _ttft(pre[t], rtts[t], (used[pool[t]] + load[t]) / count[t], waits[t])
        return ttft, ttft + dec

    rejections = []
    codes = reason
    for s, targets in enumerate(T.site_targets):
        if not targets:
            rejections.append(_make(Rejection, site=cat.sites[s], reason=Reason.NOT_SERVED,
                                    detail=Reason.NOT_SERVED.label))
            continue
        best = targets[0]
        code = codes[best]
        if code == OK:  # a feasible target speaks for its site: nothing to explain
            continue
        if len(targets) > 1:
            for t in targets[1:]:
                k = 100 if codes[t] == OK else codes[t]
                if k > code:
                    best, code = t, k
        if code != 100:
            rejections.append(_make(Rejection, site=cat.sites[s], reason=_REASON[code],
                                    detail=_detail_one(code, best, T, slo, used, cap, load, latency, before)))

    if not ok:
        why = _unplaced_one(reason, T, slo, used, cap, load, latency)
        return _decision(batch, False, why[0], why[1], cat.version, hour, None, None, None, math.nan, math.nan,
                         math.nan, math.nan, math.nan, math.nan, 0.0, 0.0, slo, [], rejections, math.inf, math.nan)
    if len(ok) > 1:
        ok.sort()  # by cost, then rtt, then target: np.lexsort's (stable) order
    cost, rtt, t = ok[0]
    ttft, e2e = latency(t)
    alternatives = []
    names, keys = T.site_name, T.pool_key
    for a_cost, a_rtt, a in ok[1:1 + ALTERNATIVES]:
        a_ttft, a_e2e = latency(a)
        alternatives.append(_make(Alternative, site=names[a], pool=keys[a], cost_cny=a_cost, rtt_ms=a_rtt,
                                  ttft_ms=a_ttft, e2e_ms=a_e2e))
    mean = _ttft(pre[t], rtts[t], (used[pool[t]] + load[t]) / count[t], T.mean_waits[t])
    return _decision(batch, True, Reason.OK, f"cheapest of {len(ok)} feasible targets", cat.version, hour,
                     names[t], keys[t], routes[t], rtt, ttft, e2e, cost, weight * T.kwh[t], weight * T.g_co2[t],
                     load[t], hold, slo, alternatives, rejections, theta[t], mean)


def _decision(batch, placed, reason, message, topology_version, hour, site, pool, route, rtt_ms, ttft_ms, e2e_ms,
              cost_cny, kwh, g_co2, load, hold_s, slo, alternatives, rejections, ceiling, ttft_mean_ms) -> Decision:
    """A Decision (no reservation ids yet) filled in declaration order without its __init__ (a test pins the
    fields and their order to the dataclass's)."""
    d = _new(Decision)
    d.__dict__.update({
        "batch": batch, "placed": placed, "reason": reason, "message": message, "topology_version": topology_version,
        "hour": hour, "site": site, "pool": pool, "route": route, "rtt_ms": rtt_ms, "ttft_ms": ttft_ms,
        "e2e_ms": e2e_ms, "cost_cny": cost_cny, "kwh": kwh, "g_co2": g_co2, "load": load, "hold_s": hold_s, "slo": slo,
        "alternatives": alternatives, "rejections": rejections, "reservation_ids": (), "ceiling": ceiling,
        "ttft_mean_ms": ttft_mean_ms,
    })
    return d


def _detail_one(code: int, t: int, T, slo: Slo, used: list[float], cap: list[float], load: list[float],
                latency, before: list[int]) -> str:
    """`_detail` for one target of `decide_one`."""
    own = " with this batch on the pool" if before[t] == OK else ""
    if code == _TTFT:
        return f"ttft {latency(t)[0]:.0f} ms > SLO {slo.ttft_ms:.0f} ms{own}"
    if code == _E2E:
        return f"end-to-end {latency(t)[1]:.0f} ms > SLO {slo.e2e_ms:.0f} ms{own}"
    if code == CAPACITY:
        p, c = T.pool[t], T.capacity[t]
        limit = (f"{c:.1f} accelerators" if cap[t] >= c
                 else f"{cap[t]:.1f} accelerators (SLOs already promised on it allow no more)")
        return f"pool {T.pool_key[t]} holds {used[p]:.1f} of {limit}, needs {load[t]:.2f}"
    return _REASON[code].label


def _unplaced_one(reason: list[int], T, slo: Slo, used: list[float], cap: list[float], load: list[float],
                  latency) -> tuple[Reason, str]:
    """`_unplaced`'s reason and message for `decide_one`."""
    n = len(reason)
    if any(x >= CAPACITY for x in reason):
        r = CAPACITY if CAPACITY in reason else CABLE
        full = [t for t in range(n) if reason[t] == r]
        if r == CAPACITY:  # the closest miss: the pool with the most room left (the first of equals)
            t, room = full[0], cap[full[0]] - used[T.pool[full[0]]]
            for k in full[1:]:
                x = cap[k] - used[T.pool[k]]
                if x > room:
                    t, room = k, x
            p = T.pool[t]
            closest = (f"; closest miss: {T.site_name[t]} ({T.pool_key[t]}) has "
                       f"{max(cap[t] - used[p], 0.0):.2f} accelerators free, needs {load[t]:.2f}")
        else:
            closest = f"; e.g. {T.site_name[full[0]]}"
        r = _REASON[r]
        message = f"every site that meets the SLO is full ({r.label}){closest}"
    elif _TTFT in reason or _E2E in reason:
        best, over = -1, _INF
        for t in range(n):
            if reason[t] == _TTFT:
                x = _ratio(latency(t)[0], slo.ttft_ms)
            elif reason[t] == _E2E:
                x = _ratio(latency(t)[1], slo.e2e_ms)
            else:
                continue
            # np.nan_to_num(nan=inf): nan counts as inf, and inf as the largest finite float.
            x = _INF if x != x else _BIG if x == _INF else -_BIG if x == -_INF else x
            if best < 0 or x < over:
                best, over = t, x
        t = best
        r = _REASON[reason[t]]
        what = (f"ttft {latency(t)[0]:.0f} ms > {slo.ttft_ms:.0f} ms" if r is Reason.TTFT
                else f"end-to-end {latency(t)[1]:.0f} ms > {slo.e2e_ms:.0f} ms")
        message = f"no site meets the SLO; closest miss: {T.site_name[t]} with {what}"
    else:
        r = _REASON[max(reason)]
        message = f"no eligible site: {r.label}"
    return r, message
