"""The engine facade: one topology snapshot + the live ledger, and every placement operation on them.

The snapshot (`Catalog`) is replaced whole on reload or network events, by a single reference assignment, so a call
that picked it up at its start sees one consistent topology to its end. The ledger outlives snapshots.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import repeat

import numpy as np

from scheduler import costs
from scheduler.engine import baselines, fleet
from scheduler.engine.solve import pipeline
from scheduler.engine.solve import problem as joint
from scheduler.engine.solve.bounds import knapsack_kernel
from scheduler.engine.catalog import CABLE_PREFIX, Catalog
from scheduler.engine.fleet import FleetPlan
from scheduler.engine.estimate import mean_ttft_ms
from scheduler.engine.ledger import Ledger, Reservation
from scheduler.engine.place import Decision, decide, decide_one
from scheduler.engine.request import (Batch, DemandCell, InvalidRequest, Reason, Slo, check_batch,
                                      check_batches)
from scheduler.model.schema import Topology
from scheduler.network import NetworkModel, Route

RESERVE_RETRIES = 4
JOINT_RETRIES = 2  # a joint solve is dear: after this many lost races, take the serialized path
SERIAL_RETRIES = 8  # serialized attempts (only capacity shrinking under us, e.g. a reload, can make them fail)


def china_hour_now(now: float | None = None) -> int:
    """Local hour in China (UTC+8, no daylight saving), which the time-of-use tariffs are written in."""
    return int(((time.time() if now is None else now) / 3600 + 8) % 24)


class Engine:
    def __init__(self, catalog: Catalog, ledger: Ledger | None = None,
                 hour: Callable[[], int] = china_hour_now, max_hold_s: float | None = None):
        """`max_hold_s`: refuse batches that would hold capacity longer (None: no limit)."""
        self.catalog = catalog.prepare()
        self.ledger = ledger or Ledger()
        self._hour = hour
        self.max_hold_s = max_hold_s
        # Liveness near full capacity: a caller that lost the race for the last capacity a few times takes the
        # serialized path, during which new reservations wait for it (so it cannot lose again).
        self._serial_lock = threading.Lock()
        self._turn = threading.Condition()
        self._serial = False

    @classmethod
    def from_topology(cls, topology: Topology, version: str = "", ledger: Ledger | None = None,
                      network: NetworkModel | None = None, **kw) -> Engine:
        return cls(Catalog(topology, network or NetworkModel(topology), version), ledger, **kw)

    # --- state changes: each builds a new snapshot and swaps it in whole -----------------------------------
    def swap(self, catalog: Catalog) -> None:
        self.catalog = catalog.prepare()

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
        used = self.ledger.used(cat.ledger_keys)
        return used[: len(cat.pools)], used[len(cat.pools):]

    def ceilings(self, cat: Catalog | None = None) -> np.ndarray:
        """Per pool, the most load it may carry without breaking an SLO promised to a live placement (inf: none)."""
        cat = cat or self.catalog
        return self.ledger.ceilings(cat.ledger_keys)[: len(cat.pools)]  # one kept-current ledger view per snapshot

    def capacities(self, cat: Catalog) -> dict[str, float]:
        return dict(zip(cat.ledger_keys, cat.ledger_capacity.tolist()))

    def check(self, batch: Batch, cat: Catalog | None = None, prefix: str = "") -> Slo:
        cat = cat or self.catalog
        return check_batch(batch, cat.region_by_id, cat.models, cat.data_classes, prefix)

    def check_hold(self, batch: Batch, cat: Catalog, field: str) -> None:
        """InvalidRequest if the batch would hold capacity past `max_hold_s` (its streams' expected duration)."""
        if self.max_hold_s is None:
            return
        model = cat.models.get(batch.model)
        if model is None:
            return  # check_batch has refused it already
        hold = max(1.0, batch.output_tokens / model.stream_tokens_per_s)
        if hold > self.max_hold_s:
            raise InvalidRequest(field, f"the batch would hold capacity for {hold:,.0f} s, over the server's "
                                        f"maximum of {self.max_hold_s:,.0f} s (--max-hold); split it into "
                                        f"shorter batches")

    def _wait_turn(self) -> None:
        """Before an optimistic reservation: wait while a serialized one is at work."""
        if self._serial:
            with self._turn:
                self._turn.wait_for(lambda: not self._serial)

    def _serialized(self, attempt: Callable[[], object]) -> object:
        """Run `attempt` (read, decide, reserve; None when it lost a race) with new reservations held back."""
        with self._serial_lock:
            with self._turn:
                self._serial = True
            try:
                for _ in range(SERIAL_RETRIES):
                    out = attempt()
                    if out is not None:
                        return out
            finally:
                with self._turn:
                    self._serial = False
                    self._turn.notify_all()
        raise Overloaded("capacity kept changing under concurrent placements; retry")

    # --- operations -------------------------------------------------------------------------------------------
    def place(self, batch: Batch, hour: int | None = None, reserve: bool = True, owner: str = "",
              quota: float | None = None) -> Decision:
        """The cheapest feasible site for one batch; with reserve, its capacity is held in the ledger.

        Latency is judged with the batch's own load on the pool, and a pool may not grow past the ceiling of any
        live reservation (the load at which that placement's SLO would break), so no promise made is broken later.
        """
        cat = self.catalog
        slo = self.check(batch, cat)
        if reserve:
            self.check_hold(batch, cat, "batch.output_tokens")
        h = self.hour(hour)
        tables = cat.one_batch(batch.model)
        n_pools = len(cat.pools)

        def attempt() -> Decision | None:
            if tables is not None:  # the single-batch path: the same decision as `decide`, in plain floats
                used, ceiling = self.ledger.state(cat.ledger_keys)
                decision = decide_one(batch, slo, cat, tables, h, used, used[n_pools:], ceiling)
            else:
                used, cable_used = self.usage(cat)
                decision, _ = decide(batch, slo, cat, h, used, cable_used, self.ceilings(cat))
            if not decision.placed or not reserve:
                return decision
            got = self.ledger.try_reserve(self.holds_of(decision, cat), cat.ledger_capacity_map, owner, quota)
            return None if got is None else _with_reservations(decision, got)

        for _ in range(RESERVE_RETRIES):
            self._wait_turn()
            if (decision := attempt()) is not None:
                return decision
            # Another caller took the capacity between our read and our reservation: look again.
        # Never hand back a "placed" decision with nothing reserved behind it: serialize instead.
        return self._serialized(attempt)  # type: ignore[return-value]

    def decide_at(self, batch: Batch, load: dict[str, float], hour: int | None = None) -> Decision:
        """The decision `place` would make, reserving nothing, were every key carrying `load[key]` (absent: 0)
        instead of what this process judges it at. In cluster mode, at the fleet-wide holds: a refusal that this
        places was for want of a share (another replica had the room), not of capacity."""
        cat = self.catalog
        slo = self.check(batch, cat)
        h = self.hour(hour)
        n_pools = len(cat.pools)
        used = [load.get(k, 0.0) for k in cat.ledger_keys]
        ceiling = self.ledger.promised_ceilings(cat.ledger_keys)
        tables = cat.one_batch(batch.model)
        if tables is not None:
            return decide_one(batch, slo, cat, tables, h, used, used[n_pools:], ceiling)
        return decide(batch, slo, cat, h, np.array(used[:n_pools]), np.array(used[n_pools:]),
                      np.array(ceiling[:n_pools]))[0]

    def place_many(self, batches: Sequence[Batch], hour: int | None = None, time_limit_s: float = 2.0,
                   reserve: bool = True, owner: str = "", quota: float | None = None) -> BatchResult:
        """Place batches jointly at least cost; each gets a site or an explicit reason for staying unplaced.

        No placement breaks another's SLO: each pool ends at or below the ceiling of every batch placed on it (and
        of live reservations), and the latencies reported are those at the pools' loads once all of them run.
        """
        if not (time_limit_s > 0):
            raise InvalidRequest("time_limit_s", f"must be positive, got {time_limit_s!r}")
        self.warm()  # the large solve's compiled part, once per process, outside its time limit
        return self._joint(batches, hour, reserve, lambda problem: pipeline.solve(problem, time_limit_s), owner, quota)

    def _joint(self, batches: Sequence[Batch], hour: int | None, reserve: bool,
               solver: Callable[[joint.BatchProblem], joint.Assignment], owner: str = "",
               quota: float | None = None) -> BatchResult:
        cat = self.catalog
        batches = list(batches)
        checked = check_batches(batches, cat.region_by_id, cat.models, cat.data_classes, "batches[{}].")
        if reserve:
            for i, b in enumerate(batches):
                self.check_hold(b, cat, f"batches[{i}].output_tokens")
        slos = checked.slos
        h = self.hour(hour)

        def attempt() -> BatchResult | None:
            used, cable_used = self.usage(cat)
            problem = joint.build(cat, batches, slos, h, used, cable_used, self.ceilings(cat), checked,
                                  self.ledger.promised(cat.ledger_keys[: len(cat.pools)]))
            solution = solver(problem)
            placed = _Placed.of(problem, solution)
            if not reserve:
                return BatchResult(placed.table(slos), solution, cat.version, h)
            first = self.ledger.reserve_many(cat.ledger_keys, *placed.ledger_items(), cat.ledger_capacity, owner,
                                             quota)
            return None if first is None else BatchResult(placed.table(slos, first), solution, cat.version, h)

        for _ in range(JOINT_RETRIES):
            self._wait_turn()
            if (result := attempt()) is not None:
                return result
        return self._serialized(attempt)  # type: ignore[return-value]

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
        if not use_ledger:
            return fleet.plan(cat, cells, slos, self.hour(hour), policy)
        used, cable_used = self.usage(cat)
        return fleet.plan(cat, cells, slos, self.hour(hour), policy, used, self.ceilings(cat), cable_used)

    def holds_of(self, d: Decision, cat: Catalog | None = None) -> list[tuple[str, float, float]]:
        """What placing `d` holds: (ledger key, amount, seconds[, ceiling]) for its pool and each cable it crosses."""
        cat = cat or self.catalog
        items: list[tuple] = [(d.pool, d.load, d.hold_s, d.ceiling)]
        if d.route is not None and d.route.cables:
            gbps = _gbps(d.batch, cat, d.hold_s)
            items += [(CABLE_PREFIX + c, gbps, d.hold_s) for c in d.route.cables]
        return items

    def release(self, reservation_ids: Sequence[int]) -> None:
        self.ledger.release_many(reservation_ids)

    @staticmethod
    def warm() -> None:
        """Compile (or load from disk) the batch solver's compiled kernel, once per process: a server calls this
        before serving so that no solve pays for it inside its time limit (`place_many` calls it too)."""
        knapsack_kernel.warm()


class Overloaded(RuntimeError):
    """The engine could not get a consistent view of capacity; callers should back off and retry."""


@dataclass(frozen=True, eq=False)
class DecisionTable:
    """Every batch's decision column by column, in request order: the values `BatchResult.decisions` holds, for
    callers that write decisions out a column at a time without a Decision object per batch. The rows of unplaced
    batches hold Decision's defaults (None for site, pool and route, nan for the estimates, 0 for load and hold,
    inf for the ceiling, no reservation ids)."""

    batches: list[Batch]
    slo: list[Slo]
    placed: np.ndarray  # (B,) bool
    reason: list[Reason]  # OK where placed
    message: list[str]  # the method where placed, else the reason's label
    site: list[str | None]
    pool: list[str | None]
    route: list[Route | None]
    rtt_ms: np.ndarray  # (B,) floats
    ttft_ms: np.ndarray  # at the SLO's percentile
    e2e_ms: np.ndarray
    cost_cny: np.ndarray
    kwh: np.ndarray
    g_co2: np.ndarray
    load: np.ndarray
    hold_s: np.ndarray
    ceiling: np.ndarray
    ttft_mean_ms: np.ndarray  # with the mean wait
    reservation_count: np.ndarray  # (B,) ints: ids per batch
    reservation_ids: np.ndarray  # every batch's ids one after another, in request order
    topology_version: str
    hour: int

    def __len__(self) -> int:
        return len(self.batches)

    def decisions(self) -> list[Decision]:
        """The table as Decision objects, in request order."""
        n_b = len(self.batches)
        out: list[Decision | None] = [None] * n_b
        new = object.__new__
        placed = np.flatnonzero(self.placed)
        index = placed.tolist()
        n = len(index)
        ends = np.cumsum(self.reservation_count[placed]).tolist()
        every = tuple(self.reservation_ids.tolist())
        batches, slos, message = self.batches, self.slo, self.message
        site, pool, route = self.site, self.pool, self.route
        # Every field in declaration order, so each instance dict is filled in one pass and keeps the compact,
        # key-sharing layout (a frozen dataclass __init__ sets its fields one by one, several times slower).
        columns = {
            "batch": [batches[i] for i in index], "placed": repeat(True, n), "reason": repeat(Reason.OK, n),
            "message": [message[i] for i in index], "topology_version": repeat(self.topology_version, n),
            "hour": repeat(self.hour, n), "site": [site[i] for i in index], "pool": [pool[i] for i in index],
            "route": [route[i] for i in index], "rtt_ms": self.rtt_ms[placed].tolist(),
            "ttft_ms": self.ttft_ms[placed].tolist(), "e2e_ms": self.e2e_ms[placed].tolist(),
            "cost_cny": self.cost_cny[placed].tolist(), "kwh": self.kwh[placed].tolist(),
            "g_co2": self.g_co2[placed].tolist(), "load": self.load[placed].tolist(),
            "hold_s": self.hold_s[placed].tolist(), "slo": [slos[i] for i in index],
            "alternatives": [[] for _ in index], "rejections": [[] for _ in index],
            "reservation_ids": [every[lo:hi] for lo, hi in zip([0] + ends[:-1], ends)],
            "ceiling": self.ceiling[placed].tolist(), "ttft_mean_ms": self.ttft_mean_ms[placed].tolist(),
        }
        for i, values in zip(index, zip(*(columns[f] for f in _FIELDS))):
            d = new(Decision)
            d.__dict__.update(zip(_FIELDS, values))
            out[i] = d
        base = dict(_DEFAULTS, placed=False, topology_version=self.topology_version, hour=self.hour)
        for i in np.flatnonzero(~self.placed).tolist():
            d = new(Decision)
            d.__dict__.update(base, batch=batches[i], reason=self.reason[i], message=message[i], slo=slos[i],
                              alternatives=[], rejections=[])
            out[i] = d
        return out  # type: ignore[return-value]


@dataclass(frozen=True, eq=False)
class BatchResult:
    table: DecisionTable
    solution: joint.Assignment
    topology_version: str
    hour: int

    @cached_property
    def decisions(self) -> list[Decision]:
        """One Decision per batch, in request order (built from `table` when first asked for)."""
        return self.table.decisions()

    @property
    def placed(self) -> int:
        return int(self.table.placed.sum())

    @property
    def gap(self) -> float:
        """Relative distance of the objective from the bound, leaving out the penalty of batches no target could
        take at all (every assignment pays it, so counting it would make any answer look near-optimal)."""
        s = self.solution
        avoidable = s.objective - s.unavoidable
        if not avoidable > 0 or not np.isfinite(s.best_bound):
            return 0.0
        return max(0.0, (s.objective - s.best_bound) / avoidable)


def batch_decisions(p: joint.BatchProblem, a: joint.Assignment, slos: list[Slo]) -> list[Decision]:
    """One Decision per batch, in request order, without per-site explanations (ask `place` for those).

    Latencies are re-estimated at the pools' loads with every placed batch running, which is what each will see.
    """
    return _Placed.of(p, a).decisions(slos)


# Decision's fields in declaration order, and their defaults (MISSING where none), for `_Placed.decisions`, which
# fills instances without running the dataclass __init__ (tests pin the result to what __init__ builds).
_FIELDS = tuple(Decision.__dataclass_fields__)
_DEFAULTS = {f: x.default for f, x in Decision.__dataclass_fields__.items()}
_REASONS = {int(r): r for r in Reason}


@dataclass
class _Placed:
    """The placed batches of an assignment, column-wise in request order: what their decisions and their ledger
    items are built from, without a Python object per batch until the decisions themselves."""

    p: joint.BatchProblem
    a: joint.Assignment
    index: np.ndarray  # (n,) batch index, ascending
    target: np.ndarray  # (n,) global target
    site: np.ndarray  # (n,) site index
    pool: np.ndarray  # (n,) pool index
    rtt_ms: np.ndarray
    ttft_ms: np.ndarray  # at the pools' final loads
    e2e_ms: np.ndarray
    cost_cny: np.ndarray
    kwh: np.ndarray
    g_co2: np.ndarray
    load: np.ndarray
    hold_s: np.ndarray
    ceiling: np.ndarray
    gbps: np.ndarray
    ttft_mean_ms: np.ndarray

    @classmethod
    def of(cls, p: joint.BatchProblem, a: joint.Assignment) -> _Placed:
        n_b = len(p.batches)
        final = p.used.copy()
        for m in p.models:
            tt = a.target[p.rows[m]]
            r = np.flatnonzero(tt >= 0)
            np.add.at(final, p.pool[tt[r]], p.est[m].load[r, tt[r] - p.offset[m]])
        cols = {f: np.zeros(n_b) for f in ("rtt_ms", "ttft_ms", "e2e_ms", "cost_cny", "kwh", "g_co2", "load",
                                           "hold_s", "ceiling", "gbps", "ttft_mean_ms")}
        for m in p.models:
            e, rows = p.est[m], p.rows[m]
            tt = a.target[rows]
            placed = np.flatnonzero(tt >= 0)
            if not len(placed):
                continue
            k = tt[placed] - p.offset[m]
            now = joint.estimates_at(p, m, placed, k, final)
            i = rows[placed]
            cols["rtt_ms"][i] = e.rtt_ms[placed, k]
            cols["ttft_ms"][i] = now.ttft_ms
            cols["e2e_ms"][i] = now.e2e_ms
            cols["cost_cny"][i] = e.cost_cny[placed, k]
            cols["kwh"][i] = now.kwh
            cols["g_co2"][i] = now.g_co2
            cols["load"][i] = e.load[placed, k]
            cols["hold_s"][i] = e.hold_s[placed]
            cols["ceiling"][i] = p.promise[m][placed, k]
            cols["gbps"][i] = e.gbps[placed]
            cols["ttft_mean_ms"][i] = mean_ttft_ms(p.cat, p.cat.by_model[m], now, final, k)
        index = np.flatnonzero(a.target >= 0)
        target = a.target[index]
        return cls(p, a, index, target, p.site[target], p.pool[target], **{f: v[index] for f, v in cols.items()})

    def route_pairs(self) -> np.ndarray:
        """(n,) region * len(sites) + site: each placement's entry in Catalog.route_table."""
        return self.p.region[self.index] * len(self.p.cat.sites) + self.site

    def ledger_items(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The reservations of every placement as (key, amount, hold, ceiling) columns over Catalog.ledger_keys:
        per placement, in request order, its pool (with its ceiling), then each cable its route crosses (in the
        route's order), as `Engine.place` reserves them one at a time."""
        n_cables, order = self.p.cat.route_cable_index
        pair = self.route_pairs()
        per = n_cables[pair]  # cables per placement
        start = np.zeros(len(per), dtype=np.int64)
        np.cumsum(1 + per[:-1], out=start[1:])
        n = int(len(per) + per.sum())
        key = np.empty(n, dtype=np.int64)
        amount = np.empty(n)
        hold = np.repeat(self.hold_s, 1 + per)
        ceiling = np.full(n, np.inf)
        key[start] = self.pool
        amount[start] = self.load
        ceiling[start] = self.ceiling
        n_pools = len(self.p.cat.pools)
        for j in range(order.shape[1]):
            on = np.flatnonzero(per > j)
            key[start[on] + 1 + j] = n_pools + order[pair[on], j]
            amount[start[on] + 1 + j] = self.gbps[on]
        return key, amount, hold, ceiling

    def table(self, slos: list[Slo], first_id: int | None = None) -> DecisionTable:
        """Every batch's decision as columns; with `first_id`, the placed ones hold the ids the ledger gave their
        items (`ledger_items` order, from `first_id` on)."""
        p, a = self.p, self.a
        cat = p.cat
        n_b = len(p.batches)
        index = self.index
        per = 1 + cat.route_cable_index[0][self.route_pairs()] if first_id is not None else np.zeros(len(index))
        count = np.zeros(n_b, dtype=np.int64)
        count[index] = per
        total = int(count.sum())
        placed = np.zeros(n_b, dtype=bool)
        placed[index] = True

        def spread(values: list, empty=None) -> list:  # per placed batch -> per batch
            out = [empty] * n_b
            for i, v in zip(index.tolist(), values):
                out[i] = v
            return out

        def full(x: np.ndarray, empty: float) -> np.ndarray:
            out = np.full(n_b, empty)
            out[index] = x
            return out

        sites, keys, routes = cat.sites, cat.pool_keys, cat.route_table
        reason = [_REASONS[r] for r in a.reason.tolist()]
        return DecisionTable(
            batches=p.batches, slo=list(slos), placed=placed, reason=reason,
            message=[a.method if ok else r.label for ok, r in zip(placed.tolist(), reason)],
            site=spread([sites[x] for x in self.site.tolist()]), pool=spread([keys[x] for x in self.pool.tolist()]),
            route=spread([routes[x] for x in self.route_pairs().tolist()]),
            rtt_ms=full(self.rtt_ms, np.nan), ttft_ms=full(self.ttft_ms, np.nan), e2e_ms=full(self.e2e_ms, np.nan),
            cost_cny=full(self.cost_cny, np.nan), kwh=full(self.kwh, np.nan), g_co2=full(self.g_co2, np.nan),
            load=full(self.load, 0.0), hold_s=full(self.hold_s, 0.0), ceiling=full(self.ceiling, np.inf),
            ttft_mean_ms=full(self.ttft_mean_ms, np.nan), reservation_count=count,
            reservation_ids=np.arange(first_id or 0, (first_id or 0) + total, dtype=np.int64),
            topology_version=cat.version, hour=p.hour,
        )

    def decisions(self, slos: list[Slo], first_id: int | None = None) -> list[Decision]:
        """One Decision per batch in request order (see `table`)."""
        return self.table(slos, first_id).decisions()


def _gbps(batch: Batch, cat: Catalog, hold_s: float) -> float:
    wire = (batch.input_tokens + batch.output_tokens) * batch.requests
    return costs.bandwidth_gbps(wire, cat.topology.settings.bytes_per_token, hold_s)


def _with_reservations(d: Decision, reservations: list[Reservation]) -> Decision:
    """The decision with its reservation ids. The caller built it this call and nobody holds it yet, so the ids are
    written in place: copying a frozen dataclass of two dozen fields costs more than the ledger."""
    object.__setattr__(d, "reservation_ids", tuple(r.id for r in reservations))
    return d
