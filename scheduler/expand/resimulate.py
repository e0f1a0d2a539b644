"""Proof by re-simulation: the scenario again with the additions as add_accelerators events on their days, and,
where demand stays refused, what no allowed addition can fix."""

from __future__ import annotations

import numpy as np

from scheduler.engine.request import Reason
from scheduler.expand.model import Additions, Evaluation
from scheduler.expand.steps import Instance
from scheduler.sim.loop import Run, simulate
from scheduler.sim.scenario import AddAccelerators, Event, Scenario, clock

JUDGED_POLICY = "optimal"  # the policy the additions are planned for and judged by
REFUSED = 1e-6


def events(inst: Instance, a: Additions) -> list[Event]:
    """One add_accelerators event per tranche, at 00:00 of the day it is online by."""
    out = []
    for o, d, n in a.tranches():
        opt = inst.options[o]
        out.append(Event(at=clock((d - 1) * 1440.0, always_day=True), label=f"+{n} {opt.accelerator} at {opt.site}",
                         add_accelerators=AddAccelerators(site=opt.site, accelerator=opt.accelerator, count=n)))
    return out


def scenario_with(inst: Instance, a: Additions) -> Scenario:
    """The horizon's scenario, its policies plus the judged one, and the additions' events."""
    s = inst.scenario
    policies = list(s.policies) if JUDGED_POLICY in s.policies else [*s.policies, JUDGED_POLICY]
    return s.model_copy(update={"events": [*s.events, *events(inst, a)], "policies": policies})


def resimulate(inst: Instance, a: Additions) -> Run:
    return simulate(scenario_with(inst, a), inst.topology, inst.version)


def unfixable(inst: Instance, ev: Evaluation) -> list[str]:
    """Why demand the optimum still refuses stays refused, per demand profile: the first reason that holds."""
    found: dict[tuple[str, str, str], str] = {}
    for k, s in enumerate(inst.steps):
        fp = s.fp
        for g in np.flatnonzero(ev.unserved[k] > REFUSED * np.maximum(fp.supply, 1e-300)).tolist():
            cell = fp.cells[g]
            key = (cell.region, cell.model, cell.data_class)
            if key in found:
                continue
            name = f"{cell.region} / {cell.model} / {cell.data_class}"
            option_pools = {s.option_pool[o.index]: o for o in inst.options}
            if not fp.candidate[g].any():
                reason = Reason(int(fp.reason[g].max())) if fp.reason.shape[1] else Reason.NOT_SERVED
                found[key] = f"{name}: no site, existing or optional, can serve it ({reason.label})"
                continue
            pools = {int(fp.pool[t]) for t in np.flatnonzero(fp.candidate[g]).tolist()}
            usable = [option_pools[q] for q in pools if q in option_pools]
            if not usable:
                found[key] = (f"{name}: refused from day {s.day}; no option grows a pool that can serve it "
                              f"(sites within its SLO: {', '.join(sorted({fp.cat.pools[q].site for q in pools}))})")
            elif all(o.first_day() > s.day for o in usable):
                first = min(o.first_day() for o in usable)
                found[key] = (f"{name}: refused on day {s.day}, before any option that can serve it is online "
                              f"(the first, day {first}, lead time)")
            else:
                found[key] = (f"{name}: refused from day {s.day}; the options that can serve it "
                              f"({', '.join(o.label for o in usable)}) are at their count, power or budget limit")
    return list(found.values())
