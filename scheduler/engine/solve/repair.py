"""The repair stage: batches the greedy could not fit although each fits alone are re-packed with CP-SAT together
with the batches on the pools where they come closest to fitting, under a deterministic work budget.

A re-pack is applied only if it costs less than what it replaces, so repairs never make the assignment worse.
"""

from __future__ import annotations

import numpy as np

from scheduler.engine import tolerances
from scheduler.engine.solve import exact_cpsat, greedy
from scheduler.engine.solve.problem import BatchProblem, Pairs

REPAIR_SHARE = 0.25  # of the time limit, in CP-SAT deterministic time, for re-packing around unplaced batches
MAX_REPAIRS = 200  # unplaced batches the repair looks at in one re-pack
REPAIR_ROUNDS = 3
REPAIR_POOLS = 3  # pools re-packed around each
REPACK_OPTIONS = 3  # targets outside the re-packed pools each batch may move to


def repair(p: BatchProblem, parts: list[greedy.Part], state: greedy.State, penalty: float, time_limit_s: float) -> None:
    """Batches the greedy could not fit although each fits alone: re-pack with CP-SAT the pools where they come
    closest to fitting, together with the batches on them (which may move to their cheapest targets that have room
    now), so as to make room. A re-pack is applied only if it costs less than what it replaces (unplaced weight at
    the penalty), so repairs never make the assignment worse."""
    where = greedy.where_of(parts)
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
            excess = state.load[q_of] + part.load[r, ks] - np.minimum(p.pool_cap[q_of], part.ceiling[r, ks])
            pools.update(dict.fromkeys(q_of[np.argsort(excess, kind="stable")][:REPAIR_POOLS].tolist()))
        budget -= _repack(p, parts, where, state, left, list(pools), penalty, budget / 2)


def _repack(p: BatchProblem, parts: list[greedy.Part], where: dict, state: greedy.State, extra: list[int],
            pools: list[int], penalty: float, det_limit: float) -> float:
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
        fitting = [k for k in others.tolist() if greedy.fits(p, part, state, r, k)][:REPACK_OPTIONS]
        cur = int(state.target[i]) - off
        chosen = sorted(set(mine.tolist()) | set(fitting) | ({cur} if state.target[i] >= 0 else set()))
        for k in chosen:
            bs.append(i)
            ts.append(off + k)
            cs.append(part.cost[r, k])
            ls.append(part.load[r, k])
            hs.append(part.ceiling[r, k])
    pairs = Pairs(np.array(bs, dtype=np.int64), np.array(ts, dtype=np.int64), np.array(cs, dtype=float),
                  np.array(ls, dtype=float), np.array(hs, dtype=float))
    # Every placed batch of the re-pack sits on `pools`: those start as if they were empty; every other pool
    # keeps its load and its cap (ceilings of its batches included).
    base, cap, cable_room = state.load.copy(), state.cap.copy(), state.cable_room.copy()
    for q in pools:
        base[q], cap[q] = p.used[q], p.pool_cap[q]
    inside = set(pools)
    before = 0.0
    for i in batches:
        part, r, k = greedy.pair_of(parts, where, state, p, i)
        if k < 0:
            before += penalty * p.weight[i]
            continue
        before += part.cost[r, k]
        if int(part.pool[k]) not in inside:  # an extra placed elsewhere: its load leaves that pool's base
            base[part.pool[k]] -= part.load[r, k]
        crossing = part.cables[part.region[r], k]
        cable_room[crossing] += part.gbps[r]
    hint = state.target[np.array(batches)]
    exact = exact_cpsat.solve(p, pairs, np.array(batches), exact_cpsat.Room(base, cap, cable_room), penalty, det_limit,
                              hint=hint)
    if not exact.found:
        return exact.spent
    target = exact.target
    chosen = target[pairs.batch] == pairs.target
    after = float(pairs.cost[chosen].sum()) + penalty * float(sum(p.weight[i] for i in batches if target[i] < 0))
    if after > before - tolerances.COST:
        return exact.spent
    for i in batches:  # take them all out, then put them back where CP-SAT says
        if state.target[i] >= 0:
            greedy.remove(p, parts, where, state, i)
    for q in pools:
        state.cap[q] = p.pool_cap[q]
    for i in batches:
        if target[i] >= 0:
            j, r = where[i]
            greedy.take(p, parts[j], state, i, r, int(target[i]) - p.offset[parts[j].m])
    return exact.spent
