"""Representative steps and their fleet problems: what the expansion MIP plans over instead of every step.

Capacity is decided by peaks, so each day (and each world state within a day, where an event changes it) is
represented by the hour at which each demand profile peaks and the hour at which total demand peaks. Every other
step of that day counts at the representative whose total demand is nearest (its weight), so serving cost and
refusals add up over the whole horizon. Each representative carries the fleet plan's own problem (problem.build)
on a catalog that already holds every new pool an option could open, so costs, loads, cables and ceilings are the
fleet plan's, not a second copy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from scheduler.engine.catalog import Catalog
from scheduler.engine.fleet.problem import FleetProblem, build
from scheduler.expand.options import Option
from scheduler.model.schema import Topology
from scheduler.sim.demand import DemandSeries, generate
from scheduler.sim.loop import china_hour
from scheduler.sim.scenario import AddAccelerators, Event, LoadedScenario, Scenario
from scheduler.sim.world import World

MINUTES_PER_DAY = 1440.0


@dataclass(frozen=True)
class StepProblem:
    """One representative step: the fleet problem at its demand, hour and world state, before any addition."""

    step: int  # index among the scenario's steps
    minute: float
    day: int  # 1-based
    hour: int  # China time, for prices
    weight_hours: float  # hours of the horizon this step stands for
    why: str  # which peaks it represents
    fp: FleetProblem
    base: np.ndarray  # (P,) accelerators on each pool before additions
    option_pool: dict[int, int]  # option index -> its pool in fp
    per_accelerator: np.ndarray  # (G, T) the most load per accelerator of the pool at which the pair keeps its SLO
    max_utilization: float

    @property
    def binding(self) -> np.ndarray:
        """(G, T) candidate pairs whose SLO caps the pool below max_utilization: where ceilings need binaries."""
        return self.fp.candidate & (self.per_accelerator < self.max_utilization * (1 - 1e-9))


@dataclass(frozen=True)
class Instance:
    """Everything the MIP, the heuristics and the evaluation share."""

    scenario: Scenario  # cut to the horizon
    topology: Topology
    version: str
    options: list[Option]
    steps: list[StepProblem]
    days: int
    penalty: float  # CNY per unserved unit-second, the same at every step
    headroom_mw: dict[str, float]  # per site with options: power left under its limit
    demand: DemandSeries

    @property
    def horizon_hours(self) -> float:
        return self.scenario.duration / 60.0

    def hours_online(self, day: int) -> float:
        """Hours from the start of `day` to the end of the horizon."""
        return max(0.0, self.horizon_hours - (day - 1) * 24.0)

    def explanation(self) -> str:
        return (f"{len(self.steps)} representative steps over {self.days} day(s): in each day (and each world state "
                f"within a day) the hour each demand profile peaks and the hour total demand peaks; every other "
                f"step counts at the representative of its day with the nearest total demand (weighted by demand), "
                f"so serving cost covers all {self.scenario.steps} steps.")


def reference_events(options: list[Option]) -> list[Event]:
    """A new pool of each option that would open one, at its first tranche's size from the start, so that every
    step's catalog has the pool (the MIP sizes it; latency is judged at that first tranche, the smallest it may be)."""
    return [Event(at="00:00", label=f"reference {o.label}",
                  add_accelerators=AddAccelerators(site=o.site, accelerator=o.accelerator, count=o.min_count))
            for o in options if o.new_pool]


def build_instance(loaded: LoadedScenario, options: list[Option], by_day: int | None = None) -> Instance:
    scenario = loaded.scenario
    if by_day is not None and by_day * MINUTES_PER_DAY < scenario.duration:
        scenario = scenario.with_overrides(duration=by_day * MINUTES_PER_DAY)
    topo = loaded.topology
    demand = generate(scenario, topo)
    reference = scenario.model_copy(update={"events": [*scenario.events, *reference_events(options)]})
    world = World(topo, loaded.version)
    transitions = world.timeline(reference)
    state = np.zeros(scenario.steps, dtype=np.int64)
    snaps = {}
    for k, (first, snap, _) in enumerate(transitions):
        state[first:] = k
        snaps[k] = snap
    extra = {(o.site, o.accelerator): o.min_count for o in options if o.new_pool}
    steps = []
    for i, weight, why in representatives(demand, state, scenario.step, [_label(p) for p in scenario.demand.profiles]):
        snap = snaps[int(state[i])]
        cat = snap.catalog
        cells = demand.at(i)
        slos = [snap.engine.check(c.as_batch(), cat) for c in cells]
        P = len(cat.pools)
        minute = float(demand.minutes[i])
        fp = build(cat, cells, slos, china_hour(minute), np.zeros(P), np.full(P, np.inf), np.zeros(len(cat.cables)))
        base = cat.pool_count - np.array([extra.get((p.site, p.accelerator), 0) if _grown(cat, k, p.accelerator)
                                          else 0 for k, p in enumerate(cat.pools)], dtype=float)
        with np.errstate(invalid="ignore"):
            per_acc = np.where(fp.candidate, fp.ceiling / cat.pool_count[fp.pool][None, :], -np.inf)
        steps.append(StepProblem(i, minute, int(minute // MINUTES_PER_DAY) + 1, china_hour(minute), weight, why, fp,
                                 base, {o.index: _pool_of(cat, o) for o in options}, per_acc,
                                 topo.settings.max_utilization))
    days = int(math.ceil(scenario.duration / MINUTES_PER_DAY - 1e-9))
    penalty = max(s.fp.penalty for s in steps)
    return Instance(scenario, topo, loaded.version, options, steps, days, penalty,
                    _headroom(options, steps), demand)


def _label(p) -> str:
    return f"{p.region}/{p.model}" + ("" if p.data_class == "public" else f"/{p.data_class}")


def representatives(demand: DemandSeries, state: np.ndarray, step_minutes: float,
                    labels: list[str]) -> list[tuple[int, float, str]]:
    """(step, weight in hours, why) per representative, in time order."""
    day = (demand.minutes // MINUTES_PER_DAY).astype(np.int64)
    total = demand.rates.sum(axis=1)
    out: list[tuple[int, float, str]] = []
    start = 0
    S = len(total)
    while start < S:
        end = start
        while end < S and day[end] == day[start] and state[end] == state[start]:
            end += 1
        seg = np.arange(start, end)
        peaks: dict[int, list[str]] = {}
        peaks.setdefault(int(seg[np.argmax(total[seg])]), []).append("total demand")
        for j, label in enumerate(labels):
            if demand.rates[seg, j].max() > 0:
                peaks.setdefault(int(seg[np.argmax(demand.rates[seg, j])]), []).append(label)
        chosen = np.array(sorted(peaks))
        nearest = chosen[np.argmin(np.abs(total[seg][:, None] - total[chosen][None, :]), axis=1)]
        for i in chosen.tolist():
            # Demand-weighted: the representative's demand x its weight = the demand of the steps it stands for.
            weight = float(total[seg][nearest == i].sum() / total[i]) * step_minutes / 60.0 if total[i] > 0 else 0.0
            out.append((i, weight, "peak of " + ", ".join(peaks[i])))
        start = end
    return out


def _grown(cat: Catalog, pool: int, accelerator: str) -> bool:
    """The pool is the one add_accelerators grows (models unset): where a reference tranche went."""
    p = cat.pools[pool]
    j = int(p.key.rsplit("#", 1)[1])
    return cat.topology.site(p.site).pools[j].models is None and p.accelerator == accelerator


def _pool_of(cat: Catalog, o: Option) -> int:
    """The pool an addition of the option grows: the site's pool of that accelerator serving every model."""
    pools = cat.topology.site(o.site).pools
    j = next(j for j, p in enumerate(pools) if p.accelerator == o.accelerator and p.models is None)
    return next(k for k, p in enumerate(cat.pools) if p.key == f"{o.site}/{o.accelerator}#{j}")


def _headroom(options: list[Option], steps: list[StepProblem]) -> dict[str, float]:
    """MW each site with options may still add: its limit less the most its existing accelerators draw."""
    out: dict[str, float] = {}
    for o in options:
        if o.site in out:
            continue
        drawn = 0.0
        for s in steps:
            cat = s.fp.cat
            site = cat.topology.site(o.site)
            watts = {a.id: a.watts for a in cat.topology.accelerators}
            drawn = max(drawn, sum(float(s.base[k]) * watts[p.accelerator] * site.pue / 1e6
                                   for k, p in enumerate(cat.pools) if p.site == o.site))
        out[o.site] = max(0.0, o.power_limit_mw - drawn)
    return out
