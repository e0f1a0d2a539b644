"""The engine facade: one topology snapshot + the live ledger, and every placement operation on them.

The snapshot (`Catalog`) is replaced whole on reload or network events, by a single reference assignment, so a call
that picked it up at its start sees one consistent topology to its end. The ledger outlives snapshots.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from scheduler.engine import baselines, batch as joint, fleet
from scheduler.engine.catalog import Catalog
from scheduler.engine.fleet import FleetPlan
from scheduler.engine.ledger import Ledger, Reservation
from scheduler.engine.place import Decision, decide
from scheduler.engine.request import Batch, DemandCell, InvalidRequest, Reason, Slo, check_batch
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
        used = self.ledger.used(cat.pool_keys + [CABLE_PREFIX + c for c in cat.cables])
        return used[: len(cat.pools)], used[len(cat.pools):]

    def ceilings(self, cat: Catalog | None = None) -> np.ndarray:
        """Per pool, the most load it may carry without breaking an SLO promised to a live placement (inf: none)."""
        cat = cat or self.catalog
        return self.ledger.ceilings(cat.pool_keys)

    def capacities(self, cat: Catalog) -> dict[str, float]:
        caps = {p.key: p.capacity for p in cat.pools}
        caps.update({CABLE_PREFIX + c: float(g) for c, g in zip(cat.cables, cat.cable_capacity_gbps)})
        return caps

    def check(self, batch: Batch, cat: Catalog | None = None, prefix: str = "") -> Slo:
        cat = cat or self.catalog
        return check_batch(batch, cat.region_by_id, cat.models, cat.data_classes, prefix)

    # --- operations -------------------------------------------------------------------------------------------
    def place(self, batch: Batch, hour: int | None = None, reserve: bool = True) -> Decision:
        """The cheapest feasible site for one batch; with reserve, its capacity is held in the ledger.

        Latency is judged with the batch's own load on the pool, and a pool may not grow past the ceiling of any
        live reservation (the load at which that placement's SLO would break), so no promise made is broken later.
        """
        cat = self.catalog
        slo = self.check(batch, cat)
        h = self.hour(hour)
        for _ in range(RESERVE_RETRIES):
            used, cable_used = self.usage(cat)
            decision, order = decide(batch, slo, cat, h, used, cable_used, self.ceilings(cat))
            if not decision.placed or not reserve:
                return decision
            items = self._items(cat, decision)
            got = self.ledger.try_reserve(items, self.capacities(cat))
            if got is not None:
                return _with_reservations(decision, got)
            # Another caller took the capacity between our read and our reservation: look again.
        # Never hand back a "placed" decision with nothing reserved behind it.
        raise Overloaded("capacity kept changing under concurrent placements; retry")

    def place_many(self, batches: Sequence[Batch], hour: int | None = None, time_limit_s: float = 2.0,
                   reserve: bool = True) -> BatchResult:
        """Place batches jointly at least cost; each gets a site or an explicit reason for staying unplaced.

        No placement breaks another's SLO: each pool ends at or below the ceiling of every batch placed on it (and
        of live reservations), and the latencies reported are those at the pools' loads once all of them run.
        """
        if not (time_limit_s > 0):
            raise InvalidRequest("time_limit_s", f"must be positive, got {time_limit_s!r}")
        return self._joint(batches, hour, reserve, lambda problem: joint.solve(problem, time_limit_s))

    def _joint(self, batches: Sequence[Batch], hour: int | None, reserve: bool,
               solver: Callable[[joint.Problem], joint.Assignment]) -> BatchResult:
        cat = self.catalog
        batches = list(batches)
        slos = [self.check(b, cat, prefix=f"batches[{i}].") for i, b in enumerate(batches)]
        h = self.hour(hour)
        for attempt in range(RESERVE_RETRIES):
            used, cable_used = self.usage(cat)
            problem = joint.build(cat, batches, slos, h, used, cable_used, self.ceilings(cat))
            solution = solver(problem)
            decisions = batch_decisions(problem, solution, slos)
            if not reserve:
                break
            items = [self._items(cat, d) if d.placed else [] for d in decisions]
            got = self.ledger.try_reserve([it for its in items for it in its], self.capacities(cat))
            if got is not None:
                _attach(decisions, items, got)
                break
        else:
            raise Overloaded("capacity kept changing under concurrent placements; retry")
        return BatchResult(decisions, solution, cat.version, h)

    def place_baseline(self, batches: Sequence[Batch], policy: str, hour: int | None = None,
                       reserve: bool = True) -> BatchResult:
        """Place batches one at a time in request order by a baseline policy (`nearest` or `cheapest-greedy`, see
        baselines.py), under the same filter, capacity, ceilings and cables as `place_many`."""
        if policy not in baselines.POLICIES:
            raise InvalidRequest("policy", f"unknown policy {policy!r}; choose from {', '.join(baselines.POLICIES)}")
        return self._joint(batches, hour, reserve, lambda problem: baselines.solve(problem, policy))

    def plan(self, cells: Sequence[DemandCell], hour: int | None = None, policy: str = "optimal",
             use_ledger: bool = False) -> FleetPlan:
        """Routing fractions for steady demand at the hour's prices (optionally net of live reservations)."""
        cat = self.catalog
        cells = list(cells)
        slos = [self.check(c.as_batch(), cat, prefix=f"demand[{i}].") for i, c in enumerate(cells)]
        for i, c in enumerate(cells):
            if not (c.tokens_per_s >= 0 and np.isfinite(c.tokens_per_s)):
                raise InvalidRequest(f"demand[{i}].tokens_per_s", f"must be a finite number >= 0, got {c.tokens_per_s!r}")
        if policy not in fleet.POLICIES:
            raise InvalidRequest("policy", f"unknown policy {policy!r}; choose from {', '.join(fleet.POLICIES)}")
        used = self.usage(cat)[0] if use_ledger else None
        return fleet.plan(cat, cells, slos, self.hour(hour), policy, used)

    def _items(self, cat: Catalog, d: Decision) -> list[tuple[str, float, float]]:
        items: list[tuple] = [(d.pool, d.load, d.hold_s, d.ceiling)]
        if d.route is not None and d.route.cables:
            gbps = _gbps(d.batch, cat, d.hold_s)
            items += [(CABLE_PREFIX + c, gbps, d.hold_s) for c in d.route.cables]
        return items

    def release(self, reservation_ids: Sequence[int]) -> None:
        for rid in reservation_ids:
            self.ledger.release(rid)


class Overloaded(RuntimeError):
    """The engine could not get a consistent view of capacity; callers should back off and retry."""


@dataclass(frozen=True)
class BatchResult:
    decisions: list[Decision]
    solution: joint.Assignment
    topology_version: str
    hour: int

    @property
    def placed(self) -> int:
        return sum(d.placed for d in self.decisions)

    @property
    def gap(self) -> float:
        """Relative distance of the objective from the bound, leaving out the penalty of batches no target could
        take at all (every assignment pays it, so counting it would make any answer look near-optimal)."""
        s = self.solution
        avoidable = s.objective - s.unavoidable
        if not avoidable > 0 or not np.isfinite(s.best_bound):
            return 0.0
        return max(0.0, (s.objective - s.best_bound) / avoidable)


def batch_decisions(p: joint.Problem, a: joint.Assignment, slos: list[Slo]) -> list[Decision]:
    """One Decision per batch, in request order, without per-site explanations (ask `place` for those).

    Latencies are re-estimated at the pools' loads with every placed batch running, which is what each will see.
    """
    cat = p.cat
    out: list[Decision | None] = [None] * len(p.batches)
    final = p.used.copy()
    for m in p.models:
        tt = a.target[p.rows[m]]
        r = np.flatnonzero(tt >= 0)
        np.add.at(final, p.pool[tt[r]], p.est[m].load[r, tt[r] - p.offset[m]])
    version, hour = cat.version, p.hour
    for m in p.models:
        e, off, rows = p.est[m], p.offset[m], p.rows[m]
        tt = a.target[rows]
        placed = np.flatnonzero(tt >= 0)
        for r in np.flatnonzero(tt < 0).tolist():
            i = int(rows[r])
            reason = Reason(int(a.reason[i]))
            out[i] = Decision(batch=p.batches[i], placed=False, reason=reason, message=reason.label,
                              topology_version=version, hour=hour, slo=slos[i])
        if not len(placed):
            continue
        k = tt[placed] - off
        now = joint.latency_at(p, m, placed, k, final)
        cols = zip(placed.tolist(), k.tolist(), e.rtt_ms[placed, k].tolist(), now.ttft_ms.tolist(),
                   now.e2e_ms.tolist(), e.cost_cny[placed, k].tolist(), now.kwh.tolist(), now.g_co2.tolist(),
                   e.load[placed, k].tolist(), e.hold_s[placed].tolist(), p.theta[m][placed, k].tolist())
        mt = cat.by_model[m]
        for r, kk, rtt, ttft, e2e, cost, kwh, co2, load, hold, ceiling in cols:
            i = int(rows[r])
            b = p.batches[i]
            site = cat.sites[mt.site[kk]]
            out[i] = Decision(
                batch=b, placed=True, reason=Reason.OK, message=a.method, topology_version=version, hour=hour,
                site=site, pool=cat.pools[mt.pool[kk]].key, route=cat.route(b.region, site), rtt_ms=rtt,
                ttft_ms=ttft, e2e_ms=e2e, cost_cny=cost, kwh=kwh, g_co2=co2, load=load, hold_s=hold, slo=slos[i],
                ceiling=ceiling,
            )
    return out  # type: ignore[return-value]


def _attach(decisions: list[Decision], items: list[list], reservations: list[Reservation]) -> None:
    """Hand each decision the reservations made for its items (the ledger returns them in item order)."""
    it = iter(reservations)
    for d, its in zip(decisions, items):
        if its:
            _with_reservations(d, [next(it) for _ in its])


def _gbps(batch: Batch, cat: Catalog, hold_s: float) -> float:
    wire = (batch.input_tokens + batch.output_tokens) * batch.requests
    return wire * cat.topology.settings.bytes_per_token * 8 / hold_s / 1e9


def _with_reservations(d: Decision, reservations: list[Reservation]) -> Decision:
    """The decision with its reservation ids. The caller built it this call and nobody holds it yet, so the ids are
    written in place: copying a frozen dataclass of two dozen fields costs more than the ledger."""
    object.__setattr__(d, "reservation_ids", tuple(r.id for r in reservations))
    return d
