"""A lower bound that knows the ceilings: Lagrangian duality over the batches' assignment rows, each pool's part
solved over the union of its levels, on each batch's shortlist.

Relax "each batch goes to one target or stays unplaced" with a multiplier lam_i per batch (`batch_value` in the code:
what the batch is worth to a pool; mu below is `pool_price`). What is left splits by
pool: pool q picks the set of batches worth most at lam (lam_i - cost_iq each) among the sets it can carry, where a
set is feasible if its load stays under the least ceiling in it. Grouping the sets by that least ceiling L, each group
is a knapsack over the batches whose ceiling is >= L with room R_L = L - used. For any pool prices mu >= 0,

    knapsack_q(L) <= mu_q R_L + (fractional knapsack of the items worth lam_i - cost_iq - mu_q load_iq > 0, in R_L)

(what the set's load leaves of R_L is worth at most mu_q a unit beyond the items priced at mu_q). A target off a
batch's shortlist is worth nothing priced at mu when lam_i is no more than its priced cost, so the multipliers are
held under each batch's cheapest priced target left out (`rest`) and the shortlists stand for the whole problem:

    bound(lam) = sum_i min(lam_i, penalty_i) - sum_q max(0, max_L [mu_q R_L + knapsack'_q(L)]) - cable prices x free

is a lower bound on every assignment that keeps capacity, ceilings and cables (bandwidth is priced, as in capacity_prices.py).
With mu = 0 it is the plain assignment-row dual (all pairs must be listed then: nothing is left out on the default
topology); with mu = capacity_prices.py's prices it starts, at each batch's cheapest priced cost, from capacity_prices.py's
Lagrangian, and only the few pairs dearer at lam than priced at mu take part. Levels are taken on a grid of LEVELS
per pool; a level between two grid points is relaxed to the items of the lower point and the room of the upper one,
which keeps the bound valid. Unlike the capacity prices alone, this sees that a pool full of tight batches cannot also
be full of loose ones: on the default topology's 10k batches it is 0.4-0.5 % above the capacity prices' bound, on 10k x 200
0.1 %. The per-pool knapsacks are compiled (knapsack_kernel.py).
"""

from __future__ import annotations

import numpy as np

from scheduler.engine import tolerances
from scheduler.engine.solve import greedy
from scheduler.engine.solve.bounds import knapsack_kernel
from scheduler.engine.solve.candidates import Shortlist
from scheduler.engine.solve.problem import BatchProblem

LEVELS = 64  # grid points per pool (quantiles of the ceilings on it, and its capacity)
ZERO = 1e-12  # items within this share of their cost of zero margin join a pool's set (worth nothing there)


class Hull:
    """The shortlists' pairs grouped by pool, with their cost priced at mu (bandwidth at the lists' cable prices),
    load and ceiling; each pool's grid of levels; each batch's cap on its multiplier. Built once; `value` is then
    evaluated at many multipliers."""

    def __init__(self, p: BatchProblem, lists: list[Shortlist], penalty: float, pool_price: np.ndarray | None = None):
        P = len(p.pool_cap)
        self.pool_price = np.zeros(P) if pool_price is None else np.maximum(pool_price, 0.0)
        batch, cost, load, ceiling, pool = [], [], [], [], []
        self.rest = np.full(len(p.batches), np.inf)  # each batch's least priced cost off its list
        for s in lists:
            r, n = np.nonzero(np.isfinite(s.cost))
            batch.append(s.part.rows[r])
            cost.append(s.priced(self.pool_price)[r, n])
            load.append(s.load[r, n])
            ceiling.append(s.ceiling[r, n])
            pool.append(s.pool[r, n])
            if s.col.shape[1] < s.part.ok.shape[1]:
                off = greedy.priced_cost(s.part, self.pool_price, s.cable_price)  # a fresh array
                off[np.arange(len(off))[:, None], s.col] = np.inf
                self.rest[s.part.rows] = off.min(axis=1)
        order = np.argsort(np.concatenate(pool), kind="stable")
        self.batch, self.cost, self.load, self.ceiling = (np.concatenate(x)[order] for x in (batch, cost, load, ceiling))
        self.starts = np.searchsorted(np.concatenate(pool)[order], np.arange(P + 1))
        self.low = np.full((P, LEVELS + 1), np.inf)  # items of a level have a ceiling >= its low ...
        self.room = np.full((P, LEVELS + 1), -np.inf)  # ... and fill its room; -inf: no more levels
        for q in range(P):
            th = self.ceiling[self.starts[q]:self.starts[q + 1]]
            cap = float(p.pool_cap[q])
            grid = np.unique(np.append(np.quantile(th, np.linspace(0.0, 1.0, LEVELS)), cap)) if len(th) else \
                np.array([cap])
            grid = grid[grid <= cap + tolerances.LOAD]
            self.low[q, :len(grid)] = np.concatenate([[-np.inf], grid[:-1]])
            self.room[q, :len(grid)] = np.maximum(grid - p.used[q], 0.0)
        self.unplaced_cost = penalty * p.weight
        self.credit = greedy.bandwidth_credit(p, lists[0].cable_price) if lists else 0.0

    def value(self, batch_value: np.ndarray) -> tuple[float, np.ndarray]:
        """The bound at `batch_value` (held under `rest`), and how much of each batch the pools' best sets take (its
        subgradient's use side)."""
        batch_value = np.minimum(batch_value, self.rest)
        taken = np.zeros(len(batch_value))
        worth = knapsack_kernel.pools(batch_value, self.batch, self.cost, self.load, self.ceiling, self.starts, self.low, self.room,
                               self.pool_price, ZERO, taken)
        return float(np.minimum(batch_value, self.unplaced_cost).sum()) - self.credit - worth, taken


def bound(hull: Hull, batch_value: np.ndarray, upper: float, steps: int, decay: float = 1.5) -> float:
    """The best of `steps` Polyak subgradient steps on the multipliers from `batch_value`, held under `hull.rest`; `upper`
    is the objective of an assignment found, the steps' target; the step shrinks by `decay` after a step that did
    not improve (slower for longer runs)."""
    best, step = -np.inf, 1.0
    batch_value = np.minimum(batch_value, hull.rest)
    for _ in range(steps):
        value, taken = hull.value(batch_value)
        if value > best:
            best = value
        else:
            step /= decay
        g = 1.0 - taken - (batch_value > hull.unplaced_cost)  # each batch's row: one target, or unplaced at the penalty
        norm = float(g @ g)
        if norm <= 0 or upper <= value:
            break
        batch_value = np.minimum(batch_value + step * (upper - value) / norm * g, hull.rest)
    return best
