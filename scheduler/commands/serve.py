"""`scheduler serve`: run the gRPC control plane on a topology file until SIGTERM/SIGINT, then drain."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from scheduler.model.loader import LoadError
from scheduler.paths import DEFAULT_TOPOLOGY
from scheduler.service.server import DEFAULT_GRACE_S, DEFAULT_PORT, DEFAULT_WORKERS, ControlPlane


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the placement and topology gRPC API (hot-reloads the topology file)")
    p.add_argument("--topology", default=str(DEFAULT_TOPOLOGY), help="topology YAML (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help="port; 0 picks a free one (default: %(default)s)")
    p.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help="RPC threads (default: %(default)s)")
    p.add_argument("--grace", type=float, default=DEFAULT_GRACE_S,
                   help="seconds in-flight calls may take to finish on shutdown (default: %(default)s)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=run)


def setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def run(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    try:
        plane = ControlPlane(args.topology, host=args.host, port=args.port, workers=args.workers)
    except LoadError as e:
        print(e, file=sys.stderr)
        print(f"{len(e.problems)} problem(s) in {args.topology}; not serving", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    stop = threading.Event()
    received: list[str] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    plane.start()
    print(f"serving {plane.state.path} (version {plane.state.version}) on {plane.target}", flush=True)
    while not stop.wait(0.5):
        pass
    print(f"{received[0]}: draining in-flight calls (up to {args.grace:g} s)", flush=True)
    plane.stop(args.grace)
    print("stopped", flush=True)
    return 0
