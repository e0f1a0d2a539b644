"""A run as files a planner can keep: the summary table (text and CSV) and the per-step time series (CSV).

Numbers are written with a fixed format and nothing depends on the wall clock or the output path, so the same
scenario and seed give byte-identical files.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

from scheduler.sim.loop import Run, china_hour
from scheduler.sim.metrics import Summary
from scheduler.sim.scenario import clock, span
from scheduler.table import render

DEFINITIONS = (
    "tokens = input + output tokens; refused = demand no feasible site had room for (served + refused = demanded).",
    "SLO attainment % = tokens served within the SLO / tokens demanded (refusals count against); each share counts "
    "the share of its requests that meet the SLO under the modelled M/M/c wait at the planned load.",
    "TTFT = RTT + prefill + the SLO percentile's wait in the pool's M/M/c queue at the loads the plan produces; "
    "p50/p95/p99 are token-weighted over the run.",
    "cost = energy x PUE x hourly price + accelerator amortization + transit; green = kWh-weighted green share.",
)


def num(x: float) -> str:
    """A CSV number: 10 significant digits, the same text on every run."""
    if isinstance(x, float) and not math.isfinite(x):
        return "" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    return format(x, ".10g")


def si(x: float, digits: int = 3) -> str:
    """1.07e12 -> '1.07 T': big token and gram counts a person can read."""
    if not math.isfinite(x):
        return "-"
    for factor, suffix in ((1e12, " T"), (1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(x) >= factor:
            return f"{x / factor:.{digits}g}{suffix}"
    return f"{x:.{digits}g}"


def _ms(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{x:.0f}"


TABLE_HEADER = ["policy", "cost CNY", "CNY/Mtok", "SLO attainment %", "TTFT p50/p95/p99 ms", "tokens served",
                "tokens refused", "energy kWh", "green share", "gCO2"]


def table_row(s: Summary) -> list[str]:
    refused_pct = 100.0 * s.tokens_refused / s.tokens_demanded if s.tokens_demanded > 0 else 0.0
    return [
        s.policy,
        f"{s.cost_cny:,.0f}",
        "-" if not math.isfinite(s.cny_per_mtok) else f"{s.cny_per_mtok:.4f}",
        "-" if not math.isfinite(s.slo_attainment_pct) else f"{s.slo_attainment_pct:.2f}",
        f"{_ms(s.ttft_p50_ms)} / {_ms(s.ttft_p95_ms)} / {_ms(s.ttft_p99_ms)}",
        si(s.tokens_served),
        f"{si(s.tokens_refused)} ({refused_pct:.2f}%)" if s.tokens_refused >= 0.5 else "0",
        f"{s.energy_kwh:,.0f}",
        "-" if not math.isfinite(s.green_share) else f"{100 * s.green_share:.1f}%",
        si(s.g_co2),
    ]


def summary_table(summaries: Sequence[Summary]) -> str:
    return render(TABLE_HEADER, [table_row(s) for s in summaries])


def heading(run: Run) -> list[str]:
    s = run.scenario
    return [
        f"scenario {s.name}: {span(s.duration)} at {span(s.step)} steps "
        f"({s.steps} steps), seed {s.seed}, policies {', '.join(s.policies)}",
        f"topology {run.topology.name} (version {run.version})",
    ]


def summary_text(run: Run) -> str:
    """What the terminal shows and summary.txt keeps: heading, events, the table, notes and definitions."""
    lines = heading(run)
    for at, title in run.events():
        lines.append(f"  event {clock(at)}: {title}")
    lines += ["", summary_table(run.summaries()), ""]
    for p in run.scenario.policies:
        t = run.traces[p]
        if t.failed:
            lines.append(f"note: {p}: the solver failed in {t.failed} step(s), whose demand counts as refused")
    lines += [f"  {d}" for d in DEFINITIONS]
    return "\n".join(lines) + "\n"


def summary_csv(run: Run) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["scenario", "seed", *Summary.names(), "solver_failed_steps", "worst_gap"])
    for s in run.summaries():
        t = run.traces[s.policy]
        w.writerow([run.scenario.name, run.scenario.seed, s.policy, *map(num, s.values()[1:]), t.failed, num(t.worst_gap)])
    return out.getvalue()


def timeseries_columns(run: Run) -> list[str]:
    return (["step", "minute", "time", "china_hour", "state", "policy", "demand_tps", "served_tps", "refused_tps",
             "within_slo_tps", "cost_cny_per_hour", "kwh_per_hour", "g_co2_per_hour", "green_share",
             "ttft_p50_ms", "ttft_p95_ms", "ttft_p99_ms"]
            + [f"util:{x}" for x in run.sites] + [f"tps:{x}" for x in run.sites]
            + [f"gbps:{c}" for c in run.cables])


def timeseries_csv(run: Run, path: Path) -> None:
    """One row per step and policy (long form: easy to filter and pivot)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(timeseries_columns(run))
        for i, minute in enumerate(run.minutes.tolist()):
            for p in run.scenario.policies:
                t = run.traces[p]
                kwh = t.kwh_per_hour[i]
                w.writerow([
                    i, num(minute), clock(minute, always_day=True), china_hour(minute), int(run.state[i]), p,
                    num(t.demand_tps[i]), num(t.served_tps[i]), num(t.refused_tps[i]), num(t.within_slo_tps[i]),
                    num(t.cost_cny_per_hour[i]), num(kwh), num(t.g_co2_per_hour[i]),
                    num(t.green_kwh_per_hour[i] / kwh if kwh > 0 else math.nan),
                    num(t.ttft_p50_ms[i]), num(t.ttft_p95_ms[i]), num(t.ttft_p99_ms[i]),
                    *map(num, t.site_util[i].tolist()), *map(num, t.site_tps[i].tolist()),
                    *map(num, t.cable_gbps[i].tolist()),
                ])


def write(run: Run, out: Path) -> dict[str, Path]:
    """summary.txt, summary.csv and timeseries.csv under `out`; returns what was written."""
    out.mkdir(parents=True, exist_ok=True)
    files = {"summary": out / "summary.txt", "summary_csv": out / "summary.csv", "timeseries": out / "timeseries.csv"}
    files["summary"].write_text(summary_text(run), encoding="utf-8")
    files["summary_csv"].write_text(summary_csv(run), encoding="utf-8")
    timeseries_csv(run, files["timeseries"])
    return files
