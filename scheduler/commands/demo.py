"""`scheduler demo`: start the control plane on a free loopback port, place a sample batch from every region
through a real gRPC client, print the decisions and the routing plan, and shut down."""

from __future__ import annotations

import argparse
import logging
import sys

import grpc

from scheduler.commands.plan import DEFAULT_RATE, default_demand
from scheduler.model.loader import LoadError
from scheduler.paths import DEFAULT_TOPOLOGY
from scheduler.service.client import Client, error_decision, error_text
from scheduler.commands.render import decision_report, decisions_table, plan_report
from scheduler.service.server import ControlPlane
from scheduler.v1 import types_pb2

SAMPLE_INPUT, SAMPLE_OUTPUT = 2000, 500


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="start the control plane, place a sample batch per region over gRPC, stop")
    p.add_argument("--topology", default=str(DEFAULT_TOPOLOGY), help="topology YAML (default: %(default)s)")
    p.add_argument("--hour", type=int, default=14, help="China local hour for prices (default: %(default)s)")
    p.add_argument("--rate", type=float, default=DEFAULT_RATE, help="plan demand per region, tokens/s")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        plane = ControlPlane(args.topology, host="127.0.0.1", port=0)
    except LoadError as e:
        print(e, file=sys.stderr)
        return 1
    plane.start()
    try:
        with Client(plane.target, timeout=30.0) as client:
            client.wait_ready()
            topo = client.get_topology().topology
            print(f"control plane on {plane.target}: topology {topo.name!r} version {topo.version}, "
                  f"{len(topo.sites)} sites, {len(topo.regions)} regions, models {', '.join(topo.models)}")
            model = topo.models[0]
            rows = []
            first: tuple | None = None
            for region in topo.regions:
                batch = types_pb2.Batch(id=f"demo-{region.id}", region=region.id, model=model,
                                        input_tokens=SAMPLE_INPUT, output_tokens=SAMPLE_OUTPUT)
                try:
                    resp = client.place(batch, hour=args.hour)
                    rows.append((batch, resp.decision, ""))
                    first = first or (batch, resp)
                except grpc.RpcError as e:
                    rows.append((batch, error_decision(e), error_text(e)))
            print(f"\nPlace: one {SAMPLE_INPUT}-in/{SAMPLE_OUTPUT}-out {model} batch per region at "
                  f"{args.hour:02d}:00 China time, under each region's default SLO")
            print(decisions_table(rows))
            if first is not None:
                batch, resp = first
                print(f"\nWhy {batch.region} went to {resp.decision.site}:")
                print(decision_report(resp.decision, batch, resp.topology_version, resp.hour))
            plan = client.get_plan(default_demand(topo, model, args.rate), hour=args.hour)
            print()
            print(plan_report(plan))
    except grpc.RpcError as e:
        print(f"error: {error_text(e)}", file=sys.stderr)
        return 1
    finally:
        plane.stop(grace=2.0)
    print("\ncontrol plane stopped cleanly")
    return 0
