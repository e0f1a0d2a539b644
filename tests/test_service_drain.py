"""Graceful drain of `scheduler serve`, in its own process: on SIGTERM health turns NOT_SERVING at once, new calls
(on open connections and new ones) are still served for the drain grace period, then the server stops and exits 0.
And at start the soft limit on open files is raised to the hard limit."""

from __future__ import annotations

import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from scheduler.paths import TOPOLOGY_DIR
from scheduler.service.client import Client
from scheduler.service.server import ControlPlane
from scheduler.v1 import types_pb2

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "topology" / "tiny.yaml"
DRAIN_S = 2.0
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


def health(client: Client) -> int:
    return health_pb2_grpc.HealthStub(client.channel).Check(health_pb2.HealthCheckRequest(), timeout=2).status


def soft_nofile(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-file limit in /proc")


def test_sigterm_turns_health_not_serving_at_once_serves_through_the_drain_grace_then_exits_cleanly():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(soft, 512, hard - 1) if hard != resource.RLIM_INFINITY else min(soft, 512)

    def lower_the_limit() -> None:  # the child starts with a soft limit below its hard one
        resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))

    proc = subprocess.Popen([sys.executable, "-m", "scheduler", "serve", "--topology", str(TINY), "--port", "0",
                             "--log-level", "warning", "--drain-grace", f"{DRAIN_S:g}", "--grace", "5"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lower_the_limit)
    try:
        match = re.search(r" on (\S+:\d+)$", proc.stdout.readline().strip())
        assert match, proc.stderr.read()
        target = match.group(1)
        if Path("/proc").is_dir() and low < hard:
            limit = soft_nofile(proc.pid)
            assert limit == hard or (hard == resource.RLIM_INFINITY and limit > low)
        batch = types_pb2.Batch(region="singapore", model="llm-70b", input_tokens=2000, output_tokens=500)
        with Client(target, timeout=5) as client:
            client.wait_ready()
            assert health(client) == health_pb2.HealthCheckResponse.SERVING
            proc.send_signal(signal.SIGTERM)
            sent = time.monotonic()
            while health(client) != health_pb2.HealthCheckResponse.NOT_SERVING:
                assert time.monotonic() - sent < 1.0, "health still SERVING 1 s after SIGTERM"
                time.sleep(0.02)
            not_serving_after = time.monotonic() - sent
            placed = 0
            while time.monotonic() - sent < DRAIN_S - 0.5:  # new calls are still served during the grace period
                assert client.place(batch, dry_run=True).decision.placed
                placed += 1
                time.sleep(0.05)
            with Client(target, timeout=5, options=OWN_CONNECTION) as late:  # a new connection too
                assert late.place(batch, dry_run=True).decision.placed
            assert placed >= 5
            out, err = proc.communicate(timeout=20)
            exited_after = time.monotonic() - sent
            with pytest.raises(grpc.RpcError) as info:  # and after it, nothing is served
                client.place(batch, dry_run=True, timeout=2)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert not_serving_after < 1.0 and DRAIN_S - 0.2 <= exited_after < DRAIN_S + 8
    assert f"SIGTERM: health NOT_SERVING; still serving new calls for {DRAIN_S:g} s" in out
    assert "SIGTERM: draining in-flight calls (up to 5 s)" in out and out.rstrip().endswith("stopped")


def test_as_the_server_stops_new_calls_are_turned_away_unavailable_not_cancelled():
    """An outside probe saw 1-3 Place calls CANCELLED by grpc at the instant the drain ended: calls that reached the
    server as it stopped accepting them. The gate now refuses new calls UNAVAILABLE (what retry policies retry)
    for a moment before the server stops."""
    with ControlPlane(TOPOLOGY_DIR / "tiny.yaml", port=0, hour=lambda: 14) as plane:
        with Client(plane.target, timeout=10) as c:
            c.wait_ready()
            batch = types_pb2.Batch(region="singapore", model="llm-70b", input_tokens=100, output_tokens=10)
            c.place(batch, dry_run=True)
            plane.gate.closing = True
            with pytest.raises(grpc.RpcError) as e:
                c.place(batch, dry_run=True)
            assert e.value.code() is grpc.StatusCode.UNAVAILABLE
            assert "shutting down" in e.value.details()
            plane.gate.closing = False
