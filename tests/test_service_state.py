"""Restarts remember, ids never collide: a `scheduler serve --state-dir` process killed with SIGKILL comes back with
its holds (and their ids) and the operator's cable cuts; ids of another replica or an earlier run free nothing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from scheduler.service.client import Client
from scheduler.service.ids import boot_of
from scheduler.service.server import ControlPlane
from scheduler.service.statedir import StateDir
from scheduler.v1 import types_pb2

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "topology" / "tiny.yaml"
BATCH = types_pb2.Batch(region="singapore", model="llm-70b", input_tokens=100, output_tokens=4000, requests=20)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(state_dir: Path, port: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "scheduler", "serve", "--topology", str(TINY), "--port", str(port),
                             "--state-dir", str(state_dir), "--log-level", "warning"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def used(c: Client) -> dict[str, float]:
    topo = c.get_topology().topology
    return {p.key: p.used for s in topo.sites for p in s.pools if p.used > 0}


def test_kill_9_and_restart_keeps_holds_ids_and_cable_cuts(tmp_path):
    port = free_port()
    proc = serve(tmp_path / "state", port)
    try:
        with Client(f"127.0.0.1:{port}", timeout=10) as c:
            c.wait_ready(60)
            held = [c.place(BATCH).decision for _ in range(5)]
            cut = c.set_link_status(["cable-a"], up=False)
            before = used(c)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        proc = serve(tmp_path / "state", port)
        with Client(f"127.0.0.1:{port}", timeout=10) as c:
            c.wait_ready(60)
            assert used(c) == pytest.approx(before)  # every hold is back, on the same pools
            assert list(c.get_topology().topology.cables) and "cable-a" in cut.down_cables
            assert not next(x for x in c.get_topology().topology.cables if x.id == "cable-a").up  # the cut survived
            fresh = c.place(BATCH).decision
            old_ids = [i for d in held for i in d.reservation_ids]
            assert not set(fresh.reservation_ids) & set(old_ids)  # a new run never reuses an id
            assert boot_of(fresh.reservation_ids[0]) != boot_of(old_ids[0])
            # The ids from before the crash still name their holds: releasing them frees exactly those.
            assert c.release(old_ids).released == len(old_ids)
            assert sum(used(c).values()) == pytest.approx(fresh.accelerators)
    finally:
        proc.kill()
        proc.wait(10)


def test_ids_of_another_replica_free_nothing():
    a = ControlPlane(TINY, port=0, hour=lambda: 14).start()
    b = ControlPlane(TINY, port=0, hour=lambda: 14).start()
    try:
        with Client(a.target, timeout=10) as ca, Client(b.target, timeout=10) as cb:
            mine = [i for _ in range(3) for i in ca.place(BATCH).decision.reservation_ids]
            theirs = [i for _ in range(3) for i in cb.place(BATCH).decision.reservation_ids]
            assert not set(mine) & set(theirs)
            assert cb.release(mine).released == 0  # A's ids sent to B
            assert len(b.engine.ledger.reservations()) == len(theirs)
    finally:
        a.stop(0)
        b.stop(0)


def test_state_dir_log_is_compacted_and_replays_releases(tmp_path):
    """Many holds, some released, through several log generations: a reopened directory has exactly the live
    ones."""
    sd = StateDir(tmp_path, compact_after=10)
    ledger = sd.ledger(first_id=1000)
    kept = []
    for i in range(40):
        got = ledger.try_reserve([("p", 1.0, 3600.0, 50.0)], {"p": 1000.0}, owner=f"t{i % 3}")
        if i % 4:
            kept.append(got[0].id)
        else:
            ledger.release(got[0].id)
    sd.close()
    assert len(list(tmp_path.glob("holds.*.log"))) == 1  # older generations dropped
    again = StateDir(tmp_path).ledger(first_id=5000)
    live = again.reservations()
    assert sorted(live) == kept
    assert {r.owner for r in live.values()} == {"t0", "t1", "t2"} and again.held_by("t1") > 0
    assert again.snapshot() == {"p": pytest.approx(len(kept))}


def test_a_torn_last_line_is_ignored(tmp_path):
    sd = StateDir(tmp_path)
    ledger = sd.ledger(first_id=1)
    rid = ledger.try_reserve([("p", 2.0, 3600.0)], {"p": 10.0})[0].id
    sd.close()
    log = next(tmp_path.glob("holds.*.log"))
    with open(log, "a") as f:
        f.write('{"r": 99, "o": "", "keys": ["p"], "k": [0], "a": [5')  # a crash mid-write
    assert list(StateDir(tmp_path).ledger(first_id=100).reservations()) == [rid]
