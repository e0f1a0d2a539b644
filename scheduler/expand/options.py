"""The expansion options file: what may be added where, at what cost, how soon, within which power limit.

Validated like topologies and scenarios (FILE:LINE: field: message, through the model loader): first on its own,
then against the topology, so an unknown site or accelerator is reported at the line that names it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from scheduler.model.loader import LoadError, load_file
from scheduler.model.schema import Id, Topology

HOURS_PER_YEAR = 8760.0
DEFAULT_MIN_COUNT = 64  # first tranche of a new pool (eight 8-accelerator servers): its latency is judged at this size


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OptionSpec(Strict):
    """One (site, accelerator) that may grow: by at most `max_count`, no sooner than `lead_time_days` from day 1."""

    site: Id
    accelerator: Id
    max_count: Annotated[int, Field(ge=1, le=1_000_000)]
    capex_cny: Annotated[float, Field(gt=0)] | None = Field(None, description="purchase price per accelerator")
    cny_per_device_hour: Annotated[float, Field(ge=0)] | None = Field(None, description="rent per accelerator-hour")
    lead_time_days: Annotated[int, Field(ge=0, le=3650)]
    power_limit_mw: Annotated[float, Field(gt=0)] = Field(description="the site's limit: all its accelerators x PUE")
    min_count: Annotated[int, Field(ge=1)] | None = Field(
        None, description="smallest first tranche where the site has no pool of this accelerator")

    @model_validator(mode="after")
    def _one_price(self) -> OptionSpec:
        if (self.capex_cny is None) == (self.cny_per_device_hour is None):
            raise PydanticCustomError("price", "give exactly one of capex_cny or cny_per_device_hour")
        if self.min_count is not None and self.min_count > self.max_count:
            raise PydanticCustomError("min_count", "min_count is above max_count")
        return self


class ExpansionOptions(Strict):
    name: str = ""
    description: str = ""
    amortization_years: Annotated[float, Field(gt=0, le=30)] = Field(
        4.0, description="a purchase's price is spread over this life; the horizon pays its share")
    options: list[OptionSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> ExpansionOptions:
        errors: list[InitErrorDetails] = []
        seen: dict[tuple[str, str], int] = {}
        limits: dict[str, tuple[float, int]] = {}
        for i, o in enumerate(self.options):
            key = (o.site, o.accelerator)
            if key in seen:
                _err(errors, ("options", i, "accelerator"),
                     f"{o.accelerator!r} at {o.site!r} is already option {seen[key]}; merge the two")
            seen.setdefault(key, i)
            first = limits.setdefault(o.site, (o.power_limit_mw, i))
            if first[0] != o.power_limit_mw:
                _err(errors, ("options", i, "power_limit_mw"),
                     f"{o.site!r} has power_limit_mw {first[0]:g} in option {first[1]}; a site has one limit")
        if errors:
            raise ValidationError.from_exception_data("ExpansionOptions", errors)
        return self


def _err(errors: list[InitErrorDetails], loc: tuple[str | int, ...], msg: str) -> None:
    errors.append(InitErrorDetails(type=PydanticCustomError("options", msg), loc=loc, input=None))  # type: ignore[arg-type]


def references(spec: ExpansionOptions, topo: Topology) -> list[tuple[tuple[str | int, ...], str]]:
    """Every option naming what the topology does not have, with the field that names it."""
    sites = {s.id for s in topo.sites}
    accels = {a.id for a in topo.accelerators}
    served = {acc for m in topo.models for acc in m.throughput}
    out: list[tuple[tuple[str | int, ...], str]] = []
    for i, o in enumerate(spec.options):
        if o.site not in sites:
            out.append((("options", i, "site"), f"unknown site {o.site!r} (topology has {', '.join(sorted(sites))})"))
        if o.accelerator not in accels:
            out.append((("options", i, "accelerator"), f"unknown accelerator {o.accelerator!r}"))
        elif o.accelerator not in served:
            out.append((("options", i, "accelerator"), f"no model has a throughput for {o.accelerator!r}"))
    return out


def _bound(topo: Topology) -> type[ExpansionOptions]:
    class CheckedOptions(ExpansionOptions):
        @model_validator(mode="after")
        def _against_topology(self) -> CheckedOptions:
            errors: list[InitErrorDetails] = []
            for loc, msg in references(self, topo):
                _err(errors, loc, msg)
            if errors:
                raise ValidationError.from_exception_data("ExpansionOptions", errors)
            return self

    return CheckedOptions


@dataclass(frozen=True)
class Option:
    """One option as the planner uses it: prices per accelerator-hour, power per accelerator at the wall."""

    index: int
    site: str
    accelerator: str
    max_count: int
    min_count: int  # a new pool's first tranche (1 where the site already has such a pool: any growth helps)
    new_pool: bool  # the site has no pool of this accelerator that the simulator's add_accelerators would grow
    cny_per_hour: float  # what one accelerator costs per hour it is online in the horizon
    capex_cny: float | None  # the purchase price, for --budget (None: rented)
    lead_time_days: int
    power_limit_mw: float
    mw_per_accelerator: float  # watts x the site's PUE

    @property
    def label(self) -> str:
        return f"{self.accelerator} at {self.site}"

    def first_day(self) -> int:
        """The first day (1-based) an addition can be online: day 1 plus the lead time."""
        return 1 + self.lead_time_days

    def spend(self, count: int, hours_online: float) -> float:
        """What the addition commits: the purchase price, or the rent for the hours it is online."""
        return count * (self.capex_cny if self.capex_cny is not None else self.cny_per_hour * hours_online)


@dataclass(frozen=True)
class LoadedOptions:
    spec: ExpansionOptions
    options: list[Option]
    path: str
    version: str


def load_options(path: str | Path, topo: Topology) -> LoadedOptions:
    """Load, validate and check against the topology; every problem as FILE:LINE: field: message."""
    first = load_file(path, ExpansionOptions)
    load_file(path, _bound(topo))
    spec: ExpansionOptions = first.value
    return LoadedOptions(spec, resolve(spec, topo), str(path), first.version)


def resolve(spec: ExpansionOptions, topo: Topology) -> list[Option]:
    """Options with the topology's watts and PUE, and whether each opens a new pool."""
    watts = {a.id: a.watts for a in topo.accelerators}
    out = []
    for i, o in enumerate(spec.options):
        site = topo.site(o.site)
        # The simulator's add_accelerators grows the site's pool of that accelerator serving every model.
        new = not any(p.accelerator == o.accelerator and p.models is None for p in site.pools)
        per_hour = (o.cny_per_device_hour if o.cny_per_device_hour is not None
                    else o.capex_cny / (spec.amortization_years * HOURS_PER_YEAR))  # type: ignore[operator]
        min_count = (o.min_count or min(DEFAULT_MIN_COUNT, o.max_count)) if new else 1
        out.append(Option(i, o.site, o.accelerator, o.max_count, min_count, new, per_hour, o.capex_cny,
                          o.lead_time_days, o.power_limit_mw, watts[o.accelerator] * site.pue / 1e6))
    return out


__all__ = ["ExpansionOptions", "LoadError", "LoadedOptions", "Option", "load_options"]
