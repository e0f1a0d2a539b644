"""`scheduler simulate SCENARIO` and `scheduler sweep SCENARIO...`: what-if runs for planners.

simulate: one scenario through simulated time, every policy side by side; prints the comparison and writes CSV,
PNG plots and a self-contained HTML report. sweep: many scenarios x seeds in parallel (processes, or Ray), one table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from scheduler.model.loader import LoadError
from scheduler.sim.scenario import LoadedScenario, load_scenario, parse_duration

EXIT_INVALID = 1
EXIT_UNAVAILABLE = 3


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("simulate", help="run a what-if scenario and compare policies",
                       description="Step a scenario through simulated time with each policy; write a report.")
    p.add_argument("scenario", help="scenario YAML (see simulations/)")
    p.add_argument("--out", help="output directory (default: out/<scenario name>)")
    p.add_argument("--seed", type=int, help="override the scenario's seed")
    p.add_argument("--step", help="override the time step, e.g. 15m or 1h")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots and the HTML report")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar, no timing line")
    p.set_defaults(func=run_simulate)

    s = sub.add_parser("sweep", help="run scenarios x seeds in parallel and compare",
                       description="Run every scenario at N seeds, locally in processes or on a Ray cluster.")
    s.add_argument("scenarios", nargs="+", metavar="SCENARIO", help="scenario YAML files")
    s.add_argument("--seeds", type=int, default=1, help="seeds per scenario: its seed and the next N-1 (default 1)")
    s.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="local worker processes (default: %(default)s)")
    s.add_argument("--ray", metavar="ADDRESS",
                   help="run on this Ray cluster instead ('auto', 'ray://host:10001', or 'local' to start one)")
    s.add_argument("--step", help="override every scenario's time step, e.g. 1h")
    s.add_argument("--out", default="out/sweep", help="output directory (default: %(default)s)")
    s.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    s.set_defaults(func=run_sweep)


def _load(path: str) -> LoadedScenario | None:
    try:
        return load_scenario(path)
    except LoadError as e:
        print(e, file=sys.stderr)
        print(f"{len(e.problems)} problem(s) in {path}", file=sys.stderr)
        return None


def _step_minutes(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as e:
        raise SystemExit(f"--step: {e}") from None


def run_simulate(args: argparse.Namespace) -> int:
    loaded = _load(args.scenario)
    if loaded is None:
        return EXIT_INVALID
    from scheduler.sim import output, plots, report  # noqa: PLC0415 - matplotlib only when needed
    from scheduler.sim.loop import simulate
    from scheduler.sim.solver_logs import quiet_solver_logs

    try:
        scenario = loaded.scenario.with_overrides(step=_step_minutes(args.step), seed=args.seed)
    except ValueError as e:
        print(f"{args.scenario}: {e}", file=sys.stderr)
        return EXIT_INVALID
    quiet_solver_logs()
    out = Path(args.out or Path("out") / scenario.name)
    start = time.perf_counter()
    run = simulate(scenario, loaded.topology, loaded.version, progress=not args.quiet and sys.stderr.isatty())
    files = output.write(run, out)
    if not args.no_plots:
        pngs = plots.write(run, out)
        files.update(pngs)
        files["report"] = report.write(run, pngs, out)
    print(output.summary_text(run), end="")
    print(f"\nwrote {out}/: " + ", ".join(sorted(p.name for p in files.values())))
    if not args.quiet:
        minutes = scenario.duration
        print(f"{scenario.steps} steps x {len(scenario.policies)} policies: loop {run.seconds:.1f} s "
              f"({minutes / run.seconds:,.0f} simulated minutes per second), total {time.perf_counter() - start:.1f} s",
              file=sys.stderr)
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    from scheduler.sim import sweep  # noqa: PLC0415

    if args.seeds < 1 or args.workers < 1:
        print("--seeds and --workers must be at least 1", file=sys.stderr)
        return EXIT_INVALID
    loaded = [_load(p) for p in args.scenarios]
    if any(x is None for x in loaded):
        return EXIT_INVALID
    step = _step_minutes(args.step)
    scenarios = []
    for path, x in zip(args.scenarios, loaded):
        try:
            scenarios.append((x.scenario.with_overrides(step=step), x.topology, x.version))  # type: ignore[union-attr]
        except ValueError as e:
            print(f"{path}: {e}", file=sys.stderr)
            return EXIT_INVALID
    todo = sweep.jobs(scenarios, args.seeds)
    start = time.perf_counter()
    try:
        results = sweep.run(todo, workers=args.workers, ray_address=args.ray,
                            progress=not args.quiet and sys.stderr.isatty())
    except sweep.SweepError as e:
        print(f"sweep: {e}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    files = sweep.write(results, Path(args.out))
    print(sweep.comparison_table(results))
    print(f"\nwrote {files['csv']} and {files['table']}")
    if not args.quiet:
        where = f"Ray at {args.ray}" if args.ray else f"{args.workers} local process(es)"
        print(f"{len(todo)} run(s) on {where} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return 0
