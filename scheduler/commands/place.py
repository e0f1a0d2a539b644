"""`scheduler place`: ask a running control plane where one batch goes, and print the decision with its reasons."""

from __future__ import annotations

import argparse
import sys

import grpc

from scheduler.queueing import PERCENTILES
from scheduler.service.client import DEFAULT_TARGET, TOKEN_ENV, Client, error_decision, error_text, read_token
from scheduler.commands.render import decision_report
from scheduler.service.security import ConfigError
from scheduler.v1 import types_pb2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("place", help="place one batch through a running control plane and explain the decision")
    p.add_argument("--region", required=True, help="origin region id, e.g. singapore")
    p.add_argument("--model", help="model id (default: the topology's first model)")
    p.add_argument("--input-tokens", type=int, default=2000, help="per request (default: %(default)s)")
    p.add_argument("--output-tokens", type=int, default=500, help="per request (default: %(default)s)")
    p.add_argument("--requests", type=int, default=1, help="requests in the batch (default: %(default)s)")
    p.add_argument("--ttft-ms", type=float, help="time-to-first-token SLO (default: the region's)")
    p.add_argument("--e2e-ms", type=float, help="end-to-end SLO (default: the region's)")
    p.add_argument("--percentile", type=float, choices=PERCENTILES, metavar="P",
                   help="the share of requests (%%) the SLO holds for: 50, 90, 95, 99 or 99.9 (default: the "
                        "region's, p95 unless the topology says otherwise)")
    p.add_argument("--data-class", default="", help="data class (default: public)")
    p.add_argument("--hour", type=int, help="China local hour 0-23 for prices (default: now)")
    p.add_argument("--dry-run", action="store_true", help="decide without holding capacity")
    add_client_args(p)
    p.set_defaults(func=run)


def add_client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target", default=DEFAULT_TARGET, help="control plane address (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=10.0, help="deadline in seconds (default: %(default)s)")
    g = p.add_argument_group("security")
    g.add_argument("--token-file", help=f"file whose first line is the bearer token (default: ${TOKEN_ENV})")
    g.add_argument("--tls", action="store_true", help="connect over TLS, trusting the system's CA roots")
    g.add_argument("--ca", help="PEM CA to trust for the server's certificate (implies --tls)")
    g.add_argument("--cert", help="PEM client certificate, for mutual TLS")
    g.add_argument("--key", help="PEM key of the client certificate")


def client_from_args(args: argparse.Namespace) -> Client:
    """A Client as the flags say (ConfigError for unreadable token or TLS files)."""
    return Client(args.target, timeout=args.timeout, token=read_token(args.token_file), tls=args.tls, ca=args.ca,
                  cert=args.cert, key=args.key)


def first_model(client: Client) -> str:
    return client.get_topology().topology.models[0]


def run(args: argparse.Namespace) -> int:
    try:
        client = client_from_args(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with client:
        try:
            model = args.model or first_model(client)
            batch = types_pb2.Batch(region=args.region, model=model, input_tokens=args.input_tokens,
                                    output_tokens=args.output_tokens, requests=args.requests, ttft_ms=args.ttft_ms,
                                    e2e_ms=args.e2e_ms, data_class=args.data_class, percentile=args.percentile)
            resp = client.place(batch, hour=args.hour, dry_run=args.dry_run)
        except grpc.RpcError as e:
            decision = error_decision(e)
            if decision is not None:
                print(decision_report(decision, batch))
            print(f"error: {error_text(e)}", file=sys.stderr)
            return 1
    print(decision_report(resp.decision, batch, resp.topology_version, resp.hour))
    return 0
