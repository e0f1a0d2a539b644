"""The engine facade: one topology snapshot + the live ledger, and every placement operation on them.

The snapshot (`Catalog`) is replaced whole on reload or network events, by a single reference assignment, so a call
that picked it up at its start sees one consistent topology to its end. The ledger outlives snapshots.
"""

from __future__ import annotations

import time
from dataclasses import replace
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from scheduler.engine.catalog import Catalog
from scheduler.engine.ledger import Ledger, Reservation
from scheduler.engine.place import Decision, decide
from scheduler.engine.request import Batch, InvalidRequest, Slo, check_batch
from scheduler.model.schema import Topology
from scheduler.network import NetworkModel

CABLE_PREFIX = "cable:"
RESERVE_RETRIES = 4


def china_hour(now: float | None = None) -> int:
    """Local hour in China (UTC+8, no daylight saving), which the time-of-use tariffs are written in."""
    return int(((time.time() if now is None else now) / 3600 + 8) % 24)


class Engine:
    def __init__(self, catalog: Catalog, ledger: Ledger | None = None,
                 hour: Callable[[], int] = china_hour):
        self.catalog = catalog
        self.ledger = ledger or Ledger()
        self._hour = hour

    @classmethod
    def from_topology(cls, topology: Topology, version: str = "", ledger: Ledger | None = None,
                      network: NetworkModel | None = None, **kw) -> Engine:
        return cls(Catalog(topology, network or NetworkModel(topology), version), ledger, **kw)

    # --- state changes: each builds a new snapshot and swaps it in whole -----------------------------------
    def swap(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def set_links(self, ids: Iterable[str], up: bool) -> None:
        """Cut or repair cables/links; new placements route around a cut at once."""
        cat = self.catalog
        self.swap(Catalog(cat.topology, cat.network.with_status(ids, up), cat.version))

    # --- reads ------------------------------------------------------------------------------------------------
    def hour(self, hour: int | None) -> int:
        h = self._hour() if hour is None else hour
        if not (isinstance(h, int) and 0 <= h < 24):
            raise InvalidRequest("hour", f"must be an integer hour 0..23, got {h!r}")
        return h

    def usage(self, cat: Catalog | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Accelerators held per pool and Gbps per cable, from the ledger, in the snapshot's order."""
        cat = cat or self.catalog
        used = self.ledger.used([p.key for p in cat.pools] + [CABLE_PREFIX + c for c in cat.cables])
        return used[: len(cat.pools)], used[len(cat.pools):]

    def capacities(self, cat: Catalog) -> dict[str, float]:
        caps = {p.key: p.capacity for p in cat.pools}
        caps.update({CABLE_PREFIX + c: float(g) for c, g in zip(cat.cables, cat.cable_capacity_gbps)})
        return caps

    def check(self, batch: Batch, cat: Catalog | None = None, prefix: str = "") -> Slo:
        cat = cat or self.catalog
        return check_batch(batch, {r.id: r for r in cat.topology.regions}, set(cat.models), set(cat.data_classes),
                           prefix)

    # --- operations -------------------------------------------------------------------------------------------
    def place(self, batch: Batch, hour: int | None = None, reserve: bool = True) -> Decision:
        """The cheapest feasible site for one batch; with reserve, its capacity is held in the ledger."""
        cat = self.catalog
        slo = self.check(batch, cat)
        h = self.hour(hour)
        for _ in range(RESERVE_RETRIES):
            used, cable_used = self.usage(cat)
            decision, order = decide(batch, slo, cat, h, used, cable_used)
            if not decision.placed or not reserve:
                return decision
            items = self._items(cat, decision)
            got = self.ledger.try_reserve(items, self.capacities(cat))
            if got is not None:
                return _with_reservations(decision, got)
            # Another caller took the capacity between our read and our reservation: look again.
        used, cable_used = self.usage(cat)
        return decide(batch, slo, cat, h, used, cable_used)[0]

    def _items(self, cat: Catalog, d: Decision) -> list[tuple[str, float, float]]:
        items = [(d.pool, d.load, d.hold_s)]
        if d.route is not None and d.route.cables:
            gbps = _gbps(d.batch, cat, d.hold_s)
            items += [(CABLE_PREFIX + c, gbps, d.hold_s) for c in d.route.cables]
        return items

    def release(self, reservation_ids: Sequence[int]) -> None:
        for rid in reservation_ids:
            self.ledger.release(rid)


def _gbps(batch: Batch, cat: Catalog, hold_s: float) -> float:
    wire = (batch.input_tokens + batch.output_tokens) * batch.requests
    return wire * cat.topology.settings.bytes_per_token * 8 / hold_s / 1e9


def _with_reservations(d: Decision, reservations: list[Reservation]) -> Decision:
    return replace(d, reservation_ids=tuple(r.id for r in reservations))
