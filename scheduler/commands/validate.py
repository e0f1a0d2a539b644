"""`scheduler validate FILE`: check a topology and summarise it, or list every problem as FILE:LINE: field: message."""

from __future__ import annotations

import argparse
import sys

from scheduler.engine.core import Engine
from scheduler.engine.request import Batch
from scheduler.model.loader import LoadError, Loaded, load_topology
from scheduler.paths import DEFAULT_TOPOLOGY
from scheduler.table import render

SAMPLE_INPUT, SAMPLE_OUTPUT = 2000, 500  # the typical request the summary prices


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="check a topology file and print a summary")
    p.add_argument("file", nargs="?", default=str(DEFAULT_TOPOLOGY), help="topology YAML (default: %(default)s)")
    p.add_argument("--hour", type=int, default=14, help="China local hour for prices (default: %(default)s)")
    p.set_defaults(func=run)


def summary(loaded: Loaded, hour: int) -> str:
    topo = loaded.value
    engine = Engine.from_topology(topo, loaded.version)
    cat = engine.catalog
    segments = sum(len(c.segments) for c in topo.cables)
    lines = [
        f"{loaded.path}: OK  (version {loaded.version})",
        f"  {len(topo.sites)} sites, {len(topo.nodes)} network nodes, {len(topo.regions)} regions, "
        f"{len(topo.links)} terrestrial links, {len(topo.cables)} cables ({segments} segments), "
        f"{len(topo.models)} models, {len(cat.pools)} accelerator pools",
        "",
        f"Per region, for a {SAMPLE_INPUT}-in/{SAMPLE_OUTPUT}-out request at {hour:02d}:00 China time "
        f"under the region's default SLO:",
    ]
    rows = []
    model = topo.models[0].id
    for region in topo.regions:
        routes = [r for (reg, _), r in cat.network.routes.items() if reg == region.id]
        nearest = min(routes, key=lambda r: r.rtt_ms, default=None)
        d = engine.place(Batch(region.id, model, SAMPLE_INPUT, SAMPLE_OUTPUT), hour=hour, reserve=False)
        rows.append([
            region.id,
            f"{nearest.site} ({nearest.rtt_ms:.0f} ms)" if nearest else "-",
            d.site if d.placed else f"none: {d.message}",
            f"{d.rtt_ms:.0f}" if d.placed else "-",
            f"{d.ttft_ms:.0f}" if d.placed else "-",
            f"{d.cost_cny / (d.batch.input_tokens + d.batch.output_tokens) * 1e6:.3f}" if d.placed else "-",
            " ".join(d.route.cables) if d.placed and d.route else "-",
        ])
    lines.append(render(["region", "lowest-RTT site", f"cheapest meeting SLO ({model})", "RTT ms", "TTFT ms",
                         "CNY/Mtok", "cables"], rows))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    try:
        loaded = load_topology(args.file)
    except LoadError as e:
        print(e, file=sys.stderr)
        print(f"{len(e.problems)} problem(s) in {args.file}", file=sys.stderr)
        return 1
    print(summary(loaded, args.hour))
    return 0
