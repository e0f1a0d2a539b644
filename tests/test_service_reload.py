"""Hot reload against a real server: a good edit goes live, a bad one is refused with FILE:LINE and the previous
topology keeps serving, the ledger survives, and no call ever sees a half-applied topology."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from scheduler.service.client import Client
from scheduler.service.server import ControlPlane
from scheduler.v1 import topology_pb2, types_pb2

TINY = Path(__file__).resolve().parent.parent / "topology" / "tiny.yaml"
WAIT_S = 10.0  # generous: the watcher polls every 0.5 s and a swap takes milliseconds
APPLIED = topology_pb2.TopologyEvent.KIND_APPLIED
REFUSED = topology_pb2.TopologyEvent.KIND_REFUSED


def eventually(check: Callable[[], object], what: str):
    deadline = time.monotonic() + WAIT_S
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {WAIT_S} s: {what}")
        time.sleep(0.05)


@pytest.fixture
def served(tmp_path):
    path = tmp_path / "topology.yaml"
    path.write_text(TINY.read_text())
    with ControlPlane(path, port=0, hour=lambda: 14) as plane, Client(plane.target, timeout=10) as client:
        client.wait_ready()
        yield path, plane, client


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def sg(**kw) -> types_pb2.Batch:
    args = dict(region="singapore", model="llm-70b", input_tokens=2000, output_tokens=500)
    return types_pb2.Batch(**{**args, **kw})


def test_good_edit_is_served_and_the_ledger_survives(served):
    path, plane, client = served
    before = client.get_topology()
    held = client.place(sg()).decision
    events = client.watch_topology(timeout=WAIT_S * 2)
    assert next(events).topology_version == before.topology_version

    edit(path, "{accelerator: ascend-910b, count: 64}", "{accelerator: ascend-910b, count: 128}")
    after = eventually(lambda: (t := client.get_topology()).topology_version != before.topology_version and t,
                       "the edited topology is served")
    assert after.topology.loaded_at.ToNanoseconds() > before.topology.loaded_at.ToNanoseconds()
    zhongwei = after.topology.sites[0].pools[0]
    assert zhongwei.capacity == pytest.approx(128 * 0.9)
    assert after.last_reload.ok and after.last_reload.version == after.topology_version and not after.last_reload.errors
    # The reservation made on the old version is still held (same pool key) and visible on the new one.
    pools = {p.key: p for s in after.topology.sites for p in s.pools}
    assert pools[held.pool].used == pytest.approx(held.accelerators)
    assert client.place(sg(), dry_run=True).topology_version == after.topology_version
    event = next(events)
    events.cancel()
    assert event.kind == APPLIED and event.topology_version == after.topology_version and event.reload.ok


def test_bad_edit_is_refused_with_file_and_line_and_the_old_topology_keeps_serving(served, caplog):
    path, plane, client = served
    before = client.get_topology().topology_version
    events = client.watch_topology(timeout=WAIT_S * 2)
    next(events)
    caplog.set_level(logging.WARNING, logger="scheduler.reload")

    edit(path, "{accelerator: ascend-910b, count: 32}", "{accelerator: ascend-910b, count: -32}")
    bad_line = line_of(path, "count: -32")
    refused = eventually(lambda: (t := client.get_topology()).last_reload.errors and t, "the refusal is reported")
    assert refused.topology_version == before and not refused.last_reload.ok
    assert refused.last_reload.serving_version == before
    (problem,) = refused.last_reload.errors
    assert (problem.file, problem.line, problem.field) == (str(path), bad_line, "sites[1].pools[0].count")
    assert problem.text == f"{path}:{bad_line}: sites[1].pools[0].count: {problem.message}"
    assert "greater than or equal to 1" in problem.message
    assert any(r.getMessage() == problem.text for r in caplog.records)  # logged as FILE:LINE: field: message
    # Placements keep working on the previous topology, with its capacity.
    resp = client.place(sg(), dry_run=True)
    assert resp.topology_version == before and resp.decision.placed
    assert client.get_topology().topology.sites[1].pools[0].count == 32
    event = next(events)
    assert event.kind == REFUSED and event.topology_version == before
    assert [e.text for e in event.reload.errors] == [problem.text]

    # A YAML syntax error is refused the same way; fixing the file brings the new version in.
    path.write_text(path.read_text().replace("count: -32}", "count: 48"))
    syntax = next(events)
    assert syntax.kind == REFUSED and syntax.reload.errors[0].file == str(path)
    assert syntax.reload.errors[0].text.startswith(f"{path}:")
    path.write_text(path.read_text().replace("count: 48", "count: 48}"))
    fixed = next(events)
    events.cancel()
    assert fixed.kind == APPLIED and fixed.topology_version not in ("", before)
    assert client.get_topology().topology.sites[1].pools[0].count == 48


def test_no_call_sees_a_half_applied_topology(served):
    """While the file flips between two versions that name a site differently, every answer is wholly one of
    them: the site it names exists in the version it reports."""
    path, plane, client = served
    text_a = path.read_text()
    text_b = text_a.replace("zhongwei", "ningxia-west")
    sites = {client.get_topology().topology_version: {"zhongwei", "shaoguan", "shantou"}}
    seen: list[tuple[str, str]] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def place() -> None:
        with Client(plane.target, timeout=10) as c:
            while not stop.is_set():
                try:
                    r = c.place(sg(), dry_run=True)
                    seen.append((r.topology_version, r.decision.site))
                    b = c.place_batch([sg(), sg(region="manila")], dry_run=True)
                    seen.extend((b.topology_version, d.site) for d in b.decisions)
                except Exception as e:  # reported by the assertion below
                    failures.append(e)
                    return

    threads = [threading.Thread(target=place) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for text, names in ((text_b, {"ningxia-west", "shaoguan", "shantou"}), (text_a, None)):
            before = client.get_topology().topology_version
            path.write_text(text)
            version = eventually(lambda: (v := client.get_topology().topology_version) != before and v,
                                 "the flipped topology is served")
            if names:
                sites[version] = names
            time.sleep(0.3)  # let the placers run on the new version for a while
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not failures
    versions = {v for v, _ in seen}
    assert len(versions) == 2 and versions <= set(sites)
    for version, site in seen:
        assert site in sites[version], (version, site)
