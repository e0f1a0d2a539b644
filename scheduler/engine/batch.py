"""Many batches at once: one site each (or an explicit "unplaced"), capacities and cable bandwidth respected, cost
minimised, and no SLO broken by the load the other batches add.

Queueing delay grows with a pool's load, so a batch's SLO holds only while its pool stays at or below the pair's
*ceiling* (estimate.ceilings). Every assignment made here keeps each pool's final load at or below the least ceiling
of the batches placed on it (and of live reservations, via `ceiling`), so every promise holds once all run.

Objective: CNY of the placed batches + a penalty per unplaced output-equivalent token, far above any unit cost.

Large instances (more than EXACT_PAIRS feasible pairs):
1. price: a transportation LP over coarse groups of nearly interchangeable batches (model, answer length, latency
   tolerance, data class: hundreds of rows, not millions of pairs) prices pool capacity and cable bandwidth;
2. bound: at those prices, Lagrangian duality evaluated batch by batch gives a lower bound on the objective of any
   assignment that respects capacity and cables (so also of any that respects ceilings too), whatever the grouping;
3. assign: batches with few options first, then from the most latency-tolerant to the least, each takes its
   cheapest target at those prices where the pool has room under its capacity and every ceiling on it (its own
   included) and the cables have bandwidth;
4. repair: batches that found no room although they fit alone are re-packed with CP-SAT together with the batches
   on the pools where they come closest to fitting, under a deterministic work budget.
Small instances run the same and then hand the answer to CP-SAT as a hint (one Boolean per feasible pair, one load
variable per pool, and "this pair is used => the pool's load stays under its ceiling"), which usually proves it
optimal; CP-SAT's bound, the Lagrangian one and a capacity-free one, the best of them, is reported.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np
from ortools.sat.python import cp_model

from scheduler.engine import transport
from scheduler.engine.catalog import Catalog
from scheduler.engine.estimate import BatchArrays, Estimates, ceilings, estimate
from scheduler.engine.place import capacity_reasons, own_load_reasons
from scheduler.engine.request import Batch, Reason, Slo

EXACT_PAIRS = 4000  # feasible (batch, target) pairs up to which CP-SAT solves the whole instance
COST_SCALE = 1e8  # CP-SAT integer units per CNY
LOAD_SCALE = 1e4  # CP-SAT integer units per accelerator / Gbps
SEED = 7
# CP-SAT stops on deterministic time (work units; measured at 1.3-2 wall seconds each on the 2-core benchmark
# machine) before the wall clock limit, so the same input gives the same answer; the wall clock limit stays as a
# backstop (a much slower or overloaded machine would hit it first, and then answers may differ run to run).
DETERMINISTIC_SHARE = 0.35
TOLERANCE_BINS = (0.3, 0.5, 0.7, 0.8, 0.9)  # the pricing LP groups batches by the utilization their SLO tolerates
HOLD_BIN = 1.0  # ... and by answer length: log2 of the seconds a batch holds its accelerators, in steps of this
FEW_OPTIONS = 12  # batches with at most this many feasible targets are placed first
REPAIR_SHARE = 0.25  # of the time limit, in CP-SAT deterministic time, for re-packing around unplaced batches
MAX_REPAIRS = 200  # unplaced batches the repair looks at in one re-pack
REPAIR_ROUNDS = 3
REPAIR_POOLS = 3  # pools re-packed around each
REPACK_OPTIONS = 3  # targets outside the re-packed pools each batch may move to


@dataclass(frozen=True)
class Assignment:
    """Per batch: global target index or -1, with the reason for the unplaced."""

    target: np.ndarray  # (B,) int
    reason: np.ndarray  # (B,) Reason codes; OK where placed
    status: str
    objective: float  # CNY of placed batches + penalty for unplaced weight
    cost: float  # CNY of placed batches
    best_bound: float  # a lower bound on the objective of any assignment that meets every constraint
    seconds: float
    method: str
    penalty: float = 0.0  # CNY per unplaced output-equivalent token in the objective
    unavoidable: float = 0.0  # the part of objective and bound for batches no target could take at all


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
    reason: dict[str, np.ndarray]  # (B_m, T_m) after own-load, capacity and cable checks
    pool: np.ndarray  # (T,) pool of each global target
    site: np.ndarray  # (T,) site of each global target
    region: np.ndarray  # (B,) region index
    weight: np.ndarray  # (B,) output-equivalent tokens
    pool_free: np.ndarray  # (P,) pool_cap - used
    cable_free: np.ndarray
    theta: dict[str, np.ndarray] = field(default_factory=dict)  # (B_m, T_m) ceiling, capped at pool_cap
    used: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (P,) load already on each pool
    pool_cap: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (P,) the most load each pool may carry
    arrays: dict[str, BatchArrays] = field(default_factory=dict)  # each model's batches, column-wise

    @property
    def n_targets(self) -> int:
        return len(self.pool)

    def pairs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """All feasible (batch, global target) pairs with their cost and load."""
        b, t, c, load, _ = self.pair_arrays()
        return b, t, c, load

    def pair_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """All feasible (batch, global target) pairs with their cost, load and ceiling."""
        bs, ts, cs, ls, hs = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0)], [np.zeros(0)], [np.zeros(0)]
        for m in self.models:
            r, c = np.nonzero(self.reason[m] == Reason.OK)
            bs.append(self.rows[m][r])
            ts.append(c + self.offset[m])
            cs.append(self.est[m].cost_cny[r, c])
            ls.append(self.est[m].load[r, c])
            hs.append(self.theta[m][r, c])
        return (np.concatenate(bs), np.concatenate(ts), np.concatenate(cs), np.concatenate(ls), np.concatenate(hs))

    def gbps(self) -> np.ndarray:
        out = np.zeros(len(self.batches))
        for m in self.models:
            out[self.rows[m]] = self.est[m].gbps
        return out

    def crosses(self, b: np.ndarray, t: np.ndarray) -> np.ndarray:
        """(N, C) cables crossed by each (batch, global target) pair."""
        return self.cat.route_cables[self.region[b], self.site[t]]


def build(cat: Catalog, batches: list[Batch], slos: list[Slo], hour: int, used: np.ndarray,
          cable_used: np.ndarray, ceiling: np.ndarray | None = None) -> Problem:
    """Score every batch against every target of its model at the current loads.

    A pair is feasible if every filter passes, the pool (capacity, lowered to `ceiling` where live placements need
    it) and the route's cables have room, and the batch's own load keeps the pool under the pair's ceiling.
    """
    models = [m for m in cat.by_model if any(b.model == m for b in batches)]
    model_of = np.array([b.model for b in batches])
    region = np.fromiter((cat.region_index[b.region] for b in batches), dtype=np.int64, count=len(batches))
    cols = np.array([(b.input_tokens, b.output_tokens, b.requests) for b in batches], dtype=float).reshape(-1, 3)
    ttft_slo = np.fromiter((s.ttft_ms for s in slos), dtype=float, count=len(slos))
    e2e_slo = np.fromiter((s.e2e_ms for s in slos), dtype=float, count=len(slos))
    cap = cat.pool_capacity if ceiling is None else np.minimum(cat.pool_capacity, ceiling)
    offset, rows, est, reason, theta, per_model, pools, sites = {}, {}, {}, {}, {}, {}, [], []
    n = 0
    weight = np.zeros(len(batches))
    for m in models:
        mt = cat.by_model[m]
        idx = np.flatnonzero(model_of == m)
        arrays = BatchArrays(
            region=region[idx], input_tokens=cols[idx, 0], output_tokens=cols[idx, 1], requests=cols[idx, 2],
            ttft_slo=ttft_slo[idx], e2e_slo=e2e_slo[idx], data_class=[batches[i].data_class for i in idx],
        )
        e = estimate(cat, mt, arrays, hour, used, energy=False)  # kWh and gCO2 only for the pairs chosen
        th, binding = ceilings(cat, mt, e, arrays.ttft_slo, arrays.e2e_slo)
        offset[m], rows[m], est[m], per_model[m] = n, idx, e, arrays
        reason[m] = own_load_reasons(e, capacity_reasons(cat, mt, e, arrays.region, used, cable_used, cap), th,
                                     binding, mt, used)
        theta[m] = np.minimum(th, cap[mt.pool][None, :])
        weight[idx] = (arrays.output_tokens + arrays.input_tokens / mt.speedup) * arrays.requests
        pools.append(mt.pool)
        sites.append(mt.site)
        n += len(mt)
    return Problem(
        cat, batches, hour, models, offset, rows, est, reason,
        np.concatenate(pools) if pools else np.zeros(0, np.int64),
        np.concatenate(sites) if sites else np.zeros(0, np.int64),
        region, weight, cap - used, cat.cable_capacity_gbps - cable_used, theta, used.astype(float), cap, per_model,
    )


def latency_at(p: Problem, m: str, rows: np.ndarray, k: np.ndarray, pool_load: np.ndarray) -> Estimates:
    """Estimates of model `m`'s batches `rows` (indices into p.rows[m]) on their targets `k`, at `pool_load`;
    (n,) arrays, one per pair."""
    a = p.arrays[m]
    sub = BatchArrays(a.region[rows], a.input_tokens[rows], a.output_tokens[rows], a.requests[rows],
                      a.ttft_slo[rows], a.e2e_slo[rows], [a.data_class[i] for i in rows.tolist()])
    e = estimate(p.cat, p.cat.by_model[m], sub, p.hour, pool_load, targets=k)
    return Estimates(**{f: (v[:, 0] if isinstance(v, np.ndarray) and v.ndim == 2 else v) for f, v in e.__dict__.items()})


def unplaced_reasons(p: Problem) -> np.ndarray:
    """The furthest check any target got to: what stopped the batch."""
    out = np.full(len(p.batches), Reason.NOT_SERVED, dtype=np.int8)
    for m in p.models:
        if p.reason[m].shape[1]:
            r = p.reason[m]
            out[p.rows[m]] = np.where((r == Reason.OK).any(axis=1), Reason.OK, r.max(axis=1))
    return out


def penalty_of(p: Problem) -> float:
    """The objective's CNY per unplaced output-equivalent token: far above any feasible pair's unit cost."""
    unit = np.array([np.max(np.where(p.reason[m] == Reason.OK, p.est[m].cost_cny / p.weight[p.rows[m]][:, None],
                                     -np.inf), initial=-np.inf) for m in p.models])
    return transport.unserved_penalty(unit) if np.isfinite(unit).any() else 1.0


def solve(p: Problem, time_limit_s: float = 2.0, exact_pairs: int = EXACT_PAIRS) -> Assignment:
    start = time.perf_counter()
    penalty = penalty_of(p)
    n_pairs = sum(int((p.reason[m] == Reason.OK).sum()) for m in p.models)
    if n_pairs <= exact_pairs:
        # The priced heuristic first (it is cheap at this size): CP-SAT starts from its answer, which also stands
        # if CP-SAT finds nothing better in its time.
        hint, _, heuristic_bound = _priced(p, penalty, time_limit_s * REPAIR_SHARE)
        b, t, c, load, theta = p.pair_arrays()
        target = np.full(len(p.batches), -1, dtype=np.int64)
        status, bound, _ = _cp_sat(p, b, t, c, load, theta, np.arange(len(p.batches)), p.used, p.pool_cap,
                                   p.cable_free, penalty, time_limit_s, target, hint=hint,
                                   wall_s=time_limit_s - (time.perf_counter() - start))
        if status not in ("OPTIMAL", "FEASIBLE") or _objective(p, target, penalty) > _objective(p, hint, penalty):
            target = hint
            status = "FEASIBLE"
        bound = max(bound, heuristic_bound)
        method = "cp-sat"
    else:
        target, status, bound = _priced(p, penalty, time_limit_s)
        method = "lp-priced-greedy"
    bound = max(bound, _capacity_free_bound(p, penalty))
    reason = unplaced_reasons(p)
    placed = target >= 0
    reason[placed] = Reason.OK
    reason[~placed & (reason == Reason.OK)] = Reason.CAPACITY  # feasible alone, but the capacity went to others
    cost = assigned_cost(p, target)
    objective = cost + penalty * float(p.weight[~placed].sum())
    bound = min(bound, objective)
    return Assignment(target, reason, status, objective, cost, bound, time.perf_counter() - start, method, penalty,
                      unavoidable_penalty(p, penalty))


def _objective(p: Problem, target: np.ndarray, penalty: float) -> float:
    return assigned_cost(p, target) + penalty * float(p.weight[target < 0].sum())


def _capacity_free_bound(p: Problem, penalty: float) -> float:
    """Each batch at its cheapest feasible target, or the penalty: valid for any assignment, capacity aside."""
    total = 0.0
    for m in p.models:
        best = np.where(p.reason[m] == Reason.OK, p.est[m].cost_cny, np.inf).min(axis=1, initial=np.inf)
        total += float(np.minimum(best, penalty * p.weight[p.rows[m]]).sum())
    return total


def unavoidable_penalty(p: Problem, penalty: float) -> float:
    """Penalty of the batches that have no feasible target at all: every assignment pays it."""
    stuck = np.ones(len(p.batches), bool)
    for m in p.models:
        stuck[p.rows[m]] = ~(p.reason[m] == Reason.OK).any(axis=1)
    return penalty * float(p.weight[stuck].sum())


def assigned_cost(p: Problem, target: np.ndarray) -> float:
    total = 0.0
    for m in p.models:
        tt = target[p.rows[m]]
        ok = tt >= 0
        total += float(p.est[m].cost_cny[np.flatnonzero(ok), tt[ok] - p.offset[m]].sum())
    return total


# --- exact: CP-SAT ----------------------------------------------------------------------------------------------
def _cp_sat(p: Problem, b: np.ndarray, t: np.ndarray, c: np.ndarray, load: np.ndarray, theta: np.ndarray,
            batches: np.ndarray, base: np.ndarray, cap: np.ndarray, cable_room: np.ndarray, penalty: float,
            time_limit_s: float, target: np.ndarray, hint: np.ndarray | None = None,
            wall_s: float | None = None) -> tuple[str, float, float]:
    """Exact assignment of `batches` over their pairs, on pools already holding `base` and allowed `cap`; writes
    the chosen targets into `target` and returns (status, lower bound on the objective of these batches, the
    deterministic time spent). `hint`: a current target per batch (-1: unplaced) to start from. Work is limited to
    DETERMINISTIC_SHARE of `time_limit_s` in deterministic time, and to `wall_s` (default `time_limit_s`) of wall
    clock."""
    keep = np.isin(b, batches)
    b, t, c, load, theta = b[keep], t[keep], c[keep], load[keep], theta[keep]
    nx, nb = len(b), len(batches)
    model = cp_model.CpModel()
    proto = model.proto
    if nx + nb:
        proto.merge_text_format("variables { domain: [0, 1] } " * (nx + nb))  # x per pair, then u per batch
    local = np.searchsorted(batches, b)
    order = np.argsort(local, kind="stable")
    cuts = np.searchsorted(local[order], np.arange(nb + 1))
    for j in range(nb):
        lits = order[cuts[j]:cuts[j + 1]].tolist()
        lits.append(nx + j)
        proto.constraints.add().exactly_one.literals.extend(lits)
    # Loads are rounded up and room down, so the integer model can never overcommit or break a ceiling.
    iload = np.ceil(load * LOAD_SCALE).astype(np.int64)
    y_hints: list[tuple[int, int]] = []
    pools = p.pool[t]
    by_pool = np.argsort(pools, kind="stable")
    pcuts = np.searchsorted(pools[by_pool], np.arange(len(cap) + 1))
    for q in np.unique(pools).tolist():
        ks = by_pool[pcuts[q]:pcuts[q + 1]]
        room = int(np.floor(max(cap[q] - base[q], 0.0) * LOAD_SCALE))
        below = np.floor((theta[ks] - base[q]) * LOAD_SCALE).astype(np.int64)
        tight = below < room
        ct = proto.constraints.add().linear
        ct.vars.extend(ks.tolist())
        ct.coeffs.extend(iload[ks].tolist())
        if not tight.any():
            ct.domain.extend([0, room])
            continue
        y = len(proto.variables)  # the pool's added load, which every tight pair caps when used
        proto.variables.add().domain.extend([0, room])
        if hint is not None:
            used_now = int(iload[ks][hint[local[ks]] == t[ks]].sum())
            y_hints.append((y, min(used_now, room)))
        ct.vars.append(y)
        ct.coeffs.append(-1)
        ct.domain.extend([0, 0])
        for k, lim in zip(ks[tight].tolist(), below[tight].tolist()):
            cap_ct = proto.constraints.add()
            cap_ct.enforcement_literal.append(k)
            cap_ct.linear.vars.append(y)
            cap_ct.linear.coeffs.append(1)
            cap_ct.linear.domain.extend([0, max(lim, 0)])
    bounded = np.flatnonzero(np.isfinite(cable_room))
    if len(bounded) and nx:
        crosses = p.crosses(b, t)
        igbps = np.ceil(p.gbps()[b] * LOAD_SCALE).astype(np.int64)
        for cab in bounded.tolist():
            ks = np.flatnonzero(crosses[:, cab])
            if len(ks):
                ct = proto.constraints.add().linear
                ct.vars.extend(ks.tolist())
                ct.coeffs.extend(igbps[ks].tolist())
                ct.domain.extend([0, int(np.floor(max(cable_room[cab], 0.0) * LOAD_SCALE))])
    if hint is not None:
        on = np.zeros(nx + nb, dtype=np.int64)
        on[:nx] = hint[local] == t
        on[nx:] = hint < 0
        proto.solution_hint.vars.extend(list(range(nx + nb)) + [v for v, _ in y_hints])
        proto.solution_hint.values.extend(on.tolist() + [h for _, h in y_hints])
    proto.objective.vars.extend(range(nx + nb))
    proto.objective.coeffs.extend(np.round(c * COST_SCALE).astype(np.int64).tolist()
                                  + np.round(penalty * p.weight[batches] * COST_SCALE).astype(np.int64).tolist())
    solver = cp_model.CpSolver()
    solver.parameters.max_time_in_seconds = max(time_limit_s if wall_s is None else wall_s, 0.01)
    solver.parameters.max_deterministic_time = max(time_limit_s * DETERMINISTIC_SHARE, 0.005)
    solver.parameters.num_workers = 1  # one worker + a fixed seed: the same input gives the same answer
    solver.parameters.random_seed = SEED
    code = solver.solve(model)
    status = solver.status_name(code)
    if code not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return status, 0.0, solver.deterministic_time
    solution = solver.response_proto.solution
    chosen = np.fromiter((solution[k] for k in range(nx)), dtype=np.int64, count=nx) > 0
    target[b[chosen]] = t[chosen]
    # Costs were rounded to integers; half a unit per batch covers the rounding, so the bound stays valid.
    return status, solver.best_objective_bound / COST_SCALE - 0.5 * nb / COST_SCALE, solver.deterministic_time


# --- large: priced by the group LP, then greedy at those prices, then CP-SAT repairs ---------------------------
@dataclass
class _Model:
    """One model's part of the large solve: dense (B_m, T_m) arrays, infeasible pairs masked by `ok`."""

    m: str
    rows: np.ndarray
    pool: np.ndarray  # (T_m,) pool index
    ok: np.ndarray
    cost: np.ndarray
    load: np.ndarray
    theta: np.ndarray
    gbps: np.ndarray  # (B_m,)
    cables: np.ndarray  # (R, T_m, C) route crosses cable, by region
    region: np.ndarray  # (B_m,)


@dataclass
class _State:
    """The greedy's running assignment: per pool its load, its cap (capacity and ceilings) and its batches."""

    target: np.ndarray
    load: np.ndarray
    cap: np.ndarray
    cable_room: np.ndarray
    members: list[list[int]]
    keep_promises: bool = True  # False: a placement does not lower its pool's cap (later ones may break it)


def parts_of(p: Problem) -> list[_Model]:
    """Each model's dense arrays, as the large solve and the baselines work on them."""
    parts = []
    for m in p.models:
        mt = p.cat.by_model[m]
        e = p.est[m]
        parts.append(_Model(m, p.rows[m], mt.pool, p.reason[m] == Reason.OK, e.cost_cny, e.load, p.theta[m],
                            e.gbps, p.cat.targets_view(m).cables, p.region[p.rows[m]]))
    return parts


def fresh_state(p: Problem) -> _State:
    """Nothing placed yet: pools at today's load and cap, cables at today's room."""
    return _State(np.full(len(p.batches), -1, dtype=np.int64), p.used.astype(float).copy(),
                  p.pool_cap.astype(float).copy(), p.cable_free.astype(float).copy(), [[] for _ in p.pool_cap])


def _priced(p: Problem, penalty: float, time_limit_s: float) -> tuple[np.ndarray, str, float]:
    parts = parts_of(p)
    prices = _price(p, parts, penalty)
    bound = _lagrangian_bound(p, parts, penalty, prices)
    state = _greedy(p, parts, prices)
    _repair(p, parts, state, penalty, time_limit_s)
    return state.target, "FEASIBLE", bound


def _tolerance(p: Problem, part: _Model, score: np.ndarray) -> np.ndarray:
    """(B_m,) the utilization each batch tolerates on its best target by `score`."""
    best = np.argmin(np.where(part.ok, score, np.inf), axis=1)
    b = np.arange(len(part.rows))
    return part.theta[b, best] / p.cat.pool_count[part.pool][best]


def _price(p: Problem, parts: list[_Model], penalty: float) -> transport.TransportSolution:
    """The pricing LP over coarse groups (model, answer length, latency tolerance, data class): per unit of
    output-equivalent token, each group's mean cost and load over the members that can use the target, and the
    share of its traffic whose route crosses each cable. Only its prices are used, so the grouping may be coarse:
    the bound is evaluated batch by batch. (Answer length sets how long a batch holds its accelerators, so how much
    capacity a token costs; regions differ mostly in transit, which is small next to energy and amortization.)"""
    cat = p.cat
    T, C, R = p.n_targets, len(cat.cables), len(cat.regions)
    blocks = []
    for part in parts:
        rows = np.flatnonzero(part.ok.any(axis=1))
        if not len(rows):
            continue
        hold = p.est[part.m].hold_s[rows]
        dc = np.fromiter((cat.data_class_index[p.batches[i].data_class] for i in part.rows[rows]), np.int64, len(rows))
        key = np.column_stack([np.floor(np.log2(hold) / HOLD_BIN),
                               np.digitize(_tolerance(p, part, part.cost)[rows], TOLERANCE_BINS), dc])
        _, group = np.unique(key, axis=0, return_inverse=True)
        group = group.reshape(-1)
        G = int(group.max()) + 1
        w = p.weight[part.rows[rows]]
        order = np.argsort(group, kind="stable")
        starts = np.searchsorted(group[order], np.arange(G))  # every group has members
        ok = part.ok[rows][order]
        sel = rows[order]
        sums = {}
        for name, arr in (("cost", part.cost[sel]), ("load", part.load[sel]),
                          ("w", np.broadcast_to(w[order, None], ok.shape))):
            sums[name] = np.add.reduceat(np.where(ok, arr, 0.0), starts, axis=0)
        off = p.offset[part.m]
        cols = slice(off, off + ok.shape[1])
        cost = np.full((G, T), np.inf)
        load = np.zeros((G, T))
        with np.errstate(invalid="ignore", divide="ignore"):
            some = sums["w"] > 0
            cost[:, cols] = np.where(some, sums["cost"] / sums["w"], np.inf)
            load[:, cols] = np.where(some, sums["load"] / sums["w"], 0.0)
        supply = np.bincount(group, weights=w, minlength=G)
        gbps = np.bincount(group, weights=part.gbps[rows], minlength=G) / supply
        cable_use = np.zeros((G, T, C))
        if C:
            spread = np.zeros((G, R))
            np.add.at(spread, (group, part.region[rows]), w)
            spread /= supply[:, None]
            cable_use[:, cols] = np.einsum("gr,rtc->gtc", spread, part.cables.astype(float))
        blocks.append((supply, cost, load, gbps, cable_use))
    if not blocks:
        return transport.TransportSolution("OPTIMAL", np.zeros((0, T)), np.zeros(0), 0.0, 0.0,
                                           np.zeros(len(p.pool_cap)), np.zeros(C))
    supply, cost, load, gbps, cable_use = (np.concatenate(x) for x in zip(*blocks))
    return transport.solve(transport.TransportProblem(supply, cost, load, p.pool, np.maximum(p.pool_free, 0.0),
                                                      cable_use, gbps, p.cable_free, penalty))


def _priced_cost(p: Problem, part: _Model, s: transport.TransportSolution) -> np.ndarray:
    """(B_m, T_m) each pair's cost plus the capacity and bandwidth it uses at the LP's prices; inf if infeasible."""
    rc = part.cost + part.load * s.pool_price[part.pool][None, :]
    if len(s.cable_price) and np.any(s.cable_price > 0):
        rc = rc + part.gbps[:, None] * (part.cables @ s.cable_price)[part.region]
    return np.where(part.ok, rc, np.inf)


def _lagrangian_bound(p: Problem, parts: list[_Model], penalty: float, s: transport.TransportSolution) -> float:
    """Weak duality at the LP's prices, batch by batch.

    For any prices >= 0 on pool capacity and cable bandwidth, every batch pays its cheapest priced option (or the
    penalty), and the priced capacity is credited back: no assignment that respects capacity and cables (let alone
    ceilings too) costs less. Valid whatever the grouping that produced the prices.
    """
    total = 0.0
    for part in parts:
        best = _priced_cost(p, part, s).min(axis=1, initial=np.inf)
        total += float(np.minimum(best, penalty * p.weight[part.rows]).sum())
    total -= float(s.pool_price @ np.maximum(p.pool_free, 0.0))
    priced = s.cable_price > 0
    total -= float(s.cable_price[priced] @ np.maximum(p.cable_free[priced], 0.0))
    return total


def _greedy(p: Problem, parts: list[_Model], s: transport.TransportSolution) -> _State:
    """Batches with few options first, then from the most latency-tolerant to the least (so that a pool's cap only
    falls as it fills), each to its cheapest target at the LP's prices where the pool has room under its cap and
    every ceiling on it, its own included, and the route's cables have bandwidth."""
    state = fresh_state(p)
    queue, orders = [], []
    for j, part in enumerate(parts):
        rc = _priced_cost(p, part, s)
        order = np.argsort(rc, axis=1, kind="stable")
        orders.append(order)
        nfeas = part.ok.sum(axis=1)
        tolerance = _tolerance(p, part, rc)
        for r in np.flatnonzero(nfeas).tolist():
            queue.append((nfeas[r] > FEW_OPTIONS, -float(tolerance[r]), int(part.rows[r]), j, r, int(nfeas[r])))
    queue.sort()
    for _, _, i, j, r, nf in queue:
        place_first(p, parts[j], state, i, r, orders[j][r, :nf].tolist())
    return state


def _fits(p: Problem, part: _Model, state: _State, r: int, k: int) -> bool:
    q = int(part.pool[k])
    if state.load[q] + part.load[r, k] > min(state.cap[q], part.theta[r, k]) + 1e-9:
        return False
    crossing = part.cables[part.region[r], k]
    return not (crossing.any() and np.any(state.cable_room[crossing] + 1e-12 < part.gbps[r]))


def _take(p: Problem, part: _Model, state: _State, i: int, r: int, k: int) -> None:
    q = int(part.pool[k])
    state.target[i] = p.offset[part.m] + k
    state.load[q] += part.load[r, k]
    if state.keep_promises:
        state.cap[q] = min(state.cap[q], part.theta[r, k])
    state.members[q].append(i)
    crossing = part.cables[part.region[r], k]
    if crossing.any():
        state.cable_room[crossing] -= part.gbps[r]


def place_first(p: Problem, part: _Model, state: _State, i: int, r: int, candidates: list[int]) -> bool:
    load_r, theta_r = part.load[r], part.theta[r]
    cables = part.cables[part.region[r]]
    for k in candidates:
        q = int(part.pool[k])
        if state.load[q] + load_r[k] > min(state.cap[q], theta_r[k]) + 1e-9:
            continue
        crossing = cables[k]
        if crossing.any() and np.any(state.cable_room[crossing] + 1e-12 < part.gbps[r]):
            continue
        _take(p, part, state, i, r, k)
        return True
    return False


def _repair(p: Problem, parts: list[_Model], state: _State, penalty: float, time_limit_s: float) -> None:
    """Batches the greedy could not fit although each fits alone: re-pack with CP-SAT the pools where they come
    closest to fitting, together with the batches on them (which may move to their cheapest targets that have room
    now), so as to make room. A re-pack is applied only if it costs less than what it replaces (unplaced weight at
    the penalty), so repairs never make the assignment worse."""
    where = {}
    for j, part in enumerate(parts):
        for r, i in enumerate(part.rows.tolist()):
            where[i] = (j, r)
    budget = time_limit_s * REPAIR_SHARE
    for _ in range(REPAIR_ROUNDS):
        left = [i for i in np.flatnonzero(state.target < 0).tolist()
                if i in where and parts[where[i][0]].ok[where[i][1]].any()][:MAX_REPAIRS]
        if not left or budget <= 0:
            return
        pools: dict[int, None] = {}
        for i in left:
            j, r = where[i]
            part = parts[j]
            ks = np.flatnonzero(part.ok[r])
            q_of = part.pool[ks]
            # How much load would have to leave each pool for this batch to fit there.
            excess = state.load[q_of] + part.load[r, ks] - np.minimum(p.pool_cap[q_of], part.theta[r, ks])
            pools.update(dict.fromkeys(q_of[np.argsort(excess, kind="stable")][:REPAIR_POOLS].tolist()))
        budget -= _repack(p, parts, where, state, left, list(pools), penalty, budget / 2)


def _repack(p: Problem, parts: list[_Model], where: dict, state: _State, extra: list[int], pools: list[int],
            penalty: float, det_limit: float) -> float:
    """CP-SAT over the batches on `pools` plus `extra`: each may take any of its targets on those pools, its
    current target, or one of its REPACK_OPTIONS cheapest other targets that have room now. Applied only if it
    lowers the objective. Pools outside keep their caps (a batch leaving one never raises it: conservative)."""
    batches = sorted(set(extra) | {i for q in pools for i in state.members[q]})
    bs, ts, cs, ls, hs = [], [], [], [], []
    for i in batches:
        j, r = where[i]
        part = parts[j]
        off = p.offset[part.m]
        ks = np.flatnonzero(part.ok[r])
        mine = ks[np.isin(part.pool[ks], pools)]
        others = ks[~np.isin(part.pool[ks], pools)]
        others = others[np.argsort(part.cost[r, others], kind="stable")]
        fitting = [k for k in others.tolist() if _fits(p, part, state, r, k)][:REPACK_OPTIONS]
        cur = int(state.target[i]) - off
        chosen = sorted(set(mine.tolist()) | set(fitting) | ({cur} if state.target[i] >= 0 else set()))
        for k in chosen:
            bs.append(i)
            ts.append(off + k)
            cs.append(part.cost[r, k])
            ls.append(part.load[r, k])
            hs.append(part.theta[r, k])
    b, t = np.array(bs, dtype=np.int64), np.array(ts, dtype=np.int64)
    c, load, theta = np.array(cs, dtype=float), np.array(ls, dtype=float), np.array(hs, dtype=float)
    # Every placed batch of the re-pack sits on `pools`: those start as if they were empty; every other pool
    # keeps its load and its cap (ceilings of its batches included).
    base, cap, cable_room = state.load.copy(), state.cap.copy(), state.cable_room.copy()
    for q in pools:
        base[q], cap[q] = p.used[q], p.pool_cap[q]
    inside = set(pools)
    before = 0.0
    for i in batches:
        part, r, k = _pair_of(parts, where, state, p, i)
        if k < 0:
            before += penalty * p.weight[i]
            continue
        before += part.cost[r, k]
        if int(part.pool[k]) not in inside:  # an extra placed elsewhere: its load leaves that pool's base
            base[part.pool[k]] -= part.load[r, k]
        crossing = part.cables[part.region[r], k]
        cable_room[crossing] += part.gbps[r]
    hint = state.target[np.array(batches)]
    target = np.full(len(p.batches), -1, dtype=np.int64)
    status, _, spent = _cp_sat(p, b, t, c, load, theta, np.array(batches), base, cap, cable_room, penalty, det_limit,
                               target, hint=hint)
    if status not in ("OPTIMAL", "FEASIBLE"):
        return spent
    chosen = target[b] == t
    after = float(c[chosen].sum()) + penalty * float(sum(p.weight[i] for i in batches if target[i] < 0))
    if after > before - 1e-12:
        return spent
    for i in batches:  # take them all out, then put them back where CP-SAT says
        if state.target[i] >= 0:
            _remove(p, parts, where, state, i)
    for q in pools:
        state.cap[q] = p.pool_cap[q]
    for i in batches:
        if target[i] >= 0:
            j, r = where[i]
            _take(p, parts[j], state, i, r, int(target[i]) - p.offset[parts[j].m])
    return spent


def _pair_of(parts: list[_Model], where: dict, state: _State, p: Problem, i: int) -> tuple[_Model, int, int]:
    """The batch's part, row and current target column (-1 if unplaced)."""
    j, r = where[i]
    part = parts[j]
    t = int(state.target[i])
    return part, r, (t - p.offset[part.m] if t >= 0 else -1)


def _remove(p: Problem, parts: list[_Model], where: dict, state: _State, i: int) -> None:
    part, r, k = _pair_of(parts, where, state, p, i)
    q = int(part.pool[k])
    state.load[q] -= part.load[r, k]
    state.members[q].remove(i)
    crossing = part.cables[part.region[r], k]
    if crossing.any():
        state.cable_room[crossing] += part.gbps[r]
    state.target[i] = -1
