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
5. tighten: subgradient steps on the pool prices and a search over each priced cable's price raise the bound; the
   greedy (and repair) runs again at the mean prices of those steps, and the cheaper assignment is kept;
6. unblock (unblock.py): local search that lifts the caps a few latency-tight batches put on priced pools;
7. levels (levels.py), when the time limit allows for the instance's size, instead of step 5's retries: search how
   full each pool may run, and assign at those levels with an LP on each batch's shortlist (shortlist.py), then
   step 6 again; kept if cheaper;
8. hull (hull.py), with step 7: a bound that sees the ceilings, from the batches' values at the levels found (every
   target listed) or, beside step 7, at step 5's best prices (the lists leave targets out).
Steps 5 to 8 are sized by the time limit as counts, never by the clock, so the same input gives the same answer.
The greedy, its running state and its moves are in assign.py, shared with the baselines and unblock.py.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from scheduler.engine import ascent, assign, cpsat, hull, levels, shortlist, transport, unblock

if TYPE_CHECKING:
    from scheduler.engine.batch import Problem

TOLERANCE_BINS = (0.3, 0.5, 0.7, 0.8, 0.9)  # the pricing LP groups batches by the utilization their SLO tolerates
HOLD_BIN = 1.0  # ... and by answer length: log2 of the seconds a batch holds its accelerators, in steps of this
REPAIR_SHARE = 0.25  # of the time limit, in CP-SAT deterministic time, for re-packing around unplaced batches
MAX_REPAIRS = 200  # unplaced batches the repair looks at in one re-pack
REPAIR_ROUNDS = 3
REPAIR_POOLS = 3  # pools re-packed around each
REPACK_OPTIONS = 3  # targets outside the re-packed pools each batch may move to
BOUND_STEPS = 20  # subgradient steps on the pool prices that tighten the Lagrangian bound after the assignment,
QUICK_STEPS = 5  # or this many when the time limit is under RETRY_EVERY_S (a router's hot path)
CABLE_SHARES = (0.5, 0.25, 0.1, 0.05, 0.0)  # of its LP price, each priced cable's price is tried at
CABLE_STEPS = 5  # pool-price steps after a cable's price moved
RETRY_EVERY_S = 0.5  # the greedy assigns again at the ascent's prices, once per this much of the time limit
UNBLOCK_ROUNDS, UNBLOCK_EVERY_S = 10, 0.2  # rounds of unblock.py's local search: at most, one per this much time
UNBLOCK_ALL_SHARE = 1e-3  # when unblocking the best assignment saves this share of its cost, unblock the rest too
# levels.py's search and LP run when the time limit is at least RELEVEL_MIN_S and allows this many feasible pairs per
# second of it: the whole solve then takes ~8-10 us per pair on a 2-core machine (10k batches on the default
# topology: 200k pairs, ~1.6-2 s of which levels.py ~1 s; 10k x 200's 2.7M pairs would need ~25 s)
RELEVEL_MIN_S, RELEVEL_PAIRS_PER_S = 1.0, 110_000
# ... and then hull.py's bound takes up to HULL_STEPS subgradient steps, as many as the limit allows at this many
# pairs evaluated per second of it (a step costs ~20 ms on the default 10k's 200k pairs)
HULL_STEPS, HULL_PAIR_STEPS_PER_S = 20, 2_500_000
# ... or, where the shortlists leave targets out, HULL_ASIDE_STEPS at step 5's prices, beside the level search, their
# step shrinking more slowly after a miss (on three 10k x 200 instances: 0.01-0.02 CNY higher than 1.5; on the
# default topology's 20 steps 1.5 does better)
HULL_ASIDE_STEPS, HULL_ASIDE_DECAY = 60, 1.2


def solve(p: Problem, penalty: float, time_limit_s: float) -> tuple[np.ndarray, str, float]:
    from scheduler.engine.batch import capacity_free_bound, objective_of  # batch imports this module

    parts = assign.parts_of(p)
    floor = capacity_free_bound(p, penalty)
    cheapest = _uncontended(p, parts, penalty)
    if cheapest is not None:  # every batch fits at its cheapest target: optimal, no pricing needed
        return cheapest, "OPTIMAL", floor
    prices = _price(p, parts, penalty)
    bound = _lagrangian(p, parts, penalty, prices.pool_price, prices.cable_price)[0]
    state = assign.greedy(p, parts, prices.pool_price, prices.cable_price)
    _repair(p, parts, state, penalty, time_limit_s)
    upper = objective_of(p, state.target, penalty)
    if upper <= floor + 1e-12 * abs(floor):
        # Every batch got its cheapest target as if capacity were unlimited: nothing can do better.
        return state.target, "OPTIMAL", floor
    steps = BOUND_STEPS if time_limit_s >= RETRY_EVERY_S else min(BOUND_STEPS, QUICK_STEPS)
    rounds = min(UNBLOCK_ROUNDS, int(time_limit_s / UNBLOCK_EVERY_S))
    pairs = shortlist.pairs(parts)
    if time_limit_s >= RELEVEL_MIN_S and pairs <= RELEVEL_PAIRS_PER_S * time_limit_s:
        # levels.py, when it runs, does more with the time than more greedy passes would
        best, bound = _by_levels(p, parts, state, prices, penalty, bound, steps, rounds, time_limit_s, pairs)
        return best.target, "FEASIBLE", bound
    tightened, samples, _, _ = _tighten(p, parts, penalty, prices, bound, upper, steps)
    # Prices from the ascent are nearer the LP's optimal duals than the group LP's, and the greedy at them often
    # assigns better (10k batches: 0.4 % cheaper on the default topology, 0.1 % on 200 sites).
    # A retry costs about one greedy, so a tight time limit skips it (a count, not a clock: deterministic).
    candidates = [state]
    samples = samples[:int(time_limit_s / RETRY_EVERY_S)]
    for pool_price in samples:
        retry = assign.greedy(p, parts, pool_price, prices.cable_price)
        _repair(p, parts, retry, penalty, time_limit_s / (2 * len(samples)))
        candidates.append(retry)
    best = _unblocked_best(p, parts, prices.pool_price, penalty, candidates, rounds)
    return best.target, "FEASIBLE", max(bound, tightened)


def _by_levels(p: Problem, parts: list[assign.Part], state: assign.State, prices: transport.TransportSolution,
               penalty: float, bound: float, steps: int, rounds: int, time_limit_s: float,
               pairs: int) -> tuple[assign.State, float]:
    """Steps 5 (its bound only), 6, 7 and 8. Step 5's ascent (numpy on whole arrays) and, where the shortlists
    leave targets out, the hull bound after it (a compiled loop) run outside the GIL and nothing waits for them
    until the end: they run in a second thread while the rest, mostly Python, searches the levels (on 10k x 200
    this hides ~0.5 s). Each thread's answer is the same as if run alone."""
    from scheduler.engine.batch import objective_of  # batch imports this module

    for part in parts:  # filled once, before two threads read them
        part.masked()
        part.cabled(prices.cable_price)
    complete = shortlist.complete(parts)
    with ThreadPoolExecutor(max_workers=1) as aside:
        bounding = aside.submit(_bound_aside, p, parts, penalty, prices, bound, objective_of(p, state.target, penalty),
                                steps, 0 if complete else HULL_ASIDE_STEPS)
        best = _unblocked_best(p, parts, prices.pool_price, penalty, [state], rounds)
        upper = objective_of(p, best.target, penalty)
        lists = shortlist.shortlists(p, parts, prices.pool_price, prices.cable_price,
                                     levels.levels_of(p, parts, best.target))
        other, lam = levels.relevel(p, lists, best.target, prices.pool_price, penalty, upper)
        # The LP's rounding leaves caps that the local search lifts, as after the greedy (half the rounds: on five
        # instances the second half found nothing more)
        unblock.unblock(p, parts, other, assign.where_of(parts), prices.pool_price, penalty, (rounds + 1) // 2)
        if objective_of(p, other.target, penalty) < upper:
            best = other
        bound = max(bound, bounding.result())
    if complete:
        # The batches' values at the levels found start the ceiling-aware bound near its best multipliers.
        steps = min(HULL_STEPS, int(HULL_PAIR_STEPS_PER_S * time_limit_s / max(pairs, 1)))
        bound = max(bound, hull.bound(hull.Hull(p, lists, penalty), lam, objective_of(p, best.target, penalty),
                                      steps))
    return best, bound


def _unblocked_best(p: Problem, parts: list[assign.Part], pool_price: np.ndarray, penalty: float,
                    candidates: list[assign.State], rounds: int) -> assign.State:
    """Run unblock.py's local search on the cheapest candidate; when that saves >= UNBLOCK_ALL_SHARE (ceilings
    bind, and which assignment unblocks best is not the one that started best), on the others too. The cheapest
    after that wins (the earlier among equals)."""
    from scheduler.engine.batch import assigned_cost, objective_of

    cost = [objective_of(p, c.target, penalty) for c in candidates]
    first = min(range(len(candidates)), key=cost.__getitem__)
    order = [first] + [i for i in range(len(candidates)) if i != first]
    where = assign.where_of(parts)
    saved = unblock.unblock(p, parts, candidates[first], where, pool_price, penalty, rounds)
    if saved < UNBLOCK_ALL_SHARE * assigned_cost(p, candidates[first].target):
        return candidates[first]
    for i in order[1:]:
        unblock.unblock(p, parts, candidates[i], where, pool_price, penalty, rounds)
    return min((candidates[i] for i in order), key=lambda c: objective_of(p, c.target, penalty))


def _uncontended(p: Problem, parts: list[assign.Part], penalty: float) -> np.ndarray | None:
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


def _price(p: Problem, parts: list[assign.Part], penalty: float) -> transport.TransportSolution:
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
                               np.digitize(assign.tolerance(p, part, part.cost)[rows], TOLERANCE_BINS), dc])
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


def _lagrangian(p: Problem, parts: list[assign.Part], penalty: float, pool_price: np.ndarray,
                cable_price: np.ndarray, ceilings: bool = False) -> tuple[float, np.ndarray]:
    """Weak duality at these prices, batch by batch, and the pool load of the batches' priced choices.

    For any prices >= 0 on pool capacity and cable bandwidth, every batch pays its cheapest priced option (or the
    penalty), and the priced capacity is credited back: no assignment that respects capacity and cables (let alone
    ceilings too) costs less. Valid whatever the grouping that produced the prices. The load is the subgradient's
    use side. With `ceilings`, part of each pool's price also charges the capacity its batches' ceilings waste
    (_ceiling_charges), which only raises the value. (levels.py has the fixed-level variant, on shortlists.)
    """
    total = 0.0
    used = np.zeros(len(pool_price))
    firsts = []
    for part in parts:
        rc = assign.priced_cost(part, pool_price, cable_price)
        b = np.arange(len(part.rows))
        k, pick = assign.cheapest(rc)
        alone = penalty * p.weight[part.rows]
        total += float(np.minimum(pick, alone).sum())
        go = pick < alone
        np.add.at(used, part.pool[k[go]], part.load[b[go], k[go]])
        if ceilings and rc.shape[1] > 1:
            second = np.minimum(np.partition(rc, 1, axis=1)[:, 1], alone)
            firsts.append((part.pool[k[go]], part.theta[b[go], k[go]], (second - pick)[go]))
    total -= float(pool_price @ np.maximum(p.pool_free, 0.0)) + assign.bandwidth_credit(p, cable_price)
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


def _tighten(p: Problem, parts: list[assign.Part], penalty: float, s: transport.TransportSolution, bound: float,
             upper: float, steps: int) -> tuple[float, list[np.ndarray], np.ndarray, np.ndarray]:
    """Polyak subgradient ascent on the pool prices from the LP's: the group LP's prices are close to, not at, the
    best ones, and each step's Lagrangian value is itself a valid bound, so the best is kept. Then each priced
    cable's price is searched (_cable_search) and, if it moved, a few more pool steps follow. At the best prices,
    the ceiling charges are added (one more evaluation). Also returns pool prices for the greedy to try again (at
    the LP's cable prices): the mean of the ascent's iterates and the mean of its second half (the iterates zigzag
    around the optimal duals; their means settle nearer: on four 10k-batch instances one of the two always beat
    the best-bound and the last prices); and the best pool and cable prices. `upper`: the objective of the
    assignment found, the Polyak target."""
    free = np.maximum(p.pool_free, 0.0)
    run = ascent.polyak(lambda price: _lagrangian(p, parts, penalty, price, s.cable_price), s.pool_price, free,
                        upper, steps)
    best, pool_price, cable_price, seen = max(bound, run.best), run.price, s.cable_price, run.seen
    searched, value = _cable_search(p, parts, penalty, pool_price, s.cable_price, run.best)
    if value > run.best:
        again = ascent.polyak(lambda price: _lagrangian(p, parts, penalty, price, searched), pool_price, free,
                              upper, CABLE_STEPS)
        best, pool_price, cable_price = max(best, again.best), again.price, searched  # it starts at `value`
    best = max(best, _lagrangian(p, parts, penalty, pool_price, cable_price, ceilings=True)[0])
    if len(seen) < 2:
        return best, [], pool_price, cable_price
    return best, [np.mean(seen, axis=0), np.mean(seen[len(seen) // 2:], axis=0)], pool_price, cable_price


def _cable_search(p: Problem, parts: list[assign.Part], penalty: float, pool_price: np.ndarray,
                  cable_price: np.ndarray, value: float) -> tuple[np.ndarray, float]:
    """Each priced cable's price tried at CABLE_SHARES of its own, one cable after the other, keeping whatever
    raises the Lagrangian (`value` at these prices). The group LP prices bandwidth by its groups' average use of
    each cable, which can sit far above the dual optimum: on a 10k x 200 instance the LP priced one cable at 0.14
    CNY/Gbps and the bound was 0.4 CNY higher at a tenth of that. Coordinate steps, because the pool ascent's
    subgradient, in accelerators, would barely move a price per Gbps."""
    best = cable_price
    for c in np.flatnonzero(cable_price > 0).tolist():
        for share in CABLE_SHARES:
            trial = best.copy()
            trial[c] = cable_price[c] * share
            v = _lagrangian(p, parts, penalty, pool_price, trial)[0]
            if v > value:
                best, value = trial, v
    return best, value


def _bound_aside(p: Problem, parts: list[assign.Part], penalty: float, prices: transport.TransportSolution,
                 bound: float, upper: float, steps: int, hull_steps: int) -> float:
    """Step 5's bound (_tighten); then, with `hull_steps`, hull.py's bound priced at the best capacity prices found,
    on each batch's cheapest targets at them, from each batch's cheapest priced cost (where it is step 5's
    Lagrangian without the ceiling charges). Where the shortlists leave targets out, this is the ceiling-aware
    bound: on 10k x 200, 60 steps raise it 0.1 % in ~0.3 s, beside the level search."""
    best, _, mu, cable_price = _tighten(p, parts, penalty, prices, bound, upper, steps)
    if hull_steps:
        anywhere = np.full(len(mu), -np.inf)  # no level bars a target
        lists = shortlist.shortlists(p, parts, mu, cable_price, anywhere, barred=0)
        start = levels.values(p, lists, anywhere, mu, penalty)
        best = max(best, hull.bound(hull.Hull(p, lists, penalty, mu), start, upper, hull_steps, HULL_ASIDE_DECAY))
    return best


def _repair(p: Problem, parts: list[assign.Part], state: assign.State, penalty: float, time_limit_s: float) -> None:
    """Batches the greedy could not fit although each fits alone: re-pack with CP-SAT the pools where they come
    closest to fitting, together with the batches on them (which may move to their cheapest targets that have room
    now), so as to make room. A re-pack is applied only if it costs less than what it replaces (unplaced weight at
    the penalty), so repairs never make the assignment worse."""
    where = assign.where_of(parts)
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


def _repack(p: Problem, parts: list[assign.Part], where: dict, state: assign.State, extra: list[int], pools: list[int],
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
        fitting = [k for k in others.tolist() if assign.fits(p, part, state, r, k)][:REPACK_OPTIONS]
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
        part, r, k = assign.pair_of(parts, where, state, p, i)
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
            assign.remove(p, parts, where, state, i)
    for q in pools:
        state.cap[q] = p.pool_cap[q]
    for i in batches:
        if target[i] >= 0:
            j, r = where[i]
            assign.take(p, parts[j], state, i, r, int(target[i]) - p.offset[parts[j].m])
    return spent
