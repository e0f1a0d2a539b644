"""The edit's effect on capacity: each pool's accelerators, and what the ledger may fill, before and after.

A pool at a site that is not up counts as 0 usable: it takes no placements.
"""

from __future__ import annotations

from dataclasses import dataclass

from scheduler.model.schema import Status, Topology


@dataclass(frozen=True)
class PoolState:
    count: int
    usable: float  # count x max_utilization, 0 when the site is not up
    site_status: str


@dataclass(frozen=True)
class PoolCapacity:
    pool: str  # site/accelerator#j, as the ledger and the metrics name it
    before: PoolState | None  # None: not in that topology
    after: PoolState | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


def pools(topology: Topology) -> dict[str, PoolState]:
    share = topology.settings.max_utilization
    return {f"{s.id}/{p.accelerator}#{j}":
            PoolState(p.count, p.count * share if s.status is Status.up else 0.0, s.status.value)
            for s in topology.sites for j, p in enumerate(s.pools)}


def capacities(before: Topology, after: Topology) -> list[PoolCapacity]:
    """Every pool of either topology, in NEW's order then the removed ones."""
    a, b = pools(before), pools(after)
    return [PoolCapacity(k, a.get(k), b.get(k)) for k in [*b, *(k for k in a if k not in b)]]
