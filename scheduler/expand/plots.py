"""The expansion's own figure (accelerators added per site, by accelerator and day online); demand served vs
refused before and after comes from the simulator's own plot (sim.plots.demand) of each run."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from scheduler.expand.planner import Expansion  # noqa: E402
from scheduler.sim import plots as sim_plots  # noqa: E402

DPI = sim_plots.DPI


def additions(x: Expansion, path: Path) -> Path:
    """Stacked bars per site: one segment per (accelerator, day online)."""
    inst = x.instance
    sites = [s.id for s in inst.topology.sites]
    tranches = x.additions.tranches()
    fig, ax = plt.subplots(figsize=(12, 4.2))
    bottom = {s: 0.0 for s in sites}
    colors = plt.get_cmap("tab20").colors
    seen: dict[str, int] = {}
    for o, d, n in tranches:
        opt = inst.options[o]
        key = f"{opt.accelerator}, day {d}"
        first = key not in seen
        color = colors[seen.setdefault(key, len(seen)) % len(colors)]
        ax.bar(sites.index(opt.site), n, bottom=bottom[opt.site], color=color, label=key if first else None,
               edgecolor="white", linewidth=0.5)
        bottom[opt.site] += n
    ax.set_xticks(range(len(sites)), sites, rotation=30, ha="right", fontsize=8)
    ax.set_xlim(-0.6, len(sites) - 0.4)
    ax.set_ylabel("accelerators added", fontsize=9)
    ax.set_title(f"{inst.scenario.name}: accelerators added per site (by accelerator and day online)", fontsize=11)
    ax.grid(True, axis="y", alpha=0.3)
    if not tranches:
        ax.text(0.5, 0.5, "no additions: the demand already fits", transform=ax.transAxes, ha="center", va="center")
    else:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return path


def write(x: Expansion, out: Path) -> dict[str, Path]:
    """additions.png, demand-before.png and demand-after.png under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    return {"additions": additions(x, out / "additions.png"),
            "demand before": sim_plots.demand(x.original, out / "demand-before.png"),
            "demand after": sim_plots.demand(x.resimulated, out / "demand-after.png")}
