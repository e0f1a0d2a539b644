"""`scheduler holds list|release`: an operator's view of live capacity holds, and a way to free them."""

from __future__ import annotations

import argparse
import datetime
import sys

import grpc

from scheduler.commands.place import add_client_args, client_from_args
from scheduler.service.client import error_text
from scheduler.service.security import ConfigError
from scheduler.table import render


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("holds", help="list or release live capacity holds (operator token)",
                       description=__doc__.splitlines()[0])
    hs = p.add_subparsers(dest="holds_command", required=True, metavar="ACTION")
    ls = hs.add_parser("list", help="live holds, soonest to end first, with totals per token and per pool")
    ls.add_argument("--owner", default="", help="only this token name's holds")
    ls.add_argument("--pool", default="", help="only this pool key (site/accelerator#j) or cable:<id>")
    ls.add_argument("--limit", type=int, default=50, help="holds to list (default: %(default)s; totals count all)")
    add_client_args(ls)
    ls.set_defaults(func=run_list)
    rel = hs.add_parser("release", help="free holds by id, token or pool")
    rel.add_argument("ids", nargs="*", type=int, help="reservation ids")
    rel.add_argument("--owner", default="", help="every hold of this token name")
    rel.add_argument("--pool", default="", help="every hold on this pool key or cable:<id>")
    add_client_args(rel)
    rel.set_defaults(func=run_release)


def _when(ts) -> str:
    return datetime.datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S UTC")


def run_list(args: argparse.Namespace) -> int:
    try:
        client = client_from_args(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with client:
        try:
            r = client.list_holds(args.owner, args.pool, args.limit)
        except grpc.RpcError as e:
            print(f"error: {error_text(e)}", file=sys.stderr)
            return 1
    rows = [[str(h.id), h.pool, f"{h.amount:.4g}", h.owner or "-", h.replica or "-", _when(h.expires_at)]
            for h in r.holds]
    print(render(["id", "pool", "amount", "token", "replica", "ends"], rows) if rows else "no live holds")
    print(f"\n{r.total} holds in all" + (f" ({len(r.holds)} listed)" if r.total > len(r.holds) else ""))
    if r.accelerators_by_owner:
        print(render(["token", "accelerators held"],
                     [[k or "-", f"{v:.4g}"] for k, v in sorted(r.accelerators_by_owner.items(), key=lambda kv: -kv[1])]))
    if r.unreachable:
        print(f"not answering: {', '.join(r.unreachable)}", file=sys.stderr)
    return 0


def run_release(args: argparse.Namespace) -> int:
    if not (args.ids or args.owner or args.pool):
        print("error: give ids, --owner or --pool", file=sys.stderr)
        return 2
    try:
        client = client_from_args(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    with client:
        try:
            r = client.release_holds(args.ids, args.owner, args.pool)
        except grpc.RpcError as e:
            print(f"error: {error_text(e)}", file=sys.stderr)
            return 1
    print(f"released {r.released} holds")
    if r.unreachable:
        print(f"not answering (their holds were not released): {', '.join(r.unreachable)}", file=sys.stderr)
        return 1
    return 0
