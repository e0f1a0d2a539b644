"""Filter and score, vectorized: estimates and the first failing check for many batches x one model's targets.

Pure functions of arrays: the single placement, the joint solver, the fleet plan and the baselines all call these,
so every policy judges latency, cost and eligibility the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scheduler import costs
from scheduler.engine.catalog import Catalog, ModelTargets
from scheduler.engine.request import Reason


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
    kwh: np.ndarray
    g_co2: np.ndarray
    load: np.ndarray  # accelerators held on the target's pool while the batch runs
    hold_s: np.ndarray  # (B,) how long the load is held
    gbps: np.ndarray  # (B,) wire bandwidth while running


def hold_seconds(output_tokens: np.ndarray, stream_tps: float) -> np.ndarray:
    """Expected duration of a batch's streams (at least a second, so prefill-only batches still count)."""
    return np.maximum(1.0, output_tokens / stream_tps)


def estimate(
    cat: Catalog, mt: ModelTargets, b: BatchArrays, hour: int, pool_used: np.ndarray
) -> Estimates:
    """Latency at current utilization, cost at the hour's price, and the first failing non-capacity check."""
    sites = mt.site
    rtt = cat.rtt_ms[b.region][:, sites]  # (B, T)
    util = pool_used[mt.pool] / cat.pool_count[mt.pool]  # (T,) physical utilization drives queueing
    prefill = 1000.0 * b.input_tokens[:, None] / (mt.prefill_tps * mt.parallelism)[None, :]
    queue = costs.queue_ms(prefill, np.broadcast_to(util, prefill.shape))
    ttft = rtt + queue + prefill
    e2e = ttft + (1000.0 * b.output_tokens / mt.stream_tokens_per_s)[:, None]

    reason = np.zeros(rtt.shape, dtype=np.int8)
    allowed = np.stack([cat.allowed[dc][sites] for dc in b.data_class]) if len(b) else np.zeros((0, len(mt)), bool)
    # Later checks are written first so the earliest failing check is the one left standing.
    reason[e2e > b.e2e_slo[:, None]] = Reason.E2E
    reason[ttft > b.ttft_slo[:, None]] = Reason.TTFT
    reason[~allowed] = Reason.DATA_CLASS
    reason[~np.isfinite(rtt)] = Reason.UNREACHABLE
    reason[:, ~cat.site_up[sites]] = Reason.SITE_DOWN

    weight = (b.output_tokens + b.input_tokens / mt.speedup) * b.requests  # (B,)
    wire = (b.output_tokens + b.input_tokens) * b.requests
    transit = cat.transit_cny_per_mtok[b.region][:, sites]
    cost = (weight[:, None] * mt.cny_per_mtok[:, hour][None, :] + wire[:, None] * transit) / costs.MTOK
    hold = hold_seconds(b.output_tokens, mt.stream_tokens_per_s)
    load = (weight / hold)[:, None] / mt.decode_tps[None, :]
    gbps = wire * cat.topology.settings.bytes_per_token * 8 / hold / 1e9
    return Estimates(
        rtt_ms=rtt, ttft_ms=ttft, e2e_ms=e2e, reason=reason, cost_cny=cost,
        kwh=weight[:, None] * mt.kwh_per_mtok[None, :] / costs.MTOK,
        g_co2=weight[:, None] * mt.g_co2_per_mtok[None, :] / costs.MTOK,
        load=load, hold_s=hold, gbps=gbps,
    )
