"""The topology being served and the history of reload attempts that WatchTopology streams.

The engine owns the live snapshot (`engine.catalog`, replaced whole by `engine.swap`) and the capacity ledger; this
object adds what the service reports about it: where it came from, when, and how the last reload went.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from scheduler.engine.catalog import Catalog
from scheduler.engine.core import Engine
from scheduler.engine.ledger import Ledger
from scheduler.engine.request import Batch
from scheduler.model.loader import Loaded, Problem
from scheduler.model.schema import Status
from scheduler.network import link_id

HISTORY = 64  # reload events kept for watchers that fall behind


class Kind(enum.Enum):
    CURRENT = 1
    APPLIED = 2
    REFUSED = 3


@dataclass(frozen=True)
class ReloadOutcome:
    ok: bool
    path: str
    version: str  # the version loaded; "" when refused
    problems: tuple[Problem, ...]
    at: float  # unix seconds
    serving_version: str  # what is served after the attempt


@dataclass(frozen=True)
class Event:
    seq: int
    kind: Kind
    outcome: ReloadOutcome


def build_catalog(loaded: Loaded, overrides: Mapping[str, bool] | None = None) -> Catalog:
    """A ready-to-serve snapshot: built and warmed off to the side, so the swap is one reference assignment and
    the first call after it pays no lazy-initialisation cost. `overrides` (link or cable id -> up) are operator
    cuts and repairs to carry over; ids the topology does not have are skipped."""
    engine = Engine.from_topology(loaded.value, loaded.version, ledger=Ledger(), hour=lambda: 12)
    _apply_overrides(engine, overrides or {})
    _warm(engine)
    return engine.catalog


def _apply_overrides(engine: Engine, overrides: Mapping[str, bool]) -> None:
    """Operator cuts and repairs carried across a reload; a repair of what the new file marks as not built is
    dropped (SetLinkStatus would refuse it now)."""
    known = known_links(engine.catalog)
    never = unbuilt(engine.catalog)
    for up in (False, True):
        ids = [i for i, u in overrides.items() if u is up and i in known and not (up and i in never)]
        if ids:
            engine.set_links(ids, up)


def _warm(engine: Engine) -> None:
    topo = engine.catalog.topology
    data_class = topo.data_classes[0].id
    for region in topo.regions:
        for model in topo.models:
            engine.place(Batch(region.id, model.id, 1, 1, data_class=data_class), reserve=False)


def known_links(catalog: Catalog) -> set[str]:
    """Every id SetLinkStatus accepts: cables, cable segments and terrestrial links."""
    net = catalog.network
    return set(net.edges) | set(net.cables)


def unbuilt(catalog: Catalog) -> dict[str, str]:
    """Ids SetLinkStatus may not bring up, each with why: links, cables and cable segments the topology marks as
    planned (not built). A cable with a planned segment is among them: bringing the cable up would light that
    segment too. Cutting them is allowed (it changes nothing)."""
    topo = catalog.topology
    out: dict[str, str] = {}
    for link in topo.links:
        if link.status is Status.planned:
            out[link_id(link.a, link.b)] = "the link is planned (not built) in the topology"
    for cable in topo.cables:
        planned = [j for j, s in enumerate(cable.segments) if s.status is Status.planned]
        if cable.status is Status.planned:
            out[cable.id] = "the cable is planned (not built) in the topology"
            for j in range(len(cable.segments)):
                out[f"{cable.id}#{j}"] = f"its cable {cable.id!r} is planned (not built) in the topology"
        elif planned:
            out[cable.id] = (f"the cable's segment {cable.id}#{planned[0]} is planned (not built) in the topology; "
                             f"bring up its built segments one by one")
            for j in planned:
                out[f"{cable.id}#{j}"] = "the segment is planned (not built) in the topology"
    return out


class TopologyState:
    """The live engine plus reload bookkeeping; thread-safe."""

    def __init__(self, engine: Engine, path: str, loaded_at: float | None = None):
        self.engine = engine
        self.path = path
        self._cond = threading.Condition()
        self._seq = 0
        self._events: deque[Event] = deque(maxlen=HISTORY)
        self._closed = False
        at = time.time() if loaded_at is None else loaded_at
        self._loaded_at = {engine.catalog.version: at}
        self.last = ReloadOutcome(True, path, engine.catalog.version, (), at, engine.catalog.version)
        self._change = threading.Lock()  # one state change at a time: a reload, or an operator's link change
        self.overrides: dict[str, bool] = {}  # operator cuts (False) and repairs (True), outliving reloads
        self.listeners: list[Callable[[ReloadOutcome], None]] = []  # told of every applied or refused reload
        # told of the operator's link changes in force after each change (the state dir saves them)
        self.link_listeners: list[Callable[[list[tuple[str, bool]]], None]] = []
        # cluster mode: every replica's holds per ledger key, as last published (GetTopology reports them)
        self.fleet_used: Callable[[], dict[str, float]] | None = None

    @property
    def version(self) -> str:
        return self.engine.catalog.version

    def loaded_at(self, version: str) -> float:
        """When a version was (last) swapped in; keyed by version so a reader holding one snapshot gets its time."""
        return self._loaded_at.get(version, 0.0)

    def apply(self, loaded: Loaded) -> ReloadOutcome:
        """Swap a validated topology in atomically; the ledger (and so every live reservation) carries over, and
        so do the operator's link changes."""
        with self._change:
            catalog = build_catalog(loaded, self.overrides)
            now = time.time()
            self._loaded_at[loaded.version] = now
            self.engine.swap(catalog)
        return self._record(Kind.APPLIED, ReloadOutcome(True, loaded.path, loaded.version, (), now, loaded.version))

    def set_links(self, ids: list[str], up: bool) -> Catalog:
        """Cut or repair links for every placement from now on (KeyError for an unknown id, nothing changed).

        The new snapshot is built and warmed off to the side like a reload, then swapped in whole."""
        with self._change:
            side = Engine(self.engine.catalog, ledger=Ledger(), hour=lambda: 12)
            side.set_links(ids, up)
            _warm(side)
            for i in ids:
                self.overrides.pop(i, None)  # re-inserted last: the order they were made in
                self.overrides[i] = up
            self.engine.swap(side.catalog)
            for listener in self.link_listeners:
                listener(list(self.overrides.items()))
            return side.catalog

    def confirm(self, loaded: Loaded) -> ReloadOutcome:
        """The file is back to what is being served (e.g. a refused edit was reverted): clear the refusal."""
        return self._record(Kind.APPLIED, ReloadOutcome(True, loaded.path, loaded.version, (), time.time(),
                                                        self.version))

    def link_overrides(self) -> list[tuple[str, bool]]:
        with self._change:
            return list(self.overrides.items())

    def refuse(self, problems: list[Problem]) -> ReloadOutcome:
        return self._record(Kind.REFUSED, ReloadOutcome(False, self.path, "", tuple(problems), time.time(),
                                                        self.version))

    def _record(self, kind: Kind, outcome: ReloadOutcome) -> ReloadOutcome:
        with self._cond:
            self._seq += 1
            self.last = outcome
            self._events.append(Event(self._seq, kind, outcome))
            self._cond.notify_all()
        for listener in self.listeners:
            listener(outcome)
        return outcome

    def cursor(self) -> tuple[int, ReloadOutcome]:
        """Where a new watcher starts: the latest sequence number and the last outcome."""
        with self._cond:
            return self._seq, self.last

    def wait(self, after: int, timeout: float) -> list[Event] | None:
        """Events after `after` (possibly none on timeout); None once the state is closed (server stopping)."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or self._seq > after, timeout)
            if self._closed:
                return None
            return [e for e in self._events if e.seq > after]

    def wake(self) -> None:
        """Let watchers re-check whether their client is still there."""
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
