"""`scheduler diff`: edits of the default topology, diffed as an operator would before committing them.

Figures of the plans move with the latency model, so these check relations (served before vs after, which cells
lose their SLO, which cable is listed) and exit codes, not numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scheduler.cli import main
from scheduler.paths import DEFAULT_TOPOLOGY, ROOT
from tests.conftest import TINY

OLD = str(DEFAULT_TOPOLOGY)
TEXT = DEFAULT_TOPOLOGY.read_text()


def edit(tmp_path: Path, *replacements: tuple[str, str], base: str = TEXT, name: str = "new.yaml") -> Path:
    """The default topology with each (old, new) text replaced exactly once."""
    text = base
    for old, new in replacements:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = tmp_path / name
    path.write_text(text)
    return path


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def run_json(capsys, *args: str) -> tuple[int, dict]:
    code = main(["diff", *args, "--format", "json"])
    return code, json.loads(capsys.readouterr().out)


def served(report: dict) -> tuple[float, float]:
    return report["plan"]["before"]["served_tokens_per_s"], report["plan"]["after"]["served_tokens_per_s"]


def consistent(code: int, report: dict) -> None:
    """The exit code is the verdict on the cells: 3 exactly when some cell loses demand it was served."""
    lost = [c for c in report["plan"]["cells"] if c["lost_tokens_per_s"] > 0]
    assert code == report["exit_code"] == (3 if lost else 0)
    for c in report["plan"]["cells"]:
        assert c["before"]["served"] + c["before"]["refused"] == pytest.approx(c["tokens_per_s"], rel=1e-6, abs=1e-3)
        assert c["after"]["served"] + c["after"]["refused"] == pytest.approx(c["tokens_per_s"], rel=1e-6, abs=1e-3)


CUT = ("    status: up               # ref §2 APCN-2", "    status: down             # ref §2 APCN-2")


def test_a_cable_cut_lists_the_cable_the_routes_that_leave_it_and_the_traffic_it_carried(tmp_path, capsys):
    new = edit(tmp_path, CUT)
    code, r = run_json(capsys, OLD, str(new))
    consistent(code, r)
    assert [(c["kind"], c["key"], c["action"]) for c in r["changes"]] == [("cable", "apcn-2", "changed")]
    assert r["changes"][0]["fields"] == [{"field": "status", "old": "up", "new": "down",
                                          "line": line_of(new, "status: down             # ref §2 APCN-2")}]
    assert r["changes"][0]["file"] == str(new)
    # Every route that crossed APCN-2 moves off it; every route listed either moved > 1 ms or changed cables.
    moved = r["routes"]
    assert moved and all(m["rtt_moved"] or m["cables_changed"] for m in moved)
    assert all("apcn-2" not in (m["cables_after"] or []) for m in moved)
    assert any("apcn-2" in (m["cables_before"] or []) for m in moved)
    assert not any(p["changed"] for p in r["pools"])
    cables = {c["cable"]: c for c in r["plan"]["cables"]}
    assert cables["apcn-2"]["up_before"] and not cables["apcn-2"]["up_after"]
    assert cables["apcn-2"]["load_after_gbps"] == 0
    # The plan in force crosses APCN-2 at the busiest hour, so the cut is listed as a cable today's routing overruns.
    assert cables["apcn-2"]["load_before_gbps"] > 0 and cables["apcn-2"]["overrun_by_current"]
    before, after = served(r)
    assert after <= before * (1 + 1e-9)


def test_a_site_taken_down_empties_its_pools_without_moving_any_route(tmp_path, capsys):
    new = edit(tmp_path, ("    tariff: ningxia\n    tags: [west, green]      # ref §1: desert solar",
                          "    tariff: ningxia\n    status: down\n"
                          "    tags: [west, green]      # ref §1: desert solar"))
    code, r = run_json(capsys, OLD, str(new))
    consistent(code, r)
    assert [(c["kind"], c["key"], c["fields"]) for c in r["changes"]] == [
        ("site", "zhongwei", [{"field": "status", "old": "up", "new": "down", "line": line_of(new, "status: down")}])]
    assert r["routes"] == []  # a site going down moves no route; it stops taking traffic
    changed = {p["pool"]: p for p in r["pools"] if p["changed"]}
    assert set(changed) == {"zhongwei/ascend-910b#0", "zhongwei/h20#1"}
    for p in changed.values():
        assert p["before"]["usable"] > 0 and p["after"]["usable"] == 0 and p["after"]["site_status"] == "down"
        assert p["after"]["count"] == p["before"]["count"]
    before, after = served(r)
    assert after <= before * (1 + 1e-9)
    # Zhongwei is the cheapest site at the busiest hour: losing it cannot make the plan cheaper.
    assert r["plan"]["after"]["cost_cny_per_hour"] > r["plan"]["before"]["cost_cny_per_hour"]


NINGXIA_BAND = ("{start: 10, end: 16, cny_per_kwh: 0.26}   # ref §4 Ningxia",  # Gansu's band is the same
                "{start: 10, end: 16, cny_per_kwh: 2.60}   # ref §4 Ningxia")


def test_a_price_change_moves_cost_only(tmp_path, capsys):
    new = edit(tmp_path, NINGXIA_BAND)
    code, r = run_json(capsys, OLD, str(new), "--hour", "12")
    assert code == 0
    consistent(code, r)
    [change] = r["changes"]
    assert (change["kind"], change["key"]) == ("tariff", "ningxia")
    assert change["fields"] == [{"field": "bands[0].cny_per_kwh", "old": 0.26, "new": 2.6,
                                 "line": line_of(new, "cny_per_kwh: 2.60")}]
    assert r["routes"] == [] and not any(p["changed"] for p in r["pools"])
    assert r["plan"]["hour"] == 12
    # Ten times the price of the cheapest power at noon: the plan costs more and serves the same.
    assert r["plan"]["after"]["cost_cny_per_hour"] > r["plan"]["before"]["cost_cny_per_hour"] * 1.01
    before, after = served(r)
    assert after == pytest.approx(before, rel=1e-6)
    # Outside the band's hours the edit changes no price the plan pays.
    code, night = run_json(capsys, OLD, str(new), "--hour", "3")
    assert night["plan"]["after"]["cost_cny_per_hour"] == night["plan"]["before"]["cost_cny_per_hour"]


SHANTOU_CUT = (("- {accelerator: ascend-910b, count: 1024}  # estimate, sized from ref §6",
                "- {accelerator: ascend-910b, count: 64}  # estimate, sized from ref §6"),
               ("- {accelerator: ascend-910c, count: 256}   # estimate, sized from ref §6",
                "- {accelerator: ascend-910c, count: 16}   # estimate, sized from ref §6"))


def test_a_capacity_cut_that_refuses_demand_exits_3_and_names_the_cells(tmp_path, capsys):
    new = edit(tmp_path, *SHANTOU_CUT)
    code, r = run_json(capsys, OLD, str(new))
    assert code == 3
    consistent(code, r)
    assert {(c["key"], c["fields"][0]["field"], c["fields"][0]["line"]) for c in r["changes"]} == {
        ("shantou/ascend-910b#0", "count", line_of(new, "ascend-910b, count: 64}")),
        ("shantou/ascend-910c#1", "count", line_of(new, "ascend-910c, count: 16}"))}
    pools = {p["pool"]: p for p in r["pools"] if p["changed"]}
    assert pools["shantou/ascend-910b#0"]["before"]["count"] == 1024
    assert pools["shantou/ascend-910b#0"]["after"]["count"] == 64
    # Only the Shantou pilot may process offshore data: those cells lose what no other site may serve.
    lost = [c for c in r["plan"]["cells"] if c["lost_tokens_per_s"] > 0]
    assert lost and all(c["data_class"] == "offshore-processing" for c in lost)
    assert all(c["after"]["reason"] == "no free capacity" for c in lost)
    before, after = served(r)
    assert after < before
    assert r["plan"]["lost_tokens_per_s"] == pytest.approx(sum(c["lost_tokens_per_s"] for c in lost))
    # The text report says the same, for a person.
    assert main(["diff", OLD, str(new)]) == 3
    out = capsys.readouterr().out
    assert "Cells that lose their SLO" in out and "offshore-processing" in out
    assert out.rstrip().splitlines()[-1].startswith("exit 3: the edit would refuse ")


def test_the_exit_code_reaches_a_ci_job(tmp_path):
    new = edit(tmp_path, *SHANTOU_CUT)
    proc = subprocess.run([sys.executable, "-m", "scheduler", "diff", OLD, str(new), "--format", "markdown"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.startswith(f"### Topology diff: `{OLD}` → `{new}`")
    assert "**exit 3: the edit would refuse" in proc.stdout
    assert "| `singapore` | `llm-70b` | `offshore-processing` |" in proc.stdout


def test_a_comment_and_layout_edit_has_no_impact(tmp_path, capsys):
    new = edit(tmp_path, ("  - id: apcn-2\n", "  # APCN-2 is the busiest cable: see the runbook before touching it\n"
                                            "  - id: apcn-2   \n"),
               ("    pue: 1.15                # ref §4 PUE: western",
                "    pue:     1.15      # (spacing) ref §4 PUE: western"))
    code, r = run_json(capsys, OLD, str(new))
    assert code == 0
    assert r["old_version"] != r["new_version"]  # the file changed...
    assert r["changes"] == [] and r["routes"] == [] and not any(p["changed"] for p in r["pools"])  # ...the topology not
    assert r["plan"]["after"] == {**r["plan"]["before"], "topology_version": r["new_version"]}
    assert all(c["before"] == c["after"] for c in r["plan"]["cells"])
    assert not any(c["overrun_by_current"] or c["full_after"] for c in r["plan"]["cables"])
    assert main(["diff", OLD, str(new)]) == 0
    out = capsys.readouterr().out
    assert "nothing: both files describe the same topology" in out
    assert out.rstrip().endswith("exit 0: the edit refuses no demand served before")


def test_an_invalid_edit_exits_1_with_the_validators_file_line_errors(tmp_path):
    new = edit(tmp_path, ("pue: 1.15 ", "pue: 0.5  "),
               ("{accelerator: h20, count: 512} ", "{accelerator: h20, count: 0}   "))
    args = [sys.executable, "-m", "scheduler"]
    proc = subprocess.run([*args, "diff", OLD, str(new)], capture_output=True, text=True, cwd=ROOT)
    validate = subprocess.run([*args, "validate", str(new)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == validate.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr == validate.stderr  # the same FILE:LINE: field: message lines and count
    lines = proc.stderr.splitlines()
    assert lines[0] == (f"{new}:{line_of(new, 'count: 0}')}: sites[1].pools[1].count: "
                        "Input should be greater than or equal to 1")
    assert lines[1].startswith(f"{new}:{line_of(new, 'pue: 0.5')}: sites[9].pue: ")
    assert lines[-1] == f"2 problem(s) in {new}"


def test_edits_are_matched_by_identity_with_lines_in_new_and_removals_in_old(tmp_path, capsys):
    tiny = TINY.read_text()
    new = edit(tmp_path, ("      - {accelerator: ascend-910b, count: 16}\n",
                          "      - {accelerator: ascend-910b, count: 16}\n"
                          "      - {accelerator: ascend-910b, count: 8}\n"),
               ("  - {a: shantou, b: guangzhou, length_km: 500}\n", ""), base=tiny)
    demand = tmp_path / "demand.yaml"
    # The keys `scheduler plan --demand-file` reads, the SLO's percentile among them.
    demand.write_text("demand:\n  - {region: manila, model: llm-70b, tokens_per_s: 1000, percentile: 99}\n")
    code, r = run_json(capsys, str(TINY), str(new), "--demand", str(demand))
    consistent(code, r)
    got = {(c["kind"], c["key"], c["action"]): c for c in r["changes"]}
    assert set(got) == {("pool", "shantou/ascend-910b#1", "added"), ("link", "shantou~guangzhou", "removed")}
    assert got["pool", "shantou/ascend-910b#1", "added"]["line"] == line_of(new, "count: 8}")
    removed = got["link", "shantou~guangzhou", "removed"]
    assert removed["file"] == str(TINY) and removed["line"] == line_of(TINY, "{a: shantou, b: guangzhou")
    pool = next(p for p in r["pools"] if p["pool"] == "shantou/ascend-910b#1")
    assert pool["before"] is None and pool["after"]["count"] == 8
    assert [c["region"] for c in r["plan"]["cells"]] == ["manila"]
    assert r["plan"]["demand"].startswith(f"{demand} (1 cells)")


def test_bad_demand_is_refused_with_its_line(tmp_path, capsys):
    demand = tmp_path / "demand.yaml"
    demand.write_text("demand:\n  - {region: manila, model: llm-70b, tokens_per_s: 1000}\n"
                      "  - {region: manila, model: llm-70b, tokens_per_sec: 5}\n")
    assert main(["diff", str(TINY), str(TINY), "--demand", str(demand)]) == 2
    err = capsys.readouterr().err
    assert f"{demand}:3: demand[1].tokens_per_sec: unknown key (check its spelling)" in err
    demand.write_text("demand:\n  - {region: mars, model: llm-70b, tokens_per_s: 1000}\n")
    assert main(["diff", str(TINY), str(TINY), "--demand", str(demand)]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {demand}: demand[0].region: unknown region 'mars' "
                                               f"(in both {TINY} and {TINY})")
    demand.write_text("demand:\n  - {region: manila, model: llm-70b, tokens_per_s: 1000, percentile: 97}\n")
    assert main(["diff", str(TINY), str(TINY), "--demand", str(demand)]) == 2
    assert f"{demand}:2: demand[0].percentile: must be one of 50, 90, 95, 99, 99.9" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["diff", str(TINY), str(TINY), "--hour", "24"])
    assert e.value.code == 2
    assert "expected a China local hour 0..23, got 24" in capsys.readouterr().err
