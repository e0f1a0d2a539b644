"""Simulator speed: a 24-hour day at 1-minute steps on the default topology with all three policies.

Run: `make bench` or `.venv/bin/python benchmarks/simulate.py [--scenario FILE] [--step 1m] [--no-outputs]`.

It runs simulations/baseline-day.yaml (7 regions x 2 models + the Shantou pilot: 17 demand cells, 1,440 steps,
4,320 fleet plans through Engine.plan) and reports simulated minutes per wall second, where the time goes
(inside the engine per policy vs the simulator's own bookkeeping) and, separately, writing the CSV, plots and
report. Target: the whole day with all three policies in under 30 s on 2 cores. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scheduler.paths import SIMULATIONS_DIR  # noqa: E402
from scheduler.sim.loop import simulate  # noqa: E402
from scheduler.sim.solver_logs import quiet_solver_logs  # noqa: E402
from scheduler.sim.scenario import load_scenario, parse_duration  # noqa: E402

TARGET_S = 30.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default=str(SIMULATIONS_DIR / "baseline-day.yaml"))
    ap.add_argument("--step", default="1m", help="time step (default: %(default)s)")
    ap.add_argument("--no-outputs", action="store_true", help="skip timing the CSV, plots and report")
    args = ap.parse_args()

    quiet_solver_logs()
    loaded = load_scenario(args.scenario)
    s = loaded.scenario.with_overrides(step=parse_duration(args.step), duration=1440.0)
    s = s.model_copy(update={"events": [e for e in s.events if e.at < 1440.0]})
    print(f"{s.name} on {loaded.topology.name}: {s.steps} steps of {s.step:g} min, "
          f"{len(s.demand.profiles)} demand cells, policies {', '.join(s.policies)}")

    start = time.perf_counter()
    run = simulate(s, loaded.topology, loaded.version)
    day_s = time.perf_counter() - start
    engine_s = sum(t.plan_seconds for t in run.traces.values())
    plans = s.steps * len(s.policies)
    print(f"day with {len(s.policies)} policies: {day_s:.2f} s wall = {s.duration / day_s:,.0f} simulated minutes "
          f"per second ({86400 * s.duration / 1440 / day_s:,.0f}x real time); target {TARGET_S:.0f} s "
          f"({day_s / TARGET_S:.2f} of it)")
    per_policy = {}
    for p, t in run.traces.items():
        per_policy[p] = 1000.0 * t.plan_seconds / s.steps
        print(f"  {p:<16} {per_policy[p]:6.2f} ms per Engine.plan  ({t.failed} solver failure(s))")
    print(f"  inside Engine.plan {engine_s:.2f} s ({100 * engine_s / day_s:.0f}%), simulator bookkeeping "
          f"{day_s - engine_s:.2f} s")

    outputs_s = None
    if not args.no_outputs:
        from scheduler.sim import output, plots, report  # noqa: PLC0415

        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            output.write(run, Path(d))
            report.write(run, plots.write(run, Path(d)), Path(d))
            outputs_s = time.perf_counter() - t0
        print(f"CSV + 5 plots + HTML report: {outputs_s:.2f} s")

    print(json.dumps({
        "day_three_policies_s": round(day_s, 3),
        "simulated_minutes_per_s": round(s.duration / day_s, 1),
        "target_s": TARGET_S,
        "steps": s.steps,
        "plans": plans,
        "engine_s": round(engine_s, 3),
        "ms_per_plan": {p: round(v, 3) for p, v in per_policy.items()},
        "solver_failed": {p: t.failed for p, t in run.traces.items()},
        "outputs_s": None if outputs_s is None else round(outputs_s, 3),
        "topology": loaded.topology.name,
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
