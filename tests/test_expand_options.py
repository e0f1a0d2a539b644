"""The expansion options file: refused with FILE:LINE: field: message like topologies; the shipped file loads and
cites a source or says 'assumption' for every option; `scheduler expand` reports a bad file and exits 1."""

from __future__ import annotations

import re
import textwrap

import pytest

from scheduler.cli import main
from scheduler.expand.options import load_options
from scheduler.model.loader import LoadError, load_topology
from scheduler.paths import ROOT

TINY = load_topology(ROOT / "topology" / "tiny.yaml").value
CHINA_SEA = ROOT / "topology" / "china-sea.yaml"
SHIPPED = ROOT / "topology" / "expansion-options.yaml"


def problems(tmp_path, text: str) -> list[str]:
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(LoadError) as e:
        load_options(path, TINY)
    return [str(p) for p in e.value.problems]


def test_unknown_site_and_accelerator_are_reported_at_their_lines(tmp_path):
    got = problems(tmp_path, """\
        options:
          - site: zhongwei
            accelerator: ascend-910b
            max_count: 8
            capex_cny: 100000
            lead_time_days: 3
            power_limit_mw: 1
          - site: mars
            accelerator: tpu-v9
            max_count: 8
            capex_cny: 100000
            lead_time_days: 3
            power_limit_mw: 1
        """)
    assert any(re.fullmatch(r".*bad\.yaml:8: options\[1\]\.site: unknown site 'mars' .*", p) for p in got), got
    assert any(re.fullmatch(r".*bad\.yaml:9: options\[1\]\.accelerator: unknown accelerator 'tpu-v9'", p)
               for p in got), got


def test_schema_errors_name_file_line_and_field(tmp_path):
    got = problems(tmp_path, """\
        options:
          - site: zhongwei
            accelerator: ascend-910b
            max_count: -4
            lead_time_days: 3
            power_limit_mw: 1
            colour: blue
        """)
    text = "\n".join(got)
    assert "bad.yaml:4: options[0].max_count: Input should be greater than or equal to 1" in text
    assert "bad.yaml:7: options[0].colour: unknown key (check its spelling)" in text


def test_an_option_needs_exactly_one_price(tmp_path):
    got = problems(tmp_path, """\
        options:
          - {site: zhongwei, accelerator: ascend-910b, max_count: 8, lead_time_days: 0, power_limit_mw: 1}
        """)
    assert any(p.endswith("bad.yaml:2: options[0]: give exactly one of capex_cny or cny_per_device_hour")
               for p in got), got


def test_one_power_limit_per_site_and_one_option_per_accelerator(tmp_path):
    got = problems(tmp_path, """\
        options:
          - {site: zhongwei, accelerator: ascend-910b, max_count: 8, capex_cny: 1, lead_time_days: 0, power_limit_mw: 1}
          - {site: zhongwei, accelerator: ascend-910b, max_count: 8, capex_cny: 1, lead_time_days: 0, power_limit_mw: 2}
        """)
    text = "\n".join(got)
    assert "bad.yaml:3: options[1].accelerator: 'ascend-910b' at 'zhongwei' is already option 0" in text
    assert "bad.yaml:3: options[1].power_limit_mw: 'zhongwei' has power_limit_mw 1 in option 0" in text


def test_the_shipped_options_load_and_every_figure_says_where_it_comes_from():
    topo = load_topology(CHINA_SEA).value
    loaded = load_options(SHIPPED, topo)
    assert len(loaded.options) >= 10
    lines = SHIPPED.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.lstrip().startswith("- {site:"):
            note = lines[i + 1].strip()  # the comment under each option
            assert note.startswith("#") and ("topology estimate" in note or "assumption" in note), line


def test_expand_command_refuses_a_bad_options_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("options:\n  - {site: nowhere, accelerator: h20, max_count: 1, capex_cny: 1, lead_time_days: 0,"
                   " power_limit_mw: 1}\n")
    code = main(["expand", str(ROOT / "simulations" / "baseline-day.yaml"), "--options", str(bad)])
    assert code == 1
    assert "bad.yaml:2: options[0].site: unknown site 'nowhere'" in capsys.readouterr().err
