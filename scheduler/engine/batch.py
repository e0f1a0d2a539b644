"""Many batches at once: one site each (or an explicit "unplaced"), capacities and cable bandwidth respected, cost
minimised.

Small instances go to CP-SAT whole and come back proven optimal. Large ones are solved the way their structure
allows: batches with the same region, model, data class and set of feasible targets are interchangeable, so a
transportation LP over those groups (hundreds of rows, not millions of pairs) gives the routing; each group's
batches are then packed into its LP quotas, and only what that rounding leaves goes to CP-SAT. A second LP, over
the same groups with every coefficient at its group minimum, is a valid lower bound for the gap we report.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from ortools.sat.python import cp_model

from scheduler.engine import transport
from scheduler.engine.catalog import Catalog
from scheduler.engine.estimate import BatchArrays, Estimates, estimate
from scheduler.engine.place import capacity_reasons
from scheduler.engine.request import Batch, Reason, Slo

EXACT_PAIRS = 4000  # feasible (batch, target) pairs up to which CP-SAT solves the whole instance
RESIDUAL_PAIRS = 20000  # pairs up to which CP-SAT re-solves what rounding left; beyond, cheapest-first greedy
COST_SCALE = 1e8  # CP-SAT integer units per CNY
LOAD_SCALE = 1e4  # CP-SAT integer units per accelerator / Gbps
SEED = 7


@dataclass(frozen=True)
class Assignment:
    """Per batch: global target index or -1, with the reason for the unplaced."""

    target: np.ndarray  # (B,) int
    reason: np.ndarray  # (B,) Reason codes; OK where placed
    status: str
    objective: float  # CNY of placed batches + penalty for unplaced weight
    cost: float  # CNY of placed batches
    best_bound: float
    seconds: float
    method: str


@dataclass
class Problem:
    """Every batch against every target, the targets of all models side by side."""

    cat: Catalog
    batches: list[Batch]
    hour: int
    models: list[str]
    offset: dict[str, int]  # first global target of each model
    rows: dict[str, np.ndarray]  # batch indices of each model
    est: dict[str, Estimates]
    reason: dict[str, np.ndarray]  # (B_m, T_m) after capacity pre-check
    pool: np.ndarray  # (T,) pool of each global target
    site: np.ndarray  # (T,) site of each global target
    region: np.ndarray  # (B,) region index
    weight: np.ndarray  # (B,) output-equivalent tokens
    pool_free: np.ndarray
    cable_free: np.ndarray

    @property
    def n_targets(self) -> int:
        return len(self.pool)

    def pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """All feasible (batch, global target) pairs with their cost and load."""
        bs, ts, cs, ls = [], [], [], []
        for m in self.models:
            r, c = np.nonzero(self.reason[m] == Reason.OK)
            bs.append(self.rows[m][r])
            ts.append(c + self.offset[m])
            cs.append(self.est[m].cost_cny[r, c])
            ls.append(self.est[m].load[r, c])
        return (np.concatenate(bs), np.concatenate(ts), np.concatenate(cs), np.concatenate(ls))

    def gbps(self) -> np.ndarray:
        out = np.zeros(len(self.batches))
        for m in self.models:
            out[self.rows[m]] = self.est[m].gbps
        return out

    def crosses(self, b: np.ndarray, t: np.ndarray) -> np.ndarray:
        """(N, C) cables crossed by each (batch, global target) pair."""
        return self.cat.route_cables[self.region[b], self.site[t]]


def build(cat: Catalog, batches: list[Batch], slos: list[Slo], hour: int, used: np.ndarray,
          cable_used: np.ndarray) -> Problem:
    models = [m for m in cat.by_model if any(b.model == m for b in batches)]
    model_of = np.array([b.model for b in batches])
    region = np.array([cat.region_index[b.region] for b in batches], dtype=np.int64)
    offset, rows, est, reason, pools, sites = {}, {}, {}, {}, [], []
    n = 0
    weight = np.zeros(len(batches))
    for m in models:
        mt = cat.by_model[m]
        idx = np.flatnonzero(model_of == m)
        arrays = BatchArrays(
            region=region[idx],
            input_tokens=np.array([batches[i].input_tokens for i in idx], dtype=float),
            output_tokens=np.array([batches[i].output_tokens for i in idx], dtype=float),
            requests=np.array([batches[i].requests for i in idx], dtype=float),
            ttft_slo=np.array([slos[i].ttft_ms for i in idx]),
            e2e_slo=np.array([slos[i].e2e_ms for i in idx]),
            data_class=[batches[i].data_class for i in idx],
        )
        e = estimate(cat, mt, arrays, hour, used)
        offset[m], rows[m], est[m] = n, idx, e
        reason[m] = capacity_reasons(cat, mt, e, arrays.region, used, cable_used)
        weight[idx] = (arrays.output_tokens + arrays.input_tokens / mt.speedup) * arrays.requests
        pools.append(mt.pool)
        sites.append(mt.site)
        n += len(mt)
    return Problem(
        cat, batches, hour, models, offset, rows, est, reason,
        np.concatenate(pools) if pools else np.zeros(0, np.int64),
        np.concatenate(sites) if sites else np.zeros(0, np.int64),
        region, weight, cat.pool_capacity - used, cat.cable_capacity_gbps - cable_used,
    )


def unplaced_reasons(p: Problem) -> np.ndarray:
    """The furthest check any target got to: what stopped the batch."""
    out = np.full(len(p.batches), Reason.NOT_SERVED, dtype=np.int8)
    for m in p.models:
        if p.reason[m].shape[1]:
            out[p.rows[m]] = p.reason[m].max(axis=1)
    return out


def solve(p: Problem, time_limit_s: float = 2.0, exact_pairs: int = EXACT_PAIRS) -> Assignment:
    start = time.perf_counter()
    b, t, c, load = p.pairs()
    penalty = transport.unserved_penalty(c / p.weight[b]) if len(b) else 1.0
    if len(b) <= exact_pairs:
        target, status, bound = _cp_sat(p, b, t, c, load, p.pool_free.copy(), p.cable_free.copy(), penalty,
                                        time_limit_s)
        method = "cp-sat"
    else:
        target, status, bound = _lp_round(p, b, t, c, load, penalty, start, time_limit_s)
        method = "lp+rounding+cp-sat"
    reason = unplaced_reasons(p)
    placed = target >= 0
    reason[placed] = Reason.OK
    reason[~placed & (reason == Reason.OK)] = Reason.CAPACITY  # feasible alone, but the capacity went to others
    cost = _assigned_cost(p, target)
    objective = cost + penalty * float(p.weight[~placed].sum())
    bound = min(bound, objective)
    return Assignment(target, reason, status, objective, cost, bound, time.perf_counter() - start, method)


def _assigned_cost(p: Problem, target: np.ndarray) -> float:
    total = 0.0
    for m in p.models:
        tt = target[p.rows[m]]
        ok = tt >= 0
        total += float(p.est[m].cost_cny[np.flatnonzero(ok), tt[ok] - p.offset[m]].sum())
    return total


def _cp_sat(p: Problem, b: np.ndarray, t: np.ndarray, c: np.ndarray, load: np.ndarray, pool_free: np.ndarray,
            cable_free: np.ndarray, penalty: float, time_limit_s: float,
            subset: np.ndarray | None = None) -> tuple[np.ndarray, str, float]:
    """Exact assignment of the batches in `subset` (default all) over their feasible pairs."""
    batches = np.arange(len(p.batches)) if subset is None else subset
    target = np.full(len(p.batches), -1, dtype=np.int64)
    keep = np.isin(b, batches)
    b, t, c, load = b[keep], t[keep], c[keep], load[keep]
    model = cp_model.CpModel()
    x = [model.new_bool_var("") for _ in range(len(b))]
    unplaced = {int(i): model.new_bool_var("") for i in batches}
    by_batch: dict[int, list[int]] = {}
    for k, i in enumerate(b.tolist()):
        by_batch.setdefault(i, []).append(k)
    for i, u in unplaced.items():
        model.add_exactly_one([u, *(x[k] for k in by_batch.get(i, []))])
    # Loads are rounded up and free capacity down, so the integer model can never overcommit.
    pools = p.pool[t]
    for q in np.unique(pools).tolist():
        ks = np.flatnonzero(pools == q)
        model.add(sum(int(np.ceil(load[k] * LOAD_SCALE)) * x[k] for k in ks.tolist())
                  <= int(np.floor(max(pool_free[q], 0.0) * LOAD_SCALE)))
    if len(cable_free) and len(b):
        crosses = p.crosses(b, t)
        gbps = p.gbps()[b]
        for cab in np.flatnonzero(np.isfinite(cable_free)).tolist():
            ks = np.flatnonzero(crosses[:, cab])
            if len(ks):
                model.add(sum(int(np.ceil(gbps[k] * LOAD_SCALE)) * x[k] for k in ks.tolist())
                          <= int(np.floor(max(cable_free[cab], 0.0) * LOAD_SCALE)))
    model.minimize(
        sum(int(round(c[k] * COST_SCALE)) * x[k] for k in range(len(b)))
        + sum(int(round(penalty * p.weight[i] * COST_SCALE)) * u for i, u in unplaced.items())
    )
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(time_limit_s, 0.01)
    solver.parameters.num_workers = 1  # one worker + a fixed seed: the same input gives the same answer
    solver.parameters.random_seed = SEED
    code = solver.solve(model)
    status = solver.status_name(code)
    if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return target, status, 0.0
    for k in range(len(b)):
        if solver.boolean_value(x[k]):
            target[b[k]] = t[k]
    return target, status, solver.best_objective_bound / COST_SCALE


def _groups(p: Problem, b: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, int]:
    """Group id per batch: same model, region, data class and feasible targets."""
    feasible = np.zeros((len(p.batches), p.n_targets), dtype=bool)
    feasible[b, t] = True
    dc = {d: i for i, d in enumerate(p.cat.data_classes)}
    key = np.column_stack([
        p.region, [dc[x.data_class] for x in p.batches], np.packbits(feasible, axis=1).view(np.uint8),
    ]) if len(p.batches) else np.zeros((0, 2))
    _, inverse = np.unique(key, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    return inverse, int(inverse.max(initial=-1)) + 1


def _group_problem(p: Problem, group: np.ndarray, G: int, b: np.ndarray, t: np.ndarray, c: np.ndarray,
                   load: np.ndarray, penalty: float, reduce: str) -> transport.TransportProblem:
    """Per token of each group: mean coefficients (for routing) or minimum ones (for a valid lower bound)."""
    T = p.n_targets
    gi = group[b]
    w = p.weight[b]
    gbps = p.gbps()
    supply = np.bincount(group, weights=p.weight, minlength=G)
    if reduce == "mean":
        cost = np.zeros((G, T))
        lo = np.zeros((G, T))
        np.add.at(cost, (gi, t), c)
        np.add.at(lo, (gi, t), load)
        # Every batch of a group has every one of its targets feasible, so sums over the group divide cleanly.
        cost /= supply[:, None]
        lo /= supply[:, None]
        g_per_unit = np.bincount(group, weights=gbps, minlength=G) / supply
    else:
        cost = np.full((G, T), np.inf)
        lo = np.full((G, T), np.inf)
        np.minimum.at(cost, (gi, t), c / w)
        np.minimum.at(lo, (gi, t), load / w)
        g_per_unit = np.full(G, np.inf)
        np.minimum.at(g_per_unit, group, gbps / p.weight)
    present = np.zeros((G, T), dtype=bool)
    present[gi, t] = True
    cost[~present] = np.inf
    lo[~present] = 0.0
    first = np.zeros(G, dtype=np.int64)
    first[group[::-1]] = np.arange(len(group))[::-1]  # one batch per group speaks for its region
    cable_use = p.cat.route_cables[p.region[first]][:, p.site] if len(p.cat.cables) else np.zeros((G, T, 0), bool)
    return transport.TransportProblem(supply, cost, lo, p.pool, p.pool_free, cable_use, g_per_unit,
                                      p.cable_free, penalty)


def _lp_round(p: Problem, b: np.ndarray, t: np.ndarray, c: np.ndarray, load: np.ndarray, penalty: float,
              start: float, time_limit_s: float) -> tuple[np.ndarray, str, float]:
    group, G = _groups(p, b, t)
    routing = transport.solve(_group_problem(p, group, G, b, t, c, load, penalty, "mean"))
    bound = transport.solve(_group_problem(p, group, G, b, t, c, load, penalty, "min"))

    # Pair lookups for the packing loop, in plain Python for speed on small lists.
    pair_cost: dict[tuple[int, int], float] = dict(zip(zip(b.tolist(), t.tolist()), c.tolist()))
    pair_load: dict[tuple[int, int], float] = dict(zip(zip(b.tolist(), t.tolist()), load.tolist()))
    pool = p.pool.tolist()
    pool_free = p.pool_free.astype(float).copy()
    cable_free = p.cable_free.astype(float).copy()
    gbps = p.gbps()
    crosses_all = p.cat.route_cables[:, p.site] if len(p.cat.cables) else None  # (R, T, C)
    bounded = np.isfinite(cable_free)

    def fits(i: int, tt: int) -> bool:
        if pool_free[pool[tt]] + 1e-9 < pair_load[i, tt]:
            return False
        if crosses_all is not None:
            use = crosses_all[p.region[i], tt] & bounded
            if use.any() and np.any(cable_free[use] + 1e-12 < gbps[i]):
                return False
        return True

    def take(i: int, tt: int) -> None:
        target[i] = tt
        pool_free[pool[tt]] -= pair_load[i, tt]
        if crosses_all is not None:
            cable_free[crosses_all[p.region[i], tt]] -= gbps[i]

    target = np.full(len(p.batches), -1, dtype=np.int64)
    order = np.lexsort((-p.weight, group))  # by group, heaviest first
    bounds = np.searchsorted(group[order], np.arange(G + 1))
    leftover: list[int] = []
    for g in range(G):
        quota = {int(tt): q for tt, q in enumerate(routing.flow[g]) if q > 1e-9}
        for i in order[bounds[g]:bounds[g + 1]].tolist():
            choices = sorted(quota.items(), key=lambda kv: -kv[1])
            placed = False
            for tt, q in choices:
                if q >= 0.5 * p.weight[i] and fits(i, tt):
                    take(i, tt)
                    quota[tt] = q - p.weight[i]
                    placed = True
                    break
            if not placed:
                leftover.append(i)

    status = "FEASIBLE"
    if leftover:
        rest = np.array(leftover)
        keep = np.isin(b, rest)
        remaining = time_limit_s - (time.perf_counter() - start)
        if keep.sum() <= RESIDUAL_PAIRS and remaining > 0.05:
            sub, sub_status, _ = _cp_sat(p, b, t, c, load, np.maximum(pool_free, 0), np.maximum(cable_free, 0),
                                         penalty, remaining, subset=rest)
            for i in rest.tolist():
                if sub[i] >= 0:
                    take(i, int(sub[i]))
        else:
            for i in rest.tolist():  # cheapest first, no look-ahead
                options = sorted((pair_cost[i, tt], tt) for tt in t[b == i].tolist())
                for _, tt in options:
                    if fits(i, tt):
                        take(i, tt)
                        break
    return target, status, bound.objective
