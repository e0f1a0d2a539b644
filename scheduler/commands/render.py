"""Terminal tables for decisions and plans as the client receives them (proto messages, not engine objects)."""

from __future__ import annotations

import math

from scheduler.table import render
from scheduler.v1 import placement_pb2, types_pb2

ARROW = " > "


def reason_label(reason: int) -> str:
    return types_pb2.Reason.Name(reason).removeprefix("REASON_").lower()


def _ms(x: float) -> str:
    return f"{x:.0f}"


def _slo(slo: types_pb2.Slo) -> str:
    parts = []
    if slo.HasField("ttft_ms"):
        parts.append(f"TTFT <= {slo.ttft_ms:.0f} ms")
    if slo.HasField("e2e_ms"):
        parts.append(f"E2E <= {slo.e2e_ms:.0f} ms")
    if parts and slo.percentile:
        parts[-1] += f" for {slo.percentile:g} % of requests"
    return ", ".join(parts) or "none"


def _ttft(d: types_pb2.Decision) -> str:
    """TTFT at the SLO's percentile, and the mean beside it (when the server reports both)."""
    text = f"{d.ttft_ms:.1f} ms"
    if d.slo.percentile:
        text += f" (p{d.slo.percentile:g})"
    if d.ttft_mean_ms:
        text += f", mean {d.ttft_mean_ms:.1f} ms"
    return text


def decision_report(d: types_pb2.Decision, batch: types_pb2.Batch | None = None, version: str = "",
                    hour: int | None = None) -> str:
    """One decision and its explanation: where, by which path, at what cost, and why the other sites lost."""
    lines = []
    head = "PLACED" if d.placed else f"NOT PLACED ({reason_label(d.reason)})"
    if batch is not None:
        head += (f"  {batch.region} -> {batch.model}, {batch.input_tokens} in / {batch.output_tokens} out"
                 f" x {batch.requests or 1}")
    if version:
        head += f"  [topology {version}" + (f", {hour:02d}:00 China time]" if hour is not None else "]")
    lines.append(head)
    rows: list[list[object]] = []
    if d.placed:
        rows += [
            ["site", d.site], ["pool", d.pool],
            ["path", ARROW.join(d.route.nodes) if d.route.nodes else "-"],
            ["cables", " ".join(d.route.cables) or "none (terrestrial)"],
            ["RTT", f"{d.rtt_ms:.1f} ms"], ["TTFT", _ttft(d)], ["end-to-end", f"{d.e2e_ms:.0f} ms"],
            ["SLO", _slo(d.slo)], ["cost", f"{d.cost_cny:.6f} CNY"], ["energy", f"{d.energy_kwh:.6f} kWh"],
            ["carbon", f"{d.g_co2:.3f} gCO2"],
            ["holds", f"{d.accelerators:.3f} accelerators for {d.hold_s:.1f} s"
                      + (f" (reservations {', '.join(map(str, d.reservation_ids))})" if d.reservation_ids
                         else " (dry run: nothing held)")],
        ]
    else:
        rows.append(["SLO", _slo(d.slo)])
    rows.append(["why", d.message])
    lines.append(render(["", ""], rows).split("\n", 2)[2])
    if d.alternatives:
        lines += ["", "Alternatives (feasible, cheapest first):", render(
            ["site", "pool", "cost CNY", "RTT ms", "TTFT ms", "E2E ms"],
            [[a.site, a.pool, f"{a.cost_cny:.6f}", _ms(a.rtt_ms), _ms(a.ttft_ms), _ms(a.e2e_ms)]
             for a in d.alternatives])]
    if d.rejections:
        lines += ["", "Rejected sites (first constraint that ruled each out):", render(
            ["site", "reason", "detail"], [[r.site, reason_label(r.reason), r.detail] for r in d.rejections])]
    return "\n".join(lines)


def decisions_table(decisions: list[tuple[types_pb2.Batch, types_pb2.Decision | None, str]]) -> str:
    """One row per batch: the short form of many decisions (errors shown in place of a site)."""
    rows = []
    for b, d, error in decisions:
        if d is not None and d.placed:
            rows.append([b.region, b.model, d.site, ARROW.join(d.route.nodes[1:-1]) or "-",
                         " ".join(d.route.cables) or "-", _ms(d.rtt_ms), _ms(d.ttft_ms), _ms(d.e2e_ms),
                         f"{d.cost_cny:.5f}", f"{d.energy_kwh:.5f}", f"{d.g_co2:.2f}", len(d.alternatives),
                         len(d.rejections)])
        else:
            rows.append([b.region, b.model, f"none: {error or (d.message if d else '')}", *["-"] * 10])
    return render(["region", "model", "site", "via", "cables", "RTT ms", "TTFT ms", "E2E ms", "CNY", "kWh",
                   "gCO2", "alts", "rejected"], rows)


def plan_report(p: placement_pb2.GetPlanResponse) -> str:
    """The routing table: per demand cell, the share of its traffic each site takes."""
    rows = []
    for row in p.rows:
        c = row.cell
        first = True
        for s in row.shares:
            rows.append([c.region if first else "", c.model if first else "",
                         f"{c.tokens_per_s:.0f}" if first else "", s.site, f"{s.fraction:.1%}",
                         f"{s.tokens_per_s:.0f}", f"{s.cny_per_mtok:.3f}", _ms(s.rtt_ms), _ms(s.ttft_ms),
                         _ms(s.ttft_mean_ms), f"{s.within_slo:.2%}", " ".join(s.cables) or "-"])
            first = False
        if row.unserved_tokens_per_s > 0 or not row.shares:
            rows.append([c.region if first else "", c.model if first else "",
                         f"{c.tokens_per_s:.0f}" if first else "", f"UNSERVED ({reason_label(row.reason)})",
                         f"{row.unserved_tokens_per_s / c.tokens_per_s:.1%}" if c.tokens_per_s else "-",
                         f"{row.unserved_tokens_per_s:.0f}", "-", "-", "-", "-", "-", "-"])
    busiest = sorted(p.pool_utilization.items(), key=lambda kv: -kv[1])
    lines = [
        f"Routing plan  [topology {p.topology_version}, {p.hour:02d}:00 China time, policy {p.policy}, "
        f"status {p.status}]",
        render(["region", "model", "demand tok/s", "site", "share", "tok/s", "CNY/Mtok", "RTT ms", "TTFT ms",
                "mean ms", "in SLO", "cables"], rows),
        "TTFT at each cell's SLO percentile (p95 unless stated), mean beside it; in SLO: the share of requests "
        "within the SLO at the plan's loads.",
        "",
        f"cost {p.cost_cny_per_hour:.2f} CNY/hour; served {p.served_tokens_per_s:.0f} tok/s, "
        f"unserved {p.unserved_tokens_per_s:.0f} tok/s; solved in {p.solve_seconds * 1000:.1f} ms",
    ]
    if math.isfinite(p.gap):
        lines.append(f"bound {p.bound_cny_per_hour:.2f} CNY/hour, gap {p.gap:.3%}: no plan that keeps every SLO costs "
                     f"less than the bound (refused demand counted at its penalty)")
    lines.append("TTFT is estimated at the pool loads this plan produces.")
    used = [(k, u) for k, u in busiest if u > 0]
    if used:
        lines += ["", render(["pool", "planned utilization"], [[k, f"{u:.1%}"] for k, u in used[:10]])]
    cables = [(k, g) for k, g in sorted(p.cable_load_gbps.items(), key=lambda kv: -kv[1]) if g > 0]
    if cables:
        lines += ["", render(["cable", "planned Gbps"], [[k, f"{g:.3f}"] for k, g in cables])]
    return "\n".join(lines)
