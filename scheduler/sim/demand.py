"""Demand per step: each profile's daily volume, shaped over its region's local day, grown, and made bursty.

rate(t) = tokens_per_day / 86400 x shape(local hour) x factor^(t / over) x noise(t), in tokens/s (input + output).
The shape is normalised to a mean of 1, so a flat day with no noise carries exactly `tokens_per_day`. The noise is
log-normal with mean 1, correlated over `burst` minutes (an AR(1) in log space), drawn per profile from
numpy's default_rng([seed, profile index]): the same seed gives the same demand, and adding a profile does not
change the others'.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scheduler.engine.request import DemandCell
from scheduler.model.schema import Topology
from scheduler.sim.scenario import Profile, Scenario

CHINA_UTC_OFFSET = 8.0

# Relative demand at each local hour 00..23 (normalised later). Consumer chat peaks in the evening and sleeps
# before dawn; business use follows office hours with a lunch dip.
SHAPES: dict[str, tuple[float, ...]] = {
    "consumer": (0.55, 0.40, 0.30, 0.25, 0.25, 0.30, 0.45, 0.65, 0.85, 0.95, 1.00, 1.05,
                 1.10, 1.05, 1.00, 1.00, 1.05, 1.15, 1.30, 1.45, 1.55, 1.50, 1.25, 0.85),
    "business": (0.20, 0.15, 0.12, 0.12, 0.15, 0.20, 0.35, 0.70, 1.30, 1.70, 1.80, 1.70,
                 1.30, 1.60, 1.75, 1.70, 1.55, 1.20, 0.80, 0.60, 0.50, 0.40, 0.32, 0.25),
    "flat": (1.0,) * 24,
}


@dataclass(frozen=True)
class DemandSeries:
    """Tokens/s per step (rows) and profile (columns), and the engine's demand cell template per profile."""

    minutes: np.ndarray  # (S,) step start, minutes since day 1 00:00 China time
    rates: np.ndarray  # (S, P) tokens/s
    cells: list[DemandCell]  # (P,) with tokens_per_s = 0: filled per step

    def at(self, step: int) -> list[DemandCell]:
        return [_with_rate(c, float(r)) for c, r in zip(self.cells, self.rates[step])]


def _with_rate(c: DemandCell, rate: float) -> DemandCell:
    return DemandCell(c.region, c.model, rate, c.data_class, c.input_tokens, c.output_tokens, c.ttft_ms, c.e2e_ms)


def shape_values(shape: str | list[float]) -> np.ndarray:
    values = np.array(SHAPES[shape] if isinstance(shape, str) else shape, dtype=float)
    return values / values.mean()


def diurnal(shape: str | list[float], local_hours: np.ndarray) -> np.ndarray:
    """The shape at fractional local hours, linear between the hourly points, wrapping at midnight."""
    values = shape_values(shape)
    h = np.mod(local_hours, 24.0)
    lo = np.floor(h).astype(int) % 24
    frac = h - np.floor(h)
    return values[lo] * (1 - frac) + values[(lo + 1) % 24] * frac


def noise(rng: np.random.Generator, steps: int, sigma: float, step_min: float, burst_min: float) -> np.ndarray:
    """Mean-one log-normal noise whose log is an AR(1) with correlation time `burst_min`."""
    if sigma == 0 or steps == 0:
        return np.ones(steps)
    rho = float(np.exp(-step_min / burst_min)) if burst_min > 0 else 0.0
    z = rng.standard_normal(steps)
    log = np.empty(steps)
    log[0] = sigma * z[0]
    innovation = sigma * np.sqrt(1.0 - rho * rho)
    for i in range(1, steps):
        log[i] = rho * log[i - 1] + innovation * z[i]
    return np.exp(log - sigma * sigma / 2.0)


def profile_rates(s: Scenario, p: Profile, index: int, utc_offset: float, minutes: np.ndarray) -> np.ndarray:
    local = minutes / 60.0 + (utc_offset - CHINA_UTC_OFFSET)
    rate = p.tokens_per_day / 86400.0 * diurnal(p.shape, local)
    if p.growth is not None:
        rate = rate * p.growth.factor ** (minutes / p.growth.over)
    sigma = p.burstiness if p.burstiness is not None else s.demand.burstiness
    rng = np.random.default_rng([s.seed, index])
    return rate * noise(rng, len(minutes), sigma, s.step, s.demand.burst)


def generate(s: Scenario, topo: Topology) -> DemandSeries:
    minutes = np.arange(s.steps, dtype=float) * s.step
    offsets = {r.id: r.utc_offset_hours for r in topo.regions}
    rates = np.column_stack([profile_rates(s, p, i, offsets[p.region], minutes)
                             for i, p in enumerate(s.demand.profiles)]) if s.demand.profiles else np.zeros((s.steps, 0))
    cells = [
        DemandCell(p.region, p.model, 0.0, p.data_class,
                   p.input_tokens if p.input_tokens is not None else s.demand.input_tokens,
                   p.output_tokens if p.output_tokens is not None else s.demand.output_tokens)
        for p in s.demand.profiles
    ]
    return DemandSeries(minutes, rates, cells)
