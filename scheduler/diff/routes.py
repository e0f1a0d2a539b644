"""The edit's effect on the network: per region, the sites whose round trip moves, routes that change cables.

Both sides are routed as their files stand (cables the file marks down are down), over the regions and sites
both topologies have; sites and regions that come or go are listed as changes already.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scheduler.network import NetworkModel, Route

RTT_THRESHOLD_MS = 1.0  # smaller moves are rounding and re-measurement, not news


@dataclass(frozen=True)
class RouteMove:
    region: str
    site: str
    rtt_before_ms: float  # inf: unreachable
    rtt_after_ms: float
    cables_before: tuple[str, ...] | None  # None: unreachable
    cables_after: tuple[str, ...] | None

    @property
    def rtt_moved(self) -> bool:
        if math.isinf(self.rtt_before_ms) or math.isinf(self.rtt_after_ms):
            return self.rtt_before_ms != self.rtt_after_ms
        return abs(self.rtt_after_ms - self.rtt_before_ms) > RTT_THRESHOLD_MS

    @property
    def cables_changed(self) -> bool:
        if self.cables_before is None or self.cables_after is None:
            return self.cables_before != self.cables_after
        return set(self.cables_before) != set(self.cables_after)


def _side(route: Route | None) -> tuple[float, tuple[str, ...] | None]:
    return (math.inf, None) if route is None else (route.rtt_ms, route.cables)


def route_moves(before: NetworkModel, after: NetworkModel) -> list[RouteMove]:
    """(region, site) pairs whose RTT moves by more than 1 ms or whose route crosses other cables."""
    sites = [s.id for s in after.topology.sites if s.id in {x.id for x in before.topology.sites}]
    regions = [r.id for r in after.topology.regions if r.id in {x.id for x in before.topology.regions}]
    out = []
    for region in regions:
        for site in sites:
            rtt_a, cab_a = _side(before.route(region, site))
            rtt_b, cab_b = _side(after.route(region, site))
            move = RouteMove(region, site, rtt_a, rtt_b, cab_a, cab_b)
            if move.rtt_moved or move.cables_changed:
                out.append(move)
    return out
