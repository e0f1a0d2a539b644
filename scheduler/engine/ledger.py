"""The live capacity ledger: accelerators held per pool by in-flight placements. The engine's only mutable state.

A placement holds `rate / decode_tps` accelerators of its pool for its expected duration. `try_reserve` checks and
takes capacity under one lock, so concurrent callers can never push a pool past its capacity.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Reservation:
    id: int
    pool: str
    accelerators: float
    expires_at: float


class Ledger:
    """Keyed by pool key (`site/accelerator#j`) so it survives topology reloads that keep the pool."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._used: dict[str, float] = {}
        self._expiry: list[tuple[float, int, str, float]] = []
        self._live: dict[int, Reservation] = {}
        self._ids = itertools.count(1)

    def _expire(self, now: float) -> None:
        while self._expiry and self._expiry[0][0] <= now:
            _, rid, pool, amount = heapq.heappop(self._expiry)
            if self._live.pop(rid, None) is not None:
                self._release(pool, amount)

    def _release(self, pool: str, amount: float) -> None:
        left = self._used.get(pool, 0.0) - amount
        self._used[pool] = left if left > 1e-9 else 0.0

    def used(self, pools: list[str]) -> np.ndarray:
        with self._lock:
            self._expire(self._clock())
            return np.array([self._used.get(p, 0.0) for p in pools])

    def try_reserve(self, items: list[tuple[str, float, float]], capacity: dict[str, float]) -> list[Reservation] | None:
        """Reserve all (pool, accelerators, hold seconds) or none: None if any pool would exceed its capacity."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            need: dict[str, float] = {}
            for pool, amount, _ in items:
                need[pool] = need.get(pool, 0.0) + amount
            for pool, amount in need.items():
                if self._used.get(pool, 0.0) + amount > capacity[pool] + 1e-9:
                    return None
            out = []
            for pool, amount, hold in items:
                r = Reservation(next(self._ids), pool, amount, now + hold)
                self._used[pool] = self._used.get(pool, 0.0) + amount
                self._live[r.id] = r
                heapq.heappush(self._expiry, (r.expires_at, r.id, pool, amount))
                out.append(r)
            return out

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
