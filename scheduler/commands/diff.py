"""`scheduler diff OLD NEW`: what a topology edit changes and would do, before it goes live.

Exit 0 when the edit refuses no demand served before, 3 when it would refuse some (a CI job holds the change
for review), 1 when a file is not a valid topology (its FILE:LINE problems on stderr), 2 for bad arguments or
demand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scheduler.diff import demand as demands
from scheduler.diff.render import FORMATS, RENDERERS
from scheduler.diff.report import INVALID, diff
from scheduler.engine.core import Engine
from scheduler.engine.request import DemandCell, InvalidRequest
from scheduler.model.loader import LoadError, Loaded, load_topology

USAGE = 2


class DemandError(ValueError):
    """Demand the diff cannot plan on either topology."""


def hour(text: str) -> int:
    try:
        h = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a China local hour 0..23, got {text!r}") from None
    if not 0 <= h <= 23:
        raise argparse.ArgumentTypeError(f"expected a China local hour 0..23, got {h}")
    return h


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("diff", help="show what a topology edit changes and would do before it goes live",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("old", type=Path, help="the topology as it is served now")
    p.add_argument("new", type=Path, help="the edited topology")
    p.add_argument("--hour", type=hour, help="China local hour 0-23 to plan at (default: the busiest hour of "
                                            "simulations/baseline-day.yaml)")
    p.add_argument("--demand", type=Path, metavar="FILE",
                   help="YAML `demand: [{region, model, tokens_per_s, data_class?, input_tokens?, "
                        "output_tokens?, ttft_ms?, e2e_ms?}]` (as `scheduler plan --demand-file`); "
                        "default: the baseline day")
    p.add_argument("--format", choices=FORMATS, default="text", help="default: %(default)s")
    p.set_defaults(func=run)


def load_both(old: Path, new: Path) -> tuple[Loaded, Loaded] | None:
    """Both topologies, or None after printing every problem of each as FILE:LINE: field: message."""
    loaded, failed = [], False
    for path in (old, new):
        try:
            loaded.append(load_topology(path))
        except LoadError as e:
            print(e, file=sys.stderr)
            print(f"{len(e.problems)} problem(s) in {path}", file=sys.stderr)
            failed = True
    return None if failed else (loaded[0], loaded[1])


def _known(cell: DemandCell, engines: list[Engine]) -> str | None:
    """None when some side can plan the cell, else the last side's reason it cannot."""
    reason = None
    for e in engines:
        try:
            e.check(cell.as_batch())
            return None
        except InvalidRequest as err:
            reason = str(err)
    return reason


def pick_demand(args: argparse.Namespace, old: Loaded, new: Loaded) -> demands.Demand:
    """The cells to plan; DemandError when a demand file names what neither topology has."""
    engines = [Engine.from_topology(old.value), Engine.from_topology(new.value)]
    if args.demand is not None:
        d = demands.from_file(args.demand, args.hour, demands.busiest_hour())
        for i, c in enumerate(d.cells):
            reason = _known(c, engines)
            if reason is not None:
                raise DemandError(f"{args.demand}: demand[{i}].{reason} (in both {args.old} and {args.new})")
        return d
    d = demands.baseline(args.hour)
    kept = [c for c in d.cells if _known(c, engines) is None]
    if not kept:
        raise DemandError(f"the baseline day's demand names no region, model and data class that {args.old} "
                          f"or {args.new} has; give --demand FILE")
    skipped = len(d.cells) - len(kept)
    note = (f"; {skipped} of its cells left out (their region, model or data class is in neither file)"
            if skipped else "")
    return demands.Demand(kept, d.hour, d.source + note)


def run(args: argparse.Namespace) -> int:
    both = load_both(args.old, args.new)
    if both is None:
        return INVALID
    old, new = both
    try:
        d = pick_demand(args, old, new)
    except LoadError as e:
        print(e, file=sys.stderr)
        print(f"{len(e.problems)} problem(s) in {args.demand or demands.BASELINE}", file=sys.stderr)
        return USAGE
    except DemandError as e:
        print(f"error: {e}", file=sys.stderr)
        return USAGE
    report = diff(old, new, d)
    print(RENDERERS[args.format](report), end="" if args.format == "markdown" else "\n")
    return report.exit_code
