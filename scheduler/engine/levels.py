"""Pool levels: choose how full each pool may run, then assign at those levels with an LP.

A pool runs no fuller than the least ceiling of the batches on it, so an assignment implies a *level* per pool. Once
the levels are fixed the ceilings are plain filters (a batch may use pool q only if its ceiling there is >= q's
level) and what is left is a generalized assignment whose LP is nearly integral. So:

1. levels: start from the levels of a given assignment; price the fixed-level problem by subgradient ascent on its
   Lagrangian (pool capacity = level); estimate, from those prices, what moving one pool's level would gain (raise:
   the capacity freed at the pool's price, minus what the batches whose ceiling falls below the new level lose by
   moving to their next option; lower: the reverse), and accept a move when the fixed-level Lagrangian says the
   problem got cheaper;
2. assign: batches whose cheapest priced target is clear take it; the others (and all those that would crowd a pool)
   go to a transportation LP over their LP_OPTIONS cheapest targets, which is rounded in the order of its flows
   (past LP_BATCHES of them, the surest are placed greedily first and the LP takes the rest).

On the default topology's 10k batches this lowered the cost 0.5 % below the greedy plus local search (the moves:
lift a pool capped at 90 % by a cluster of tight batches to full capacity, move those batches elsewhere; admit
tight batches to two small pools). The result is kept only if cheaper, and every placement goes through the same
fit rule as the greedy (capacity, every ceiling, cables).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from scheduler.engine import ascent, assign, transport

if TYPE_CHECKING:
    from scheduler.engine.batch import Problem

START_STEPS = 20  # subgradient steps pricing the starting levels
MOVE_STEPS = 10  # ... and each candidate move, warm-started
MOVES = 8  # level moves accepted, at most
TRIES = 4  # candidate moves evaluated per accepted one, the best estimated first
CANDIDATES = 64  # levels considered per pool (quantiles of its pairs' ceilings, and its capacity)
LP_OPTIONS = 4  # targets per batch in the assignment LP
LP_BATCHES = 4000  # batches the LP places: those whose next option costs least more than their first
# Dual simplex from a slack basis without presolve: 1.6-1.7x faster than GLOP's defaults on these LPs
LP_PARAMETERS = "use_dual_simplex: true, use_preprocessing: false"


def levels_of(p: Problem, parts: list[assign.Part], target: np.ndarray) -> np.ndarray:
    """(P,) each pool's level under this assignment: the least ceiling on it, or its capacity."""
    level = p.pool_cap.astype(float).copy()
    for part in parts:
        t = target[part.rows]
        r = np.flatnonzero(t >= 0)
        k = t[r] - p.offset[part.m]
        np.minimum.at(level, part.pool[k], part.theta[r, k])
    return np.maximum(level, p.used)


def relevel(p: Problem, parts: list[assign.Part], target: np.ndarray, pool_price: np.ndarray,
            cable_price: np.ndarray, penalty: float, upper: float,
            moves: int = MOVES) -> tuple[assign.State, np.ndarray]:
    """Search the levels from those of `target` (objective `upper`), then assign at the levels found; also returns
    each batch's value at those levels and the prices found for them (`values`)."""
    level = levels_of(p, parts, target)
    value, price = _ascent(p, parts, penalty, level, pool_price, cable_price, upper, START_STEPS)
    for _ in range(moves):
        view = _View(p, parts, level, price, cable_price, penalty)
        for _gain, q, new in _candidates(p, parts, level, price, view)[:TRIES]:
            trial = level.copy()
            trial[q] = new
            v, pr = _ascent(p, parts, penalty, trial, price, cable_price, upper, MOVE_STEPS)
            if v < value - 1e-9 * abs(value):
                level, value, price = trial, v, pr
                break
        else:
            break
    view = _View(p, parts, level, price, cable_price, penalty)
    return _assign(p, parts, level, view, penalty), view.values(p, parts, penalty)


def values(p: Problem, parts: list[assign.Part], level: np.ndarray, pool_price: np.ndarray, cable_price: np.ndarray,
           penalty: float) -> np.ndarray:
    """(B,) what each batch pays at these levels and prices: its cheapest priced target the levels allow, or the
    penalty. Near the LP's multipliers of the batches' rows, so a good start for hull.py's bound."""
    return _View(p, parts, level, pool_price, cable_price, penalty, second=False).values(p, parts, penalty)


class _View:
    """Per part at some prices: priced costs without and with the level filter, each batch's cheapest target under
    the filter, what it costs (or the penalty, if that is cheaper), and, with `second`, its next option's cost."""

    def __init__(self, p: Problem, parts: list[assign.Part], level: np.ndarray, pool_price: np.ndarray,
                 cable_price: np.ndarray, penalty: float, second: bool = True):
        self.raw, self.rc, self.first, self.value, self.second, self.go = [], [], [], [], [], []
        for part in parts:
            raw = assign.priced_cost(part, pool_price, cable_price)
            rc = np.where(part.theta >= level[part.pool][None, :] - 1e-9, raw, np.inf)
            alone = penalty * p.weight[part.rows]
            k = np.argmin(rc, axis=1) if rc.shape[1] else np.zeros(len(rc), np.int64)
            first = rc[np.arange(len(rc)), k] if rc.shape[1] else np.full(len(rc), np.inf)
            self.raw.append(raw)
            self.rc.append(rc)
            self.first.append(k)
            self.value.append(np.minimum(first, alone))
            self.go.append(first < alone)
            if second:
                nxt = np.partition(rc, 1, axis=1)[:, 1] if rc.shape[1] > 1 else np.full(len(rc), np.inf)
                self.second.append(np.minimum(nxt, alone))

    def values(self, p: Problem, parts: list[assign.Part], penalty: float) -> np.ndarray:
        """(B,) each batch's value (`values`); the penalty for a batch of a model no part holds."""
        out = penalty * p.weight.astype(float)
        for part, value in zip(parts, self.value):
            out[part.rows] = value
        return out


def _ascent(p: Problem, parts: list[assign.Part], penalty: float, level: np.ndarray, pool_price: np.ndarray,
            cable_price: np.ndarray, upper: float, steps: int) -> tuple[float, np.ndarray]:
    """Subgradient ascent on the pool prices of the fixed-level problem (cable prices kept): the best value and its
    prices."""
    from scheduler.engine.priced import _lagrangian  # priced imports this module

    run = ascent.polyak(lambda price: _lagrangian(p, parts, penalty, price, cable_price, level=level), pool_price,
                        np.maximum(level - p.used, 0.0), upper, steps)
    return run.best, run.price


def _candidates(p: Problem, parts: list[assign.Part], level: np.ndarray, price: np.ndarray,
                view: _View) -> list[tuple[float, int, float]]:
    """(estimated change, pool, new level) of the best move of each pool whose estimate is a saving, best first.

    Raising pool q's level from L to L' frees (L' - L) of capacity worth price_q each, and the batches whose ceiling
    on q is in [L, L') and whose choice was q move to their next option (their second-best priced cost). Lowering
    it gives up (L - L') at price_q and lets the batches with a ceiling in [L', L) take q if it is cheaper for them
    than what they have."""
    P = len(level)
    per_pool: list[list[tuple[np.ndarray, ...]]] = [[] for _ in range(P)]
    for part, raw, k, value, second, go in zip(parts, view.raw, view.first, view.value, view.second, view.go):
        if not part.ok.shape[1]:  # a model no pool serves
            continue
        chosen = np.where(go, part.pool[k], -1)
        for col, q in enumerate(part.pool.tolist()):
            r = np.flatnonzero(part.ok[:, col])
            on_q = chosen[r] == q
            per_pool[q].append((part.theta[r, col], np.where(on_q, second[r] - value[r], 0.0),
                                np.maximum(value[r] - raw[r, col], 0.0)))
    out = []
    for q in range(P):
        if not per_pool[q]:
            continue
        theta, loss, gain = (np.concatenate(x) for x in zip(*per_pool[q]))
        order = np.argsort(theta, kind="stable")
        theta, loss, gain = theta[order], loss[order], gain[order]
        here = level[q]
        gain = np.where(theta < here - 1e-9, gain, 0.0)  # only pairs the level now excludes can gain
        lost = np.concatenate([[0.0], np.cumsum(loss)])
        won = np.concatenate([[0.0], np.cumsum(gain)])
        options = np.unique(np.append(theta[theta >= p.used[q]], p.pool_cap[q]))
        if len(options) > CANDIDATES:
            options = np.unique(np.append(np.quantile(options, np.linspace(0.0, 1.0, CANDIDATES)), p.pool_cap[q]))
        below = np.searchsorted(theta, options - 1e-9)  # pairs with a ceiling under each option
        now = int(np.searchsorted(theta, here - 1e-9))
        change = np.where(options > here + 1e-9, lost[below] - lost[now] - price[q] * (options - here),
                          price[q] * (here - options) - (won[now] - won[below]))
        change[np.abs(options - here) <= 1e-9] = 0.0
        i = int(np.argmin(change))
        if change[i] < 0:
            out.append((float(change[i]), q, float(options[i])))
    out.sort()
    return out


def assign_at(p: Problem, parts: list[assign.Part], level: np.ndarray, pool_price: np.ndarray,
              cable_price: np.ndarray, penalty: float) -> assign.State:
    """An assignment under these levels: each pool starts capped at its level, so a batch may use it only if its
    ceiling there allows that much load. Batches with one clearly cheapest priced target take it; the others, and
    every batch whose cheapest target is on a pool they would overfill together, are placed by rounding a
    transportation LP over their LP_OPTIONS cheapest targets (largest flow first); past LP_BATCHES of them, those
    whose next option costs most more go first, each to its cheapest target that fits. Whatever does not fit then
    takes the cheapest target that does."""
    return _assign(p, parts, level, _View(p, parts, level, pool_price, cable_price, penalty), penalty)


def _assign(p: Problem, parts: list[assign.Part], level: np.ndarray, view: _View, penalty: float) -> assign.State:
    """`assign_at` from the view at its levels and prices."""
    state = assign.fresh_state(p)
    state.cap = np.minimum(state.cap, level)
    crowd = p.used.astype(float).copy()
    for part, k, go in zip(parts, view.first, view.go):
        b = np.flatnonzero(go)
        np.add.at(crowd, part.pool[k[b]], part.load[b, k[b]])
    crowded = crowd > level + 1e-9
    keys = []
    for j, (part, k, value, second, go) in enumerate(zip(parts, view.first, view.value, view.second, view.go)):
        if not part.ok.shape[1]:  # a model no pool serves
            continue
        clear = go & (second > value) & ~crowded[part.pool[k]]
        for r in np.flatnonzero(clear).tolist():
            assign.place_first(p, part, state, int(part.rows[r]), r, [int(k[r])])
        r = np.flatnonzero(go & (state.target[part.rows] < 0))  # the unclear, and the clear that did not fit
        keys.append((second[r] - value[r], np.full(len(r), j), r))
    regret, js, rows = (np.concatenate(x) for x in zip(*keys))
    order = np.lexsort((rows, js, -regret))
    cut = max(0, len(order) - LP_BATCHES)
    for i in order[:cut].tolist():  # too many for the LP: the surest go first, each to its cheapest that fits
        j, r = int(js[i]), int(rows[i])
        rc = view.rc[j][r]
        ks = np.argsort(rc, kind="stable")
        assign.place_first(p, parts[j], state, int(parts[j].rows[r]), r, ks[np.isfinite(rc[ks])].tolist())
    undecided = [(int(js[i]), int(rows[i])) for i in order[cut:].tolist()]
    _round(p, parts, state, view, undecided, penalty)
    for j, part in enumerate(parts):  # what found no room at the levels: the cheapest target that fits now
        alone = penalty * p.weight[part.rows]
        fits_alone = part.masked()[0].min(axis=1, initial=np.inf) < alone
        for r in np.flatnonzero((state.target[part.rows] < 0) & fits_alone).tolist():
            assign.place_cheapest(p, part, state, int(part.rows[r]), r, view.raw[j][r])
    return state


def _round(p: Problem, parts: list[assign.Part], state: assign.State, view: _View, undecided: list[tuple[int, int]],
           penalty: float) -> None:
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
        part, at = parts[j], np.flatnonzero(j_of == j)
        r = r_of[at]
        rc = view.rc[j][r]
        width = min(LP_OPTIONS, rc.shape[1])
        ks = np.argpartition(rc, width - 1, axis=1)[:, :width] if width < rc.shape[1] else \
            np.broadcast_to(np.arange(rc.shape[1]), rc.shape)
        w = p.weight[part.rows[r]]
        supply[at] = w
        gbps[at] = part.gbps[r] / w
        rows = np.repeat(at, ks.shape[1])
        cols, kk, rr = (ks + p.offset[part.m]).ravel(), ks.ravel(), np.repeat(r, ks.shape[1])
        ok = np.isfinite(rc[np.repeat(np.arange(len(r)), ks.shape[1]), kk])
        rows, cols, kk, rr = rows[ok], cols[ok], kk[ok], rr[ok]
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
        part = parts[j]
        ts = np.flatnonzero(share[g] > 1e-9)
        ts = ts[np.argsort(-share[g, ts], kind="stable")]
        assign.place_first(p, part, state, int(part.rows[r]), r, (ts - p.offset[part.m]).tolist())
