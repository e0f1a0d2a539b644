"""The live capacity ledger: accelerators held per pool by in-flight placements. The engine's only mutable state.

A placement holds `rate / decode_tps` accelerators of its pool for its expected duration. It may also carry a
*ceiling*: the pool load at which its own SLO would break (queueing grows with load). `try_reserve` checks and takes
capacity under one lock, refusing anything that would push a pool past its capacity or past the lowest ceiling of
the placements live on it, so concurrent callers can never overcommit a pool or break a promise already made.
`reserve_many` does the same for many items given column-wise (a whole batch placement in one call): it checks
each pool once on the aggregated need and hands out a contiguous block of ids, one per item, each releasable alone.
"""

from __future__ import annotations

import heapq
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

TOLERANCE = 1e-9  # accelerators (or Gbps): float noise, not capacity
_new = object.__new__


@dataclass(frozen=True)
class Reservation:
    id: int
    pool: str
    accelerators: float
    expires_at: float
    ceiling: float = math.inf


class _Block:
    """The items one reserving call took, ids `first` .. `first + n - 1`, column-wise. Expiry walks them in order of
    (expiry, id) through `order`, one heap entry per block rather than per item."""

    __slots__ = ("first", "pools", "amounts", "ceilings", "expires", "order", "cursor", "live")

    def __init__(self, first: int, pools: list[str], amounts: list[float], ceilings: list[float],
                 expires: list[float], order: list[int]):
        self.first, self.pools, self.amounts, self.ceilings = first, pools, amounts, ceilings
        self.expires, self.order = expires, order
        self.cursor = 0  # position in `order` of the next item to expire
        self.live = len(pools)  # items neither released nor expired

    def head(self) -> tuple[float, int, _Block]:
        i = self.order[self.cursor]
        return self.expires[i], self.first + i, self


class _View:
    """The ledger's state over one list of keys, kept current as it changes (so a read copies two lists instead of
    looking every key up): per key, what is held and the lowest ceiling of its live items (`Ledger._ceiling`)."""

    __slots__ = ("keys", "index", "used", "ceiling")

    def __init__(self, keys: Sequence[str], used: list[float], ceiling: list[float]):
        self.keys = keys
        self.index = {k: i for i, k in enumerate(keys)}
        self.used = used
        self.ceiling = ceiling


MAX_VIEWS = 4  # key lists kept current (a snapshot asks with the same list every time; a reload brings a new one)


class Ledger:
    """Keyed by pool key (`site/accelerator#j`) so it survives topology reloads that keep the pool."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._used: dict[str, float] = {}
        # Per block with items pending, its next (expiry, id): popping the heap visits every item in (expiry, id)
        # order, as one heap entry per item would, at one entry per reserving call.
        self._expiry: list[tuple[float, int, _Block]] = []
        self._live: dict[int, _Block] = {}  # id of every live item -> its block
        self._ceilings: dict[str, list[tuple[float, int]]] = {}  # per pool, a min-heap; dead entries dropped lazily
        self._next_id = 1
        self._views: list[_View] = []  # most recent first

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

    def _sync_used(self, pool: str) -> None:
        if self._views:
            x = self._used.get(pool, 0.0)
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
        view = _View(keys, [self._used.get(k, 0.0) for k in keys], [self._ceiling(k) for k in keys])
        if len(view.index) == len(keys):  # a list naming a key twice is served but not kept
            self._views.insert(0, view)
            del self._views[MAX_VIEWS:]
        return view

    def _ceiling(self, pool: str) -> float:
        heap = self._ceilings.get(pool)
        while heap and heap[0][1] not in self._live:
            heapq.heappop(heap)
        return heap[0][0] if heap else math.inf

    def used(self, pools: list[str]) -> np.ndarray:
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

    def try_reserve(self, items: Sequence[tuple], capacity: dict[str, float]) -> list[Reservation] | None:
        """Reserve all (pool, accelerators, hold seconds[, ceiling]) or none.

        None if any pool would exceed its capacity, the lowest ceiling of its live placements, or the ceiling of
        an item being reserved on it.
        """
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
                limit = min(capacity[pool], self._ceiling(pool), lowest.get(pool, math.inf))
                if self._used.get(pool, 0.0) + amount > limit + TOLERANCE:
                    return None
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
                r.__dict__.update(id=rid, pool=pool, accelerators=amount, expires_at=expires_at, ceiling=ceiling)
                out.append(r)
            used = self._used
            for pool, amount in zip(pools, amounts):
                used[pool] = used.get(pool, 0.0) + amount
                self._sync_used(pool)
            self._book(first, pools, amounts, ceilings, expires,
                       sorted(range(n), key=expires.__getitem__) if n > 1 else [0])
            for rid, pool, ceiling in zip(range(first, first + n), pools, ceilings):
                if ceiling < math.inf:
                    heapq.heappush(self._ceilings.setdefault(pool, []), (ceiling, rid))
                    self._sync_ceiling(pool)
            self._compact()
            return out

    def reserve_many(self, keys: Sequence[str], key: np.ndarray, amount: np.ndarray, hold: np.ndarray,
                     ceiling: np.ndarray, capacity: np.ndarray) -> int | None:
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
        with self._lock:
            now = self._clock()
            self._expire(now)
            used = self._used
            for k in present:
                pool = keys[k]
                limit = min(capacity[k], self._ceiling(pool), lowest[k])
                if used.get(pool, 0.0) + need[k] > limit + TOLERANCE:
                    return None
            first = self._next_id
            if n == 0:
                return first
            self._next_id += n
            after = np.array([used.get(pool, 0.0) for pool in keys])
            np.add.at(after, key, amount)  # in item order, as try_reserve adds them one by one
            after = after.tolist()
            for k in present:
                used[keys[k]] = after[k]
                self._sync_used(keys[k])
            pools = [keys[k] for k in key.tolist()]
            expires = now + hold
            self._book(first, pools, amount.tolist(), ceiling.tolist(), expires.tolist(),
                       np.argsort(expires, kind="stable").tolist())
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
            return first

    def _book(self, first: int, pools: list[str], amounts: list[float], ceilings: list[float], expires: list[float],
              order: list[int]) -> None:
        """Make items `first`.. live as one block (`order`: their indices by expiry, ties by id)."""
        block = _Block(first, pools, amounts, ceilings, expires, order)
        self._live.update(dict.fromkeys(range(first, first + len(pools)), block))
        heapq.heappush(self._expiry, block.head())

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
        with self._lock:
            return self._release_one(reservation_id)

    def release_many(self, reservation_ids: Iterable[int]) -> int:
        """`release` for many ids under one lock; how many were live."""
        with self._lock:
            return sum(self._release_one(rid) for rid in reservation_ids)

    def _release_one(self, reservation_id: int) -> bool:
        block = self._live.pop(reservation_id, None)
        if block is None:
            return False
        i = reservation_id - block.first
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
                out[rid] = Reservation(rid, block.pools[i], block.amounts[i], block.expires[i], block.ceilings[i])
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
            self._views.clear()
