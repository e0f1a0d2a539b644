"""The live capacity ledger: accelerators held per pool by in-flight placements. The engine's only mutable state.

A placement holds `rate / decode_tps` accelerators of its pool for its expected duration. It may also carry a
*ceiling*: the pool load at which its own SLO would break (queueing grows with load). `try_reserve` checks and takes
capacity under one lock, refusing anything that would push a pool past its capacity or past the lowest ceiling of
the placements live on it, so concurrent callers can never overcommit a pool or break a promise already made.
`reserve_many` does the same for many items given column-wise (a whole batch placement in one call): it checks
each pool once on the aggregated need and hands out a contiguous block of ids, one per item, each releasable alone.

Beyond that, three things the service needs from it: every item records the token (`owner`) that made it, so a
router releases only its own holds and a per-token quota on accelerators is checked under the same lock; in
cluster mode, `set_shares` confines this process to its granted share of every key, adds the other replicas'
shares as background load, so latency is judged at a fleet-wide bound, and adds the other replicas' lowest
ceilings, so no replica grows a pool past a promise another replica made on it, while `announce` builds the
replica's claim at one instant and keeps it to a budget of new holds until a later claim is stored (budget.py);
and an optional `journal` is told of every reservation and release (under the lock, in order) and made durable
before the caller hears of them, so a restart can restore what was promised (scheduler/service/statedir.py).
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from scheduler.engine.budget import NewHolds, Pace, end_profile

TOLERANCE = 1e-9  # accelerators (or Gbps): float noise, not capacity
CABLE_KEY_PREFIX = "cable:"  # keys of cable bandwidth (catalog.CABLE_PREFIX); every other key is a pool's
_new = object.__new__


class QuotaExceeded(Exception):
    """A token's accelerators held plus what a placement needs would pass its quota (never retried)."""

    def __init__(self, owner: str, held: float, quota: float, need: float):
        super().__init__(f"token {owner!r} holds {held:.6g} of its quota of {quota:.6g} accelerators; this "
                         f"placement needs {need:.6g} more (release holds or wait for them to end)")
        self.owner, self.held, self.quota, self.need = owner, held, quota, need


class Journal(Protocol):
    """Told of every change under the ledger's lock (so in order); `durable(ticket)` returns once the change with
    that ticket is safely stored (called outside the lock, so many callers share one fsync)."""

    def reserved(self, first: int, pools: list[str], amounts: list[float], ceilings: list[float],
                 expires_wall: list[float], owner: str) -> int: ...

    def released(self, ids: list[int]) -> int: ...

    def durable(self, ticket: int) -> None: ...


@dataclass(frozen=True)
class Reservation:
    id: int
    pool: str
    accelerators: float
    expires_at: float
    ceiling: float = math.inf
    owner: str = ""


class _Block:
    """The items one reserving call took, ids `first` .. `first + n - 1`, column-wise. Expiry walks them in order of
    (expiry, id) through `order`, one heap entry per block rather than per item."""

    __slots__ = ("first", "pools", "amounts", "ceilings", "expires", "order", "cursor", "live", "owner")

    def __init__(self, first: int, pools: list[str], amounts: list[float], ceilings: list[float],
                 expires: list[float], order: list[int], owner: str = ""):
        self.first, self.pools, self.amounts, self.ceilings = first, pools, amounts, ceilings
        self.expires, self.order, self.owner = expires, order, owner
        self.cursor = 0  # position in `order` of the next item to expire
        self.live = len(pools)  # items neither released nor expired

    def head(self) -> tuple[float, int, _Block]:
        i = self.order[self.cursor]
        return self.expires[i], self.first + i, self


@dataclass(frozen=True)
class Announcement:
    """Cluster mode: this replica's holds at one instant, for its claim, and the budget of new holds it keeps to
    from then on (`window`: acknowledge it once the claim is stored, `Ledger.announced`)."""

    window: int
    used: dict[str, float]  # holds per key
    ceilings: dict[str, float]  # the lowest ceiling of the holds per key (keys without one left out)
    wall: float  # when (wall clock)
    horizon: float  # wall-clock time by which every hold has ended
    step_s: float
    profile: dict[str, list[float]]  # per key, the holds ending after wall + i * step_s (budget.end_profile)
    budget: dict[str, float]  # the most new holds per key from `wall` on


class _View:
    """The ledger's state over one list of keys, kept current as it changes (so a read copies two lists instead of
    looking every key up): per key, what is held and the lowest ceiling of its live items (`Ledger._ceiling`)."""

    __slots__ = ("keys", "index", "used", "ceiling")

    def __init__(self, keys: Sequence[str], used: list[float], ceiling: list[float]):
        self.keys = keys
        self.index = {k: i for i, k in enumerate(keys)}
        self.used = used
        self.ceiling = ceiling


RUN_ID_BITS = 36  # one run of the ledger issues ids first_id .. first_id + 2**36 - 1 (scheduler/service/ids.py)
MAX_VIEWS = 4  # key lists kept current (a snapshot asks with the same list every time; a reload brings a new one)


class Ledger:
    """Keyed by pool key (`site/accelerator#j`) so it survives topology reloads that keep the pool."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, first_id: int = 1,
                 journal: Journal | None = None, wall: Callable[[], float] = time.time):
        """`first_id`: the first reservation id (the service makes ids unique across replicas and restarts by
        starting each process's counter in a range of its own, scheduler/service/ids.py). `wall`: the clock
        journaled expiry times are written in (`clock` is monotonic and means nothing to another process)."""
        self._clock = clock
        self._wall = wall
        self.journal = journal
        self._lock = threading.Lock()
        self._used: dict[str, float] = {}
        # Per block with items pending, its next (expiry, id): popping the heap visits every item in (expiry, id)
        # order, as one heap entry per item would, at one entry per reserving call.
        self._expiry: list[tuple[float, int, _Block]] = []
        self._live: dict[int, _Block] = {}  # id of every live item -> its block
        self._ceilings: dict[str, list[tuple[float, int]]] = {}  # per pool, a min-heap; dead entries dropped lazily
        self._next_id = self._first_id = first_id
        self._views: list[_View] = []  # most recent first
        self._held: dict[str, float] = {}  # accelerators (pool keys only) held per owner
        self._shares: dict[str, float] | None = None  # cluster mode: this replica's share per key (absent: 0)
        self._background: dict[str, float] = {}  # cluster mode: load the other replicas may put on a key
        self._others_ceiling: dict[str, float] = {}  # cluster mode: the lowest ceiling of the others' holds per key
        self._new_holds: NewHolds | None = None  # cluster mode: the budget of new holds between claims
        self._until = math.inf  # cluster mode: no new holds from this time on (clock) unless the share is renewed
        self.budget_low: Callable[[], None] | None = None  # told (under the lock) when a budget is half used
        self._claims_stored = 0  # cluster mode: announcements acknowledged so far (each may renew a budget)
        self._budget_renewed = threading.Condition(self._lock)

    def _expire(self, now: float) -> None:
        heap = self._expiry
        while heap and heap[0][0] <= now:
            _, rid, block = heapq.heappop(heap)
            self._release_one(rid)  # (released early already: nothing to do)
            block.cursor += 1
            if block.live and block.cursor < len(block.order):
                heapq.heappush(heap, block.head())

    def _release(self, pool: str, amount: float) -> None:
        left = self._used.get(pool, 0.0) - amount
        self._used[pool] = left if left > TOLERANCE else 0.0
        self._sync_used(pool)
        if self._new_holds is not None:  # the budget's bound on the load moves down with the holds
            self._sync_ceiling(pool)

    def _load(self, key: str) -> float:
        """The load placements judge `key` at: this process's holds and the others' shares. In cluster mode a
        cable's budget of new holds shows here too (a cable's load counts only Gbps, never latency, and the engine
        reads a cable's room off its load): the room seen is the lesser of the share's and the budget's."""
        own = self._used.get(key, 0.0)
        load = own + self._background.get(key, 0.0)
        if self._new_holds is not None and key.startswith(CABLE_KEY_PREFIX) and self._shares is not None:
            return load + max(0.0, self._shares.get(key, 0.0) - own - self._new_holds.room(key))
        return load

    def _sync_used(self, pool: str) -> None:
        if self._views:
            x = self._load(pool)
            for view in self._views:
                i = view.index.get(pool)
                if i is not None:
                    view.used[i] = x

    def _sync_ceiling(self, pool: str) -> None:
        if self._views:
            x = self._ceiling(pool)
            for view in self._views:
                i = view.index.get(pool)
                if i is not None:
                    view.ceiling[i] = x

    def _view(self, keys: Sequence[str]) -> _View:
        """The kept-current view over `keys` (the same list object asked again finds it), made on first ask."""
        for view in self._views:
            if view.keys is keys:
                return view
        view = _View(keys, [self._load(k) for k in keys], [self._ceiling(k) for k in keys])
        if len(view.index) == len(keys):  # a list naming a key twice is served but not kept
            self._views.insert(0, view)
            del self._views[MAX_VIEWS:]
        return view

    def _own_ceiling(self, pool: str) -> float:
        heap = self._ceilings.get(pool)
        while heap and heap[0][1] not in self._live:
            heapq.heappop(heap)
        return heap[0][0] if heap else math.inf

    def _promised(self, pool: str) -> float:
        """The lowest ceiling of the placements live on `pool`, here or (cluster mode) at the other replicas."""
        return min(self._own_ceiling(pool), self._others_ceiling.get(pool, math.inf))

    def _ceiling(self, pool: str) -> float:
        """The most load `pool` may carry: the promises on it and (cluster mode) the budget of new holds, which
        caps the load as a ceiling does and so leaves the load itself the latency bound."""
        c = self._promised(pool)
        if self._new_holds is not None:
            own = self._used.get(pool, 0.0)
            c = min(c, own + self._background.get(pool, 0.0) + self._new_holds.room(pool))
        return c

    def _fits(self, pool: str, amount: float, capacity: float, lowest: float, now: float) -> bool:
        """Room for `amount` more on `pool`: within its capacity (and in cluster mode this replica's share), and
        the load (with the other replicas' shares as background) within every ceiling promised on it."""
        own = self._used.get(pool, 0.0)
        if self._shares is not None:
            if now >= self._until:
                return False
            capacity = min(capacity, self._shares.get(pool, 0.0))
        if own + amount > capacity + TOLERANCE:
            return False
        return own + self._background.get(pool, 0.0) + amount <= min(self._ceiling(pool), lowest) + TOLERANCE

    def _check_quota(self, owner: str, quota: float | None, pools: Iterable[str], amounts: Iterable[float]) -> None:
        if quota is None:
            return
        need = sum(a for p, a in zip(pools, amounts) if not p.startswith(CABLE_KEY_PREFIX))
        held = self._held.get(owner, 0.0)
        if need > 0 and held + need > quota + TOLERANCE:
            raise QuotaExceeded(owner, held, quota, need)

    def set_shares(self, shares: dict[str, float] | None, background: dict[str, float] | None = None,
                   others_ceiling: dict[str, float] | None = None) -> None:
        """Cluster mode: hold at most `shares[key]` of each key (a key not named: nothing), judge latency with
        `background[key]` more load on it (the others' shares), and keep every key's load within
        `others_ceiling[key]` (the lowest ceiling of the others' live holds on it). None: the whole capacity, no
        background, no ceilings but this process's own. All three change at one instant, under the lock."""
        with self._lock:
            self._shares = None if shares is None else dict(shares)
            if shares is None:
                self._new_holds, self._until = None, math.inf
            old, old_ceiling = self._background, self._others_ceiling
            self._background = dict(background or {})
            self._others_ceiling = {k: c for k, c in (others_ceiling or {}).items() if c < math.inf}
            moved = {k for k in set(old) | set(self._background) if old.get(k) != self._background.get(k)}
            for key in moved:
                self._sync_used(key)
            capped = set(old_ceiling) | set(self._others_ceiling)
            if self._new_holds is not None:  # the budget's cap on a key's load counts its background
                capped |= moved
            for key in capped:
                self._sync_ceiling(key)

    def renewed(self, until: float) -> None:
        """Cluster mode: the share stands until `until` (this ledger's clock); past it, nothing new is held until
        renewed again (the lease that keeps the share may have lapsed)."""
        with self._lock:
            self._until = until

    def announce(self, budget: Callable[[Pace], dict[str, float]], step_s: float, steps: int) -> Announcement:
        """Cluster mode: this replica's holds now, with their end-time profile, and a budget of new holds
        (`budget(pace)[key]`, absent: none; `pace`: how fast they came lately) kept from now until a later
        announcement is acknowledged (`announced`). The first call starts the budgets: until then new holds are
        not counted."""
        with self._lock:
            now, wall = self._clock(), self._wall()
            self._expire(now)
            if self._new_holds is None:
                self._new_holds = NewHolds()
            window = self._new_holds.open(budget(self._new_holds.pace(wall)), wall)
            self._sync_budgets()
            shift = wall - now
            items = ((b.pools[rid - b.first], b.amounts[rid - b.first], b.expires[rid - b.first] + shift)
                     for rid, b in self._live.items())
            profile = end_profile(items, wall, step_s, steps)
            last = max((max(b.expires) for b in set(self._live.values())), default=now)
            return Announcement(window.seq, {k: v for k, v in self._used.items() if v > 0}, self._own_ceilings(), wall,
                                wall + max(0.0, last - now), step_s, profile, dict(window.budget))

    def announced(self, window: int) -> None:
        """The claim of announcement `window` is stored: earlier budgets no longer bind."""
        with self._lock:
            if self._new_holds is not None:
                self._new_holds.acknowledged(window)
                self._sync_budgets()
            self._claims_stored += 1
            self._budget_renewed.notify_all()

    def _sync_budgets(self) -> None:
        self._views.clear()  # every key's bound moved: the views are built again on their next read

    def _spend(self, key: str, amount: float, largest: float) -> None:
        """Count new holds (`amount` in all, the largest `largest`) against the budgets (cluster mode); a half-used
        one asks for a claim soon."""
        if self._new_holds is None:
            return
        if self._new_holds.spend(key, amount, largest) and self.budget_low is not None:
            self.budget_low()
        self._sync_ceiling(key)

    def needed(self, key: str, amount: float) -> int | None:
        """Cluster mode: one hold needed `amount` of `key`, which this replica's share had room for. If the budget
        of new holds is what refused it, the next budget fits it, a claim goes out soon, and the answer is a
        ticket for `wait_budget`; else None."""
        with self._lock:
            holds = self._new_holds
            if holds is None or amount <= holds.room(key) + TOLERANCE:
                return None
            holds.saw(key, amount)
            if self.budget_low is not None:
                self.budget_low()
            return self._claims_stored

    def wait_budget(self, ticket: int, timeout: float) -> bool:
        """Cluster mode: wait until a claim is stored after `needed` gave `ticket` (the budget may have room
        again); False if none was within `timeout` seconds."""
        with self._lock:
            return self._budget_renewed.wait_for(lambda: self._claims_stored != ticket, timeout)

    def shared_load(self, keys: list[str]) -> list[float]:
        """Per key, this process's holds plus the others' shares: the load placements would be judged at
        without the budget of new holds."""
        with self._lock:
            self._expire(self._clock())
            return [self._used.get(k, 0.0) + self._background.get(k, 0.0) for k in keys]

    def promised(self, keys: Sequence[str]) -> np.ndarray | None:
        """`promised_ceilings(keys)` while a budget of new holds is on (`ceilings` then caps more than promises),
        else None (`ceilings` is the promises)."""
        if self._new_holds is None:
            return None
        return np.array(self.promised_ceilings(keys))

    def promised_ceilings(self, keys: list[str]) -> list[float]:
        """Per key, the lowest ceiling promised on it (here or at the other replicas); inf: none. What
        `ceilings` gives, without the budget of new holds."""
        with self._lock:
            self._expire(self._clock())
            return [self._promised(k) for k in keys]

    def shares(self) -> dict[str, float] | None:
        with self._lock:
            return None if self._shares is None else dict(self._shares)

    def used(self, pools: list[str]) -> np.ndarray:
        """Per key, the load placements are judged at: this process's holds plus, in cluster mode, the others'
        shares (`own_used` without them)."""
        with self._lock:
            self._expire(self._clock())
            return np.array(self._view(pools).used)

    def ceilings(self, pools: list[str]) -> np.ndarray:
        """Per pool, the lowest ceiling of its live placements (inf if none): the most load it may carry."""
        with self._lock:
            self._expire(self._clock())
            return np.array(self._view(pools).ceiling)

    def state(self, keys: list[str]) -> tuple[list[float], list[float]]:
        """`used(keys)` and `ceilings(keys)` as lists, read at one instant under one lock."""
        with self._lock:
            self._expire(self._clock())
            view = self._view(keys)
            return view.used[:], view.ceiling[:]

    def try_reserve(self, items: Sequence[tuple], capacity: dict[str, float], owner: str = "",
                    quota: float | None = None) -> list[Reservation] | None:
        """Reserve all (pool, accelerators, hold seconds[, ceiling]) or none, on behalf of `owner`.

        None if any pool would exceed its capacity, the lowest ceiling of its live placements, or the ceiling of
        an item being reserved on it. QuotaExceeded if `owner` would hold more than `quota` accelerators.
        """
        ticket = None
        with self._lock:
            now = self._clock()
            self._expire(now)
            need: dict[str, float] = {}
            lowest: dict[str, float] = {}
            for item in items:
                pool, amount = item[0], item[1]
                need[pool] = need.get(pool, 0.0) + amount
                if len(item) > 3:
                    lowest[pool] = min(lowest.get(pool, math.inf), item[3])
            for pool, amount in need.items():
                if not self._fits(pool, amount, capacity[pool], lowest.get(pool, math.inf), now):
                    return None
            self._check_quota(owner, quota, need.keys(), need.values())
            first = self._next_id
            if not items:
                return []
            n = len(items)
            self._next_id += n
            pools = [item[0] for item in items]
            amounts = [item[1] for item in items]
            expires = [now + item[2] for item in items]
            ceilings = [float(item[3]) if len(item) > 3 else math.inf for item in items]
            out = []
            for rid, pool, amount, expires_at, ceiling in zip(range(first, first + n), pools, amounts, expires,
                                                              ceilings):
                r = _new(Reservation)  # a frozen dataclass's __init__ sets its fields one by one, slowly
                r.__dict__.update(id=rid, pool=pool, accelerators=amount, expires_at=expires_at, ceiling=ceiling,
                                  owner=owner)
                out.append(r)
            used = self._used
            for pool, amount in zip(pools, amounts):
                used[pool] = used.get(pool, 0.0) + amount
                self._spend(pool, amount, amount)
                self._sync_used(pool)
            self._book(first, pools, amounts, ceilings, expires,
                       sorted(range(n), key=expires.__getitem__) if n > 1 else [0], owner)
            for rid, pool, ceiling in zip(range(first, first + n), pools, ceilings):
                if ceiling < math.inf:
                    heapq.heappush(self._ceilings.setdefault(pool, []), (ceiling, rid))
                    self._sync_ceiling(pool)
            self._compact()
            if self.journal is not None:
                ticket = self._journal_reserved(first, pools, amounts, ceilings, expires, now, owner)
        if ticket is not None:
            self.journal.durable(ticket)
        return out

    def reserve_many(self, keys: Sequence[str], key: np.ndarray, amount: np.ndarray, hold: np.ndarray,
                     ceiling: np.ndarray, capacity: np.ndarray, owner: str = "",
                     quota: float | None = None) -> int | None:
        """`try_reserve` column-wise: item i takes `amount[i]` of `keys[key[i]]` for `hold[i]` seconds, with SLO
        ceiling `ceiling[i]` (inf: none), against `capacity[k]` per key. All or none, judged exactly as
        `try_reserve` judges the same items; item i gets id `first + i`, where `first` is returned (None: refused).

        Each pool is checked once on its aggregated need, and the bookkeeping is built in bulk, so a placement of
        thousands of batches costs one pass instead of thousands of per-item steps.
        """
        key = np.asarray(key, dtype=np.int64)
        amount = np.asarray(amount, dtype=float)
        ceiling = np.asarray(ceiling, dtype=float)
        hold = np.asarray(hold, dtype=float)
        n, n_keys = len(key), len(keys)
        present = np.flatnonzero(np.bincount(key, minlength=n_keys)).tolist()
        # bincount adds in item order from 0.0, as try_reserve's running sums do: the same floats, bit for bit.
        need = np.bincount(key, weights=amount, minlength=n_keys).tolist()
        lowest = np.full(n_keys, math.inf)
        np.minimum.at(lowest, key, ceiling)
        lowest = lowest.tolist()
        capacity = np.asarray(capacity, dtype=float).tolist()
        ticket = None
        with self._lock:
            now = self._clock()
            self._expire(now)
            used = self._used
            for k in present:
                if not self._fits(keys[k], need[k], capacity[k], lowest[k], now):
                    return None
            self._check_quota(owner, quota, (keys[k] for k in present), (need[k] for k in present))
            first = self._next_id
            if n == 0:
                return first
            self._next_id += n
            after = np.array([used.get(pool, 0.0) for pool in keys])
            np.add.at(after, key, amount)  # in item order, as try_reserve adds them one by one
            after = after.tolist()
            if self._new_holds is not None:
                largest = np.zeros(n_keys)
                np.maximum.at(largest, key, amount)
                largest = largest.tolist()
            for k in present:
                used[keys[k]] = after[k]
                if self._new_holds is not None:
                    self._spend(keys[k], need[k], largest[k])
                self._sync_used(keys[k])
            pools = [keys[k] for k in key.tolist()]
            expires = now + hold
            self._book(first, pools, amount.tolist(), ceiling.tolist(), expires.tolist(),
                       np.argsort(expires, kind="stable").tolist(), owner)
            capped = np.flatnonzero(ceiling < math.inf)
            if len(capped):  # per pool, its new ceilings joined to its heap in one go
                capped = capped[np.argsort(key[capped], kind="stable")]
                cuts = np.flatnonzero(np.diff(key[capped])) + 1
                for group in np.split(capped, cuts):
                    heap = self._ceilings.setdefault(pools[int(group[0])], [])
                    entries = zip(ceiling[group].tolist(), (group + first).tolist())
                    if 8 * len(group) < len(heap):
                        for entry in entries:
                            heapq.heappush(heap, entry)
                    else:
                        heap.extend(entries)
                        heapq.heapify(heap)
                    self._sync_ceiling(pools[int(group[0])])
            self._compact()
            if self.journal is not None:
                ticket = self._journal_reserved(first, pools, amount.tolist(), ceiling.tolist(), expires.tolist(),
                                                now, owner)
        if ticket is not None:
            self.journal.durable(ticket)
        return first

    def _journal_reserved(self, first: int, pools: list[str], amounts: list[float], ceilings: list[float],
                          expires: list[float], now: float, owner: str) -> int:
        shift = self._wall() - self._clock()  # read together: `now` was read before the checks
        return self.journal.reserved(first, pools, amounts, ceilings, [e + shift for e in expires], owner)

    def _book(self, first: int, pools: list[str], amounts: list[float], ceilings: list[float], expires: list[float],
              order: list[int], owner: str = "") -> None:
        """Make items `first`.. live as one block (`order`: their indices by expiry, ties by id)."""
        block = _Block(first, pools, amounts, ceilings, expires, order, owner)
        self._live.update(dict.fromkeys(range(first, first + len(pools)), block))
        heapq.heappush(self._expiry, block.head())
        held = self._held
        for pool, amount in zip(pools, amounts):
            if not pool.startswith(CABLE_KEY_PREFIX):
                held[owner] = held.get(owner, 0.0) + amount

    def restore(self, first: int, pools: list[str], amounts: list[float], ceilings: list[float],
                expires_wall: list[float], owner: str = "") -> int:
        """Book a block of items read back from a journal or snapshot, with its own ids, whatever capacity says
        (they were promised before): items already ended are skipped. Returns how many are live again."""
        with self._lock:
            now, wall = self._clock(), self._wall()
            live = [i for i, e in enumerate(expires_wall) if e > wall and first + i not in self._live]
            if not live:
                return 0
            if len(live) < len(pools):  # book the live ones one by one (ids are not contiguous any more)
                for i in live:
                    self._restore_block(first + i, [pools[i]], [amounts[i]], [ceilings[i]],
                                        [now + expires_wall[i] - wall], owner)
            else:
                self._restore_block(first, list(pools), list(amounts), list(ceilings),
                                    [now + e - wall for e in expires_wall], owner)
            if self._first_id <= first < self._first_id + (1 << RUN_ID_BITS):  # this run's own ids: never reissue
                self._next_id = max(self._next_id, first + len(pools))
            return len(live)

    def carry(self, pools: list[str], amounts: list[float], ceilings: list[float], expires_wall: list[float],
              owner: str = "") -> int:
        """Book holds made elsewhere (an earlier run whose own record of them is lost) under new ids, whatever
        capacity says, so they stay counted until they end. Returns how many are live."""
        with self._lock:
            first = self._next_id
            self._next_id += len(pools)
        return self.restore(first, pools, amounts, ceilings, expires_wall, owner)

    def _restore_block(self, first: int, pools: list[str], amounts: list[float], ceilings: list[float],
                       expires: list[float], owner: str) -> None:
        order = sorted(range(len(pools)), key=expires.__getitem__)
        self._book(first, pools, amounts, ceilings, expires, order, owner)
        for i, (pool, amount, ceiling) in enumerate(zip(pools, amounts, ceilings)):
            self._used[pool] = self._used.get(pool, 0.0) + amount
            self._sync_used(pool)
            if ceiling < math.inf:
                heapq.heappush(self._ceilings.setdefault(pool, []), (ceiling, first + i))
                self._sync_ceiling(pool)

    def _compact(self) -> None:
        """Drop dead ceiling entries once they outnumber the live placements (amortized, keeps memory bounded)."""
        if sum(map(len, self._ceilings.values())) > 2 * len(self._live) + 1024:
            heaps: dict[str, list[tuple[float, int]]] = {}
            for rid, block in self._live.items():
                i = rid - block.first
                if block.ceilings[i] < math.inf:
                    heaps.setdefault(block.pools[i], []).append((block.ceilings[i], rid))
            for heap in heaps.values():
                heapq.heapify(heap)
            self._ceilings = heaps

    def release(self, reservation_id: int) -> bool:
        """Free a placement early (e.g. the request finished or was cancelled)."""
        return self.release_many([reservation_id]) == 1

    def release_many(self, reservation_ids: Iterable[int], owner: str | None = None) -> int:
        """`release` for many ids under one lock; how many were live. With `owner`, only holds that owner made
        are freed (others are left alone and not counted)."""
        ticket = None
        with self._lock:
            self._expire(self._clock())
            if owner is None:
                freed = [rid for rid in reservation_ids if self._release_one(rid)]
            else:
                live = self._live
                freed = [rid for rid in reservation_ids
                         if (b := live.get(rid)) is not None and b.owner == owner and self._release_one(rid)]
            if freed and self.journal is not None:
                ticket = self.journal.released(freed)
        if ticket is not None:
            self.journal.durable(ticket)
        return len(freed)

    def release_where(self, owner: str | None = None, pool: str | None = None) -> int:
        """Free every live hold made by `owner` and/or on `pool` (an operator's broom); how many."""
        with self._lock:
            self._expire(self._clock())
            ids = [rid for rid, b in self._live.items()
                   if (owner is None or b.owner == owner) and (pool is None or b.pools[rid - b.first] == pool)]
        return self.release_many(ids)

    def owner_of(self, reservation_id: int) -> str | None:
        """Who made a live hold (None: not live here)."""
        with self._lock:
            block = self._live.get(reservation_id)
            return None if block is None else block.owner

    def held_by(self, owner: str) -> float:
        """Accelerators `owner` holds now (pools only)."""
        with self._lock:
            self._expire(self._clock())
            return self._held.get(owner, 0.0)

    def own_used(self) -> dict[str, float]:
        """This process's holds per key, without the background (`snapshot` with zeros too)."""
        with self._lock:
            self._expire(self._clock())
            return dict(self._used)

    def own_ceilings(self) -> dict[str, float]:
        """Per key, the lowest ceiling of this process's live holds on it (keys without one left out): what the
        other replicas must keep the key's load within."""
        with self._lock:
            self._expire(self._clock())
            return self._own_ceilings()

    def _own_ceilings(self) -> dict[str, float]:
        return {p: c for p in list(self._ceilings) if (c := self._own_ceiling(p)) < math.inf}

    def _release_one(self, reservation_id: int) -> bool:
        block = self._live.pop(reservation_id, None)
        if block is None:
            return False
        i = reservation_id - block.first
        if not block.pools[i].startswith(CABLE_KEY_PREFIX):
            left = self._held.get(block.owner, 0.0) - block.amounts[i]
            if left > TOLERANCE:
                self._held[block.owner] = left
            else:
                self._held.pop(block.owner, None)
        self._release(block.pools[i], block.amounts[i])
        if block.ceilings[i] < math.inf:
            self._sync_ceiling(block.pools[i])
        block.live -= 1
        return True

    def reservations(self) -> dict[int, Reservation]:
        """Every live reservation by id (for inspection; placing and releasing never need it)."""
        with self._lock:
            self._expire(self._clock())
            out = {}
            for rid, block in self._live.items():
                i = rid - block.first
                out[rid] = Reservation(rid, block.pools[i], block.amounts[i], block.expires[i], block.ceilings[i],
                                       block.owner)
            return out

    def live_blocks(self) -> list[tuple[int, list[str], list[float], list[float], list[float], str]]:
        """Every live item grouped by block as (first id, pools, amounts, ceilings, wall-clock expiries, owner),
        items no longer live dropped (each kept item's id is first + its index: gaps are filled with 0-length
        holds that `restore` skips as ended). For snapshots."""
        with self._lock:
            now, wall = self._clock(), self._wall()
            self._expire(now)
            out = []
            for block in {id(b): b for b in self._live.values()}.values():
                exp = [(e - now + wall) if (block.first + i) in self._live else -math.inf
                       for i, e in enumerate(block.expires)]
                out.append((block.first, block.pools, block.amounts, block.ceilings, exp, block.owner))
            return out

    def snapshot(self) -> dict[str, float]:
        with self._lock:
            self._expire(self._clock())
            return {p: u for p, u in self._used.items() if u > 0}

    def clear(self) -> None:
        with self._lock:
            self._used.clear()
            self._expiry.clear()
            self._live.clear()
            self._ceilings.clear()
            self._others_ceiling.clear()
            self._views.clear()
            self._held.clear()
