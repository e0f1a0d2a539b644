"""Fleet-plan benchmark: the `optimal` plan against an exact mixed-integer optimum of the same model, and its speed.

Cases: the default topology with the baseline day's mix of demand cells (7 regions x llm-70b and llm-8b, plus the
Shantou pilot's offshore-processing cells) scaled so that the llm-70b pools run at LOADS of their capacity, at
hours 3, 14 and 20; the same at 70 % with APCN-2 cut; the same mix on the small fleet (every pool 1/64 as large, so
pools are M/M/c queues of 1-8 servers for llm-70b and the SLO ceilings bind below capacity, which on the default
topology's pools of hundreds of servers they hardly do); and synthetic 200-site topologies (synth.generate) at two
loads. Each case reports how many candidate pairs have a ceiling below their pool's cap ("binding"). For each: plan cost / exact cost, plan served / exact served (both in tokens), the gap the plan reports,
cost vs `cheapest-greedy` and `nearest` (same rules), and ms per plan (median of REPEATS). The exact optimum is
tests/fleet_oracle.py ("levels" formulation, HiGHS, relative gap 1e-9) over the arrays the engine planned on.
Speed is also given as a ratio to the baseline measured in the same run: one transportation LP over the same pairs
without ceilings (what a plan cost before ceilings were kept). Then the simulator's day: simulations/baseline-day.yaml,
24 h at 1-minute steps, three policies.

Usage: python benchmarks/fleet.py [--quick]. The last line printed is one JSON object:
{"plan_vs_exact_worst", "served_vs_exact_min", "ms_per_plan_median", "sim_day_s", ...}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import fleet_oracle  # noqa: E402
from engine_fixtures import baseline_mix, capacity, small_fleet  # noqa: E402
from scheduler import synth  # noqa: E402
from scheduler.engine import transport  # noqa: E402
from scheduler.engine.core import Engine  # noqa: E402
from scheduler.engine.fleet import problem  # noqa: E402
from scheduler.engine.request import DemandCell  # noqa: E402
from scheduler.model.loader import load_topology  # noqa: E402
from scheduler.paths import DEFAULT_TOPOLOGY, SIMULATIONS_DIR  # noqa: E402
from scheduler.sim.loop import simulate  # noqa: E402
from scheduler.sim.scenario import load_scenario  # noqa: E402
from scheduler.sim.solver_logs import quiet_solver_logs  # noqa: E402

LOADS = (0.1, 0.3, 0.5, 0.7, 0.8, 0.9, 1.0)
HOURS = (3, 14, 20)
REPEATS = 5


def synth_cells(engine: Engine, load: float, seed: int) -> list[DemandCell]:
    topo = engine.catalog.topology
    rng = np.random.default_rng(seed)
    cells = []
    for m in topo.models:
        share = rng.dirichlet(np.ones(len(topo.regions)))
        total = load * capacity(engine.catalog, m.id) / len(topo.models)
        cells += [DemandCell(r.id, m.id, float(total * s)) for r, s in zip(topo.regions, share)]
    return cells


def served_tokens(fp: problem.FleetProblem, flow: np.ndarray) -> float:
    return float((flow.sum(axis=1) * fp.wire_per_unit).sum())


def one_case(engine: Engine, name: str, cells: list[DemandCell], hour: int, repeats: int) -> dict:
    cat = engine.catalog
    slos = [engine.check(c.as_batch()) for c in cells]
    P, C = len(cat.pools), len(cat.cables)
    fp = problem.build(cat, cells, slos, hour, np.zeros(P), cat.pool_capacity, np.zeros(C))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        plan = engine.plan(cells, hour, "optimal")
        times.append(time.perf_counter() - t0)
    relaxed = transport.TransportProblem(fp.supply, fp.cost, fp.load, fp.pool, fp.cap - fp.used, fp.cable_use,
                                         fp.gbps, fp.cable_free, fp.penalty)
    lp_times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        transport.solve(relaxed)
        lp_times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    binding = int((fp.candidate & (fp.ceiling < fp.cap[fp.pool][None, :] - 1e-9)).sum())
    exact = fleet_oracle.solve(fp, "levels")
    exact_s = time.perf_counter() - t0
    exact_served = served_tokens(fp, exact.flow)
    greedy = engine.plan(cells, hour, "cheapest-greedy")
    nearest = engine.plan(cells, hour, "nearest")
    row = {
        "case": name, "hour": hour,
        "plan_vs_exact": plan.cost_cny_per_hour / (exact.cost * 3600.0) if exact.cost > 0 else 1.0,
        "served_vs_exact": plan.served_tokens_per_s / exact_served if exact_served > 0 else 1.0,
        "served_share": plan.served_tokens_per_s / sum(c.tokens_per_s for c in cells),
        "gap": plan.gap, "status": plan.status, "solves": plan.solves,
        "vs_greedy": plan.cost_cny_per_hour / greedy.cost_cny_per_hour if greedy.cost_cny_per_hour else 1.0,
        "greedy_served": greedy.served_tokens_per_s / plan.served_tokens_per_s if plan.served_tokens_per_s else 1.0,
        "vs_nearest": plan.cost_cny_per_hour / nearest.cost_cny_per_hour if nearest.cost_cny_per_hour else 1.0,
        "ms": 1000.0 * statistics.median(times), "lp_ms": 1000.0 * statistics.median(lp_times),
        "exact_s": exact_s, "binding": binding,
    }
    print(f"{name:<22} {hour:>4} {row['plan_vs_exact']:>9.6f} {row['served_vs_exact']:>9.6f} "
          f"{row['served_share']:>7.2%} {row['gap']:>9.2e} {row['status']:<9} {row['solves']:>3} "
          f"{row['vs_greedy']:>7.4f} {row['greedy_served']:>7.4f} {row['vs_nearest']:>7.4f} {row['ms']:>7.2f} "
          f"{row['ms'] / row['lp_ms']:>6.1f} {exact_s:>7.2f} {binding:>7}", flush=True)
    return row


def sim_day() -> float:
    loaded = load_scenario(SIMULATIONS_DIR / "baseline-day.yaml")
    t0 = time.perf_counter()
    simulate(loaded.scenario, loaded.topology, loaded.version)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer loads, one synthetic topology, no simulated day")
    args = ap.parse_args()
    quiet_solver_logs()
    loads = (0.3, 0.7, 1.0) if args.quick else LOADS
    repeats = 3 if args.quick else REPEATS
    default = Engine.from_topology(load_topology(DEFAULT_TOPOLOGY).value, "default")
    print(f"{'case':<22} {'hour':>4} {'vs exact':>9} {'served':>9} {'demand':>7} {'gap':>9} {'status':<9} "
          f"{'LPs':>3} {'vs grdy':>7} {'g serv':>7} {'vs near':>7} {'ms':>7} {'x LP':>6} {'exact s':>7} {'binding':>7}")
    rows = []
    for load in loads:
        for hour in HOURS:
            rows.append(one_case(default, f"default {load:.0%}", baseline_mix(default.catalog, load), hour, repeats))
    cut = Engine.from_topology(load_topology(DEFAULT_TOPOLOGY).value, "cut")
    cut.set_links(["apcn-2"], up=False)
    rows.append(one_case(cut, "default 70% apcn-2 cut", baseline_mix(cut.catalog, 0.7), 14, repeats))
    default_rows = list(rows)
    small = Engine.from_topology(small_fleet(), "small")
    for load in ((0.7, 1.0) if args.quick else (0.5, 0.8, 1.0, 1.2)):
        for hour in ((14,) if args.quick else HOURS):
            rows.append(one_case(small, f"small fleet {load:.0%}", baseline_mix(small.catalog, load), hour, repeats))
    small_rows = rows[len(default_rows):]
    for seed in ((1,) if args.quick else (1, 2)):
        big = Engine.from_topology(synth.generate(sites=200, regions=20, seed=seed), f"synth{seed}")
        big.catalog.prepare()
        for load in (0.6, 0.95):
            rows.append(one_case(big, f"synth 200x20 s{seed} {load:.0%}", synth_cells(big, load, seed), 14, 1))
    day = None if args.quick else sim_day()
    if day is not None:
        print(f"simulated day (baseline-day, 1-minute steps, 3 policies): {day:.1f} s")
    ms = [r["ms"] for r in default_rows]
    summary = {
        "plan_vs_exact_worst": round(max(r["plan_vs_exact"] for r in rows), 6),
        "served_vs_exact_min": round(min(r["served_vs_exact"] for r in rows), 6),
        "ms_per_plan_median": round(statistics.median(ms), 3),
        "sim_day_s": None if day is None else round(day, 2),
        "ms_per_plan_max": round(max(ms), 3),
        "plan_ms_vs_one_lp_median": round(statistics.median(r["ms"] / r["lp_ms"] for r in default_rows), 2),
        "worst_reported_gap": max(r["gap"] for r in rows),
        "vs_cheapest_greedy_median": round(statistics.median(r["vs_greedy"] for r in rows), 4),
        "vs_nearest_median": round(statistics.median(r["vs_nearest"] for r in rows), 4),
        "plan_vs_exact_worst_binding": round(max(r["plan_vs_exact"] for r in small_rows), 6),
        "binding_pairs_min_small_fleet": min(r["binding"] for r in small_rows),
        "synth_ms_median": round(statistics.median(r["ms"] for r in rows[len(default_rows) + len(small_rows):]), 1),
        "cases": len(rows),
    }
    print(json.dumps(summary, separators=(",", ":")))


if __name__ == "__main__":
    main()
