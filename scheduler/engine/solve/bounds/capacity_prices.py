"""The bound stage's capacity prices: Lagrangian duality at prices on pool capacity and cable bandwidth, and the
subgradient ascent and cable search that raise it.

For any prices >= 0, every batch paying its cheapest priced option (or the penalty), with the priced capacity
credited back, is a lower bound on the objective of any assignment that keeps capacity and cables (so also of any
that keeps the ceilings too). Valid whatever the grouping that produced the prices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scheduler.engine import transport
from scheduler.engine.solve import greedy
from scheduler.engine.solve.bounds import subgradient
from scheduler.engine.solve.problem import BatchProblem

CABLE_SHARES = (0.5, 0.25, 0.1, 0.05, 0.0)  # of its LP price, each priced cable's price is tried at
CABLE_STEPS = 5  # pool-price steps after a cable's price moved


@dataclass(frozen=True)
class Tightened:
    """`tighten`'s result: the best bound found, the prices it was found at, and pool prices for the greedy to try
    again (at the LP's cable prices)."""

    bound: float
    pool_price: np.ndarray
    cable_price: np.ndarray
    retry_prices: list[np.ndarray]


def lagrangian(p: BatchProblem, parts: list[greedy.Part], penalty: float, pool_price: np.ndarray,
                cable_price: np.ndarray, ceilings: bool = False) -> tuple[float, np.ndarray]:
    """Weak duality at these prices, batch by batch, and the pool load of the batches' priced choices.

    For any prices >= 0 on pool capacity and cable bandwidth, every batch pays its cheapest priced option (or the
    penalty), and the priced capacity is credited back: no assignment that respects capacity and cables (let alone
    ceilings too) costs less. Valid whatever the grouping that produced the prices. The load is the subgradient's
    use side. With `ceilings`, part of each pool's price also charges the capacity its batches' ceilings waste
    (_ceiling_charges), which only raises the value. (pool_levels.py has the fixed-level variant, on shortlists.)
    """
    total = 0.0
    used = np.zeros(len(pool_price))
    firsts = []
    for part in parts:
        priced = greedy.priced_cost(part, pool_price, cable_price)
        b = np.arange(len(part.rows))
        k, pick = greedy.cheapest(priced)
        unplaced_cost = penalty * p.weight[part.rows]
        total += float(np.minimum(pick, unplaced_cost).sum())
        takes = pick < unplaced_cost
        np.add.at(used, part.pool[k[takes]], part.load[b[takes], k[takes]])
        if ceilings and priced.shape[1] > 1:
            second = np.minimum(np.partition(priced, 1, axis=1)[:, 1], unplaced_cost)
            firsts.append((part.pool[k[takes]], part.ceiling[b[takes], k[takes]], (second - pick)[takes]))
    total -= float(pool_price @ np.maximum(p.pool_free, 0.0)) + greedy.bandwidth_credit(p, cable_price)
    if firsts:
        total += _ceiling_charges(p, pool_price, *(np.concatenate(x) for x in zip(*firsts)))
    return total, used


def _ceiling_charges(p: BatchProblem, pool_price: np.ndarray, pool: np.ndarray, ceiling: np.ndarray,
                     regret: np.ndarray) -> float:
    """What charging ceilings adds to the bound, for batches whose cheapest priced option is on `pool` with ceiling
    `ceiling` (theta below) and whose next option costs `regret` more.

    If batch i runs on pool q, the pool's load stays under its ceiling: load_q + (cap_q - theta_i) x_i <= free_q is
    a valid row for each such pair. Moving a share a_i of the pool's price mu_q from its capacity row to these rows
    (sum of shares <= 1) leaves every batch's price of q's load as it was and charges batch i a_i mu_q (cap_q -
    theta_i) more on q: up to its regret that raises the bound by the same (beyond it the batch would move). Shares
    go to the largest wastes first, each up to its regret."""
    waste = p.pool_cap[pool] - ceiling
    price = pool_price[pool]
    ok = (waste > 0) & (price > 0) & (regret > 0)
    pool, waste, price, regret = pool[ok], waste[ok], price[ok], regret[ok]
    if not len(pool):
        return 0.0
    order = np.lexsort((-waste, pool))
    pool, waste, price, regret = pool[order], waste[order], price[order], regret[order]
    need = regret / (waste * price)  # the share that makes the batch indifferent
    taken = np.cumsum(need)
    starts = np.searchsorted(pool, pool, side="left")
    before = taken[starts] - need[starts]  # shares given in this pool before its first batch: 0, per batch
    share = np.clip(1.0 - (taken - need - before), 0.0, need)
    return float((share * waste * price).sum())


def tighten(p: BatchProblem, parts: list[greedy.Part], penalty: float, s: transport.TransportSolution, bound: float,
            upper: float, steps: int) -> Tightened:
    """Polyak subgradient ascent on the pool prices from the LP's: the group LP's prices are close to, not at, the
    best ones, and each step's Lagrangian value is itself a valid bound, so the best is kept. Then each priced
    cable's price is searched (_cable_search) and, if it moved, a few more pool steps follow. At the best prices,
    the ceiling charges are added (one more evaluation). Also gives pool prices for the greedy to try again (at
    the LP's cable prices): the mean of the ascent's iterates and the mean of its second half (the iterates zigzag
    around the optimal duals; their means settle nearer: on four 10k-batch instances one of the two always beat
    the best-bound and the last prices); and the best pool and cable prices. `upper`: the objective of the
    assignment found, the Polyak target."""
    free = np.maximum(p.pool_free, 0.0)
    run = subgradient.polyak(lambda price: lagrangian(p, parts, penalty, price, s.cable_price), s.pool_price, free,
                        upper, steps)
    best, pool_price, cable_price, seen = max(bound, run.best), run.price, s.cable_price, run.seen
    searched, value = _cable_search(p, parts, penalty, pool_price, s.cable_price, run.best)
    if value > run.best:
        again = subgradient.polyak(lambda price: lagrangian(p, parts, penalty, price, searched), pool_price, free,
                              upper, CABLE_STEPS)
        best, pool_price, cable_price = max(best, again.best), again.price, searched  # it starts at `value`
    best = max(best, lagrangian(p, parts, penalty, pool_price, cable_price, ceilings=True)[0])
    if len(seen) < 2:
        return Tightened(best, pool_price, cable_price, [])
    return Tightened(best, pool_price, cable_price, [np.mean(seen, axis=0), np.mean(seen[len(seen) // 2:], axis=0)])


def _cable_search(p: BatchProblem, parts: list[greedy.Part], penalty: float, pool_price: np.ndarray,
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
            v = lagrangian(p, parts, penalty, pool_price, trial)[0]
            if v > value:
                best, value = trial, v
    return best, value
