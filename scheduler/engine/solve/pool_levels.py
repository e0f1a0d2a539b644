"""Pool levels: choose how full each pool may run, then assign at those levels with an LP.

A pool runs no fuller than the least ceiling of the batches on it, so an assignment implies a *level* per pool. Once
the levels are fixed the ceilings are plain filters (a batch may use pool q only if its ceiling there is >= q's
level) and what is left is a generalized assignment whose LP is nearly integral. So, on each batch's shortlist
(candidates.py: all 21 targets on the default topology, 16 of ~270 on 200 sites):

1. levels: start from the levels of a given assignment; price the fixed-level problem by subgradient ascent on its
   Lagrangian (pool capacity = level); estimate, from those prices, what moving one pool's level to any of its
   pairs' ceilings would gain (raise: the capacity freed at the pool's price, minus what the batches whose ceiling
   falls below the new level lose by moving to their next option; lower: the reverse), and accept a move when the
   fixed-level Lagrangian says the problem got cheaper;
2. assign: batches whose cheapest priced target is clear take it; the others (and all those that would crowd a pool)
   go to a transportation LP over their LP_OPTIONS cheapest targets, which is rounded in the order of its flows
   (past LP_BATCHES of them, the surest are placed greedily first and the LP takes the rest).

On the default topology's 10k batches this (and local_search.py after it) lowered the cost 0.6 % below the greedy plus
local search, on 10k x 200 0.2 % (the moves: lift a pool capped at 90 % by a cluster of tight batches to full
capacity, move those batches elsewhere; admit tight batches to small pools). The result is kept only if cheaper,
and every placement goes through the same fit rule as the greedy (capacity, every ceiling, cables).
"""

from __future__ import annotations

import numpy as np

from scheduler.engine import tolerances
from scheduler.engine import transport
from scheduler.engine.solve import greedy
from scheduler.engine.solve.bounds import subgradient
from scheduler.engine.solve.candidates import Shortlist
from scheduler.engine.solve.problem import BatchProblem

START_STEPS = 20  # subgradient steps pricing the starting levels
MOVE_STEPS = 10  # ... and each candidate move, warm-started
MOVES = 4  # level moves accepted, at most
TRIES = 4  # candidate moves evaluated per accepted one, the best estimated first
LP_OPTIONS = 4  # targets per batch in the assignment LP
LP_BATCHES = 4000  # batches the LP places: those whose next option costs least more than their first
# Dual simplex from a slack basis without presolve: 1.6-1.7x faster than GLOP's defaults on these LPs
LP_PARAMETERS = "use_dual_simplex: true, use_preprocessing: false"


def levels_of(p: BatchProblem, parts: list[greedy.Part], target: np.ndarray) -> np.ndarray:
    """(P,) each pool's level under this assignment: the least ceiling on it, or its capacity."""
    level = p.pool_cap.astype(float).copy()
    for part in parts:
        t = target[part.rows]
        r = np.flatnonzero(t >= 0)
        k = t[r] - p.offset[part.m]
        np.minimum.at(level, part.pool[k], part.ceiling[r, k])
    return np.maximum(level, p.used)


def relevel(p: BatchProblem, lists: list[Shortlist], target: np.ndarray, pool_price: np.ndarray, penalty: float,
            upper: float, moves: int = MOVES) -> tuple[greedy.State, np.ndarray]:
    """Search the levels from those of `target` (objective `upper`) over the batches' shortlists, then assign at
    the levels found; also returns each batch's value at those levels and the prices found for them (`values`)."""
    level = levels_of(p, [s.part for s in lists], target)
    credit = greedy.bandwidth_credit(p, lists[0].cable_price) if lists else 0.0  # the lists' costs carry it
    value, price = _ascent(p, lists, penalty, level, pool_price, credit, upper, START_STEPS)
    for _ in range(moves):
        view = _LevelChoices(p, lists, level, price, penalty)
        for _gain, q, new in _candidates(p, lists, level, price, view)[:TRIES]:
            trial = level.copy()
            trial[q] = new
            v, pr = _ascent(p, lists, penalty, trial, price, credit, upper, MOVE_STEPS)
            if v < value - tolerances.RELATIVE * abs(value):
                level, value, price = trial, v, pr
                break
        else:
            break
    view = _LevelChoices(p, lists, level, price, penalty)
    return _assign(p, lists, level, view, penalty), view.values(p, penalty)


def values(p: BatchProblem, lists: list[Shortlist], level: np.ndarray, pool_price: np.ndarray,
           penalty: float) -> np.ndarray:
    """(B,) what each batch pays at these levels and prices: its cheapest priced target the levels allow, or the
    penalty. Near the LP's multipliers of the batches' rows, so a good start for ceiling_aware.py's bound."""
    return _LevelChoices(p, lists, level, pool_price, penalty, second=False).values(p, penalty)


def _allowed(s: Shortlist, pool_price: np.ndarray, level: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The shortlist's priced costs, and the same with inf where the batch's ceiling is under the pool's level."""
    raw = s.priced(pool_price)
    return raw, np.where(s.ceiling >= level[s.pool] - tolerances.LOAD, raw, np.inf)


def _fixed_level_lagrangian(p: BatchProblem, lists: list[Shortlist], penalty: float, pool_price: np.ndarray,
                            level: np.ndarray, credit: float) -> tuple[float, np.ndarray]:
    """capacity_prices.py's Lagrangian for the fixed-level problem on the shortlists: a pool's capacity is its level
    and only
    the batches whose ceiling there is at least that level may use it. Its value and the pools' use."""
    total = -credit - float(pool_price @ np.maximum(level - p.used, 0.0))
    used = np.zeros(len(pool_price))
    for s in lists:
        k, pick = greedy.cheapest(_allowed(s, pool_price, level)[1])
        unplaced_cost = penalty * p.weight[s.part.rows]
        total += float(np.minimum(pick, unplaced_cost).sum())
        b = np.flatnonzero(pick < unplaced_cost)
        np.add.at(used, s.pool[b, k[b]], s.load[b, k[b]])
    return total, used


class _LevelChoices:
    """Per shortlist at some prices: priced costs without and with the level filter, each batch's cheapest entry
    under the filter, what it costs (or the penalty, if that is cheaper), and, with `second`, its next option's
    cost."""

    def __init__(self, p: BatchProblem, lists: list[Shortlist], level: np.ndarray, pool_price: np.ndarray,
                 penalty: float, second: bool = True):
        self.lists, self.price = lists, pool_price
        self.raw, self.priced, self.first, self.value, self.second, self.takes = [], [], [], [], [], []
        for s in lists:
            raw, priced = _allowed(s, pool_price, level)
            unplaced_cost = penalty * p.weight[s.part.rows]
            k, first = greedy.cheapest(priced)
            self.raw.append(raw)
            self.priced.append(priced)
            self.first.append(k)
            self.value.append(np.minimum(first, unplaced_cost))
            self.takes.append(first < unplaced_cost)
            if second:
                nxt = np.partition(priced, 1, axis=1)[:, 1] if priced.shape[1] > 1 else np.full(len(priced), np.inf)
                self.second.append(np.minimum(nxt, unplaced_cost))

    def values(self, p: BatchProblem, penalty: float) -> np.ndarray:
        """(B,) each batch's value (`values`); the penalty for a batch of a model no part holds."""
        out = penalty * p.weight.astype(float)
        for s, value in zip(self.lists, self.value):
            out[s.part.rows] = value
        return out


def _ascent(p: BatchProblem, lists: list[Shortlist], penalty: float, level: np.ndarray, pool_price: np.ndarray,
            credit: float, upper: float, steps: int) -> tuple[float, np.ndarray]:
    """Subgradient ascent on the pool prices of the fixed-level problem (cable prices kept): the best value and its
    prices."""
    run = subgradient.polyak(lambda price: _fixed_level_lagrangian(p, lists, penalty, price, level, credit), pool_price,
                        np.maximum(level - p.used, 0.0), upper, steps)
    return run.best, run.price


def _candidates(p: BatchProblem, lists: list[Shortlist], level: np.ndarray, price: np.ndarray,
                view: _LevelChoices) -> list[tuple[float, int, float]]:
    """(estimated change, pool, new level) of the best move of each pool whose estimate is a saving, best first.

    Raising pool q's level from L to L' frees (L' - L) of capacity worth price_q each, and the batches whose ceiling
    on q is in [L, L') and whose choice was q move to their next option (their second-best priced cost). Lowering
    it gives up (L - L') at price_q and lets the batches with a ceiling in [L', L) take q if it is cheaper for them
    than what they have."""
    pools, ceilings, losses, gains = [], [], [], []
    for s, raw, k, value, second, takes in zip(lists, view.raw, view.first, view.value, view.second, view.takes):
        if not s.pool.shape[1]:  # a model no pool serves
            continue
        b = np.arange(len(k))
        chosen = np.where(takes, s.pool[b, np.minimum(k, s.pool.shape[1] - 1)], -1)
        r, n = np.nonzero(np.isfinite(s.cost))
        q = s.pool[r, n]
        pools.append(q)
        ceilings.append(s.ceiling[r, n])
        losses.append(np.where(chosen[r] == q, second[r] - value[r], 0.0))
        gains.append(np.maximum(value[r] - raw[r, n], 0.0))
    if not pools:
        return []
    P = len(level)
    # Each pool's capacity is an option too: a virtual pair at it that neither loses nor gains (and no pool is empty).
    pool, ceiling, loss, gain = (np.concatenate(x) for x in ([*pools, np.arange(P)], [*ceilings, p.pool_cap.astype(float)],
                                                            [*losses, np.zeros(P)], [*gains, np.zeros(P)]))
    order = np.lexsort((ceiling, pool))
    pool, ceiling, loss, gain = pool[order], ceiling[order], loss[order], gain[order]
    here = level[pool]
    start = np.searchsorted(pool, np.arange(P + 1))
    lost = np.concatenate([[0.0], np.cumsum(loss)])  # lost[i] - lost[start[q]]: pool q's pairs before i
    won = np.concatenate([[0.0], np.cumsum(gain)])  # a lowering admits the pairs from `below` up to `now`
    # The option at each pair's ceiling; `below`: the first of the pool's pairs not under it (ties within tolerances.LOAD join)
    at = np.arange(len(pool))
    below = np.maximum.accumulate(np.where((at == start[pool]) | (np.diff(ceiling, prepend=-np.inf) > tolerances.LOAD), at, 0))
    now = (start[:-1] + np.add.reduceat((ceiling < here - tolerances.LOAD).astype(np.int64), start[:-1]))[pool]
    change = np.where(ceiling > here, lost[below] - lost[now] - price[pool] * (ceiling - here),
                      price[pool] * (here - ceiling) - (won[now] - won[below]))
    change[(np.abs(ceiling - here) <= tolerances.LOAD) | (ceiling < p.used[pool])] = 0.0
    best = np.lexsort((at, change, pool))[start[:-1]]  # each pool's least change, its lowest level among ties
    out = [(float(change[i]), int(pool[i]), float(ceiling[i])) for i in best.tolist() if change[i] < 0]
    out.sort()
    return out


def assign_at(p: BatchProblem, lists: list[Shortlist], level: np.ndarray, pool_price: np.ndarray,
              penalty: float) -> greedy.State:
    """An assignment under these levels: each pool starts capped at its level, so a batch may use it only if its
    ceiling there allows that much load. Batches with one clearly cheapest priced target take it; the others, and
    every batch whose cheapest target is on a pool they would overfill together, are placed by rounding a
    transportation LP over their LP_OPTIONS cheapest targets (largest flow first); past LP_BATCHES of them, those
    whose next option costs most more go first, each to its cheapest target that fits. Whatever does not fit then
    takes the cheapest target that fits among all of its own."""
    return _assign(p, lists, level, _LevelChoices(p, lists, level, pool_price, penalty), penalty)


def _assign(p: BatchProblem, lists: list[Shortlist], level: np.ndarray, view: _LevelChoices,
            penalty: float) -> greedy.State:
    """`assign_at` from the view at its levels and prices."""
    state = greedy.fresh_state(p)
    state.cap = np.minimum(state.cap, level)
    crowd = p.used.astype(float).copy()
    for s, k, takes in zip(lists, view.first, view.takes):
        b = np.flatnonzero(takes)
        np.add.at(crowd, s.pool[b, k[b]], s.load[b, k[b]])
    crowded = crowd > level + tolerances.LOAD
    keys = []
    for j, (s, k, value, second, takes) in enumerate(zip(lists, view.first, view.value, view.second, view.takes)):
        if not s.pool.shape[1]:  # a model no pool serves
            continue
        b = np.arange(len(k))
        clear = takes & (second > value) & ~crowded[s.pool[b, k]]
        for r in np.flatnonzero(clear).tolist():
            greedy.place_first(p, s.part, state, int(s.part.rows[r]), r, [int(s.col[r, k[r]])])
        r = np.flatnonzero(takes & (state.target[s.part.rows] < 0))  # the unclear, and the clear that did not fit
        keys.append((second[r] - value[r], np.full(len(r), j), r))
    if keys:
        regret, js, rows = (np.concatenate(x) for x in zip(*keys))
        order = np.lexsort((rows, js, -regret))
        cut = max(0, len(order) - LP_BATCHES)
        for i in order[:cut].tolist():  # too many for the LP: the surest go first, each to its cheapest that fits
            j, r = int(js[i]), int(rows[i])
            priced = view.priced[j][r]
            ks = np.argsort(priced, kind="stable")
            s = lists[j]
            greedy.place_first(p, s.part, state, int(s.part.rows[r]), r, s.col[r, ks[np.isfinite(priced[ks])]].tolist())
        _round(p, lists, state, view, [(int(js[i]), int(rows[i])) for i in order[cut:].tolist()], penalty)
    state.cap = _real_caps(p, lists, state)
    for s in lists:  # what found no room at the levels: the cheapest target that fits now, among all of its own
        part = s.part
        unplaced_cost = penalty * p.weight[part.rows]
        fits_alone = part.masked()[0].min(axis=1, initial=np.inf) < unplaced_cost
        left = np.flatnonzero((state.target[part.rows] < 0) & fits_alone)
        if not len(left):
            continue
        priced = greedy.priced_cost(part, view.price, s.cable_price, left)
        for r, row in zip(left.tolist(), priced):
            greedy.place_cheapest(p, part, state, int(part.rows[r]), r, row)
    return state


def _real_caps(p: BatchProblem, lists: list[Shortlist], state: greedy.State) -> np.ndarray:
    """Each pool's cap without its searched level: capacity and the ceilings of what it holds. A level is the
    search's device for choosing which batches a pool serves; once they are placed, a batch that fits under the
    real caps may still go there (else it would stay unplaced at full penalty beside room that keeps every rule)."""
    cap = p.pool_cap.astype(float).copy()
    for s in lists:
        part = s.part
        r = np.flatnonzero(state.target[part.rows] >= 0)
        k = state.target[part.rows[r]] - p.offset[part.m]
        np.minimum.at(cap, part.pool[k], part.ceiling[r, k])
    return cap


def _round(p: BatchProblem, lists: list[Shortlist], state: greedy.State, view: _LevelChoices,
           undecided: list[tuple[int, int]], penalty: float) -> None:
    """Place `undecided` by rounding the transportation LP over the room `state` leaves (those it cannot place stay
    unplaced). Units are output-equivalent tokens, so the LP's penalty per unit is the objective's."""
    if not undecided:
        return
    G, T, C = len(undecided), p.n_targets, len(p.cable_free)
    j_of = np.array([j for j, _ in undecided])
    r_of = np.array([r for _, r in undecided])
    supply = np.zeros(G)
    cost, load = np.full((G, T), np.inf), np.zeros((G, T))
    gbps, use = np.zeros(G), np.zeros((G, T, C), bool)
    for j in np.unique(j_of).tolist():
        s, at = lists[j], np.flatnonzero(j_of == j)
        part, r = s.part, r_of[at]
        priced = view.priced[j][r]
        width = min(LP_OPTIONS, priced.shape[1])
        ns = np.argpartition(priced, width - 1, axis=1)[:, :width] if width < priced.shape[1] else \
            np.broadcast_to(np.arange(priced.shape[1]), priced.shape)
        w = p.weight[part.rows[r]]
        supply[at] = w
        gbps[at] = part.gbps[r] / w
        rows = np.repeat(at, ns.shape[1])
        rr = np.repeat(r, ns.shape[1])
        ok = np.isfinite(priced[np.repeat(np.arange(len(r)), ns.shape[1]), ns.ravel()])
        kk = s.col[rr, ns.ravel()]
        rows, kk, rr = rows[ok], kk[ok], rr[ok]
        cols = kk + p.offset[part.m]
        cost[rows, cols] = part.cost[rr, kk] / p.weight[part.rows[rr]]
        load[rows, cols] = part.load[rr, kk] / p.weight[part.rows[rr]]
        if C:
            use[rows, cols] = part.cables[part.region[rr], kk]
    room = np.maximum(state.cap - state.load, 0.0)
    lp = transport.solve(transport.TransportProblem(supply, cost, load, p.pool, room, use, gbps,
                                                    np.maximum(state.cable_room, 0.0), penalty), LP_PARAMETERS)
    share = lp.flow / supply[:, None]
    order = np.argsort(-share.max(axis=1), kind="stable")
    for g in order.tolist():
        j, r = undecided[g]
        part = lists[j].part
        ts = np.flatnonzero(share[g] > tolerances.RELATIVE)
        ts = ts[np.argsort(-share[g, ts], kind="stable")]
        greedy.place_first(p, part, state, int(part.rows[r]), r, (ts - p.offset[part.m]).tolist())
