"""A workaround for an engine limitation: GLOP sometimes gives up on the fleet LP for numerical reasons.

The fleet LP's costs are CNY per token (~1e-7 to 1e-5) while supplies are tokens/s (~1e5 to 1e6); on a few percent of
such instances GLOP answers ABNORMAL, and `fleet.plan` then returns status "ERROR" with every token unserved.
The same LP at another scale solves: with every pool count, every cable capacity and every demand multiplied by s,
supplies and capacities scale by s while costs, loads, latencies and utilizations are unchanged, so the optimum is
the original one times s. We plan that scaled world through the same `Engine.plan` and divide the result back.
This belongs in the engine (scale the LP's costs, e.g. to CNY per million tokens); until then, the simulator asks
again rather than reporting a solver failure as refused demand.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

from scheduler.engine.catalog import Catalog
from scheduler.engine.core import Engine
from scheduler.engine.fleet import FleetPlan, PlanRow
from scheduler.engine.request import DemandCell
from scheduler.network import NetworkModel

SCALES = (0.1, 0.01, 0.001, 10.0, 100.0)
FAILED = "ERROR"


def plan(engine: Engine, cells: list[DemandCell], hour: int, policy: str) -> tuple[FleetPlan, int]:
    """Engine.plan, and if the LP failed numerically, the same plan solved at another scale.

    Returns the plan and how many rescaled attempts it took (0: the engine's own answer was used).
    """
    first = engine.plan(cells, hour, policy)
    if first.status != FAILED:
        return first, 0
    for attempt, s in enumerate(SCALES, start=1):
        scaled = _scaled_engine(engine.catalog, s).plan([_times(c, s) for c in cells], hour, policy)
        if scaled.status != FAILED:
            return _unscale(scaled, cells, s, first), attempt
    return first, len(SCALES)


def _times(c: DemandCell, s: float) -> DemandCell:
    return replace(c, tokens_per_s=c.tokens_per_s * s)


@lru_cache(maxsize=64)
def _scaled_engine(cat: Catalog, s: float) -> Engine:
    """The catalog's world with s times the accelerators and cable bandwidth (latency and prices unchanged)."""
    topo = cat.topology
    sites = [x.model_copy(update={"pools": [p.model_copy(update={"count": p.count * s}) for p in x.pools]})
             for x in topo.sites]
    cables = [c.model_copy(update={"capacity_gbps": c.capacity_gbps * s if c.capacity_gbps else None})
              for c in topo.cables]
    big = topo.model_copy(update={"sites": sites, "cables": cables})
    return Engine(Catalog(big, NetworkModel(big, dict(cat.network.overrides)), cat.version))


def _unscale(p: FleetPlan, cells: list[DemandCell], s: float, original: FleetPlan) -> FleetPlan:
    rows = [
        PlanRow(cell, [replace(sh, tokens_per_s=sh.tokens_per_s / s) for sh in r.shares],
                r.unserved_tokens_per_s / s, r.reason)
        for cell, r in zip(cells, p.rows)
    ]
    return FleetPlan(original.topology_version, p.hour, p.policy, f"{p.status} (rescaled x{s:g})", rows,
                     p.cost_cny_per_hour / s, dict(p.pool_utilization),
                     {c: g / s for c, g in p.cable_load_gbps.items()}, p.seconds + original.seconds)



def quiet_solver_logs() -> None:
    """Keep OR-Tools' C++ log (one 'No solution exists' line per failed LP) off the planner's terminal.

    Process-wide, so only the simulate/sweep commands call it, never the library.
    """
    from ortools.init.python import init

    global _QUIET
    if _QUIET:
        return
    flags = init.CppFlags()
    flags.stderrthreshold = 3  # absl FATAL: errors that the simulator handles stay quiet
    init.CppBridge.set_flags(flags)
    _QUIET = True


_QUIET = False
