"""One self-contained HTML file per run: the comparison table, the events, the definitions and every plot embedded
as a base64 data URI, so it can be mailed or archived as a single file."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from scheduler.sim.loop import Run
from scheduler.sim.output import DEFINITIONS, TABLE_HEADER, heading, table_row
from scheduler.sim.scenario import clock

CAPTIONS = {
    "cost": "Cost per hour of the plan each policy makes (energy at the hour's tariff, amortization, transit).",
    "demand": "Demand against what each policy served; red is refused demand.",
    "utilization": "Planned accelerator utilization per site (the engine fills pools up to max_utilization).",
    "latency": "Estimated time to first token, token-weighted percentiles per step, against the region SLOs.",
    "cables": "Traffic each submarine cable carries under each policy.",
}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; white-space: nowrap; }
table.events td { text-align: left; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; } figcaption { color: #555; font-size: 0.9em; }
.muted { color: #666; font-size: 0.9em; }
"""


def html_table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figures(pngs: dict[str, Path], captions: dict[str, str]) -> list[str]:
    """Each chart embedded in the page (a self-contained report), with its caption (its name if it has none)."""
    out = []
    for name, path in pngs.items():
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        out.append(f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
                   f"<figcaption>{html.escape(captions.get(name, name))}</figcaption></figure>")
    return out


def render(run: Run, pngs: dict[str, Path]) -> str:
    s = run.scenario
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>What-if: {html.escape(s.name)}</title><style>{STYLE}</style></head><body>",
        f"<h1>What-if: {html.escape(s.name)}</h1>",
    ]
    if s.description:
        parts.append(f"<p>{html.escape(s.description)}</p>")
    parts += [f'<p class="muted">{html.escape(line)}</p>' for line in heading(run)]
    parts.append("<h2>Policies compared</h2>")
    parts.append(html_table(TABLE_HEADER, [table_row(x) for x in run.summaries()]))
    notes = [f"{p}: the solver failed in {run.traces[p].failed} step(s), whose demand counts as refused"
             for p in s.policies if run.traces[p].failed]
    parts += [f'<p class="muted">note: {html.escape(n)}</p>' for n in notes]
    parts.append("<ul>" + "".join(f"<li>{html.escape(d)}</li>" for d in DEFINITIONS) + "</ul>")
    parts.append("<h2>Events</h2>")
    if run.events():
        parts.append(html_table(["time (China)", "event"], [[clock(at, always_day=True), t] for at, t in run.events()],
                            cls="events"))
    else:
        parts.append("<p>None: the topology as written, all run long.</p>")
    parts.append("<h2>Over time</h2>")
    parts += figures(pngs, CAPTIONS)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write(run: Run, pngs: dict[str, Path], out: Path) -> Path:
    path = out / "report.html"
    path.write_text(render(run, pngs), encoding="utf-8")
    return path
