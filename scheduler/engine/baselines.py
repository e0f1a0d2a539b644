"""Batch-level baselines: `nearest` (lowest RTT) and `cheapest-greedy` (lowest cost), one batch at a time.

Each takes the batches in request order and gives each the best target by its preference among those that are
feasible *now*, with no look-ahead: the same filter and scores as the engine (`solve.problem.build`), the same rule as
`Engine.place` (the batch's own load counts towards queueing; pools stay under their capacity and under the
ceilings of the batches already placed on them; cables keep their bandwidth). They return the engine's
`Assignment`, so benchmarks and the simulator compare like with like. (Fleet-level baselines are in fleet.py.)
"""

from __future__ import annotations

import time

import numpy as np

from scheduler.engine.solve import greedy
from scheduler.engine.solve import problem as joint
from scheduler.engine.request import Reason

POLICIES = ("nearest", "cheapest-greedy")
TIE_WEIGHT = 1e-9  # `nearest` breaks RTT ties by cost, weighted this little


def solve(p: joint.BatchProblem, policy: str, keep_promises: bool = True) -> joint.Assignment:
    """Place `p`'s batches one at a time in order, each on its preferred feasible target given the earlier ones.

    With `keep_promises=False` a placement is judged only by the load it sees when it is made (the pool's
    capacity, and its own latency with itself on the pool), not by the SLOs of the batches placed before it: the
    naive router, whose earlier promises later placements may break. For measuring that, not for serving."""
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; choose from {', '.join(POLICIES)}")
    start = time.perf_counter()
    parts = greedy.parts_of(p)
    state = greedy.fresh_state(p)
    state.keep_promises = keep_promises
    where: dict[int, tuple[int, int]] = {}
    orders = []
    for j, part in enumerate(parts):
        key = part.cost if policy == "cheapest-greedy" else p.est[part.m].rtt_ms + TIE_WEIGHT * part.cost  # ties: cheaper
        orders.append(np.argsort(np.where(part.ok, key, np.inf), axis=1, kind="stable"))
        for r, i in enumerate(part.rows.tolist()):
            where[i] = (j, r)
    for i in range(len(p.batches)):
        if i not in where:
            continue
        j, r = where[i]
        part = parts[j]
        n = int(part.ok[r].sum())
        if n:
            greedy.place_first(p, part, state, i, r, orders[j][r, :n].tolist())
    target = state.target
    reason = joint.unplaced_reasons(p)
    placed = target >= 0
    reason[placed] = Reason.OK
    reason[~placed & (reason == Reason.OK)] = Reason.CAPACITY  # feasible alone, but earlier batches took the room
    penalty = joint.penalty_of(p)
    cost = joint.assigned_cost(p, target)
    objective = cost + penalty * float(p.weight[~placed].sum())
    return joint.Assignment(target, reason, "HEURISTIC", objective, cost, float("nan"), time.perf_counter() - start,
                            policy if keep_promises else f"{policy} (no promises)", penalty,
                            joint.unavoidable_penalty(p, penalty))
