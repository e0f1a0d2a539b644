"""The joint solve for large instances: priced by a group LP, assigned greedily at those prices, repaired by CP-SAT.

1. price: a transportation LP over coarse groups of nearly interchangeable batches (model, answer length, latency
   tolerance, data class: hundreds of rows, not millions of pairs) prices pool capacity and cable bandwidth;
2. bound: at those prices, Lagrangian duality evaluated batch by batch gives a lower bound on the objective of any
   assignment that respects capacity and cables (so also of any that respects ceilings too), whatever the grouping;
3. assign: batches with few options first, then from the most latency-tolerant to the least, each takes its
   cheapest target at those prices where the pool has room under its capacity and every ceiling on it (its own
   included) and the cables have bandwidth;
4. repair: batches that found no room although they fit alone are re-packed with CP-SAT together with the batches
   on the pools where they come closest to fitting, under a deterministic work budget;
5. tighten: subgradient steps on the pool prices raise the bound; the greedy (and repair) runs again at the mean
   prices of those steps, and the cheaper assignment is kept;
6. unblock (unblock.py): local search that lifts the caps a few latency-tight batches put on priced pools.
Steps 5 and 6 are sized by the time limit as counts, never by the clock, so the same input gives the same answer.
The running state (`_State`) and `place_first` are shared with the one-at-a-time baselines.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from scheduler.engine import cpsat, transport
from scheduler.engine.request import Reason

if TYPE_CHECKING:
    from scheduler.engine.batch import Problem

TOLERANCE_BINS = (0.3, 0.5, 0.7, 0.8, 0.9)  # the pricing LP groups batches by the utilization their SLO tolerates
HOLD_BIN = 1.0  # ... and by answer length: log2 of the seconds a batch holds its accelerators, in steps of this
FEW_OPTIONS = 12  # batches with at most this many feasible targets are placed first
REPAIR_SHARE = 0.25  # of the time limit, in CP-SAT deterministic time, for re-packing around unplaced batches
MAX_REPAIRS = 200  # unplaced batches the repair looks at in one re-pack
REPAIR_ROUNDS = 3
REPAIR_POOLS = 3  # pools re-packed around each
REPACK_OPTIONS = 3  # targets outside the re-packed pools each batch may move to
BOUND_STEPS = 20  # subgradient steps on the pool prices that tighten the Lagrangian bound after the assignment,
QUICK_STEPS = 5  # or this many when the time limit is under RETRY_EVERY_S (a router's hot path)
RETRY_EVERY_S = 0.5  # the greedy assigns again at the ascent's prices, once per this much of the time limit
UNBLOCK_ROUNDS, UNBLOCK_EVERY_S = 10, 0.2  # rounds of unblock.py's local search: at most, one per this much time
UNBLOCK_ALL_SHARE = 1e-3  # when unblocking the best assignment saves this share of its cost, unblock the rest too
RANKED = 16  # targets ranked up front per batch in the greedy; a batch that needs more ranks the rest itself
CHUNK = 256  # queued batches settled at once while they do not compete for the last room ...
MIN_RUN, ONE_BY_ONE = 8, 32  # ... and when fewer than MIN_RUN in a row do, the next ONE_BY_ONE go one by one


@dataclass
class _Model:
    """One model's part of the large solve: dense (B_m, T_m) arrays, infeasible pairs masked by `ok`."""

    m: str
    rows: np.ndarray
    pool: np.ndarray  # (T_m,) pool index
    ok: np.ndarray
    cost: np.ndarray
    load: np.ndarray
    theta: np.ndarray
    gbps: np.ndarray  # (B_m,)
    cables: np.ndarray  # (R, T_m, C) route crosses cable, by region
    region: np.ndarray  # (B_m,)
    _crossed: dict = field(default_factory=dict, repr=False)
    _masked: tuple | None = field(default=None, repr=False)

    def masked(self) -> tuple[np.ndarray, np.ndarray]:
        """(cost, load) with infeasible pairs at (inf, 0), so that pricing them needs no mask: built once, since
        the bound's ascent and the greedy price the same pairs again and again."""
        if self._masked is None:
            self._masked = (np.where(self.ok, self.cost, np.inf), np.where(self.ok, self.load, 0.0))
        return self._masked

    def crossed(self, region: int) -> list[tuple[int, ...]]:
        """Per target, the cables its route from `region` crosses, as Python tuples: the greedy's inner loop
        checks them one by one instead of masking a (C,) array per candidate."""
        out = self._crossed.get(region)
        if out is None:
            ks, cs = np.nonzero(self.cables[region])
            cuts = np.searchsorted(ks, np.arange(self.cables.shape[1] + 1)).tolist()
            cs = cs.tolist()
            out = [tuple(cs[a:b]) for a, b in zip(cuts[:-1], cuts[1:])]
            self._crossed[region] = out
        return out


@dataclass
class _State:
    """The greedy's running assignment: per pool its load, its cap (capacity and ceilings) and its batches."""

    target: np.ndarray
    load: np.ndarray
    cap: np.ndarray
    cable_room: np.ndarray
    members: list[list[int]]
    keep_promises: bool = True  # False: a placement does not lower its pool's cap (later ones may break it)


def parts_of(p: Problem) -> list[_Model]:
    """Each model's dense arrays, as the large solve and the baselines work on them."""
    parts = []
    for m in p.models:
        mt = p.cat.by_model[m]
        e = p.est[m]
        parts.append(_Model(m, p.rows[m], mt.pool, p.reason[m] == Reason.OK, e.cost_cny, e.load, p.theta[m],
                            e.gbps, p.cat.targets_view(m).cables, p.region[p.rows[m]]))
    return parts


def fresh_state(p: Problem) -> _State:
    """Nothing placed yet: pools at today's load and cap, cables at today's room."""
    return _State(np.full(len(p.batches), -1, dtype=np.int64), p.used.astype(float).copy(),
                  p.pool_cap.astype(float).copy(), p.cable_free.astype(float).copy(), [[] for _ in p.pool_cap])


def solve(p: Problem, penalty: float, time_limit_s: float) -> tuple[np.ndarray, str, float]:
    from scheduler.engine.batch import objective_of  # batch imports this module

    parts = parts_of(p)
    cheapest = _uncontended(p, parts, penalty)
    if cheapest is not None:  # every batch fits at its cheapest target: optimal, no pricing needed
        return cheapest, "OPTIMAL", _capacity_free(p, parts, penalty)
    prices = _price(p, parts, penalty)
    bound = _lagrangian(p, parts, penalty, prices.pool_price, prices.cable_price)[0]
    state = _greedy(p, parts, prices)
    _repair(p, parts, state, penalty, time_limit_s)
    upper = objective_of(p, state.target, penalty)
    floor = _capacity_free(p, parts, penalty)
    if upper <= floor + 1e-12 * abs(floor):
        # Every batch got its cheapest target as if capacity were unlimited: nothing can do better.
        return state.target, "OPTIMAL", floor
    steps = BOUND_STEPS if time_limit_s >= RETRY_EVERY_S else min(BOUND_STEPS, QUICK_STEPS)
    tightened, samples = _tighten(p, parts, penalty, prices, bound, upper, steps)
    # Prices from the ascent are nearer the LP's optimal duals than the group LP's, and the greedy at them often
    # assigns better (10k batches: 0.4 % cheaper on the default topology, 0.1 % on 200 sites).
    # A retry costs about one greedy, so a tight time limit skips it (a count, not a clock: deterministic).
    samples = samples[:int(time_limit_s / RETRY_EVERY_S)]
    candidates = [state]
    for pool_price in samples:
        retry = _greedy(p, parts, replace(prices, pool_price=pool_price))
        _repair(p, parts, retry, penalty, time_limit_s / (2 * len(samples)))
        candidates.append(retry)
    rounds = min(UNBLOCK_ROUNDS, int(time_limit_s / UNBLOCK_EVERY_S))
    best = _unblocked_best(p, parts, prices.pool_price, penalty, candidates, rounds)
    return best.target, "FEASIBLE", max(bound, tightened)


def _unblocked_best(p: Problem, parts: list[_Model], pool_price: np.ndarray, penalty: float,
                    candidates: list[_State], rounds: int) -> _State:
    """Run unblock.py's local search on the cheapest candidate; when that saves >= UNBLOCK_ALL_SHARE (ceilings
    bind, and which assignment unblocks best is not the one that started best), on the others too. The cheapest
    after that wins (the earlier among equals)."""
    from scheduler.engine import unblock  # it builds on this module's moves
    from scheduler.engine.batch import assigned_cost, objective_of

    cost = [objective_of(p, c.target, penalty) for c in candidates]
    first = min(range(len(candidates)), key=cost.__getitem__)
    order = [first] + [i for i in range(len(candidates)) if i != first]
    where = where_of(parts)
    saved = unblock.unblock(p, parts, candidates[first], where, pool_price, penalty, rounds)
    if saved < UNBLOCK_ALL_SHARE * assigned_cost(p, candidates[first].target):
        return candidates[first]
    for i in order[1:]:
        unblock.unblock(p, parts, candidates[i], where, pool_price, penalty, rounds)
    return min((candidates[i] for i in order), key=lambda c: objective_of(p, c.target, penalty))


def _uncontended(p: Problem, parts: list[_Model], penalty: float) -> np.ndarray | None:
    """Each batch at its cheapest feasible target (lowest index among ties), if together they fit every pool's
    capacity and ceilings and every cable; else None. (Batches whose penalty is cheaper stay unplaced.)"""
    target = np.full(len(p.batches), -1, dtype=np.int64)
    load = p.used.astype(float).copy()
    floor = p.pool_cap.astype(float).copy()
    cable = np.zeros(len(p.cable_free))
    for part in parts:
        if not part.ok.shape[1]:
            continue
        cost = part.masked()[0]
        k = np.argmin(cost, axis=1)
        r = np.flatnonzero(cost[np.arange(len(k)), k] < penalty * p.weight[part.rows])
        k = k[r]
        target[part.rows[r]] = p.offset[part.m] + k
        q = part.pool[k]
        load += np.bincount(q, weights=part.load[r, k], minlength=len(load))
        np.minimum.at(floor, q, part.theta[r, k])
        if len(cable):
            cable += part.gbps[r] @ part.cables[part.region[r], k]
    if (load > floor + 1e-9).any() or (cable > p.cable_free + 1e-12).any():
        return None
    return target


def _capacity_free(p: Problem, parts: list[_Model], penalty: float) -> float:
    """Each batch at its cheapest feasible target or the penalty, capacity aside: a lower bound on any assignment."""
    return sum(float(np.minimum(part.masked()[0].min(axis=1, initial=np.inf), penalty * p.weight[part.rows]).sum())
               for part in parts)


def where_of(parts: list[_Model]) -> dict[int, tuple[int, int]]:
    """Batch index -> (its part, its row in the part)."""
    return {i: (j, r) for j, part in enumerate(parts) for r, i in enumerate(part.rows.tolist())}


def _tolerance(p: Problem, part: _Model, score: np.ndarray) -> np.ndarray:
    """(B_m,) the utilization each batch tolerates on its best target by `score`."""
    best = np.argmin(np.where(part.ok, score, np.inf), axis=1)
    b = np.arange(len(part.rows))
    return part.theta[b, best] / p.cat.pool_count[part.pool][best]


def _price(p: Problem, parts: list[_Model], penalty: float) -> transport.TransportSolution:
    """The pricing LP over coarse groups (model, answer length, latency tolerance, data class): per unit of
    output-equivalent token, each group's mean cost and load over the members that can use the target, and the
    share of its traffic whose route crosses each cable. Only its prices are used, so the grouping may be coarse:
    the bound is evaluated batch by batch. (Answer length sets how long a batch holds its accelerators, so how much
    capacity a token costs; regions differ mostly in transit, which is small next to energy and amortization.)"""
    cat = p.cat
    T, C, R = p.n_targets, len(cat.cables), len(cat.regions)
    blocks = []
    for part in parts:
        rows = np.flatnonzero(part.ok.any(axis=1))
        if not len(rows):
            continue
        hold = p.est[part.m].hold_s[rows]
        dc = p.arrays[part.m].data_class_index
        dc = dc[rows] if dc is not None else np.fromiter(
            (cat.data_class_index[p.batches[i].data_class] for i in part.rows[rows]), np.int64, len(rows))
        key = np.column_stack([np.floor(np.log2(hold) / HOLD_BIN),
                               np.digitize(_tolerance(p, part, part.cost)[rows], TOLERANCE_BINS), dc])
        _, group = np.unique(key, axis=0, return_inverse=True)
        group = group.reshape(-1)
        G = int(group.max()) + 1
        w = p.weight[part.rows[rows]]
        order = np.argsort(group, kind="stable")
        starts = np.searchsorted(group[order], np.arange(G))  # every group has members
        ok = part.ok[rows][order]
        sel = rows[order]
        sums = {}
        for name, arr in (("cost", part.cost[sel]), ("load", part.load[sel]),
                          ("w", np.broadcast_to(w[order, None], ok.shape))):
            sums[name] = np.add.reduceat(np.where(ok, arr, 0.0), starts, axis=0)
        off = p.offset[part.m]
        cols = slice(off, off + ok.shape[1])
        cost = np.full((G, T), np.inf)
        load = np.zeros((G, T))
        with np.errstate(invalid="ignore", divide="ignore"):
            some = sums["w"] > 0
            cost[:, cols] = np.where(some, sums["cost"] / sums["w"], np.inf)
            load[:, cols] = np.where(some, sums["load"] / sums["w"], 0.0)
        supply = np.bincount(group, weights=w, minlength=G)
        gbps = np.bincount(group, weights=part.gbps[rows], minlength=G) / supply
        cable_use = np.zeros((G, T, C))
        if C:
            spread = np.zeros((G, R))
            np.add.at(spread, (group, part.region[rows]), w)
            spread /= supply[:, None]
            cable_use[:, cols] = np.einsum("gr,rtc->gtc", spread, part.cables.astype(float))
        blocks.append((supply, cost, load, gbps, cable_use))
    if not blocks:
        return transport.TransportSolution("OPTIMAL", np.zeros((0, T)), np.zeros(0), 0.0, 0.0,
                                           np.zeros(len(p.pool_cap)), np.zeros(C))
    supply, cost, load, gbps, cable_use = (np.concatenate(x) for x in zip(*blocks))
    return transport.solve(transport.TransportProblem(supply, cost, load, p.pool, np.maximum(p.pool_free, 0.0),
                                                      cable_use, gbps, p.cable_free, penalty))


def _priced_cost(part: _Model, pool_price: np.ndarray, cable_price: np.ndarray) -> np.ndarray:
    """(B_m, T_m) each pair's cost plus the capacity and bandwidth it uses at these prices; inf if infeasible."""
    cost, load = part.masked()
    rc = np.multiply(load, pool_price[part.pool][None, :])
    rc += cost
    if len(cable_price) and np.any(cable_price > 0):
        rc += part.gbps[:, None] * (part.cables @ cable_price)[part.region]
    return rc


def _lagrangian(p: Problem, parts: list[_Model], penalty: float, pool_price: np.ndarray,
                cable_price: np.ndarray, ceilings: bool = False) -> tuple[float, np.ndarray]:
    """Weak duality at these prices, batch by batch, and the pool load of the batches' priced choices.

    For any prices >= 0 on pool capacity and cable bandwidth, every batch pays its cheapest priced option (or the
    penalty), and the priced capacity is credited back: no assignment that respects capacity and cables (let alone
    ceilings too) costs less. Valid whatever the grouping that produced the prices. The load is the subgradient's
    use side. With `ceilings`, part of each pool's price also charges the capacity its batches' ceilings waste
    (_ceiling_charges), which only raises the value.
    """
    total = 0.0
    used = np.zeros(len(pool_price))
    firsts = []
    for part in parts:
        rc = _priced_cost(part, pool_price, cable_price)
        b = np.arange(len(part.rows))
        k = np.argmin(rc, axis=1) if rc.shape[1] else np.zeros(len(b), np.int64)
        pick = rc[b, k] if rc.shape[1] else np.full(len(b), np.inf)
        alone = penalty * p.weight[part.rows]
        total += float(np.minimum(pick, alone).sum())
        go = pick < alone
        np.add.at(used, part.pool[k[go]], part.load[b[go], k[go]])
        if ceilings and rc.shape[1] > 1:
            second = np.minimum(np.partition(rc, 1, axis=1)[:, 1], alone)
            firsts.append((part.pool[k[go]], part.theta[b[go], k[go]], (second - pick)[go]))
    total -= float(pool_price @ np.maximum(p.pool_free, 0.0))
    priced = cable_price > 0
    total -= float(cable_price[priced] @ np.maximum(p.cable_free[priced], 0.0))
    if firsts:
        total += _ceiling_charges(p, pool_price, *(np.concatenate(x) for x in zip(*firsts)))
    return total, used


def _ceiling_charges(p: Problem, pool_price: np.ndarray, pool: np.ndarray, theta: np.ndarray,
                     regret: np.ndarray) -> float:
    """What charging ceilings adds to the bound, for batches whose cheapest priced option is on `pool` with ceiling
    `theta` and whose next option costs `regret` more.

    If batch i runs on pool q, the pool's load stays under its ceiling: load_q + (cap_q - theta_i) x_i <= free_q is
    a valid row for each such pair. Moving a share a_i of the pool's price mu_q from its capacity row to these rows
    (sum of shares <= 1) leaves every batch's price of q's load as it was and charges batch i a_i mu_q (cap_q -
    theta_i) more on q: up to its regret that raises the bound by the same (beyond it the batch would move). Shares
    go to the largest wastes first, each up to its regret."""
    waste = p.pool_cap[pool] - theta
    mu = pool_price[pool]
    ok = (waste > 0) & (mu > 0) & (regret > 0)
    pool, waste, mu, regret = pool[ok], waste[ok], mu[ok], regret[ok]
    if not len(pool):
        return 0.0
    order = np.lexsort((-waste, pool))
    pool, waste, mu, regret = pool[order], waste[order], mu[order], regret[order]
    need = regret / (waste * mu)  # the share that makes the batch indifferent
    taken = np.cumsum(need)
    starts = np.searchsorted(pool, pool, side="left")
    before = taken[starts] - need[starts]  # shares given in this pool before its first batch: 0, per batch
    share = np.clip(1.0 - (taken - need - before), 0.0, need)
    return float((share * waste * mu).sum())


def _tighten(p: Problem, parts: list[_Model], penalty: float, s: transport.TransportSolution, bound: float,
             upper: float, steps: int) -> tuple[float, list[np.ndarray]]:
    """Polyak subgradient ascent on the pool prices from the LP's (cable prices kept): the group LP's prices are
    close to, not at, the best ones, and each step's Lagrangian value is itself a valid bound, so the best is kept.
    At the best prices, the ceiling charges are added (one more evaluation). Also returns prices for the greedy to
    try again: the mean of the ascent's iterates and the mean of its second half (the iterates zigzag around the
    optimal duals; their means settle nearer: on four 10k-batch instances one of the two always beat the best-bound
    and the last prices). `upper`: the objective of the assignment found, the Polyak target."""
    price, best, lam, seen, best_price = s.pool_price, bound, 1.0, [], s.pool_price
    free = np.maximum(p.pool_free, 0.0)
    for _ in range(steps):
        price = np.maximum(price, 0.0)
        seen.append(price)
        total, used = _lagrangian(p, parts, penalty, price, s.cable_price)
        if total >= best:  # (the first step, at the LP's prices, ties the bound it starts from)
            best, best_price = total, price
        else:
            lam /= 2
        g = used - free
        norm = float(g @ g)
        if norm <= 0 or upper <= total:
            break
        price = price + lam * (upper - total) / norm * g
    best = max(best, _lagrangian(p, parts, penalty, best_price, s.cable_price, ceilings=True)[0])
    if len(seen) < 2:
        return best, []
    return best, [np.mean(seen, axis=0), np.mean(seen[len(seen) // 2:], axis=0)]


def _greedy(p: Problem, parts: list[_Model], s: transport.TransportSolution) -> _State:
    """Batches with few options first, then from the most latency-tolerant to the least (so that a pool's cap only
    falls as it fills), each to its cheapest target at the LP's prices where the pool has room under its cap and
    every ceiling on it, its own included, and the route's cables have bandwidth."""
    state = fresh_state(p)
    keys, ranked = [], []
    for j, part in enumerate(parts):
        rc = _priced_cost(part, s.pool_price, s.cable_price)
        ranked.append(_Ranking(rc))
        nfeas = part.ok.sum(axis=1)
        rows = np.flatnonzero(nfeas)
        keys.append((nfeas[rows] > FEW_OPTIONS, -_tolerance(p, part, rc)[rows], part.rows[rows],
                     np.full(len(rows), j), rows))
    if not keys:
        return state
    few, tolerance, batch, part_of, row = (np.concatenate(x) for x in zip(*keys))
    order = np.lexsort((batch, tolerance, few))
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
            _place_cheapest(p, parts[j], state, i, r, ranked[j].rc[r])
        pos = stop
    return state


class _Queue:
    """The greedy's queue with each batch's RANKED cheapest targets (pool, load, ceiling, cables) as arrays, padded
    with -1 where a batch has fewer."""

    def __init__(self, p: Problem, parts: list[_Model], ranked: list[_Ranking], batch: np.ndarray,
                 part: np.ndarray, row: np.ndarray):
        n, C = len(batch), len(p.cable_free)
        self.batch, self.part, self.row = batch, part, row
        self.k = np.full((n, RANKED), -1, np.int64)  # target column within the part
        self.offset = np.zeros(n, np.int64)
        self.pool = np.zeros((n, RANKED), np.int64)
        self.load, self.theta = np.zeros((n, RANKED)), np.zeros((n, RANKED))
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
            self.theta[at] = m.theta[r[:, None], kk]
            self.gbps[at] = m.gbps[r]
            if C:
                self.cross[at] = m.cables[m.region[r][:, None], kk] & some[:, :, None]

    def run(self, state: _State, a: int, b: int) -> tuple[int, np.ndarray]:
        """From position a on, each batch's first ranked target that fits the state as it stands, and how many in a
        row would take exactly those one after the other (at most b - a): loads only rise and caps and cable room
        only fall along the run, so targets that did not fit at its start do not fit later either."""
        n = b - a
        pools, load, theta = self.pool[a:b], self.load[a:b], self.theta[a:b]
        fits = state.load[pools] + load <= np.minimum(state.cap[pools], theta) + 1e-9
        cross = self.cross[a:b]
        if cross.any():
            fits &= ~(cross & (state.cable_room + 1e-12 < self.gbps[a:b, None, None])).any(axis=2)
        choice = np.argmax(fits, axis=1)
        at = np.arange(n)
        ok = fits[at, choice]
        pool, ld, th = pools[at, choice], load[at, choice], theta[at, choice]
        used, col = np.unique(pool, return_inverse=True)
        added = np.zeros((n, len(used)))
        added[at, col] = np.where(ok, ld, 0.0)
        ceiling = np.full((n, len(used)), np.inf)
        ceiling[at, col] = th
        after = (state.load[used][None, :] + np.cumsum(added, axis=0))[at, col]
        limit = np.minimum(state.cap[used][None, :], np.minimum.accumulate(ceiling, axis=0))[at, col]
        ok &= after <= limit + 1e-9
        if cross.any():
            crossed = cross[at, choice]
            room = state.cable_room[None, :] - np.cumsum(crossed * self.gbps[a:b, None], axis=0)
            ok &= ~(crossed & (room < -1e-12)).any(axis=1)
        bad = np.flatnonzero(~ok)
        return (int(bad[0]) if len(bad) else n), choice

    def take(self, state: _State, a: int, choice: np.ndarray) -> None:
        """Place the batches from position a on at their `choice` (column into their ranked targets)."""
        n = len(choice)
        if not n:
            return
        at, rows = np.arange(n), slice(a, a + n)
        pool, load, theta = self.pool[rows][at, choice], self.load[rows][at, choice], self.theta[rows][at, choice]
        batch = self.batch[rows]
        state.target[batch] = self.offset[rows] + self.k[rows][at, choice]
        np.add.at(state.load, pool, load)  # in queue order, as one by one would add
        if state.keep_promises:
            np.minimum.at(state.cap, pool, theta)
        for i, q in zip(batch.tolist(), pool.tolist()):
            state.members[q].append(i)
        crossed = self.cross[rows][at, choice]
        if crossed.any():
            state.cable_room -= (crossed * self.gbps[rows, None]).sum(axis=0)


class _Ranking:
    """Each batch's RANKED cheapest feasible targets at the prices, in the order of a stable argsort (wide parts:
    one partition over the whole matrix, then only those sorted); a batch that finds none of them with room takes
    the cheapest that fits among all (_place_cheapest), the same target a full ranking would reach."""

    def __init__(self, rc: np.ndarray):
        self.rc = rc
        B, T = rc.shape
        self.nfeas = np.isfinite(rc).sum(axis=1)
        if T <= 2 * RANKED:
            self.full = np.argsort(rc, axis=1, kind="stable")
            self.head = None
            return
        kth = np.partition(rc, RANKED - 1, axis=1)[:, RANKED - 1]
        r, k = np.nonzero((rc <= kth[:, None]) & np.isfinite(rc))  # ties at the kth value all join the head
        order = np.lexsort((rc[r, k], r))  # by row, then value; lexsort is stable and nonzero gave k ascending
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


def _place_cheapest(p: Problem, part: _Model, state: _State, i: int, r: int, rc: np.ndarray) -> bool:
    """Take the cheapest target by `rc` that fits (the lowest index among ties: a stable argsort's first that
    fits), checking all at once: for the batches a run of the greedy could not settle."""
    q = part.pool
    fits = part.ok[r] & (state.load[q] + part.load[r] <= np.minimum(state.cap[q], part.theta[r]) + 1e-9)
    blocked = state.cable_room + 1e-12 < part.gbps[r]  # cables without room for this batch
    if blocked.any():
        fits &= ~part.cables[part.region[r]][:, blocked].any(axis=1)
    score = np.where(fits, rc, np.inf)
    k = int(np.argmin(score))
    if not np.isfinite(score[k]):
        return False
    _take(p, part, state, i, r, k)
    return True


def _fits(p: Problem, part: _Model, state: _State, r: int, k: int) -> bool:
    q = int(part.pool[k])
    if state.load[q] + part.load[r, k] > min(state.cap[q], part.theta[r, k]) + 1e-9:
        return False
    crossing = part.cables[part.region[r], k]
    return not (crossing.any() and np.any(state.cable_room[crossing] + 1e-12 < part.gbps[r]))


def _take(p: Problem, part: _Model, state: _State, i: int, r: int, k: int) -> None:
    q = int(part.pool[k])
    state.target[i] = p.offset[part.m] + k
    state.load[q] += part.load[r, k]
    if state.keep_promises:
        state.cap[q] = min(state.cap[q], part.theta[r, k])
    state.members[q].append(i)
    gbps = part.gbps[r]
    room = state.cable_room
    for c in part.crossed(int(part.region[r]))[k]:
        room[c] -= gbps


def place_first(p: Problem, part: _Model, state: _State, i: int, r: int, candidates: Iterable[int]) -> bool:
    """Take the first of `candidates` (target columns, best first) that fits; False if none does."""
    load_r, theta_r, pool = part.load[r], part.theta[r], part.pool
    crossed = part.crossed(int(part.region[r]))
    gbps = part.gbps[r]
    load, cap, room = state.load, state.cap, state.cable_room
    for k in candidates:
        q = pool[k]
        limit = cap[q]
        ceiling = theta_r[k]
        if load[q] + load_r[k] > (limit if limit < ceiling else ceiling) + 1e-9:
            continue
        if any(room[c] + 1e-12 < gbps for c in crossed[k]):
            continue
        _take(p, part, state, i, r, k)
        return True
    return False


def _repair(p: Problem, parts: list[_Model], state: _State, penalty: float, time_limit_s: float) -> None:
    """Batches the greedy could not fit although each fits alone: re-pack with CP-SAT the pools where they come
    closest to fitting, together with the batches on them (which may move to their cheapest targets that have room
    now), so as to make room. A re-pack is applied only if it costs less than what it replaces (unplaced weight at
    the penalty), so repairs never make the assignment worse."""
    where = where_of(parts)
    budget = time_limit_s * REPAIR_SHARE
    for _ in range(REPAIR_ROUNDS):
        left = [i for i in np.flatnonzero(state.target < 0).tolist()
                if i in where and parts[where[i][0]].ok[where[i][1]].any()][:MAX_REPAIRS]
        if not left or budget <= 0:
            return
        pools: dict[int, None] = {}
        for i in left:
            j, r = where[i]
            part = parts[j]
            ks = np.flatnonzero(part.ok[r])
            q_of = part.pool[ks]
            # How much load would have to leave each pool for this batch to fit there.
            excess = state.load[q_of] + part.load[r, ks] - np.minimum(p.pool_cap[q_of], part.theta[r, ks])
            pools.update(dict.fromkeys(q_of[np.argsort(excess, kind="stable")][:REPAIR_POOLS].tolist()))
        budget -= _repack(p, parts, where, state, left, list(pools), penalty, budget / 2)


def _repack(p: Problem, parts: list[_Model], where: dict, state: _State, extra: list[int], pools: list[int],
            penalty: float, det_limit: float) -> float:
    """CP-SAT over the batches on `pools` plus `extra`: each may take any of its targets on those pools, its
    current target, or one of its REPACK_OPTIONS cheapest other targets that have room now. Applied only if it
    lowers the objective. Pools outside keep their caps (a batch leaving one never raises it: conservative)."""
    batches = sorted(set(extra) | {i for q in pools for i in state.members[q]})
    bs, ts, cs, ls, hs = [], [], [], [], []
    for i in batches:
        j, r = where[i]
        part = parts[j]
        off = p.offset[part.m]
        ks = np.flatnonzero(part.ok[r])
        mine = ks[np.isin(part.pool[ks], pools)]
        others = ks[~np.isin(part.pool[ks], pools)]
        others = others[np.argsort(part.cost[r, others], kind="stable")]
        fitting = [k for k in others.tolist() if _fits(p, part, state, r, k)][:REPACK_OPTIONS]
        cur = int(state.target[i]) - off
        chosen = sorted(set(mine.tolist()) | set(fitting) | ({cur} if state.target[i] >= 0 else set()))
        for k in chosen:
            bs.append(i)
            ts.append(off + k)
            cs.append(part.cost[r, k])
            ls.append(part.load[r, k])
            hs.append(part.theta[r, k])
    b, t = np.array(bs, dtype=np.int64), np.array(ts, dtype=np.int64)
    c, load, theta = np.array(cs, dtype=float), np.array(ls, dtype=float), np.array(hs, dtype=float)
    # Every placed batch of the re-pack sits on `pools`: those start as if they were empty; every other pool
    # keeps its load and its cap (ceilings of its batches included).
    base, cap, cable_room = state.load.copy(), state.cap.copy(), state.cable_room.copy()
    for q in pools:
        base[q], cap[q] = p.used[q], p.pool_cap[q]
    inside = set(pools)
    before = 0.0
    for i in batches:
        part, r, k = _pair_of(parts, where, state, p, i)
        if k < 0:
            before += penalty * p.weight[i]
            continue
        before += part.cost[r, k]
        if int(part.pool[k]) not in inside:  # an extra placed elsewhere: its load leaves that pool's base
            base[part.pool[k]] -= part.load[r, k]
        crossing = part.cables[part.region[r], k]
        cable_room[crossing] += part.gbps[r]
    hint = state.target[np.array(batches)]
    target = np.full(len(p.batches), -1, dtype=np.int64)
    status, _, spent = cpsat.solve(p, b, t, c, load, theta, np.array(batches), base, cap, cable_room, penalty, det_limit,
                               target, hint=hint)
    if status not in ("OPTIMAL", "FEASIBLE"):
        return spent
    chosen = target[b] == t
    after = float(c[chosen].sum()) + penalty * float(sum(p.weight[i] for i in batches if target[i] < 0))
    if after > before - 1e-12:
        return spent
    for i in batches:  # take them all out, then put them back where CP-SAT says
        if state.target[i] >= 0:
            _remove(p, parts, where, state, i)
    for q in pools:
        state.cap[q] = p.pool_cap[q]
    for i in batches:
        if target[i] >= 0:
            j, r = where[i]
            _take(p, parts[j], state, i, r, int(target[i]) - p.offset[parts[j].m])
    return spent


def _pair_of(parts: list[_Model], where: dict, state: _State, p: Problem, i: int) -> tuple[_Model, int, int]:
    """The batch's part, row and current target column (-1 if unplaced)."""
    j, r = where[i]
    part = parts[j]
    t = int(state.target[i])
    return part, r, (t - p.offset[part.m] if t >= 0 else -1)


def _remove(p: Problem, parts: list[_Model], where: dict, state: _State, i: int) -> None:
    part, r, k = _pair_of(parts, where, state, p, i)
    q = int(part.pool[k])
    state.load[q] -= part.load[r, k]
    state.members[q].remove(i)
    crossing = part.cables[part.region[r], k]
    if crossing.any():
        state.cable_room[crossing] += part.gbps[r]
    state.target[i] = -1
