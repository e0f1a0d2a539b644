"""Many demand cells planned as a few groups: what keeps a 10,000-cell plan at LP sizes the search can afford.

Cells of one model, data class and region, with the same candidate targets and close ceilings, are planned as one
group, and every member then takes the group's shares (`conservative`). Per unit, a target's load is the same for every cell of a
model; cost and Gbps differ only through the request's shape (transit is paid per wire token), so the group's
supply-weighted means make the members' total cost and cable load exactly the group's. What a group loses is
freedom: it takes the least ceiling of its members on each pool (`conservative`), so every member keeps its SLO.

The bound needs the opposite: `optimistic` gives each group the highest ceiling of its members, any member's
candidates and the least cost and Gbps among them, so that every plan of the cells is a plan of the groups at no
higher cost, and a lower bound on the groups bounds the cells. Its groups are also cut by the request's shape, so
that the least cost of a group is close to each member's.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from scheduler.engine.fleet.problem import FleetProblem


@dataclass(frozen=True)
class Grouping:
    member_of: np.ndarray  # (G,) each cell's group
    cells: FleetProblem  # the groups as cells (one row per group)

    def spread(self, flow: np.ndarray, fp: FleetProblem) -> np.ndarray:
        """(G, T) each cell's flows: its group's shares of its own supply."""
        supply = self.cells.supply
        share = np.divide(flow, supply[:, None], out=np.zeros_like(flow), where=supply[:, None] > 0)
        return share[self.member_of] * fp.supply[:, None]


def conservative(fp: FleetProblem, most: int) -> Grouping | None:
    """Groups that keep every member's ceilings, cut by ceiling: plans of them are plans of the cells."""
    member_of, n = _members(fp, most, by_shape=False)
    return None if n == len(fp.supply) else Grouping(member_of, _merge(fp, member_of, n, optimistic=False))


def optimistic(fp: FleetProblem, most: int) -> Grouping:
    """Groups that every plan of the cells fits, cut by shape and ceiling: bounds of them bound the cells."""
    member_of, n = _members(fp, most, by_shape=True)
    return Grouping(member_of, _merge(fp, member_of, n, optimistic=True))


def _members(fp: FleetProblem, most: int, by_shape: bool) -> tuple[np.ndarray, int]:
    """Each cell's group and the number of groups (about `most`, never more than the cells)."""
    G = len(fp.supply)
    if G <= most:
        return np.arange(G), G
    model = np.zeros(G, np.int64)
    for k, m in enumerate(fp.models):
        model[fp.rows[m]] = k
    dc = np.unique([c.data_class for c in fp.cells], return_inverse=True)[1].reshape(G)
    region = np.unique([c.region for c in fp.cells], return_inverse=True)[1].reshape(G)
    pattern = np.unique(np.packbits(fp.candidate, axis=1), axis=0, return_inverse=True)[1].reshape(G)
    columns = [model, dc, region, pattern]
    if by_shape:  # a unit's transit cost moves with the request's wire tokens per unit: bins of 2^(1/4)
        columns.append(np.floor(4.0 * np.log2(np.maximum(fp.wire_per_unit, 1e-9))).astype(np.int64))
    key = np.unique(np.column_stack(columns), axis=0, return_inverse=True)[1].reshape(G)
    keys = int(key.max()) + 1
    buckets = max(1, most // keys)
    pool_count = np.array([p.count for p in fp.cat.pools], float)
    # Within a key, order cells by how high their ceilings sit (as a share of each pool), and cut into buckets.
    score = np.where(fp.candidate, fp.ceiling / pool_count[fp.pool][None, :], 0.0).sum(axis=1)
    member_of = np.zeros(G, np.int64)
    n = 0
    for k in range(keys):
        cells = np.flatnonzero(key == k)
        cells = cells[np.argsort(score[cells], kind="stable")]
        for chunk in np.array_split(cells, min(buckets, len(cells))):
            member_of[chunk] = n
            n += 1
    return member_of, n


def _merge(fp: FleetProblem, member_of: np.ndarray, n: int, optimistic: bool) -> FleetProblem:
    T = fp.cost.shape[1]
    supply = np.bincount(member_of, weights=fp.supply, minlength=n)
    weight = np.divide(fp.supply, supply[member_of], out=np.zeros_like(fp.supply), where=supply[member_of] > 0)
    first = np.zeros(n, np.int64)
    first[member_of[::-1]] = np.arange(len(member_of))[::-1]  # one member of each group, for what they share
    if optimistic:
        cost = np.full((n, T), np.inf)
        np.minimum.at(cost, member_of, fp.cost)
        ceiling = np.full((n, T), -np.inf)
        np.maximum.at(ceiling, member_of, fp.ceiling)
        gbps = np.full(n, np.inf)
        np.minimum.at(gbps, member_of, fp.gbps)
    else:
        stuck = np.zeros((n, T), bool)
        np.logical_or.at(stuck, member_of, ~fp.candidate)
        cost = np.zeros((n, T))
        np.add.at(cost, member_of, np.where(fp.candidate, fp.cost, 0.0) * weight[:, None])
        cost[stuck] = np.inf
        ceiling = np.full((n, T), np.inf)
        np.minimum.at(ceiling, member_of, fp.ceiling)
        ceiling[stuck] = -np.inf
        gbps = np.bincount(member_of, weights=fp.gbps * weight, minlength=n)
    cable_use = fp.cable_use[first] if fp.cable_use.size else np.zeros((n, T, fp.cable_use.shape[2]), bool)
    rows = {m: np.unique(member_of[r]) for m, r in fp.rows.items()}
    return replace(
        fp, cells=[fp.cells[i] for i in first.tolist()], slos=[fp.slos[i] for i in first.tolist()], supply=supply,
        cost=cost, load=fp.load[first], ceiling=ceiling, reason=fp.reason[first], cable_use=cable_use, gbps=gbps,
        wire_per_unit=np.bincount(member_of, weights=fp.wire_per_unit * weight, minlength=n), rtt_ms=fp.rtt_ms[first],
        kwh=fp.kwh[first], g_co2=fp.g_co2[first], rows=rows, estimates={})
