"""The fleet baselines: each cell in turn fills its targets in order of preference (`cheapest-greedy`: cost;
`nearest`: RTT), under the same rules as `optimal`: a pool fills only up to the least ceiling of the cells on it,
and cables only up to their bandwidth."""

from __future__ import annotations

import numpy as np

from scheduler.engine.fleet.problem import FleetProblem


def fill(fp: FleetProblem, preference: np.ndarray) -> np.ndarray:
    """(G, T) flows; `preference` (G, T) ranks each cell's targets, lowest first (inf: never)."""
    flow = np.zeros_like(fp.cost)
    level = fp.cap.copy()  # each pool's limit: its cap, lowered to the ceiling of every cell it takes
    load = fp.used.copy()
    cable_free = fp.cable_free.copy()
    for g in range(len(fp.supply)):
        left = fp.supply[g]
        for t in np.argsort(preference[g], kind="stable").tolist():
            if left <= 1e-12 * fp.supply[g] or not np.isfinite(preference[g, t]) or not fp.candidate[g, t]:
                break
            q = fp.pool[t]
            limit = min(level[q], fp.ceiling[g, t])
            room = (limit - load[q]) / fp.load[g, t]
            crossing = fp.cable_use[g, t] if fp.cable_use.size else np.zeros(0, bool)
            if crossing.any() and fp.gbps[g] > 0:
                room = min(room, float(cable_free[crossing].min()) / fp.gbps[g])
            x = min(left, room)
            if x > 0:
                flow[g, t] = x
                left -= x
                level[q] = limit
                load[q] += x * fp.load[g, t]
                cable_free[crossing] -= x * fp.gbps[g]
    return flow


def preference(fp: FleetProblem, policy: str) -> np.ndarray:
    """What each baseline ranks targets by: cost for `cheapest-greedy`, RTT for `nearest`."""
    return fp.cost if policy == "cheapest-greedy" else np.where(fp.candidate, fp.rtt_ms, np.inf)
