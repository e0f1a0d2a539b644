"""Each batch's few cheapest targets at some prices, as (B_m, N) arrays: what pool_levels.py searches and assigns on.

On 200 sites a batch has ~270 feasible targets, but near the optimal prices it goes to one of its cheapest few:
pool_levels.py over all 2.7M pairs of 10k batches takes ~10 s, over 16 per batch under 1 s. Half of a list is the
batch's cheapest targets among those the current levels allow it, half among those they bar (a level move that
lowers a pool's level can admit it there). Whatever is placed is placed through the full part's fit rule, and a
target left out can still take a batch that found no room on its list. A part with at most KEEP_ALL targets keeps
them all, in column order (the default topology's 21): there nothing is left out. ceiling_aware.py's bound runs on lists
too; where they leave targets out, priced at capacity prices that keep it valid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scheduler.engine import tolerances
from scheduler.engine.solve import greedy
from scheduler.engine.solve.problem import BatchProblem

WIDTH = 16  # targets kept per batch,
BARRED = 8  # of which among those the levels bar;
KEEP_ALL = 32  # a part with at most this many targets keeps them all


@dataclass
class Shortlist:
    """One part's batches, each with its cheapest targets at the prices it was made at: column into the part, cost
    with bandwidth at the cable prices (inf where infeasible or a repeat), load, ceiling and pool."""

    part: greedy.Part
    col: np.ndarray  # (B_m, N) column in the part, ascending
    cost: np.ndarray
    load: np.ndarray
    ceiling: np.ndarray
    pool: np.ndarray
    cable_price: np.ndarray  # (C,) the prices the costs carry bandwidth at

    def priced(self, pool_price: np.ndarray) -> np.ndarray:
        """(B_m, N) each pair's cost plus its capacity at these pool prices."""
        priced = np.multiply(self.load, pool_price[self.pool])
        priced += self.cost
        return priced


def pairs(parts: list[greedy.Part], width: int | None = None) -> int:
    """How many feasible pairs the parts' shortlists hold, at most."""
    width = WIDTH if width is None else width
    return sum(int(part.ok.sum()) if _keeps_all(part, width) else int(np.minimum(part.ok.sum(axis=1), width).sum())
               for part in parts)


def complete(parts: list[greedy.Part], width: int | None = None) -> bool:
    """Whether the parts' shortlists will hold every target."""
    return all(_keeps_all(part, WIDTH if width is None else width) for part in parts)


def _keeps_all(part: greedy.Part, width: int) -> bool:
    """Whether a part's lists hold every target."""
    return part.ok.shape[1] <= max(width, KEEP_ALL)


def shortlists(p: BatchProblem, parts: list[greedy.Part], pool_price: np.ndarray, cable_price: np.ndarray,
               level: np.ndarray, width: int | None = None, barred: int | None = None) -> list[Shortlist]:
    """Each part's batches with their cheapest targets at these prices (all of them on a part with at most
    KEEP_ALL targets): `width - barred` among those the pools' `level`s allow them (their ceiling there is at least the
    level), `barred` among the others (for pool_levels.py's moves that lower a level). WIDTH and BARRED by default."""
    width, barred = WIDTH if width is None else width, BARRED if barred is None else barred
    out = []
    for part in parts:
        B, T = part.ok.shape
        load, raw = part.masked()[1], part.cabled(cable_price)
        b = np.arange(B)[:, None]
        if _keeps_all(part, width):
            col = np.broadcast_to(np.arange(T), (B, T))
            kept = raw[b, col]
        else:
            priced = greedy.priced_cost(part, pool_price, cable_price)
            allowed = part.ceiling >= level[part.pool][None, :] - tolerances.LOAD
            cols, kept = [], []
            for n, among in ((width - barred, allowed), (barred, ~allowed)):
                if n <= 0:
                    continue
                score = np.where(among, priced, np.inf)
                c = np.argpartition(score, n - 1, axis=1)[:, :n]
                cols.append(c)
                kept.append(np.where(np.isfinite(score[b, c]), raw[b, c], np.inf))  # each column once
            col, kept = np.concatenate(cols, axis=1), np.concatenate(kept, axis=1)
            order = np.argsort(col, axis=1, kind="stable")
            col, kept = col[b, order], kept[b, order]
        out.append(Shortlist(part, col, kept, load[b, col], part.ceiling[b, col], part.pool[col], cable_price))
    return out
