"""The greedy assignment the large solve and the baselines share: each model's dense arrays (`Part`), the running
state (`State`: loads, caps under every ceiling, cable room, members), and the moves on it (fit, take, remove).

The greedy takes batches with few options first, then from the most latency-tolerant to the least (so that a pool's
cap only falls as it fills), each to its cheapest target at the given prices where the pool has room under its cap
and every ceiling on it, its own included, and the route's cables have bandwidth. Whole runs of its queue are
settled at once while they do not compete for the last room (`_Queue.run`), with the one-by-one answer.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from scheduler.engine import tolerances
from scheduler.engine.catalog import Catalog
from scheduler.engine.request import Reason
from scheduler.engine.solve.problem import BatchProblem

FEW_OPTIONS = 12  # batches with at most this many feasible targets are placed first
RANKED = 16  # targets ranked up front per batch; one that fits none of them takes the cheapest that fits
CHUNK = 256  # queued batches settled at once while they do not compete for the last room ...
MIN_RUN, ONE_BY_ONE = 8, 32  # ... and when fewer than MIN_RUN in a row do, the next ONE_BY_ONE go one by one
_CABLED_LOCK = threading.Lock()


@dataclass
class Part:
    """One model's part of the large solve: dense (B_m, T_m) arrays, infeasible pairs masked by `ok`."""

    m: str
    rows: np.ndarray
    pool: np.ndarray  # (T_m,) pool index
    ok: np.ndarray
    cost: np.ndarray
    load: np.ndarray
    ceiling: np.ndarray
    gbps: np.ndarray  # (B_m,)
    cables: np.ndarray  # (R, T_m, C) route crosses cable, by region
    region: np.ndarray  # (B_m,)
    catalog: Catalog = field(repr=False)
    _masked: tuple | None = field(default=None, repr=False)
    _cabled: dict = field(default_factory=dict, repr=False)

    def masked(self) -> tuple[np.ndarray, np.ndarray]:
        """(cost, load) with infeasible pairs at (inf, 0), so that pricing them needs no mask: built once, since
        the bound's ascent and the greedy price the same pairs again and again."""
        if self._masked is None:
            self._masked = (np.where(self.ok, self.cost, np.inf), np.where(self.ok, self.load, 0.0))
        return self._masked

    def cabled(self, cable_price: np.ndarray) -> np.ndarray:
        """(B_m, T_m) each pair's cost plus its bandwidth at these cable prices (inf if infeasible), kept: a solve
        prices pools many times at the group LP's cable prices, which are asked first and always kept, and a few
        times at others, of which the last is kept (the matrix is as large as the part). Safe from two threads: an
        entry is never changed, only added or dropped under a lock."""
        cost = self.masked()[0]
        if not len(cable_price) or not np.any(cable_price > 0):
            return cost
        key = cable_price.tobytes()
        cached = self._cabled.get(key)
        if cached is None:
            cached = cost + self.gbps[:, None] * (self.cables @ cable_price)[self.region]
            with _CABLED_LOCK:
                for old in list(self._cabled)[1:]:
                    del self._cabled[old]
                self._cabled[key] = cached
        return cached

    def crossed(self, region: int) -> list[tuple[int, ...]]:
        """Per target, the cables its route from `region` crosses (Catalog.crossed)."""
        return self.catalog.crossed(self.m, region)


@dataclass
class State:
    """The greedy's running assignment: per pool its load, its cap (capacity and ceilings) and its batches."""

    target: np.ndarray
    load: np.ndarray
    cap: np.ndarray
    cable_room: np.ndarray
    members: list[list[int]]
    keep_promises: bool = True  # False: a placement does not lower its pool's cap (later ones may break it)


def parts_of(p: BatchProblem) -> list[Part]:
    """Each model's dense arrays, as the large solve and the baselines work on them."""
    parts = []
    for m in p.models:
        mt = p.cat.by_model[m]
        e = p.est[m]
        parts.append(Part(m, p.rows[m], mt.pool, p.reason[m] == Reason.OK, e.cost_cny, e.load, p.ceiling[m],
                          e.gbps, p.cat.targets_view(m).cables, p.region[p.rows[m]], p.cat))
    return parts


def fresh_state(p: BatchProblem) -> State:
    """Nothing placed yet: pools at today's load and cap, cables at today's room."""
    return State(np.full(len(p.batches), -1, dtype=np.int64), p.used.astype(float).copy(),
                  p.pool_cap.astype(float).copy(), p.cable_free.astype(float).copy(), [[] for _ in p.pool_cap])


def where_of(parts: list[Part]) -> dict[int, tuple[int, int]]:
    """Batch index -> (its part, its row in the part)."""
    return {i: (j, r) for j, part in enumerate(parts) for r, i in enumerate(part.rows.tolist())}


def tolerance(p: BatchProblem, part: Part, score: np.ndarray) -> np.ndarray:
    """(B_m,) the utilization each batch tolerates on its best target by `score`."""
    if not part.ok.shape[1]:  # a model no pool serves: nothing to tolerate
        return np.zeros(len(part.rows))
    best = np.argmin(np.where(part.ok, score, np.inf), axis=1)
    b = np.arange(len(part.rows))
    return part.ceiling[b, best] / p.cat.pool_count[part.pool][best]


def priced_cost(part: Part, pool_price: np.ndarray, cable_price: np.ndarray,
                rows: np.ndarray | slice = slice(None)) -> np.ndarray:
    """(B_m, T_m) each pair's cost plus the capacity and bandwidth it uses at these prices; inf if infeasible.
    Only `rows`, if given."""
    priced = np.multiply(part.masked()[1][rows], pool_price[part.pool][None, :])
    priced += part.cabled(cable_price)[rows]
    return priced


def cheapest(priced: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's cheapest column (the lowest among ties) and its cost (inf for rows of a part with no columns)."""
    if not priced.shape[1]:
        return np.zeros(len(priced), np.int64), np.full(len(priced), np.inf)
    k = np.argmin(priced, axis=1)
    return k, priced[np.arange(len(priced)), k]


def bandwidth_credit(p: BatchProblem, cable_price: np.ndarray) -> float:
    """What a Lagrangian that prices bandwidth at `cable_price` credits back: each priced cable's free Gbps."""
    priced = cable_price > 0
    return float(cable_price[priced] @ np.maximum(p.cable_free[priced], 0.0)) if len(cable_price) else 0.0


def greedy(p: BatchProblem, parts: list[Part], pool_price: np.ndarray, cable_price: np.ndarray) -> State:
    """Batches with few options first, then from the most latency-tolerant to the least (so that a pool's cap only
    falls as it fills), each to its cheapest target at these prices where the pool has room under its cap and
    every ceiling on it, its own included, and the route's cables have bandwidth."""
    state = fresh_state(p)
    keys, ranked = [], []
    for j, part in enumerate(parts):
        priced = priced_cost(part, pool_price, cable_price)
        ranked.append(_Ranking(priced))
        nfeas = part.ok.sum(axis=1)
        rows = np.flatnonzero(nfeas)
        keys.append((nfeas[rows] > FEW_OPTIONS, -tolerance(p, part, priced)[rows], part.rows[rows],
                     np.full(len(rows), j), rows))
    if not keys:
        return state
    few, intolerance, batch, part_of, row = (np.concatenate(x) for x in zip(*keys))
    order = np.lexsort((batch, intolerance, few))
    queue = _Queue(p, parts, ranked, batch[order], part_of[order], row[order])
    pos, n = 0, len(order)
    while pos < n:
        # Whole runs of the queue at once, each batch at its first ranked target that fits: exactly what one by one
        # would do (see _Queue.run); a batch the run cannot settle goes one by one.
        run, choice = queue.run(state, pos, min(pos + CHUNK, n))
        queue.take(state, pos, choice[:run])
        pos += run
        stop = min(pos + (1 if run >= MIN_RUN else ONE_BY_ONE), n)
        for i, j, r in zip(queue.batch[pos:stop].tolist(), queue.part[pos:stop].tolist(),
                           queue.row[pos:stop].tolist()):
            place_cheapest(p, parts[j], state, i, r, ranked[j].priced[r])
        pos = stop
    return state


class _Queue:
    """The greedy's queue with each batch's RANKED cheapest targets (pool, load, ceiling, cables) as arrays, padded
    with -1 where a batch has fewer."""

    def __init__(self, p: BatchProblem, parts: list[Part], ranked: list[_Ranking], batch: np.ndarray,
                 part: np.ndarray, row: np.ndarray):
        n, C = len(batch), len(p.cable_free)
        self.batch, self.part, self.row = batch, part, row
        self.k = np.full((n, RANKED), -1, np.int64)  # target column within the part
        self.offset = np.zeros(n, np.int64)
        self.pool = np.zeros((n, RANKED), np.int64)
        self.load, self.ceiling = np.zeros((n, RANKED)), np.zeros((n, RANKED))
        self.gbps = np.zeros(n)
        self.cross = np.zeros((n, RANKED, C), bool)
        for j, m in enumerate(parts):
            at = np.flatnonzero(part == j)
            r = row[at]
            k = ranked[j].top(r)
            some = k >= 0
            kk = np.where(some, k, 0)
            self.k[at] = k
            self.offset[at] = p.offset[m.m]
            self.pool[at] = m.pool[kk]
            self.load[at] = np.where(some, m.load[r[:, None], kk], np.inf)
            self.ceiling[at] = m.ceiling[r[:, None], kk]
            self.gbps[at] = m.gbps[r]
            if C:
                self.cross[at] = m.cables[m.region[r][:, None], kk] & some[:, :, None]

    def run(self, state: State, a: int, b: int) -> tuple[int, np.ndarray]:
        """From position a on, each batch's first ranked target that fits the state as it stands, and how many in a
        row would take exactly those one after the other (at most b - a): loads only rise and caps and cable room
        only fall along the run, so targets that did not fit at its start do not fit later either."""
        n = b - a
        pools, load, ceiling = self.pool[a:b], self.load[a:b], self.ceiling[a:b]
        fits = state.load[pools] + load <= np.minimum(state.cap[pools], ceiling) + tolerances.LOAD
        cross = self.cross[a:b]
        if cross.any():
            fits &= ~(cross & (state.cable_room + tolerances.GBPS < self.gbps[a:b, None, None])).any(axis=2)
        choice = np.argmax(fits, axis=1)
        at = np.arange(n)
        ok = fits[at, choice]
        pool, ld, th = pools[at, choice], load[at, choice], ceiling[at, choice]
        used, col = np.unique(pool, return_inverse=True)
        added = np.zeros((n, len(used)))
        added[at, col] = np.where(ok, ld, 0.0)
        least = np.full((n, len(used)), np.inf)
        least[at, col] = th
        after = (state.load[used][None, :] + np.cumsum(added, axis=0))[at, col]
        limit = np.minimum(state.cap[used][None, :], np.minimum.accumulate(least, axis=0))[at, col]
        ok &= after <= limit + tolerances.LOAD
        if cross.any():
            crossed = cross[at, choice]
            room = state.cable_room[None, :] - np.cumsum(crossed * self.gbps[a:b, None], axis=0)
            ok &= ~(crossed & (room < -tolerances.GBPS)).any(axis=1)
        bad = np.flatnonzero(~ok)
        return (int(bad[0]) if len(bad) else n), choice

    def take(self, state: State, a: int, choice: np.ndarray) -> None:
        """Place the batches from position a on at their `choice` (column into their ranked targets)."""
        n = len(choice)
        if not n:
            return
        at, rows = np.arange(n), slice(a, a + n)
        pool, load, ceiling = self.pool[rows][at, choice], self.load[rows][at, choice], self.ceiling[rows][at, choice]
        batch = self.batch[rows]
        state.target[batch] = self.offset[rows] + self.k[rows][at, choice]
        np.add.at(state.load, pool, load)  # in queue order, as one by one would add
        if state.keep_promises:
            np.minimum.at(state.cap, pool, ceiling)
        for i, q in zip(batch.tolist(), pool.tolist()):
            state.members[q].append(i)
        crossed = self.cross[rows][at, choice]
        if crossed.any():
            state.cable_room -= (crossed * self.gbps[rows, None]).sum(axis=0)


class _Ranking:
    """Each batch's RANKED cheapest feasible targets at the prices, in the order of a stable argsort (wide parts:
    one partition over the whole matrix, then only those sorted); a batch that finds none of them with room takes
    the cheapest that fits among all (place_cheapest), the same target a full ranking would reach."""

    def __init__(self, priced: np.ndarray):
        self.priced = priced
        B, T = priced.shape
        self.nfeas = np.isfinite(priced).sum(axis=1)
        if T <= 2 * RANKED:
            self.full = np.argsort(priced, axis=1, kind="stable")
            self.head = None
            return
        kth = np.partition(priced, RANKED - 1, axis=1)[:, RANKED - 1]
        r, k = np.nonzero((priced <= kth[:, None]) & np.isfinite(priced))  # ties at the kth value all join the head
        order = np.lexsort((priced[r, k], r))  # by row, then value; lexsort is stable and nonzero gave k ascending
        self.head = k[order]
        self.cuts = np.searchsorted(r[order], np.arange(B + 1))

    def top(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), RANKED): each row's first RANKED targets in order, -1 past its feasible ones."""
        if self.head is None:
            out = self.full[rows, :RANKED]
            width = np.arange(out.shape[1])[None, :]
            out = np.where(width < self.nfeas[rows][:, None], out, -1)
        else:
            a, b = self.cuts[rows], self.cuts[rows + 1]
            width = np.arange(RANKED)[None, :]
            out = np.where(width < (b - a)[:, None], self.head[np.minimum(a[:, None] + width, len(self.head) - 1)], -1)
        if out.shape[1] < RANKED:
            out = np.pad(out, ((0, 0), (0, RANKED - out.shape[1])), constant_values=-1)
        return out


def place_cheapest(p: BatchProblem, part: Part, state: State, i: int, r: int, priced: np.ndarray) -> bool:
    """Take the cheapest target by `priced` that fits (the lowest index among ties: a stable argsort's first that
    fits), checking all at once: for the batches a run of the greedy could not settle."""
    q = part.pool
    fits = part.ok[r] & (state.load[q] + part.load[r] <= np.minimum(state.cap[q], part.ceiling[r]) + tolerances.LOAD)
    blocked = state.cable_room + tolerances.GBPS < part.gbps[r]  # cables without room for this batch
    if blocked.any():
        fits &= ~part.cables[part.region[r]][:, blocked].any(axis=1)
    score = np.where(fits, priced, np.inf)
    k = int(np.argmin(score))
    if not np.isfinite(score[k]):
        return False
    take(p, part, state, i, r, k)
    return True


def fits(p: BatchProblem, part: Part, state: State, r: int, k: int) -> bool:
    """Row r's batch fits target k now: the pool stays under its capacity and every ceiling on it (its own too),
    and every cable on the route has room for it."""
    q = part.pool[k]
    if state.load[q] + part.load[r, k] > min(state.cap[q], part.ceiling[r, k]) + tolerances.LOAD:
        return False
    gbps, room = part.gbps[r], state.cable_room
    return not any(room[c] + tolerances.GBPS < gbps for c in part.crossed(int(part.region[r]))[k])


def take(p: BatchProblem, part: Part, state: State, i: int, r: int, k: int) -> None:
    q = int(part.pool[k])
    state.target[i] = p.offset[part.m] + k
    state.load[q] += part.load[r, k]
    if state.keep_promises:
        state.cap[q] = min(state.cap[q], part.ceiling[r, k])
    state.members[q].append(i)
    gbps, room = part.gbps[r], state.cable_room
    for c in part.crossed(int(part.region[r]))[k]:
        room[c] -= gbps


def place_first(p: BatchProblem, part: Part, state: State, i: int, r: int, candidates: Iterable[int]) -> bool:
    """Take the first of `candidates` (target columns, best first) that fits; False if none does."""
    for k in candidates:
        if fits(p, part, state, r, k):
            take(p, part, state, i, r, k)
            return True
    return False


def pair_of(parts: list[Part], where: dict, state: State, p: BatchProblem, i: int) -> tuple[Part, int, int]:
    """The batch's part, row and current target column (-1 if unplaced)."""
    j, r = where[i]
    part = parts[j]
    t = int(state.target[i])
    return part, r, (t - p.offset[part.m] if t >= 0 else -1)


def remove(p: BatchProblem, parts: list[Part], where: dict, state: State, i: int) -> None:
    part, r, k = pair_of(parts, where, state, p, i)
    q = int(part.pool[k])
    state.load[q] -= part.load[r, k]
    state.members[q].remove(i)
    gbps, room = part.gbps[r], state.cable_room
    for c in part.crossed(int(part.region[r]))[k]:
        room[c] += gbps
    state.target[i] = -1
