"""The batch solver's one entry point, `solve`: it runs the stages in order and returns an `Assignment`.

    price    group_prices.py     a transportation LP over coarse groups of batches prices pool capacity and cables
    assign   greedy.py           each batch (fewest options first, then the most latency-tolerant) takes its cheapest
                                 target at those prices that fits under capacity, every ceiling and the cables
    repair   repair.py           CP-SAT re-packs the pools around batches the greedy left out although they fit alone
    improve  local_search.py     lifts the caps that a few latency-tight batches put on priced pools;
             pool_levels.py      when the time limit allows: searches how full each pool may run, assigns at those
                                 levels with an LP on each batch's candidates (candidates.py), then the local search
    bound    bounds/             capacity_prices.py: Lagrangian duality at the LP's prices, raised by subgradient steps
                                 (subgradient.py); ceiling_aware.py: a bound that sees the ceilings (compiled kernel
                                 in knapsack_kernel.py)

Small instances (up to EXACT_PAIRS feasible pairs) run the same stages on a share of the time and hand the answer to
the exact CP-SAT model (exact_cpsat.py) as a hint, which usually proves it optimal. Every stage is sized by the time
limit as counts, never by the clock, so the same input gives the same answer. docs/engine.md tells why each stage is
there and what the result guarantees.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from scheduler.engine import tolerances
from scheduler.engine import transport
from scheduler.engine.request import Reason
from scheduler.engine.solve import candidates, exact_cpsat, greedy, group_prices, local_search, pool_levels, repair
from scheduler.engine.solve.bounds import capacity_prices, ceiling_aware
from scheduler.engine.solve.problem import (Assignment, BatchProblem, assigned_cost, capacity_free_bound,
                                            objective_of, penalty_of, unavoidable_penalty, unplaced_reasons)

EXACT_PAIRS = 4000  # feasible (batch, target) pairs up to which CP-SAT solves the whole instance
BOUND_STEPS = 20  # subgradient steps on the pool prices that tighten the Lagrangian bound after the assignment,
QUICK_STEPS = 5  # or this many when the time limit is under RETRY_EVERY_S (a router's hot path)
RETRY_EVERY_S = 0.5  # the greedy assigns again at the ascent's prices, once per this much of the time limit
UNBLOCK_ROUNDS, UNBLOCK_EVERY_S = 10, 0.2  # rounds of the local search: at most, one per this much time
UNBLOCK_ALL_SHARE = 1e-3  # when unblocking the best assignment saves this share of its cost, unblock the rest too
# The level search and its LP run when the time limit is at least RELEVEL_MIN_S and allows this many feasible pairs
# per second of it: the whole solve then takes ~8-10 us per pair on a 2-core machine (10k batches on the default
# topology: 200k pairs, ~1.6-2 s of which the level search ~1 s; 10k x 200's 2.7M pairs would need ~25 s)
RELEVEL_MIN_S, RELEVEL_PAIRS_PER_S = 1.0, 110_000
# ... and then the ceiling-aware bound takes up to HULL_STEPS subgradient steps, as many as the limit allows at this
# many pairs evaluated per second of it (a step costs ~20 ms on the default 10k's 200k pairs)
HULL_STEPS, HULL_PAIR_STEPS_PER_S = 20, 2_500_000
# ... or, where the candidate lists leave targets out, HULL_ASIDE_STEPS at the capacity prices' best, beside the
# level search, their step shrinking more slowly after a miss (on three 10k x 200 instances: 0.01-0.02 CNY higher
# than 1.5; on the default topology's 20 steps 1.5 does better)
HULL_ASIDE_STEPS, HULL_ASIDE_DECAY = 60, 1.2


@dataclass(frozen=True)
class Heuristic:
    """The stages' answer before the exact model: each batch's global target (-1: unplaced), "OPTIMAL" when no
    assignment can do better (else "FEASIBLE"), and a lower bound on the objective."""

    target: np.ndarray
    status: str
    bound: float


@dataclass(frozen=True)
class Effort:
    """How much the stages after the first assignment may do, as counts sized by the time limit (never the clock):
    subgradient steps of the capacity prices' bound, rounds of the local search, and the time limit and candidate
    pairs the ceiling-aware bound's steps are sized by."""

    time_limit_s: float
    bound_steps: int
    unblock_rounds: int
    pairs: int

    @classmethod
    def of(cls, time_limit_s: float, parts: list[greedy.Part]) -> Effort:
        steps = BOUND_STEPS if time_limit_s >= RETRY_EVERY_S else min(BOUND_STEPS, QUICK_STEPS)
        rounds = min(UNBLOCK_ROUNDS, int(time_limit_s / UNBLOCK_EVERY_S))
        return cls(time_limit_s, steps, rounds, candidates.pairs(parts))

    @property
    def relevels(self) -> bool:
        """Whether the level search runs: when it does, it does more with the time than more greedy passes would."""
        return self.time_limit_s >= RELEVEL_MIN_S and self.pairs <= RELEVEL_PAIRS_PER_S * self.time_limit_s


def solve(p: BatchProblem, time_limit_s: float = 2.0, exact_pairs: int = EXACT_PAIRS) -> Assignment:
    """The least-cost assignment of the problem's batches that keeps capacity, every ceiling and the cables, with a
    lower bound on any such assignment's objective."""
    start = time.perf_counter()
    penalty = penalty_of(p)
    n_pairs = sum(int((p.reason[m] == Reason.OK).sum()) for m in p.models)
    if n_pairs <= exact_pairs:
        # The stages first (they are cheap at this size): CP-SAT starts from their answer, which also stands if
        # CP-SAT finds nothing better in its time.
        hint = heuristic(p, penalty, time_limit_s * repair.REPAIR_SHARE)
        exact = exact_cpsat.solve(p, p.pairs(), np.arange(len(p.batches)),
                                  exact_cpsat.Room(p.used, p.pool_cap, p.cable_free), penalty, time_limit_s,
                                  hint=hint.target, wall_s=time_limit_s - (time.perf_counter() - start))
        if not exact.found or objective_of(p, exact.target, penalty) > objective_of(p, hint.target, penalty):
            target, status, bound = hint.target, "FEASIBLE", exact.bound
        else:
            target, status, bound = exact.target, exact.status, exact.bound
        bound = max(bound, hint.bound)
        method = "cp-sat"
    else:
        found = heuristic(p, penalty, time_limit_s)
        target, status, bound = found.target, found.status, found.bound
        method = "lp-priced-greedy"
    bound = max(bound, capacity_free_bound(p, penalty))
    reason = unplaced_reasons(p)
    placed = target >= 0
    reason[placed] = Reason.OK
    reason[~placed & (reason == Reason.OK)] = Reason.CAPACITY  # feasible alone, but the capacity went to others
    cost = assigned_cost(p, target)
    objective = cost + penalty * float(p.weight[~placed].sum())
    bound = min(bound, objective)
    return Assignment(target, reason, status, objective, cost, bound, time.perf_counter() - start, method, penalty,
                      unavoidable_penalty(p, penalty))


def heuristic(p: BatchProblem, penalty: float, time_limit_s: float) -> Heuristic:
    """Price, assign, repair, improve and bound: the whole solve of a large instance, and the hint of a small one."""
    parts = greedy.parts_of(p)
    floor = capacity_free_bound(p, penalty)
    cheapest = _uncontended(p, parts, penalty)
    if cheapest is not None:  # every batch fits at its cheapest target: optimal, no pricing needed
        return Heuristic(cheapest, "OPTIMAL", floor)
    prices = group_prices.price(p, parts, penalty)
    bound = capacity_prices.lagrangian(p, parts, penalty, prices.pool_price, prices.cable_price)[0]
    state = greedy.greedy(p, parts, prices.pool_price, prices.cable_price)
    repair.repair(p, parts, state, penalty, time_limit_s)
    upper = objective_of(p, state.target, penalty)
    if upper <= floor + tolerances.COST * abs(floor):
        # Every batch got its cheapest target as if capacity were unlimited: nothing can do better.
        return Heuristic(state.target, "OPTIMAL", floor)
    effort = Effort.of(time_limit_s, parts)
    if effort.relevels:
        best, bound = _improve_by_levels(p, parts, state, prices, penalty, bound, effort)
        return Heuristic(best.target, "FEASIBLE", bound)
    tightened = capacity_prices.tighten(p, parts, penalty, prices, bound, upper, effort.bound_steps)
    # Prices from the ascent are nearer the LP's optimal duals than the group LP's, and the greedy at them often
    # assigns better (10k batches: 0.4 % cheaper on the default topology, 0.1 % on 200 sites).
    # A retry costs about one greedy, so a tight time limit skips it (a count, not a clock: deterministic).
    tried = [state]
    retry_prices = tightened.retry_prices[:int(time_limit_s / RETRY_EVERY_S)]
    for pool_price in retry_prices:
        retry = greedy.greedy(p, parts, pool_price, prices.cable_price)
        repair.repair(p, parts, retry, penalty, time_limit_s / (2 * len(retry_prices)))
        tried.append(retry)
    best = _improved_best(p, parts, prices.pool_price, penalty, tried, effort.unblock_rounds)
    return Heuristic(best.target, "FEASIBLE", max(bound, tightened.bound))


def _improve_by_levels(p: BatchProblem, parts: list[greedy.Part], state: greedy.State,
                       prices: transport.TransportSolution, penalty: float, bound: float,
                       effort: Effort) -> tuple[greedy.State, float]:
    """Improve by the local search and the level search; bound by the capacity prices and the ceiling-aware bound.
    The capacity prices' ascent (numpy on whole arrays) and, where the candidate lists leave targets out, the
    ceiling-aware bound after it (a compiled loop) run outside the GIL and nothing waits for them until the end:
    they run in a second thread while the rest, mostly Python, searches the levels (on 10k x 200 this hides
    ~0.5 s). Each thread's answer is the same as if run alone."""
    for part in parts:  # filled once, before two threads read them
        part.masked()
        part.cabled(prices.cable_price)
    complete = candidates.complete(parts)
    with ThreadPoolExecutor(max_workers=1) as aside:
        bounding = aside.submit(_bound_aside, p, parts, penalty, prices, bound, objective_of(p, state.target, penalty),
                                effort.bound_steps, 0 if complete else HULL_ASIDE_STEPS)
        best = _improved_best(p, parts, prices.pool_price, penalty, [state], effort.unblock_rounds)
        upper = objective_of(p, best.target, penalty)
        lists = candidates.shortlists(p, parts, prices.pool_price, prices.cable_price,
                                      pool_levels.levels_of(p, parts, best.target))
        other, values = pool_levels.relevel(p, lists, best.target, prices.pool_price, penalty, upper)
        # The LP's rounding leaves caps that the local search lifts, as after the greedy (half the rounds: on five
        # instances the second half found nothing more)
        local_search.unblock(p, parts, other, greedy.where_of(parts), prices.pool_price, penalty,
                             (effort.unblock_rounds + 1) // 2)
        if objective_of(p, other.target, penalty) < upper:
            best = other
        bound = max(bound, bounding.result())
    if complete:
        # The batches' values at the levels found start the ceiling-aware bound near its best multipliers.
        steps = min(HULL_STEPS, int(HULL_PAIR_STEPS_PER_S * effort.time_limit_s / max(effort.pairs, 1)))
        bound = max(bound, ceiling_aware.bound(ceiling_aware.Hull(p, lists, penalty), values,
                                               objective_of(p, best.target, penalty), steps))
    return best, bound


def _improved_best(p: BatchProblem, parts: list[greedy.Part], pool_price: np.ndarray, penalty: float,
                   tried: list[greedy.State], rounds: int) -> greedy.State:
    """Run the local search on the cheapest assignment tried; when that saves >= UNBLOCK_ALL_SHARE (ceilings
    bind, and which assignment unblocks best is not the one that started best), on the others too. The cheapest
    after that wins (the earlier among equals)."""
    cost = [objective_of(p, c.target, penalty) for c in tried]
    first = min(range(len(tried)), key=cost.__getitem__)
    order = [first] + [i for i in range(len(tried)) if i != first]
    where = greedy.where_of(parts)
    saved = local_search.unblock(p, parts, tried[first], where, pool_price, penalty, rounds)
    if saved < UNBLOCK_ALL_SHARE * assigned_cost(p, tried[first].target):
        return tried[first]
    for i in order[1:]:
        local_search.unblock(p, parts, tried[i], where, pool_price, penalty, rounds)
    return min((tried[i] for i in order), key=lambda c: objective_of(p, c.target, penalty))


def _uncontended(p: BatchProblem, parts: list[greedy.Part], penalty: float) -> np.ndarray | None:
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
        np.minimum.at(floor, q, part.ceiling[r, k])
        if len(cable):
            cable += part.gbps[r] @ part.cables[part.region[r], k]
    if (load > floor + tolerances.LOAD).any() or (cable > p.cable_free + tolerances.GBPS).any():
        return None
    return target


def _bound_aside(p: BatchProblem, parts: list[greedy.Part], penalty: float, prices: transport.TransportSolution,
                 bound: float, upper: float, steps: int, hull_steps: int) -> float:
    """The capacity prices' bound (capacity_prices.tighten); then, with `hull_steps`, the ceiling-aware bound priced
    at the best capacity prices found, on each batch's cheapest targets at them, from each batch's cheapest priced
    cost (where it is the capacity prices' Lagrangian without the ceiling charges). Where the candidate lists leave
    targets out, this is the ceiling-aware bound: on 10k x 200, 60 steps raise it 0.1 % in ~0.3 s, beside the level
    search."""
    tightened = capacity_prices.tighten(p, parts, penalty, prices, bound, upper, steps)
    best, pool_price = tightened.bound, tightened.pool_price
    if hull_steps:
        anywhere = np.full(len(pool_price), -np.inf)  # no level bars a target
        lists = candidates.shortlists(p, parts, pool_price, tightened.cable_price, anywhere, barred=0)
        start = pool_levels.values(p, lists, anywhere, pool_price, penalty)
        best = max(best, ceiling_aware.bound(ceiling_aware.Hull(p, lists, penalty, pool_price), start, upper,
                                             hull_steps, HULL_ASIDE_DECAY))
    return best
