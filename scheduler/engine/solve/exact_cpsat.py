"""The exact stage: the joint model in CP-SAT, solved whole on small instances and on the repair stage's re-packs.

One Boolean per feasible (batch, target) pair and one per batch for "unplaced", one load variable per pool, and "this
pair is used => the pool's load stays under the pair's ceiling". Written straight into the CpModelProto with array
calls, so building it costs microseconds per pair. Loads are rounded up and room down, so the integer model can
never overcommit a pool or break a ceiling; costs are rounded to 1e-8 CNY and the bound returned is shaded by that
rounding, so it stays valid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ortools.sat.python import cp_model

from scheduler.engine.solve.problem import BatchProblem, Pairs

COST_SCALE = 1e8  # CP-SAT integer units per CNY
LOAD_SCALE = 1e4  # CP-SAT integer units per accelerator / Gbps
SEED = 7
# CP-SAT stops on deterministic time (work units; measured at 1.3-2 wall seconds each on the 2-core benchmark
# machine) before the wall clock limit, so the same input gives the same answer; the wall clock limit stays as a
# backstop (a much slower or overloaded machine would hit it first, and then answers may differ run to run).
DETERMINISTIC_SHARE = 0.35


@dataclass(frozen=True)
class Room:
    """What the pools and cables offer the model's batches: per pool the load already on it (`base`) and the most it
    may carry (`cap`), per cable the Gbps free."""

    base: np.ndarray
    cap: np.ndarray
    cable_room: np.ndarray


@dataclass(frozen=True)
class ExactResult:
    """CP-SAT's answer: its status, each batch's global target (-1: unplaced; the batches outside the model stay -1),
    a lower bound on the objective of the model's batches, and the deterministic time spent."""

    status: str
    target: np.ndarray
    bound: float
    spent: float

    @property
    def found(self) -> bool:
        return self.status in ("OPTIMAL", "FEASIBLE")


def solve(p: BatchProblem, pairs: Pairs, batches: np.ndarray, room: Room, penalty: float, time_limit_s: float,
          hint: np.ndarray | None = None, wall_s: float | None = None) -> ExactResult:
    """Exact assignment of `batches` (sorted batch indices) over their `pairs`, on the pools and cables of `room`.
    `hint`: a current target per batch (-1: unplaced) to start from. Work is limited to DETERMINISTIC_SHARE of
    `time_limit_s` in deterministic time, and to `wall_s` (default `time_limit_s`) of wall clock."""
    base, cap, cable_room = room.base, room.cap, room.cable_room
    target = np.full(len(p.batches), -1, dtype=np.int64)
    keep = np.isin(pairs.batch, batches)
    b, t, c, load, ceiling = (x[keep] for x in (pairs.batch, pairs.target, pairs.cost, pairs.load, pairs.ceiling))
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
        below = np.floor((ceiling[ks] - base[q]) * LOAD_SCALE).astype(np.int64)
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
        return ExactResult(status, target, 0.0, solver.deterministic_time)
    solution = solver.response_proto.solution
    chosen = np.fromiter((solution[k] for k in range(nx)), dtype=np.int64, count=nx) > 0
    target[b[chosen]] = t[chosen]
    # Costs were rounded to integers; half a unit per batch covers the rounding, so the bound stays valid.
    return ExactResult(status, target, solver.best_objective_bound / COST_SCALE - 0.5 * nb / COST_SCALE,
                       solver.deterministic_time)
