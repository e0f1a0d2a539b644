"""Pure cost and latency arithmetic: CNY, kWh and gCO2 per token; prefill and decode times. The wait in a pool's
queue, and so time to first token at a percentile, is scheduler/queueing.py's.

Capacity and cost are accounted in *output-equivalent tokens* ("weight"): an input token costs 1/speedup of an
output token, where speedup is one figure per model (prefill runs 5-20x faster per token than decode). One figure
per model keeps every batch's cost and load proportional to its weight at every site, which is what lets the engine
aggregate interchangeable batches into flows without losing optimality.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from scheduler.model.schema import LLM, Tariff

HOURS = 24
J_PER_KWH = 3.6e6
MTOK = 1e6


def hourly_prices(tariff: Tariff) -> np.ndarray:
    """CNY/kWh for each local hour 0..23; later bands win where they overlap; bands may wrap midnight."""
    prices = np.full(HOURS, tariff.cny_per_kwh, dtype=float)
    for band in tariff.bands:
        hours = range(band.start, band.end) if band.start < band.end else [*range(band.start, 24), *range(band.end)]
        prices[list(hours)] = band.cny_per_kwh
    return prices


def prefill_speedup(model: LLM) -> float:
    """How many input tokens cost as much as one output token: the mean prefill/decode ratio of the model."""
    ratios = [t.prefill_tokens_per_s / t.decode_tokens_per_s for t in model.throughput.values()]
    return sum(ratios) / len(ratios)


def token_weight(input_tokens, output_tokens, speedup: float):
    """Output-equivalent tokens of a request (floats or arrays alike): the unit of capacity and cost."""
    return output_tokens + input_tokens / speedup


def bandwidth_gbps(wire_tokens, bytes_per_token: float, hold_s):
    """The Gbps a batch's wire tokens (input + output, all requests) take while it holds its accelerators."""
    return wire_tokens * bytes_per_token * 8 / hold_s / 1e9


def device_joules_per_token(watts: float, decode_tokens_per_s: float, measured: float | None = None) -> float:
    """Energy at the device per output-equivalent token; a measured figure wins over watts / throughput."""
    return measured if measured is not None else watts / decode_tokens_per_s


def kwh_per_mtok(joules_per_token: float, pue: float) -> float:
    return joules_per_token * pue * MTOK / J_PER_KWH


def cny_per_mtok(
    kwh_per_mtok_: float, cny_per_kwh: float, cny_per_device_hour: float, decode_tokens_per_s: float,
    transit_cny_per_gb: float = 0.0, bytes_per_token: float = 0.0,
) -> float:
    """Energy at the hour's price + device amortization + transit, per million output-equivalent tokens."""
    energy = kwh_per_mtok_ * cny_per_kwh
    amortization = cny_per_device_hour / 3600.0 / decode_tokens_per_s * MTOK
    return energy + amortization + transit_cny_per_mtok(transit_cny_per_gb, bytes_per_token)


def transit_cny_per_mtok(transit_cny_per_gb: float, bytes_per_token: float) -> float:
    """Transit for a million tokens on the wire (input and output alike)."""
    return transit_cny_per_gb * bytes_per_token * MTOK / 1e9


def g_co2_per_mtok(kwh_per_mtok_: float, carbon_g_per_kwh: float) -> float:
    return kwh_per_mtok_ * carbon_g_per_kwh


def prefill_ms(input_tokens: float, prefill_tokens_per_s: float, parallelism: int) -> float:
    return 1000.0 * input_tokens / (prefill_tokens_per_s * parallelism)


def decode_ms(output_tokens: float, stream_tokens_per_s: float) -> float:
    return 1000.0 * output_tokens / stream_tokens_per_s


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else math.nan
