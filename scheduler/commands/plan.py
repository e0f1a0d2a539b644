"""`scheduler plan`: ask a running control plane for the routing table of a demand matrix."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from scheduler.queueing import PERCENTILES
from scheduler.commands.place import add_client_args, client_from_args
from scheduler.service.client import error_text
from scheduler.service.security import ConfigError
from scheduler.commands.render import plan_report
from scheduler.v1 import topology_pb2, types_pb2

DEFAULT_RATE = 20_000.0  # tokens/s per region when no demand is given: a busy hour of one region's routers
CELL_KEYS = {"region", "model", "tokens_per_s", "data_class", "input_tokens", "output_tokens", "ttft_ms", "e2e_ms",
             "percentile"}


class DemandError(ValueError):
    """A demand flag or file the client cannot turn into cells; names the cell and key."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="print the fleet routing table for a demand matrix (GetPlan)")
    p.add_argument("--demand", action="append", default=[], metavar="REGION:MODEL:TOKENS_PER_S",
                   help="a demand cell (repeatable); MODEL may be empty for the first model")
    p.add_argument("--demand-file", type=Path,
                   help="YAML: `demand: [{region, model, tokens_per_s, data_class?, input_tokens?, ...}]`")
    p.add_argument("--rate", type=float, default=DEFAULT_RATE,
                   help="tokens/s per region for the default demand (default: %(default)s)")
    p.add_argument("--model", help="model of the default demand (default: the topology's first)")
    p.add_argument("--policy", default="optimal", help="optimal, cheapest-greedy or nearest (default: %(default)s)")
    p.add_argument("--hour", type=int, help="China local hour 0-23 for prices (default: now)")
    p.add_argument("--use-ledger", action="store_true", help="plan net of capacity live placements hold")
    p.add_argument("--percentile", type=float, choices=PERCENTILES, metavar="P",
                   help="the SLO percentile of cells that do not name one: 50, 90, 95, 99 or 99.9 (default: each "
                        "region's, p95 unless the topology says otherwise)")
    add_client_args(p)
    p.set_defaults(func=run)


def default_demand(topology: topology_pb2.TopologyInfo, model: str | None, rate: float) -> list[types_pb2.DemandCell]:
    """One cell per region for one model at the same rate."""
    m = model or topology.models[0]
    return [types_pb2.DemandCell(region=r.id, model=m, tokens_per_s=rate) for r in topology.regions]


def parse_flag(text: str, first_model: str) -> types_pb2.DemandCell:
    parts = text.split(":")
    if len(parts) != 3:
        raise DemandError(f"--demand {text!r}: expected REGION:MODEL:TOKENS_PER_S")
    try:
        rate = float(parts[2])
    except ValueError:
        raise DemandError(f"--demand {text!r}: tokens_per_s must be a number") from None
    return types_pb2.DemandCell(region=parts[0], model=parts[1] or first_model, tokens_per_s=rate)


def read_file(path: Path) -> list[types_pb2.DemandCell]:
    try:
        doc = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    except (OSError, YAMLError) as e:
        raise DemandError(f"{path}: {e}") from None
    cells = doc.get("demand") if isinstance(doc, dict) else None
    if not isinstance(cells, list) or not cells:
        raise DemandError(f"{path}: demand: expected a non-empty list of cells")
    out = []
    for i, c in enumerate(cells):
        if not isinstance(c, dict):
            raise DemandError(f"{path}: demand[{i}]: expected a mapping")
        unknown = set(c) - CELL_KEYS
        if unknown:
            raise DemandError(f"{path}: demand[{i}].{sorted(unknown)[0]}: unknown key")
        try:
            out.append(types_pb2.DemandCell(**c))
        except (TypeError, ValueError) as e:
            raise DemandError(f"{path}: demand[{i}]: {e}") from None
    return out


def run(args: argparse.Namespace) -> int:
    try:
        client = client_from_args(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with client:
        try:
            topology = client.get_topology().topology
            cells = [parse_flag(d, args.model or topology.models[0]) for d in args.demand]
            if args.demand_file:
                cells += read_file(args.demand_file)
            if not cells:
                cells = default_demand(topology, args.model, args.rate)
            if args.percentile is not None:
                for c in cells:
                    if not c.HasField("percentile"):
                        c.percentile = args.percentile
            resp = client.get_plan(cells, hour=args.hour, policy=args.policy, use_ledger=args.use_ledger)
        except DemandError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except grpc.RpcError as e:
            print(f"error: {error_text(e)}", file=sys.stderr)
            return 1
    print(plan_report(resp))
    return 0
