"""The `scheduler` command: one subcommand per job, each defined in the module that owns the job."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module exposes `register(subparsers)`, adding its subcommands with `set_defaults(func=...)`;
# a subcommand's func takes the parsed args and returns the exit code.
COMMAND_MODULES = [
    "scheduler.commands.validate",
    "scheduler.commands.diff",
    "scheduler.commands.serve",
    "scheduler.commands.place",
    "scheduler.commands.plan",
    "scheduler.commands.demo",
    "scheduler.commands.simulate",
    "scheduler.commands.expand",
    "scheduler.commands.holds",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scheduler", description="Nationwide compute-network scheduler for cross-border LLM inference"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return 0
