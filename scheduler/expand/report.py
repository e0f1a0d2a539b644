"""What a planner takes to a meeting: the additions table with totals, the strategies compared on the same cost
function, the simulator's tables before and after, and whether the target is met (or what no addition can fix);
as text, CSV and one self-contained HTML file. Fixed number formats: the same run gives the same files."""

from __future__ import annotations

import csv
import html
import io
import math
from dataclasses import replace
from pathlib import Path

from scheduler.expand.planner import TARGET_PCT, Expansion, served_pct
from scheduler.expand.resimulate import JUDGED_POLICY
from scheduler.sim import output as sim_output
from scheduler.sim.report import STYLE, figures, html_table
from scheduler.table import render

ADDITION_HEADER = ["site", "accelerator", "count", "online by", "cost CNY (horizon)", "commits CNY"]
STRATEGY_HEADER = ["strategy", "accelerators", "additions CNY", "serving CNY", "refusal penalty CNY", "total CNY",
                   "served % (steps)", "optimum / this"]


def addition_rows(x: Expansion) -> list[list[str]]:
    inst = x.instance
    rows = []
    for o, d, n in x.additions.tranches():
        opt = inst.options[o]
        rows.append([opt.site, opt.accelerator, f"{n:,}", f"day {d} 00:00",
                     f"{n * opt.cny_per_hour * inst.hours_online(d):,.0f}",
                     f"{opt.spend(n, inst.hours_online(d)):,.0f}"])
    ev = x.optimum.evaluation
    total_spend = sum(inst.options[o].spend(n, inst.hours_online(d)) for o, d, n in x.additions.tranches())
    rows.append(["total", "", f"{sum(n for _, _, n in x.additions.tranches()):,}", "",
                 f"{ev.additions_cny:,.0f}", f"{total_spend:,.0f}"])
    return rows


def strategy_rows(x: Expansion) -> list[list[str]]:
    inst = x.instance
    rows = []
    best = x.optimum.evaluation.total_cny
    for name, ev in [("no additions", x.before), *x.baselines.items(), ("optimum", x.optimum.evaluation)]:
        count = sum(n for _, _, n in ev.additions.tranches())
        rows.append([name, f"{count:,}", f"{ev.additions_cny:,.0f}", f"{ev.serving_cny:,.0f}",
                     f"{ev.penalty_cny:,.0f}", f"{ev.total_cny:,.0f}", f"{ev.served_pct(inst):.3f}",
                     f"{best / ev.total_cny:.4f}" if ev.total_cny > 0 else "-"])
    return rows


def _pct(v: float) -> str:
    return "-" if not math.isfinite(v) else f"{v:.3f}"


def outcome_lines(x: Expansion) -> list[str]:
    before, after = x.judged(x.original), x.judged(x.resimulated)
    lines = [
        f"demand served within the SLO ({JUDGED_POLICY}, re-simulated over every step): {_pct(served_pct(before))} % "
        f"before -> {_pct(served_pct(after))} % after (target {TARGET_PCT:g} %): " + ("met" if x.met else "NOT met"),
        f"SLO attainment (requests within the bound, modelled): {_pct(before.slo_attainment_pct)} % before -> "
        f"{_pct(after.slo_attainment_pct)} % after",
        f"CNY/Mtok served: {before.cny_per_mtok:.4f} before -> {after.cny_per_mtok:.4f} after",
        f"optimum: {x.optimum.status}, gap {100 * x.optimum.gap:.3f} % of its total cost "
        f"(bound {x.optimum.bound_cny:,.0f} CNY)",
        "optimum / baseline: " + ", ".join(f"{name} {x.ratio(name):.4f}" for name in x.baselines),
    ]
    if x.unfixable:
        lines.append("what no allowed addition fixes:")
        lines += [f"  {why}" for why in x.unfixable]
    elif not x.met:
        lines.append("the optimum serves the representative steps; the remaining refusals fall between them")
    return lines


def _tagged(x: Expansion) -> list:
    """The simulator's summaries of both runs, each policy tagged before / after."""
    return ([replace(s, policy=f"{s.policy} (before)") for s in x.original.summaries()]
            + [replace(s, policy=f"{s.policy} (after)") for s in x.resimulated.summaries()])


def text(x: Expansion, options_path: str) -> str:
    inst = x.instance
    lines = [f"expand {inst.scenario.name} with {options_path}: {inst.days} day(s), {len(inst.options)} option(s)",
             f"  {inst.explanation()}", "", "additions (the optimum):"]
    lines += [render(ADDITION_HEADER, addition_rows(x)), ""]
    lines += ["strategies on the same steps and cost function:", render(STRATEGY_HEADER, strategy_rows(x)), ""]
    lines += ["re-simulation, the scenario as written beside it with the additions as add_accelerators events:",
              sim_output.summary_table(_tagged(x)), ""]
    lines += outcome_lines(x)
    return "\n".join(lines) + "\n"


def additions_csv(x: Expansion) -> str:
    inst = x.instance
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["site", "accelerator", "count", "online_by_day", "cny_per_accelerator_hour", "cost_cny_horizon",
                "commits_cny"])
    for o, d, n in x.additions.tranches():
        opt = inst.options[o]
        w.writerow([opt.site, opt.accelerator, n, d, sim_output.num(opt.cny_per_hour),
                    sim_output.num(n * opt.cny_per_hour * inst.hours_online(d)),
                    sim_output.num(opt.spend(n, inst.hours_online(d)))])
    return out.getvalue()


def strategies_csv(x: Expansion) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["strategy", "accelerators", "additions_cny", "serving_cny", "penalty_cny", "total_cny",
                "served_pct_steps", "optimum_over_this"])
    best = x.optimum.evaluation.total_cny
    for name, ev in [("no additions", x.before), *x.baselines.items(), ("optimum", x.optimum.evaluation)]:
        w.writerow([name, sum(n for _, _, n in ev.additions.tranches()), *map(sim_output.num, (
            ev.additions_cny, ev.serving_cny, ev.penalty_cny, ev.total_cny, ev.served_pct(x.instance),
            best / ev.total_cny if ev.total_cny > 0 else math.nan))])
    return out.getvalue()


def steps_csv(x: Expansion) -> str:
    """The representative steps and why each was chosen."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["step", "day", "china_hour", "weight_hours", "why"])
    for s in x.instance.steps:
        w.writerow([s.step, s.day, s.hour, sim_output.num(s.weight_hours), s.why])
    return out.getvalue()


CAPTIONS = {
    "additions": "Accelerators added per site, by accelerator and the day they are online by.",
    "demand before": "The scenario as written: demand against what each policy served; red is refused demand.",
    "demand after": "With the additions as add_accelerators events on their days: the same, re-simulated.",
}


def render_html(x: Expansion, options_path: str, pngs: dict[str, Path]) -> str:
    inst = x.instance
    name = html.escape(inst.scenario.name)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>Expansion: {name}</title><style>{STYLE}</style></head><body>",
             f"<h1>Where to add accelerators: {name}</h1>",
             f'<p class="muted">options {html.escape(options_path)}; {html.escape(inst.explanation())}</p>',
             "<h2>Additions</h2>", html_table(ADDITION_HEADER, addition_rows(x)),
             "<h2>Outcome</h2>", "<ul>" + "".join(f"<li>{html.escape(line)}</li>" for line in outcome_lines(x))
             + "</ul>",
             "<h2>Strategies on the same steps and cost function</h2>", html_table(STRATEGY_HEADER, strategy_rows(x)),
             "<h2>Re-simulation: before and after</h2>",
             html_table(sim_output.TABLE_HEADER, [sim_output.table_row(s) for s in _tagged(x)]),
             "<ul>" + "".join(f"<li>{html.escape(d)}</li>" for d in sim_output.DEFINITIONS) + "</ul>",
             "<h2>Charts</h2>"]
    parts += figures(pngs, CAPTIONS)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write(x: Expansion, options_path: str, out: Path, pngs: dict[str, Path] | None) -> dict[str, Path]:
    """summary.txt, additions.csv, strategies.csv, steps.csv, the simulator's CSVs of both runs, report.html."""
    out.mkdir(parents=True, exist_ok=True)
    files = {"summary": out / "summary.txt", "additions": out / "additions.csv",
             "strategies": out / "strategies.csv", "steps": out / "steps.csv"}
    files["summary"].write_text(text(x, options_path), encoding="utf-8")
    files["additions"].write_text(additions_csv(x), encoding="utf-8")
    files["strategies"].write_text(strategies_csv(x), encoding="utf-8")
    files["steps"].write_text(steps_csv(x), encoding="utf-8")
    for tag, run in (("before", x.original), ("after", x.resimulated)):
        for key, path in sim_output.write(run, out / tag).items():
            files[f"{tag} {key}"] = path
    if pngs is not None:
        files["report"] = out / "report.html"
        files["report"].write_text(render_html(x, options_path, pngs), encoding="utf-8")
    return files
