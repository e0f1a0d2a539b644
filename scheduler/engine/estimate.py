"""Filter and score, vectorized: estimates and the first failing check for many batches x one model's targets.

Pure functions of arrays: the single placement, the joint solver, the fleet plan and the baselines all call these,
so every policy judges latency, cost and eligibility the same way.

Latency depends on the load of the target's pool (queueing), so besides the estimate at the current load this
module gives each (batch, target) pair its *ceiling*: the highest load of the pool, in accelerators, at which the
pair still meets its SLO. A placement keeps its promise as long as its pool stays at or below its ceiling.

Latencies are judged at the SLO's percentile: a pool is an M/M/c queue (scheduler/queueing.py), and TTFT at
percentile p is RTT + prefill + the p-th percentile of the wait; end to end adds the (deterministic) decode time.
The queue's tables (ModelTargets.queues) serve both the estimate and its inverse, the ceiling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scheduler import costs, queueing
from scheduler.engine.catalog import Catalog, ModelTargets
from scheduler.engine.request import Reason
from scheduler.queueing import DEFAULT_PERCENTILE

# Reason codes as plain ints: IntEnum member lookups go through enum's __getattr__, slow in the per-call hot path.
SITE_DOWN, UNREACHABLE, DATA_CLASS, TTFT, E2E = (int(r) for r in (
    Reason.SITE_DOWN, Reason.UNREACHABLE, Reason.DATA_CLASS, Reason.TTFT, Reason.E2E))

# Ceilings are shaded by this much utilization so that a pool filled exactly to a ceiling still re-checks within
# the SLO despite floating-point rounding (and tolerances.LOAD, the ledger's).
CEILING_MARGIN = 1e-7


@dataclass(frozen=True)
class BatchArrays:
    """B batches of one model, column-wise."""

    region: np.ndarray  # int index into Catalog.regions
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    requests: np.ndarray
    ttft_slo: np.ndarray  # ms, inf = unbounded
    e2e_slo: np.ndarray
    data_class: list[str]
    data_class_index: np.ndarray | None = None  # the same as indices into Catalog.data_classes, when known
    percentile: np.ndarray | float = DEFAULT_PERCENTILE  # (B,) or one for all: the SLOs' percentile

    def __len__(self) -> int:
        return len(self.region)


@dataclass(frozen=True)
class Estimates:
    """(B, T) arrays over batches x targets."""

    rtt_ms: np.ndarray
    ttft_ms: np.ndarray
    e2e_ms: np.ndarray
    reason: np.ndarray  # Reason codes before capacity; OK where every other check passes
    cost_cny: np.ndarray
    kwh: np.ndarray | None  # None when estimated without energy
    g_co2: np.ndarray | None
    load: np.ndarray  # accelerators held on the target's pool while the batch runs
    hold_s: np.ndarray  # (B,) how long the load is held
    gbps: np.ndarray  # (B,) wire bandwidth while running
    prefill_ms: np.ndarray | None = None  # (B, T) prefill alone, the service time queueing scales
    decode_ms: np.ndarray | None = None  # (B,) streaming the answer
    percentile: np.ndarray | float = DEFAULT_PERCENTILE  # (B,) or one for all: where TTFT and e2e are read


def hold_seconds(output_tokens: np.ndarray, stream_tps: float) -> np.ndarray:
    """Expected duration of a batch's streams (at least a second, so prefill-only batches still count)."""
    return np.maximum(1.0, output_tokens / stream_tps)


def estimate(
    cat: Catalog, mt: ModelTargets, b: BatchArrays, hour: int, pool_used: np.ndarray,
    targets: np.ndarray | None = None, energy: bool = True,
) -> Estimates:
    """Latency at the given pool loads, cost at the hour's price, and the first failing non-capacity check.

    Every batch against every target of the model, (B, T); with `targets` (one per batch), each batch against
    its own target only, (B, 1). Without `energy`, kWh and gCO2 are left out (None): the joint solve scores
    millions of pairs and needs them only for the pairs it picks.
    """
    view = cat.targets_view(mt.model)

    def per_target(x: np.ndarray) -> np.ndarray:  # (T,) -> (1, T), or (B,) -> (B, 1) for the batches' own targets
        return x[None, :] if targets is None else x[targets][:, None]

    def per_pair(x: np.ndarray) -> np.ndarray:  # (R, T) tables by region -> (B, T) or (B, 1)
        return x[b.region] if targets is None else x[b.region, targets][:, None]

    rtt = per_pair(view.rtt_ms)
    prefill = (1000.0 * b.input_tokens)[:, None] / per_target(mt.prefill_tps * mt.parallelism)
    decode = 1000.0 * b.output_tokens / mt.stream_tokens_per_s
    ttft, e2e = _latency(cat, mt, rtt, prefill, decode, pool_used, targets, b.percentile)

    reason = np.zeros(rtt.shape, dtype=np.int8)
    dc = b.data_class_index
    if dc is None:
        dc = np.fromiter((cat.data_class_index[d] for d in b.data_class), dtype=np.int64, count=len(b))
    allowed = view.allowed[dc] if targets is None else view.allowed[dc, targets][:, None]
    # Later checks are written first so the earliest failing check is the one left standing.
    reason[e2e > b.e2e_slo[:, None]] = E2E
    reason[ttft > b.ttft_slo[:, None]] = TTFT
    reason[~allowed] = DATA_CLASS
    reason[~np.isfinite(rtt)] = UNREACHABLE
    if targets is None:  # a down site rules out its targets for every batch (a column, no broadcast needed)
        reason[:, ~view.site_up] = SITE_DOWN
    else:
        reason[~view.site_up[targets]] = SITE_DOWN

    weight = costs.token_weight(b.input_tokens, b.output_tokens, mt.speedup) * b.requests  # (B,)
    wire = (b.output_tokens + b.input_tokens) * b.requests
    cost = (weight[:, None] * per_target(mt.cny_per_mtok[:, hour]) + wire[:, None] * per_pair(view.transit)) / costs.MTOK
    hold = hold_seconds(b.output_tokens, mt.stream_tokens_per_s)
    load = (weight / hold)[:, None] / per_target(mt.decode_tps)
    gbps = costs.bandwidth_gbps(wire, cat.topology.settings.bytes_per_token, hold)
    return Estimates(
        rtt_ms=rtt, ttft_ms=ttft, e2e_ms=e2e, reason=reason, cost_cny=cost,
        kwh=weight[:, None] * per_target(mt.kwh_per_mtok / costs.MTOK) if energy else None,
        g_co2=weight[:, None] * per_target(mt.g_co2_per_mtok / costs.MTOK) if energy else None,
        load=load, hold_s=hold, gbps=gbps, prefill_ms=prefill, decode_ms=decode, percentile=b.percentile,
    )


def _latency(cat: Catalog, mt: ModelTargets, rtt: np.ndarray, prefill: np.ndarray, decode: np.ndarray,
             pool_used: np.ndarray, targets: np.ndarray | None,
             percentile: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """TTFT and end-to-end at the given pool loads and the SLOs' percentile: the only part of `estimate` that
    depends on load."""
    per_ms = _per_service_ms(mt, _utilization(cat, mt, pool_used, targets), targets, percentile, mean=False)
    ttft = _ttft(rtt, prefill, per_ms)
    return ttft, ttft + decode[:, None]


def _ttft(rtt: np.ndarray, prefill: np.ndarray, per_ms: np.ndarray) -> np.ndarray:
    """RTT + the wait (prefill x the wait per ms of service) + prefill."""
    with np.errstate(invalid="ignore"):  # 0 prefill x a saturated pool's inf: set to inf just below
        queue = prefill * per_ms
    if not np.isfinite(per_ms).all():  # a saturated pool queues forever, even a prefill-free batch
        queue[np.broadcast_to(~np.isfinite(per_ms), queue.shape)] = np.inf
    return rtt + queue + prefill


def _utilization(cat: Catalog, mt: ModelTargets, pool_used: np.ndarray, targets: np.ndarray | None) -> np.ndarray:
    pool = mt.pool if targets is None else mt.pool[targets]
    return pool_used[pool] / cat.pool_count[pool]  # physical utilization drives queueing


def _per_service_ms(mt: ModelTargets, util: np.ndarray, targets: np.ndarray | None, percentile: np.ndarray | float,
                    mean: bool) -> np.ndarray:
    """The wait per ms of service (the queue scales with the service time, so one factor per target and
    percentile serves every batch): (1, T) or (B, T) over all targets, (B, 1) for the batches' own targets. The
    mean wait when `mean`, else the percentile's."""
    q = mt.queues
    if mean:
        f = q.mean_factor(util, targets)
        return f[None, :] if targets is None else f[:, None]
    p = np.asarray(percentile, dtype=float)
    if p.ndim == 0 or (p.size and (p == p.flat[0]).all()):
        f = q.wait_factor(util, float(p.flat[0]) if p.size else DEFAULT_PERCENTILE, targets)
        return f[None, :] if targets is None else f[:, None]
    qs, row = np.unique(p, return_inverse=True)
    if targets is None:  # one row of factors per percentile, each batch reads its own
        return np.stack([q.wait_factor(util, x) for x in qs.tolist()])[row]
    out = np.empty(len(targets))
    for i, x in enumerate(qs.tolist()):
        at = row == i
        out[at] = q.wait_factor(util[at], x, targets[at])
    return out[:, None]


def latency_at(cat: Catalog, mt: ModelTargets, est: Estimates, pool_used: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, T) TTFT and end-to-end of an all-targets `estimate` re-judged at other pool loads, without redoing
    the load-independent parts (routes, prefill, cost); equal to what `estimate` at those loads would report."""
    return _latency(cat, mt, est.rtt_ms, est.prefill_ms, est.decode_ms, pool_used, None, est.percentile)


def mean_ttft_ms(cat: Catalog, mt: ModelTargets, est: Estimates, pool_used: np.ndarray,
                 targets: np.ndarray | None = None) -> np.ndarray:
    """TTFT with the mean wait instead of the percentile's, reported beside it: (B, T) for an all-targets
    `estimate`, or (B,) for one made with `targets` (each batch on its own target)."""
    rtt, prefill = est.rtt_ms, est.prefill_ms
    if targets is not None:
        rtt, prefill = rtt.reshape(-1, 1), prefill.reshape(-1, 1)
    per_ms = _per_service_ms(mt, _utilization(cat, mt, pool_used, targets), targets, est.percentile, mean=True)
    ttft = _ttft(rtt, prefill, per_ms)
    return ttft if targets is None else ttft[:, 0]


def within_slo(cat: Catalog, mt: ModelTargets, est: Estimates, pool_used: np.ndarray, ttft_slo: np.ndarray,
               e2e_slo: np.ndarray) -> np.ndarray:
    """(B, T) the share of each pair's requests whose TTFT and end-to-end both meet the SLO at the given pool
    loads: P(wait <= what the tighter bound leaves after RTT and prefill), from the queue's exact distribution
    (queueing.within_probability), for attainment reports rather than the promise itself."""
    slack = np.minimum(ttft_slo, e2e_slo - est.decode_ms)[:, None]  # (B, 1) ms for rtt + prefill + wait
    with np.errstate(invalid="ignore"):
        budget = slack - est.rtt_ms - est.prefill_ms
    budget = np.where(np.isfinite(est.rtt_ms), budget, -1.0)
    util = _utilization(cat, mt, pool_used, None)[None, :]
    return queueing.within_probability(budget, est.prefill_ms, mt.servers[None, :], util)


def ceilings(cat: Catalog, mt: ModelTargets, est: Estimates, ttft_slo: np.ndarray,
             e2e_slo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, T) the highest load of each target's pool (accelerators) at which the pair meets its SLO at its
    percentile, and which bound sets it (Reason.TTFT or Reason.E2E).

    TTFT at utilization u is rtt + prefill + the percentile's wait, which grows with u; the queue's inverse tables
    (PoolQueues.ceiling) give the highest grid utilization at which prefill + wait fits the budget the SLO leaves
    after the RTT. -inf where even an idle pool is too slow. A test pins this inverse to `estimate`.
    """
    # Both bounds spend the same RTT, so which one binds is a property of the batch alone.
    slack = np.minimum(ttft_slo, e2e_slo - est.decode_ms)  # (B,) ms for rtt + prefill + queueing
    binding = np.where(ttft_slo <= e2e_slo - est.decode_ms, TTFT, E2E).astype(np.int8)
    with np.errstate(invalid="ignore"):  # unreachable targets (inf RTT): a -inf or NaN budget, so -inf ceilings
        budget = slack[:, None] - est.rtt_ms
    p = np.broadcast_to(np.asarray(est.percentile, dtype=float), (len(slack),))
    ceiling = mt.queues.ceiling(est.prefill_ms, budget, p)
    ceiling -= CEILING_MARGIN
    ceiling *= cat.pool_count[mt.pool][None, :]
    return ceiling, np.broadcast_to(binding[:, None], ceiling.shape)
