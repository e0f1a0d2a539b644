"""The expansion planner on the tiny topology: its optimum against an exhaustive search of the same cost function,
nothing added where demand fits, a binding power limit moving additions elsewhere, the baselines never cheaper,
the same answer twice, and the additions proved by re-simulation."""

from __future__ import annotations

import csv
import itertools
import textwrap
from pathlib import Path

import pytest

from scheduler.cli import main
from scheduler.expand import heuristics, planner, report
from scheduler.expand.model import Additions, evaluate, optimize, spend
from scheduler.expand.options import load_options
from scheduler.expand.steps import build_instance
from scheduler.paths import ROOT
from scheduler.sim.scenario import load_scenario
from scheduler.sim.solver_logs import quiet_solver_logs

TINY = ROOT / "topology" / "tiny.yaml"
ZHONGWEI, SHAOGUAN = 0, 1  # option indices below


def scenario(tmp_path: Path, tokens_per_day: float, days: int = 1, shape: str = "flat") -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(textwrap.dedent(f"""\
        name: tiny-growth
        topology: {TINY}
        duration: {days}d
        step: 1h
        seed: 1
        policies: [optimal]
        demand:
          input_tokens: 12000  # long prompts (prefill 375 ms on 2-8 server pools): the SLO ceilings bind
          output_tokens: 400
          profiles:
            - {{region: singapore, model: llm-70b, tokens_per_day: {tokens_per_day}, shape: {shape}}}
            - {{region: manila, model: llm-70b, tokens_per_day: {tokens_per_day / 2}, shape: {shape}}}
        """))
    return path


def options(tmp_path: Path, zhongwei_mw: float = 1.0, zhongwei_max: int = 10, shaoguan_max: int = 6,
            lead: int = 0) -> Path:
    path = tmp_path / "options.yaml"
    path.write_text(textwrap.dedent(f"""\
        options:
          - {{site: zhongwei, accelerator: ascend-910b, max_count: {zhongwei_max}, capex_cny: 120000,
              lead_time_days: {lead}, power_limit_mw: {zhongwei_mw}}}
          - {{site: shaoguan, accelerator: ascend-910b, max_count: {shaoguan_max}, cny_per_device_hour: 6.0,
              lead_time_days: 0, power_limit_mw: 1.0}}
        """))
    return path


def instance(tmp_path: Path, tokens_per_day: float, **kw):
    loaded = load_scenario(scenario(tmp_path, tokens_per_day, days=kw.pop("days", 1), shape=kw.pop("shape", "flat")))
    return build_instance(loaded, load_options(options(tmp_path, **kw), loaded.topology).options)


@pytest.fixture(autouse=True, scope="module")
def _quiet():
    quiet_solver_logs()


def test_exhaustive_search_confirms_the_optimum(tmp_path):
    inst = instance(tmp_path, 16e9)
    assert any(s.binding.any() for s in inst.steps)  # the ceilings' binaries are exercised
    grid = itertools.product(range(inst.options[ZHONGWEI].max_count + 1), range(inst.options[SHAOGUAN].max_count + 1))
    best = min((evaluate(inst, Additions({(ZHONGWEI, 1): a, (SHAOGUAN, 1): b})) for a, b in grid),
               key=lambda e: e.total_cny)
    found = optimize(inst).evaluation
    assert found.total_cny == pytest.approx(best.total_cny, rel=1e-6)
    assert found.additions.tranches() == best.additions.tranches()
    assert found.served_pct(inst) == pytest.approx(100.0)
    assert 0 < found.additions.total(SHAOGUAN) < inst.options[SHAOGUAN].max_count  # an interior optimum


def test_demand_that_fits_adds_nothing(tmp_path):
    inst = instance(tmp_path, 8e9, days=2, shape="consumer")
    before = evaluate(inst, Additions())
    assert before.served_pct(inst) == pytest.approx(100.0)
    found = optimize(inst, hints=[heuristics.run(inst, h) for h in heuristics.HEURISTICS])
    assert found.evaluation.additions.empty
    assert found.evaluation.total_cny == pytest.approx(before.total_cny, rel=1e-6)


def test_a_binding_power_limit_moves_additions_to_another_site(tmp_path):
    free = optimize(instance(tmp_path, 15e9)).evaluation.additions
    assert free.total(ZHONGWEI) > 2 and free.total(SHAOGUAN) == 0  # unconstrained, all at cheap Zhongwei
    drawn_mw = 64 * 350 * 1.15 / 1e6  # tiny.yaml: 64 x 350 W at PUE 1.15
    inst = instance(tmp_path, 15e9, zhongwei_mw=drawn_mw + 2.5 * 350 * 1.15 / 1e6)  # room for 2 more
    limited = optimize(inst).evaluation
    assert limited.additions.total(ZHONGWEI) <= 2
    assert limited.additions.total(SHAOGUAN) > 0
    assert limited.served_pct(inst) == pytest.approx(100.0)


def test_the_optimum_costs_no_more_than_either_baseline(tmp_path):
    inst = instance(tmp_path, 16.5e9, zhongwei_max=12, shaoguan_max=12)
    baselines = {h: heuristics.run(inst, h) for h in heuristics.HEURISTICS}
    for ev in baselines.values():
        assert ev.served_pct(inst) == pytest.approx(100.0)
    found = optimize(inst, hints=list(baselines.values())).evaluation
    assert all(found.total_cny <= ev.total_cny * (1 + 1e-9) for ev in baselines.values())
    assert any(found.total_cny < ev.total_cny * (1 - 1e-3) for ev in baselines.values())  # strictly better here


def test_lead_time_delays_additions_and_dates_them(tmp_path):
    inst = instance(tmp_path, 15e9, days=3, lead=1)
    found = optimize(inst).evaluation.additions
    assert all(d >= 2 for o, d, _ in found.tranches() if o == ZHONGWEI)
    assert found.total(SHAOGUAN) > 0  # day 1 needs the option with no lead time


def test_same_inputs_same_answer(tmp_path):
    def once():
        loaded = load_scenario(scenario(tmp_path, 16.5e9, days=2, shape="consumer"))
        return planner.expand(loaded, load_options(options(tmp_path), loaded.topology).options)

    first, second = once(), once()
    assert not first.additions.empty
    assert first.additions == second.additions
    assert report.additions_csv(first) == report.additions_csv(second)
    assert report.strategies_csv(first) == report.strategies_csv(second)
    assert report.text(first, "o") == report.text(second, "o")


def test_resimulation_proves_the_additions(tmp_path):
    loaded = load_scenario(scenario(tmp_path, 9e9, days=2, shape="consumer"))
    x = planner.expand(loaded, load_options(options(tmp_path), loaded.topology).options)
    assert not x.additions.empty
    before = x.judged(x.original)
    assert planner.served_pct(before) < 99.9  # the scenario as written refuses demand
    assert x.met and x.served_pct >= planner.TARGET_PCT and not x.unfixable
    events = [e for e in x.resimulated.scenario.events if e.add_accelerators is not None]
    assert sum(e.add_accelerators.count for e in events) == sum(n for _, _, n in x.additions.tranches())
    assert all(x.ratio(h) <= 1.0 + 1e-9 for h in heuristics.HEURISTICS)
    text = report.text(x, "options.yaml")
    assert "zhongwei" in text and "(before)" in text and "(after)" in text and "met" in text


def test_what_no_addition_can_fix_is_named(tmp_path):
    loaded = load_scenario(scenario(tmp_path, 28e9))
    x = planner.expand(loaded, load_options(options(tmp_path), loaded.topology).options)
    assert not x.met
    assert x.unfixable and all("at their count, power or budget limit" in why for why in x.unfixable)


def test_expand_command_writes_the_report(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["expand", str(scenario(tmp_path, 9e9, days=2, shape="consumer")), "--options",
                 str(options(tmp_path)), "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "zhongwei" in printed and "optimal (before)" in printed and "optimal (after)" in printed
    with (out / "additions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert rows and all(int(r["count"]) > 0 for r in rows)
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "Where to add accelerators" in page


def test_a_budget_caps_what_the_additions_commit(tmp_path):
    loaded = load_scenario(scenario(tmp_path, 16e9))
    opts = load_options(options(tmp_path), loaded.topology).options
    inst = build_instance(loaded, opts)
    free = optimize(inst).evaluation
    budget = 0.5 * spend(inst, free.additions)
    capped = optimize(inst, budget=budget).evaluation
    assert spend(inst, capped.additions) <= budget
    assert capped.total_cny > free.total_cny
