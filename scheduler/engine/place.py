"""One batch: the cheapest feasible site with live capacity, and why every other site lost."""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass, field, fields, replace

import numpy as np

from scheduler import costs, queueing
from scheduler.engine import tolerances
from scheduler.engine.catalog import Catalog, ModelTargets, OneBatchTables
from scheduler.engine.estimate import (
    CEILING_MARGIN, BatchArrays, Estimates, ceilings, estimate, latency_at, mean_ttft_ms,
)
from scheduler.engine.explain import Misses, Rejection, to_explain
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
    no_room = used[mt.pool][None, :] + est.load > cap[mt.pool][None, :] + tolerances.LOAD
    reason[(reason == OK) & no_room] = CAPACITY
    if len(cat.cables):
        full = cable_used[None, :] + est.gbps[:, None] > cat.cable_capacity_gbps[None, :] + tolerances.GBPS  # (B, C)
        view = cat.targets_view(mt.model)
        for c in np.flatnonzero(full.any(axis=0)).tolist():
            crossing = view.cables[region, :, c] & full[:, c][:, None]  # (B, T)
            reason[(reason == OK) & crossing] = CABLE
    return reason


def own_load_reasons(est: Estimates, reason: np.ndarray, pair_ceiling: np.ndarray, binding: np.ndarray,
                     mt: ModelTargets, used: np.ndarray) -> np.ndarray:
    """`reason` with TTFT / E2E also where the pool has room but the batch's own load would push it past the
    pair's ceiling (the latency check again, with the batch itself counted in the queue)."""
    reason = reason.copy()
    over = (reason == OK) & (used[mt.pool][None, :] + est.load > pair_ceiling + tolerances.LOAD)
    reason[over] = binding[over]
    return reason


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
    pair_ceiling, binding = ceilings(cat, mt, now, b.ttft_slo, b.e2e_slo)
    cap = cat.pool_capacity if ceiling is None else np.minimum(cat.pool_capacity, ceiling)
    reason = own_load_reasons(now, capacity_reasons(cat, mt, now, b.region, used, cable_used, cap), pair_ceiling,
                              binding, mt, used)[0]
    with_it = used.copy()
    with_it[mt.pool] += now.load[0]  # one target per pool and model, so this is each pool with this batch on it
    # What the batch will see, the numbers reported: only latency depends on load. The reason codes stay those
    # judged above (feasibility is decided there, with the batch's own load already counted).
    ttft, e2e = latency_at(cat, mt, now, with_it)
    est = replace(now, ttft_ms=ttft, e2e_ms=e2e)
    ok = np.flatnonzero(reason == OK)
    order = ok[np.lexsort((est.rtt_ms[0, ok], est.cost_cny[0, ok]))]
    base = dict(batch=batch, topology_version=cat.version, hour=hour, slo=slo)
    ttfts, e2es = est.ttft_ms[0].tolist(), est.e2e_ms[0].tolist()
    pools, used_of = mt.pool.tolist(), used.tolist()
    sites = mt.site.tolist()
    site_targets: list[list[int]] = [[] for _ in cat.sites]
    for t, s in enumerate(sites):
        site_targets[s].append(t)
    misses = Misses(slo, cat.sites, site_targets, [cat.sites[s] for s in sites],
                    [cat.pools[p].key for p in pools], reason.tolist(), now.reason[0].tolist(),
                    lambda t: (ttfts[t], e2es[t]), est.load[0].tolist(), cap[mt.pool].tolist(),
                    cat.pool_capacity[mt.pool].tolist(), lambda t: used_of[pools[t]])
    explained = misses.explained()
    rejections = misses.rejections(explained)
    if len(order) == 0:
        r, message = misses.unplaced(explained)
        return Decision(placed=False, reason=r, message=message, rejections=rejections, **base), []
    t = int(order[0])
    site = cat.sites[mt.site[t]]
    decision = Decision(
        placed=True, reason=Reason.OK, message=f"cheapest of {len(order)} feasible targets",
        site=site, pool=cat.pools[mt.pool[t]].key, route=cat.route(batch.region, site),
        rtt_ms=float(est.rtt_ms[0, t]), ttft_ms=float(est.ttft_ms[0, t]), e2e_ms=float(est.e2e_ms[0, t]),
        cost_cny=float(est.cost_cny[0, t]), kwh=float(est.kwh[0, t]), g_co2=float(est.g_co2[0, t]),
        load=float(est.load[0, t]), hold_s=float(est.hold_s[0]), ceiling=float(pair_ceiling[0, t]),
        ttft_mean_ms=float(mean_ttft_ms(cat, mt, now, with_it)[0, t]),
        alternatives=_alternatives(est, cat, mt, order[1:1 + ALTERNATIVES]), rejections=rejections, **base,
    )
    return decision, order.tolist()


def _alternatives(est: Estimates, cat: Catalog, mt: ModelTargets, targets: np.ndarray) -> list[Alternative]:
    """The runners-up, built only for the few targets a decision lists (not for every feasible one)."""
    cols = zip(mt.site[targets].tolist(), mt.pool[targets].tolist(), est.cost_cny[0, targets].tolist(),
               est.rtt_ms[0, targets].tolist(), est.ttft_ms[0, targets].tolist(), est.e2e_ms[0, targets].tolist())
    return [Alternative(cat.sites[s], cat.pools[p].key, cost, rtt, ttft, e2e) for s, p, cost, rtt, ttft, e2e in cols]


# --- one batch, without the (B, T) arrays ------------------------------------------------------------------------
# `decide` is written for arrays; for a single batch over a couple of dozen targets the per-call cost of numpy's
# small operations dominates. `decide_one` reaches the same decision with plain Python floats over the catalog's
# precomputed per-model tables (Catalog.one_batch), each quantity computed by the same IEEE operations in the same
# order as `estimate` / `ceilings` / `capacity_reasons` / `own_load_reasons` / `latency_at` do, and only where it
# is reported. A test compares it with `decide` field for field.

_INF = math.inf
_LOAD = tolerances.LOAD  # a plain float, read once per target
_TTFT, _E2E = int(Reason.TTFT), int(Reason.E2E)
_GRID, _STEPS, _STEP_SCALE = queueing.GRID, queueing.STEPS, queueing.STEP_SCALE
_new = object.__new__


def _ttft(pre: float, rtt: float, util: float, table: memoryview) -> float:
    """`estimate`'s TTFT at one target: the queue's wait per ms of service read from its table at the grid point
    at or above the utilization (queueing.grid_index); a saturated pool queues forever, even without prefill."""
    i = math.ceil(util * _GRID)
    per_ms = table[i if i < _GRID else _GRID]
    return rtt + (pre * per_ms if per_ms < _INF else _INF) + pre


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
    weight = costs.token_weight(fin, fout, mt.speedup) * freq
    wire = (fout + fin) * freq
    hold = max(1.0, fout / stream)
    per_s = weight / hold
    gbps = costs.bandwidth_gbps(wire, cat.topology.settings.bytes_per_token, hold)
    ttft_slo, e2e_slo = float(slo.ttft_ms), float(slo.e2e_ms)
    slack = min(ttft_slo, e2e_slo - dec)
    binding = _TTFT if ttft_slo <= e2e_slo - dec else _E2E
    full = ()
    if cable_used:  # the cables this batch's bandwidth would overfill (capacity_reasons)
        full = {c for c, u, limit in zip(range(len(cable_used)), cable_used, cat.cable_limit) if u + gbps > limit}

    n = T.n
    pre = [0.0] * n
    load = [0.0] * n
    pair_ceiling: dict[int, float] = {}  # of the feasible targets
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
        elif u + ld > cp + _LOAD:
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
            if u + ld > th + _LOAD:
                reason[t] = binding
            else:
                pair_ceiling[t] = th
                ok.append(((weight * cny[t] + wire * transit) / mtok, rtt, t))

    def latency(t: int) -> tuple[float, float]:  # what the batch will see: its pool with it on
        ttft = _ttft(pre[t], rtts[t], (used[pool[t]] + load[t]) / count[t], waits[t])
        return ttft, ttft + dec

    todo = to_explain(reason, T.site_targets)
    if todo or not ok:
        misses = Misses(slo, cat.sites, T.site_targets, T.site_name, T.pool_key, reason, before,
                        latency, load, cap, T.capacity, lambda t: used[pool[t]])
        explained = misses.explained(todo)
        rejections = misses.rejections(explained)
    else:
        rejections = []

    if not ok:
        why = misses.unplaced(explained)
        return _decision({**_BLANK, "batch": batch, "placed": False, "reason": why[0], "message": why[1],
                          "topology_version": cat.version, "hour": hour, "slo": slo, "alternatives": [],
                          "rejections": rejections})
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
    return _decision({
        "batch": batch, "placed": True, "reason": Reason.OK, "message": f"cheapest of {len(ok)} feasible targets",
        "topology_version": cat.version, "hour": hour, "site": names[t], "pool": keys[t], "route": routes[t],
        "rtt_ms": rtt, "ttft_ms": ttft, "e2e_ms": e2e, "cost_cny": cost, "kwh": weight * T.kwh[t],
        "g_co2": weight * T.g_co2[t], "load": load[t], "hold_s": hold, "slo": slo, "alternatives": alternatives,
        "rejections": rejections, "reservation_ids": (), "ceiling": pair_ceiling[t], "ttft_mean_ms": mean,
    })


def _decision(values: dict) -> Decision:
    """A Decision (no reservation ids yet) without its __init__, from every field in declaration order (a test pins
    the fields and their order to the dataclass's; `{**_BLANK, ...}` gives the defaults)."""
    d = _new(Decision)
    d.__dict__.update(values)
    return d


# Decision's fields in declaration order with their defaults (None where a field has none or a factory: those are
# always given).
_BLANK = {f.name: (None if f.default is MISSING else f.default) for f in fields(Decision)}
