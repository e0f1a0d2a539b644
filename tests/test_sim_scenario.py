"""Scenario files: FILE:LINE: field: message for every kind of mistake, cross-references checked against the
topology, and the shipped scenarios valid on the default topology."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from scheduler.model.loader import LoadError
from scheduler.paths import SIMULATIONS_DIR, TOPOLOGY_DIR
from scheduler.sim.scenario import clock, load_scenario, parse_duration, span

TINY = TOPOLOGY_DIR / "tiny.yaml"

GOOD = f"""\
name: t
topology: {TINY}
duration: 6h
step: 30m
demand:
  profiles:
    - {{region: singapore, model: llm-70b, tokens_per_day: 1.0e9}}
events:
  - {{at: "02:00", cut: [cable-b]}}
"""


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def problems(path: Path) -> list[str]:
    with pytest.raises(LoadError) as e:
        load_scenario(path)
    return [str(p) for p in e.value.problems]


def test_good_scenario_loads_with_minutes_and_topology(tmp_path):
    loaded = load_scenario(write(tmp_path, GOOD))
    s = loaded.scenario
    assert (s.duration, s.step, s.steps) == (360.0, 30.0, 12)
    assert s.events[0].at == 120.0
    assert s.policies == ["nearest", "cheapest-greedy", "optimal"]
    assert loaded.topology.name == "tiny"
    assert loaded.topology_path == str(TINY)


def test_syntax_and_schema_errors_name_file_line_and_field(tmp_path):
    text = GOOD.replace("step: 30m", "step: 30 minutes").replace(
        "    - {region: singapore, model: llm-70b, tokens_per_day: 1.0e9}",
        "    - {region: singapore, model: llm-70b, tokens_per_day: -5}\n"
        "    - {region: singapore, model: llm-70b, tokens_per_day: 1.0e9, shape: nightly}",
    ).replace("events:", "evnts:")
    path = write(tmp_path, text)
    got = problems(path)
    assert f"{path}:4: step: expected a duration such as 15m, 2h or 30d, got '30 minutes'" in got
    assert any(p.startswith(f"{path}:7: demand.profiles[0].tokens_per_day: ") and "greater than 0" in p for p in got)
    assert any(p.startswith(f"{path}:8: demand.profiles[1].shape: ") for p in got)
    assert f"{path}:9: evnts: unknown key (check its spelling)" in got


def test_timeline_errors_point_at_the_event(tmp_path):
    text = GOOD + '  - {at: "25:00", repair: cable-b}\n  - {at: "03:00"}\n'
    path = write(tmp_path, text)
    got = problems(path)
    assert any(p.startswith(f"{path}:10: events[1].at: expected a China time") for p in got)
    assert any(p.startswith(f"{path}:11: events[2]: an event needs an action") for p in got)
    # Once every field parses, the timeline is checked against the duration.
    path = write(tmp_path, GOOD.replace('at: "02:00"', 'at: "day 2 01:00"'), "late.yaml")
    assert problems(path) == [f"{path}:9: events[0].at: at day 2 01:00 is after the end of the scenario (06:00)"]


def test_unknown_names_are_checked_against_the_topology_with_lines(tmp_path):
    text = GOOD.replace("region: singapore", "region: atlantis").replace("cut: [cable-b]", "cut: [cable-b, cable-z]") + (
        '  - at: "03:00"\n'
        "    site_down: [zhongwei, nowhere]\n"
        "    price: {tariff: mars, factor: 2}\n"
        "    add_accelerators: {site: shantou, accelerator: tpu-v9, count: 8}\n"
    )
    path = write(tmp_path, text)
    got = problems(path)
    assert any(p.startswith(f"{path}:7: demand.profiles[0].region: unknown region 'atlantis'") for p in got)
    assert any(p.startswith(f"{path}:9: events[0].cut[1]: unknown cable or link 'cable-z'") for p in got)
    assert any(p.startswith(f"{path}:11: events[1].site_down[1]: unknown site 'nowhere'") for p in got)
    assert any(p.startswith(f"{path}:12: events[1].price.tariff: unknown tariff 'mars'") for p in got)
    assert any(p.startswith(f"{path}:13: events[1].add_accelerators.accelerator: unknown accelerator 'tpu-v9'")
               for p in got)
    assert len(got) == 5
    # A known cable, link (a~b as in the topology) and segment are all accepted.
    ok = GOOD.replace("cut: [cable-b]", "cut: [cable-b, shaoguan~guangzhou, cable-a#1]")
    assert load_scenario(write(tmp_path, ok, "ok.yaml")).scenario.events[0].cut[1] == "shaoguan~guangzhou"


def test_missing_or_broken_topology_is_reported(tmp_path):
    path = write(tmp_path, GOOD.replace(str(TINY), "no/such/topology.yaml"))
    got = problems(path)
    assert len(got) == 1 and got[0].startswith(f"{path}:2: topology: no such file 'no/such/topology.yaml'")
    bad_topo = write(tmp_path, TINY.read_text().replace("count: 64", "count: -1"), "topo.yaml")
    path = write(tmp_path, GOOD.replace(str(TINY), "topo.yaml"), "s2.yaml")  # relative to the scenario file
    got = problems(path)
    assert got[0].startswith(f"{path}:2: topology: {bad_topo} has 1 problem(s)")
    assert got[1].startswith(f"{bad_topo}:") and "sites[0].pools[0].count" in got[1]


def test_price_change_needs_exactly_one_target_and_one_value(tmp_path):
    text = GOOD.replace("cut: [cable-b]", "price: {tariff: ningxia, site: zhongwei, factor: 2}")
    path = write(tmp_path, text)
    assert any(p.startswith(f"{path}:9: events[0].price: give exactly one of tariff or site") for p in problems(path))


def test_step_must_divide_duration_and_overrides_revalidate(tmp_path):
    path = write(tmp_path, GOOD.replace("step: 30m", "step: 7m"))
    assert f"{path}:3: duration: must be a whole number of steps of 7 minutes" in problems(path)
    s = load_scenario(write(tmp_path, GOOD, "g.yaml")).scenario
    coarse = s.with_overrides(step=60.0, seed=9)
    assert (coarse.steps, coarse.seed, coarse.events[0].at) == (6, 9, 120.0)
    with pytest.raises(ValueError):
        s.with_overrides(step=7.0)


def test_time_formats_round_trip():
    assert parse_duration("30d") == 43200 and parse_duration("90m") == 90 and parse_duration("1.5h") == 90
    with pytest.raises(ValueError):
        parse_duration("10")
    assert (span(43200), span(1440), span(1440 * 1.5), span(90)) == ("30d", "24h", "36h", "90m")
    assert (clock(14 * 60), clock(2 * 1440 + 9 * 60 + 30)) == ("14:00", "day 3 09:30")


SHIPPED = sorted(SIMULATIONS_DIR.glob("*.yaml"))


def test_at_least_five_scenarios_ship():
    assert len(SHIPPED) >= 5


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_scenarios_validate_on_the_default_topology(path):
    loaded = load_scenario(path)
    assert loaded.topology.name == "china-sea"
    assert loaded.scenario.name == path.stem
    assert set(loaded.scenario.policies) == {"nearest", "cheapest-greedy", "optimal"}
