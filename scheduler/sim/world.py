"""Events -> world states -> engine snapshots, built once per distinct state.

A state is everything events changed, in a canonical form: the set of network edges that are down, site statuses
that differ from the file, price overrides and added accelerators. Two moments with the same state (before a cut
and after its repair) share one Catalog, so stepping never rebuilds one, and a sweep over seeds builds each once.
Cables go through `NetworkModel.with_status`; sites, prices and pools through `Topology.model_copy`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from scheduler.engine.catalog import Catalog
from scheduler.engine.core import Engine
from scheduler.model.schema import Pool, Status, Topology
from scheduler.network import NetworkModel
from scheduler.sim.scenario import Event, Scenario

PriceKey = tuple[str, str]  # ("tariff" | "site", id)
PriceValue = tuple[str, float]  # ("factor" | "flat", value)


@dataclass(frozen=True)
class State:
    """What events changed, canonical and hashable: equal states give identical catalogs."""

    down_edges: frozenset[str] = frozenset()
    sites: tuple[tuple[str, str], ...] = ()  # (site, status) differing from the file
    prices: tuple[tuple[PriceKey, PriceValue], ...] = ()
    added: tuple[tuple[str, str, tuple[str, ...] | None, int], ...] = ()  # (site, accelerator, models, count)


@dataclass
class _Effects:
    """The running sum of events while walking the timeline."""

    links: dict[str, bool] = field(default_factory=dict)
    sites: dict[str, str] = field(default_factory=dict)
    prices: dict[PriceKey, PriceValue] = field(default_factory=dict)
    added: dict[tuple[str, str, tuple[str, ...] | None], int] = field(default_factory=dict)

    def apply(self, e: Event) -> None:
        for x in e.cut:
            self.links[x] = False
        for x in e.repair:
            self.links[x] = True
        for x in e.site_down:
            self.sites[x] = Status.down.value
        for x in e.site_up:
            self.sites[x] = Status.up.value
        if (p := e.price) is not None:
            key = ("tariff", p.tariff) if p.tariff is not None else ("site", p.site)
            self.prices[key] = ("factor", p.factor) if p.factor is not None else ("flat", p.cny_per_kwh)  # type: ignore[assignment]
        if (a := e.add_accelerators) is not None:
            k = (a.site, a.accelerator, tuple(a.models) if a.models is not None else None)
            self.added[k] = self.added.get(k, 0) + a.count


@dataclass(frozen=True)
class Snapshot:
    """One world state ready to plan on: the engine over its catalog, plus per-target lookups for metrics."""

    index: int  # order of first appearance in the run
    state: State
    engine: Engine

    @property
    def catalog(self) -> Catalog:
        return self.engine.catalog

    @cached_property
    def site_pools(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {s: [] for s in self.catalog.sites}
        for i, p in enumerate(self.catalog.pools):
            out[p.site].append(i)
        return out


class World:
    """The base topology and every state a run (or several) has visited, each built once."""

    def __init__(self, topology: Topology, version: str = ""):
        self.topology = topology
        self.version = version
        self.network = NetworkModel(topology)
        self._networks: dict[tuple[tuple[str, bool], ...], NetworkModel] = {}
        self._snapshots: dict[State, Snapshot] = {}

    def _network(self, links: dict[str, bool]) -> NetworkModel:
        key = tuple(sorted(links.items()))
        if key not in self._networks:
            net = self.network
            downs = [k for k, up in key if not up]
            ups = [k for k, up in key if up]
            # Each id appears once, so applying the cuts then the repairs gives exactly these overrides.
            net = net.with_status(downs, False) if downs else net
            self._networks[key] = net.with_status(ups, True) if ups else net
        return self._networks[key]

    def state(self, effects: _Effects) -> tuple[State, NetworkModel]:
        net = self._network(effects.links)
        base_sites = {s.id: s.status.value for s in self.topology.sites}
        return State(
            down_edges=frozenset(e.id for e in net.edges.values() if not net.is_up(e)),
            sites=tuple(sorted((s, v) for s, v in effects.sites.items() if base_sites[s] != v)),
            prices=tuple(sorted((k, v) for k, v in effects.prices.items() if v != ("factor", 1.0))),
            added=tuple(sorted(((s, a, m, n) for (s, a, m), n in effects.added.items()),
                               key=lambda t: (t[0], t[1], t[2] or ()))),
        ), net

    def timeline(self, scenario: Scenario) -> list[tuple[int, Snapshot, list[Event]]]:
        """(first step, snapshot, events that led to it) for the start and for each moment events change things."""
        effects = _Effects()
        out: list[tuple[int, Snapshot, list[Event]]] = []
        state, net = self.state(effects)
        out.append((0, self.snapshot(state, net), []))
        events = scenario.timeline()
        i = 0
        while i < len(events):
            at = events[i].at
            step = int(np.ceil(at / scenario.step - 1e-9))  # an event acts from the first step starting at or after it
            batch = []
            while i < len(events) and int(np.ceil(events[i].at / scenario.step - 1e-9)) == step:
                effects.apply(events[i])
                batch.append(events[i])
                i += 1
            state, net = self.state(effects)
            snap = self.snapshot(state, net)
            if out[-1][0] == step:
                out[-1] = (step, snap, [*out[-1][2], *batch])
            else:
                out.append((step, snap, batch))
        return out

    def snapshot(self, state: State, network: NetworkModel) -> Snapshot:
        if state not in self._snapshots:
            topo = self._apply(state)
            net = NetworkModel(topo, dict(network.overrides))
            cat = Catalog(topo, net, f"{self.version}/{len(self._snapshots)}")
            self._snapshots[state] = Snapshot(len(self._snapshots), state, Engine(cat))
        return self._snapshots[state]

    def _apply(self, state: State) -> Topology:
        """The base topology with the state's site statuses, prices and accelerators."""
        topo = self.topology
        tariffs = {t.id: t for t in topo.tariffs}
        prices = dict(state.prices)
        new_tariffs = [_priced(t, prices[("tariff", t.id)]) if ("tariff", t.id) in prices else t for t in topo.tariffs]
        statuses = dict(state.sites)
        sites = []
        for s in topo.sites:
            update: dict = {}
            if s.id in statuses:
                update["status"] = Status(statuses[s.id])
            if ("site", s.id) in prices:
                own = _priced(tariffs[s.tariff], prices[("site", s.id)]).model_copy(
                    update={"id": f"{s.tariff}.site-{s.id}"})
                new_tariffs.append(own)
                update["tariff"] = own.id
            pools = list(s.pools)
            for site, acc, models, count in state.added:
                if site == s.id:
                    pools = _add(pools, acc, models, count)
            if pools != list(s.pools):
                update["pools"] = pools
            sites.append(s.model_copy(update=update) if update else s)
        return topo.model_copy(update={"sites": sites, "tariffs": new_tariffs})


def _priced(tariff, change: PriceValue):
    """A tariff at `factor` times the file's prices (every band too), or one flat price at every hour."""
    kind, value = change
    if kind == "flat":
        return tariff.model_copy(update={"cny_per_kwh": value, "bands": []})
    bands = [b.model_copy(update={"cny_per_kwh": b.cny_per_kwh * value}) for b in tariff.bands]
    return tariff.model_copy(update={"cny_per_kwh": tariff.cny_per_kwh * value, "bands": bands})


def _add(pools: list[Pool], accelerator: str, models: tuple[str, ...] | None, count: int) -> list[Pool]:
    """Grow the site's pool of that accelerator serving the same models, or open a new pool."""
    wanted = list(models) if models is not None else None
    for j, p in enumerate(pools):
        if p.accelerator == accelerator and p.models == wanted:
            return [*pools[:j], p.model_copy(update={"count": p.count + count}), *pools[j + 1:]]
    return [*pools, Pool(accelerator=accelerator, count=count, models=wanted)]
