"""The demand a diff plans for: one hour of the shipped baseline day, or a file of steady demand cells.

The baseline is taken without its noise (the expected rate of each profile at that hour), so the same hour
always gives the same cells. Its busiest hour is the China hour with the most demand in all: the hour an edit
is most likely to refuse some.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from scheduler.engine.request import DemandCell
from scheduler.model.loader import load_file
from scheduler.model.schema import Id, Percentile
from scheduler.paths import SIMULATIONS_DIR
from scheduler.sim.demand import CHINA_UTC_OFFSET, diurnal
from scheduler.sim.scenario import LoadedScenario, load_scenario

BASELINE = SIMULATIONS_DIR / "baseline-day.yaml"


@dataclass(frozen=True)
class Demand:
    cells: list[DemandCell]
    hour: int  # China local hour the plans are priced at
    source: str  # what an operator reads: where the cells came from


def hourly_rates(loaded: LoadedScenario) -> np.ndarray:
    """(24, profiles) expected tokens/s of each baseline profile at each whole China hour."""
    offsets = {r.id: r.utc_offset_hours for r in loaded.topology.regions}
    hours = np.arange(24, dtype=float)
    return np.column_stack([
        p.tokens_per_day / 86400.0 * diurnal(p.shape, hours + offsets[p.region] - CHINA_UTC_OFFSET)
        for p in loaded.scenario.demand.profiles
    ])


def baseline(hour: int | None, path: Path = BASELINE) -> Demand:
    """The baseline day's demand at `hour`, or at its busiest hour when None."""
    loaded = load_scenario(path)
    rates = hourly_rates(loaded)
    h = _busiest(rates) if hour is None else hour
    d = loaded.scenario.demand
    cells = [DemandCell(p.region, p.model, float(rate), p.data_class,
                        p.input_tokens if p.input_tokens is not None else d.input_tokens,
                        p.output_tokens if p.output_tokens is not None else d.output_tokens)
             for p, rate in zip(d.profiles, rates[h])]
    which = "its busiest hour" if hour is None else "the hour asked for"
    return Demand(cells, h, f"{_shown(path)} at {h:02d}:00 China time ({which})")


class Cell(BaseModel):
    """One steady demand cell, keyed as `scheduler plan --demand-file` reads them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    region: Id
    model: Id
    tokens_per_s: float = Field(ge=0, allow_inf_nan=False)
    data_class: Id = "public"
    input_tokens: int = Field(2000, ge=0, le=10_000_000)
    output_tokens: int = Field(500, ge=0, le=10_000_000)
    ttft_ms: float | None = Field(None, gt=0, allow_inf_nan=False)
    e2e_ms: float | None = Field(None, gt=0, allow_inf_nan=False)
    percentile: Percentile | None = None  # of the SLO; None: the region's default


class DemandFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    demand: list[Cell] = Field(min_length=1)


def from_file(path: Path, hour: int | None, default_hour: int) -> Demand:
    """Cells from a demand file (LoadError with FILE:LINE problems when it is not one), priced at `hour`."""
    doc: DemandFile = load_file(path, DemandFile).value
    cells = [DemandCell(c.region, c.model, c.tokens_per_s, c.data_class, c.input_tokens, c.output_tokens,
                        c.ttft_ms, c.e2e_ms, c.percentile) for c in doc.demand]
    h = default_hour if hour is None else hour
    return Demand(cells, h, f"{path} ({len(cells)} cells) at {h:02d}:00 China time")


def busiest_hour(path: Path = BASELINE) -> int:
    return _busiest(hourly_rates(load_scenario(path)))


def _busiest(rates: np.ndarray) -> int:
    """The China hour with the most demand in all, from `hourly_rates`."""
    return int(np.argmax(rates.sum(axis=1)))


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(SIMULATIONS_DIR.parent))
    except ValueError:
        return str(path)
