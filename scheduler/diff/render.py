"""A diff report as text for a terminal, markdown for a pull-request comment, or JSON for tools.

Text and markdown show the same sections in the same order; JSON holds every figure (also the unchanged pools
and cables) with infinities as null.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any

from scheduler.diff.capacity import PoolCapacity, PoolState
from scheduler.diff.changes import Action, Change
from scheduler.diff.plans import CableImpact, PlanImpact
from scheduler.diff.report import REFUSES, DiffReport
from scheduler.diff.routes import RouteMove
from scheduler.table import render as table

FORMATS = ("text", "markdown", "json")
MARK = {Action.added: "+", Action.removed: "-", Action.changed: "~"}
VALUE_CHARS = 60


def value(v: Any) -> str:
    """A field's value as an operator wrote it (compact, cut at 60 characters)."""
    text = "(unset)" if v is None else v if isinstance(v, str) else json.dumps(v, separators=(", ", ": "))
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 3] + "..."


def num(x: float, digits: int = 0) -> str:
    return "unbounded" if math.isinf(x) else f"{x:,.{digits}f}"


def change_rows(changes: Sequence[Change]) -> list[list[str]]:
    rows = []
    for c in changes:
        head = [MARK[c.action], f"{c.kind} {c.key}"]
        if c.action is Action.changed:
            for i, f in enumerate(c.fields):
                rows.append([*(head if i == 0 else ["", ""]), f"{c.file}:{f.line}",
                             f"{f.field}: {value(f.old)} -> {value(f.new)}"])
        else:
            rows.append([*head, c.where, c.action.value])
    return rows


def route_rows(moves: Sequence[RouteMove]) -> list[list[str]]:
    def rtt(x: float) -> str:
        return "unreachable" if math.isinf(x) else f"{x:.1f}"

    def cables(c: tuple[str, ...] | None) -> str:
        return "unreachable" if c is None else " ".join(c) or "(none)"

    return [[m.region, m.site, rtt(m.rtt_before_ms), rtt(m.rtt_after_ms),
             "" if math.isinf(m.rtt_before_ms) or math.isinf(m.rtt_after_ms)
             else f"{m.rtt_after_ms - m.rtt_before_ms:+.1f}",
             cables(m.cables_before), cables(m.cables_after) + ("" if m.cables_changed else " (same)")]
            for m in moves]


def pool_rows(pools: Sequence[PoolCapacity]) -> list[list[str]]:
    def state(s: PoolState | None) -> str:
        if s is None:
            return "absent"
        down = "" if s.site_status == "up" else f", site {s.site_status}"
        return f"{s.count} ({num(s.usable, 1)} usable){down}"

    return [[p.pool, state(p.before), state(p.after)] for p in pools if p.changed]


def plan_rows(p: PlanImpact) -> list[list[str]]:
    a, b = p.before, p.after

    def delta(x: float, y: float, pct: bool) -> str:
        if abs(y - x) < 0.5:
            return "0"
        if pct and x > 0:
            return f"{(y - x) / x * 100:+.1f}%"
        return f"{y - x:+,.0f}"

    return [
        ["cost CNY/hour", num(a.cost_cny_per_hour), num(b.cost_cny_per_hour),
         delta(a.cost_cny_per_hour, b.cost_cny_per_hour, True)],
        ["served tokens/s", num(a.served_tokens_per_s), num(b.served_tokens_per_s),
         delta(a.served_tokens_per_s, b.served_tokens_per_s, False)],
        ["refused tokens/s", num(a.refused_tokens_per_s), num(b.refused_tokens_per_s),
         delta(a.refused_tokens_per_s, b.refused_tokens_per_s, False)],
        ["solver status", a.status, b.status, ""],
    ]


def lost_rows(p: PlanImpact) -> list[list[str]]:
    return [[c.region, c.model, c.data_class, num(c.tokens_per_s), num(c.before.served), num(c.after.served),
             num(c.lost), c.after.reason] for c in p.lost_cells]


def cable_rows(cables: Sequence[CableImpact]) -> list[list[str]]:
    def cap(c: float, up: bool) -> str:
        return num(c) if up else "down"

    rows = []
    for c in cables:
        why = [*(["today's routing would not fit"] if c.overrun_by_current else []),
               *(["full in the new plan"] if c.full_after else [])]
        rows.append([c.cable, cap(c.capacity_before_gbps, c.up_before),
                     cap(c.capacity_after_gbps, c.up_after), f"{c.load_before_gbps:.2f}",
                     f"{c.load_after_gbps:.2f}", "; ".join(why)])
    return rows


def verdict(r: DiffReport) -> str:
    if r.exit_code == REFUSES:
        n = len(r.plan.lost_cells)
        return (f"exit 3: the edit would refuse {num(r.plan.lost_tokens_per_s)} tokens/s of demand served "
                f"before ({n} cell{'s' * (n != 1)}); hold it for review")
    return "exit 0: the edit refuses no demand served before"


HEADERS = {
    "changes": ["", "entity", "where", "change"],
    "routes": ["region", "site", "RTT before ms", "RTT after ms", "change ms", "cables before",
               "cables after"],
    "pools": ["pool", "accelerators before", "accelerators after"],
    "plan": ["", "before", "after", "change"],
    "lost": ["region", "model", "data class", "demand tok/s", "served before", "served after", "lost",
             "refused because"],
    "cables": ["cable", "Gbps before", "Gbps after", "load before", "load after", "why listed"],
}


def _sections(r: DiffReport) -> list[tuple[str, str, list[list[str]], str]]:
    """(key, title, rows, note when there are none) in the order both text and markdown show them."""
    p = r.plan
    unchanged = sum(not x.changed for x in r.pools)
    return [
        ("changes", f"What changed (lines in {r.new}; removals at their line in {r.old})",
         change_rows(r.changes),
         "nothing: both files describe the same topology (comments and layout are not part of it)"),
        ("routes", "Network impact: per region, sites whose RTT moves by more than 1 ms or whose route "
                   "changes cables", route_rows(r.routes), "none"),
        ("pools", f"Capacity impact: pools whose capacity changes ({unchanged} unchanged; usable = count x "
                  "max_utilization, 0 at a site that is not up)", pool_rows(r.pools), "none"),
        ("plan", f"Plan impact at {p.hour:02d}:00 China time, policy {p.policy}; demand: {p.demand}, "
                 f"{len(p.cells)} cells", plan_rows(p), ""),
        ("lost", "Cells that lose their SLO (demand served within it before, refused after)", lost_rows(p),
         "none"),
        ("cables", "Cables over capacity (today's routing would not fit the new topology, or the new plan "
                   "fills them)", cable_rows(p.cables_over), "none"),
    ]


def text(r: DiffReport) -> str:
    out = [f"scheduler diff {r.old} (version {r.old_version}) -> {r.new} (version {r.new_version})"]
    for key, title, rows, none in _sections(r):
        out += ["", f"{title}:"]
        out += ["  " + line for line in table(HEADERS[key], rows).splitlines()] if rows else [f"  {none}"]
    return "\n".join([*out, "", verdict(r)])


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|") if s else " "


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]], code: Callable[[int], bool]) -> list[str]:
    def cell(i: int, s: str) -> str:
        return f"`{s}`" if code(i) and s else _md_cell(s)

    return ["| " + " | ".join(_md_cell(h) for h in header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(cell(i, s) for i, s in enumerate(row)) + " |" for row in rows)]


CODE_COLUMNS = {"changes": {1, 2, 3}, "routes": {0, 1, 5, 6}, "pools": {0}, "plan": set(), "lost": {0, 1, 2},
                "cables": {0}}


def markdown(r: DiffReport) -> str:
    icon = "⚠️" if r.exit_code == REFUSES else "✅"
    out = [f"### Topology diff: `{r.old}` → `{r.new}`", "",
           f"{icon} **{verdict(r)}**", "", f"Versions `{r.old_version}` → `{r.new_version}`."]
    for key, title, rows, none in _sections(r):
        out += ["", f"#### {title}", ""]
        out += _md_table(HEADERS[key], rows, CODE_COLUMNS[key].__contains__) if rows else [f"_{none}_"]
    return "\n".join(out) + "\n"


def _plain(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, Enum):
        return x.value
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: _plain(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def as_json(r: DiffReport) -> str:
    p = r.plan
    doc = {
        "old": r.old, "new": r.new, "old_version": r.old_version, "new_version": r.new_version,
        "exit_code": r.exit_code, "verdict": verdict(r),
        "changes": _plain(r.changes),
        "routes": [{**_plain(m), "rtt_moved": m.rtt_moved, "cables_changed": m.cables_changed}
                   for m in r.routes],
        "pools": [{**_plain(x), "changed": x.changed} for x in r.pools],
        "plan": {
            "hour": p.hour, "policy": p.policy, "demand": p.demand,
            "before": _plain(p.before), "after": _plain(p.after),
            "lost_tokens_per_s": p.lost_tokens_per_s,
            "cells": [{**_plain(c), "lost_tokens_per_s": c.lost} for c in p.cells],
            "cables": [{**_plain(c), "overrun_by_current": c.overrun_by_current, "full_after": c.full_after}
                       for c in p.cables],
        },
    }
    return json.dumps(doc, indent=2, allow_nan=False)


RENDERERS: dict[str, Callable[[DiffReport], str]] = {"text": text, "markdown": markdown, "json": as_json}
