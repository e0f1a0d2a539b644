"""The price stage: a transportation LP over coarse groups of nearly interchangeable batches prices pool capacity
and cable bandwidth.

Groups are (model, answer length, latency tolerance, data class): hundreds of rows, not millions of pairs. Only the
LP's prices are used (by the greedy, the bounds and the level search), so the grouping may be coarse: every bound
is evaluated batch by batch at those prices.
"""

from __future__ import annotations

import numpy as np

from scheduler.engine import transport
from scheduler.engine.solve import greedy
from scheduler.engine.solve.problem import BatchProblem

TOLERANCE_BINS = (0.3, 0.5, 0.7, 0.8, 0.9)  # the pricing LP groups batches by the utilization their SLO tolerates
HOLD_BIN = 1.0  # ... and by answer length: log2 of the seconds a batch holds its accelerators, in steps of this


def price(p: BatchProblem, parts: list[greedy.Part], penalty: float) -> transport.TransportSolution:
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
                               np.digitize(greedy.tolerance(p, part, part.cost)[rows], TOLERANCE_BINS), dc])
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
