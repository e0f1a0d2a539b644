"""The batch problem: many batches at once, one site each (or an explicit "unplaced"), capacities and cable
bandwidth respected, cost minimised, and no SLO broken by the load the other batches add.

Queueing delay grows with a pool's load, so a batch's SLO holds only while its pool stays at or below the pair's
*ceiling* (estimate.ceilings). Every assignment made here keeps each pool's final load at or below the least ceiling
of the batches placed on it (and of live reservations, via `ceiling`), so every promise holds once all run.

Objective: CNY of the placed batches + a penalty per unplaced output-equivalent token, far above any unit cost.

This module holds the problem (`BatchProblem`, built by `build`), the objective and the simplest bounds, and the
solver's result (`Assignment`). The stages that solve it are the other modules of this package; pipeline.py runs
them (see the package's docstring and docs/engine.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scheduler import costs
from scheduler.engine import transport
from scheduler.engine.catalog import Catalog
from scheduler.engine.estimate import BatchArrays, Estimates, ceilings, estimate
from scheduler.engine.place import capacity_reasons, own_load_reasons
from scheduler.engine.request import Batch, Checked, Reason, Slo

@dataclass(frozen=True)
class Assignment:
    """The batch solver's result: per batch its global target index or -1, with the reason for the unplaced; the
    objective, its cost part and a lower bound on any assignment's objective, how it was found and how long it took."""

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


@dataclass(frozen=True)
class Pairs:
    """The (batch, global target) pairs a model may choose from, with each pair's cost, load and ceiling."""

    batch: np.ndarray
    target: np.ndarray
    cost: np.ndarray
    load: np.ndarray
    ceiling: np.ndarray


@dataclass
class BatchProblem:
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
    ceiling: dict[str, np.ndarray] = field(default_factory=dict)  # (B_m, T_m) ceiling, capped at pool_cap
    used: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (P,) load already on each pool
    pool_cap: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (P,) the most load each pool may carry
    arrays: dict[str, BatchArrays] = field(default_factory=dict)  # each model's batches, column-wise
    # (B_m, T_m) what a placement promises: its ceiling capped at the pool's capacity and promises only (a cluster
    # replica's budget of new holds lowers `pool_cap` for now, not what a placement may later be held to)
    promise: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_targets(self) -> int:
        return len(self.pool)

    def pairs(self) -> Pairs:
        """All feasible (batch, global target) pairs with their cost, load and ceiling."""
        bs, ts, cs, ls, hs = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0)], [np.zeros(0)], [np.zeros(0)]
        for m in self.models:
            r, c = np.nonzero(self.reason[m] == Reason.OK)
            bs.append(self.rows[m][r])
            ts.append(c + self.offset[m])
            cs.append(self.est[m].cost_cny[r, c])
            ls.append(self.est[m].load[r, c])
            hs.append(self.ceiling[m][r, c])
        return Pairs(np.concatenate(bs), np.concatenate(ts), np.concatenate(cs), np.concatenate(ls), np.concatenate(hs))

    def gbps(self) -> np.ndarray:
        out = np.zeros(len(self.batches))
        for m in self.models:
            out[self.rows[m]] = self.est[m].gbps
        return out

    def crosses(self, b: np.ndarray, t: np.ndarray) -> np.ndarray:
        """(N, C) cables crossed by each (batch, global target) pair."""
        return self.cat.route_cables[self.region[b], self.site[t]]


def build(cat: Catalog, batches: list[Batch], slos: list[Slo], hour: int, used: np.ndarray,
          cable_used: np.ndarray, ceiling: np.ndarray | None = None, checked: Checked | None = None,
          promised: np.ndarray | None = None) -> BatchProblem:
    """Score every batch against every target of its model at the current loads.

    A pair is feasible if every filter passes, the pool (capacity, lowered to `ceiling` where live placements need
    it) and the route's cables have room, and the batch's own load keeps the pool under the pair's ceiling.
    `checked`, when given, is `check_batches` of these batches (their columns, read once), else they are read here.
    `promised`, when given, is the part of `ceiling` that live placements' promises make (the rest is a limit for
    now only): what a placement promises is capped at it rather than at `ceiling`.
    """
    c = checked if checked is not None else _columns(batches, slos)
    n_b = len(batches)
    region = np.array([cat.region_index[r] for r in c.region], dtype=np.int64).reshape(n_b)
    data_class = np.array([cat.data_class_index[d] for d in c.data_class], dtype=np.int64).reshape(n_b)
    by_model: dict[str, list[int]] = {}
    for i, m in enumerate(c.model):
        by_model.setdefault(m, []).append(i)
    models = [m for m in cat.by_model if m in by_model]
    cap = cat.pool_capacity if ceiling is None else np.minimum(cat.pool_capacity, ceiling)
    promise_cap = cap if promised is None else np.minimum(cat.pool_capacity, promised)
    offset, rows, est, reason, pair_ceiling, per_model, pools, sites = {}, {}, {}, {}, {}, {}, [], []
    promise = pair_ceiling if promised is None else {}
    n = 0
    weight = np.zeros(n_b)
    for m in models:
        mt = cat.by_model[m]
        idx = np.array(by_model[m], dtype=np.int64)
        arrays = BatchArrays(
            region=region[idx], input_tokens=c.input_tokens[idx], output_tokens=c.output_tokens[idx],
            requests=c.requests[idx], ttft_slo=c.ttft_ms[idx], e2e_slo=c.e2e_ms[idx],
            data_class=[c.data_class[i] for i in by_model[m]], data_class_index=data_class[idx],
            percentile=c.percentile[idx],
        )
        e = estimate(cat, mt, arrays, hour, used, energy=False)  # kWh and gCO2 only for the pairs chosen
        th, binding = ceilings(cat, mt, e, arrays.ttft_slo, arrays.e2e_slo)
        offset[m], rows[m], est[m], per_model[m] = n, idx, e, arrays
        reason[m] = own_load_reasons(e, capacity_reasons(cat, mt, e, arrays.region, used, cable_used, cap), th,
                                     binding, mt, used)
        pair_ceiling[m] = np.minimum(th, cap[mt.pool][None, :])
        if promised is not None:
            promise[m] = np.minimum(th, promise_cap[mt.pool][None, :])
        weight[idx] = costs.token_weight(arrays.input_tokens, arrays.output_tokens, mt.speedup) * arrays.requests
        pools.append(mt.pool)
        sites.append(mt.site)
        n += len(mt)
    return BatchProblem(
        cat, batches, hour, models, offset, rows, est, reason,
        np.concatenate(pools) if pools else np.zeros(0, np.int64),
        np.concatenate(sites) if sites else np.zeros(0, np.int64),
        region, weight, cap - used, cat.cable_capacity_gbps - cable_used, pair_ceiling, used.astype(float), cap, per_model,
        promise,
    )


def _columns(batches: list[Batch], slos: list[Slo]) -> Checked:
    """The batches column-wise, as `check_batches` gives them, for callers that checked them one by one."""
    cols = np.array([(b.input_tokens, b.output_tokens, b.requests) for b in batches], dtype=float).reshape(-1, 3)
    return Checked(list(slos), [b.region for b in batches], [b.model for b in batches],
                   [b.data_class for b in batches], cols[:, 0], cols[:, 1], cols[:, 2],
                   np.fromiter((s.ttft_ms for s in slos), dtype=float, count=len(slos)),
                   np.fromiter((s.e2e_ms for s in slos), dtype=float, count=len(slos)),
                   np.fromiter((s.percentile for s in slos), dtype=float, count=len(slos)))


def estimates_at(p: BatchProblem, m: str, rows: np.ndarray, k: np.ndarray, pool_load: np.ndarray) -> Estimates:
    """Estimates of model `m`'s batches `rows` (indices into p.rows[m]) on their targets `k`, at `pool_load`;
    (n,) arrays, one per pair."""
    a = p.arrays[m]
    dc = a.data_class_index
    sub = BatchArrays(a.region[rows], a.input_tokens[rows], a.output_tokens[rows], a.requests[rows],
                      a.ttft_slo[rows], a.e2e_slo[rows], [a.data_class[i] for i in rows.tolist()],
                      None if dc is None else dc[rows],
                      a.percentile if np.ndim(a.percentile) == 0 else a.percentile[rows])
    e = estimate(p.cat, p.cat.by_model[m], sub, p.hour, pool_load, targets=k)
    return Estimates(**{f: (v[:, 0] if isinstance(v, np.ndarray) and v.ndim == 2 else v) for f, v in e.__dict__.items()})


def unplaced_reasons(p: BatchProblem) -> np.ndarray:
    """The furthest check any target got to: what stopped the batch."""
    out = np.full(len(p.batches), Reason.NOT_SERVED, dtype=np.int8)
    for m in p.models:
        if p.reason[m].shape[1]:
            r = p.reason[m]
            out[p.rows[m]] = np.where((r == Reason.OK).any(axis=1), Reason.OK, r.max(axis=1))
    return out


def penalty_of(p: BatchProblem) -> float:
    """The objective's CNY per unplaced output-equivalent token: far above any feasible pair's unit cost."""
    unit = np.array([np.max(np.where(p.reason[m] == Reason.OK, p.est[m].cost_cny / p.weight[p.rows[m]][:, None],
                                     -np.inf), initial=-np.inf) for m in p.models])
    return transport.unserved_penalty(unit) if np.isfinite(unit).any() else 1.0


def objective_of(p: BatchProblem, target: np.ndarray, penalty: float) -> float:
    return assigned_cost(p, target) + penalty * float(p.weight[target < 0].sum())


def capacity_free_bound(p: BatchProblem, penalty: float) -> float:
    """Each batch at its cheapest feasible target, or the penalty: valid for any assignment, capacity aside."""
    total = 0.0
    for m in p.models:
        best = np.where(p.reason[m] == Reason.OK, p.est[m].cost_cny, np.inf).min(axis=1, initial=np.inf)
        total += float(np.minimum(best, penalty * p.weight[p.rows[m]]).sum())
    return total


def unavoidable_penalty(p: BatchProblem, penalty: float) -> float:
    """Penalty of the batches that have no feasible target at all: every assignment pays it."""
    stuck = np.ones(len(p.batches), bool)
    for m in p.models:
        stuck[p.rows[m]] = ~(p.reason[m] == Reason.OK).any(axis=1)
    return penalty * float(p.weight[stuck].sum())


def assigned_cost(p: BatchProblem, target: np.ndarray) -> float:
    total = 0.0
    for m in p.models:
        tt = target[p.rows[m]]
        ok = tt >= 0
        total += float(p.est[m].cost_cny[np.flatnonzero(ok), tt[ok] - p.offset[m]].sum())
    return total
