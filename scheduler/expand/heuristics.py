"""The baselines the optimum must beat, priced by the same function (model.evaluate) on the same steps.

Both grow capacity where demand is refused, in rounds: price the additions so far, and for every refused cell at
every representative step pick one option that can serve it (its pool is a candidate for the cell, it is online
by that day, it has room under its count, its site's power limit and the budget), sized to carry what is refused
at the pool's ceiling; each option gets, online by each day, the most any step of that day asked of it. Repeat
until nothing is refused that an option could take.

- `cheapest-power`: the option whose electricity per token (kWh x the site's price at that hour) is lowest;
- `nearest`: the option with the lowest round-trip time to the refused demand's region.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from scheduler import costs
from scheduler.expand.model import Additions, Evaluation, evaluate, spend
from scheduler.expand.options import Option
from scheduler.expand.steps import Instance, StepProblem

HEURISTICS = ("cheapest-power", "nearest")
MAX_ROUNDS = 25
REFUSED = 1e-6  # share of a cell's demand below which it counts as served

Rank = Callable[[StepProblem, int, int], float]  # (step, cell, target) -> lower is preferred


def power_price(s: StepProblem, g: int, t: int) -> float:
    """CNY of electricity per unit of the cell's demand on the target, at the step's hour."""
    cat = s.fp.cat
    site = cat.topology.site(cat.sites[int(s.fp.site[t])])
    tariff = next(x for x in cat.topology.tariffs if x.id == site.tariff)
    return float(s.fp.kwh[g, t]) * float(costs.hourly_prices(tariff)[s.hour])


def round_trip(s: StepProblem, g: int, t: int) -> float:
    return float(s.fp.rtt_ms[g, t])


RANKS: dict[str, Rank] = {"cheapest-power": power_price, "nearest": round_trip}


def run(inst: Instance, name: str, budget: float | None = None) -> Evaluation:
    """The baseline's additions, priced."""
    rank = RANKS[name]
    a = Additions()
    ev = evaluate(inst, a)
    for _ in range(MAX_ROUNDS):
        grown = _round(inst, ev, rank, a, budget)
        if grown == a:
            break
        a = grown
        ev = evaluate(inst, a)
    return ev


def _target(s: StepProblem, g: int, o: Option) -> int | None:
    """The option's target for the cell: its pool serving the cell's model, if a candidate."""
    q = s.option_pool[o.index]
    cols = np.flatnonzero((s.fp.pool == q) & s.fp.candidate[g])
    return int(cols[0]) if len(cols) else None


def _round(inst: Instance, ev: Evaluation, rank: Rank, a: Additions, budget: float | None) -> Additions:
    need: dict[tuple[int, int], float] = {}  # (option, day) -> accelerators some step of that day asks for
    counts = dict(a.counts)
    power = {site: 0.0 for site in inst.headroom_mw}
    for o, _, n in a.tranches():
        power[inst.options[o].site] += n * inst.options[o].mw_per_accelerator
    open_ = [o for o in inst.options if _allowed(inst, o, o.first_day(), 1, 1, counts, power, budget) > 0]
    for k, s in enumerate(inst.steps):
        asked: dict[int, float] = {}
        for g in np.flatnonzero(ev.unserved[k] > REFUSED * np.maximum(s.fp.supply, 1e-300)).tolist():
            best = None
            for o in open_:
                t = _target(s, g, o)
                if t is None or o.first_day() > s.day:
                    continue
                key = (rank(s, g, t), o.index)
                if best is None or key < best[0]:
                    best = (key, o, t)
            if best is None:
                continue
            _, o, t = best
            per_acc = min(float(s.per_accelerator[g, t]), s.max_utilization)
            asked[o.index] = asked.get(o.index, 0.0) + float(ev.unserved[k][g] * s.fp.load[g, t]) / per_acc
        for o, acc in asked.items():
            need[o, s.day] = max(need.get((o, s.day), 0.0), acc)
    for o in inst.options:
        running, added = 0.0, 0  # what this round asks of the option by each day, and has given it so far
        for d in range(1, inst.days + 1):
            if (o.index, d) not in need:
                continue
            running = max(running, need[o.index, d])
            n = _allowed(inst, o, d, math.ceil(running - 1e-9) - added, Additions(counts).size(o.index, d), counts,
                         power, budget)
            if n > 0:
                counts[o.index, d] = counts.get((o.index, d), 0) + n
                power[o.site] += n * o.mw_per_accelerator
                added += n
    return Additions(counts)


def _allowed(inst: Instance, o: Option, day: int, wanted: int, size: int, counts: dict, power: dict,
             budget: float | None) -> int:
    """As many of `wanted` as the option's count, its site's power, its first tranche and the budget allow."""
    if wanted <= 0:
        return 0
    if o.new_pool and size == 0:
        wanted = max(wanted, o.min_count)
    room = o.max_count - sum(n for (i, _), n in counts.items() if i == o.index)
    room = min(room, int((inst.headroom_mw[o.site] - power[o.site]) / o.mw_per_accelerator + 1e-9))
    if budget is not None:
        left = budget - spend(inst, Additions(counts))
        room = min(room, int(left / max(o.spend(1, inst.hours_online(day)), 1e-300)))
    n = min(wanted, room)
    if o.new_pool and size == 0 and n < o.min_count:
        return 0
    return max(n, 0)
