"""The edit's effect on the fleet plan: the same demand planned on both topologies at the same hour.

A cell the plan cannot route within its SLO is refused (for capacity, cable bandwidth, latency, ...), so a
cell that *loses its SLO* is one of which less is served after the edit than before. A cell that names a
region, model or data class one side lacks is refused whole on that side, with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from scheduler.engine.core import Engine
from scheduler.engine.fleet import FleetPlan
from scheduler.engine.request import DemandCell, InvalidRequest

POLICY = "optimal"
REL_TOL = 1e-6  # of a cell's demand: the LP's rounding, not a refusal
ABS_TOL = 1e-3  # tokens/s


@dataclass(frozen=True)
class Outcome:
    served: float  # tokens/s routed within the SLO
    refused: float
    reason: str  # "ok", or why the rest is refused


@dataclass(frozen=True)
class CellImpact:
    region: str
    model: str
    data_class: str
    tokens_per_s: float
    before: Outcome
    after: Outcome

    @property
    def lost(self) -> float:
        """Tokens/s served before and refused after (0 within the solver's tolerance)."""
        drop = self.before.served - self.after.served
        return drop if drop > max(ABS_TOL, REL_TOL * self.tokens_per_s) else 0.0


@dataclass(frozen=True)
class CableImpact:
    cable: str
    capacity_before_gbps: float  # inf: not bounded
    capacity_after_gbps: float
    up_before: bool
    up_after: bool
    load_before_gbps: float  # what each plan routes over it
    load_after_gbps: float

    @property
    def overrun_by_current(self) -> bool:
        """Today's routing would not fit it after the edit (cut, or capacity below its load)."""
        usable = self.capacity_after_gbps if self.up_after else 0.0
        return self.load_before_gbps > usable * (1 + 1e-9) + 1e-9

    @property
    def full_after(self) -> bool:
        """The new plan fills it: demand beyond it would be refused for bandwidth."""
        cap = self.capacity_after_gbps
        return self.up_after and math.isfinite(cap) and self.load_after_gbps >= cap * (1 - 1e-6) > 0


@dataclass(frozen=True)
class PlanSummary:
    topology_version: str
    status: str
    cost_cny_per_hour: float
    served_tokens_per_s: float
    refused_tokens_per_s: float


@dataclass(frozen=True)
class PlanImpact:
    hour: int
    demand: str  # where the cells came from
    policy: str
    before: PlanSummary
    after: PlanSummary
    cells: list[CellImpact]
    cables: list[CableImpact]

    @property
    def lost_cells(self) -> list[CellImpact]:
        return [c for c in self.cells if c.lost > 0]

    @property
    def lost_tokens_per_s(self) -> float:
        return sum(c.lost for c in self.cells)

    @property
    def cables_over(self) -> list[CableImpact]:
        return [c for c in self.cables if c.overrun_by_current or c.full_after]


@dataclass(frozen=True)
class _Planned:
    plan: FleetPlan
    outcomes: list[Outcome]  # per input cell, in order


def plan_side(engine: Engine, cells: Sequence[DemandCell], hour: int) -> _Planned:
    """Plan the cells this topology knows; the others are refused whole, with the engine's own reason."""
    known: list[DemandCell] = []
    outcomes: list[Outcome | None] = []
    for c in cells:
        try:
            engine.check(c.as_batch())
            known.append(c)
            outcomes.append(None)
        except InvalidRequest as e:
            outcomes.append(Outcome(0.0, c.tokens_per_s, str(e)))
    fp = engine.plan(known, hour=hour, policy=POLICY)
    rows = iter(fp.rows)
    out: list[Outcome] = []
    for o in outcomes:
        if o is None:
            row = next(rows)
            served = sum(s.tokens_per_s for s in row.shares)
            o = Outcome(served, row.unserved_tokens_per_s, row.reason.label)
        out.append(o)
    return _Planned(fp, out)


def _summary(engine: Engine, p: _Planned) -> PlanSummary:
    return PlanSummary(engine.catalog.version, p.plan.status, p.plan.cost_cny_per_hour,
                       sum(o.served for o in p.outcomes), sum(o.refused for o in p.outcomes))


def _cables(before: Engine, after: Engine, a: FleetPlan, b: FleetPlan) -> list[CableImpact]:
    cap_a = dict(zip(before.catalog.cables, before.catalog.cable_capacity_gbps.tolist()))
    cap_b = dict(zip(after.catalog.cables, after.catalog.cable_capacity_gbps.tolist()))
    down_a, down_b = before.catalog.network.down_cables(), after.catalog.network.down_cables()
    names = [*cap_b, *(c for c in cap_a if c not in cap_b)]
    return [CableImpact(c, cap_a.get(c, 0.0), cap_b.get(c, 0.0), c in cap_a and c not in down_a,
                        c in cap_b and c not in down_b, a.cable_load_gbps.get(c, 0.0),
                        b.cable_load_gbps.get(c, 0.0))
            for c in names]


def plan_impact(before: Engine, after: Engine, cells: Sequence[DemandCell], hour: int,
                source: str) -> PlanImpact:
    a = plan_side(before, cells, hour)
    # The same topology (an edit of comments or layout only) is planned once: its plan cannot differ.
    b = a if after.catalog.topology == before.catalog.topology else plan_side(after, cells, hour)
    impacts = [CellImpact(c.region, c.model, c.data_class, c.tokens_per_s, x, y)
               for c, x, y in zip(cells, a.outcomes, b.outcomes)]
    return PlanImpact(hour, source, POLICY, _summary(before, a), _summary(after, b), impacts,
                      _cables(before, after, a.plan, b.plan))
