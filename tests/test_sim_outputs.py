"""The commands end to end: same scenario and seed -> byte-identical files; the report is self-contained; sweeps
gather the same numbers whether run in one process or several; --ray without Ray says what to install."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

from scheduler.cli import main
from scheduler.paths import TOPOLOGY_DIR

SCENARIO = f"""\
name: tiny-day
description: A bursty half day on the tiny topology with a cut and a price change.
topology: {TOPOLOGY_DIR / "tiny.yaml"}
duration: 12h
step: 15m
seed: 11
demand:
  burstiness: 0.25
  burst: 30m
  profiles:
    - {{region: singapore, model: llm-70b, tokens_per_day: 6.0e9, shape: consumer}}
    - {{region: manila, model: llm-70b, tokens_per_day: 4.0e9, shape: business}}
    - {{region: manila, model: llm-70b, data_class: offshore-processing, tokens_per_day: 1.0e9}}
events:
  - {{at: "03:00", cut: [cable-b], label: cable B cut}}
  - {{at: "08:00", price: {{tariff: guangdong, factor: 2}}}}
  - {{at: "10:00", repair: cable-b}}
"""

FILES = ["summary.txt", "summary.csv", "timeseries.csv", "cost.png", "utilization.png", "latency.png",
         "cables.png", "demand.png", "report.html"]


@pytest.fixture(scope="module")
def scenario_file(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("scn") / "tiny-day.yaml"
    p.write_text(SCENARIO, encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def two_runs(scenario_file, tmp_path_factory) -> tuple[Path, Path]:
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    assert main(["simulate", str(scenario_file), "--out", str(a), "-q"]) == 0
    assert main(["simulate", str(scenario_file), "--out", str(b), "-q"]) == 0
    return a, b


def test_same_scenario_and_seed_give_byte_identical_outputs(two_runs):
    a, b = two_runs
    assert sorted(p.name for p in a.iterdir()) == sorted(FILES)
    for name in FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_another_seed_gives_other_demand(scenario_file, two_runs, tmp_path):
    assert main(["simulate", str(scenario_file), "--out", str(tmp_path), "--seed", "12", "--no-plots", "-q"]) == 0
    assert (tmp_path / "timeseries.csv").read_bytes() != (two_runs[0] / "timeseries.csv").read_bytes()
    assert not (tmp_path / "report.html").exists()


def test_summary_and_timeseries_agree_and_conserve_tokens(two_runs, capsys):
    a = two_runs[0]
    rows = list(csv.DictReader((a / "timeseries.csv").open()))
    assert len(rows) == 48 * 3 and [r["policy"] for r in rows[:3]] == ["nearest", "cheapest-greedy", "optimal"]
    for r in rows:
        demand = float(r["demand_tps"])
        assert float(r["served_tps"]) + float(r["refused_tps"]) == pytest.approx(demand, rel=1e-8)
        if int(r["step"]) in range(12, 40):  # 03:00 to 10:00: cable B is cut
            assert float(r["gbps:cable-b"]) == 0.0
    summary = {r["policy"]: r for r in csv.DictReader((a / "summary.csv").open())}
    for policy, s in summary.items():
        served = sum(float(r["served_tps"]) for r in rows if r["policy"] == policy) * 900
        assert float(s["tokens_served"]) == pytest.approx(served, rel=1e-8)
        assert float(s["tokens_served"]) + float(s["tokens_refused"]) == pytest.approx(float(s["tokens_demanded"]))
    text = (a / "summary.txt").read_text()
    assert "event 03:00: cable B cut" in text and "event 08:00: guangdong price x2" in text
    for header in ("cost CNY", "CNY/Mtok", "SLO attainment %", "TTFT p50/p95/p99 ms", "tokens refused", "gCO2"):
        assert header in text


def test_report_is_one_self_contained_file(two_runs):
    html = (two_runs[0] / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 5
    assert "http://" not in html and "https://" not in html
    for policy in ("nearest", "cheapest-greedy", "optimal"):
        assert f"<td>{policy}</td>" in html
    assert "cable B cut" in html


def test_terminal_summary_and_bad_scenario_exit(scenario_file, tmp_path, capsys):
    assert main(["simulate", str(scenario_file), "--out", str(tmp_path), "--step", "1h", "--no-plots", "-q"]) == 0
    out = capsys.readouterr().out
    assert "scenario tiny-day: 12h at 1h steps (12 steps), seed 11" in out
    assert out.count("\n") > 8 and "optimal" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(SCENARIO.replace("cut: [cable-b]", "cut: [cable-q]"), encoding="utf-8")
    assert main(["simulate", str(bad), "--out", str(tmp_path / "x"), "-q"]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:15: events[0].cut[0]: unknown cable or link 'cable-q'" in err
    assert not (tmp_path / "x").exists()


def test_sweep_in_processes_matches_one_process_and_single_runs(scenario_file, two_runs, tmp_path, capsys):
    second = tmp_path / "other.yaml"
    second.write_text(SCENARIO.replace("name: tiny-day", "name: other").replace("factor: 2", "factor: 4"))
    args = [str(scenario_file), str(second), "--seeds", "2", "--step", "15m", "-q"]
    assert main(["sweep", *args, "--workers", "2", "--out", str(tmp_path / "p")]) == 0
    assert main(["sweep", *args, "--workers", "1", "--out", str(tmp_path / "s")]) == 0
    pooled = (tmp_path / "p" / "sweep.csv").read_text()
    assert pooled == (tmp_path / "s" / "sweep.csv").read_text()
    rows = list(csv.DictReader(pooled.splitlines()))
    assert [(r["scenario"], r["seed"]) for r in rows[::3]] == [("tiny-day", "11"), ("tiny-day", "12"),
                                                             ("other", "11"), ("other", "12")]
    # The sweep's run at the scenario's own seed is the simulate run.
    single = list(csv.DictReader((two_runs[0] / "summary.csv").open()))
    assert rows[:3] == single
    out = capsys.readouterr().out
    assert "tiny-day" in out and "other" in out and "±" in out


def test_ray_without_ray_installed_is_a_clear_error(scenario_file, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    assert main(["sweep", str(scenario_file), "--ray", "auto", "--out", str(tmp_path), "-q"]) == 3
    err = capsys.readouterr().err
    assert "--ray needs Ray" in err and "pip install" in err and "[ray]" in err
