"""`scheduler expand SCENARIO --options FILE [--budget CNY] [--by DAY]`: what to add where and by when.

Prints the additions with their totals, the baselines on the same cost function, and the simulator's tables of
the scenario before and after; writes CSVs and an HTML report. Exit 0 when the additions serve the target share of
demand within the SLO by re-simulation, 2 when they cannot (it says what no addition fixes), 1 on a bad file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scheduler.expand import planner, plots, report
from scheduler.expand.options import load_options
from scheduler.model.loader import LoadError
from scheduler.sim.scenario import load_scenario
from scheduler.sim.solver_logs import quiet_solver_logs

EXIT_INVALID = 1
EXIT_SHORT = 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("expand", help="plan accelerator additions for a scenario's demand",
                       description="Choose accelerator additions per site and type, with their online dates, at "
                                   "the least total cost; prove them by re-simulating the scenario.")
    p.add_argument("scenario", help="scenario YAML (see simulations/)")
    p.add_argument("--options", required=True, help="expansion options YAML (see topology/expansion-options.yaml)")
    p.add_argument("--budget", type=float, help="CNY the additions may commit (purchases at price, rent for "
                                                 "their hours)")
    p.add_argument("--by", type=int, metavar="DAY", help="plan for the demand up to the end of this day (default: "
                                                          "the scenario's end): every addition is online by then")
    p.add_argument("--out", help="output directory (default: out/expand-<scenario name>)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots and the HTML report")
    p.set_defaults(func=run_expand)


def run_expand(args: argparse.Namespace) -> int:
    if args.budget is not None and not args.budget >= 0:
        print("--budget: must be a number of CNY >= 0", file=sys.stderr)
        return EXIT_INVALID
    if args.by is not None and args.by < 1:
        print("--by: must be a day number >= 1", file=sys.stderr)
        return EXIT_INVALID
    try:
        loaded = load_scenario(args.scenario)
        options = load_options(args.options, loaded.topology)
    except LoadError as e:
        print(e, file=sys.stderr)
        print(f"{len(e.problems)} problem(s)", file=sys.stderr)
        return EXIT_INVALID
    quiet_solver_logs()
    x = planner.expand(loaded, options.options, args.budget, args.by)
    out = Path(args.out or Path("out") / f"expand-{x.instance.scenario.name}")
    pngs = None if args.no_plots else plots.write(x, out)
    files = report.write(x, args.options, out, pngs)
    print(report.text(x, args.options), end="")
    print(f"\nwrote {out}/: {len(files) + len(pngs or {})} files ({x.seconds:.1f} s)")
    return 0 if x.met else EXIT_SHORT
