"""PNG plots of a run, with every event marked, written deterministically (Agg, no Software/date metadata).

One figure per question: what did it cost (cost.png), where did the load go (utilization.png), how fast was it
(latency.png), what crossed each cable (cables.png), and what was refused (demand.png).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import EngFormatter  # noqa: E402

from scheduler.sim.loop import Run  # noqa: E402
from scheduler.sim.scenario import clock  # noqa: E402

POLICY_COLORS = {"nearest": "#d62728", "cheapest-greedy": "#ff7f0e", "optimal": "#1f77b4"}
DPI = 100


def _lw(run: Run, width: float) -> float:
    """Thinner lines when many steps share the width of the figure."""
    return width * (0.6 if run.scenario.steps > 1000 and run.scenario.duration > 2 * 1440 else 1.0)


def _axis(run: Run) -> tuple[np.ndarray, str]:
    """Hours for runs of up to two days, days beyond."""
    if run.scenario.duration > 2 * 1440:
        return run.minutes / 1440.0, "day (China time, from day 1 00:00)"
    return run.minutes / 60.0, "hour (China time, from day 1 00:00)"


def _events(ax, run: Run, scale: float, label: bool) -> None:
    """Dashed vertical lines at event times; the topmost panel names them (left of the line near the end)."""
    for k, (at, title) in enumerate(run.events()):
        x = at / scale
        ax.axvline(x, color="0.35", linestyle="--", linewidth=0.9, zorder=1)
        if label:
            right = at > 0.7 * run.scenario.duration
            ax.annotate(f"{clock(at)} {title}", xy=(x, 1.0), xycoords=("data", "axes fraction"),
                        xytext=(-3 if right else 3, -4 - 11 * (k % 3)), textcoords="offset points", fontsize=7,
                        color="0.25", va="top", ha="right" if right else "left",
                        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.7, "pad": 1})


def _scale(run: Run) -> float:
    return 1440.0 if run.scenario.duration > 2 * 1440 else 60.0


def _panels(run: Run, title: str, ylabel: str, n: int | None = None, eng: bool = False):
    n = n or len(run.scenario.policies)
    fig, axes = plt.subplots(n, 1, figsize=(12, 2.6 * n + 0.9), sharex=True, squeeze=False)
    fig.suptitle(f"{run.scenario.name}: {title}", fontsize=11)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel, fontsize=9)
        ax.grid(True, alpha=0.3)
        if eng:  # token rates and yuan: 25 M rather than an offset of 1e7
            ax.yaxis.set_major_formatter(EngFormatter(sep=" "))
    return fig, list(axes[:, 0])


def _finish(fig, axes, run: Run, path: Path) -> Path:
    x, xlabel = _axis(run)
    for k, ax in enumerate(axes):
        _events(ax, run, _scale(run), label=(k == 0))
        ax.set_xlim(x[0], (run.scenario.duration) / _scale(run))
    axes[-1].set_xlabel(xlabel, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return path


def cost(run: Run, path: Path) -> Path:
    x, _ = _axis(run)
    fig, axes = _panels(run, "cost by policy", "CNY / hour", n=2, eng=True)
    for p in run.scenario.policies:
        t = run.traces[p]
        axes[0].plot(x, t.cost_cny_per_hour, label=p, color=POLICY_COLORS[p], linewidth=_lw(run, 1.2))
        with np.errstate(divide="ignore", invalid="ignore"):
            per_mtok = np.where(t.served_tps > 0, t.cost_cny_per_hour / (t.served_tps * 3600.0) * 1e6, np.nan)
        axes[1].plot(x, per_mtok, label=p, color=POLICY_COLORS[p], linewidth=_lw(run, 1.2))
    axes[1].set_ylabel("CNY / Mtok served", fontsize=9)
    axes[1].yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    _legend(axes[0])
    return _finish(fig, axes, run, path)


def _legend(ax, **kw) -> None:
    """Beside the plot, never over the data."""
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0), borderaxespad=0.0, **kw)


def _lines_per_item(run: Run, path: Path, title: str, ylabel: str, names: list[str], series: str, cmap: str,
                    top: float | None) -> Path:
    """One panel per policy, one line per site or cable (the trace attribute `series` is (steps, items))."""
    x, _ = _axis(run)
    fig, axes = _panels(run, title, ylabel)
    colors = plt.get_cmap(cmap).colors
    for ax, p in zip(axes, run.scenario.policies):
        values = getattr(run.traces[p], series)
        for j, name in enumerate(names):
            ax.plot(x, values[:, j], label=name, color=colors[j % len(colors)], linewidth=_lw(run, 1.0))
        ax.set_title(p, fontsize=9, loc="left")
        ax.set_ylim(0, top)
    _legend(axes[0])
    return _finish(fig, axes, run, path)


def utilization(run: Run, path: Path) -> Path:
    return _lines_per_item(run, path, "accelerator utilization per site (planned)", "utilization", run.sites,
                           "site_util", "tab20", 1.0)


def latency(run: Run, path: Path) -> Path:
    x, _ = _axis(run)
    fig, axes = _panels(run, "estimated TTFT percentiles (token-weighted per step)", "TTFT ms")
    slos = sorted({r.slo.ttft_ms for r in run.topology.regions if r.slo.ttft_ms is not None})
    for ax, p in zip(axes, run.scenario.policies):
        t = run.traces[p]
        for series, name, style in ((t.ttft_p50_ms, "p50", "-"), (t.ttft_p95_ms, "p95", "--"),
                                    (t.ttft_p99_ms, "p99", ":")):
            ax.plot(x, series, label=name, color=POLICY_COLORS[p], linestyle=style, linewidth=_lw(run, 1.1))
        for slo in slos:
            ax.axhline(slo, color="0.2", linewidth=0.8, alpha=0.6)
        ax.set_title(p, fontsize=9, loc="left")
        ax.set_ylim(bottom=0)
    _legend(axes[0], title="grey line: SLO", title_fontsize=7)
    return _finish(fig, axes, run, path)


def cables(run: Run, path: Path) -> Path:
    return _lines_per_item(run, path, "load per submarine cable", "Gbps", run.cables, "cable_gbps", "tab10", None)


def demand(run: Run, path: Path) -> Path:
    x, _ = _axis(run)
    fig, axes = _panels(run, "tokens/s demanded, served and refused", "tokens / s", eng=True)
    for ax, p in zip(axes, run.scenario.policies):
        t = run.traces[p]
        ax.plot(x, t.demand_tps, label="demanded", color="0.3", linewidth=_lw(run, 1.0))
        ax.plot(x, t.served_tps, label="served", color=POLICY_COLORS[p], linewidth=_lw(run, 1.0))
        ax.fill_between(x, t.served_tps, t.demand_tps, color="#d62728", alpha=0.35, label="refused", linewidth=0)
        ax.set_title(p, fontsize=9, loc="left")
        ax.set_ylim(bottom=0)
    _legend(axes[0])
    return _finish(fig, axes, run, path)


PLOTS = {"cost": cost, "utilization": utilization, "latency": latency, "cables": cables, "demand": demand}


def write(run: Run, out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    with plt.rc_context({"figure.max_open_warning": 0, "path.simplify": True}):
        return {name: fn(run, out / f"{name}.png") for name, fn in PLOTS.items()}
