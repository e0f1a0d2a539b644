"""A lower bound that knows the ceilings: Lagrangian duality over the batches' assignment rows, each pool's part
solved over the union of its levels.

Relax "each batch goes to one target or stays unplaced" with a multiplier lam_i per batch. What is left splits by
pool: pool q picks the set of batches worth most at lam (lam_i - cost_iq each) among the sets it can carry, where a
set is feasible if its load stays under the least ceiling in it. Grouping the sets by that least ceiling L, each group
is a knapsack over the batches whose ceiling is >= L with room L - used; its fractional value is an upper bound. So
for any lam:

    bound(lam) = sum_i min(lam_i, penalty_i) - sum_q max(0, max_L knapsack_q(L)) - cable prices x free bandwidth

is a lower bound on every assignment that keeps capacity, ceilings and cables (cable bandwidth is priced, as in
priced.py). Levels are taken on a grid of LEVELS per pool; a level between two grid points is relaxed to the items
of the lower point and the room of the upper one, which keeps the bound valid. Unlike the capacity prices alone,
this sees that a pool full of tight batches cannot also be full of loose ones: on the default topology's 10k batches
it is 0.4-0.5 % above priced.py's bound, starting from the multipliers of levels.py's last prices.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from scheduler.engine import assign

if TYPE_CHECKING:
    from scheduler.engine.batch import Problem

LEVELS = 64  # grid points per pool (quantiles of the ceilings on it, and its capacity)


class Hull:
    """Every feasible pair grouped by pool, with its cost at the cable prices, load and ceiling; and each pool's
    grid of levels. Built once; `value` is then evaluated at many multipliers."""

    def __init__(self, p: Problem, parts: list[assign.Part], cable_price: np.ndarray, penalty: float):
        batch, cost, load, theta, pool = [], [], [], [], []
        for part in parts:
            r, k = np.nonzero(part.ok)
            batch.append(part.rows[r])
            cost.append(part.cabled(cable_price)[r, k])  # with its bandwidth at the cable prices
            load.append(part.load[r, k])
            theta.append(part.theta[r, k])
            pool.append(part.pool[k])
        order = np.argsort(np.concatenate(pool), kind="stable")
        self.batch, self.cost, self.load, self.theta = (np.concatenate(x)[order] for x in (batch, cost, load, theta))
        pools = np.concatenate(pool)[order]
        self.cuts = np.searchsorted(pools, np.arange(len(p.pool_cap) + 1))
        self.low, self.room = [], []
        for q in range(len(p.pool_cap)):
            th = self.theta[self.cuts[q]:self.cuts[q + 1]]
            cap = float(p.pool_cap[q])
            grid = np.unique(np.append(np.quantile(th, np.linspace(0.0, 1.0, LEVELS)), cap)) if len(th) else \
                np.array([cap])
            grid = grid[grid <= cap + 1e-9]
            self.low.append(np.concatenate([[-np.inf], grid[:-1]]))  # items of a level in (low, grid]: ceiling >= low
            self.room.append(np.maximum(grid - p.used[q], 0.0))
        self.alone = penalty * p.weight
        self.credit = float(cable_price[cable_price > 0] @ np.maximum(p.cable_free[cable_price > 0], 0.0)) \
            if len(cable_price) else 0.0

    def value(self, lam: np.ndarray) -> tuple[float, np.ndarray]:
        """The bound at `lam`, and how much of each batch the pools' best sets take (its subgradient's use side)."""
        total = float(np.minimum(lam, self.alone).sum()) - self.credit
        taken = np.zeros(len(lam))
        for q in range(len(self.cuts) - 1):
            a, b = self.cuts[q], self.cuts[q + 1]
            margin = lam[self.batch[a:b]] - self.cost[a:b]
            sel = np.flatnonzero(margin > 0)
            if not len(sel):
                continue
            m, ld, th = margin[sel], self.load[a:b][sel], self.theta[a:b][sel]
            order = np.argsort(-(m / ld), kind="stable")  # densest first: the fractional knapsack's order
            m, ld, th, sel = m[order], ld[order], th[order], sel[order]
            inside = th[None, :] >= self.low[q][:, None]  # (levels, items)
            cum = np.cumsum(np.where(inside, ld[None, :], 0.0), axis=1)
            room = self.room[q][:, None]
            whole = inside & (cum <= room + 1e-12)
            worth = np.where(whole, m[None, :], 0.0).sum(axis=1)
            partial = inside & ~whole
            has = partial.any(axis=1)
            nxt = np.argmax(partial, axis=1)  # the first item that does not fit whole
            rows = np.arange(len(worth))
            before = np.where(nxt > 0, cum[rows, np.maximum(nxt - 1, 0)], 0.0)
            share = np.where(has, np.clip((self.room[q] - before) / ld[nxt], 0.0, 1.0), 0.0)
            worth = worth + share * m[nxt]
            best = int(np.argmax(worth))
            if worth[best] <= 0:
                continue
            total -= float(worth[best])
            taken[self.batch[a:b][sel[whole[best]]]] += 1.0
            if has[best]:
                taken[self.batch[a:b][sel[nxt[best]]]] += share[best]
        return total, taken


def bound(hull: Hull, lam: np.ndarray, upper: float, steps: int) -> float:
    """The best of `steps` Polyak subgradient steps on the multipliers from `lam`; `upper` is the objective of an
    assignment found, the steps' target."""
    best, step = -np.inf, 1.0
    for _ in range(steps):
        value, taken = hull.value(lam)
        if value > best:
            best = value
        else:
            step /= 1.5
        g = 1.0 - taken - (lam > hull.alone)  # each batch's row: one target, or unplaced at the penalty
        norm = float(g @ g)
        if norm <= 0 or upper <= value:
            break
        lam = lam + step * (upper - value) / norm * g
    return best
