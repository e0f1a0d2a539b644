"""Sweeps: many scenarios x seeds, run in parallel, gathered into one comparison table.

Locally the jobs go to a `concurrent.futures.ProcessPoolExecutor`; with a Ray address they go to that cluster as Ray
tasks (Ray is the optional extra `ray`, imported only then). Either way a job is a validated scenario, its topology
and a seed, pickled to the worker, and comes back as summary rows; rows are put in job order whatever order they
finish in, so a sweep's CSV is the same every time.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from scheduler.model.schema import Topology
from scheduler.sim.loop import simulate
from scheduler.sim.metrics import Summary
from scheduler.sim.output import num, si
from scheduler.sim.solver_logs import quiet_solver_logs
from scheduler.sim.scenario import Scenario
from scheduler.table import render


class SweepError(RuntimeError):
    """A sweep that cannot start (e.g. --ray without ray installed); the message says what to do."""


@dataclass(frozen=True)
class Job:
    scenario: Scenario
    topology: Topology
    version: str
    seed: int


@dataclass(frozen=True)
class Result:
    scenario: str
    seed: int
    summaries: list[Summary]
    failed: dict[str, int]
    worst_gap: dict[str, float]
    seconds: float


def run_job(job: Job) -> Result:
    """One simulation without plots: what a worker runs (module level, so it pickles)."""
    quiet_solver_logs()
    run = simulate(job.scenario.with_overrides(seed=job.seed), job.topology, job.version)
    return Result(job.scenario.name, job.seed, run.summaries(),
                  {p: t.failed for p, t in run.traces.items()}, {p: t.worst_gap for p, t in run.traces.items()},
                  run.seconds)


def jobs(scenarios: Sequence[tuple[Scenario, Topology, str]], seeds: int) -> list[Job]:
    """Each scenario at its own seed and the seeds after it: seed, seed+1, ..., seed+N-1."""
    return [Job(s, topo, version, s.seed + k) for s, topo, version in scenarios for k in range(seeds)]


def run_local(todo: list[Job], workers: int, progress: bool) -> list[Result]:
    bar = tqdm(total=len(todo), desc="sweep", unit="run", file=sys.stderr, disable=not progress)
    try:
        if workers <= 1:
            out = []
            for j in todo:
                out.append(run_job(j))
                bar.update(1)
            return out
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(run_job, j) for j in todo]
            for f in futures:
                f.add_done_callback(lambda _: bar.update(1))
            return [f.result() for f in futures]
    finally:
        bar.close()


def run_ray(todo: list[Job], address: str, progress: bool) -> list[Result]:
    """Ray tasks on an existing cluster (`auto`, `ray://host:10001`, ...) or a local one with `local`."""
    try:
        import ray  # noqa: PLC0415 - optional extra, imported only when asked for
    except ImportError:
        raise SweepError("--ray needs Ray, the optional extra `ray`: pip install -e '.[ray]'") from None
    import scheduler  # noqa: PLC0415

    # Ship this package's code with the tasks; the cluster's Python needs the dependencies (ortools, pydantic, ...).
    runtime_env = {"py_modules": [str(Path(scheduler.__file__).parent)]}
    started = not ray.is_initialized()
    if started:
        ray.init(address=None if address == "local" else address, runtime_env=runtime_env,
                 include_dashboard=False, log_to_driver=False)
    task = ray.remote(run_job)
    refs = [task.remote(j) for j in todo]
    bar = tqdm(total=len(refs), desc="sweep (ray)", unit="run", file=sys.stderr, disable=not progress)
    try:
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            bar.update(len(done))
        return ray.get(refs)
    finally:
        bar.close()
        if started:
            ray.shutdown()


def run(todo: list[Job], workers: int = 1, ray_address: str | None = None, progress: bool = False) -> list[Result]:
    if ray_address:
        return run_ray(todo, ray_address, progress)
    return run_local(todo, workers, progress)


# --- the comparison ---------------------------------------------------------------------------------------------

CSV_HEADER = ["scenario", "seed", *Summary.names(), "solver_failed_steps", "worst_gap"]


def results_csv(results: list[Result]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_HEADER)
    for r in results:
        for s in r.summaries:
            w.writerow([r.scenario, r.seed, s.policy, *map(num, s.values()[1:]), r.failed[s.policy],
                        num(r.worst_gap[s.policy])])
    return out.getvalue()


def _mean_sd(values: list[float], fmt: Callable[[float], str]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "-"
    if len(finite) == 1:
        return fmt(finite[0])
    return f"{fmt(statistics.fmean(finite))} ± {fmt(statistics.stdev(finite))}"


def comparison_table(results: list[Result]) -> str:
    """Per scenario and policy, over seeds: mean ± standard deviation."""
    groups: dict[tuple[str, str], list[Summary]] = {}
    for r in results:
        for s in r.summaries:
            groups.setdefault((r.scenario, s.policy), []).append(s)
    rows = []
    for (scenario, policy), ss in groups.items():
        rows.append([
            scenario, policy, str(len(ss)),
            _mean_sd([s.cost_cny for s in ss], lambda v: f"{v:,.0f}"),
            _mean_sd([s.cny_per_mtok for s in ss], lambda v: f"{v:.4f}"),
            _mean_sd([s.slo_attainment_pct for s in ss], lambda v: f"{v:.2f}"),
            _mean_sd([s.ttft_p95_ms for s in ss], lambda v: f"{v:.0f}"),
            _mean_sd([100 * s.tokens_refused / s.tokens_demanded if s.tokens_demanded else math.nan for s in ss],
                     lambda v: f"{v:.2f}"),
            _mean_sd([s.energy_kwh for s in ss], lambda v: f"{v:,.0f}"),
            _mean_sd([s.g_co2 for s in ss], si),
        ])
    return render(["scenario", "policy", "seeds", "cost CNY", "CNY/Mtok", "SLO attainment %", "TTFT p95 ms",
                   "refused %", "energy kWh", "gCO2"], rows)


def write(results: list[Result], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = {"csv": out / "sweep.csv", "table": out / "sweep.txt"}
    files["csv"].write_text(results_csv(results), encoding="utf-8")
    files["table"].write_text(comparison_table(results) + "\n", encoding="utf-8")
    return files
