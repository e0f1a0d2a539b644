"""The live capacity ledger: accelerators held per pool by in-flight placements. The engine's only mutable state.

A placement holds `rate / decode_tps` accelerators of its pool for its expected duration. It may also carry a
*ceiling*: the pool load at which its own SLO would break (queueing grows with load). `try_reserve` checks and takes
capacity under one lock, refusing anything that would push a pool past its capacity or past the lowest ceiling of
the placements live on it, so concurrent callers can never overcommit a pool or break a promise already made.
"""

from __future__ import annotations

import heapq
import itertools
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

TOLERANCE = 1e-9  # accelerators (or Gbps): float noise, not capacity


@dataclass(frozen=True)
class Reservation:
    id: int
    pool: str
    accelerators: float
    expires_at: float
    ceiling: float = math.inf


class Ledger:
    """Keyed by pool key (`site/accelerator#j`) so it survives topology reloads that keep the pool."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._used: dict[str, float] = {}
        self._expiry: list[tuple[float, int, str, float]] = []
        self._live: dict[int, Reservation] = {}
        self._ceilings: dict[str, list[tuple[float, int]]] = {}  # per pool, a min-heap; dead entries dropped lazily
        self._ids = itertools.count(1)

    def _expire(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            _, rid, pool, amount = heapq.heappop(self._expiry)
            if self._live.pop(rid, None) is not None:
                self._release(pool, amount)

    def _release(self, pool: str, amount: float) -> None:
        left = self._used.get(pool, 0.0) - amount
        self._used[pool] = left if left > TOLERANCE else 0.0

    def _ceiling(self, pool: str) -> float:
        heap = self._ceilings.get(pool)
        while heap and heap[0][1] not in self._live:
            heapq.heappop(heap)
        return heap[0][0] if heap else math.inf

    def used(self, pools: list[str]) -> np.ndarray:
        with self._lock:
            self._expire(self._clock())
            return np.array([self._used.get(p, 0.0) for p in pools])

    def ceilings(self, pools: list[str]) -> np.ndarray:
        """Per pool, the lowest ceiling of its live placements (inf if none): the most load it may carry."""
        with self._lock:
            self._expire(self._clock())
            return np.array([self._ceiling(p) for p in pools])

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
            out = []
            for item in items:
                pool, amount, hold = item[0], item[1], item[2]
                ceiling = float(item[3]) if len(item) > 3 else math.inf
                r = Reservation(next(self._ids), pool, amount, now + hold, ceiling)
                self._used[pool] = self._used.get(pool, 0.0) + amount
                self._live[r.id] = r
                heapq.heappush(self._expiry, (r.expires_at, r.id, pool, amount))
                if ceiling < math.inf:
                    heapq.heappush(self._ceilings.setdefault(pool, []), (ceiling, r.id))
                out.append(r)
            self._compact()
            return out

    def _compact(self) -> None:
        """Drop dead ceiling entries once they outnumber the live placements (amortized, keeps memory bounded)."""
        if sum(map(len, self._ceilings.values())) > 2 * len(self._live) + 1024:
            heaps: dict[str, list[tuple[float, int]]] = {}
            for r in self._live.values():
                if r.ceiling < math.inf:
                    heaps.setdefault(r.pool, []).append((r.ceiling, r.id))
            for heap in heaps.values():
                heapq.heapify(heap)
            self._ceilings = heaps

    def release(self, reservation_id: int) -> bool:
        """Free a placement early (e.g. the request finished or was cancelled)."""
        with self._lock:
            r = self._live.pop(reservation_id, None)
            if r is None:
                return False
            self._release(r.pool, r.accelerators)
            return True

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
