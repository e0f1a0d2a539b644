"""Scenario files: what a planner writes to ask "what if", validated like topologies (FILE:LINE: field: message).

A scenario is checked twice through the same loader: first on its own (types, units, the timeline inside the
duration), then against the topology it names, so an unknown cable, site or region in an event is reported at the
line that names it. Time in a scenario is China time (UTC+8, where tariffs are written), starting at day 1 00:00.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError, ValidationError

from scheduler.model.loader import LoadError, Problem, load_file, load_topology
from scheduler.model.schema import Id, Topology
from scheduler.network import link_id
from scheduler.paths import ROOT

POLICIES = ("nearest", "cheapest-greedy", "optimal")  # the order tables and plots list them in
MAX_STEPS = 100_000
SHAPES = ("consumer", "business", "flat")
UNITS = {"m": 1.0, "h": 60.0, "d": 1440.0}


def _duration(value: object) -> object:
    """'90m', '2h', '30d' -> minutes; a bare number is refused, since its unit would be a guess."""
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([mhd])\s*", value)
        if m:
            return float(m.group(1)) * UNITS[m.group(2)]
    raise PydanticCustomError("duration", "expected a duration such as 15m, 2h or 30d, got {value}",
                              {"value": repr(value)})


def _clock(value: object) -> object:
    """'14:00' (day 1) or 'day 3 14:00' -> minutes since the start of day 1, China time."""
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(?:day\s+(\d+)\s+)?(\d{1,2}):(\d{2})\s*", value)
        if m and int(m.group(2)) < 24 and int(m.group(3)) < 60 and (m.group(1) is None or int(m.group(1)) >= 1):
            day = int(m.group(1) or 1)
            return float((day - 1) * 1440 + int(m.group(2)) * 60 + int(m.group(3)))
    raise PydanticCustomError("clock", "expected a China time such as '14:00' or 'day 3 09:30', got {value}",
                              {"value": repr(value)})


def parse_duration(text: str) -> float:
    """'15m' / '1h' / '30d' -> minutes (for command-line overrides); ValueError otherwise."""
    try:
        return float(_duration(text))  # type: ignore[arg-type]
    except PydanticCustomError as e:
        raise ValueError(e.message()) from None


def _one_or_many(value: object) -> object:
    return [value] if isinstance(value, str) else value


Minutes = Annotated[float, BeforeValidator(_duration)]
At = Annotated[float, BeforeValidator(_clock)]
Ids = Annotated[list[str], BeforeValidator(_one_or_many)]
Positive = Annotated[float, Field(gt=0)]
Tokens = Annotated[int, Field(ge=0, le=10_000_000)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Growth(Strict):
    """Demand multiplies by `factor` every `over` (smoothly, compounding): 10x over 30d is the Shantou month."""

    factor: Positive
    over: Minutes


class Profile(Strict):
    """One region's demand for one model: a daily volume shaped over the region's local day."""

    region: Id
    model: Id
    data_class: Id = "public"
    tokens_per_day: Positive = Field(description="input + output tokens per day at the start, before growth")
    shape: Literal["consumer", "business", "flat"] | Annotated[list[Annotated[float, Field(ge=0)]],
                                                                Field(min_length=24, max_length=24)] = "consumer"
    growth: Growth | None = None
    burstiness: Annotated[float, Field(ge=0, le=2)] | None = Field(
        None, description="overrides demand.burstiness for this profile")
    input_tokens: Tokens | None = None
    output_tokens: Tokens | None = None

    @model_validator(mode="after")
    def _shape_not_zero(self) -> Profile:
        if isinstance(self.shape, list) and not sum(self.shape) > 0:
            raise PydanticCustomError("shape", "a shape needs at least one hour above zero")
        return self


class Demand(Strict):
    """Demand per region and model; the typical request sets the latency each cell is judged on."""

    input_tokens: Tokens = 2000
    output_tokens: Tokens = 500
    burstiness: Annotated[float, Field(ge=0, le=2)] = Field(
        0.0, description="sigma of log-normal noise on the rate (0.1 = about 10% step to step)")
    burst: Minutes = Field(15.0, description="how long a burst lasts (correlation time of the noise)")
    profiles: list[Profile] = Field(min_length=1)


class PriceChange(Strict):
    """New electricity prices for every site on a tariff, or one site: a factor on the file's prices, or flat."""

    tariff: Id | None = None
    site: Id | None = None
    factor: Positive | None = Field(None, description="times the topology file's prices (1.0 restores them)")
    cny_per_kwh: Annotated[float, Field(ge=0)] | None = Field(None, description="flat price at every hour")

    @model_validator(mode="after")
    def _one_each(self) -> PriceChange:
        if (self.tariff is None) == (self.site is None):
            raise PydanticCustomError("price", "give exactly one of tariff or site")
        if (self.factor is None) == (self.cny_per_kwh is None):
            raise PydanticCustomError("price", "give exactly one of factor or cny_per_kwh")
        return self


class AddAccelerators(Strict):
    """More accelerators at a site: added to its pool of that type, or a new pool if it has none."""

    site: Id
    accelerator: Id
    count: Annotated[int, Field(ge=1, le=1_000_000)]
    models: list[Id] | None = None


class Event(Strict):
    """Something that happens at a moment; one event may do several things at once (a hub opens with capacity)."""

    at: At
    label: str = ""
    cut: Ids = Field([], description="cables, links (a~b) or cable segments (cable#j) going down")
    repair: Ids = Field([], description="cables, links or segments coming back")
    site_down: Ids = []
    site_up: Ids = Field([], description="restores a site after an outage, or opens a planned one")
    price: PriceChange | None = None
    add_accelerators: AddAccelerators | None = None

    @model_validator(mode="after")
    def _does_something(self) -> Event:
        if not (self.cut or self.repair or self.site_down or self.site_up or self.price or self.add_accelerators):
            raise PydanticCustomError(
                "event", "an event needs an action: cut, repair, site_down, site_up, price or add_accelerators")
        return self

    def title(self) -> str:
        """A short label for plots and tables."""
        if self.label:
            return self.label
        parts = [f"cut {', '.join(self.cut)}" if self.cut else "", f"repair {', '.join(self.repair)}" if self.repair else "",
                 f"{', '.join(self.site_down)} down" if self.site_down else "",
                 f"{', '.join(self.site_up)} up" if self.site_up else ""]
        if self.price:
            who = self.price.tariff or self.price.site
            parts.append(f"{who} price x{self.price.factor:g}" if self.price.factor is not None
                         else f"{who} price {self.price.cny_per_kwh:g} CNY/kWh")
        if self.add_accelerators:
            a = self.add_accelerators
            parts.append(f"+{a.count} {a.accelerator} at {a.site}")
        return "; ".join(p for p in parts if p)


class Scenario(Strict):
    name: str
    description: str = ""
    topology: str = Field("topology/china-sea.yaml", description="relative to this file, else to the repository")
    duration: Minutes
    step: Minutes = 1.0
    seed: int = 0
    policies: list[Literal["nearest", "cheapest-greedy", "optimal"]] = Field(list(POLICIES), min_length=1)
    demand: Demand
    events: list[Event] = []

    @model_validator(mode="after")
    def _timeline(self) -> Scenario:
        errors: list[InitErrorDetails] = []
        err = _collector(errors)
        if self.step <= 0 or self.step != int(self.step):
            err(("step",), "the step must be a whole number of minutes")
        elif self.duration <= 0 or not _whole(self.duration / self.step):
            err(("duration",), f"must be a whole number of steps of {self.step:g} minutes")
        elif self.duration / self.step > MAX_STEPS:
            err(("duration",), f"{self.duration / self.step:.0f} steps; at most {MAX_STEPS} (use a coarser step)")
        for i, e in enumerate(self.events):
            if e.at >= self.duration:
                err(("events", i, "at"), f"at {clock(e.at)} is after the end of the scenario ({clock(self.duration)})")
        if len(set(self.policies)) != len(self.policies):
            err(("policies",), "a policy is listed twice")
        if errors:
            raise ValidationError.from_exception_data("Scenario", errors)
        return self

    @property
    def steps(self) -> int:
        return int(round(self.duration / self.step))

    def timeline(self) -> list[Event]:
        """Events in time order (file order among equal times)."""
        return sorted(self.events, key=lambda e: e.at)

    def with_overrides(self, step: float | None = None, seed: int | None = None,
                       duration: float | None = None) -> Scenario:
        """The same scenario at another step, seed or length (tests and sweeps); re-validated."""
        data = self.model_dump()
        data.update({k: v for k, v in (("step", step), ("seed", seed), ("duration", duration)) if v is not None})
        for k in ("step", "duration"):
            data[k] = span(data[k])
        data["demand"]["burst"] = span(data["demand"]["burst"])
        for p in data["demand"]["profiles"]:
            if p["growth"]:
                p["growth"]["over"] = span(p["growth"]["over"])
        for e in data["events"]:
            e["at"] = clock(e["at"], always_day=True)
        try:
            return type(self).model_validate(data)
        except ValidationError as e:
            raise ValueError("; ".join(f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors())) from None


def _whole(x: float) -> bool:
    return math.isclose(x, round(x), rel_tol=0, abs_tol=1e-9)


def _collector(errors: list[InitErrorDetails]):
    def err(loc: tuple[str | int, ...], msg: str) -> None:
        errors.append(InitErrorDetails(type=PydanticCustomError("scenario", msg), loc=loc, input=None))  # type: ignore[arg-type]
    return err


def span(minutes: float) -> str:
    """Minutes -> the shortest duration text the schema accepts back: '30d', '24h', '90m'."""
    for unit in ("d", "h"):
        if _whole(minutes / UNITS[unit]) and not (unit == "d" and minutes < 2 * 1440):  # 24h reads better than 1d
            return f"{minutes / UNITS[unit]:g}{unit}"
    return f"{minutes:g}m"


def clock(minutes: float, always_day: bool = False) -> str:
    """Minutes since the start -> 'HH:MM' on day 1, else 'day N HH:MM' (the form `at:` accepts)."""
    day, rest = divmod(int(round(minutes)), 1440)
    hhmm = f"{rest // 60:02d}:{rest % 60:02d}"
    return f"day {day + 1} {hhmm}" if (day or always_day) else hhmm


# --- checks against the topology -------------------------------------------------------------------------------

def references(s: Scenario, topo: Topology) -> list[tuple[tuple[str | int, ...], str]]:
    """Every name in the scenario that the topology does not define, with the field that names it."""
    out: list[tuple[tuple[str | int, ...], str]] = []
    regions = {r.id for r in topo.regions}
    models = {m.id: m for m in topo.models}
    classes = {d.id for d in topo.data_classes}
    sites = {x.id for x in topo.sites}
    tariffs = {t.id for t in topo.tariffs}
    accels = {a.id for a in topo.accelerators}
    links = {link_id(x.a, x.b) for x in topo.links}
    cables = {c.id for c in topo.cables} | {f"{c.id}#{j}" for c in topo.cables for j in range(len(c.segments))}
    for i, p in enumerate(s.demand.profiles):
        loc = ("demand", "profiles", i)
        if p.region not in regions:
            out.append(((*loc, "region"), f"unknown region {p.region!r} (topology has {_some(regions)})"))
        if p.model not in models:
            out.append(((*loc, "model"), f"unknown model {p.model!r} (topology has {_some(models)})"))
        if p.data_class not in classes:
            out.append(((*loc, "data_class"), f"unknown data class {p.data_class!r} (topology has {_some(classes)})"))
        if (p.input_tokens if p.input_tokens is not None else s.demand.input_tokens) + (
                p.output_tokens if p.output_tokens is not None else s.demand.output_tokens) == 0:
            out.append(((*loc, "output_tokens"), "a request needs input or output tokens above zero"))
    for i, e in enumerate(s.events):
        for field in ("cut", "repair"):
            for j, x in enumerate(getattr(e, field)):
                if x not in cables and x not in links:
                    out.append((("events", i, field, j),
                                f"unknown cable or link {x!r} (cables: {_some({c.id for c in topo.cables})}; "
                                f"links are written a~b as in the topology)"))
        for field in ("site_down", "site_up"):
            for j, x in enumerate(getattr(e, field)):
                if x not in sites:
                    out.append((("events", i, field, j), f"unknown site {x!r} (topology has {_some(sites)})"))
        if e.price is not None:
            if e.price.tariff is not None and e.price.tariff not in tariffs:
                out.append((("events", i, "price", "tariff"), f"unknown tariff {e.price.tariff!r} (topology has {_some(tariffs)})"))
            if e.price.site is not None and e.price.site not in sites:
                out.append((("events", i, "price", "site"), f"unknown site {e.price.site!r} (topology has {_some(sites)})"))
        if (a := e.add_accelerators) is not None:
            loc = ("events", i, "add_accelerators")
            if a.site not in sites:
                out.append(((*loc, "site"), f"unknown site {a.site!r} (topology has {_some(sites)})"))
            if a.accelerator not in accels:
                out.append(((*loc, "accelerator"), f"unknown accelerator {a.accelerator!r} (topology has {_some(accels)})"))
            elif a.models is None and not any(a.accelerator in m.throughput for m in models.values()):
                out.append(((*loc, "accelerator"), f"no model has a throughput for {a.accelerator!r}; list models"))
            for j, m in enumerate(a.models or []):
                if m not in models:
                    out.append(((*loc, "models", j), f"unknown model {m!r}"))
                elif a.accelerator not in models[m].throughput:
                    out.append(((*loc, "models", j), f"model {m!r} has no throughput for {a.accelerator!r}"))
    return out


def _some(names) -> str:
    names = sorted(names)
    return ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")


def _bound(topo: Topology | None, problem: str) -> type[Scenario]:
    """The schema once more, this time knowing the topology: cross-references become field errors."""

    class CheckedScenario(Scenario):
        @model_validator(mode="after")
        def _against_topology(self) -> CheckedScenario:
            errors: list[InitErrorDetails] = []
            err = _collector(errors)
            if topo is None:
                err(("topology",), problem)
            else:
                for loc, msg in references(self, topo):
                    err(loc, msg)
            if errors:
                raise ValidationError.from_exception_data("Scenario", errors)
            return self

    return CheckedScenario


@dataclass(frozen=True)
class LoadedScenario:
    scenario: Scenario
    topology: Topology
    path: str
    topology_path: str
    version: str  # scenario content hash + topology version: what a report was computed on


def resolve_topology(scenario_path: Path, name: str) -> Path | None:
    """A topology path is tried relative to the scenario file, then to the repository root."""
    p = Path(name)
    for candidate in ([p] if p.is_absolute() else [scenario_path.parent / p, ROOT / p]):
        if candidate.is_file():
            return candidate
    return None


def load_scenario(path: str | Path) -> LoadedScenario:
    """Load, validate, and check against the topology; every problem as FILE:LINE: field: message."""
    path = Path(path)
    first = load_file(path, Scenario)
    s: Scenario = first.value
    topo_path = resolve_topology(path, s.topology)
    topo, topo_problems, topo_version = None, [], ""
    if topo_path is None:
        message = f"no such file {s.topology!r} (looked beside {path} and in {ROOT})"
    else:
        try:
            loaded = load_topology(topo_path)
            topo, topo_version = loaded.value, loaded.version
            message = ""
        except LoadError as e:
            topo_problems = e.problems
            message = f"{topo_path} has {len(e.problems)} problem(s), listed below"
    try:
        load_file(path, _bound(topo, message))
    except LoadError as e:
        raise LoadError([*e.problems, *topo_problems]) from None
    assert topo is not None and topo_path is not None
    # The first pass's value: the same data, of the module-level class, so it pickles to sweep workers.
    return LoadedScenario(s, topo, str(path), str(topo_path), f"{first.version}+{topo_version}")


def error_for(path: str, problems: list[Problem]) -> str:
    return "\n".join(map(str, problems)) + f"\n{len(problems)} problem(s) in {path}"
