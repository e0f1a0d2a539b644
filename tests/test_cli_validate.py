"""`scheduler validate`: exit 0 with a summary, or exit 1 with every FILE:LINE: field: message."""

from __future__ import annotations

import subprocess
import sys

from scheduler.cli import main
from tests.conftest import TINY


def test_valid_file_prints_counts_and_per_region_choices(capsys):
    assert main(["validate", str(TINY)]) == 0
    out = capsys.readouterr().out
    assert "3 sites, 4 network nodes, 2 regions, 6 terrestrial links, 2 cables (4 segments)" in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.startswith(("singapore", "manila"))}
    assert set(rows) == {"singapore", "manila"}
    assert "shaoguan (38 ms)" in rows["singapore"]  # lowest RTT
    assert "shantou (15 ms)" in rows["manila"]


def test_cheapest_meeting_slo_follows_the_hour(capsys):
    # In Guangdong's valley hours the pilot near the cable wins; at the afternoon peak the western hub does.
    main(["validate", str(TINY), "--hour", "3"])
    night = capsys.readouterr().out
    main(["validate", str(TINY), "--hour", "15"])
    day = capsys.readouterr().out
    pick = lambda out: next(l for l in out.splitlines() if l.startswith("singapore")).split()[4]  # noqa: E731
    assert pick(night) == "shantou"
    assert pick(day) == "zhongwei"


def test_invalid_file_lists_every_problem_and_exits_1(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY.read_text().replace("pue: 1.15", "pue: 9").replace("count: 32", "count: 0"))
    proc = subprocess.run([sys.executable, "-m", "scheduler", "validate", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith(f"{bad}:") and ": sites[0].pue: " in lines[0]
    assert ": sites[1].pools[0].count: " in lines[1]
    assert lines[-1] == f"2 problem(s) in {bad}"
    assert proc.stdout == ""
