"""Placement benchmark: the joint solve against its own lower bound and against the batch baselines.

On the default topology and on a generated large one (200 sites, 50 regions), for 100 / 1,000 / 10,000 seeded
batches: wall time of `Engine.place_many` (fresh ledger, reservations on, median of a few runs after a warm-up),
cost as a ratio to the solve's lower bound (`Assignment.best_bound`, a valid bound on any assignment that keeps
capacity, cables and every SLO at final load; the penalty of batches no target can take at all is left out of
both sides), cost as a ratio to `cheapest-greedy` and `nearest` run on the same batches, unplaced batches per
policy, and SLO violations per policy: every placement re-estimated at the pool loads of *all* of that policy's
placements running at once. Also the latency of one `Engine.place` on the default topology.

Usage: python benchmarks/placement.py [--quick]. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from scheduler import synth  # noqa: E402
from scheduler.engine import baselines  # noqa: E402
from scheduler.engine.solve import problem as joint  # noqa: E402
from scheduler.engine.core import Engine, batch_decisions  # noqa: E402
from scheduler.engine.estimate import BatchArrays, estimate  # noqa: E402
from scheduler.model.loader import load_topology  # noqa: E402
from scheduler.paths import DEFAULT_TOPOLOGY  # noqa: E402

HOUR = 14  # Guangdong peak, Ningxia solar band: the hour at which prices differ most
SIZES = (100, 1_000, 10_000)
SEED = 2026


def violations(engine: Engine, decisions) -> int:
    """Placements whose TTFT or end-to-end estimate exceeds their SLO with every placement of the run running."""
    cat = engine.catalog
    pool_index = {p.key: i for i, p in enumerate(cat.pools)}
    load = np.zeros(len(cat.pools))
    placed = [d for d in decisions if d.placed]
    for d in placed:
        load[pool_index[d.pool]] += d.load
    bad = 0
    for model, mt in cat.by_model.items():
        mine = [d for d in placed if d.batch.model == model]
        if not mine:
            continue
        target_of = {cat.pools[q].key: k for k, q in enumerate(mt.pool)}
        k = np.array([target_of[d.pool] for d in mine])
        arrays = BatchArrays(np.array([cat.region_index[d.batch.region] for d in mine]),
                             np.array([float(d.batch.input_tokens) for d in mine]),
                             np.array([float(d.batch.output_tokens) for d in mine]),
                             np.array([float(d.batch.requests) for d in mine]),
                             np.array([d.slo.ttft_ms for d in mine]), np.array([d.slo.e2e_ms for d in mine]),
                             [d.batch.data_class for d in mine])
        e = estimate(cat, mt, arrays, HOUR, load, targets=k)
        bad += int(((e.ttft_ms[:, 0] > arrays.ttft_slo) | (e.e2e_ms[:, 0] > arrays.e2e_slo)).sum())
    return bad


def case(name: str, topology, n: int, runs: int) -> dict:
    batches = synth.random_batches(topology, n, seed=SEED + n)
    times, result = [], None
    for _ in range(runs):
        engine = Engine.from_topology(topology, name)
        start = time.perf_counter()
        result = engine.place_many(batches, hour=HOUR, reserve=True)
        times.append(time.perf_counter() - start)
    s = result.solution
    row = {
        "topology": name, "sites": len(topology.sites), "regions": len(topology.regions), "batches": n,
        "seconds": statistics.median(times), "seconds_max": max(times), "method": s.method, "status": s.status,
        "cost_cny": s.cost, "objective": s.objective, "bound": s.best_bound,
        "lp_gap_ratio": (s.objective - s.unavoidable) / (s.best_bound - s.unavoidable)
        if s.best_bound - s.unavoidable > 0 else 1.0,
        "unplaced": {"engine": n - result.placed},
        "slo_violations": {"engine": violations(engine, result.decisions)},
        "cost_cny_by_policy": {"engine": s.cost},
    }
    no_target = int(sum(1 for d in result.decisions if not d.placed and d.reason.name not in ("CAPACITY", "CABLE")))
    row["unplaceable"] = no_target  # no target passes the filter at all (e.g. an SLO no site can meet)
    for policy in baselines.POLICIES:
        engine = Engine.from_topology(topology, name)
        start = time.perf_counter()
        r = engine.place_baseline(batches, policy, hour=HOUR, reserve=True)
        row[f"seconds_{policy}"] = time.perf_counter() - start
        row["unplaced"][policy] = n - r.placed
        row["slo_violations"][policy] = violations(engine, r.decisions)
        row["cost_cny_by_policy"][policy] = r.solution.cost
        row[f"vs_{policy}_cost_ratio"] = s.cost / r.solution.cost
        row[f"vs_{policy}_objective_ratio"] = s.objective / r.solution.objective
    # For scale: the same greedy judging each batch only by the load it sees when placed, as a router without
    # the ledger's ceilings would. Its later placements break some of its earlier promises.
    engine = Engine.from_topology(topology, name)
    slos = [engine.check(b) for b in batches]
    p = joint.build(engine.catalog, batches, slos, HOUR, *engine.usage(), engine.ceilings())
    naive = baselines.solve(p, "cheapest-greedy", keep_promises=False)
    row["slo_violations"]["greedy-no-promises"] = violations(engine, batch_decisions(p, naive, slos))
    return row


def place_latency_us(topology, n: int = 2000) -> dict:
    engine = Engine.from_topology(topology, "default")
    batches = synth.random_batches(topology, n, seed=SEED)
    for b in batches[:50]:
        engine.place(b, hour=HOUR, reserve=False)
    out = {}
    for reserve in (False, True):
        samples = []
        for b in batches:
            start = time.perf_counter()
            engine.place(b, hour=HOUR, reserve=reserve)
            samples.append((time.perf_counter() - start) * 1e6)
            if reserve:
                engine.ledger.clear()
        samples.sort()
        out["reserve" if reserve else "dry_run"] = {"p50": samples[len(samples) // 2],
                                                    "p99": samples[int(len(samples) * 0.99)]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run per case instead of three")
    args = parser.parse_args()
    runs = 1 if args.quick else 3
    topologies = [("default", load_topology(DEFAULT_TOPOLOGY).value),
                  ("synth-200x50", synth.generate(sites=200, regions=50, seed=0))]
    for name, topo in topologies:  # warm-up: imports, OR-Tools start-up, numpy caches
        Engine.from_topology(topo, name).place_many(synth.random_batches(topo, 300, seed=1), hour=HOUR)
    rows = [case(name, topo, n, runs) for name, topo in topologies for n in SIZES]

    header = (f"{'topology':14} {'batches':>7} {'seconds':>8} {'method':17} {'cost/LB':>8} {'vs greedy':>9} "
              f"{'vs nearest':>10} {'unplaced e/g/n':>15} {'SLO viol e/g/n':>15} {'naive viol':>10}")
    print(header)
    print("-" * len(header))
    for r in rows:
        u, v = r["unplaced"], r["slo_violations"]
        print(f"{r['topology']:14} {r['batches']:>7} {r['seconds']:>8.3f} {r['method']:17} {r['lp_gap_ratio']:>8.4f} "
              f"{r['vs_cheapest-greedy_cost_ratio']:>9.4f} {r['vs_nearest_cost_ratio']:>10.4f} "
              f"{u['engine']:>5}/{u['cheapest-greedy']}/{u['nearest']:<5} "
              f"{v['engine']:>5}/{v['cheapest-greedy']}/{v['nearest']:<7} {v['greedy-no-promises']:>10}")
    print("e/g/n = engine / cheapest-greedy / nearest; naive viol = cheapest-greedy without the ledger's ceilings.")
    print("cost/LB leaves out the penalty of batches no target can take (same for every policy: "
          + ", ".join(f"{r['topology']} {r['batches']}: {r['unplaceable']}" for r in rows) + ").")
    latency = place_latency_us(topologies[0][1])
    print(f"Engine.place on the default topology: p50 {latency['dry_run']['p50']:.0f} us "
          f"(p99 {latency['dry_run']['p99']:.0f} us) without reserving, p50 {latency['reserve']['p50']:.0f} us "
          f"with the ledger")
    big = next(r for r in rows if r["topology"] == "synth-200x50" and r["batches"] == 10_000)
    summary = {
        "lp_gap_ratio": max(r["lp_gap_ratio"] for r in rows),
        "lp_gap_ratio_10k_x_200": big["lp_gap_ratio"],
        "vs_greedy_cost_ratio": big["vs_cheapest-greedy_cost_ratio"],
        "vs_nearest_cost_ratio": big["vs_nearest_cost_ratio"],
        "slo_violations": sum(r["slo_violations"]["engine"] for r in rows),
        "slo_violations_by_policy": {p: sum(r["slo_violations"][p] for r in rows)
                                     for p in ("engine", *baselines.POLICIES, "greedy-no-promises")},
        "unplaced_by_policy": {p: sum(r["unplaced"][p] for r in rows) for p in ("engine", *baselines.POLICIES)},
        "seconds_10k_x_200": big["seconds"],
        "place_us_p50": latency["dry_run"]["p50"],
        "cases": rows,
    }
    print(json.dumps(summary, separators=(",", ":")))


if __name__ == "__main__":
    main()
