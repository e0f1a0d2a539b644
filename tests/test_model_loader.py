"""Each class of topology error an operator can make is reported as FILE:LINE: field.path: message."""

from __future__ import annotations

from pathlib import Path

import pytest

from scheduler.model.loader import LoadError, load_topology
from tests.conftest import TINY

TEXT = TINY.read_text()


def line_of(text: str, needle: str, nth: int = 0) -> int:
    """1-based line of the nth occurrence of needle."""
    lines = [i + 1 for i, line in enumerate(text.splitlines()) if needle in line]
    return lines[nth]


def load_edited(tmp_path: Path, old: str, new: str, count: int = 1) -> tuple[str, LoadError]:
    assert old in TEXT, old
    text = TEXT.replace(old, new, count)
    path = tmp_path / "topo.yaml"
    path.write_text(text)
    with pytest.raises(LoadError) as info:
        load_topology(path)
    return text, info.value


def only(err: LoadError):
    assert len(err.problems) == 1, str(err)
    return err.problems[0]


def test_the_shipped_topologies_validate(tiny, china_sea):
    assert tiny.value.name == "tiny"
    assert len(china_sea.value.sites) >= 10


def test_unknown_key_is_an_error_with_its_line(tmp_path):
    text, err = load_edited(tmp_path, "    pue: 1.15\n", "    pue: 1.15\n    puee: 1.2\n")
    p = only(err)
    assert p.line == line_of(text, "puee:")
    assert p.field == "sites[0].puee"
    assert "unknown key" in p.message
    assert str(p).startswith(f"{tmp_path / 'topo.yaml'}:{p.line}: sites[0].puee: ")


def test_missing_field_points_at_its_parent(tmp_path):
    text, err = load_edited(tmp_path, "    tariff: ningxia\n", "")
    p = only(err)
    assert p.field == "sites[0].tariff"
    assert p.line == line_of(text, "- id: zhongwei")
    assert "required" in p.message.lower()


def test_number_out_of_range(tmp_path):
    text, err = load_edited(tmp_path, "    pue: 1.35\n", "    pue: 0.8\n")
    p = only(err)
    assert (p.field, p.line) == ("sites[1].pue", line_of(text, "pue: 0.8"))
    assert "greater than or equal to 1" in p.message


def test_a_region_s_slo_names_an_allowed_percentile(tmp_path):
    old = "slo: {ttft_ms: 1000"
    text, err = load_edited(tmp_path, old, "slo: {percentile: 97, ttft_ms: 1000")
    p = only(err)
    assert p.field.endswith(".slo.percentile") and p.field.startswith("regions[")
    assert p.line == line_of(text, "percentile: 97")
    assert "must be one of 50, 90, 95, 99, 99.9" in p.message
    text, err = load_edited(tmp_path, old, "slo: {percentile: '95', ttft_ms: 1000")  # a string, as a request may not
    assert only(err).field.endswith(".slo.percentile") and only(err).line == line_of(text, "percentile: '95'")


def test_wrong_type(tmp_path):
    text, err = load_edited(tmp_path, "{accelerator: ascend-910b, count: 32}", "{accelerator: ascend-910b, count: many}")
    p = only(err)
    assert (p.field, p.line) == ("sites[1].pools[0].count", line_of(text, "count: many"))
    assert "integer" in p.message


def test_link_to_unknown_node(tmp_path):
    text, err = load_edited(tmp_path, "{a: shaoguan, b: guangzhou, length_km: 300}", "{a: shaoguan, b: guangzou, length_km: 300}")
    p = only(err)
    assert (p.field, p.line) == ("links[1].b", line_of(text, "guangzou"))
    assert "unknown node 'guangzou'" in p.message


def test_cable_segment_to_unknown_node(tmp_path):
    text, err = load_edited(tmp_path, "{a: hongkong, b: tuas, length_km: 3300}", "{a: hongkong, b: tuass, length_km: 3300}")
    p = only(err)
    assert (p.field, p.line) == ("cables[1].segments[1].b", line_of(text, "tuass"))


def test_unknown_accelerator_and_tariff(tmp_path):
    text, err = load_edited(tmp_path, "      - {accelerator: ascend-910b, count: 16}", "      - {accelerator: a100, count: 16}")
    p = only(err)
    assert (p.field, p.line) == ("sites[2].pools[0].accelerator", line_of(text, "a100"))
    text, err = load_edited(tmp_path, "    tariff: guangdong\n    pools:\n      - {accelerator: ascend-910b, count: 32}",
                            "    tariff: guangdon\n    pools:\n      - {accelerator: ascend-910b, count: 32}")
    p = only(err)
    assert (p.field, p.line, p.message) == ("sites[1].tariff", line_of(text, "tariff: guangdon"), "unknown tariff 'guangdon'")


def test_duplicate_id_names_the_first(tmp_path):
    text, err = load_edited(tmp_path, "  - id: shaoguan\n", "  - id: zhongwei\n")
    p = err.problems[0]
    assert p.field == "sites[1].id"
    assert p.line == line_of(text, "- id: zhongwei", 1)
    assert p.message == "duplicate id 'zhongwei' (first defined at sites[0])"
    # The links that named the renamed site are reported in the same pass.
    assert [q.field for q in err.problems[1:]] == ["links[1].a"]


def test_duplicate_yaml_key(tmp_path):
    text, err = load_edited(tmp_path, "    pue: 1.15\n", "    pue: 1.15\n    pue: 1.2\n")
    p = only(err)
    assert p.line == line_of(text, "pue: 1.2")
    assert "duplicate" in p.message.lower()


def test_yaml_syntax_error_has_a_line(tmp_path):
    text, err = load_edited(tmp_path, "    pue: 1.15\n", "    pue: [1.15\n")
    p = only(err)
    assert "YAML syntax" in p.message
    assert line_of(text, "pue: [1.15") <= p.line <= line_of(text, "pue: [1.15") + 2


def test_region_that_reaches_no_site(tmp_path):
    text, err = load_edited(tmp_path, "  - {a: batangas, b: manila, length_km: 110}\n", "")
    p = only(err)
    assert (p.field, p.line) == ("regions[1].id", line_of(text, "- id: manila"))
    assert "reaches no up site" in p.message


def test_slo_needs_a_bound(tmp_path):
    text, err = load_edited(tmp_path, "slo: {ttft_ms: 1000}", "slo: {}")
    p = only(err)
    assert (p.field, p.line) == ("regions[0].slo", line_of(text, "slo: {}"))


def test_every_problem_is_reported_at_once(tmp_path):
    text = TEXT.replace("    pue: 1.15\n", "    pue: 7\n").replace("length_km: 3800", "length_km: -1").replace(
        "name: Singapore", "name: Singapore\n    nmae: typo")
    path = tmp_path / "many.yaml"
    path.write_text(text)
    with pytest.raises(LoadError) as info:
        load_topology(path)
    # Sorted by line, as an editor would walk them.
    assert [p.field for p in info.value.problems] == ["sites[0].pue", "regions[0].nmae", "links[0].length_km"]
    assert [p.line for p in info.value.problems] == [line_of(text, "pue: 7"), line_of(text, "nmae"), line_of(text, "length_km: -1")]


def test_unreadable_and_non_mapping_files(tmp_path):
    with pytest.raises(LoadError) as info:
        load_topology(tmp_path / "missing.yaml")
    assert "cannot read" in str(info.value)
    path = tmp_path / "list.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(LoadError) as info:
        load_topology(path)
    assert "must be a mapping" in str(info.value)


def test_version_is_a_content_hash(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(TEXT)
    b.write_text(TEXT)
    assert load_topology(a).version == load_topology(b).version
    b.write_text(TEXT.replace("pue: 1.15", "pue: 1.16"))
    assert load_topology(a).version != load_topology(b).version
