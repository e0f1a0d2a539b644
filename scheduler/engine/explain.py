"""Why one batch went nowhere, and why each site lost: the one copy of the explanation behind `Engine.place`'s two
paths (place.decide on arrays, place.decide_one on plain floats).

Each site is explained by its best pool: the target that got furthest through the checks, and among those that
failed the same check, the one closest to passing it (lowest latency over its SLO; most room left; the first for
the other checks). The rejection table names that pool and its figure, and the closest miss of an unplaced
decision is the best of those same site explanations, so the two always agree.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from scheduler.engine.request import Reason, Slo

OK, TTFT, E2E, CAPACITY, CABLE = (int(r) for r in (Reason.OK, Reason.TTFT, Reason.E2E, Reason.CAPACITY,
                                                   Reason.CABLE))
_PASSED = 100  # the rank of a feasible target: past every check
_INF = math.inf
_BIG = sys.float_info.max
_REASON = {int(r): r for r in Reason}
_new = object.__new__


@dataclass(frozen=True)
class Rejection:
    site: str
    reason: Reason
    detail: str


@dataclass(slots=True)
class Misses:
    """One batch against one model's targets, as plain per-target values: what the explanation reads.

    `code`: each target's reason (OK where feasible); `before_own_load`: its reason before the batch's own load was
    counted on the pool (a TTFT/E2E that appears only with it says so); `latency(t)`: (TTFT, end to end) in ms with
    the batch on the pool, asked only for the targets explained; `load`, `cap`, `capacity` per target and
    `pool_used(t)`: the batch's load, the pool's cap (capacity, lowered by live promises), its capacity and its load.
    """

    slo: Slo
    sites: Sequence[str]  # every site of the catalog
    site_targets: Sequence[Sequence[int]]  # per site, its targets of the model (none: it does not serve it)
    site_of: Sequence[str]  # per target, its site's name
    pool_of: Sequence[str]  # per target, its pool's key
    code: Sequence[int]
    before_own_load: Sequence[int]
    latency: Callable[[int], tuple[float, float]]
    load: Sequence[float]
    cap: Sequence[float]
    capacity: Sequence[float]
    pool_used: Callable[[int], float]

    def closeness(self, t: int) -> float:
        """How near target t came to passing the check it failed (lower is nearer): latency over its SLO, or minus
        the room left on its pool; 0 for the other checks (the first target wins)."""
        code = self.code[t]
        if code == TTFT:
            x = _ratio(self.latency(t)[0], self.slo.ttft_ms)
        elif code == E2E:
            x = _ratio(self.latency(t)[1], self.slo.e2e_ms)
        elif code == CAPACITY:
            return -(self.cap[t] - self.pool_used(t))
        else:
            return 0.0
        # as np.nan_to_num(nan=inf) would: nan counts as inf, and inf as the largest finite float
        return _INF if x != x else _BIG if x == _INF else -_BIG if x == -_INF else x

    def best_of_site(self, targets: Sequence[int]) -> int:
        """The target that speaks for a site: the furthest through the checks, then the nearest to passing, then
        the first."""
        code = self.code
        best = targets[0]
        rank = _PASSED if code[best] == OK else code[best]
        tied = False
        for t in targets[1:]:
            k = _PASSED if code[t] == OK else code[t]
            if k > rank:
                best, rank, tied = t, k, False
            elif k == rank:
                tied = True
        if tied and rank != _PASSED and rank in (TTFT, E2E, CAPACITY):
            near = self.closeness(best)
            for t in targets:
                if t != best and code[t] == code[best]:
                    x = self.closeness(t)
                    if x < near or (x == near and t < best):
                        best, near = t, x
        return best

    def explained(self, todo: list[tuple[int, Sequence[int]]] | None = None) -> list[tuple[str, int]]:
        """(site, its best target; -1 when it does not serve the model) for every site without a feasible target,
        in site order; `todo`: `to_explain`'s answer, when the caller has it."""
        out = []
        code, sites = self.code, self.sites
        for s, targets in to_explain(code, self.site_targets) if todo is None else todo:
            if not targets:
                out.append((sites[s], -1))
                continue
            t = self.best_of_site(targets) if len(targets) > 1 else targets[0]
            if code[t] != OK:
                out.append((sites[s], t))
        return out

    def rejections(self, explained: list[tuple[str, int]] | None = None) -> list[Rejection]:
        out = []
        for site, t in self.explained() if explained is None else explained:
            if t < 0:
                out.append(_rejection(site, Reason.NOT_SERVED, Reason.NOT_SERVED.label))
            else:
                out.append(_rejection(site, _REASON[self.code[t]], self.detail(t)))
        return out

    def detail(self, t: int) -> str:
        """Why target t (a site's best) lost, naming its pool."""
        code, pool, slo = self.code[t], self.pool_of[t], self.slo
        own = " with this batch on the pool" if self.before_own_load[t] == OK else ""
        if code == TTFT:
            return f"ttft {self.latency(t)[0]:.0f} ms > SLO {slo.ttft_ms:.0f} ms on {pool}{own}"
        if code == E2E:
            return f"end-to-end {self.latency(t)[1]:.0f} ms > SLO {slo.e2e_ms:.0f} ms on {pool}{own}"
        if code == CAPACITY:
            c, cap = self.capacity[t], self.cap[t]
            limit = (f"{c:.1f} accelerators" if cap >= c
                     else f"{cap:.1f} accelerators (SLOs already promised on it allow no more)")
            return f"pool {pool} holds {self.pool_used(t):.1f} of {limit}, needs {self.load[t]:.2f}"
        if code == CABLE:
            return f"{_REASON[code].label} on the route to {pool}"
        return _REASON[code].label

    def unplaced(self, explained: list[tuple[str, int]] | None = None) -> tuple[Reason, str]:
        """No feasible target: whether capacity, the SLO or eligibility is to blame, and the closest miss, which is
        the best explained site's pool, with the figure its rejection gives."""
        bests = [t for _, t in (self.explained() if explained is None else explained) if t >= 0]
        codes = [self.code[t] for t in bests]
        if any(c >= CAPACITY for c in codes):
            r = CAPACITY if CAPACITY in codes else CABLE
            t = _nearest(self, [t for t in bests if self.code[t] == r])
            if r == CAPACITY:
                closest = (f"; closest miss: {self.site_of[t]} ({self.pool_of[t]}) has "
                           f"{max(self.cap[t] - self.pool_used(t), 0.0):.2f} accelerators free, "
                           f"needs {self.load[t]:.2f}")
            else:
                closest = f"; e.g. {self.site_of[t]} ({self.pool_of[t]})"
            reason = _REASON[r]
            return reason, f"every site that meets the SLO is full ({reason.label}){closest}"
        if TTFT in codes or E2E in codes:
            t = _nearest(self, [t for t in bests if self.code[t] in (TTFT, E2E)])
            reason = _REASON[self.code[t]]
            ttft, e2e = self.latency(t)
            what = (f"ttft {ttft:.0f} ms > {self.slo.ttft_ms:.0f} ms" if reason is Reason.TTFT
                    else f"end-to-end {e2e:.0f} ms > {self.slo.e2e_ms:.0f} ms")
            return reason, f"no site meets the SLO; closest miss: {self.site_of[t]} ({self.pool_of[t]}) with {what}"
        worst = max(self.code, default=int(Reason.NOT_SERVED))
        reason = _REASON[worst] if len(self.code) else Reason.NOT_SERVED
        return reason, f"no eligible site: {reason.label}" + ("" if len(self.code) else
                                                               " (no pool serves this model)")


def to_explain(code: Sequence[int], site_targets: Sequence[Sequence[int]]) -> list[tuple[int, Sequence[int]]]:
    """(site, its targets) of the sites that may need explaining: those whose first target is not feasible (a
    feasible one speaks for its site). Cheap, so a caller with nothing to explain builds no `Misses`."""
    return [(s, targets) for s, targets in enumerate(site_targets) if not targets or code[targets[0]] != OK]


def _rejection(site: str, reason: Reason, detail: str) -> Rejection:
    """A Rejection without its __init__ (a frozen dataclass's sets its fields one by one, slowly: Engine.place's hot
    path builds one per site it explains)."""
    r = _new(Rejection)
    r.__dict__.update(site=site, reason=reason, detail=detail)
    return r


def _nearest(m: Misses, targets: list[int]) -> int:
    """The target nearest to passing its check (the first among equals)."""
    best, near = targets[0], m.closeness(targets[0])
    for t in targets[1:]:
        x = m.closeness(t)
        if x < near:
            best, near = t, x
    return best


def _ratio(a: float, b: float) -> float:
    """a / b as numpy divides floats (no exception at b == 0)."""
    if b:
        return a / b
    return math.nan if a != a or a == 0 else math.copysign(_INF, a) * math.copysign(1.0, b)
