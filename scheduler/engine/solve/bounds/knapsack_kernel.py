"""ceiling_aware.py's inner loop, compiled: each pool's best level and its fractional knapsack at given multipliers.

Per pool and level the knapsack walks the pool's items from the densest until the level's room is full: a loop
with an early exit, which numpy can only do as (levels x items) matrices (~20 ms a step on 10k x 200, against
~5 ms here). Compiled by numba on first use and cached on disk. `warm` does it up front (~2.5 s once, ~0.2 s
from the cache): the server calls it before serving and Engine.place_many before its solve, so no solve pays for it
inside its time limit, and commands that never place many batches (validate, place) skip it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from scheduler.engine import tolerances

_ROOM = tolerances.TIGHT  # a float global: numba compiles it in as a constant


@njit(cache=True, nogil=True)
def pools(batch_value: np.ndarray, batch: np.ndarray, cost: np.ndarray, load: np.ndarray, ceiling: np.ndarray,
          starts: np.ndarray, low: np.ndarray, room: np.ndarray, pool_price: np.ndarray, zero: float,
          taken: np.ndarray) -> float:  # pragma: no cover - compiled; tested through ceiling_aware.py
    """Sum over pools of max(0, max over levels j of [pool_price_q room_j + fractional knapsack of the items with ceiling
    >= low_j, worth batch_value - cost each, in room_j]); adds to `taken` how much of each batch the best levels take.
    Pool q's items are [starts[q], starts[q + 1]); low/room are (P, G), padded with room -inf. Items at zero margin
    (within `zero` of their cost) join, worth nothing, so that `taken` says which batches a pool would carry."""
    total = 0.0
    for q in range(len(starts) - 1):
        a, b = starts[q], starts[q + 1]
        idx = np.empty(b - a, np.int64)
        worth_of = np.empty(b - a)
        n = 0
        for i in range(a, b):
            m = batch_value[batch[i]] - cost[i]
            if m >= -zero * abs(cost[i]):
                idx[n] = i
                worth_of[n] = max(m, 0.0)
                n += 1
        density = np.empty(n)
        for t in range(n):
            density[t] = -worth_of[t] / load[idx[t]]
        order = np.argsort(density, kind="mergesort")  # densest first, stable
        best, best_j = -np.inf, -1
        for j in range(room.shape[1]):
            r = room[q, j]
            if r == -np.inf:
                break
            worth, used = pool_price[q] * r, 0.0
            for t in range(n):
                i = idx[order[t]]
                if ceiling[i] < low[q, j]:
                    continue
                if used + load[i] <= r + _ROOM:
                    used += load[i]
                    worth += worth_of[order[t]]
                else:
                    worth += min(max((r - used) / load[i], 0.0), 1.0) * worth_of[order[t]]
                    break
            if worth > best:
                best, best_j = worth, j
        if best <= 0.0:
            continue
        total += best
        r, used = room[q, best_j], 0.0
        for t in range(n):  # the best level's set, again, into `taken`
            i = idx[order[t]]
            if ceiling[i] < low[q, best_j]:
                continue
            if used + load[i] <= r + _ROOM:
                used += load[i]
                taken[batch[i]] += 1.0
            else:
                taken[batch[i]] += min(max((r - used) / load[i], 0.0), 1.0)
                break
    return total


_warm = False


def warm() -> None:
    """Compile (or load from the cache) before any solve needs it; once per process."""
    global _warm
    if not _warm:
        one = np.ones(1)
        pools(one, np.zeros(1, np.int64), one, one, one, np.array([0, 1], np.int64), np.zeros((1, 1)), np.ones((1, 1)),
              one, 0.0, np.zeros(1))
        _warm = True
