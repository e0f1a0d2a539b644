"""One diff report: the edit, its network, capacity and plan impact, and the exit code a CI job acts on."""

from __future__ import annotations

from dataclasses import dataclass

from scheduler.diff.capacity import PoolCapacity, capacities
from scheduler.diff.changes import Change, Side, changes
from scheduler.diff.demand import Demand
from scheduler.diff.plans import PlanImpact, plan_impact
from scheduler.diff.routes import RouteMove, route_moves
from scheduler.engine.core import Engine
from scheduler.model.loader import Loaded

OK = 0  # the edit refuses no demand served before
INVALID = 1  # a file does not validate (its FILE:LINE problems are printed)
REFUSES = 3  # the edit would refuse demand served before: hold it for review


@dataclass(frozen=True)
class DiffReport:
    old: str
    new: str
    old_version: str
    new_version: str
    changes: list[Change]
    routes: list[RouteMove]
    pools: list[PoolCapacity]
    plan: PlanImpact

    @property
    def exit_code(self) -> int:
        return REFUSES if self.plan.lost_cells else OK


def diff(old: Loaded, new: Loaded, demand: Demand) -> DiffReport:
    a, b = Side.read(old.value, old.path), Side.read(new.value, new.path)
    before = Engine.from_topology(old.value, old.version)
    after = Engine.from_topology(new.value, new.version)
    return DiffReport(
        old.path, new.path, old.version, new.version, changes(a, b),
        route_moves(before.catalog.network, after.catalog.network),
        capacities(old.value, new.value),
        plan_impact(before, after, demand.cells, demand.hour, demand.source),
    )
