"""The improve stage's local search: lift the ceilings that a few latency-tight batches put on priced pools.

A pool runs no fuller than the least ceiling of the batches on it. The greedy sometimes lets a tight batch onto a
pool that is still nearly empty, and that batch then caps the pool far below its capacity while cheaper work waits
elsewhere (on 10k batches on the default topology, five pools held 1.6 CNY of priced capacity idle this way). One
move: take the pool's k lowest-ceiling batches off (k = 1..EVICT) and put each on its cheapest other target that
fits; the pool's cap rises to the next ceiling; refill the room with the batches that gain most per unit of load
by moving there (placed elsewhere or unplaced, and tolerating the new cap). The move is kept only if the refill
gains more than the evictions cost, so the assignment never gets worse, and every step goes through the same fit
rule as the greedy (capacity, every ceiling, cables).
"""

from __future__ import annotations

import numpy as np

from scheduler.engine import tolerances
from scheduler.engine.solve import greedy
from scheduler.engine.solve.problem import BatchProblem, assigned_cost

EVICT = 3  # lowest-ceiling batches taken off a pool, at most, in one move
POOLS_PER_ROUND = 12  # pools tried per round, the most idle priced capacity first
REFILL_TRIES = 400  # candidates tried per refill, at most (the best gain per load first)
MIN_ROUND_GAIN = 5e-5  # a round that saves less than this share of the placed batches' cost is the last


def unblock(p: BatchProblem, parts: list[greedy.Part], state: greedy.State, where: dict[int, tuple[int, int]],
            pool_price: np.ndarray, penalty: float, rounds: int) -> float:
    """Apply improving moves for `rounds` rounds (fewer if one finds nothing); returns the cost saved."""
    index = _Index(p, parts)
    saved = 0.0
    for _ in range(rounds):
        idle = pool_price * (p.pool_cap - state.load)
        blocked = np.flatnonzero((pool_price > 0) & (state.cap < p.pool_cap - tolerances.LOAD))
        gained = 0.0
        for q in blocked[np.argsort(-idle[blocked], kind="stable")][:POOLS_PER_ROUND].tolist():
            for k in range(1, EVICT + 1):
                g = _move(p, parts, state, where, index, q, k, penalty)
                if g > 0:
                    gained += g
                    break
        saved += gained
        if gained <= MIN_ROUND_GAIN * assigned_cost(p, state.target):
            break
    return saved


class _Index:
    """Batch -> part and row as arrays, and each part's target on each pool: lookups the moves make in bulk."""

    def __init__(self, p: BatchProblem, parts: list[greedy.Part]):
        self.p, self.parts = p, parts
        self.part = np.full(len(p.batches), -1, dtype=np.int64)
        self.row = np.zeros(len(p.batches), dtype=np.int64)
        for j, part in enumerate(parts):
            self.part[part.rows] = j
            self.row[part.rows] = np.arange(len(part.rows))
        self.column = [{q: k for k, q in enumerate(part.pool.tolist())} for part in parts]

    def ceilings(self, target: np.ndarray, batches: np.ndarray) -> np.ndarray:
        """The ceiling of each placed batch's current pair."""
        out = np.empty(len(batches))
        part_of = self.part[batches]
        for j in np.unique(part_of).tolist():
            sel = part_of == j
            b = batches[sel]
            out[sel] = self.parts[j].ceiling[self.row[b], target[b] - self.p.offset[self.parts[j].m]]
        return out


def _cost_of(parts: list[greedy.Part], target: np.ndarray, where: dict, p: BatchProblem, i: int,
             penalty: float) -> float:
    j, r = where[i]
    part = parts[j]
    t = int(target[i])
    return penalty * float(p.weight[i]) if t < 0 else float(part.cost[r, t - p.offset[part.m]])


def _move(p: BatchProblem, parts: list[greedy.Part], state: greedy.State, where: dict, index: _Index, q: int,
          k: int, penalty: float) -> float:
    """Evict pool q's k lowest-ceiling batches, refill, keep if cheaper; returns the saving (0: undone)."""
    members = np.array(state.members[q], dtype=np.int64)
    if len(members) <= k:
        return 0.0
    ceiling = index.ceilings(state.target, members)
    order = np.lexsort((members, ceiling))
    saved = (state.target.copy(), state.load.copy(), state.cap.copy(), state.cable_room.copy(),
             [list(m) for m in state.members])
    evicted = members[order[:k]].tolist()
    delta = 0.0
    for i in evicted:
        delta -= _cost_of(parts, state.target, where, p, i, penalty)
        greedy.remove(p, parts, where, state, i)
    state.cap[q] = min(float(p.pool_cap[q]), float(ceiling[order[k]]))
    for i in evicted:
        j, r = where[i]
        part = parts[j]
        ks = np.flatnonzero(part.ok[r] & (part.pool != q))
        ks = ks[np.argsort(part.cost[r, ks], kind="stable")]
        if not greedy.place_first(p, part, state, i, r, ks.tolist()):
            return _undo(state, saved)
        delta += _cost_of(parts, state.target, where, p, i, penalty)
    gain = _refill(p, parts, state, where, index.column, q, penalty)
    if gain - delta <= tolerances.COST:
        return _undo(state, saved)
    return gain - delta


def _refill(p: BatchProblem, parts: list[greedy.Part], state: greedy.State, where: dict, column: list[dict], q: int,
            penalty: float) -> float:
    """Move onto pool q the batches that gain most per unit of load, as long as they fit under its cap."""
    cands = []
    for j, part in enumerate(parts):
        k = column[j].get(q)
        if k is None:
            continue
        rows = np.flatnonzero(part.ok[:, k] & (part.ceiling[:, k] >= state.cap[q] - tolerances.LOAD))
        if not len(rows):
            continue
        t = state.target[part.rows[rows]]
        placed = t >= 0
        col = np.where(placed, t - p.offset[part.m], 0)
        now = np.where(placed, part.cost[rows, col], penalty * p.weight[part.rows[rows]])
        gain = now - part.cost[rows, k]
        good = (gain > tolerances.COST) & ~(placed & (part.pool[col] == q))
        rows, gain = rows[good], gain[good]
        cands.append((part.load[rows, k], gain, np.full(len(rows), j), rows, np.full(len(rows), k)))
    if not cands:
        return 0.0
    load, gain, js, rows, ks = (np.concatenate(x) for x in zip(*cands))
    order = np.lexsort((rows, js, -gain / load))[:REFILL_TRIES]
    smallest = float(load[order].min(initial=np.inf))
    total = 0.0
    for g, j, r, k, need in zip(gain[order].tolist(), js[order].tolist(), rows[order].tolist(), ks[order].tolist(),
                                load[order].tolist()):
        room = state.cap[q] - state.load[q]
        if room < smallest:
            break
        part = parts[j]
        if need > room + tolerances.LOAD or not greedy.fits(p, part, state, r, k):
            continue
        i = int(part.rows[r])
        if state.target[i] >= 0:
            greedy.remove(p, parts, where, state, i)
        greedy.take(p, part, state, i, r, k)
        total += g
    return total


def _undo(state: greedy.State, saved: tuple) -> float:
    state.target[:], state.load[:], state.cap[:], state.cable_room[:] = saved[:4]
    state.members[:] = saved[4]
    return 0.0
